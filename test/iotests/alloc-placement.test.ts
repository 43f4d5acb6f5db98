/**
 * Regressions from qemu-iotests on host-cluster placement and frees (issue 14: 313, 044, 217, 214,
 * 122): each runs the same steps with our CLI (as `qemu-img`/`qemu-io`) and with QEMU's tools and
 * compares what QEMU's tests print — refcount structure offsets, image end offsets, messages,
 * maps. Our CLI runs from the build (bin/qcow2.js → dist).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-alloc-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Side = 'ours' | 'qemu';
interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}

/** A tool of one side; the real tools must be installed (no silent skip). */
function tool(side: Side, name: 'qemu-img' | 'qemu-io', args: string[]): Ran {
  const exe = side === 'ours' ? path.join(tools, name) : name;
  const r = spawnSync(exe, args, { encoding: 'utf8', timeout: 120_000, cwd: dir });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function img(side: Side, name: string): string {
  return path.join(dir, `${side}-${name}`);
}

/** Header fields and refcount table entries that say where QEMU put its structures. */
function layout(file: string): { reftable: string; reftableClusters: number; l1: string; blocks: string[] } {
  const b = fs.readFileSync(file);
  const rt = Number(b.readBigUInt64BE(48));
  const rtc = b.readUInt32BE(56);
  const cs = 2 ** b.readUInt32BE(20);
  const blocks: string[] = [];
  for (let i = 0; i < (rtc * cs) / 8; i++) {
    const e = b.readBigUInt64BE(rt + i * 8);
    if (e !== 0n) blocks.push(`${i}:0x${e.toString(16)}`);
  }
  return {
    reftable: `0x${rt.toString(16)}`,
    reftableClusters: rtc,
    l1: `0x${b.readBigUInt64BE(40).toString(16)}`,
    blocks,
  };
}

function checkEnd(file: string): string {
  const r = spawnSync('qemu-img', ['check', file], { encoding: 'utf8' });
  if (r.error) throw r.error;
  return /Image end offset: (\d+)/.exec(r.stdout)?.[1] ?? `no end offset (exit ${r.status}): ${r.stderr}`;
}

function poke(file: string, at: number, bytes: number[]): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, at);
  fs.closeSync(fd);
}

/** The qemu-io lines without the timing lines. */
function ioLines(r: Ran): string {
  return (r.stdout + r.stderr)
    .split('\n')
    .filter((l) => !/ops; /.test(l))
    .join('\n');
}

const sides: Side[] = ['ours', 'qemu'];

describe('host-cluster placement as QEMU 7.2 places clusters', () => {
  it('313: a request allocates its clusters together; refcount blocks land after the run', () => {
    const got = sides.map((s) => {
      const base = img(s, '313.base');
      const top = img(s, '313.top');
      const o = 'cluster_size=4096,refcount_bits=64';
      expect(tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-o', o, base, '8347648']).status).toBe(0);
      expect(tool(s, 'qemu-io', ['-c', 'write -P 1 0 8347648', base]).status).toBe(0);
      const written = layout(base);
      tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-o', o, '-b', base, '-F', 'qcow2', top]);
      expect(tool(s, 'qemu-io', ['-c', 'write -z 0 8347648', top]).status).toBe(0);
      expect(tool(s, 'qemu-img', ['commit', top]).stdout).toContain('Image committed.');
      return { written, end: checkEnd(base) };
    });
    expect(got[0]!.written.blocks).toEqual([
      '0:0x2000',
      '1:0x205000',
      '2:0x407000',
      '3:0x609000',
      '4:0x801000',
    ]);
    expect(got[0]).toEqual(got[1]);
  });

  it('a refcount block for a single-cluster allocation takes the next free cluster', () => {
    const got = sides.map((s) => {
      const f = img(s, 'single.qcow2');
      tool(s, 'qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        'cluster_size=4096,refcount_bits=64',
        f,
        '4M',
      ]);
      const cmds = Array.from({ length: 515 }, (_, i) => ['-c', `write ${i * 4096} 4096`]).flat();
      expect(tool(s, 'qemu-io', [...cmds, f]).status).toBe(0);
      const map = spawnSync('qemu-img', ['map', '--output=json', f], { encoding: 'utf8' }).stdout;
      return { layout: layout(f), map };
    });
    expect(got[0]!.layout.blocks).toContain('1:0x201000');
    expect(got[0]).toEqual(got[1]);
  });

  it('044 (small): a full refcount table grows where QEMU grows it and the old one is reused', () => {
    const got = sides.map((s) => {
      const f = img(s, 'grow.qcow2');
      // 512-byte clusters, 16-bit refcounts: one table cluster covers 64 blocks of 256 clusters
      tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', f, '16M']);
      expect(tool(s, 'qemu-io', ['-c', 'write -P 7 0 9M', '-c', 'write -P 8 12M 1M', f]).status).toBe(0);
      return { layout: layout(f), end: checkEnd(f) };
    });
    expect(got[0]!.layout.reftableClusters).toBeGreaterThan(1);
    expect(got[0]).toEqual(got[1]);
  });
});

