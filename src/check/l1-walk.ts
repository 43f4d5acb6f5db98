/**
 * The checker's walk of an L1 tree (block/qcow2-refcount.c, qemu 7.2: check_refcounts_l1 and
 * check_refcounts_l2, fix_l2_entry_by_zero): every L2 table an L1 table points to, and every data
 * or compressed cluster its entries point to, counted in the in-memory refcounts, with QEMU's
 * messages for bad entries. Its cost follows what is allocated: all-zero L1 entries and blocks of
 * all-zero L2 entries are passed over by memcmp (format/zero-entries.ts; a sparse 2 TiB image has 4096 L1 entries).
 */
import { u32 } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { ClusterType, classifyL2, readL1, writeL2 } from '../format/tables.ts';
import { firstNonZeroEntry } from '../format/zero-entries.ts';
import type { RefcountArray } from './refcount-array.ts';
import type { Checker } from './walk.ts';
import {
  CheckAbort,
  EIO,
  FIX_ERRORS,
  compressedDescriptorExact,
  hex,
  hex64,
  hostsData,
  type Res,
} from './walk-basics.ts';

/** check_refcounts_l1: the references of one L1 table and the L2 tables it points to. */
export function checkL1(
  ck: Checker,
  res: Res,
  imrt: RefcountArray,
  l1Offset: number,
  l1Size: number,
  frag: boolean,
  fix: number,
  active: boolean,
): void {
  if (!l1Size) return;
  ck.inc(res, imrt, l1Offset, l1Size * 8);
  const l1 = active ? ck.activeL1 : ck.read(l1Offset, l1Size * 8);
  // Only the non-zero entries: a zero entry maps nothing (qcow2.txt "L1 table entry": offset 0,
  // the L2 table and every cluster below it unallocated), found by memcmp (format/zero-entries.ts).
  for (let i = firstNonZeroEntry(l1, 0, l1Size, 8); i < l1Size; i = firstNonZeroEntry(l1, i + 1, l1Size, 8)) {
    const hi = u32(l1, i * 8);
    const lo = u32(l1, i * 8 + 4);
    const e = readL1(l1, i);
    if (e.reserved) {
      ck.msg(`ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
      res.corruptions++;
    }
    const l2Offset = e.l2Offset;
    ck.inc(res, imrt, l2Offset, ck.cs);
    if (l2Offset % ck.cs !== 0) {
      ck.msg(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
      res.corruptions++;
    }
    checkL2(ck, res, imrt, l2Offset, frag, fix, active);
  }
}

/** check_refcounts_l2. */
function checkL2(
  ck: Checker,
  res: Res,
  imrt: RefcountArray,
  l2Offset: number,
  frag: boolean,
  fix: number,
  active: boolean,
): void {
  // A table wholly past the end of the file reads as zeros: nothing in it to count.
  if (l2Offset >= ck.dev.size()) {
    ck.budget -= 1;
    if (ck.budget < 0) throw new CheckAbort('metadata walk exceeds the work bound (hostile image?)');
    return;
  }
  ck.budget -= ck.l2Entries;
  if (ck.budget < 0) throw new CheckAbort('metadata walk exceeds the work bound (hostile image?)');
  const t = ck.read(l2Offset, ck.cs);
  let nextContiguous = 0;
  const n = ck.l2Entries;
  // All-zero (unallocated) entries have nothing to count or report: passed over by memcmp.
  for (
    let i = firstNonZeroEntry(t, 0, n, ck.entrySize);
    i < n;
    i = firstNonZeroEntry(t, i + 1, n, ck.entrySize)
  ) {
    const o = i * ck.entrySize;
    const hi = u32(t, o);
    const lo = u32(t, o + 4);
    const zeroBits = ck.extL2 ? u32(t, o + 8) : 0;
    const allocBits = ck.extL2 ? u32(t, o + 12) : 0;
    const e = classifyL2(hi, lo, ck.cb, allocBits, zeroBits, ck.extL2, ck.dataFile);
    const compressed = e.type === ClusterType.Compressed;
    if (!compressed && e.reserved) {
      ck.msg(`ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
      res.corruptions++;
    }
    if (compressed) {
      let h2 = hi;
      const coffset = e.hostOffset; // the compressed cluster descriptor, decoded
      // The descriptor's offset can exceed 2^53 (up to 62 - (cluster_bits - 8) bits): messages
      // print it exactly, as QEMU does.
      const exact = compressedDescriptorExact(hi, lo, ck.cb);
      if (e.copied) {
        ck.msg(
          `ERROR: coffset=0x${exact.offset.toString(16)}: copied flag must never be set for compressed clusters`,
        );
        h2 = (hi & ~C.L2E_COPIED_HI) >>> 0;
        res.corruptions++;
      }
      if (ck.dataFile) {
        ck.msg(`ERROR compressed cluster ${i} with data file, entry=0x${hex64(h2, lo)}`);
        res.corruptions++;
        continue;
      }
      if (zeroBits || allocBits) {
        ck.msg(
          `ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex64(h2, lo)}`,
        );
        res.corruptions++;
        continue;
      }
      if (exact.offset > BigInt(Number.MAX_SAFE_INTEGER)) {
        // Far past any file: qcow2_inc_refcounts_imrt's end-of-file error, with exact numbers.
        ck.msg(
          `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${exact.offset.toString(16)} size 0x${exact.size.toString(16)}`,
        );
        res.corruptions++;
      } else ck.inc(res, imrt, coffset, e.compressedLength);
      if (frag) {
        // Compressed clusters count as fragmented by nature.
        res.allocatedClusters++;
        res.compressedClusters++;
        res.fragmentedClusters++;
      }
      continue;
    }
    const offset = e.hostOffset;
    // The zero flag (standard entries only): ZeroPlain and ZeroAlloc.
    const zeroFlag = e.type === ClusterType.ZeroPlain || e.type === ClusterType.ZeroAlloc;
    // External data files: offset 0 with COPIED is a normal cluster at guest offset 0 (but not
    // with the zero flag: QEMU's check counts that one as unallocated).
    const allocated = hostsData(e);
    if (!allocated) {
      if (allocBits) {
        res.corruptions++;
        ck.msg('ERROR: Unallocated cluster has non-zero subcluster allocation map');
      }
      continue;
    }
    if (zeroBits & allocBits) {
      res.corruptions++;
      ck.msg(`ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
    }
    if (offset % ck.cs !== 0) {
      res.corruptions++;
      const containsData = ck.extL2 ? allocBits !== 0 : !zeroFlag;
      if (!containsData) {
        const repair = (fix & FIX_ERRORS) !== 0;
        ck.msg(
          `${repair ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
        );
        if (repair && fixL2EntryByZero(ck, res, l2Offset, t, i, active)) continue;
      } else {
        ck.msg(`ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
      }
    }
    if (frag) {
      res.allocatedClusters++;
      if (nextContiguous && offset !== nextContiguous) res.fragmentedClusters++;
      nextContiguous = offset + ck.cs;
    }
    if (!ck.dataFile) ck.inc(res, imrt, offset, ck.cs);
  }
}

/** fix_l2_entry_by_zero: make the entry a plain zero cluster. Aborts the check on overlap. */
function fixL2EntryByZero(
  ck: Checker,
  res: Res,
  l2Offset: number,
  t: Uint8Array,
  i: number,
  active: boolean,
): boolean {
  const o = i * ck.entrySize;
  // Extended L2: every subcluster that was allocated or zero becomes zero.
  const zero = ck.extL2 ? (u32(t, o + 8) | u32(t, o + 12)) >>> 0 : 0;
  writeL2(t, i, ck.cb, ck.extL2, {
    type: ClusterType.ZeroPlain,
    hostOffset: 0,
    copied: false,
    zeroBitmap: zero,
    allocBitmap: 0,
  });
  const at = l2Offset + o;
  if (!ck.mayWrite(at, ck.entrySize, [active ? 'active L2 table' : 'inactive L2 table'])) {
    ck.msg('ERROR: Overlap check failed');
    res.checkErrors++;
    throw new CheckAbort(EIO);
  }
  ck.dev.write(t.subarray(o, o + ck.entrySize), at);
  res.corruptions--;
  res.corruptionsFixed++;
  return true;
}
