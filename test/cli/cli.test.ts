/** The CLI against the real qemu-img/qemu-io on the same images (qemu missing = failure). */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getopt, parseOptString, parseSizeBig } from '../../src/cli/args.ts';
import { cvtstr, qdictOrder, sizeToStr } from '../../src/cli/format.ts';
import { main } from '../../src/cli/main.ts';

let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-cli-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const f = (name: string): string => path.join(dir, name);

interface Run {
  out: string;
  err: string;
  code: number;
}

async function ours(...argv: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { out, err, code };
}

function qemu(tool: 'qemu-img' | 'qemu-io', ...argv: string[]): Run {
  const r = spawnSync(tool, argv, { encoding: 'utf8' });
  if (r.error) throw r.error; // qemu missing: a failure, never a skip
  return { out: r.stdout, err: r.stderr, code: r.status ?? -1 };
}

const noTiming = (s: string): string[] => s.split('\n').filter((l) => !/ops; .* sec/.test(l));

describe('argument parsing', () => {
  it('parses sizes as qemu_strtosz', () => {
    const ok = (s: string): bigint | string => {
      const r = parseSizeBig(s);
      return r.ok ? r.value : r.error;
    };
    expect(ok('1k')).toBe(1024n);
    expect(ok('1.5k')).toBe(1536n);
    expect(ok('1.3k')).toBe(1331n);
    expect(ok('1b')).toBe(1n);
    expect(ok('0x10')).toBe(16n);
    expect(ok('1t')).toBe(1n << 40n);
    expect(ok('1E')).toBe(1n << 60n);
    expect(ok('1.')).toBe(1n);
    expect(ok('1.0')).toBe(1n);
    expect(ok('1.5')).toBe('invalid');
    expect(ok('1.5b')).toBe('invalid');
    expect(ok('1kb')).toBe('invalid');
    expect(ok('1x')).toBe('invalid');
    expect(ok('')).toBe('invalid');
    expect(ok('8E')).toBe('range');
    expect(ok('9999999999999999999')).toBe('range');
  });

  it('permutes like getopt_long and splits -o with ,, escapes', () => {
    const p = getopt(['x.qcow2', '-o', 'a=1', '--output=json', '-fqcow2', '-q', '1M'], 'f:o:q', [
      { name: 'output', arg: 'required' },
    ]);
    expect(p.operands).toEqual(['x.qcow2', '1M']);
    expect(p.opts).toEqual([
      { key: 'o', value: 'a=1' },
      { key: 'output', value: 'json' },
      { key: 'f', value: 'qcow2' },
      { key: 'q', value: undefined },
    ]);
    expect([...parseOptString('backing_file=a,,b.qcow2,lazy_refcounts=on')]).toEqual([
      ['backing_file', 'a,b.qcow2'],
      ['lazy_refcounts', 'on'],
    ]);
  });

  it('formats sizes and QDict order as QEMU', () => {
    expect(sizeToStr(405504)).toBe('396 KiB');
    expect(sizeToStr(67108864)).toBe('64 MiB');
    expect(sizeToStr(0)).toBe('0 B');
    // "%.3g" rounds an exact tie to even: 646.5 KiB is "646", 1.125 MiB "1.12", 647.5 KiB "648"
    expect(sizeToStr(662016)).toBe('646 KiB');
    expect(sizeToStr(1179648)).toBe('1.12 MiB');
    expect(sizeToStr(663040)).toBe('648 KiB');
    expect(cvtstr(1113587712)).toBe('1.037 GiB');
    expect(cvtstr(40)).toBe('40 bytes');
    expect(qdictOrder(['filename', 'format', 'check-errors', 'image-end-offset'])).toEqual([
      'image-end-offset',
      'check-errors',
      'filename',
      'format',
    ]);
  });

  it("rejects bad sizes with qemu-img's message", async () => {
    const r = await ours('create', '-f', 'qcow2', f('bad.qcow2'), '1x');
    const q = qemu('qemu-img', 'create', '-f', 'qcow2', f('bad.qcow2'), '1x');
    expect(r.code).toBe(q.code);
    expect(r.err.replace(/qcow2: /g, '')).toBe(q.err.replace(/qemu-img: /g, ''));
  });
});

