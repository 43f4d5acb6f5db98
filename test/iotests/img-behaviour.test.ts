/**
 * Regressions found by QEMU's qemu-iotests on the qemu-img side (issue 14): verbs, options, message
 * texts and engine behaviour, each checked against the real qemu-img / qemu-io on the same input.
 * Our CLI runs as `qemu-img`/`qemu-io` (bin/qcow2.js under those names), so outputs must match
 * QEMU's to the letter.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must, run } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-img-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Ran {
  status: number;
  stdout: string;
  stderr: string;
}

/** Ours, as the named tool. */
function ours(tool: 'qemu-img' | 'qemu-io', args: string[], cwd = dir): Ran {
  const r = spawnSync(path.join(tools, tool), args, { encoding: 'utf8', timeout: 60_000, cwd });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The real tool, never throwing on a non-zero exit. */
function qemu(tool: 'qemu-img' | 'qemu-io', args: string[], cwd = dir): Ran {
  const r = spawnSync(tool, args, { encoding: 'utf8', timeout: 60_000, cwd });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function img(name: string): string {
  return path.join(dir, name);
}

/** Same exit code, same stdout and stderr once each tool's image names are the same. */
function expectSame(o: Ran, q: Ran, names: [string, string][] = []): void {
  const norm = (s: string, which: 0 | 1): string => names.reduce((t, n) => t.split(n[which]).join('IMG'), s);
  expect({ status: o.status, stdout: norm(o.stdout, 0), stderr: norm(o.stderr, 0) }).toEqual({
    status: q.status,
    stdout: norm(q.stdout, 1),
    stderr: norm(q.stderr, 1),
  });
}

/** Set bits in a v3 header's u64 field at `at` (72 incompatible, 88 autoclear). */
function setHeaderBits(f: string, at: number, bits: bigint): void {
  const fd = fs.openSync(f, 'r+');
  const b = Buffer.alloc(8);
  fs.readSync(fd, b, 0, 8, at);
  b.writeBigUInt64BE(b.readBigUInt64BE(0) | bits);
  fs.writeSync(fd, b, 0, 8, at);
  fs.closeSync(fd);
}

/** Replace the feature name table (0x6803f857, which QEMU writes right after the 112-byte header)
 * with `data`, and end the extension list after it. */
function setFeatureTable(f: string, data: Buffer): void {
  const ext = Buffer.alloc(8 + Math.ceil(data.length / 8) * 8 + 8);
  ext.writeUInt32BE(0x6803f857, 0);
  ext.writeUInt32BE(data.length, 4);
  data.copy(ext, 8);
  const fd = fs.openSync(f, 'r+');
  fs.writeSync(fd, ext, 0, ext.length, 112);
  fs.closeSync(fd);
}

describe('036: unknown incompatible features named from a short feature table', () => {
  it('names bits from a 14-byte table and a table with an empty entry, as QEMU does', () => {
    const cases: Buffer[] = [
      Buffer.concat([Buffer.from([0, 63]), Buffer.from('Test feature')]),
      Buffer.concat([
        Buffer.from([0, 61]),
        Buffer.from('test1'),
        Buffer.alloc(41),
        Buffer.from([0, 0]),
        Buffer.alloc(46),
        Buffer.from([0, 63]),
        Buffer.from('test3'),
      ]),
    ];
    for (const [i, table] of cases.entries()) {
      const names: [string, string][] = [];
      const results: Ran[] = [];
      for (const who of ['ours', 'qemu'] as const) {
        const f = img(`feat-${i}-${who}.qcow2`);
        must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
        setHeaderBits(f, 72, (1n << 63n) | (1n << 61n) | (1n << 62n));
        setFeatureTable(f, table);
        names.push([f, f]);
        results.push(who === 'ours' ? ours('qemu-img', ['info', f]) : qemu('qemu-img', ['info', f]));
      }
      expect(results[0]!.stderr).toContain('Unsupported qcow2 feature(s): ');
      expectSame(results[0]!, results[1]!, [[names[0]![0], names[1]![0]]]);
    }
  });

  it('check -r all clears unknown autoclear bits (a read-write open does)', () => {
    const f = img('autoclear.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
    setHeaderBits(f, 88, 1n << 63n);
    expect(ours('qemu-img', ['check', '-r', 'all', f]).status).toBe(0);
    const b = Buffer.alloc(8);
    const fd = fs.openSync(f, 'r');
    fs.readSync(fd, b, 0, 8, 88);
    fs.closeSync(fd);
    expect(b.readBigUInt64BE(0)).toBe(0n);
  });
});

describe('111: create -b opens the backing file first, as bdrv_img_create does', () => {
  it('a missing backing file, a backing file without -F, the same name, -u', () => {
    const cases: string[][] = [
      ['create', '-f', 'qcow2', '-b', img('inexistent'), 'c1.qcow2'],
      ['create', '-f', 'qcow2', '-b', 'cbase.qcow2', 'c2.qcow2'],
      ['create', '-f', 'qcow2', '-b', 'c3.qcow2', '-F', 'qcow2', 'c3.qcow2'],
      ['create', '-f', 'qcow2', '-u', '-b', 'nothere.qcow2', 'c4.qcow2', '1M'],
      ['create', '-q', '-f', 'qcow2', '-u', '-b', 'nothere.qcow2', '-F', 'qcow2', 'c5.qcow2', '1M'],
    ];
    must('qemu-img', ['create', '-q', '-f', 'qcow2', img('cbase.qcow2'), '1M']);
    for (const args of cases) {
      const o = ours('qemu-img', args);
      for (const f of ['c4.qcow2', 'c5.qcow2']) fs.rmSync(img(f), { force: true });
      expectSame(o, qemu('qemu-img', args));
    }
  });
});

describe('043: backing chains that loop', () => {
  it('rebase -u writes a looping name; info --backing-chain names the loop', () => {
    const a = img('loop-a.qcow2');
    const b = img('loop-b.qcow2');
    for (const f of [a, b]) must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '1M']);
    expectSame(ours('qemu-img', ['rebase', '-u', '-b', b, '-F', 'qcow2', a]), {
      status: 0,
      stdout: '',
      stderr: '',
    });
    expectSame(ours('qemu-img', ['rebase', '-u', '-b', a, '-F', 'qcow2', b]), {
      status: 0,
      stdout: '',
      stderr: '',
    });
    for (const f of [a, b]) {
      const args = ['info', '--backing-chain', f];
      expectSame(ours('qemu-img', args), qemu('qemu-img', args));
    }
  });
});

describe('114: an unknown backing format is refused, as QEMU refuses an unknown driver', () => {
  it('the last backing format extension names the driver; backing.driver overrides; rebase needs -F', () => {
    const base = img('fmt-base.qcow2');
    const top = img('fmt-top.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1M']);
    must('qemu-io', ['-c', 'write -P 7 0 4k', base]);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    // A second backing format extension "foo" after the first (qcow2.py add-header-ext), then the end.
    const ext = Buffer.alloc(16);
    ext.writeUInt32BE(0xe2792aca, 0);
    ext.writeUInt32BE(3, 4);
    ext.write('foo', 8);
    const h = fs.readFileSync(top);
    let at = 112;
    while (h.readUInt32BE(at) !== 0) at += 8 + Math.ceil(h.readUInt32BE(at + 4) / 8) * 8;
    // The backing file name moves after the new end of the extension list (header bytes 8 and 16).
    const name = h.subarray(Number(h.readBigUInt64BE(8)), Number(h.readBigUInt64BE(8)) + h.readUInt32BE(16));
    const tail = Buffer.concat([ext, Buffer.alloc(8), name]);
    const fd = fs.openSync(top, 'r+');
    fs.writeSync(fd, tail, 0, tail.length, at);
    const off = Buffer.alloc(8);
    off.writeBigUInt64BE(BigInt(at + 24));
    fs.writeSync(fd, off, 0, 8, 8);
    fs.closeSync(fd);
    const steps: [tool: 'qemu-img' | 'qemu-io', args: string[]][] = [
      ['qemu-img', ['info', top]],
      ['qemu-io', ['-c', `open ${top}`, '-c', 'read -P 7 0 4k']],
      ['qemu-io', ['-c', `open -o backing.driver=qcow2 ${top}`, '-c', 'read -P 7 0 4k']],
      ['qemu-img', ['rebase', '-u', '-b', base, top]],
    ];
    for (const [tool, args] of steps) {
      const o = ours(tool, args);
      const q = qemu(tool, args);
      const untimed = (r: Ran): Ran => ({ ...r, stdout: r.stdout.replace(/^\d.*ops; .*$/gm, 'TIMING') });
      expectSame(untimed(o), untimed(q));
    }
    expect(ours('qemu-img', ['info', top]).stdout).toContain('backing file format: foo');
    expect(ours('qemu-img', ['rebase', '-u', '-b', base, '-F', 'qcow2', top]).status).toBe(0);
    expect(must('qemu-io', ['-c', 'read -P 7 0 4k', top])).toContain('read 4096/4096');
  });
});

