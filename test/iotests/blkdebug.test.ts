/**
 * blkdebug, node trees and the engine behaviours qemu-iotests 020, 066, 074, 103, 150, 204, 252,
 * 289 and 313 showed: each case runs the real qemu-img/qemu-io and ours (bin/qcow2.js under
 * QEMU's names) on twin images and compares what QEMU's tools print, timings aside.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must, run } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-blkdebug-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Tool = 'qemu-img' | 'qemu-io';
interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

function ours(tool: Tool, args: string[]): Result {
  const r = spawnSync(path.join(tools, tool), args, { encoding: 'utf8', timeout: 60_000, cwd: dir });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function theirs(tool: Tool, args: string[]): Result {
  const r = spawnSync(tool, args, { encoding: 'utf8', timeout: 60_000, cwd: dir });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Timing lines vary; the side's directory is named alike on both sides. */
function norm(s: string, side: string): string {
  return s
    .replace(/^\d.*ops; .*$/gm, 'TIMING')
    .split(side)
    .join('SIDE');
}

/**
 * Runs `steps` once with QEMU's tools in one directory and once with ours in another (`at(name)`
 * names a file of the side), and returns each step's result per side.
 */
function bothSides(
  name: string,
  steps: (at: (f: string) => string) => [Tool, string[]][],
): { qemu: Result[]; ours: Result[] } {
  const out: { qemu: Result[]; ours: Result[] } = { qemu: [], ours: [] };
  for (const side of ['qemu', 'ours'] as const) {
    const d = path.join(dir, `${name}-${side}`);
    fs.mkdirSync(d, { recursive: true });
    const at = (f: string): string => path.join(d, f);
    for (const [tool, args] of steps(at)) {
      const r = side === 'qemu' ? theirs(tool, args) : ours(tool, args);
      out[side].push({ status: r.status, stdout: norm(r.stdout, d), stderr: norm(r.stderr, d) });
    }
  }
  return out;
}

function expectSame(r: { qemu: Result[]; ours: Result[] }): void {
  expect(r.ours).toEqual(r.qemu);
}

function conf(file: string, text: string): string {
  fs.writeFileSync(file, text);
  return file;
}

