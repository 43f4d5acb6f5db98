/**
 * The consistency checker: "rebuild and compare", as QEMU's qcow2_check_refcounts does
 * (block/qcow2-refcount.c, qemu 7.2), in three parts — the walk (walk.ts: decode every metadata
 * structure and count references in memory), the comparison (compare.ts: stored against computed
 * refcounts, then the COPIED flags) and the rebuild (rebuild.ts: new refcount structures) — and
 * here the passes that drive them and the report.
 *
 * Works on a BlockDevice through the pure format modules only. Messages reproduce qemu-img's stderr
 * lines; counters and exit code reproduce `qemu-img check` (with `-r`, including its second pass).
 */
import { Qcow2Error, isQcow2Error } from '../errors.ts';
import { setU32, u32 } from '../format/bytes.ts';
import type { BlockDevice } from '../io/device.ts';
import * as C from '../format/constants.ts';
import { decodeHeader, knownAutoclearPatch, type Header } from '../format/header.ts';
import { validateHeader } from '../format/header-validate.ts';
import { decodeSnapshotTable, type SnapshotTableReport } from '../format/snapshot.ts';
import { RefcountArray } from './refcount-array.ts';
import { checkCopied, compareRefcounts } from './compare.ts';
import { rebuildRefcounts } from './rebuild.ts';
import { writeSnapshots } from './snapshot-repair.ts';
import {
  checkBitmapsLoadable,
  closeReadWrite as closeBitmaps,
  openReadWrite,
  type OpenState,
} from './bitmaps-reopen.ts';
import { Checker } from './walk.ts';
import { CheckAbort, EFBIG, EINVAL, EIO, FIX_ERRORS, FIX_LEAKS, newRes, type Res } from './walk-basics.ts';

export interface CheckResult {
  filename: string;
  format: 'qcow2';
  'check-errors': number;
  'image-end-offset'?: number;
  corruptions?: number;
  leaks?: number;
  'corruptions-fixed'?: number;
  'leaks-fixed'?: number;
  'total-clusters'?: number;
  'allocated-clusters'?: number;
  'fragmented-clusters'?: number;
  'compressed-clusters'?: number;
}

export interface CheckReport {
  result: CheckResult;
  /** qemu-img's stderr lines ("ERROR cluster 5 refcount=1 reference=2", "Leaked cluster 9 ..."). */
  messages: string[];
  /** 0 clean, 1 could not check, 2 corruptions, 3 leaks only. */
  exitCode: 0 | 1 | 2 | 3;
  /** Set when the check could not complete (qemu-img prints "Check failed: ..." and no result). */
  failure?: string;
  /** Lines qemu-img prints on stdout before the result when it repaired something. */
  repairSummary?: { leaksFixed: number; corruptionsFixed: number };
}

export interface CheckOptions {
  repair?: 'leaks' | 'all';
  filename?: string;
  /** The caller has the encryption key: qemu-img check opens for I/O, so an encrypted image needs it. */
  keyAvailable?: boolean;
  /**
   * The repair runs in an open of its own, as `qemu-img check -r` does: that read-write open and
   * its close do their own writes (bitmaps marked in use and stored anew, header rewrites, the
   * dirty bit cleared). Not for the automatic repair inside an engine's open (QEMU's repair of a
   * dirty image at open does none of this).
   */
  ownOpen?: boolean;
}

