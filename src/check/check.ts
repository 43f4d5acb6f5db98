/**
 * The consistency checker: "rebuild and compare", as QEMU's qcow2_check_refcounts does
 * (block/qcow2-refcount.c, qemu 7.2). Walk every metadata structure (header, active and snapshot
 * L1/L2 tables, data and compressed clusters, snapshot table, refcount table and blocks, crypto
 * header, bitmaps), count references in memory, compare with the stored refcounts (stored > computed:
 * leak; stored < computed: corruption), then verify the COPIED flags of the active tables.
 *
 * Works on a BlockDevice through the pure format modules only. Messages reproduce qemu-img's stderr
 * lines; counters and exit code reproduce `qemu-img check` (with `-r`, including its second pass).
 */
import { Qcow2Error, isQcow2Error } from '../errors.ts';
import type { BlockDevice } from '../io/device.ts';
import { join64, setU32, setU64, u16, u32, u64 } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import {
  bitmapsExtension,
  cryptoHeaderPointer,
  decodeHeader,
  validateHeader,
  type Header,
} from '../format/header.ts';
import { getRefcount, refblockEntries, setRefcount } from '../format/tables.ts';
import { decodeSnapshotTable, snapshotTableSize, type SnapshotEntry } from '../format/snapshot.ts';
import { RefcountArray } from './refcount-array.ts';

/** Field names as `qemu-img check --output=json` prints them. */
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
}

const FIX_LEAKS = 1;
const FIX_ERRORS = 2;

/** BdrvCheckResult + BlockFragInfo. */
interface Res {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
}

function newRes(): Res {
  return {
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
  };
}

/** A failure that ends the check (QEMU: a negative return from qcow2_check_refcounts). */
class CheckAbort extends Error {
  constructor(readonly errnoText: string) {
    super(errnoText);
  }
}

const EIO = 'Input/output error';
const EFBIG = 'File too large';
const EINVAL = 'Invalid argument';

/** %lx of a 64-bit value given as two halves. */
function hex64(hi: number, lo: number): string {
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);
}
function hex(v: number): string {
  return v.toString(16);
}
/** printf's %#lx: "0x..." except for 0. */
function altHex(v: number): string {
  return v === 0 ? '0' : '0x' + v.toString(16);
}

interface Region {
  offset: number;
  size: number;
  kind: string;
}

const REFBLOCK_CACHE_SIZE = 256;

class Checker {
  readonly dev: BlockDevice;
  readonly h: Header;
  readonly cs: number;
  readonly cb: number;
  readonly extL2: boolean;
  readonly entrySize: number;
  readonly l2Entries: number;
  readonly dataFile: boolean;
  readonly order: number;
  readonly rbEntries: number;
  readonly msgs: string[];
  /** Refcount table: masked offsets (bits 9..63) and whether reserved bits are set. */
  reftableOffset: number;
  reftable: number[];
  reftableReserved: boolean[];
  readonly activeL1: Uint8Array;
  snapshots: SnapshotEntry[] = [];
  snapshotsSize = 0;
  /** Work bound against hostile images: L2 entries the walk may visit. */
  private budget: number;
  private cache = new Map<number, Uint8Array>();
  private corruptionSignalled = false;