describe('049: create size options as QEMU parses them', () => {
  it('a bad -o size is the option parser error with its hint; a size given twice; compat values', () => {
    const cases: string[][] = [
      ['create', '-f', 'qcow2', '-o', 'size=-1k', 'sz.qcow2'],
      ['create', '-f', 'qcow2', '-o', 'size=foobar', 'sz.qcow2'],
      ['create', '-f', 'qcow2', '-o', 'size=10M', 'sz.qcow2', '20M'],
      ['create', '-f', 'qcow2', '-o', 'compat=0.42', 'sz.qcow2', '64M'],
      ['create', '-f', 'qcow2', '-b', '', 'sz.qcow2', '1M'],
    ];
    for (const args of cases) {
      const o = ours('qemu-img', args);
      fs.rmSync(img('sz.qcow2'), { force: true });
      expectSame(o, qemu('qemu-img', args));
      fs.rmSync(img('sz.qcow2'), { force: true });
    }
  });
});

describe('159/170: qemu-img dd', () => {
  it('copies the same bytes as qemu-img dd (bs, count, skip, -O) and refuses as it does', () => {
    const src = img('dd-src.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '3M']);
    must('qemu-io', ['-c', 'write -P 5 64k 100k', '-c', 'write -P 6 2M 4k', src]);
    for (const extra of [[], ['bs=3k', 'count=100', 'skip=10'], ['bs=64k', '-O', 'qcow2'], ['skip=100000']]) {
      const outs: Buffer[] = [];
      const results: Ran[] = [];
      for (const who of ['ours', 'qemu'] as const) {
        const out = img(`dd-${who}.img`);
        fs.rmSync(out, { force: true });
        const args = ['dd', `if=${src}`, `of=${out}`, ...extra];
        results.push(who === 'ours' ? ours('qemu-img', args) : qemu('qemu-img', args));
        const raw = img(`dd-${who}.raw`);
        must('qemu-img', ['convert', '-O', 'raw', out, raw]);
        outs.push(fs.readFileSync(raw));
      }
      expectSame(results[0]!, results[1]!);
      expect(outs[0]!.equals(outs[1]!)).toBe(true);
    }
    for (const bad of [['bs=0'], ['bs=x'], ['foo=1'], []]) {
      const args = ['dd', `if=${src}`, ...(bad.length ? [`of=${img('dd-bad.raw')}`] : []), ...bad];
      expectSame(ours('qemu-img', args), qemu('qemu-img', args));
    }
  });
});

describe('190: qemu-img measure', () => {
  it('gives qemu-img measure figures for sizes, inputs with data and bitmaps, and output formats', () => {
    const src = img('m-src.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '100M']);
    must('qemu-io', ['-c', 'write -P 1 1M 3M', '-c', 'write -P 2 50M 70k', '-c', 'write -z 60M 1M', src]);
    must('qemu-img', ['bitmap', '--add', '-g', '512', src, 'b1']);
    const cases: string[][] = [
      ['measure', '--size', '10M'],
      ['measure', '-O', 'qcow2', '--size', '2T', '-o', 'cluster_size=512,refcount_bits=1'],
      ['measure', '-O', 'qcow2', '--size', '1G', '-o', 'extended_l2=on,preallocation=full'],
      ['measure', '-O', 'qcow2', src],
      ['measure', '-O', 'qcow2', '-o', 'compat=0.10', src],
      ['measure', '-O', 'qcow2', '-o', 'backing_file=x', src],
      ['measure', '--output=json', '-O', 'qcow2', '-o', 'cluster_size=2M', src],
      ['measure', '-O', 'raw', src],
      ['measure', src, '--size', '1M'],
      ['measure'],
    ];
    for (const args of cases) expectSame(ours('qemu-img', args), qemu('qemu-img', args));
  });

  it('tables at the end of the file end the file where they end, as QEMU writes them', () => {
    const sizes: number[][] = [];
    for (const who of ['ours', 'qemu'] as const) {
      const f = img(`ends-${who}.qcow2`);
      const tool = who === 'ours' ? ours : qemu;
      const seen: number[] = [];
      tool('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', f, '2T']);
      seen.push(fs.statSync(f).size);
      tool('qemu-img', ['bitmap', '--add', '-g', '512', f, 'b1']);
      seen.push(fs.statSync(f).size);
      tool('qemu-img', ['bitmap', '--add', '-g', '2M', f, 'b2']);
      seen.push(fs.statSync(f).size);
      sizes.push(seen);
    }
    expect(sizes[0]).toEqual(sizes[1]);
  });
});

describe('243: extent_size_hint, preallocation=falloc and external data files at create', () => {
  it('accepts extent_size_hint as QEMU does and refuses one over 2^32 - 1', () => {
    for (const args of [
      ['create', '-f', 'qcow2', '-o', 'extent_size_hint=0,preallocation=metadata', 'esh.qcow2', '1M'],
      ['create', '-f', 'raw', '-o', 'extent_size_hint=1M', 'esh.raw', '1M'],
      ['create', '-q', '-f', 'raw', '-o', 'extent_size_hint=5G', 'esh.raw', '1M'],
      ['create', '-f', 'qcow2', '-o', 'extent_size_hint=x', 'esh.qcow2', '1M'],
    ])
      expectSame(ours('qemu-img', args), qemu('qemu-img', args));
  });

  it('falloc reserves blocks; a new data file is as large as the disk', () => {
    for (const mode of ['off', 'metadata', 'falloc', 'full']) {
      const stats: Array<{ size: number; dataSize: number; high: boolean; dataHigh: boolean }> = [];
      for (const who of ['ours', 'qemu'] as const) {
        const f = img(`pre-${mode}-${who}.qcow2`);
        const tool = who === 'ours' ? ours : qemu;
        tool('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `preallocation=${mode}`, f, '8M']);
        tool('qemu-img', [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          `data_file=${f}.data,preallocation=${mode}`,
          `${f}.x`,
          '8M',
        ]);
        const st = fs.statSync(f);
        const dst = fs.statSync(`${f}.data`);
        stats.push({
          size: st.size,
          dataSize: dst.size,
          high: st.blocks * 512 >= 4 << 20,
          dataHigh: dst.blocks * 512 >= 4 << 20,
        });
      }
      expect(stats[0]).toEqual(stats[1]);
    }
  });
});

describe('226, 031: protocol drivers by name, and backing formats QEMU knows', () => {
  it('file / host_device / host_cdrom check the kind of file after opening it, as QEMU does', () => {
    const d = img('a-directory');
    fs.mkdirSync(d, { recursive: true });
    for (const proto of ['file', 'host_device', 'host_cdrom']) {
      for (const spec of [`${proto},filename=${d}`, `${proto},filename=/dev/null,locking=off`]) {
        for (const ro of [['-r'], []]) {
          const args = ['-c', `open ${ro.join(' ')} -o driver=${spec}`];
          expectSame(ours('qemu-io', args), qemu('qemu-io', args));
        }
      }
    }
    // An open failing on a directory says so in strerror's words.
    expectSame(ours('qemu-io', ['-c', 'read 0 512', d]), qemu('qemu-io', ['-c', 'read 0 512', d]));
  });

  it('rebase -u -F takes any format QEMU knows and refuses others by name', () => {
    const results: string[] = [];
    for (const who of ['ours', 'qemu'] as const) {
      const f = img(`hd-${who}.qcow2`);
      const tool = who === 'ours' ? ours : qemu;
      must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '1M']);
      const a = tool('qemu-img', ['rebase', '-u', '-b', '/some/backing/file/path', '-F', 'host_device', f]);
      const b = tool('qemu-img', ['rebase', '-u', '-b', '/x', '-F', 'nosuchformat', f]);
      results.push(JSON.stringify([a, b.status, b.stderr.split(f).join('IMG')]));
      results.push(must('qemu-img', ['info', '--output=json', f]).split(f).join('IMG'));
    }
    expect(results[0]).toBe(results[2]);
    expect(results[1]).toBe(results[3]);
    expect(results[1]).toContain('"backing-filename-format": "host_device"');
  });
});

