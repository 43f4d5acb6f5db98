/**
 * `aio_write -P … ; … ; aio_flush`: 2–4 requests in flight together, aimed where QEMU's
 * allocation races live — sub-ranges of one cluster (overlapping or not: COW of the same cluster),
 * different clusters of one L2 table (the table's allocation and its entries' updates), or
 * clusters of as many different L2 tables (each allocating a table and a data cluster, which
 * soon needs a fresh refcount block). Each request has its own pattern, so the order in which
 * overlapping ones landed shows in the bytes (model/aio-orders.ts). With qemu-io, the first
 * request to reach a chosen allocation step (a blkdebug event: data write, cluster allocation, L2
 * table allocation or update, copy-on-write, refcount block allocation) is held there while the
 * others are submitted, so they really run while it is half done.
 */
import type { DiskModel } from '../model/disk-model.ts';
import { AIO_HOLDS, type AioHold, type AioWrite, type Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export type AioTarget = 'same-cluster' | 'same-l2' | 'spread';

export interface AioBatchSeed {
  target: AioTarget;
  start: number;
  /** One seed per request (2–4). */
  parts: number[];
  pattern: number;
}

export class AioBatchCommand extends StepCommand {
  constructor(private readonly seed: AioBatchSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const hold = aioHold(this.seed);
    const writes = aioWrites(this.seed, model);
    return [hold ? { kind: 'aio-batch', writes, hold } : { kind: 'aio-batch', writes }];
  }

  protected describeSeed(): string {
    const hold = aioHold(this.seed);
    return `aio_write ×${this.seed.parts.length} (${this.seed.target}${hold ? `, hold at ${hold}` : ''})`;
  }
}

/**
 * Which blkdebug event the batch holds its first request at, from the seed's pattern number: one
 * batch in seven holds none (requests overlap only while their I/O is in flight), and shrinking
 * the pattern towards 0 drops the hold.
 */
export function aioHold(seed: AioBatchSeed): AioHold | undefined {
  const k = seed.pattern % (AIO_HOLDS.length + 1);
  return k === 0 ? undefined : AIO_HOLDS[k - 1];
}

/** Entries (clusters) one L2 table maps: a cluster of 8-byte entries, 16 with extended L2. */
function l2Entries(model: DiskModel): number {
  return model.clusterSize / (model.layout.extendedL2 ? 16 : 8);
}

export function aioWrites(seed: AioBatchSeed, model: DiskModel): AioWrite[] {
  const cs = model.clusterSize;
  const size = model.size;
  const clusters = Math.max(1, Math.ceil(size / cs));
  const span = l2Entries(model) * cs;
  const tables = Math.max(1, Math.ceil(size / span));
  // distinct non-zero patterns within the batch
  const pattern = (i: number): number => 1 + ((seed.pattern + i * 37) % 255);
  const recent = model.recent[seed.start % Math.max(1, model.recent.length)];
  return seed.parts.map((part, i): AioWrite => {
    let lo: number;
    let hi: number;
    switch (seed.target) {
      case 'same-cluster': {
        // the cluster of a recent write (over data: COW) or any cluster
        // (a recent range may lie beyond a disk shrunk since)
        const c = Math.min(
          clusters - 1,
          recent && seed.start % 3 !== 0 ? Math.floor(recent.offset / cs) : seed.start % clusters,
        );
        lo = c * cs;
        hi = Math.min(size, lo + cs);
        break;
      }
      case 'same-l2': {
        const t = seed.start % tables;
        const k = part % l2Entries(model);
        lo = Math.min(t * span + k * cs, Math.max(0, size - 1));
        hi = Math.min(size, lo + cs);
        break;
      }
      case 'spread': {
        const t = (seed.start + i * (1 + (part % 7))) % tables;
        lo = Math.min(t * span + (part % Math.max(1, Math.min(span, size) / cs)) * cs, Math.max(0, size - 1));
        lo -= lo % Math.min(cs, 512);
        hi = Math.min(size, lo + cs);
        break;
      }
    }
    const room = Math.max(1, hi - lo);
    // half the requests sector-aligned, whole clusters now and then
    const whole = part % 5 === 0;
    let offset = whole ? lo : lo + ((part >> 3) % room);
    if (!whole && part % 2 === 0) offset -= (offset - lo) % 512;
    const length = whole ? room : 1 + ((part >> 11) % (hi - offset));
    return { offset, length, pattern: pattern(i) };
  });
}