/** qcow2_check_refcounts; returns the result of this pass. */
function checkRefcounts(ck: Checker, res: Res, fix: number): void {
  const size = ck.dev.size();
  const imrt = new RefcountArray(Math.ceil(size / ck.cs), ck.order);
  // bs->total_sectors * 512: a size that is not a multiple of 512 counts whole sectors only.
  res.totalClusters = Math.ceil((Math.floor(ck.h.size / 512) * 512) / ck.cs);
  let rebuild = ck.calculate(res, imrt, fix);
  const preCompare = { ...res };
  let cmp = compareRefcounts(ck, res, imrt, 0);
  let highest = cmp.highest;
  rebuild = rebuild || cmp.rebuild;
  if (rebuild && fix & FIX_ERRORS) {
    const old = { ...res };
    let freshLeaks = 0;
    ck.msg('Rebuilding refcount structure');
    rebuildRefcounts(ck, res, imrt);
    res.corruptions = 0;
    res.leaks = 0;
    imrt.clear();
    ck.calculate(res, imrt, 0);
    if (fix & FIX_LEAKS) {
      // The old structure is now leaked; fix that. Leaks left are ones the rebuild introduced.
      const saved = { ...res };
      const fresh = newRes();
      cmp = compareRefcounts(ck, fresh, imrt, FIX_LEAKS);
      highest = cmp.highest;
      if (cmp.rebuild) ck.msg('ERROR rebuilt refcount structure is still broken');
      freshLeaks = fresh.leaks;
      Object.assign(res, saved);
    }
    if (res.corruptions < old.corruptions) res.corruptionsFixed += old.corruptions - res.corruptions;
    if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
    res.leaks += freshLeaks;
  } else if (fix) {
    if (rebuild) {
      ck.msg('ERROR need to rebuild refcount structures');
      res.checkErrors++;
      throw new CheckAbort(EIO);
    }
    if (res.leaks || res.corruptions) {
      Object.assign(res, preCompare);
      cmp = compareRefcounts(ck, res, imrt, fix);
      highest = cmp.highest;
    }
  }
  checkCopied(ck, res, fix);
  res.imageEndOffset = (highest + 1) * ck.cs;
}

/**
 * Read the snapshot table in check mode (qcow2_check_read_snapshot_table): the open deferred the
 * table's checks to here, and what QEMU can repair with `-r all` it reports as an error line, a
 * hint and a failed check (the repairs themselves are not done: the check fails the same way).
 */
