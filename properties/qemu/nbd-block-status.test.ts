/**
 * The in-process NBD block-status client (nbd-block-status.ts) gives exactly the dirty ranges
 * `qemu-img map --image-opts driver=nbd,…,x-dirty-bitmap=qemu:dirty-bitmap:NAME` reports — the
 * way the bitmap oracle read them before, and the way case scripts still do — on images with
 * several bitmaps of different granularities (512 B to 4 MiB), a disabled one, sizes that end
 * inside a granule, and a 1 GiB disk with dirty ranges near both ends.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QEMU_IMG, QEMU_IO, requireQemuTools, runTool } from './qemu-img.ts';
import { QEMU_NBD, readAllDirtyBits, type DirtyRange } from './qemu-bitmaps.ts';
import { startThroughLauncher } from './tool-runner.ts';

let dir: string;

async function must(file: string, args: string[]): Promise<void> {
  const r = await runTool(file, args);
  expect(r.exitCode, `${file} ${args.join(' ')}: ${r.stderr}`).toBe(0);
}

/** What `qemu-img map` says over an NBD export of the image, bitmap by bitmap. */
async function byQemuImgMap(file: string, names: string[]): Promise<Map<string, DirtyRange[]>> {
  const sock = path.join(dir, 'map.sock');
  const pid = path.join(dir, 'map.pid');
  fs.rmSync(pid, { force: true });
  const nbd = startThroughLauncher(
    QEMU_NBD,
    [
      '-r',
      '-t',
      '-e',
      String(names.length),
      '-k',
      sock,
      '--pid-file',
      pid,
      ...names.flatMap((n) => ['-B', n]),
      '-f',
      'qcow2',
      file,
    ],
    { dieWithParent: true },
  );
  try {
    for (let i = 0; !/^\d+\n$/.test(fs.existsSync(pid) ? fs.readFileSync(pid, 'utf8') : ''); i++) {
      if (i > 2000) throw new Error('qemu-nbd not ready');
      await new Promise((r) => setTimeout(r, 5));
    }
    const out = new Map<string, DirtyRange[]>();
    for (const name of names) {
      const r = await runTool(QEMU_IMG, [
        'map',
        '--output=json',
        '--image-opts',
        `driver=nbd,server.type=unix,server.path=${sock},x-dirty-bitmap=qemu:dirty-bitmap:${name}`,
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      const ranges: DirtyRange[] = [];
      for (const e of JSON.parse(r.stdout) as { start: number; length: number; data: boolean }[]) {
        if (e.data) continue; // "data": false marks a dirty range
        const last = ranges[ranges.length - 1];
        if (last && last.offset + last.length === e.start) last.length += e.length;
        else ranges.push({ offset: e.start, length: e.length });
      }
      out.set(name, ranges);
    }
    return out;
  } finally {
    nbd.kill();
    await nbd.done.catch(() => undefined);
  }
}

beforeAll(async () => {
  await requireQemuTools();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-nbd-status-'));
}, 60_000);

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const CASES: { size: string; bitmaps: [string, number, boolean][]; writes: string[] }[] = [
  {
    size: '64M',
    bitmaps: [
      ['b0', 512, false],
      ['b1', 65536, false],
      ['b2', 4 << 20, false],
    ],
    writes: ['write -P 1 0 512', 'write -P 2 1000000 70000', 'write -z 33M 1M', 'discard 60M 4M'],
  },
  {
    // ends inside every granule but the smallest; one bitmap disabled before the writes
    size: '10001920',
    bitmaps: [
      ['b0', 65536, false],
      ['b1', 1 << 20, true],
      ['b2', 4096, false],
    ],
    writes: ['write -P 3 9990000 11920', 'write -P 4 4096 4096', 'write -P 5 5000000 1'],
  },
  {
    size: '1G',
    bitmaps: [
      ['b0', 65536, false],
      ['b1', 512, false],
    ],
    writes: ['write -P 6 0 64k', 'write -P 7 536870400 1024', 'write -P 8 1073676288 65536'],
  },
];

describe('NBD block status read in process', () => {
  for (const [i, c] of CASES.entries()) {
    it(`equals qemu-img map's dirty ranges (${c.size}, granularities ${c.bitmaps.map((b) => b[1]).join('/')})`, async () => {
      const file = path.join(dir, `img${i}.qcow2`);
      await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', file, c.size]);
      for (const [name, g, disabled] of c.bitmaps)
        await must(QEMU_IMG, [
          'bitmap',
          '--add',
          '-g',
          String(g),
          ...(disabled ? ['--disable'] : []),
          file,
          name,
        ]);
      await must(QEMU_IO, [...c.writes.flatMap((w) => ['-c', w]), file]);
      const names = c.bitmaps.map((b) => b[0]);
      const mine = await readAllDirtyBits(file, names);
      const theirs = await byQemuImgMap(file, names);
      let dirty = 0;
      for (const name of names) {
        expect(mine.get(name), name).toEqual({ ok: true, ranges: theirs.get(name) });
        dirty += theirs.get(name)!.length;
      }
      expect(dirty).toBeGreaterThan(0); // (the comparison compared something)
    }, 60_000);
  }
});
