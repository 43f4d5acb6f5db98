/**
 * Regressions from qemu-iotest 261 (QEMU 7.2's snapshot table limits, qcow2_do_read_snapshots):
 * more than 1024 bytes of extra data in an entry, a table over 64 MiB and more than 65536 entries
 * are refused at open with QEMU's message and hint, and `check -r all` repairs them (extra data cut
 * to 1024 bytes, overhanging entries dropped). Each case runs the same steps with our CLI (as
 * `qemu-img`) and with QEMU's and compares what they print. Our CLI runs from the build
 * (bin/qcow2.js → dist).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-sntab-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
fs.symlinkSync(BIN, path.join(tools, 'qemu-img'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Side = 'ours' | 'qemu';
const sides: Side[] = ['ours', 'qemu'];

/** qemu-img of one side (`IMG` in `args` names the file); the output with the path as `IMG`. */
function img(side: Side, file: string, args: string[]): string {
  const exe = side === 'ours' ? path.join(tools, 'qemu-img') : 'qemu-img';
  const r = spawnSync(
    exe,
    args.map((a) => (a === 'IMG' ? file : a)),
    { encoding: 'utf8', timeout: 120_000, cwd: dir, maxBuffer: 2 ** 28 },
  );
  if (r.error) throw r.error;
  return `exit ${r.status}\n${r.stdout}${r.stderr}`.split(file).join('IMG');
}

function poke(file: string, at: number, bytes: number[]): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  fs.closeSync(fd);
}

const be32 = (n: number): number[] => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

/** The rows of `info`'s snapshot list, ID and tag only (dates differ between the two runs). */
function snapshotRows(out: string): string[] {
  const at = out.indexOf('Snapshot list:');
  if (at < 0) return [];
  return out
    .slice(at)
    .split('\n')
    .slice(2)
    .filter((l) => / B /.test(l))
    .map((l) => l.slice(0, 27).trimEnd());
}

/** Open, check, check -r all, check, info: the transcript of one side. */
function repairTranscript(side: Side, f: string): string[] {
  return [
    img(side, f, ['info', 'IMG']),
    img(side, f, ['check', 'IMG']),
    img(side, f, ['check', '-r', 'all', 'IMG']),
    img(side, f, ['check', 'IMG']),
  ];
}

describe('snapshot table limits as QEMU 7.2 reads them (iotest 261)', () => {
  it('too much extra metadata: refused at open, cut to 1024 bytes by check -r all', () => {
    const runs = sides.map((s) => {
      const f = path.join(dir, `${s}-extra.qcow2`);
      img(s, f, ['create', '-q', '-f', 'qcow2', 'IMG', '64M']);
      for (const sn of ['sn0', 'sn1', 'sn2', 'sn3']) img(s, f, ['snapshot', '-c', sn, 'IMG']);
      // Entry 3's extra_data_size (byte 36 of the entry) to 64 KiB.
      const b = fs.readFileSync(f);
      let o = Number(b.readBigUInt64BE(64));
      for (let i = 0; i < 3; i++) {
        o += 40 + b.readUInt32BE(o + 36) + b.readUInt16BE(o + 12) + b.readUInt16BE(o + 14);
        o = Math.ceil(o / 8) * 8;
      }
      poke(f, o + 36, be32(0x10000));
      const t = repairTranscript(s, f);
      return { t, rows: snapshotRows(img(s, f, ['info', 'IMG'])) };
    });
    expect(runs[0]!.t[0]).toContain(
      'Too much extra metadata in snapshot table entry 3\nYou can force-remove',
    );
    expect(runs[0]!.t[2]).toContain(
      'Discarding too much extra metadata in snapshot table entry 3 (65536 > 1024)',
    );
    expect(runs[0]!.t).toEqual(runs[1]!.t);
    // Entry 3's id and name are read past the 64 KiB it claimed: zeros, so both are empty.
    expect(runs[0]!.rows).toEqual(['1         sn0', '2         sn1', '3         sn2', '']);
    expect(runs[0]!.rows).toEqual(runs[1]!.rows);
  });

  // Ours only, against QEMU's lines for this image (as 261.out's): QEMU's repair of it takes ~15 s.
  it('more than 65536 snapshots: check -r all drops the overhang (261.out)', () => {
    const f = path.join(dir, 'ours-many.qcow2');
    img('ours', f, ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'IMG', '64M']);
    // 131072 all-zero entries (40 bytes each, no L1 table) at 1 MiB, counted nowhere.
    poke(f, 64, [0, 0, 0, 0, 0, 0x10, 0, 0]);
    poke(f, 60, be32(0x20000));
    fs.truncateSync(f, 1048576 + 40 * 131072);
    expect(img('ours', f, ['info', 'IMG'])).toBe(
      "exit 1\nqemu-img: Could not open 'IMG': Snapshot table too large\n",
    );
    const fixed = img('ours', f, ['check', '-r', 'all', 'IMG']);
    // The table's clusters are counted nowhere: the repair also rebuilds the refcounts.
    expect(fixed).toMatch(/^exit 0\n/);
    expect(fixed).toContain(
      'Discarding 65536 overhanging snapshots\nERROR cluster 16 refcount=0 reference=1\n',
    );
    expect(fixed).toContain('Double checking the fixed image now...\nNo errors were found on the image.\n');
    expect(fs.readFileSync(f).readUInt32BE(60)).toBe(65536);
    fs.rmSync(f);
  });

  it('a table over 64 MiB: refused at open, the last entry dropped by check -r all', () => {
    // Entries of 40 + 1024 + 65535 + 65535 bytes (+ 2 of padding): the 508th passes 64 MiB.
    const size = 40 + 1024 + 65535 + 65535 + 2;
    const count = Math.floor((64 * 1048576) / size) + 1;
    const runs = sides.map((s) => {
      const f = path.join(dir, `${s}-big.qcow2`);
      img(s, f, ['create', '-q', '-f', 'qcow2', 'IMG', '64M']);
      poke(f, 64, [0, 0, 0, 0, 0, 0x10, 0, 0]);
      poke(f, 60, be32(count));
      const fd = fs.openSync(f, 'r+');
      const fixed = Buffer.alloc(40);
      fixed.writeUInt16BE(0xffff, 12);
      fixed.writeUInt16BE(0xffff, 14);
      fixed.writeUInt32BE(1024, 36);
      for (let i = 0; i < count; i++) fs.writeSync(fd, fixed, 0, 40, 1048576 + i * size);
      fs.closeSync(fd);
      fs.truncateSync(f, 1048576 + count * size);
      const t = repairTranscript(s, f);
      const t2 = img(s, f, ['info', 'IMG']);
      const listed = t2.split('\n').filter((l) => /^ {32}/.test(l)).length;
      fs.rmSync(f);
      return { t, listed };
    });
    expect(count).toBe(508);
    expect(runs[0]!.t[0]).toContain('Snapshot table is too big\nYou can force-remove all 1 overhanging');
    expect(runs[0]!.t[2]).toContain('Discarding 1 overhanging snapshots (snapshot table is too big)');
    expect(runs[0]!.listed).toBe(507);
    expect(runs[0]!.t).toEqual(runs[1]!.t);
    expect(runs[0]!.listed).toBe(runs[1]!.listed);
  });
});
