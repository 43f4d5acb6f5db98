/**
 * What a batch of `aio_write` requests in flight together may leave on the disk. Requests that
 * overlap no other give one result whatever the order; requests that overlap (directly or through
 * a chain) form a group whose result is that of *some* serial order of the group's requests —
 * each request lands whole, one after another — and nothing else (no torn mix of two requests).
 * The model therefore lists the candidate outcomes of every group (each distinct result of its
 * permutations, once) and accepts the image's bytes when they equal one of them.
 */
import type { AioWrite } from '../steps.ts';

export interface AioGroup {
  /** Indices into the batch, in submission order. */
  members: number[];
  /** The union range the group covers. */
  offset: number;
  length: number;
}

/** Groups of requests connected by overlaps, in order of their first member. */
export function overlapGroups(writes: readonly AioWrite[]): AioGroup[] {
  const parent = writes.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (let i = 0; i < writes.length; i++)
    for (let j = i + 1; j < writes.length; j++) {
      const a = writes[i];
      const b = writes[j];
      if (a.offset < b.offset + b.length && b.offset < a.offset + a.length) parent[find(j)] = find(i);
    }
  const byRoot = new Map<number, number[]>();
  writes.forEach((_, i) => {
    const r = find(i);
    byRoot.set(r, [...(byRoot.get(r) ?? []), i]);
  });
  return [...byRoot.values()].map((members) => {
    const offset = Math.min(...members.map((i) => writes[i].offset));
    const end = Math.max(...members.map((i) => writes[i].offset + writes[i].length));
    return { members, offset, length: end - offset };
  });
}

function permutations(items: readonly number[]): number[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((first, k) =>
    permutations([...items.slice(0, k), ...items.slice(k + 1)]).map((rest) => [first, ...rest]),
  );
}

export interface Candidate {
  /** A serial order giving this result (request indices). */
  order: number[];
  /** The group's bytes over its union range, on top of `before`. */
  bytes: Uint8Array;
}

/** The distinct results of the group's serial orders over `before` (the union range's bytes before the batch). */
export function groupCandidates(
  writes: readonly AioWrite[],
  group: AioGroup,
  before: Uint8Array,
): Candidate[] {
  const seen = new Map<string, Candidate>();
  for (const order of permutations(group.members)) {
    const bytes = before.slice();
    for (const i of order) {
      const w = writes[i];
      bytes.fill(w.pattern, w.offset - group.offset, w.offset - group.offset + w.length);
    }
    const key = Buffer.from(bytes).toString('latin1');
    if (!seen.has(key)) seen.set(key, { order, bytes });
  }
  return [...seen.values()];
}

/** The whole batch's serial order when each group landed in `orders[g]` (groups in their order). */
export function batchOrder(groups: readonly AioGroup[], orders: readonly number[][]): number[] {
  return groups.flatMap((_, g) => orders[g]);
}