describe('188, 189, 198, 263, 158: LUKS images and encrypted backing files', () => {
  const S0 = 'secret,id=sec0,data=astrochicken';
  const S1 = 'secret,id=sec1,data=furby';

  it('create -f luks makes an image QEMU opens with its secret; key-secret is required', () => {
    const f = img('raw.luks');
    const args = [
      'create',
      '-f',
      'luks',
      '--object',
      S0,
      '-o',
      'key-secret=sec0',
      '-o',
      'iter-time=10',
      f,
      '1M',
    ];
    const o = ours('qemu-img', args);
    expect(o).toEqual({
      status: 0,
      stdout: `Formatting '${f}', fmt=luks size=1048576 key-secret=sec0 iter-time=10\n`,
      stderr: '',
    });
    const spec = `driver=luks,key-secret=sec0,file.filename=${f}`;
    expect(
      must('qemu-io', [
        '--object',
        S0,
        '--image-opts',
        spec,
        '-c',
        'write -P 3 0 64k',
        '-c',
        'read -P 3 0 64k',
      ]),
    ).toContain('read 65536/65536');
    expect(must('qemu-img', ['info', f])).toContain('file format: luks');
    const bad = ['create', '-f', 'luks', img('nokey.luks'), '1M'];
    expectSame(ours('qemu-img', bad), qemu('qemu-img', bad));
  });

  it('an overlay over an encrypted base: create without the base key, I/O and commit with both keys', () => {
    const base = img('enc-base.qcow2');
    const top = img('enc-top.qcow2');
    const enc = (id: string): string => `encrypt.format=luks,encrypt.key-secret=${id},encrypt.iter-time=10`;
    // (ours: qemu-img's PBKDF2 timing with iter-time=10 fails now and then on a loaded machine,
    // "Unable to get accurate CPU usage"; qemu-io reads the base below)
    expect(
      ours('qemu-img', ['create', '-q', '-f', 'qcow2', '--object', S0, '-o', enc('sec0'), base, '1M']).status,
    ).toBe(0);
    const baseSpec = `driver=qcow2,file.filename=${base},encrypt.key-secret=sec0`;
    must('qemu-io', ['--object', S0, '--image-opts', baseSpec, '-c', 'write -P 0xa 0 1M']);
    // Size from the encrypted base, which is opened for metadata only (no key for sec0 needed).
    const o = ours('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '--object',
      S1,
      '-o',
      enc('sec1'),
      '-b',
      base,
      '-F',
      'qcow2',
      top,
    ]);
    expect(o).toEqual({ status: 0, stdout: '', stderr: '' });
    const spec = `driver=qcow2,file.filename=${top},backing.driver=qcow2,backing.file.filename=${base},backing.encrypt.key-secret=sec0,encrypt.key-secret=sec1`;
    const io = [
      '--object',
      S0,
      '--object',
      S1,
      '--image-opts',
      spec,
      '-c',
      'write -P 0xe 0 1024',
      '-c',
      'read -P 0xe 0 1024',
      '-c',
      'read -P 0xa 1024 64512',
    ];
    const r = ours('qemu-io', io);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('read 64512/64512 bytes at offset 1024');
    expect(ours('qemu-img', ['commit', '--object', S0, '--object', S1, '--image-opts', spec]).stdout).toBe(
      'Image committed.\n',
    );
    expect(
      must('qemu-io', [
        '--object',
        S0,
        '--image-opts',
        baseSpec,
        '-c',
        'read -P 0xe 0 1024',
        '-c',
        'read -P 0xa 1024 64512',
      ]),
    ).toContain('read 64512/64512');
    // info needs no key, and names a node opened with a key by its options.
    const info = ['info', '--image-opts', baseSpec];
    expectSame(ours('qemu-img', info), qemu('qemu-img', info));
    // The wrong key: QEMU's words, no device name with --image-opts.
    const wrong = ['--object', 'secret,id=sec0,data=platypus', '--image-opts', baseSpec, '-c', 'read 0 512'];
    expectSame(ours('qemu-io', wrong), qemu('qemu-io', wrong));
  });

  it('convert to an encrypted, preallocated image writes the zeros (no zero-init)', () => {
    const src = img('plain-src.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '1M']);
    must('qemu-io', ['-c', 'write -P 5 64k 64k', src]);
    const dst = img('enc-prealloc.qcow2');
    const r = ours('qemu-img', [
      'convert',
      '-O',
      'qcow2',
      '--object',
      S0,
      '-o',
      'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,preallocation=metadata',
      src,
      dst,
    ]);
    expect(r.status).toBe(0);
    const cmp = run('qemu-img', [
      'compare',
      '--object',
      S0,
      '--image-opts',
      `driver=qcow2,file.filename=${src}`,
      `driver=qcow2,file.filename=${dst},encrypt.key-secret=sec0`,
    ]);
    expect(cmp.stdout).toBe('Images are identical.\n');
  });
});

