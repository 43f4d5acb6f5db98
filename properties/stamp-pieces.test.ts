/**
 * Stamped data made piece by piece (`stampInto`, what the model does chunk by chunk) is the same
 * stream as the whole write's bytes (`stampBytes`, what the implementation gets), at every cut.
 */
import { describe, expect, it } from 'vitest';
import { stampBytes, stampInto, STAMP_HEADER, STAMP_SECTOR } from './model/stamp.ts';
import { ReferenceDisk } from './model/reference-disk.ts';

describe('stamped data in pieces', () => {
  it('equals the whole stream for cuts inside headers, at sector edges and anywhere', () => {
    let s = 7;
    const rnd = (n: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s % n;
    };
    for (let trial = 0; trial < 300; trial++) {
      const id = 1 + rnd(5000);
      const offset = rnd(1 << 30);
      const length = 1 + rnd(4 * STAMP_SECTOR + 100);
      const whole = stampBytes(id, offset, length);
      const cuts = [0, length];
      for (let k = 0; k < 4; k++) cuts.push(rnd(length + 1));
      cuts.push(Math.min(length, STAMP_HEADER - 1), Math.min(length, STAMP_SECTOR + 5));
      cuts.sort((a, b) => a - b);
      const pieces = new Uint8Array(length + 16).fill(0xee);
      for (let i = 0; i + 1 < cuts.length; i++)
        stampInto(pieces, 8 + cuts[i]!, id, offset, cuts[i]!, cuts[i + 1]!);
      expect(Buffer.from(pieces.subarray(8, 8 + length)).equals(Buffer.from(whole)), `trial ${trial}`).toBe(
        true,
      );
      // nothing written outside the range
      expect(pieces.subarray(0, 8).every((b) => b === 0xee)).toBe(true);
      expect(pieces.subarray(8 + length).every((b) => b === 0xee)).toBe(true);
    }
    // the stream's start: header `#w<id>@<guest>:` then the fill letter
    expect(Buffer.from(stampBytes(0x11, 0x30200, 26)).toString('latin1')).toBe('#w00000011@000000030200:RR');
  });

  it('equals the format spelled out with strings, across a carry into the high half of the offset', () => {
    const FILL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
    const spelled = (id: number, offset: number, length: number): string => {
      let text = '';
      for (let s = 0; s * STAMP_SECTOR < length; s++)
        text +=
          `#w${id.toString(16).padStart(8, '0')}@${(offset + s * STAMP_SECTOR).toString(16).padStart(12, '0')}:`.padEnd(
            STAMP_SECTOR,
            FILL[id % FILL.length],
          );
      return text.slice(0, length);
    };
    for (const [id, offset, length] of [
      [3, 0x1000000 - 700, 2000],
      [77, 0xfffffe00, 1536],
      [0x1234, 0x7ffffffffe00 - 5 * STAMP_SECTOR, 9 * STAMP_SECTOR + 11],
      [9, 0, 1],
    ] as const)
      expect(Buffer.from(stampBytes(id, offset, length)).toString('latin1')).toBe(
        spelled(id, offset, length),
      );
  });

  it('a reference disk stamped across chunk edges reads back the whole stream', () => {
    const disk = new ReferenceDisk(1 << 20);
    const id = 42;
    const offset = (1 << 16) - 700; // starts 700 bytes before a 64 KiB chunk edge
    const length = (1 << 16) + 1500; // and crosses the next one
    disk.fill(0, 1 << 20, 9); // over shared one-byte chunks (copied before written)
    disk.writeWith(offset, length, (dst, dstAt, from, to) => stampInto(dst, dstAt, id, offset, from, to));
    expect(Buffer.from(disk.read(offset, length)).equals(Buffer.from(stampBytes(id, offset, length)))).toBe(
      true,
    );
    expect(disk.read(offset - 1, 1)[0]).toBe(9);
    expect(disk.read(offset + length, 1)[0]).toBe(9);
  });
});
