import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ReferenceDisk } from './model/reference-disk.ts';

type Op =
  | { kind: 'fill'; offset: number; length: number; byte: number }
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'resize'; size: number }
  | { kind: 'clone' };

describe('ReferenceDisk', () => {
  it('behaves as a flat byte array (fill, resize, clone, runs)', () => {
    const max = 300_000;
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constant('fill' as const),
        offset: fc.nat(max),
        length: fc.nat(140_000),
        byte: fc.nat(255),
      }),
      fc.record({
        kind: fc.constant('write' as const),
        offset: fc.nat(max),
        length: fc.nat(70_000),
        seed: fc.nat(255),
      }),
      fc.record({ kind: fc.constant('resize' as const), size: fc.nat(max) }),
      fc.constant({ kind: 'clone' as const }),
    );
    fc.assert(
      fc.property(fc.nat(max), fc.array(op, { maxLength: 30 }), (size0, ops) => {
        let disk = new ReferenceDisk(size0);
        let flat = new Uint8Array(size0);
        const clones: [ReferenceDisk, Uint8Array][] = [];
        for (const o of ops) {
          if (o.kind === 'fill') {
            const offset = Math.min(o.offset, flat.length);
            const length = Math.min(o.length, flat.length - offset);
            disk.fill(offset, length, o.byte);
            flat.fill(o.byte, offset, offset + length);
          } else if (o.kind === 'write') {
            const offset = Math.min(o.offset, flat.length);
            const length = Math.min(o.length, flat.length - offset);
            const data = new Uint8Array(length);
            for (let i = 0; i < length; i += 97) data[i] = o.seed + i;
            disk.write(offset, data);
            flat.set(data, offset);
          } else if (o.kind === 'resize') {
            disk.resize(o.size);
            const next = new Uint8Array(o.size);
            next.set(flat.subarray(0, Math.min(o.size, flat.length)));
            flat = next;
          } else {
            clones.push([disk.clone(), flat.slice()]);
          }
        }
        expect(disk.size).toBe(flat.length);
        expect(Buffer.compare(disk.read(0, disk.size), flat)).toBe(0);
        // into a reused buffer: holes are written as zeros over what the buffer held
        const reused = new Uint8Array(disk.size).fill(0xa5);
        disk.readInto(0, reused);
        expect(Buffer.compare(reused, flat)).toBe(0);
        let at = 0;
        for (const run of disk.runs(0, disk.size)) {
          expect(run.offset).toBe(at);
          expect(flat.subarray(run.offset, run.offset + run.length).every((b) => b === run.pattern)).toBe(
            true,
          );
          at += run.length;
        }
        expect(at).toBe(flat.length);
        for (const [c, f] of clones) expect(Buffer.compare(c.read(0, c.size), f)).toBe(0);
        disk = new ReferenceDisk(0);
      }),
      { numRuns: 200 },
    );
  });

  it('shares whole-chunk fills of one byte, and a write into one copies it first', () => {
    const a = new ReferenceDisk(1 << 20);
    const b = new ReferenceDisk(1 << 20);
    a.fill(0, 1 << 20, 0x5a);
    b.fill(0, 1 << 20, 0x5a);
    a.write(70_000, new Uint8Array([1, 2, 3]));
    expect(b.isZeroRange(0, 1 << 20)).toBe(false);
    expect(b.runs(0, 1 << 20)).toEqual([{ offset: 0, length: 1 << 20, pattern: 0x5a }]);
    expect(a.runs(0, 1 << 20)).toEqual([
      { offset: 0, length: 70_000, pattern: 0x5a },
      { offset: 70_000, length: 1, pattern: 1 },
      { offset: 70_001, length: 1, pattern: 2 },
      { offset: 70_002, length: 1, pattern: 3 },
      { offset: 70_003, length: (1 << 20) - 70_003, pattern: 0x5a },
    ]);
    // a partial fill and a shrink's tail cut also copy the shared chunk first
    a.fill(0, 10, 9);
    a.resize(65_536 * 3 + 5);
    b.resize(1 << 20);
    expect(Buffer.compare(b.read(0, 1 << 20), Buffer.alloc(1 << 20, 0x5a))).toBe(0);
    expect(a.read(0, 12)).toEqual(Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0x5a, 0x5a]));
    a.resize(65_536 * 4);
    expect(a.isZeroRange(65_536 * 3 + 5, 65_536 - 5)).toBe(true);
    expect(b.isZeroRange(65_536 * 3, 65_536)).toBe(false);
  });

  it('costs nothing for a sparse 1 GiB disk', () => {
    const disk = new ReferenceDisk(1 << 30);
    disk.fill((1 << 30) - 10, 10, 7);
    expect(disk.runs(0, 1 << 30)).toEqual([
      { offset: 0, length: (1 << 30) - 10, pattern: 0 },
      { offset: (1 << 30) - 10, length: 10, pattern: 7 },
    ]);
  });
});
