/** Block status asked once per run by walks in smaller pieces (compare, convert): not quadratic. */
import { describe, expect, it } from 'vitest';
import type { BlockStatus, GuestDisk } from '../../src/api.ts';
import { StatusRuns } from '../../src/cli/status-runs.ts';

const MiB = 1 << 20;

describe('StatusRuns', () => {
  it('asks block status once per run and gives the rest of the run with the host offset moved', () => {
    const asked: Array<[number, number]> = [];
    // Data in [0, 8 MiB) at host 1 MiB, then zeros to 16 MiB.
    const disk = {
      blockStatus(offset: number, length: number): BlockStatus {
        asked.push([offset, length]);
        const base = { offset, depth: 0, compressed: false, filename: 'd' };
        return offset < 8 * MiB
          ? {
              ...base,
              length: 8 * MiB - offset,
              present: true,
              zero: false,
              data: true,
              hostOffset: MiB + offset,
            }
          : { ...base, length: 16 * MiB - offset, present: false, zero: true, data: false };
      },
    } as unknown as GuestDisk;
    const runs = new StatusRuns(disk, 16 * MiB);
    for (let off = 0; off < 16 * MiB; off += MiB) {
      const s = runs.at(off);
      expect(s.offset).toBe(off);
      expect(s.length).toBe((off < 8 * MiB ? 8 * MiB : 16 * MiB) - off);
      expect(s.hostOffset).toBe(off < 8 * MiB ? MiB + off : undefined);
      expect(s.data).toBe(off < 8 * MiB);
    }
    expect(asked).toEqual([
      [0, 16 * MiB],
      [8 * MiB, 8 * MiB],
    ]);
    // Going back before the run asks again.
    runs.at(3 * MiB);
    expect(asked.at(-1)).toEqual([3 * MiB, 13 * MiB]);
  });
});