describe('blkdebug injected errors (074, 289, 066)', () => {
  it('compare names the image and the offset of a failed read, exit 4', () => {
    expectSame(
      bothSides('compare', (at) => {
        conf(at('bd.conf'), '[inject-error]\nevent = "read_aio"\nerrno = "5"\nonce = "off"\n');
        return [
          ['qemu-img', ['create', '-q', '-f', 'qcow2', at('a.qcow2'), '1M']],
          ['qemu-img', ['create', '-q', '-f', 'qcow2', at('b.qcow2'), '1M']],
          ['qemu-io', ['-c', 'write -P 102 512 512', at('a.qcow2')]],
          ['qemu-img', ['compare', `blkdebug:${at('bd.conf')}:${at('a.qcow2')}`, at('b.qcow2')]],
        ];
      }),
    );
  });

  it('a data write that fails leaves neither a leak nor a mapping (its new cluster goes back)', () => {
    const r = bothSides('abort', (at) => {
      conf(at('bd.conf'), '[inject-error]\nevent = "write_aio"\nerrno = "28"\nonce = "on"\n');
      return [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('t.qcow2'), '1M']],
        [
          'qemu-io',
          ['-c', 'write -P 1 0 64k', '-c', 'write 64k 64k', `blkdebug:${at('bd.conf')}:${at('t.qcow2')}`],
        ],
        ['qemu-img', ['check', at('t.qcow2')]],
        ['qemu-img', ['map', '--output=json', at('t.qcow2')]],
      ];
    });
    expect(r.qemu[1]!.stdout).toContain('write failed: No space left on device');
    expectSame(r);
  });

  it('an external data file under blkdebug (json:) fails the write and keeps the image clean', () => {
    expectSame(
      bothSides('datafile', (at) => {
        conf(at('bd.conf'), '[inject-error]\nevent = "write_aio"\nerrno = "5"\nonce = "on"\n');
        const json = JSON.stringify({
          driver: 'qcow2',
          file: { driver: 'file', filename: at('t.qcow2') },
          'data-file': {
            driver: 'raw',
            file: {
              driver: 'blkdebug',
              config: at('bd.conf'),
              image: { driver: 'file', filename: at('t.data') },
            },
          },
        });
        return [
          [
            'qemu-img',
            ['create', '-q', '-f', 'qcow2', '-o', `data_file=${at('t.data')}`, at('t.qcow2'), '64k'],
          ],
          ['qemu-io', ['-c', 'write 0 64k', `json:${json}`]],
          ['qemu-img', ['check', at('t.qcow2')]],
        ];
      }),
    );
  });

  it('set-state rules: one write_aio event per host-contiguous request', () => {
    expectSame(
      bothSides('state', (at) => {
        const json = JSON.stringify({
          driver: 'qcow2',
          file: {
            driver: 'blkdebug',
            'image.filename': at('t.qcow2'),
            'set-state': [{ event: 'write_aio', new_state: 2 }],
            'inject-error': [{ event: 'write_aio', state: 2, once: true }],
          },
        });
        return [
          ['qemu-img', ['create', '-q', '-f', 'qcow2', at('t.qcow2'), '1M']],
          ['qemu-io', ['-c', 'write -P 42 0 192k', '-c', 'write -z 64k 64k', at('t.qcow2')]],
          ['qemu-io', ['-c', 'write -P 42 0 192k', `json:${json}`]],
          ['qemu-io', ['-c', 'write -P 42 0 64k', '-c', 'write -P 42 64k 64k', `json:${json}`]],
          ['qemu-img', ['check', at('t.qcow2')]],
        ];
      }),
    );
  });

  it('a json: backing file with an injected ENOSPC fails the commit as a block job (020)', () => {
    expectSame(
      bothSides('jsonbacking', (at) => {
        const backing = `json:{'driver': 'qcow2', 'file': { 'driver': 'blkdebug', 'inject-error': [{ 'event': 'write_aio', 'errno': 28, 'once': true }], 'image': { 'driver': 'file', 'filename': '${at('b.qcow2')}' }}}`;
        return [
          ['qemu-img', ['create', '-q', '-f', 'qcow2', at('b.qcow2'), '1M']],
          ['qemu-img', ['create', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', at('t.qcow2')]],
          ['qemu-io', ['-c', 'writev 0 64k', at('t.qcow2')]],
          ['qemu-img', ['commit', at('t.qcow2')]],
        ];
      }),
    );
  });
});

describe('blkdebug limits above a format (204)', () => {
  it('zero writes shorter than opt-write-zero land as data, as through QEMU', () => {
    const opts = 'driver=blkdebug,image.driver=qcow2,align=512,opt-write-zero=1M,max-write-zero=1M';
    expectSame(
      bothSides('limits', (at) => [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', at('t.qcow2'), '8M']],
        ['qemu-io', ['-c', 'write -P 1 0 8M', at('t.qcow2')]],
        ['qemu-io', ['-c', `open -o ${opts} blkdebug::${at('t.qcow2')}`, '-c', 'write -z 768k 2M']],
        ['qemu-io', ['-c', `open -o ${opts} blkdebug::${at('t.qcow2')}`, '-c', 'alloc 7M 5P']],
        ['qemu-img', ['map', at('t.qcow2')]],
      ]),
    );
  });
});

