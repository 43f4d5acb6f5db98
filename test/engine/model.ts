/**
 * The plain model the engine is compared with (a byte array that grows and shrinks), the layout
 * matrix shared by the tests, and the merge of the engine's blockStatus runs into extents as
 * `qemu-img map --output=json` prints them.
 */
import type { GuestDisk } from '../../src/api.ts';
import { engineMap as mergedMap, type MapExtent } from '../support/qemu.ts';

/**
 * A guest disk as a byte array: what every read must return (the harness has the full model,
 * properties/model/disk-model.ts; this is the small one the engine suites use).
 */
export class ExpectedDisk {
  bytes: Uint8Array;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }

  get size(): number {
    return this.bytes.length;
  }

  write(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
  }

  zero(offset: number, length: number): void {
    this.bytes.fill(0, offset, offset + length);
  }

  /** Discard: whole clusters in the range read zeros, partial clusters keep their data. */
  discard(offset: number, length: number, clusterSize: number): void {
    const end = offset + length;
    let first = Math.ceil(offset / clusterSize) * clusterSize;
    let last = Math.floor(end / clusterSize) * clusterSize;
    // The partial last cluster of a disk of unaligned size counts as whole.
    if (end === this.size && this.size % clusterSize !== 0) last = this.size;
    if (first >= last) return;
    last = Math.min(last, this.size);
    first = Math.min(first, last);
    this.bytes.fill(0, first, last);
  }

  resize(size: number): void {
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, Math.min(size, this.bytes.length)));
    this.bytes = next;
  }

  copy(): Uint8Array {
    return this.bytes.slice();
  }
}

/** Deterministic non-repeating bytes (a fast LCG), so misplaced data shows. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Compressible bytes (runs of one value), for compressed writes that really compress. */
export function runs(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (seed + (i >> 9)) & 0xff;
  return out;
}

export interface Layout {
  clusterSize: number;
  refcountBits: number;
  compat: '0.10' | '1.1';
  compression: 'zlib' | 'zstd';
}

export const CLUSTER_SIZES = [512, 4096, 65536, 2 * 1024 * 1024] as const;
export const REFCOUNT_WIDTHS = [1, 2, 4, 8, 16, 32, 64] as const;

/**
 * Every cluster-size class × every refcount width (v3), plus v2 (refcount 16 only) per cluster
 * size; zstd takes turns with zlib across the v3 widths so both codecs meet every cluster size.
 */
export function layoutMatrix(): Layout[] {
  const out: Layout[] = [];
  for (const clusterSize of CLUSTER_SIZES) {
    REFCOUNT_WIDTHS.forEach((refcountBits, i) => {
      out.push({ clusterSize, refcountBits, compat: '1.1', compression: i % 2 === 1 ? 'zstd' : 'zlib' });
    });
    out.push({ clusterSize, refcountBits: 16, compat: '0.10', compression: 'zlib' });
  }
  return out;
}

export function layoutName(l: Layout): string {
  return `cluster ${l.clusterSize} refcount ${l.refcountBits} compat ${l.compat} ${l.compression}`;
}

/** `-o` options for qemu-img create. */
export function qemuOpts(l: Layout, extra: string[] = []): string {
  const o = [`cluster_size=${l.clusterSize}`, `compat=${l.compat}`];
  if (l.compat === '1.1') o.push(`refcount_bits=${l.refcountBits}`, `compression_type=${l.compression}`);
  return [...o, ...extra].join(',');
}

/** Image size for a layout: room for a dozen-odd clusters, 1–64 MiB. */
export function layoutSize(l: Layout): number {
  return Math.max(4 * 1024 * 1024, 24 * l.clusterSize);
}

/**
 * Extents as `qemu-img map --output=json` reports them, reduced to what qcow2 metadata decides:
 * `zero` on data extents depends on holes in the host file (the file system), so it is dropped
 * there, and neighbours equal after that are merged again.
 */
export function normalizeMap(extents: MapExtent[]): MapExtent[] {
  const out: MapExtent[] = [];
  for (const e0 of extents) {
    const e: MapExtent = { ...e0, zero: e0.data ? false : e0.zero };
    const prev = out[out.length - 1];
    if (
      prev &&
      prev.start + prev.length === e.start &&
      prev.depth === e.depth &&
      prev.present === e.present &&
      prev.zero === e.zero &&
      prev.data === e.data &&
      (prev.offset === undefined ? e.offset === undefined : e.offset === prev.offset + prev.length)
    ) {
      prev.length += e.length;
    } else {
      out.push(e);
    }
  }
  return out;
}

/** The engine's map (the merge behind `qcow2 map`), normalized like qemu's. */
export function engineMap(disk: GuestDisk): MapExtent[] {
  return normalizeMap(mergedMap(disk));
}
