/**
 * Growing an image whose backing file is longer than the old size: the new area reads as zeros,
 * not as the backing file's data (QEMU's bdrv_co_truncate zero-fills it). On v3 the result equals
 * qemu-io's; on v2 QEMU 7.2 refuses the grow ("Failed to zero out new clusters") and the engine
 * writes the zeros instead. Sizes that are not a multiple of 512 are refused as QEMU refuses them.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import {
  errorCode,
  qemuCheck,
  qemuCreate,
  qemuIo,
  qemuRaw,
  run,
  sameBytes,
  tempDir,
} from '../support/qemu.ts';

const tmp = tempDir('resize-backing');
afterAll(() => tmp.cleanup());

describe('resize over a longer backing file', () => {
  for (const compat of ['1.1', '0.10'] as const) {
    it(`compat ${compat}: the grown area reads as zeros`, () => {
      const base = tmp.file(`base-${compat}.qcow2`);
      qemuCreate(base, '4M');
      qemuIo(base, ['write -P 0x77 0 4M']);
      const ours = tmp.file(`ours-${compat}.qcow2`);
      const theirs = tmp.file(`theirs-${compat}.qcow2`);
      qemuCreate(ours, '1M', { opts: `compat=${compat}`, backing: base });
      qemuIo(ours, ['write -P 1 1000 1000']);
      fs.copyFileSync(ours, theirs);

      const qemu = run('qemu-io', ['-f', 'qcow2', '-c', 'truncate 3000320', theirs]);
      const img = Qcow2Image.open(ours, { sync: false });
      img.resize(3000320);
      expect(errorCode(() => img.resize(3000000))).toBe('BAD_SIZE');
      img.close();

      expect(qemuCheck(ours).status).toBe(0);
      const mine = qemuRaw(ours);
      if (compat === '1.1') {
        expect(qemu.status).toBe(0);
        expect(sameBytes(mine, qemuRaw(theirs))).toBe('equal');
      } else {
        expect(`${qemu.stdout}${qemu.stderr}`).toContain('Failed to zero out new clusters');
        expect(mine.length).toBe(3000320);
      }
      expect(mine.subarray(1 << 20).every((b) => b === 0)).toBe(true);
      expect(mine[0]).toBe(0x77);
    });
  }
});