  constructor(dev: BlockDevice, h: Header, msgs: string[]) {
    this.dev = dev;
    this.h = h;
    this.cb = h.clusterBits;
    this.cs = 2 ** h.clusterBits;
    this.extL2 = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
    this.entrySize = this.extL2 ? C.L2E_SIZE_EXTENDED : C.L2E_SIZE_NORMAL;
    this.l2Entries = this.cs / this.entrySize;
    this.dataFile = (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n;
    this.order = h.refcountOrder;
    this.rbEntries = refblockEntries(this.cb, this.order);
    this.msgs = msgs;
    this.reftableOffset = h.refcountTableOffset;
    const n = (h.refcountTableClusters * this.cs) / 8;
    const rt = this.read(h.refcountTableOffset, n * 8);
    this.reftable = new Array<number>(n);
    this.reftableReserved = new Array<boolean>(n);
    for (let i = 0; i < n; i++) {
      const hi = u32(rt, i * 8);
      const lo = u32(rt, i * 8 + 4);
      this.reftable[i] = join64(hi, lo & C.REFT_OFFSET_MASK_LO);
      this.reftableReserved[i] = (lo & C.REFT_RESERVED_LO) !== 0;
    }
    this.activeL1 = this.read(h.l1TableOffset, h.l1Size * 8);
    const fileEntries = Math.ceil(dev.size() / this.entrySize);
    this.budget = Math.min(2 ** 28, (h.nbSnapshots + 1) * fileEntries + 2 ** 20);
  }

  /** Read `len` bytes; beyond the end of the file reads zeros (as QEMU's file driver does). */
  read(offset: number, len: number): Uint8Array {
    const b = new Uint8Array(len);
    const avail = Math.max(0, Math.min(len, this.dev.size() - offset));
    if (avail > 0) this.dev.read(b.subarray(0, avail), offset);
    return b;
  }

  msg(line: string): void {
    this.msgs.push(line);
  }

  /**
   * qcow2_signal_corruption: report once; a fatal event on a writable image sets the corrupt bit
   * (incompatible bit 1, v3 only) as QEMU does.
   */
  signalCorruption(fatal: boolean, text: string): void {
    if (this.corruptionSignalled) return;
    this.corruptionSignalled = true;
    const writable = !this.dev.readOnly;
    if (fatal && writable) {
      this.msg(`qcow2: Marking image as corrupt: ${text}; further corruption events will be suppressed`);
      if (this.h.version === 3) {
        const b = this.read(79, 1);
        b[0] = b[0]! | (1 << C.INCOMPAT_CORRUPT_BIT);
        this.dev.write(b, 79);
        this.dev.flush();
      }
    } else {
      this.msg(`qcow2: Image is corrupt: ${text}; further non-fatal corruption events will be suppressed`);
    }
  }

  // ---- stored refcounts ----

  private block(off: number): Uint8Array {
    let b = this.cache.get(off);
    if (b) {
      this.cache.delete(off);
      this.cache.set(off, b);
      return b;
    }
    b = this.read(off, this.cs);
    this.cache.set(off, b);
    if (this.cache.size > REFBLOCK_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!);
    return b;
  }

  dropCache(): void {
    this.cache.clear();
  }

  /** qcow2_get_refcount: the stored refcount, or -1 for an unreadable (unaligned) refblock. */
  stored(k: number): number {
    const idx = Math.floor(k / this.rbEntries);
    if (idx >= this.reftable.length) return 0;
    const off = this.reftable[idx]!;
    if (off === 0) return 0;
    if (off % this.cs !== 0) {
      this.signalCorruption(
        true,
        `Refblock offset ${altHex(off)} unaligned (reftable index: ${altHex(idx)})`,
      );
      return -1;
    }
    return getRefcount(this.block(off), k % this.rbEntries, this.order);
  }

  /** Write a refcount into its (existing, aligned) refblock in place. */
  setStored(k: number, v: number): boolean {
    const idx = Math.floor(k / this.rbEntries);
    const off = idx < this.reftable.length ? this.reftable[idx]! : 0;
    if (off === 0 || off % this.cs !== 0) return false;
    const b = this.block(off);
    const i = k % this.rbEntries;
    setRefcount(b, i, this.order, v);
    const bits = 1 << this.order;
    const start = Math.floor((i * bits) / 8);
    const end = Math.ceil(((i + 1) * bits) / 8);
    this.dev.write(b.subarray(start, end), off + start);
    return true;
  }

  // ---- metadata overlap guard (qcow2_check_metadata_overlap, "cached" mode) ----

  metadataRegions(): Region[] {
    const out: Region[] = [{ offset: 0, size: this.cs, kind: 'qcow2_header' }];
    if (this.h.l1Size)
      out.push({ offset: this.h.l1TableOffset, size: this.h.l1Size * 8, kind: 'active L1 table' });
    out.push({ offset: this.reftableOffset, size: this.reftable.length * 8, kind: 'refcount table' });
    if (this.snapshotsSize)
      out.push({ offset: this.h.snapshotsOffset, size: this.snapshotsSize, kind: 'snapshot table' });
    for (const s of this.snapshots)
      if (s.l1Size) out.push({ offset: s.l1TableOffset, size: s.l1Size * 8, kind: 'inactive L1 table' });
    for (let i = 0; i < this.h.l1Size; i++) {
      const off = join64(
        u32(this.activeL1, i * 8) & C.L1E_OFFSET_MASK_HI,
        u32(this.activeL1, i * 8 + 4) & C.L1E_OFFSET_MASK_LO,
      );
      if (off) out.push({ offset: off, size: this.cs, kind: 'active L2 table' });
    }
    for (const off of this.reftable)
      if (off) out.push({ offset: off, size: this.cs, kind: 'refcount block' });
    return out;
  }

  /** The kind of metadata a write would overlap (ignoring `ignore`), or undefined. */
  overlap(offset: number, size: number, ignore: string[]): string | undefined {
    if (!ignore.includes('qcow2_header') && offset < this.cs) return 'qcow2_header';
    const start = Math.floor(offset / this.cs) * this.cs;
    const end = Math.ceil((offset + size) / this.cs) * this.cs;
    for (const r of this.metadataRegions()) {
      if (ignore.includes(r.kind) || r.size <= 0) continue;
      if (r.offset < end && start < r.offset + r.size) return r.kind;
    }
    return undefined;
  }

  // ---- reference counting walk ----

  /** qcow2_inc_refcounts_imrt. */
  inc(res: Res, imrt: RefcountArray, offset: number, size: number): void {
    if (size <= 0) return;
    const fileLen = this.dev.size();
    // The last cluster may be partly beyond the end of the file, but not by a whole cluster.
    if (offset + size - fileLen >= this.cs) {
      this.msg(
        `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`,
      );
      res.corruptions++;
      return;
    }
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) {
      imrt.ensure(k + 1);
      const r = imrt.get(k);
      if (r >= imrt.max) {
        this.msg(`ERROR: overflow cluster offset=0x${hex(k * this.cs)}`);
        this.msg(
          'Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing',
        );
        res.corruptions++;
        continue;
      }
      imrt.set(k, r + 1);
    }
  }