describe('freed clusters reused, and a shrink trims the file (250)', () => {
  it('250: data reuses clusters freed in the same session; a shrink punches and cuts them', () => {
    const got = sides.map((s) => {
      const f = img(s, '250.qcow2');
      tool(s, 'qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        'cluster_size=1M,preallocation=metadata',
        f,
        '2100M',
      ]);
      // (each side's own map: preallocated clusters over holes of the file read as zeros)
      const fresh = tool(s, 'qemu-img', ['map', '--output=json', f]).stdout;
      const cmds = ['discard 0 10M', 'discard 2090M 10M', 'write 2090M 10M', 'write 0 10M'];
      expect(tool(s, 'qemu-io', [...cmds.flatMap((c) => ['-c', c]), f]).status).toBe(0);
      const map = tool(s, 'qemu-img', ['map', f]).stdout.split(f).join('IMG');
      const before = fs.statSync(f).blocks;
      expect(tool(s, 'qemu-img', ['resize', '--shrink', f, '5M']).status).toBe(0);
      const freed = (before - fs.statSync(f).blocks) * 512;
      // (du counts file-system blocks: an extent-tree block may come or go; MiB are what 250 shows)
      return {
        fresh,
        map,
        freedMiB: Math.round(freed / 2 ** 20),
        size: fs.statSync(f).size,
        end: checkEnd(f),
      };
    });
    expect(got[0]!.map).toContain('0x82a00000      0xa00000        0x500000');
    expect(got[0]!.freedMiB).toBe(15);
    expect(got[0]).toEqual(got[1]);
  });
});