describe('engine behaviours (150, 252, 313, 103, 020)', () => {
  it('convert -S 0 from null-co allocates the whole target', () => {
    expectSame(
      bothSides('nullco', (at) => [
        [
          'qemu-img',
          [
            'convert',
            '-O',
            'qcow2',
            '-S',
            '0',
            "json:{ 'driver': 'null-co', 'size': 1048576, 'read-zeroes': true }",
            at('t.qcow2'),
          ],
        ],
        ['qemu-img', ['map', at('t.qcow2')]],
        [
          'qemu-img',
          [
            'convert',
            '-O',
            'qcow2',
            '-S',
            '512',
            "json:{ 'driver': 'null-co', 'size': 1048576, 'read-zeroes': true }",
            at('u.qcow2'),
          ],
        ],
        ['qemu-img', ['map', at('u.qcow2')]],
      ]),
    );
  });

  it('rebase writes what reads as zeros as zero clusters', () => {
    expectSame(
      bothSides('rebase', (at) => [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('t.qcow2'), '384k']],
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('n.qcow2'), '384k']],
        ['qemu-io', ['-c', 'write -P 0x22 0 128k', at('t.qcow2')]],
        ['qemu-io', ['-c', 'write -P 0x11 256k 64k', at('n.qcow2')]],
        ['qemu-img', ['rebase', '-b', at('n.qcow2'), '-F', 'qcow2', at('t.qcow2')]],
        ['qemu-img', ['map', '--output=json', at('t.qcow2')]],
      ]),
    );
  });

  it('commit writes zeros into the base unmapped', () => {
    expectSame(
      bothSides('commitzero', (at) => [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('b.qcow2'), '1M']],
        ['qemu-io', ['-c', 'write -P 1 0 1M', at('b.qcow2')]],
        ['qemu-img', ['create', '-q', '-f', 'qcow2', '-b', at('b.qcow2'), '-F', 'qcow2', at('t.qcow2')]],
        ['qemu-io', ['-c', 'write -z 0 1M', at('t.qcow2')]],
        ['qemu-img', ['commit', at('t.qcow2')]],
        ['qemu-img', ['map', '--output=json', at('b.qcow2')]],
      ]),
    );
  });

  it('commit -b finds the base relative to the image whose backing file it is', () => {
    expectSame(
      bothSides('commitb', (at) => {
        fs.mkdirSync(at('sub'), { recursive: true });
        return [
          ['qemu-img', ['create', '-q', '-f', 'qcow2', at('sub/b.qcow2'), '1M']],
          ['qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', at('sub/m.qcow2')]],
          ['qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'm.qcow2', '-F', 'qcow2', at('sub/t.qcow2')]],
          ['qemu-img', ['commit', '-b', 'm.qcow2', at('sub/t.qcow2')]],
          ['qemu-img', ['commit', '-b', 'sub/m.qcow2', at('sub/t.qcow2')]],
        ];
      }),
    );
  });

  it('cache-size: its errors and its split, as QEMU', () => {
    expectSame(
      bothSides('cachesize', (at) => [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('t.qcow2'), '64k']],
        ...[
          'cache-size=1.25M,l2-cache-size=1M,refcount-cache-size=0.25M',
          'cache-size=1M,l2-cache-size=2M',
          'cache-size=1M,refcount-cache-size=2M',
          'cache-size=0',
          'cache-size=2M,refcount-cache-size=1M',
        ].map((o): [Tool, string[]] => [
          'qemu-io',
          ['-c', `open -o ${o} ${at('t.qcow2')}`, '-c', 'read 0 64k'],
        ]),
      ]),
    );
  });

  it('discard on a raw file punches a hole: the range reads as zeros (271)', () => {
    expectSame(
      bothSides('rawdiscard', (at) => [
        ['qemu-img', ['create', '-q', '-f', 'raw', at('r.raw'), '1M']],
        ['qemu-io', ['-f', 'raw', '-c', 'write -q -P 7 0 128k', '-c', 'discard -q 4k 64k', at('r.raw')]],
        [
          'qemu-io',
          [
            '-f',
            'raw',
            '-c',
            'read -P 7 0 4k',
            '-c',
            'read -P 0 4k 64k',
            '-c',
            'read -P 7 68k 60k',
            at('r.raw'),
          ],
        ],
      ]),
    );
  });

  it('an unaligned refblock met by a write marks the image corrupt, in QEMU words (305)', () => {
    const poke = (f: string): void => {
      const b = fs.readFileSync(f);
      const reftable = Number(b.readBigUInt64BE(48));
      const fd = fs.openSync(f, 'r+');
      fs.writeSync(fd, Buffer.from([6]), 0, 1, reftable + 14);
      fs.closeSync(fd);
    };
    const r = bothSides('corrupt', (at) => [
      [
        'qemu-img',
        ['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=64,cluster_size=1k', at('t.qcow2'), '1M'],
      ],
      ['qemu-io', ['-c', 'write 0 124k', '-c', 'discard 121k 1k', '-c', 'discard 123k 1k', at('t.qcow2')]],
    ]);
    const after = bothSides('corrupt', (at) => {
      poke(at('t.qcow2'));
      return [['qemu-io', ['-c', 'write 121k 3k', at('t.qcow2')]]];
    });
    expect(after.qemu[0]!.stderr).toContain('Marking image as corrupt');
    expectSame(r);
    expectSame(after);
  });

  it("the Formatting line doubles a string value's commas", () => {
    const r = bothSides('commas', (at) => [
      ['qemu-img', ['create', '-q', '-f', 'qcow2', at('b,x.qcow2'), '1M']],
      [
        'qemu-img',
        ['create', '-f', 'qcow2', '-u', '-b', at('b,x.qcow2'), '-F', 'qcow2', at('t.qcow2'), '1M'],
      ],
    ]);
    expect(r.qemu[1]!.stdout).toContain(',,x.qcow2');
    expectSame(r);
  });

  it('open -o options win over those of a json: name', () => {
    expectSame(
      bothSides('optmerge', (at) => [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('t.qcow2'), '1M']],
        [
          'qemu-io',
          [
            '-c',
            `open -o driver=qcow2 json:{"driver":"raw","file.filename":"${at('t.qcow2')}"}`,
            '-c',
            'info',
          ],
        ],
      ]),
    );
  });
});