describe('154, 179: a zero write over part of a cluster that already reads as zeros', () => {
  it('makes the whole cluster a zero cluster, as qcow2_co_pwrite_zeroes does', () => {
    const maps: string[] = [];
    for (const who of ['ours', 'qemu'] as const) {
      const base = img(`pz-base-${who}.qcow2`);
      const top = img(`pz-top-${who}.qcow2`);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
      must('qemu-io', ['-c', 'write -P 1 1M 64k', base]);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
      const tool = who === 'ours' ? ours : qemu;
      for (const [f, cmd] of [
        [base, 'write -z -u 2097153 131070'],
        [base, 'write -z 2359297 1000'],
        [top, 'write -z 0 4k'],
        [top, 'write -z 1M 4k'],
        [top, 'write -P 9 3M 64k'],
        [top, 'write -z 3M 4k'],
      ] as const)
        expect(tool('qemu-io', ['-c', cmd, f]).status).toBe(0);
      maps.push(
        must('qemu-img', ['map', '--output=json', base]) + must('qemu-img', ['map', '--output=json', top]),
      );
      maps[maps.length - 1] = maps[maps.length - 1]!.replace(/"offset": \d+/g, 'OFFSET');
      expect(
        must('qemu-io', [
          '-c',
          'read -P 0 1M 4k',
          '-c',
          'read -P 1 1052672 61440',
          '-c',
          'read -P 0 2M 128k',
          '-c',
          'read -P 0 3M 4k',
          '-c',
          'read -P 9 3149824 61440',
          top,
        ]),
      ).toContain('read 61440/61440');
    }
    expect(maps[0]).toBe(maps[1]);
  });
});