function readSnapshots(ck: Checker, res: Res, fix: number): void {
  const h = ck.h;
  // qcow2_validate_table: the offset (exact: it may exceed 2^53) must be aligned, and the table's
  // end must not pass INT64_MAX, even for an empty table.
  const raw = ck.read(64, 8);
  const exactOffset = new DataView(raw.buffer, raw.byteOffset, 8).getBigUint64(0);
  const tableBytes = BigInt(Math.min(h.nbSnapshots, C.QCOW_MAX_SNAPSHOTS) * C.SNAPSHOT_ENTRY_FIXED_SIZE);
  if (exactOffset % BigInt(ck.cs) !== 0n || exactOffset > 2n ** 63n - 1n - tableBytes) {
    res.corruptions++;
    ck.msg('qemu-img: ERROR snapshot table offset invalid');
    throw new CheckAbort(EINVAL);
  }
  if (h.nbSnapshots === 0) return;
  // -r all drops the entries past QCOW_MAX_SNAPSHOTS at once (the header's count follows below).
  let nbSnapshots = h.nbSnapshots;
  let reduced = 0;
  if (nbSnapshots > C.QCOW_MAX_SNAPSHOTS && fix & FIX_ERRORS) {
    reduced = nbSnapshots - C.QCOW_MAX_SNAPSHOTS;
    ck.msg(`Discarding ${reduced} overhanging snapshots`);
    nbSnapshots = C.QCOW_MAX_SNAPSHOTS;
  }
  if (nbSnapshots > C.QCOW_MAX_SNAPSHOTS) {
    res.corruptions++;
    ck.msg('qemu-img: ERROR snapshot table too large');
    ck.msg(
      `You can force-remove all ${h.nbSnapshots - C.QCOW_MAX_SNAPSHOTS} overhanging snapshots with qemu-img check -r all`,
    );
    throw new CheckAbort(EFBIG);
  }
  // Bytes past the end of the file read as zeros; an entry can extend at most ~130 KiB past its start.
  const inFile = Math.max(0, ck.dev.size() - h.snapshotsOffset);
  const len = Math.min(
    C.QCOW_MAX_SNAPSHOTS_SIZE + 140_000,
    inFile + 140_000 + nbSnapshots * C.SNAPSHOT_ENTRY_FIXED_SIZE,
  );
  const b = ck.read(h.snapshotsOffset, len);
  let entries;
  const report: SnapshotTableReport = { messages: [], extraDataDropped: 0, overhanging: 0, span: 0 };
  try {
    entries = decodeSnapshotTable(b, nbSnapshots, h.version, {
      tableOffset: h.snapshotsOffset,
      lenient: true,
      // -r all cuts extra data past 1024 bytes and drops the entries that make the table too big.
      repair: (fix & FIX_ERRORS) !== 0,
      report,
    });
  } catch (e) {
    if (isQcow2Error(e) && e.code === 'SNAPSHOT_EXTRA_TOO_LARGE') {
      res.corruptions++;
      ck.msg(
        `qemu-img: ERROR failed to read the snapshot table: Too much extra metadata in snapshot table entry ${String(e.data.index)}`,
      );
      ck.msg('You can force-remove this extra metadata with qemu-img check -r all');
      throw new CheckAbort(EFBIG);
    }
    if (isQcow2Error(e) && e.code === 'SNAPSHOT_TABLE_TOO_LARGE') {
      res.checkErrors++;
      ck.msg('qemu-img: ERROR failed to read the snapshot table: Snapshot table is too big');
      if (typeof e.data.hint === 'string') ck.msg(e.data.hint.replace(/\n$/, ''));
      throw new CheckAbort(EFBIG);
    }
    throw e;
  }
  for (const m of report.messages) ck.msg(m);
  reduced += report.overhanging;
  res.corruptions += reduced + report.extraDataDropped;
  if (reduced) {
    // The header's count is lowered at once (the dropped entries' clusters leak; the refcount
    // check that follows repairs that): nb_snapshots, u32 at byte 60.
    const n = new Uint8Array(4);
    setU32(n, 0, entries.length);
    ck.dev.write(n, 60);
    ck.dev.flush();
    ck.hstate.nbSnapshots = entries.length;
    res.corruptionsFixed += reduced;
    res.corruptions -= reduced;
  }
  entries.forEach((e, i) => {
    const extra =
      (e.vmStateSizeLarge !== undefined ? 8 : 0) +
      (e.diskSize !== undefined ? 8 : 0) +
      (e.icount !== undefined ? 8 : 0) +
      e.unknownExtraData.length;
    if (h.version >= 3 && extra < C.SNAPSHOT_EXTRA_DATA_V3_MIN) {
      // With -r all, fixSnapshotTable rewrites the table with complete extra data.
      ck.msg(`${fix & FIX_ERRORS ? 'Repairing' : 'ERROR'} snapshot table entry ${i} is incomplete`);
      res.corruptions++;
    }
  });
  ck.snapshots = entries;
  // QEMU's snapshots_size: the bytes the table spans as stored (extra data cut by a repair included).
  ck.snapshotsSize = report.span;
}

/** qcow2_check_fix_snapshot_table: with -r all, what the table read found is repaired by a rewrite. */
function fixSnapshotTable(ck: Checker, res: Res, fix: number): void {
  if (!res.corruptions || !(fix & FIX_ERRORS)) return;
  try {
    writeSnapshots(ck);
  } catch (e) {
    if (!(e instanceof CheckAbort)) throw e;
    res.checkErrors++;
    ck.msg(`ERROR failed to update snapshot table: ${e.errnoText}`);
    throw e;
  }
  res.corruptionsFixed += res.corruptions;
  res.corruptions = 0;
}

/**
 * Decode the header of the image on `dev` from its cluster 0 (the header, its extensions and the
 * backing file name span one cluster). Throws what decodeHeader throws; no open-time validation.
 */
