/**
 * The image's own facts, as `qemu-img info --output=json` reads them from the header, against the
 * layout the model holds (the created layout, changed by every amend step): compat level, cluster
 * size, refcount width, lazy refcounts, extended L2, compression type, encryption format, and the
 * flags a cleanly closed image must have cleared (dirty, corrupt).
 *
 * Without it, a header field written wrong goes unseen as long as the data still reads back: an
 * amend that leaves `compat` or `lazy_refcounts` as it was, an image closed with the dirty bit set
 * (qcow2.txt: incompatible feature bit 0, "refcounts may be inconsistent"; QEMU then repairs on
 * open), or a `refcount_order` the refcount blocks do not follow at a width where the counts
 * happen to agree.
 */
import type { ImageLayout } from '../layout.ts';

/** The part of `qemu-img info --output=json` these facts come from (QEMU 7.2's ImageInfo). */
export interface InfoJson {
  'cluster-size'?: number;
  'dirty-flag'?: boolean;
  'format-specific'?: {
    type?: string;
    data?: {
      compat?: string;
      'lazy-refcounts'?: boolean;
      'refcount-bits'?: number;
      corrupt?: boolean;
      'extended-l2'?: boolean;
      'compression-type'?: string;
      encrypt?: { format?: string };
    };
  };
}

/** Each fact that differs from the layout, in words ("compat: expected 0.10, qemu-img info says 1.1"). */
export function imageFactMismatches(layout: ImageLayout, info: InfoJson): string[] {
  const out: string[] = [];
  const fact = (name: string, expected: unknown, observed: unknown): void => {
    if (expected !== observed)
      out.push(`${name}: expected ${String(expected)}, qemu-img info says ${String(observed)}`);
  };
  const data = info['format-specific']?.data ?? {};
  fact('cluster-size', 2 ** layout.clusterBits, info['cluster-size']);
  fact('compat', layout.compat, data.compat);
  // v2 images have 16-bit refcounts (qcow2.txt: refcount_order is 4 for version 2).
  fact('refcount-bits', layout.compat === '0.10' ? 16 : layout.refcountBits, data['refcount-bits']);
  // A cleanly closed image has the dirty bit clear (it is set only while lazy refcounts are in use).
  fact('dirty-flag', false, info['dirty-flag'] ?? false);
  fact('encrypt.format', layout.encrypt, data.encrypt?.format);
  if (layout.compat === '1.1') {
    // Version 3 fields QEMU reports only for compat=1.1 images.
    fact('lazy-refcounts', layout.lazyRefcounts, data['lazy-refcounts']);
    fact('corrupt', false, data.corrupt);
    fact('extended-l2', layout.extendedL2, data['extended-l2'] ?? false);
    fact('compression-type', layout.compressionType, data['compression-type'] ?? 'zlib');
  }
  return out;
}
