/** The bitmap model's rules (docs/bitmaps.md, measured on QEMU 7.2) and the bitmap step syntax. */
import { describe, expect, it } from 'vitest';
import { BitmapsModel } from './model/bitmaps.ts';
import { formatStep, parseStep, type Step } from './steps.ts';

const M = 1 << 20;

describe('bitmap model', () => {
  it('rounds every change out to the granularity; disabled bitmaps stay clean', () => {
    const m = new BitmapsModel([
      { name: 'b0', granularityBits: 16, disabled: false },
      { name: 'b1', granularityBits: 9, disabled: false },
      { name: 'b2', granularityBits: 16, disabled: true },
    ]);
    m.record(3000000, 10, 64 * M);
    expect(m.require('b0').dirtyRanges(64 * M)).toEqual([{ offset: 2949120, length: 65536 }]);
    expect(m.require('b1').dirtyRanges(64 * M)).toEqual([{ offset: 2999808, length: 512 }]);
    expect(m.require('b2').dirtyRanges(64 * M)).toEqual([]);
  });

  it('a shrink keeps the bit that straddles the new end; a grow adds clean bits', () => {
    const m = new BitmapsModel([{ name: 'b', granularityBits: 16, disabled: false }]);
    m.record(M, 2 * M, 8 * M);
    m.resize(M + 4096); // bit 16 covers [1M, 1M + 64k): kept, cut at the end
    expect(m.require('b').dirtyRanges(M + 4096)).toEqual([{ offset: M, length: 4096 }]);
    m.resize(8 * M);
    expect(m.require('b').dirtyRanges(8 * M)).toEqual([{ offset: M, length: 65536 }]);
  });

  it('merge rounds the source ranges out to the target granularity', () => {
    const m = new BitmapsModel([
      { name: 'fine', granularityBits: 9, disabled: false },
      { name: 'big', granularityBits: 20, disabled: true },
    ]);
    m.record(1000, 10, 64 * M);
    m.merge('fine', 'big', 64 * M);
    expect(m.require('big').dirtyRanges(64 * M)).toEqual([{ offset: 0, length: M }]);
  });

  it('bitmap steps print as qemu-img bitmap options and parse back', () => {
    const steps: Step[] = [
      { kind: 'bitmap', op: 'add', name: 'b0', granularity: 65536, disabled: true },
      { kind: 'bitmap', op: 'add', name: 'b1', granularity: 512, disabled: false },
      { kind: 'bitmap', op: 'remove', name: 'b0' },
      { kind: 'bitmap', op: 'clear', name: 'b1' },
      { kind: 'bitmap', op: 'enable', name: 'b1' },
      { kind: 'bitmap', op: 'disable', name: 'b1' },
      { kind: 'bitmap', op: 'merge', source: 'b0', name: 'b1' },
    ];
    expect(formatStep(steps[0])).toBe('bitmap --add -g 65536 --disable b0');
    expect(formatStep(steps[6])).toBe('bitmap --merge b0 b1');
    for (const s of steps) expect(parseStep(formatStep(s))).toEqual(s);
  });
});
