/**
 * Regression from qemu-iotest 098: `qemu-img commit` empties a v3 top image as QEMU's
 * make_completely_empty does (src/engine/make-empty.ts). The same steps run with our CLI (as
 * `qemu-img`/`qemu-io`) and with QEMU's tools; the layout after a successful commit, and the
 * messages of a commit failed by blkdebug at each event and of the repairing open after it, must
 * match. Our CLI runs from the build (bin/qcow2.js → dist).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-empty-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Side = 'ours' | 'qemu';

/** A tool of one side, its stdout and stderr together; the real tools must be installed. */
function tool(side: Side, name: 'qemu-img' | 'qemu-io', args: string[]): string {
  const exe = side === 'ours' ? path.join(tools, name) : name;
  const r = spawnSync(exe, args, { encoding: 'utf8', timeout: 120_000, cwd: dir });
  if (r.error) throw r.error;
  return `${r.stdout}${r.stderr}exit ${r.status ?? -1}\n`;
}

/** Base and top (backing base) with 64 KiB of data in the top; returns the top's name. */
function prepare(side: Side, tag: string): string {
  const base = path.join(dir, `${side}-${tag}.base`);
  const top = path.join(dir, `${side}-${tag}.qcow2`);
  tool(side, 'qemu-img', ['create', '-f', 'qcow2', base, '64M']);
  tool(side, 'qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top, '64M']);
  tool(side, 'qemu-io', ['-c', 'write 0 64k', top]);
  return top;
}

/** Header fields and refcount table entries, the dirty bit and the file's length. */
function layout(file: string): string {
  const b = fs.readFileSync(file);
  const rt = Number(b.readBigUInt64BE(48));
  const cs = 2 ** b.readUInt32BE(20);
  const blocks: string[] = [];
  for (let i = 0; i < (b.readUInt32BE(56) * cs) / 8; i++) {
    const e = b.readBigUInt64BE(rt + i * 8);
    if (e !== 0n) blocks.push(`${i}:0x${e.toString(16)}`);
  }
  const dirty = b.readUInt32BE(4) >= 3 ? b.readBigUInt64BE(72) & 1n : 0n; // (v2 has no dirty bit)
  return `l1 0x${b.readBigUInt64BE(40).toString(16)} reftable 0x${rt.toString(16)} blocks ${blocks.join(',')} dirty ${dirty} length ${b.length}`;
}

const sides: Side[] = ['ours', 'qemu'];

describe('qemu-img commit empties the top image as QEMU 7.2 does (iotest 098)', () => {
  it('a successful commit leaves header, reftable, one refblock and the L1 table, clean', () => {
    const got = sides.map((side) => {
      const top = prepare(side, 'ok');
      const out = tool(side, 'qemu-img', ['commit', top]);
      return [out, layout(top), tool(side, 'qemu-img', ['check', top]).replace(top, 'TOP')].join('\n');
    });
    expect(got[0]).toContain('l1 0x30000 reftable 0x10000 blocks 0:0x20000 dirty 0 length 262144');
    expect(got[0]).toBe(got[1]);
  });

  it('a v2 image (no dirty bit) is emptied by discarding every cluster instead', () => {
    const got = sides.map((side) => {
      const base = path.join(dir, `${side}-v2.base`);
      const top = path.join(dir, `${side}-v2.qcow2`);
      tool(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'compat=0.10', base, '64M']);
      tool(side, 'qemu-img', [
        'create',
        '-f',
        'qcow2',
        '-o',
        'compat=0.10',
        '-b',
        base,
        '-F',
        'qcow2',
        top,
        '64M',
      ]);
      tool(side, 'qemu-io', ['-c', 'write 0 64k', top]);
      const out = tool(side, 'qemu-img', ['commit', top]);
      const map = tool(side, 'qemu-img', ['map', '--output=json', top]).split(base).join('BASE');
      return [out, layout(top).replace(/ length \d+/, ''), map, tool(side, 'qemu-img', ['check', top])]
        .join('\n')
        .split(top)
        .join('TOP');
    });
    // (the discard path leaves the structures where creation put them)
    expect(got[0]).toContain('l1 0x30000 reftable 0x10000 blocks 0:0x20000 dirty 0');
    expect(got[0]).toBe(got[1]);
  });

  for (const event of ['l1_update', 'empty_image_prepare', 'reftable_update', 'refblock_alloc']) {
    it(`an error injected at ${event}: the same failure, repair and check`, () => {
      const got = sides.map((side) => {
        const top = prepare(side, event);
        const conf = path.join(dir, `${side}-${event}.conf`);
        fs.writeFileSync(conf, `[inject-error]\nevent = "${event}"\n`);
        const out = [
          tool(side, 'qemu-img', ['commit', `blkdebug:${conf}:${top}`]),
          tool(side, 'qemu-io', ['-c', 'close', top]),
          tool(side, 'qemu-img', ['check', top]),
        ].join('');
        return out.split(conf).join('CONF').split(top).join('TOP');
      });
      expect(got[0]).toContain('Failed to empty blkdebug:CONF:TOP: Input/output error');
      expect(got[0]).toBe(got[1]);
    });
  }
});
