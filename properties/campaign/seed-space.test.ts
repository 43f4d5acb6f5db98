import { describe, expect, it } from 'vitest';
import {
  BLOCK,
  fromRanges,
  globalIndex,
  parseShard,
  sequenceSeed,
  shardFrom,
  ShardSyntaxError,
  toRanges,
} from './seed-space.ts';

describe('seed space', () => {
  it('sequence i depends on (seed, i) only; block 0 is fast-check runs of the seed itself', () => {
    expect(sequenceSeed(42, 7)).toEqual({ seed: 42, path: '7' });
    const a = sequenceSeed(42, BLOCK * 3 + 5);
    expect(a).toEqual(sequenceSeed(42, BLOCK * 3 + 5));
    expect(a.path).toBe('5');
    expect(a.seed).not.toBe(42);
    expect(sequenceSeed(43, BLOCK * 3 + 5).seed).not.toBe(a.seed);
    expect(sequenceSeed(42, BLOCK * 4).seed).not.toBe(a.seed);
  });

  it('shards are disjoint and cover every index', () => {
    const n = 3;
    const seen = new Map<number, number>();
    for (let k = 0; k < n; k++)
      for (let j = 0; j < 10; j++) {
        const i = globalIndex(parseShard(`${k}/${n}`), j);
        expect(seen.has(i)).toBe(false);
        seen.set(i, k);
      }
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  it('takes K from a Kubernetes Indexed Job and N from an option or JOB_COMPLETIONS', () => {
    expect(shardFrom(undefined, undefined, {})).toEqual({ index: 0, count: 1 });
    expect(shardFrom(undefined, undefined, { JOB_COMPLETION_INDEX: '2', JOB_COMPLETIONS: '4' })).toEqual({
      index: 2,
      count: 4,
    });
    expect(shardFrom(undefined, 5, { JOB_COMPLETION_INDEX: '1' })).toEqual({ index: 1, count: 5 });
    expect(shardFrom('1/2', undefined, { JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '4' })).toEqual({
      index: 1,
      count: 2,
    });
    expect(() => shardFrom(undefined, undefined, { JOB_COMPLETION_INDEX: '1' })).toThrow(ShardSyntaxError);
    expect(() => parseShard('2/2')).toThrow(ShardSyntaxError);
    expect(() => parseShard('a/b')).toThrow(ShardSyntaxError);
  });

  it('keeps index sets as ranges', () => {
    expect(toRanges([5, 1, 2, 3, 9, 10])).toEqual([
      [1, 3],
      [5, 5],
      [9, 10],
    ]);
    expect(fromRanges(toRanges([4, 0, 2, 3]))).toEqual([0, 2, 3, 4]);
  });
});
