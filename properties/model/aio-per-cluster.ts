/**
 * When an overlapping `aio_write` group holds no serial order of its requests (aio-orders.ts), is
 * it still, cluster by cluster, the result of *some* serial order — a different one per cluster?
 * That is how QEMU 7.2 lands overlapping in-flight writes: qcow2 splits each request into one piece
 * per cluster run, the pieces of different requests are not serialised against one another, so a
 * request can land before another in one cluster and after it in the next (known bug
 * qemu-7.2-overlapping-aio-torn-per-cluster). The wording names the boundaries a request was torn
 * at, so that a known-bug signature can match this exact shape and nothing looser: bytes that are
 * not even per-cluster serial get no such wording and stay a new failure.
 */
import type { AioWrite } from '../steps.ts';
import type { AioGroup } from './aio-orders.ts';

function permutations(items: readonly number[]): number[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((first, k) =>
    permutations([...items.slice(0, k), ...items.slice(k + 1)]).map((rest) => [first, ...rest]),
  );
}

export interface PerClusterSerial {
  /** Guest offsets of the cluster boundaries where no one serial order fits both sides. */
  tornAt: number[];
  /** Per cluster piece of the range: its guest offset and one serial order its bytes are. */
  pieces: { offset: number; order: number[] }[];
}

/**
 * `got` (the group's union range as the image holds it) seen per cluster: each cluster's slice
 * must equal the slice of some serial order's result over `before`; undefined when one does not.
 */
export function perClusterSerial(
  writes: readonly AioWrite[],
  group: AioGroup,
  before: Uint8Array,
  got: Uint8Array,
  clusterSize: number,
): PerClusterSerial | undefined {
  const results = permutations(group.members).map((order) => {
    const bytes = before.slice();
    for (const i of order) {
      const w = writes[i];
      bytes.fill(w.pattern, w.offset - group.offset, w.offset - group.offset + w.length);
    }
    return { order, bytes };
  });
  const end = group.offset + group.length;
  const fits: { offset: number; orders: Set<number> }[] = [];
  for (let at = group.offset; at < end;) {
    const next = Math.min(end, (Math.floor(at / clusterSize) + 1) * clusterSize);
    const from = at - group.offset;
    const to = next - group.offset;
    const slice = got.subarray(from, to);
    const orders = new Set<number>();
    results.forEach((r, k) => {
      if (Buffer.compare(r.bytes.subarray(from, to), slice) === 0) orders.add(k);
    });
    if (orders.size === 0) return undefined;
    fits.push({ offset: at, orders });
    at = next;
  }
  const tornAt: number[] = [];
  for (let c = 1; c < fits.length; c++)
    if (![...fits[c].orders].some((k) => fits[c - 1].orders.has(k))) tornAt.push(fits[c].offset);
  return {
    tornAt,
    pieces: fits.map((f) => ({ offset: f.offset, order: results[[...f.orders][0]].order })),
  };
}

/** e.g. "per cluster a serial order (0x0: 0,1,2; 0x10000: 1,0,2), torn at cluster boundary 0x10000". */
export function describePerCluster(p: PerClusterSerial): string {
  const hex = (n: number): string => `0x${n.toString(16)}`;
  const pieces = p.pieces.map((x) => `${hex(x.offset)}: ${x.order.join(',')}`).join('; ');
  const torn =
    p.tornAt.length > 0
      ? `torn at cluster boundary ${p.tornAt.map(hex).join(', ')}`
      : 'but no one order across all clusters';
  return `per cluster a serial order (${pieces}), ${torn}`;
}
