/**
 * Motif: compressed clusters packed by QEMU, freed by the implementation under test. One qemu-io
 * turn writes a run of clusters with `write -c`; QEMU's byte allocator (qcow2_alloc_bytes) packs
 * compressed clusters back to back and, when the next one does not fit in the current host
 * cluster and the next host cluster is free, lets it run on into that one: some compressed
 * clusters straddle two host clusters (qcow2.txt "Compressed Clusters Descriptor": the data may
 * span host clusters, and each host cluster it touches holds one reference for it). Then the
 * implementation overwrites (whole or part), zeroes or discards some of them, reads them, and —
 * half the time at once — `check` looks at the refcounts: freeing a straddling cluster must drop
 * one reference from each host cluster it touched. The turn is a fresh qemu-io process that
 * writes only compressed data, so QEMU's own packing state starts empty.
 */
import { deflateRawSync } from 'node:zlib';
import type { DiskModel } from '../model/disk-model.ts';
import { stampBytes } from '../model/stamp.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { CompressedWriteCommand } from './compressed-write-command.ts';
import { MotifScratch } from './motif-scratch.ts';

export type PackedFree = 'overwrite' | 'overwrite-part' | 'zero' | 'zero-unmap' | 'discard';

export interface PackedCompressedSeed {
  start: number;
  /**
   * How many host clusters the run's compressed data should fill (the run's length follows from
   * how well its data compresses; capped to MAX_RUN_BYTES of guest data).
   */
  hosts: number;
  /** Stamped data (undefined) or a pattern (compresses to almost nothing: packs many per host cluster). */
  pattern?: number;
  free: PackedFree[];
  /** The first free covers the whole run. */
  whole: boolean;
  at: number;
  span: number;
  check: boolean;
}

/** The guest data one run may cover. */
const MAX_RUN_BYTES = 4 << 20;

/** Compressed bytes per cluster, estimated from the deflate size of (up to 64 KiB of) its data. */
function compressedPerCluster(cs: number, pattern: number | undefined): number {
  const n = Math.min(cs, 64 << 10);
  const data = pattern === undefined ? stampBytes(1, 0, n) : new Uint8Array(n).fill(pattern);
  return Math.max(1, Math.ceil((deflateRawSync(data).length * cs) / n));
}

export class PackedCompressedCommand extends StepCommand {
  constructor(private readonly seed: PackedCompressedSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    // enough clusters that their packed data runs on past `hosts` host-cluster boundaries
    const wanted = Math.ceil(((this.seed.hosts + 0.5) * cs) / compressedPerCluster(cs, this.seed.pattern));
    const count = Math.max(2, Math.min(wanted, Math.floor(MAX_RUN_BYTES / cs)));
    const w = new CompressedWriteCommand(this.seed.start, count, this.seed.pattern).stepsFor(s.model)?.[0];
    if (w?.kind !== 'write-compressed') return undefined;
    if (!s.add({ kind: 'qemu-turn', ops: [w] })) return undefined;
    const n = Math.ceil(w.length / cs);
    this.seed.free.forEach((how, i) => {
      // the first free over the whole run half the time (every cluster that straddles a host
      // boundary among them), else a span of the run's clusters from a seeded one
      const whole = i === 0 && this.seed.whole;
      const first = whole ? 0 : (this.seed.at + i * 31) % n;
      const k = whole ? n : 1 + ((this.seed.span + i) % Math.max(1, n - first));
      const off = w.offset + first * cs;
      const len = Math.min(k * cs, w.offset + w.length - off);
      switch (how) {
        case 'overwrite':
          s.write(off, len);
          break;
        case 'overwrite-part':
          // part of one cluster: copy-on-write decompresses it, then its compressed range is freed
          s.write(off + ((this.seed.at >> 3) % cs), 1 + ((this.seed.span >> 2) % (cs - 1 || 1)));
          break;
        case 'zero':
          s.zero(off, len, false);
          break;
        case 'zero-unmap':
          s.zero(off, len, true);
          break;
        case 'discard':
          s.discard(off, len);
          break;
      }
    });
    s.read(w.offset, w.length);
    if (this.seed.check) s.add({ kind: 'check' });
    return s.result(2);
  }

  protected describeSeed(): string {
    return `compressed clusters packed by qemu-io, then ${this.seed.free.join(', ')}`;
  }
}
