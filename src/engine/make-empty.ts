/**
 * Emptying an image after `qemu-img commit` the way QEMU's qcow2_make_empty does it.
 *
 * On a v3 image with no snapshots, no persistent bitmaps, no encryption and no external data file
 * (and an L1 table small enough that header, reftable, one refblock and the L1 table fit in what
 * one refblock counts), the image is not emptied cluster by cluster but rebuilt from scratch
 * (QEMU's make_completely_empty):
 *   1. caches flushed, the dirty bit (incompatible bit 0) set and flushed — from here on the
 *      refcounts may be wrong, and the next read-write open repairs them;
 *   2. (l1_update) the L1 table is overwritten with zeros: nothing is mapped any more;
 *   3. (empty_image_prepare) clusters 1 .. 2 + L1 clusters are overwritten with zeros;
 *   4. (l1_update, reftable_update) the header points at the reftable in cluster 1 (one cluster)
 *      and the L1 table in cluster 3, written and flushed;
 *   5. (refblock_alloc) the reftable's first entry points at a refblock in cluster 2, flushed;
 *   6. (cluster_alloc) header, reftable, refblock and L1 table get refcount 1;
 *   7. the dirty bit is cleared, and the file is cut after the L1 table.
 * An error in step 2 leaves the on-disk refcounts intact (only leaks follow); an error later leaves
 * them broken ("fail_broken_refcounts"): the handle must then write nothing more, and the next
 * read-write open rebuilds them (the dirty bit says so).
 * Every other image takes the fallback: every cluster discarded (ClusterOps.makeEmpty).
 */
import * as C from '../format/constants.ts';
import { encodeHeader, findExtension, type Header } from '../format/header.ts';
import type { BlockDevice } from '../io/device.ts';

/** QEMU's condition for make_completely_empty (else the discard fallback). */
export function canEmptyCompletely(h: Header, hasDataFile: boolean): boolean {
  const cs = 2 ** h.clusterBits;
  // Entries in one refcount block: cluster_size * 8 / refcount_bits (qcow2.txt "Refcount blocks").
  const refblockEntries = (cs * 8) / 2 ** h.refcountOrder;
  return (
    h.version >= 3 &&
    h.nbSnapshots === 0 &&
    findExtension(h, C.EXT_BITMAPS) === undefined &&
    3 + l1Clusters(h) <= refblockEntries &&
    // (QEMU excludes LUKS only; an AES image is also kept on the fallback here, since the
    // rebuilt handle would need the key again)
    h.cryptMethod === C.QCOW_CRYPT_NONE &&
    !hasDataFile
  );
}

function l1Clusters(h: Header): number {
  const cs = 2 ** h.clusterBits;
  return Math.ceil((h.l1Size * 8) / cs);
}

/** An error met while the on-disk refcount structures are half rewritten. */
export class BrokenRefcounts extends Error {
  constructor(override readonly cause: unknown) {
    super('refcount structures broken by a failed make-empty');
  }
}

/**
 * Steps 2–7 above, on a header whose dirty bit is already set and flushed (step 1 is the
 * caller's, with everything it caches written back). `h` is updated to the new layout on success.
 * Throws the device's error as is when step 2 fails, wrapped in BrokenRefcounts after that.
 */
export function makeCompletelyEmpty(dev: BlockDevice, h: Header): void {
  const cs = 2 ** h.clusterBits;
  const l1c = l1Clusters(h);
  const l1Bytes = h.l1Size * 8;
  // 2. The L1 table zeroed: no guest cluster is mapped; refcounts now only leak.
  dev.event?.('l1_update');
  zeros(dev, h.l1TableOffset, l1c * cs);
  try {
    // 3. Room for reftable (cluster 1), refblock (2) and L1 table (3…): this may overwrite the old
    // refcount structures, which the dirty bit allows.
    dev.event?.('empty_image_prepare');
    zeros(dev, cs, (2 + l1c) * cs);
    // 4. Header fields l1_table_offset (byte 40), refcount_table_offset (48),
    // refcount_table_clusters (56), written together and flushed.
    dev.event?.('l1_update');
    dev.event?.('reftable_update');
    const fields = new Uint8Array(20);
    const v = new DataView(fields.buffer);
    v.setBigUint64(0, BigInt(3 * cs));
    v.setBigUint64(8, BigInt(cs));
    v.setUint32(16, 1);
    dev.write(fields, 40);
    dev.flush();
    h.l1TableOffset = 3 * cs;
    h.refcountTableOffset = cs;
    h.refcountTableClusters = 1;
    // 5. The reftable's first entry: the refblock in cluster 2.
    dev.event?.('refblock_alloc');
    const entry = new Uint8Array(8);
    new DataView(entry.buffer).setBigUint64(0, BigInt(2 * cs));
    dev.write(entry, cs);
    dev.flush();
    // 6. Refcount 1 for clusters 0 .. end of the L1 table (qcow2_alloc_clusters from cluster 0).
    dev.event?.('cluster_alloc');
    const used = Math.ceil((3 * cs + l1Bytes) / cs);
    const block = new Uint8Array(cs);
    for (let c = 0; c < used; c++) setRefcount(block, c, h.refcountOrder);
    dev.write(block, 2 * cs);
    dev.flush();
    // 7. Clean again: the header rewritten without the dirty bit, then the file cut.
    h.incompatibleFeatures &= ~C.INCOMPAT_DIRTY;
    const hdr = new Uint8Array(Math.min(cs, Math.max(4096, cs)));
    hdr.set(encodeHeader(h));
    dev.write(hdr, 0);
    dev.flush();
    dev.truncate((3 + l1c) * cs);
    dev.flush();
  } catch (e) {
    throw new BrokenRefcounts(e);
  }
}

/** Refcount 1 for entry `i` of a refcount block of 2^order-bit entries (big-endian). */
function setRefcount(block: Uint8Array, i: number, order: number): void {
  const bits = 2 ** order;
  if (bits >= 8) {
    const bytes = bits / 8;
    block[i * bytes + bytes - 1] = 1;
  } else {
    // Sub-byte entries: entry i lives in byte i*bits/8, lowest bits first (qcow2.txt).
    const bit = i * bits;
    block[Math.floor(bit / 8)]! |= 1 << (bit % 8);
  }
}

function zeros(dev: BlockDevice, offset: number, length: number): void {
  dev.write(new Uint8Array(length), offset);
}
