/**
 * Growing an image whose backing file is longer than the old size: the new area reads as zeros,
 * not as the backing file's data (QEMU's bdrv_co_truncate zero-fills it). On v3 the result equals
 * qemu-io's; on v2 QEMU 7.2 refuses the grow ("Failed to zero out new clusters") and the engine
 * writes the zeros instead; with extended L2 QEMU 7.2 also refuses it when the old last cluster is
 * compressed (known bug qemu-7.2-grow-over-compressed-tail-fails) and the engine grows it. Sizes
 * that are not a multiple of 512 are refused as QEMU refuses them.
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
  it('extended L2, compressed last cluster: the engine grows and reads zeros; QEMU 7.2 refuses and changes nothing', () => {
    // known bug qemu-7.2-grow-over-compressed-tail-fails: zeroing from the old size rounded up to
    // a 2 KiB subcluster starts inside the compressed last cluster, which QEMU cannot zero in part
    const base = tmp.file('base-xl2.qcow2');
    qemuCreate(base, '236544');
    qemuIo(base, ['write -P 0x77 0 236544']);
    const ours = tmp.file('ours-xl2.qcow2');
    const theirs = tmp.file('theirs-xl2.qcow2');
    qemuCreate(ours, '138240', { opts: 'cluster_size=65536,extended_l2=on', backing: base });
    qemuIo(ours, ['write -c -P 0x11 0 138240']);
    fs.copyFileSync(ours, theirs);

    const qemu = run('qemu-io', ['-f', 'qcow2', '-c', 'truncate 237056', theirs]);
    expect(`${qemu.stdout}${qemu.stderr}`).toContain(
      'Failed to zero out new clusters: Operation not supported',
    );
    const before = qemuRaw(theirs);
    expect(before.length).toBe(138240);
    expect(before.every((b) => b === 0x11)).toBe(true);
    expect(qemuCheck(theirs).status).toBe(0);

    const img = Qcow2Image.open(ours, { sync: false });
    img.resize(237056);
    img.close();
    expect(qemuCheck(ours).status).toBe(0);
    const mine = qemuRaw(ours);
    expect(mine.length).toBe(237056);
    expect(mine.subarray(0, 138240).every((b) => b === 0x11)).toBe(true);
    expect(mine.subarray(138240).every((b) => b === 0)).toBe(true);
  });
});
