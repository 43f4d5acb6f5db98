/**
 * Discard passthrough (QEMU's update_refcount / qcow2_process_discards, src/engine/refcounts.ts):
 * the same steps run with our CLI (as `qemu-img`/`qemu-io`) and with QEMU's tools on images each
 * side builds itself, then the image files' allocated extents (SEEK_DATA/SEEK_HOLE, src/io/holes.ts)
 * must be the same — a cluster freed by a guest discard, a zero write with unmap, snapshot
 * delete or revert is a hole exactly where QEMU makes one; `-d ignore` and pass-discard-*=off keep
 * the space. After every scenario both images pass `qemu-img check` and read back their data
 * (a hole punched in a referenced cluster would read as zeros), and QEMU's `map` of ours names no
 * host range that is a hole in the file. Our CLI runs from the build (bin/qcow2.js → dist).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fileExtent } from '../../src/io/holes.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-discard-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Side = 'ours' | 'qemu';
const sides: Side[] = ['ours', 'qemu'];

/** Run a tool of one side; fails the test on a non-zero exit. The real tools must be installed. */
function tool(side: Side, name: 'qemu-img' | 'qemu-io', args: string[]): string {
  const exe = side === 'ours' ? path.join(tools, name) : name;
  const r = spawnSync(exe, args, { encoding: 'utf8', timeout: 120_000, cwd: dir });
  if (r.error) throw r.error;
  if (r.status !== 0)
    throw new Error(`${side} ${name} ${args.join(' ')}: exit ${r.status}\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The file's data runs, as "start-end" in hex (holes between them). */
function dataRuns(file: string): string[] {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const runs: string[] = [];
    for (let off = 0; off < size;) {
      const e = fileExtent(fd, off, size - off, size);
      if (!e) throw new Error('SEEK_DATA/SEEK_HOLE unavailable: this test needs a file system with holes');
      if (e.data) runs.push(`${off.toString(16)}-${(off + e.length).toString(16)}`);
      off += e.length;
    }
    return runs;
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes of holes inside the file (its length minus its data). */
function holeBytes(file: string): number {
  const runs = dataRuns(file).map((r) => r.split('-').map((x) => parseInt(x, 16)));
  return fs.statSync(file).size - runs.reduce((n, [a, b]) => n + (b! - a!), 0);
}

/** Both images pass QEMU's check, and every host range QEMU's map names is data in the file. */
function sound(file: string): void {
  expect(spawnSync('qemu-img', ['check', file], { encoding: 'utf8' }).status).toBe(0);
  const map = JSON.parse(
    spawnSync('qemu-img', ['map', '--output=json', file], { encoding: 'utf8' }).stdout,
  ) as Array<{
    start: number;
    length: number;
    offset?: number;
    data: boolean;
  }>;
  const runs = dataRuns(file).map((r) => r.split('-').map((x) => parseInt(x, 16)) as [number, number]);
  for (const m of map) {
    if (m.offset === undefined || !m.data) continue;
    const inData = runs.some(([a, b]) => a <= m.offset! && m.offset! + m.length <= b);
    expect(inData, `host range 0x${m.offset.toString(16)}+${m.length} of ${file} is (partly) a hole`).toBe(
      true,
    );
  }
}

interface Scenario {
  name: string;
  compat?: '0.10' | '1.1';
  /** An external data file (FILE.raw), whose extents are compared instead; `raw`: data_file_raw. */
  dataFile?: { raw: boolean };
  /** QEMU's steps on both sides before `write -P 1 0 4M` (FILE stands for the image). */
  setup?: Array<['qemu-img' | 'qemu-io', string[]]>;
  /** Steps after `write -P 1 0 4M` on a new 16 MiB image (FILE stands for the image). */
  steps: Array<['qemu-img' | 'qemu-io', string[]]>;
  /** What reads back afterwards (qemu-io commands on the image, read-only). */
  verify: string[];
  /** The bytes of holes QEMU's image must end with (so the scenario tests what it says). */
  holes: (n: number) => boolean;
}

const MiB = 1024 * 1024;
const snapThenOverwrite: Scenario['steps'] = [
  ['qemu-img', ['snapshot', '-c', 's1', 'FILE']],
  ['qemu-io', ['-c', 'write -P 2 0 4M', 'FILE']],
];

const scenarios: Scenario[] = [
  {
    name: 'a guest discard (qemu-io default: discard=unmap) punches the freed clusters',
    steps: [['qemu-io', ['-c', 'discard 1M 2M', 'FILE']]],
    verify: ['read -P 1 0 1M', 'read -z 1M 2M', 'read -P 1 3M 1M'],
    holes: (n) => n >= 2 * MiB,
  },
  {
    name: 'qemu-io -d unmap: the same',
    steps: [['qemu-io', ['-d', 'unmap', '-c', 'discard 1M 2M', 'FILE']]],
    verify: ['read -z 1M 2M'],
    holes: (n) => n >= 2 * MiB,
  },
  {
    name: 'write -z -u punches the clusters it unmaps',
    steps: [['qemu-io', ['-c', 'write -z -u 1M 2M', 'FILE']]],
    verify: ['read -P 1 0 1M', 'read -z 1M 2M'],
    holes: (n) => n >= 2 * MiB,
  },
  {
    name: 'qemu-io -d ignore: a discard changes nothing (the data stays)',
    steps: [['qemu-io', ['-d', 'ignore', '-c', 'discard 1M 2M', 'FILE']]],
    verify: ['read -P 1 0 4M'],
    holes: (n) => n < MiB,
  },
  {
    name: 'qemu-io -d ignore: write -z -u zeroes without unmapping (no hole)',
    steps: [['qemu-io', ['-d', 'ignore', '-c', 'write -z -u 1M 2M', 'FILE']]],
    verify: ['read -z 1M 2M', 'read -P 1 3M 1M'],
    holes: (n) => n < MiB,
  },
  {
    name: 'pass-discard-request=off: the clusters are freed but keep their space',
    steps: [
      [
        'qemu-io',
        ['--image-opts', '-c', 'discard 1M 2M', 'driver=qcow2,file.filename=FILE,pass-discard-request=off'],
      ],
    ],
    verify: ['read -z 1M 2M'],
    holes: (n) => n < MiB,
  },
  {
    name: 'qemu-img snapshot -d punches what only the snapshot held',
    steps: [...snapThenOverwrite, ['qemu-img', ['snapshot', '-d', 's1', 'FILE']]],
    verify: ['read -P 2 0 4M'],
    holes: (n) => n >= 4 * MiB,
  },
  {
    name: 'qemu-img snapshot -a punches what only the old active state held',
    steps: [...snapThenOverwrite, ['qemu-img', ['snapshot', '-a', 's1', 'FILE']]],
    verify: ['read -P 1 0 4M'],
    holes: (n) => n >= 4 * MiB,
  },
  {
    name: 'pass-discard-snapshot=off: snapshot -d keeps the space',
    steps: [
      ...snapThenOverwrite,
      [
        'qemu-img',
        ['snapshot', '--image-opts', '-d', 's1', 'driver=qcow2,file.filename=FILE,pass-discard-snapshot=off'],
      ],
    ],
    verify: ['read -P 2 0 4M'],
    holes: (n) => n < MiB,
  },
  {
    name: 'qemu-img bitmap --remove punches the bitmap data cluster (QCOW2_DISCARD_ALWAYS)',
    setup: [['qemu-img', ['bitmap', '--add', '-g', '512', 'FILE', 'b0']]],
    steps: [['qemu-img', ['bitmap', '--remove', 'FILE', 'b0']]],
    verify: ['read -P 1 0 4M'],
    holes: (n) => n >= 64 * 1024,
  },
  {
    name: 'a bitmap stored anew at close frees its old data cluster as a hole',
    setup: [['qemu-img', ['bitmap', '--add', '-g', '512', 'FILE', 'b0']]],
    steps: [['qemu-io', ['-c', 'write -P 3 8M 1M', 'FILE']]],
    verify: ['read -P 1 0 4M', 'read -P 3 8M 1M'],
    holes: (n) => n >= 64 * 1024,
  },
  ...[false, true].map((raw): Scenario => ({
    name: `an external data file (data_file_raw=${raw ? 'on' : 'off'}): discard and write -z -u punch it, a rewrite stays`,
    dataFile: { raw },
    steps: [
      ['qemu-io', ['-c', 'discard 1M 1M', '-c', 'write -z -u 2M 1M', '-c', 'write -P 5 1M 64k', 'FILE']],
    ],
    verify: ['read -P 1 0 1M', 'read -P 5 1M 64k', 'read -z 2M 1M', 'read -P 1 3M 1M'],
    holes: (n) => n >= MiB,
  })),
  {
    name: 'a v2 image: a guest discard punches as on v3',
    compat: '0.10',
    steps: [['qemu-io', ['-c', 'discard 1M 2M', 'FILE']]],
    verify: ['read -z 1M 2M', 'read -P 1 3M 1M'],
    holes: (n) => n >= 2 * MiB,
  },
];

describe('discard passthrough: holes in the image file as QEMU 7.2 punches them', () => {
  for (const sc of scenarios) {
    it(sc.name, () => {
      const files = sides.map((side) => {
        const file = path.join(dir, `${side}-${sc.name.replace(/[^a-z0-9]+/gi, '_')}.qcow2`);
        // Both images are built the same way by QEMU; only the steps under test differ in tool.
        const o = [`compat=${sc.compat ?? '1.1'}`];
        if (sc.dataFile) o.push(`data_file=${file}.raw`, `data_file_raw=${sc.dataFile.raw ? 'on' : 'off'}`);
        spawnSync('qemu-img', ['create', '-f', 'qcow2', '-o', o.join(','), file, '16M']);
        for (const [name, args] of sc.setup ?? [])
          tool(
            'qemu',
            name,
            args.map((a) => a.replace('FILE', file)),
          );
        expect(spawnSync('qemu-io', ['-c', 'write -P 1 0 4M', file]).status).toBe(0);
        for (const [name, args] of sc.steps)
          tool(
            side,
            name,
            args.map((a) => a.replace('FILE', file)),
          );
        return file;
      });
      const [ours, qemu] = files.map((f) => (sc.dataFile ? `${f}.raw` : f)) as [string, string];
      expect(sc.holes(holeBytes(qemu)), `QEMU's image has ${holeBytes(qemu)} bytes of holes`).toBe(true);
      expect(dataRuns(ours)).toEqual(dataRuns(qemu));
      for (const f of files) {
        if (!sc.dataFile) sound(f);
        else expect(spawnSync('qemu-img', ['check', f]).status).toBe(0);
        for (const v of sc.verify) {
          const r = spawnSync('qemu-io', ['-r', '-c', v, f], { encoding: 'utf8' });
          expect(r.stdout, `${v} on ${f}`).not.toMatch(/verification failed|failed/i);
        }
      }
    });
  }

  it('a v2 snapshot delete punches the snapshot-only data clusters as QEMU does', () => {
    // The v2 shadow switch (src/engine/shadow-switch.ts) places metadata differently from QEMU, so
    // only the guest data clusters are compared: the 4 MiB only the snapshot held become holes.
    const files = sides.map((side) => {
      const file = path.join(dir, `${side}-v2-snapdel.qcow2`);
      spawnSync('qemu-img', ['create', '-f', 'qcow2', '-o', 'compat=0.10', file, '16M']);
      expect(spawnSync('qemu-io', ['-c', 'write -P 1 0 4M', file]).status).toBe(0);
      for (const [name, args] of [
        ...snapThenOverwrite,
        ['qemu-img', ['snapshot', '-d', 's1', 'FILE']],
      ] as const)
        tool(
          side,
          name,
          args.map((a) => a.replace('FILE', file)),
        );
      return file;
    });
    for (const f of files) {
      sound(f);
      // the first write's data clusters (host 0x50000.., after its L2 table at 0x40000: where
      // both sides put them) are a hole
      const fd = fs.openSync(f, 'r');
      try {
        const e = fileExtent(fd, 0x50000, 4 * MiB, fs.fstatSync(fd).size);
        expect(e).toEqual({ data: false, length: 4 * MiB });
      } finally {
        fs.closeSync(fd);
      }
    }
  });
});