describe('frees and compressed clusters as QEMU 7.2 reports them', () => {
  it('217: a failed free is reported and leaks; the snapshot delete fails with QEMU words', () => {
    const conf = path.join(dir, 'free-error.conf');
    fs.writeFileSync(conf, '[inject-error]\nevent = "cluster_free"\nerrno = "5"\n');
    const got = sides.map((s) => {
      const f = img(s, '217.qcow2');
      tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
      tool(s, 'qemu-io', ['-c', 'write 0 64k', f]);
      tool(s, 'qemu-img', ['snapshot', '-c', 'foo', f]);
      const del = tool(s, 'qemu-img', ['snapshot', '-d', 'foo', `blkdebug:${conf}:${f}`]);
      const check = spawnSync('qemu-img', ['check', f], { encoding: 'utf8' });
      return {
        status: del.status,
        stderr: del.stderr.split(f).join('IMG'),
        check: check.stderr,
        code: check.status,
      };
    });
    expect(got[0]!.stderr).toContain('qcow2_free_clusters failed: Input/output error\n');
    expect(got[0]).toEqual(got[1]);
  });

  it('214: undecodable compressed data is EIO, not corruption; a descriptor past EOF is read', () => {
    const got = sides.map((s) => {
      const f = img(s, '214.qcow2');
      const out: string[] = [];
      const io = (...c: string[]): void => {
        out.push(ioLines(tool(s, 'qemu-io', [...c.flatMap((x) => ['-c', x]), f])));
      };
      tool(s, 'qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        'cluster_size=2M,compression_type=zlib',
        f,
        '8M',
      ]);
      io('write -c -P 0x11 0 2M', 'write -c -P 0x11 2M 2M');
      poke(f, 0x800000, [0x40, 0x06]); // 4 sectors instead of 5: too short to inflate
      io('read -P 0x11 0 4M');
      poke(f, 0x800000, [0x7f, 0xfe]); // 8192 sectors: past the end of the file
      poke(f, 0x800008, [0x7f, 0xfe]);
      io('read -P 0x11 0 4M');
      io('write -P 0x22 4M 4M');
      const check = spawnSync('qemu-img', ['check', f], { encoding: 'utf8' });
      out.push(check.stdout.replace(/Image end offset.*/, ''), check.stderr, String(check.status));
      return out;
    });
    expect(got[0]![1]).toBe('read failed: Input/output error\n');
    expect(got[0]).toEqual(got[1]);
  });

  it('214: the compress filter driver writes whole clusters compressed', () => {
    const got = sides.map((s) => {
      const f = img(s, 'filter.qcow2');
      tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', f, '2M']);
      const opts = `driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=${f}`;
      const w1 = tool(s, 'qemu-io', ['--image-opts', '-c', 'write -P 0xbb 0 229376', opts]);
      const w2 = tool(s, 'qemu-io', ['--image-opts', '-c', 'write -P 0xcc 278528 229376', opts]);
      const check = spawnSync('qemu-img', ['check', '--output=json', f], { encoding: 'utf8' });
      const compressed = (JSON.parse(check.stdout) as { 'compressed-clusters'?: number })[
        'compressed-clusters'
      ];
      const read = ioLines(
        tool('qemu', 'qemu-io', [
          '-c',
          'read -P 0xbb 0 229376',
          '-c',
          'read -P 0 229376 49152',
          '-c',
          'read -P 0xcc 278528 229376',
          f,
        ]),
      );
      return { w: [ioLines(w1), ioLines(w2)], compressed, read };
    });
    expect(got[0]!.compressed).toBe(8);
    expect(got[0]).toEqual(got[1]);
  });

  it('122: convert -c of sources whose sizes are not whole clusters', () => {
    const got = sides.map((s) => {
      const a = img(s, '122.1');
      const b = img(s, '122.2');
      const t = img(s, '122.out');
      for (const f of [a, b]) tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', f, '1047552']);
      tool(s, 'qemu-io', [
        '-c',
        'write -P 0x11 16k 16k',
        '-c',
        'write -P 0x22 130k 130k',
        '-c',
        'write -P 0x33 1022k 1k',
        a,
      ]);
      tool(s, 'qemu-io', ['-c', 'write -P 0x44 0k 1k', b]);
      const c = tool(s, 'qemu-img', ['convert', '-c', '-O', 'qcow2', a, b, t]);
      const map = spawnSync('qemu-img', ['map', '--output=json', t], { encoding: 'utf8' }).stdout;
      const read = ioLines(
        tool('qemu', 'qemu-io', ['-c', 'read -P 0x33 1046528 1024', '-c', 'read -P 0x44 1047552 1024', t]),
      );
      return { status: c.status, stderr: c.stderr, map, read };
    });
    expect(got[0]!.status).toBe(0);
    expect(got[0]).toEqual(got[1]);
  });

  it('122: convert -S N leaves zeros unwritten as qemu-img decides (runs of N, aligned pieces)', () => {
    const got = sides.map((s) => {
      const src = img(s, '122s.qcow2');
      tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', src, '64M']);
      const w = ['write -P 0 0 64k', 'write 0 1k', 'write 8k 1k', 'write 17k 1k', 'write -P 0 65k 1k'];
      tool(s, 'qemu-io', [...w.flatMap((c) => ['-c', c]), src]);
      return ['4k', '8k'].map((m) => {
        const t = img(s, `122s-${m}.qcow2`);
        const c = tool(s, 'qemu-img', ['convert', '-O', 'qcow2', '-o', 'cluster_size=1k', '-S', m, src, t]);
        const map = spawnSync('qemu-img', ['map', '--output=json', t], { encoding: 'utf8' }).stdout;
        return { status: c.status, map: map.replace(/"offset": \d+/g, 'OFFSET') };
      });
    });
    expect(got[0]![1]!.map).toContain('"start": 0, "length": 24576');
    expect(got[0]).toEqual(got[1]);
  });

  it('122: convert -n refuses -o, and takes -B without a backing format', () => {
    const got = sides.map((s) => {
      const src = img(s, '122n.qcow2');
      const t = img(s, '122n.out');
      const b = img(s, '122n.base');
      for (const f of [src, t, b]) tool(s, 'qemu-img', ['create', '-q', '-f', 'qcow2', f, '1M']);
      const o = tool(s, 'qemu-img', ['convert', '-O', 'qcow2', '-o', 'preallocation=metadata', '-n', src, t]);
      const B = tool(s, 'qemu-img', ['convert', '-O', 'qcow2', '-B', b, '-n', src, t]);
      return [o.status, o.stderr, B.status, B.stderr];
    });
    expect(got[0]![1]).toBe('qemu-img: -o has no effect when skipping image creation\n');
    expect(got[0]).toEqual(got[1]);
  });
});

describe('163: a shrink drops refcount blocks that count nothing any more', () => {
  it('512-byte clusters, 64-bit refcounts, 3M written then shrunk to 1M: same layout and size as QEMU', () => {
    const got = sides.map((side) => {
      const f = img(side, 'shrink-163.qcow2');
      const c = tool(side, 'qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        'cluster_size=512,refcount_bits=64',
        f,
        '3M',
      ]);
      expect(c.status).toBe(0);
      for (let o = 0; o < 3 * 2 ** 20; o += 256 * 1024) {
        expect(tool(side, 'qemu-io', ['-c', `write -q -P 0xff ${o} 256K`, f]).status).toBe(0);
      }
      expect(tool(side, 'qemu-img', ['resize', '-q', '--shrink', f, '1M']).status).toBe(0);
      // What iotests 163 asserts: every refcount block the table names holds a non-zero refcount.
      const b = fs.readFileSync(f);
      const empty = layout(f)
        .blocks.map((e) => Number(BigInt(e.split(':')[1]!)))
        .filter((off) => b.subarray(off, off + 512).every((x) => x === 0));
      return { empty, end: checkEnd(f), size: b.length };
    });
    expect(got[0]!.empty).toEqual([]);
    expect(got[0]).toEqual(got[1]);
  });
});
