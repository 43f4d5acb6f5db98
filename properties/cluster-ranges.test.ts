import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ClusterRanges } from './model/cluster-ranges.ts';

describe('ClusterRanges', () => {
  it('behaves as a Set of cluster indices under add/remove/truncate', () => {
    const op = fc.tuple(fc.constantFrom('add', 'remove', 'truncate'), fc.nat(60), fc.nat(12));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const ranges = new ClusterRanges();
        const set = new Set<number>();
        for (const [kind, first, n] of ops) {
          if (kind === 'add') {
            ranges.add(first, first + n);
            for (let c = first; c < first + n; c++) set.add(c);
          } else if (kind === 'remove') {
            ranges.remove(first, first + n);
            for (let c = first; c < first + n; c++) set.delete(c);
          } else {
            ranges.truncateFrom(first);
            for (const c of [...set]) if (c >= first) set.delete(c);
          }
          const copy = ranges.clone();
          for (let c = 0; c < 80; c++) expect(copy.has(c)).toBe(set.has(c));
          for (let c = 0; c < 75; c += 3) {
            const any = [c, c + 1, c + 2, c + 3, c + 4].some((x) => set.has(x));
            expect(ranges.intersects(c, c + 5)).toBe(any);
          }
          // disjoint, sorted, non-adjacent
          const r = ranges.ranges();
          for (let k = 1; k < r.length; k++) expect(r[k][0]).toBeGreaterThan(r[k - 1][1]);
        }
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});