describe('create and info against qemu-img', () => {
  const cases: string[][] = [
    [],
    ['-o', 'cluster_size=4k,refcount_bits=4,lazy_refcounts=on'],
    ['-o', 'compat=0.10'],
    ['-o', 'compression_type=zstd'],
  ];
  for (const [i, extra] of cases.entries()) {
    it(`create ${extra.join(' ') || '(defaults)'}`, async () => {
      const a = f(`c${i}-ours.qcow2`);
      const b = f(`c${i}-qemu.qcow2`);
      const r = await ours('create', '-f', 'qcow2', ...extra, a, '64M');
      const q = qemu('qemu-img', 'create', '-f', 'qcow2', ...extra, b, '64M');
      expect(r.code).toBe(0);
      expect(r.out.replace(a, 'X')).toBe(q.out.replace(b, 'X'));
      // Same info whichever tool reads whichever image (filename/actual-size aside).
      const strip = (s: string): Record<string, unknown> => {
        const o = JSON.parse(s) as Record<string, unknown>;
        delete o.filename;
        delete o['actual-size'];
        return o;
      };
      const oursOnOurs = await ours('info', '--output=json', a);
      const qemuOnOurs = qemu('qemu-img', 'info', '--output=json', a);
      const oursOnQemu = await ours('info', '--output=json', b);
      expect(strip(oursOnOurs.out)).toEqual(strip(qemuOnOurs.out));
      expect(strip(oursOnQemu.out)).toEqual(strip(qemu('qemu-img', 'info', '--output=json', b).out));
      // Key order and layout too.
      expect(oursOnQemu.out.replace(/"actual-size": \d+/, '')).toBe(
        qemu('qemu-img', 'info', '--output=json', b).out.replace(/"actual-size": \d+/, ''),
      );
      const hq = qemu('qemu-img', 'info', b).out.replace(/disk size: .*\n/, '');
      expect((await ours('info', b)).out.replace(/disk size: .*\n/, '')).toBe(hq);
    });
  }

  it('info with a backing file', async () => {
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', f('base.qcow2'), '32M');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', f('top.qcow2'));
    const norm = (s: string): string => s.replace(/"actual-size": \d+/g, '').replace(/disk size: .*\n/g, '');
    expect(norm((await ours('info', '--output=json', f('top.qcow2'))).out)).toBe(
      norm(qemu('qemu-img', 'info', '--output=json', f('top.qcow2')).out),
    );
    expect(norm((await ours('info', '--backing-chain', f('top.qcow2'))).out)).toBe(
      norm(qemu('qemu-img', 'info', '--backing-chain', f('top.qcow2')).out),
    );
  });
});

/** qemu reports host-file holes as zero on allocated data; compare on metadata only. */
function metadataMap(json: string): Array<Record<string, unknown>> {
  const list = JSON.parse(json) as Array<Record<string, unknown>>;
  const out: Array<Record<string, unknown>> = [];
  for (const e of list) {
    const x: Record<string, unknown> = { ...e, zero: e.data === true ? false : e.zero };
    const prev = out[out.length - 1];
    const contiguous =
      prev && prev.offset === undefined
        ? x.offset === undefined
        : prev && (prev.offset as number) + (prev.length as number) === x.offset;
    if (
      prev &&
      contiguous &&
      (['depth', 'present', 'zero', 'data'] as const).every((k) => prev[k] === x[k])
    ) {
      prev.length = (prev.length as number) + (x.length as number);
    } else out.push(x);
  }
  return out;
}

describe('map and io against qemu', () => {
  it('map --output=json equals qemu-img map on an image written by qemu-io', async () => {
    const img = f('m.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', img, '8M');
    const w = qemu(
      'qemu-io',
      ...[
        '-c',
        'write -P 0xaa 0 64k',
        '-c',
        'write -c 128k 64k',
        '-c',
        'write -z 256k 64k',
        '-c',
        'write 300k 1k',
      ],
      ...[
        '-c',
        'write -P 1 1M 192k',
        '-c',
        'discard 1088k 64k',
        '-c',
        'discard 2M 1k',
        '-c',
        'write -P 2 2M 4k',
        '-c',
        'write -z -u 3M 128k',
      ],
      img,
    );
    expect(w.code).toBe(0);
    const r = await ours('map', '--output=json', img);
    expect(r.code).toBe(0);
    expect(metadataMap(r.out)).toEqual(metadataMap(qemu('qemu-img', 'map', '--output=json', img).out));
    const h = await ours('map', img);
    const hq = qemu('qemu-img', 'map', img);
    expect(h.code).toBe(hq.code);
    expect(h.out.split('\n')[0]).toBe(hq.out.split('\n')[0]);
  });

  it('io commands print what qemu-io prints', async () => {
    const a = f('io-ours.qcow2');
    const b = f('io-qemu.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', a, '4M');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', b, '4M');
    const cmds = [
      'write -P 0x41 0 64k',
      'write 65536 1k',
      'read -P 0x41 0 4k',
      'read -v 60k 40',
      'write -z 128k 64k',
      'read -P 0 128k 64k',
      'discard 64k 64k',
      'map',
      'length',
      'info',
      'read -P 0x42 0 512',
      'read 0 1x',
      'write -u 0 1',
      'truncate 8M',
      'length',
      'read 0',
      'nonsense',
      'flush',
    ].flatMap((c) => ['-c', c]);
    const r = await ours('io', ...cmds, a);
    const q = qemu('qemu-io', ...cmds, b);
    expect(r.code).toBe(q.code);
    expect(noTiming(r.out)).toEqual(noTiming(q.out));
    expect(r.err.trim().split('\n')).toEqual(q.err.trim().split('\n'));
  });
});

