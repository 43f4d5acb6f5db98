/**
 * The checker's comparison (compare_refcounts, check_oflag_copied): stored refcounts against the
 * counts the walk computed — stored > computed is a leak, stored < computed a corruption — and the
 * COPIED flags of the active tables against the refcounts, repairing in place when asked.
 */
import { setU32, u32 } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { firstNonZeroEntry } from '../format/zero-entries.ts';
import { ClusterType, classifyL2, readL1 } from '../format/tables.ts';
import type { RefcountArray } from './refcount-array.ts';
import type { Checker } from './walk.ts';
import { CheckAbort, EIO, FIX_ERRORS, FIX_LEAKS, hex64, hostsData, type Res } from './walk-basics.ts';

/** compare_refcounts; returns [highestCluster, rebuild]. */
export function compareRefcounts(
  ck: Checker,
  res: Res,
  imrt: RefcountArray,
  fix: number,
): { highest: number; rebuild: boolean } {
  let highest = 0;
  let rebuild = false;
  for (let i = 0; i < imrt.nb; i++) {
    const r1 = ck.stored(i);
    if (r1 < 0) {
      ck.msg(`Can't get refcount for cluster ${i}: ${EIO}`);
      res.checkErrors++;
      continue;
    }
    const r2 = imrt.get(i);
    if (r1 > 0 || r2 > 0) highest = i;
    if (r1 === r2) continue;
    let fixed: 'leaks' | 'corruptions' | undefined;
    if (r1 === 0) rebuild = true;
    else if (r1 > r2 && fix & FIX_LEAKS) fixed = 'leaks';
    else if (r1 < r2 && fix & FIX_ERRORS) fixed = 'corruptions';
    ck.msg(
      `${fixed ? 'Repairing' : r1 < r2 ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${ck.storedText(i, r1)} reference=${r2}`,
    );
    if (fixed && ck.setStored(i, r2)) {
      if (fixed === 'leaks') res.leaksFixed++;
      else res.corruptionsFixed++;
      continue;
    }
    if (r1 < r2) res.corruptions++;
    else res.leaks++;
  }
  return { highest, rebuild };
}

/** check_oflag_copied: COPIED on the active L1/L2 must be set exactly when the refcount is 1. */
export function checkCopied(ck: Checker, res: Res, fix: number): void {
  let repair: boolean;
  if (fix & FIX_ERRORS) repair = true;
  // With -r leaks, repair only when the refcounts are now known to be right.
  else if (fix & FIX_LEAKS) repair = !res.checkErrors && !res.corruptions && !res.leaks;
  else repair = false;
  const verb = repair ? 'Repairing' : 'ERROR';
  const n = ck.h.l1Size;
  // All-zero L1 entries (no L2 table) are passed over by memcmp.
  for (
    let i = firstNonZeroEntry(ck.activeL1, 0, n, 8);
    i < n;
    i = firstNonZeroEntry(ck.activeL1, i + 1, n, 8)
  ) {
    let hi = u32(ck.activeL1, i * 8);
    const lo = u32(ck.activeL1, i * 8 + 4);
    const l1e = readL1(ck.activeL1, i);
    const l2Offset = l1e.l2Offset;
    if (!l2Offset) continue;
    const r = ck.stored(Math.floor(l2Offset / ck.cs));
    if (r >= 0 && (r === 1) !== l1e.copied) {
      res.corruptions++;
      ck.msg(`${verb} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${r}`);
      if (repair) {
        // Only the COPIED bit changes (reserved bits are reported, not repaired, by QEMU).
        hi = (r === 1 ? hi | C.L1E_COPIED_HI : hi & ~C.L1E_COPIED_HI) >>> 0;
        setU32(ck.activeL1, i * 8, hi);
        const at = ck.h.l1TableOffset + i * 8;
        if (!ck.mayWrite(at, 8, ['active L1 table'])) {
          res.checkErrors++;
          throw new CheckAbort(EIO);
        }
        ck.dev.write(ck.activeL1.subarray(i * 8, i * 8 + 8), at);
        res.corruptions--;
        res.corruptionsFixed++;
      }
    }
    const t = ck.read(l2Offset, ck.cs);
    let dirty = 0;
    const m = ck.l2Entries;
    // All-zero entries hold no data cluster: passed over by memcmp.
    for (
      let j = firstNonZeroEntry(t, 0, m, ck.entrySize);
      j < m;
      j = firstNonZeroEntry(t, j + 1, m, ck.entrySize)
    ) {
      const o = j * ck.entrySize;
      const ehi = u32(t, o);
      const elo = u32(t, o + 4);
      const e = classifyL2(ehi, elo, ck.cb, 0, 0, ck.extL2, ck.dataFile);
      if (e.type === ClusterType.Compressed || !hostsData(e)) continue;
      const rc = ck.dataFile ? 1 : ck.stored(Math.floor(e.hostOffset / ck.cs));
      if (rc < 0) continue;
      if ((rc === 1) !== e.copied) {
        res.corruptions++;
        ck.msg(`${verb} OFLAG_COPIED data cluster: l2_entry=${hex64(ehi, elo)} refcount=${rc}`);
        if (repair) {
          setU32(t, o, (rc === 1 ? ehi | C.L2E_COPIED_HI : ehi & ~C.L2E_COPIED_HI) >>> 0);
          dirty++;
        }
      }
    }
    if (dirty > 0) {
      if (!ck.mayWrite(l2Offset, ck.cs, ['active L2 table'])) {
        ck.msg(`ERROR: Could not write L2 table; metadata overlap check failed: ${EIO}`);
        res.checkErrors++;
        throw new CheckAbort(EIO);
      }
      ck.dev.write(t, l2Offset);
      res.corruptions -= dirty;
      res.corruptionsFixed += dirty;
    }
  }
}