describe('qemu-img info of node trees (110)', () => {
  it('names a tree by its file only when nothing else is set; a quorum has no directory', () => {
    const r = bothSides('treeinfo', (at) => {
      const blk = `json:{"driver":"qcow2","file":{"driver":"blkdebug","image":{"driver":"file","filename":"${at('t.qcow2')}"},"set-state":[{"event":"read_aio","new_state":42}]}}`;
      const quorum = `json:{"driver":"qcow2","file":{"driver":"quorum","vote-threshold":1,"children":[{"driver":"file","filename":"${at('t.qcow2')}"},{"driver":"file","filename":"${at('c.qcow2')}"}]}}`;
      return [
        ['qemu-img', ['create', '-q', '-f', 'qcow2', at('b.qcow2'), '1M']],
        ['qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', at('t.qcow2')]],
        ['qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', at('c.qcow2')]],
        [
          'qemu-img',
          ['info', `json:{"driver":"qcow2","file":{"driver":"file","filename":"${at('t.qcow2')}"}}`],
        ],
        ['qemu-img', ['info', blk]],
        ['qemu-img', ['info', quorum]],
      ];
    });
    // json:{...} names are QEMU's own serialisation and disk sizes the file system's (the iotests
    // filter both): compare everything else.
    const strip = (rs: Result[]): Result[] =>
      rs.map((x) => ({
        ...x,
        stdout: x.stdout.replace(/^image: json:.*$/m, 'image: json:{}').replace(/^disk size: .*\n/m, ''),
      }));
    expect(r.qemu[5]!.stdout).toContain('(cannot determine actual path)');
    expect(strip(r.ours)).toEqual(strip(r.qemu));
  });
});

// The suite needs the real tools: fail loudly when they are missing.
describe('qemu tools', () => {
  it('are installed', () => {
    expect(must('qemu-img', ['--version'])).toContain('qemu-img');
    expect(run('qemu-io', ['--version']).stdout).toContain('qemu-io');
  });
});
