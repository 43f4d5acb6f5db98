/**
 * How qemu-io reads are cut (`readerPieces`): every byte in exactly one piece, uniform pieces
 * really uniform, stamped bytes amid zeros dumped by the sector and not by 64 KiB; and through
 * real qemu-io, a sector whose header differs only in its guest offset (a misplaced copy amid
 * zeros) is still found, over both command channels (SEQPACKET socket and pipe).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectedPieces, isUniform, readerPieces } from './model/compare-bytes.ts';
import { stampBytes } from './model/stamp.ts';
import { qemuIoImplementation } from './adapters/qemu-io.ts';
import { plainLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { CommandSession } from './adapters/command-session.ts';

function covers(pieces: { from: number; to: number }[], length: number): boolean {
  let at = 0;
  for (const p of pieces) {
    if (p.from !== at || p.to <= p.from) return false;
    at = p.to;
  }
  return at === length;
}

describe('readerPieces', () => {
  it('dumps a few stamped bytes amid zeros by the sector, and checks the zeros with read -P', () => {
    const expected = new Uint8Array(1 << 20);
    expected.set(stampBytes(7, 0x40200, 136), 0x40200);
    const pieces = readerPieces(expected);
    expect(pieces).toEqual([
      { from: 0, to: 0x40200, uniform: 0 },
      { from: 0x40200, to: 0x40400 },
      { from: 0x40400, to: 1 << 20, uniform: 0 },
    ]);
    // (the 64 KiB cut dumps the whole 64 KiB around them)
    expect(expectedPieces(expected).filter((p) => p.uniform === undefined)).toEqual([
      { from: 0x40000, to: 0x50000 },
    ]);
  });

  it('folds a short uniform run between dumps into them, and keeps a read of one short run uniform', () => {
    const expected = new Uint8Array(8192);
    expected.set(stampBytes(1, 0, 1024), 0);
    expected.set(stampBytes(2, 3072, 1024), 3072); // 2 KiB of zeros between: folded
    expect(readerPieces(expected)).toEqual([
      { from: 0, to: 4096 },
      { from: 4096, to: 8192, uniform: 0 },
    ]);
    expect(readerPieces(new Uint8Array(100).fill(9))).toEqual([{ from: 0, to: 100, uniform: 9 }]);
  });

  it('covers every byte once, and its uniform pieces are uniform (random contents)', () => {
    const run = fc.record({
      byte: fc.integer({ min: 0, max: 3 }),
      length: fc.integer({ min: 1, max: 9000 }),
    });
    fc.assert(
      fc.property(fc.array(run, { minLength: 1, maxLength: 12 }), fc.boolean(), (runs, stamped) => {
        const total = runs.reduce((n, r) => n + r.length, 0);
        const expected = new Uint8Array(total);
        let at = 0;
        for (const [i, r] of runs.entries()) {
          expected.set(
            stamped && i % 2 ? stampBytes(i, at, r.length) : new Uint8Array(r.length).fill(r.byte),
            at,
          );
          at += r.length;
        }
        const pieces = readerPieces(expected);
        expect(covers(pieces, total)).toBe(true);
        for (const p of pieces) {
          if (p.uniform !== undefined) expect(isUniform(expected, p.uniform, p.from, p.to)).toBe(true);
          else expect(p.to - p.from).toBeLessThanOrEqual(1 << 20);
        }
      }),
      { seed: 8, numRuns: 200 },
    );
  });
});

describe('qemu-io verify with sector-sized dumps', () => {
  for (const channel of ['seqpacket', 'pipe'] as const) {
    it(`finds a sector whose header names another guest offset, amid zeros (${channel})`, async () => {
      await requireQemuTools();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reader-pieces-'));
      const before = process.env.QCOW2_FUZZ_STDIN_PIPE;
      if (channel === 'pipe') process.env.QCOW2_FUZZ_STDIN_PIPE = '1';
      else delete process.env.QCOW2_FUZZ_STDIN_PIPE;
      const im = qemuIoImplementation();
      const channels = new Set<string>();
      CommandSession.tap = (session) => channels.add(session.channel);
      try {
        const handle = await im.create(path.join(dir, 'disk.qcow2'), plainLayout());
        // write #2's sector for guest 0x30200, landed at 0x10200 (a misplaced copy)
        await handle.write(0x10200, stampBytes(2, 0x30200, 512), { stamp: 2 });
        const expected = new Uint8Array(0x20000);
        expected.set(stampBytes(2, 0x10200, 512), 0x200); // what belongs at 0x10200
        const mismatch = await handle.verify(0x10000, expected);
        // the first differing byte is in the header's guest offset digits (`…@000000010200:`)
        expect(mismatch?.offset).toBe(0x10200 + 18);
        expect(await handle.verify(0x10000, expected.fill(0, 0x200, 0x400))).toMatchObject({
          offset: 0x10200,
        });
        const right = new Uint8Array(0x20000);
        right.set(stampBytes(2, 0x30200, 512), 0x200);
        expect(await handle.verify(0x10000, right)).toBeUndefined();
        await handle.dispose();
        // (Linux: the socket unless the pipe is asked for)
        expect([...channels]).toEqual([process.platform === 'linux' ? channel : 'pipe']);
      } finally {
        CommandSession.tap = undefined;
        await im.shutdown();
        if (before === undefined) delete process.env.QCOW2_FUZZ_STDIN_PIPE;
        else process.env.QCOW2_FUZZ_STDIN_PIPE = before;
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }, 60_000);
  }
});