export function readHeader(dev: BlockDevice): Header {
  const probe = new Uint8Array(Math.min(Math.max(dev.size(), 0), 24));
  dev.read(probe, 0);
  const clusterBits = probe.length >= 24 ? u32(probe, 20) : C.DEFAULT_CLUSTER_BITS;
  const span =
    clusterBits >= C.MIN_CLUSTER_BITS && clusterBits <= C.MAX_CLUSTER_BITS ? 2 ** clusterBits : 4096;
  const cluster0 = new Uint8Array(Math.min(Math.max(dev.size(), 0), span));
  dev.read(cluster0, 0);
  return decodeHeader(cluster0);
}

function openHeader(dev: BlockDevice): Header {
  const h = readHeader(dev);
  // qemu-img check opens with BDRV_O_CHECK: the snapshot table and an empty refcount table are
  // the check's to report, not the open's to refuse.
  validateHeader(h, dev.size(), { check: true });
  checkBitmapsLoadable(dev, h);
  return h;
}

function toResult(res: Res, filename: string): CheckResult {
  const r: CheckResult = { filename, format: 'qcow2', 'check-errors': res.checkErrors };
  if (res.imageEndOffset) r['image-end-offset'] = res.imageEndOffset;
  if (res.corruptions) r.corruptions = res.corruptions;
  if (res.leaks) r.leaks = res.leaks;
  if (res.corruptionsFixed) r['corruptions-fixed'] = res.corruptionsFixed;
  if (res.leaksFixed) r['leaks-fixed'] = res.leaksFixed;
  if (res.totalClusters) r['total-clusters'] = res.totalClusters;
  if (res.allocatedClusters) r['allocated-clusters'] = res.allocatedClusters;
  if (res.fragmentedClusters) r['fragmented-clusters'] = res.fragmentedClusters;
  if (res.compressedClusters) r['compressed-clusters'] = res.compressedClusters;
  return r;
}

/** One bdrv_check pass (qcow2_co_check_locked). Throws CheckAbort for a failed check. */
function checkPass(dev: BlockDevice, h: Header, fix: number, msgs: string[], open: { dead: boolean }): Res {
  const ck = new Checker(dev, h, msgs);
  ck.onFatal = () => {
    open.dead = true;
  };
  const res = newRes();
  const snapRes = newRes();
  try {
    readSnapshots(ck, snapRes, fix);
    try {
      checkRefcounts(ck, res, fix);
      fixSnapshotTable(ck, snapRes, fix);
    } finally {
      res.corruptions += snapRes.corruptions;
      res.checkErrors += snapRes.checkErrors;
      res.corruptionsFixed += snapRes.corruptionsFixed;
    }
    if (fix && res.checkErrors === 0 && res.corruptions === 0) ck.markClean();
  } finally {
    // What the refblock cache still holds is written when the image closes (unless a fatal
    // corruption event made QEMU's driver unusable).
    ck.flushRefblocks();
  }
  return res;
}

/**
 * Check an image as `qemu-img check [-r leaks|all]` does. With `repair`, the device must be
 * writable; after a repair the image is checked again and the result reports what remains, plus the
 * `-fixed` counts of the first pass.
 */
