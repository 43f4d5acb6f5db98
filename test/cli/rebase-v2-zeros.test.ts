/**
 * Safe `rebase -b NEW` of a version 2 image without a backing file: where the new backing file
 * holds data, the guest's zeros must stay zeros. QEMU 7.2 writes them as a zero write, which on v2
 * (no zero flag) with no backing file yet deallocates, so the new backing file shows through
 * (known bug qemu-7.2-rebase-v2-loses-zeros, found by `qcow2 fuzz --impl qemu-io --seed 31`). The
 * engine writes those zeros as data on v2; on v3 the zero clusters keep them, as in QEMU.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-rebase-v2-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function qemu(tool: 'qemu-img' | 'qemu-io', ...argv: string[]): { out: string; code: number } {
  const r = spawnSync(tool, argv, { encoding: 'utf8' });
  if (r.error) throw r.error; // qemu missing: a failure, never a skip
  return { out: `${r.stdout}${r.stderr}`, code: r.status ?? -1 };
}

async function ours(...argv: string[]): Promise<number> {
  return main(argv, { out: () => undefined, err: () => undefined });
}

/** Whether guest [0, 64 KiB) of IMG reads as zeros (qemu-io's own pattern check). */
function zerosAtStart(img: string): boolean {
  const r = qemu('qemu-io', '-r', '-f', 'qcow2', '-c', 'read -P 0 0 65536', img);
  return r.code === 0 && !/verification failed/.test(r.out);
}

function setUp(compat: string): { img: string; base: string } {
  const img = path.join(dir, `img-${compat}.qcow2`);
  const base = path.join(dir, `b2-${compat}.qcow2`);
  for (const f of [img, base]) fs.rmSync(f, { force: true });
  expect(
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', `compat=${compat},cluster_size=2048`, img, '1M')
      .code,
  ).toBe(0);
  expect(qemu('qemu-img', 'create', '-q', '-f', 'qcow2', base, '1M').code).toBe(0);
  expect(qemu('qemu-io', '-f', 'qcow2', '-c', 'write -q -P 0xb2 0 65536', base).code).toBe(0);
  return { img, base };
}

describe('rebase -b NEW of an image without a backing file keeps its zeros', () => {
  for (const compat of ['0.10', '1.1']) {
    it(`compat=${compat}: the engine`, async () => {
      const { img, base } = setUp(compat);
      expect(await ours('rebase', '-b', path.basename(base), '-F', 'qcow2', img)).toBe(0);
      expect(zerosAtStart(img)).toBe(true);
      expect(qemu('qemu-img', 'check', img).code).toBe(0);
    });
  }

  it('QEMU 7.2 loses them on v2 (the known bug), keeps them on v3', () => {
    const v2 = setUp('0.10');
    expect(qemu('qemu-img', 'rebase', '-b', path.basename(v2.base), '-F', 'qcow2', v2.img).code).toBe(0);
    expect(zerosAtStart(v2.img)).toBe(false);
    const v3 = setUp('1.1');
    expect(qemu('qemu-img', 'rebase', '-b', path.basename(v3.base), '-F', 'qcow2', v3.img).code).toBe(0);
    expect(zerosAtStart(v3.img)).toBe(true);
  });
});