describe('exit codes', () => {
  it('check: 0 clean, 63 raw, 1 unopenable; compare: 0/1/2', async () => {
    const img = f('k.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', img, '1M');
    expect((await ours('check', img)).code).toBe(0);
    const j = await ours('check', '--output=json', img);
    expect(j.out).toBe(qemu('qemu-img', 'check', '--output=json', img).out);
    fs.writeFileSync(f('r.raw'), new Uint8Array(4096));
    expect((await ours('check', '-f', 'raw', f('r.raw'))).code).toBe(63);
    expect((await ours('check', f('none.qcow2'))).code).toBe(1);
    const other = f('k2.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', other, '2M');
    const same = await ours('compare', img, other);
    expect([same.code, same.out]).toEqual([0, 'Warning: Image size mismatch!\nImages are identical.\n']);
    qemu('qemu-io', '-c', 'write -P 1 1500000 1', other);
    const diff = await ours('compare', img, other);
    const qd = qemu('qemu-img', 'compare', img, other);
    expect([diff.code, diff.out]).toEqual([qd.code, qd.out]);
    expect((await ours('compare', '-s', img, other)).code).toBe(1);
    expect((await ours('compare', img, f('none'))).code).toBe(2);
  });

  it('errors are one line with no stack; usage errors exit 1', async () => {
    const r = await ours('info', f('does-not-exist.qcow2'));
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect((await ours('frobnicate')).code).toBe(1);
    expect((await ours('info', '--output=xml', f('x'))).code).toBe(1);
    // Through the real binary: one stderr line, exit status 1.
    const bin = spawnSync(
      'node',
      [path.join(__dirname, '../../bin/qcow2.js'), 'resize', f('k.qcow2'), '512k'],
      { encoding: 'utf8' },
    );
    expect(bin.status).toBe(1);
    expect(bin.stderr).toMatch(
      /^qcow2: Use the --shrink option to perform a shrink operation\. \[[A-Z_]+\]\n$/,
    );
    expect(bin.stdout).toBe('');
  });

  it('resize refuses to shrink without --shrink, then shrinks', async () => {
    const img = f('rs.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', img, '2M');
    expect(await ours('resize', img, '+1M')).toEqual({ out: 'Image resized.\n', err: '', code: 0 });
    const r = await ours('resize', img, '-1M');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Use the --shrink option to perform a shrink operation\./);
    expect((await ours('resize', '--shrink', img, '-1M')).code).toBe(0);
    expect(JSON.parse(qemu('qemu-img', 'info', '--output=json', img).out)['virtual-size']).toBe(
      2 * 1024 * 1024,
    );
  });

  it('convert skips zero clusters and -c compresses; qemu-img compare agrees', async () => {
    const src = f('cv.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', src, '4M');
    qemu('qemu-io', '-c', 'write -P 7 0 192k', '-c', 'write -P 0 1M 64k', '-c', 'write -P 9 2M 100k', src);
    for (const extra of [[], ['-c']]) {
      const dst = f(`cv-out${extra.length}.qcow2`);
      expect((await ours('convert', '-O', 'qcow2', ...extra, src, dst)).code).toBe(0);
      expect(qemu('qemu-img', 'compare', src, dst).code).toBe(0);
      expect(qemu('qemu-img', 'check', dst).code).toBe(0);
      const m = JSON.parse(qemu('qemu-img', 'map', '--output=json', dst).out) as Array<{
        start: number;
        data: boolean;
      }>;
      expect(m.some((e) => e.start === 1024 * 1024 && e.data)).toBe(false);
    }
    const raw = f('cv.raw');
    expect((await ours('convert', '-O', 'raw', src, raw)).code).toBe(0);
    expect(qemu('qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw', src, raw).code).toBe(0);
  });
});