export function checkImage(dev: BlockDevice, opts: CheckOptions = {}): CheckReport {
  const filename = opts.filename ?? dev.name;
  const messages: string[] = [];
  const fix = opts.repair === 'all' ? FIX_LEAKS | FIX_ERRORS : opts.repair === 'leaks' ? FIX_LEAKS : 0;
  let h: Header;
  let rw: OpenState | undefined;
  try {
    h = openHeader(dev);
    if (h.cryptMethod !== C.QCOW_CRYPT_NONE && !opts.keyAvailable)
      throw new Qcow2Error('MISSING_SECRET', "Parameter 'encrypt.key-secret' is required for cipher");
    // A repairing check opens read-write: QEMU's open does its own writes (bitmaps, header).
    if (fix && opts.ownOpen) {
      rw = openReadWrite(new Checker(dev, h, messages));
      h = openHeader(dev);
    }
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    messages.push(`qemu-img: Could not open '${filename}': ${text}`);
    return { result: { filename, format: 'qcow2', 'check-errors': 1 }, messages, exitCode: 1, failure: text };
  }
  // A repair opens the image read-write, and QEMU's read-write open (qcow2_do_open) clears the
  // autoclear bits it does not know before anything else.
  const autoclear = fix ? knownAutoclearPatch(h) : undefined;
  if (autoclear) {
    dev.write(autoclear.bytes, autoclear.at);
    dev.flush();
    h = openHeader(dev);
  }
  const fail = (e: unknown, res: Res | undefined): CheckReport => {
    const text =
      e instanceof CheckAbort
        ? e.errnoText
        : isQcow2Error(e)
          ? e.message
          : e instanceof Error
            ? e.message
            : String(e);
    messages.push(`qemu-img: Check failed: ${text}`);
    const r = toResult(res ?? newRes(), filename);
    r['check-errors'] = Math.max(1, r['check-errors']);
    return { result: r, messages, exitCode: 1, failure: text };
  };
  // ... and its close too (unless a fatal corruption event made the open unusable).
  const open = { dead: false };
  try {
    return finishCheck();
  } finally {
    if (fix && opts.ownOpen && !open.dead) closeReadWrite(dev, rw, messages);
  }

  function finishCheck(): CheckReport {
    let res: Res;
    try {
      res = checkPass(dev, h, fix, messages, open);
    } catch (e) {
      if (e instanceof CheckAbort || e instanceof Qcow2Error) return fail(e, undefined);
      throw e;
    }
    let repairSummary: CheckReport['repairSummary'];
    if (res.corruptionsFixed || res.leaksFixed) {
      repairSummary = { leaksFixed: res.leaksFixed, corruptionsFixed: res.corruptionsFixed };
      try {
        const h2 = openHeader(dev);
        const again = checkPass(dev, h2, 0, messages, open);
        again.leaksFixed = res.leaksFixed;
        again.corruptionsFixed = res.corruptionsFixed;
        res = again;
      } catch (e) {
        if (e instanceof CheckAbort || e instanceof Qcow2Error)
          return { ...fail(e, undefined), repairSummary };
        throw e;
      }
    }
    const result = toResult(res, filename);
    let exitCode: CheckReport['exitCode'];
    if (res.checkErrors) {
      messages.push('qemu-img: Check failed');
      exitCode = 1;
    } else if (res.corruptions) exitCode = 2;
    else if (res.leaks) exitCode = 3;
    else exitCode = 0;
    const report: CheckReport = { result, messages, exitCode };
    if (repairSummary) report.repairSummary = repairSummary;
    return report;
  }
}

/** qcow2_inactivate for the read-write open of a repair: store bitmaps, then mark clean. */
function closeReadWrite(dev: BlockDevice, rw: OpenState | undefined, messages: string[]): void {
  let ck: Checker;
  // The close reads the snapshot table for its overlap guard only: what that read reports, the
  // checks already did.
  const closeMessages: string[] = [];
  try {
    ck = new Checker(dev, openHeader(dev), closeMessages);
    readSnapshots(ck, newRes(), 0);
  } catch (e) {
    if (e instanceof CheckAbort || e instanceof Qcow2Error) return;
    throw e;
  }
  closeMessages.length = 0;
  try {
    if (rw) closeBitmaps(ck, rw);
    ck.markClean(C.INCOMPAT_DIRTY);
  } catch (e) {
    if (!(e instanceof CheckAbort || e instanceof Qcow2Error)) throw e;
  } finally {
    // qcow2_inactivate: a refblock still dirty that fails its write is reported, not fatal.
    if (!ck.flushRefblocks())
      closeMessages.push('qemu-img: Failed to flush the refcount block cache: Input/output error');
    messages.push(...closeMessages);
  }
}