  /** check_refcounts_l1. */
  checkL1(
    res: Res,
    imrt: RefcountArray,
    l1Offset: number,
    l1Size: number,
    frag: boolean,
    fix: number,
    active: boolean,
  ): void {
    if (!l1Size) return;
    this.inc(res, imrt, l1Offset, l1Size * 8);
    const l1 = active ? this.activeL1 : this.read(l1Offset, l1Size * 8);
    for (let i = 0; i < l1Size; i++) {
      const hi = u32(l1, i * 8);
      const lo = u32(l1, i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if (hi & C.L1E_RESERVED_HI || lo & C.L1E_RESERVED_LO) {
        this.msg(`ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
        res.corruptions++;
      }
      const l2Offset = join64(hi & C.L1E_OFFSET_MASK_HI, lo & C.L1E_OFFSET_MASK_LO);
      this.inc(res, imrt, l2Offset, this.cs);
      if (l2Offset % this.cs !== 0) {
        this.msg(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
        res.corruptions++;
      }
      this.checkL2(res, imrt, l2Offset, frag, fix, active);
    }
  }

  /** check_refcounts_l2. */
  checkL2(
    res: Res,
    imrt: RefcountArray,
    l2Offset: number,
    frag: boolean,
    fix: number,
    active: boolean,
  ): void {
    this.budget -= this.l2Entries;
    if (this.budget < 0) throw new CheckAbort('metadata walk exceeds the work bound (hostile image?)');
    const t = this.read(l2Offset, this.cs);
    let nextContiguous = 0;
    const x = 62 - (this.cb - 8); // compressed: bits 0..x-1 offset, x..61 sector count
    for (let i = 0; i < this.l2Entries; i++) {
      const o = i * this.entrySize;
      const hi = u32(t, o);
      const lo = u32(t, o + 4);
      const zeroBits = this.extL2 ? u32(t, o + 8) : 0;
      const allocBits = this.extL2 ? u32(t, o + 12) : 0;
      const compressed = (hi & C.L2E_COMPRESSED_HI) !== 0;
      if (!compressed && (hi & C.L2E_STD_RESERVED_HI || lo & C.L2E_STD_RESERVED_LO)) {
        this.msg(`ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
        res.corruptions++;
      }
      if (compressed) {
        let h2 = hi;
        const offHiBits = x - 32;
        const coffset = (hi & (2 ** offHiBits - 1)) * 0x100000000 + lo;
        if (hi & C.L2E_COPIED_HI) {
          this.msg(`ERROR: coffset=0x${hex(coffset)}: copied flag must never be set for compressed clusters`);
          h2 = (hi & ~C.L2E_COPIED_HI) >>> 0;
          res.corruptions++;
        }
        if (this.dataFile) {
          this.msg(`ERROR compressed cluster ${i} with data file, entry=0x${hex64(h2, lo)}`);
          res.corruptions++;
          continue;
        }
        if (zeroBits || allocBits) {
          this.msg(
            `ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex64(h2, lo)}`,
          );
          res.corruptions++;
          continue;
        }
        const sectors = ((hi & 0x3fffffff) >>> offHiBits) + 1;
        const csize = sectors * C.SECTOR_SIZE - (coffset % C.SECTOR_SIZE);
        this.inc(res, imrt, coffset, csize);
        if (frag) {
          // Compressed clusters count as fragmented by nature.
          res.allocatedClusters++;
          res.compressedClusters++;
          res.fragmentedClusters++;
        }
        continue;
      }
      const offset = join64(hi & C.L2E_OFFSET_MASK_HI, lo & C.L2E_OFFSET_MASK_LO);
      const zeroFlag = !this.extL2 && (lo & C.L2E_ZERO_LO) !== 0;
      let allocated = offset !== 0;
      // External data files: offset 0 with COPIED is a normal cluster at guest offset 0.
      if (!allocated && this.dataFile && !zeroFlag && hi & C.L2E_COPIED_HI) allocated = true;
      if (!allocated) {
        if (allocBits) {
          res.corruptions++;
          this.msg('ERROR: Unallocated cluster has non-zero subcluster allocation map');
        }
        continue;
      }
      if (zeroBits & allocBits) {
        res.corruptions++;
        this.msg(`ERROR offset=${hex(offset)}: Allocated cluster has corrupted subcluster allocation bitmap`);
      }
      if (offset % this.cs !== 0) {
        res.corruptions++;
        const containsData = this.extL2 ? allocBits !== 0 : !zeroFlag;
        if (!containsData) {
          const repair = (fix & FIX_ERRORS) !== 0;
          this.msg(
            `${repair ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
          );
          if (repair && this.fixL2EntryByZero(res, l2Offset, t, i, active)) continue;
        } else {
          this.msg(`ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
        }
      }
      if (frag) {
        res.allocatedClusters++;
        if (nextContiguous && offset !== nextContiguous) res.fragmentedClusters++;
        nextContiguous = offset + this.cs;
      }
      if (!this.dataFile) this.inc(res, imrt, offset, this.cs);
    }
  }

  /** fix_l2_entry_by_zero: make the entry a plain zero cluster. Aborts the check on overlap. */
  private fixL2EntryByZero(res: Res, l2Offset: number, t: Uint8Array, i: number, active: boolean): boolean {
    const o = i * this.entrySize;
    if (this.extL2) {
      const zero = u32(t, o + 8) | u32(t, o + 12);
      setU32(t, o, 0);
      setU32(t, o + 4, 0);
      setU32(t, o + 8, zero >>> 0);
      setU32(t, o + 12, 0);
    } else {
      setU32(t, o, 0);
      setU32(t, o + 4, C.L2E_ZERO_LO);
    }
    const at = l2Offset + o;
    if (this.overlap(at, this.entrySize, [active ? 'active L2 table' : 'inactive L2 table']) !== undefined) {
      this.msg('ERROR: Overlap check failed');
      res.checkErrors++;
      throw new CheckAbort(EIO);
    }
    this.dev.write(t.subarray(o, o + this.entrySize), at);
    res.corruptions--;
    res.corruptionsFixed++;
    return true;
  }

  /** check_refblocks: count the refblocks; returns whether the structure needs a rebuild. */
  checkRefblocks(res: Res, imrt: RefcountArray, fix: number): boolean {
    let rebuild = false;
    for (let i = 0; i < this.reftable.length; i++) {
      const offset = this.reftable[i]!;
      const cluster = Math.floor(offset / this.cs);
      if (this.reftableReserved[i]) {
        this.msg(`ERROR refcount table entry ${i} has reserved bits set`);
        res.corruptions++;
        rebuild = true;
        continue;
      }
      if (offset % this.cs !== 0) {
        this.msg(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
        res.corruptions++;
        rebuild = true;
        continue;
      }
      if (cluster >= imrt.nb) {
        res.corruptions++;
        const repair = (fix & FIX_ERRORS) !== 0;
        this.msg(`${repair ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
        if (repair) {
          // QEMU grows the file to cover the block; we refuse absurd growth (hostile offsets).
          const newSize = offset + this.cs;
          const limit = Math.max(2 * this.dev.size(), this.dev.size() + 2 ** 30);
          if (newSize > limit || newSize > Number.MAX_SAFE_INTEGER) {
            rebuild = true;
            this.msg(`ERROR could not resize image: ${newSize > Number.MAX_SAFE_INTEGER ? EINVAL : EFBIG}`);
            continue;
          }
          this.dev.truncate(newSize);
          imrt.ensure(Math.ceil(this.dev.size() / this.cs));
          res.corruptions--;
          res.corruptionsFixed++;
          this.inc(res, imrt, offset, this.cs);
        }
        continue;
      }
      if (offset !== 0) {
        this.inc(res, imrt, offset, this.cs);
        const r = imrt.get(cluster);
        if (r !== 1) {
          this.msg(`ERROR refcount block ${i} refcount=${r}`);
          res.corruptions++;
          rebuild = true;
        }
      }
    }
    return rebuild;
  }

  /** qcow2_check_bitmaps_refcounts (only when the autoclear bitmaps bit is set, as QEMU loads them). */
  checkBitmaps(res: Res, imrt: RefcountArray): void {
    if ((this.h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) return;
    const ext = bitmapsExtension(this.h);
    if (!ext || ext.nbBitmaps === 0) return;
    this.inc(res, imrt, ext.bitmapDirectoryOffset, ext.bitmapDirectorySize);
    if (ext.bitmapDirectorySize > 64 * 1024 * 1024) {
      res.corruptions++;
      throw new CheckAbort(EINVAL);
    }
    const dir = this.read(ext.bitmapDirectoryOffset, ext.bitmapDirectorySize);
    let o = 0;
    for (let n = 0; n < ext.nbBitmaps; n++) {
      if (o + 24 > dir.length) {
        res.corruptions++;
        throw new CheckAbort(EINVAL);
      }
      const tableOffset = u64(dir, o);
      const tableSize = u32(dir, o + 8);
      const nameSize = u16(dir, o + 18);
      const extra = u32(dir, o + 20);
      o += Math.ceil((24 + extra + nameSize) / 8) * 8;
      this.inc(res, imrt, tableOffset, tableSize * 8);
      if (tableOffset % this.cs !== 0 || tableSize * 8 > 64 * 1024 * 1024) {
        res.corruptions++;
        break;
      }
      const table = this.read(tableOffset, tableSize * 8);
      for (let i = 0; i < tableSize; i++) {
        const hi = u32(table, i * 8);
        const lo = u32(table, i * 8 + 4);
        const off = join64(hi & 0x00ffffff, lo & 0xfffffe00);
        // Reserved bits 0xff000000000001fe; an offset must be aligned; "all ones" needs offset 0.
        if (hi & 0xff000000 || lo & 0x1fe || off % this.cs !== 0 || (lo & 1 && off !== 0)) {
          res.corruptions++;
          continue;
        }
        if (off !== 0) this.inc(res, imrt, off, this.cs);
      }
    }
  }

  /** calculate_refcounts. */
  calculate(res: Res, imrt: RefcountArray, fix: number): boolean {
    this.inc(res, imrt, 0, this.cs);
    this.checkL1(res, imrt, this.h.l1TableOffset, this.h.l1Size, true, fix, true);
    if (this.dataFile && this.snapshots.length) {
      this.msg(`ERROR ${this.snapshots.length} snapshots in image with data file`);
      res.corruptions++;
    }
    for (const sn of this.snapshots) {
      if (sn.l1TableOffset % this.cs !== 0) {
        this.msg(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${altHex(sn.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`,
        );
        res.corruptions++;
        continue;
      }
      if (sn.l1Size > C.QCOW_MAX_L1_SIZE / 8) {
        this.msg(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_size=${altHex(sn.l1Size)}: L1 table is too large; snapshot table entry corrupted`,
        );
        res.corruptions++;
        continue;
      }
      this.checkL1(res, imrt, sn.l1TableOffset, sn.l1Size, false, fix, false);
    }
    this.inc(res, imrt, this.h.snapshotsOffset, this.snapshotsSize);
    this.inc(res, imrt, this.reftableOffset, this.reftable.length * 8);
    const crypto = cryptoHeaderPointer(this.h);
    if (crypto && crypto.length) this.inc(res, imrt, crypto.offset, crypto.length);
    this.checkBitmaps(res, imrt);
    return this.checkRefblocks(res, imrt, fix);
  }

  /** compare_refcounts; returns [highestCluster, rebuild]. */
  compare(res: Res, imrt: RefcountArray, fix: number): { highest: number; rebuild: boolean } {
    let highest = 0;
    let rebuild = false;
    for (let i = 0; i < imrt.nb; i++) {
      const r1 = this.stored(i);
      if (r1 < 0) {
        this.msg(`Can't get refcount for cluster ${i}: ${EIO}`);
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
      this.msg(
        `${fixed ? 'Repairing' : r1 < r2 ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${r1} reference=${r2}`,
      );
      if (fixed && this.setStored(i, r2)) {
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
  checkCopied(res: Res, fix: number): void {
    let repair: boolean;
    if (fix & FIX_ERRORS) repair = true;
    // With -r leaks, repair only when the refcounts are now known to be right.
    else if (fix & FIX_LEAKS) repair = !res.checkErrors && !res.corruptions && !res.leaks;
    else repair = false;
    const verb = repair ? 'Repairing' : 'ERROR';
    for (let i = 0; i < this.h.l1Size; i++) {
      let hi = u32(this.activeL1, i * 8);
      const lo = u32(this.activeL1, i * 8 + 4);
      const l2Offset = join64(hi & C.L1E_OFFSET_MASK_HI, lo & C.L1E_OFFSET_MASK_LO);
      if (!l2Offset) continue;
      const r = this.stored(Math.floor(l2Offset / this.cs));
      if (r >= 0 && (r === 1) !== ((hi & C.L1E_COPIED_HI) !== 0)) {
        res.corruptions++;
        this.msg(`${verb} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${r}`);
        if (repair) {
          hi = (r === 1 ? hi | C.L1E_COPIED_HI : hi & ~C.L1E_COPIED_HI) >>> 0;
          setU32(this.activeL1, i * 8, hi);
          const at = this.h.l1TableOffset + i * 8;
          if (this.overlap(at, 8, ['active L1 table']) !== undefined) {
            res.checkErrors++;
            throw new CheckAbort(EIO);
          }
          this.dev.write(this.activeL1.subarray(i * 8, i * 8 + 8), at);
          res.corruptions--;
          res.corruptionsFixed++;
        }
      }
      const t = this.read(l2Offset, this.cs);
      let dirty = 0;
      for (let j = 0; j < this.l2Entries; j++) {
        const o = j * this.entrySize;
        const ehi = u32(t, o);
        const elo = u32(t, o + 4);
        if (ehi & C.L2E_COMPRESSED_HI) continue;
        const off = join64(ehi & C.L2E_OFFSET_MASK_HI, elo & C.L2E_OFFSET_MASK_LO);
        const zeroFlag = !this.extL2 && (elo & C.L2E_ZERO_LO) !== 0;
        const normal = off !== 0 || (this.dataFile && !zeroFlag && (ehi & C.L2E_COPIED_HI) !== 0);
        if (!normal) continue;
        const rc = this.dataFile ? 1 : this.stored(Math.floor(off / this.cs));
        if (rc < 0) continue;
        if ((rc === 1) !== ((ehi & C.L2E_COPIED_HI) !== 0)) {
          res.corruptions++;
          this.msg(`${verb} OFLAG_COPIED data cluster: l2_entry=${hex64(ehi, elo)} refcount=${rc}`);
          if (repair) {
            setU32(t, o, (rc === 1 ? ehi | C.L2E_COPIED_HI : ehi & ~C.L2E_COPIED_HI) >>> 0);
            dirty++;
          }
        }
      }
      if (dirty > 0) {
        const kind = this.overlap(l2Offset, this.cs, ['active L2 table']);
        if (kind !== undefined) {
          this.msg(`ERROR: Could not write L2 table; metadata overlap check failed: ${EIO}`);
          res.checkErrors++;
          throw new CheckAbort(EIO);
        }
        this.dev.write(t, l2Offset);
        res.corruptions -= dirty;
        res.corruptionsFixed += dirty;
      }
    }
  }

  // ---- rebuild_refcount_structure ----

  /** alloc_clusters_imrt: first fit from `state.firstFree`, growing the array at the end. */
  private allocImrt(imrt: RefcountArray, count: number, state: { firstFree: number }): number {
    let cluster = state.firstFree;
    let contiguous = 0;
    let firstGap = true;
    for (; cluster < imrt.nb && contiguous < count; cluster++) {
      if (!imrt.get(cluster)) {
        contiguous++;
        if (firstGap) {
          state.firstFree = cluster;
          firstGap = false;
        }
      } else if (contiguous) contiguous = 0;
    }
    if (contiguous < count) imrt.ensure(cluster + count - contiguous);
    cluster -= contiguous;
    for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
    return cluster * this.cs;
  }

  /** rebuild_refcounts_write_refblocks; returns whether the new reftable grew. */
  private writeRefblocks(imrt: RefcountArray, first: number, end: number, table: number[]): boolean {
    const state = { firstFree: 0 };
    let grown = false;
    for (let cluster = first; cluster < end; cluster++) {
      if (!imrt.get(cluster)) continue;
      const rbIndex = Math.floor(cluster / this.rbEntries);
      const rbStart = rbIndex * this.rbEntries;
      let rbOffset: number;
      if (rbIndex < table.length && table[rbIndex]) {
        rbOffset = table[rbIndex]!;
      } else {
        // Never allocate inside a refblock already written.
        if (state.firstFree < rbStart) state.firstFree = rbStart;
        rbOffset = this.allocImrt(imrt, 1, state);
        const rbCluster = rbOffset / this.cs;
        if (rbCluster >= end) end = rbCluster + 1; // its own refcount must be written too
        if (table.length <= rbIndex) {
          const entries = Math.ceil(((rbIndex + 1) * 8) / this.cs) * (this.cs / 8);
          while (table.length < entries) table.push(0);
          grown = true;
        }
        table[rbIndex] = rbOffset;
      }
      const block = new Uint8Array(this.cs);
      for (let i = 0; i < this.rbEntries; i++) {
        const v = imrt.get(rbStart + i);
        if (v) setRefcount(block, i, this.order, v);
      }
      const kind = this.overlap(rbOffset, this.cs, []);
      if (kind !== undefined) {
        this.signalCorruption(true, `Preventing invalid write on metadata (overlaps with ${kind})`);
        this.msg(`qemu-img: ERROR writing refblock: ${EIO}`);
        throw new CheckAbort(EIO);
      }
      this.dev.write(block, rbOffset);
      cluster = rbStart + this.rbEntries - 1;
    }
    return grown;
  }

  /** Write new refblocks and a new reftable from the computed refcounts; point the header at them. */
  rebuild(res: Res, imrt: RefcountArray): void {
    const table: number[] = [];
    this.writeRefblocks(imrt, 0, imrt.nb, table);
    let grown: boolean;
    let reftableOffset: number;
    let reftableClusters: number;
    do {
      reftableClusters = Math.ceil((table.length * 8) / this.cs);
      reftableOffset = this.allocImrt(imrt, reftableClusters, { firstFree: 0 });
      const start = reftableOffset / this.cs;
      grown = this.writeRefblocks(imrt, start, start + reftableClusters, table);
    } while (grown);
    const rt = new Uint8Array(table.length * 8);
    table.forEach((off, i) => setU64(rt, i * 8, off));
    const kind = this.overlap(reftableOffset, rt.length, []);
    if (kind !== undefined) {
      this.signalCorruption(true, `Preventing invalid write on metadata (overlaps with ${kind})`);
      this.msg(`qemu-img: ERROR writing reftable: ${EIO}`);
      throw new CheckAbort(EIO);
    }
    this.dev.write(rt, reftableOffset);
    this.dev.flush();
    // Header: refcount_table_offset (48, u64) and refcount_table_clusters (56, u32).
    const hdr = new Uint8Array(12);
    setU64(hdr, 0, reftableOffset);
    setU32(hdr, 8, reftableClusters);
    this.dev.write(hdr, 48);
    this.dev.flush();
    this.reftableOffset = reftableOffset;
    this.reftable = table;
    this.reftableReserved = table.map(() => false);
    this.dropCache();
  }

  /** Clear the dirty and corrupt bits (qcow2_mark_clean, qcow2_mark_consistent). */
  markClean(): void {
    if (this.h.version !== 3) return;
    const b = this.read(72, 8);
    const before = b[7]!;
    b[7] = before & ~((1 << C.INCOMPAT_DIRTY_BIT) | (1 << C.INCOMPAT_CORRUPT_BIT));
    if (b[7] !== before) {
      this.dev.flush();
      this.dev.write(b.subarray(7, 8), 79);
      this.dev.flush();
    }
  }
}

/** qcow2_check_refcounts; returns the result of this pass. */
function checkRefcounts(ck: Checker, res: Res, fix: number): void {
  const size = ck.dev.size();
  const imrt = new RefcountArray(Math.ceil(size / ck.cs), ck.order);
  res.totalClusters = Math.ceil(ck.h.size / ck.cs);
  let rebuild = ck.calculate(res, imrt, fix);
  const preCompare = { ...res };
  let cmp = ck.compare(res, imrt, 0);
  let highest = cmp.highest;
  rebuild = rebuild || cmp.rebuild;
  if (rebuild && fix & FIX_ERRORS) {
    const old = { ...res };
    let freshLeaks = 0;
    ck.msg('Rebuilding refcount structure');
    ck.rebuild(res, imrt);
    res.corruptions = 0;
    res.leaks = 0;
    imrt.clear();
    ck.calculate(res, imrt, 0);
    if (fix & FIX_LEAKS) {
      // The old structure is now leaked; fix that. Leaks left are ones the rebuild introduced.
      const saved = { ...res };
      const fresh = newRes();
      cmp = ck.compare(fresh, imrt, FIX_LEAKS);
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
      cmp = ck.compare(res, imrt, fix);
      highest = cmp.highest;
    }
  }
  ck.checkCopied(res, fix);
  res.imageEndOffset = (highest + 1) * ck.cs;
}

/** Read the snapshot table in check mode (qcow2_check_read_snapshot_table, simplified). */
function readSnapshots(ck: Checker, res: Res, _fix: number): void {
  const h = ck.h;
  if (h.nbSnapshots === 0) return;
  if (h.nbSnapshots > C.QCOW_MAX_SNAPSHOTS) {
    res.corruptions++;
    ck.msg(`ERROR snapshot table too large (${h.nbSnapshots} snapshots)`);
    throw new CheckAbort(EFBIG);
  }
  // Bytes past the end of the file read as zeros; an entry can extend at most ~130 KiB past its start.
  const inFile = Math.max(0, ck.dev.size() - h.snapshotsOffset);
  const len = Math.min(
    C.QCOW_MAX_SNAPSHOTS_SIZE + 140_000,
    inFile + 140_000 + h.nbSnapshots * C.SNAPSHOT_ENTRY_FIXED_SIZE,
  );
  const b = ck.read(h.snapshotsOffset, len);
  const entries = decodeSnapshotTable(b, h.nbSnapshots, h.version, {
    tableOffset: h.snapshotsOffset,
    lenient: true,
  });
  entries.forEach((e, i) => {
    const extra =
      (e.vmStateSizeLarge !== undefined ? 8 : 0) +
      (e.diskSize !== undefined ? 8 : 0) +
      (e.icount !== undefined ? 8 : 0) +
      e.unknownExtraData.length;
    if (h.version >= 3 && extra < C.SNAPSHOT_EXTRA_DATA_V3_MIN) {
      // QEMU repairs this by rewriting the table with complete extra data; we only report it.
      ck.msg(`ERROR snapshot table entry ${i} is incomplete`);
      res.corruptions++;
    }
  });
  ck.snapshots = entries;
  ck.snapshotsSize = snapshotTableSize(entries);
}

function openHeader(dev: BlockDevice): Header {
  const first = new Uint8Array(Math.min(Math.max(dev.size(), 0), 2 ** C.MAX_CLUSTER_BITS));
  dev.read(first, 0);
  let h = decodeHeader(first.subarray(0, Math.min(first.length, 4096)));
  h = decodeHeader(first.subarray(0, Math.min(first.length, 2 ** h.clusterBits)));
  validateHeader(h, dev.size());
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
function checkPass(dev: BlockDevice, h: Header, fix: number, msgs: string[]): Res {
  const ck = new Checker(dev, h, msgs);
  const res = newRes();
  const snapRes = newRes();
  readSnapshots(ck, snapRes, fix);
  try {
    checkRefcounts(ck, res, fix);
  } finally {
    res.corruptions += snapRes.corruptions;
    res.checkErrors += snapRes.checkErrors;
  }
  if (fix && res.checkErrors === 0 && res.corruptions === 0) ck.markClean();
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
  try {
    h = openHeader(dev);
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    messages.push(`qemu-img: Could not open '${filename}': ${text}`);
    return { result: { filename, format: 'qcow2', 'check-errors': 1 }, messages, exitCode: 1, failure: text };
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
  let res: Res;
  try {
    res = checkPass(dev, h, fix, messages);
  } catch (e) {
    if (e instanceof CheckAbort || e instanceof Qcow2Error) return fail(e, undefined);
    throw e;
  }
  let repairSummary: CheckReport['repairSummary'];
  if (res.corruptionsFixed || res.leaksFixed) {
    repairSummary = { leaksFixed: res.leaksFixed, corruptionsFixed: res.corruptionsFixed };
    try {
      const h2 = openHeader(dev);
      const again = checkPass(dev, h2, 0, messages);
      again.leaksFixed = res.leaksFixed;
      again.corruptionsFixed = res.corruptionsFixed;
      res = again;
    } catch (e) {
      if (e instanceof CheckAbort || e instanceof Qcow2Error) return { ...fail(e, undefined), repairSummary };
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
