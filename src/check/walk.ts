/**
 * The checker's walk (block/qcow2-refcount.c, qemu 7.2: calculate_refcounts and the
 * check_refcounts_l1/l2 it calls): every metadata structure — header, active and snapshot L1/L2
 * tables, data and compressed clusters, snapshot table, refcount table and blocks, crypto header,
 * bitmaps — is decoded with the codecs of src/format/ and its references counted in memory. It
 * also holds what the comparison and the rebuild share: the stored refcounts, the metadata
 * overlap guard (the region list of format/regions.ts) and QEMU's corruption signal.
 */
import type { BlockDevice } from '../io/device.ts';
import { setU64, u32 } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { bitmapsExtension, cryptoHeaderPointer, type Header } from '../format/header.ts';
import { getRefcount, readL1, refblockEntries, setRefcount } from '../format/tables.ts';
import {
  decodeBitmapDirectoryEntry,
  decodeBitmapTableEntry,
  type BitmapTableEntry,
} from '../format/bitmaps.ts';
import { metadataRegions, regionAt, type Region } from '../format/regions.ts';
import type { SnapshotEntry } from '../format/snapshot.ts';
import { CorruptionError } from '../errors.ts';
import { qemuHeaderCluster, stateOf, type HeaderState } from './header-rewrite.ts';
import {
  FIX_ERRORS,
  CheckAbort,
  EIO,
  EFBIG,
  EINVAL,
  hex,
  altHex,
  GROWTH_LIMIT_CLUSTERS,
  type Res,
} from './walk-basics.ts';
import { checkL1 } from './l1-walk.ts';
import { decodeReftable } from './reftable-decode.ts';
import type { RefcountArray } from './refcount-array.ts';

const REFBLOCK_CACHE_SIZE = 256;

export class Checker {
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
  /** Entries whose offset is not cluster-aligned (decided on the low word: offsets can exceed 2^53). */
  reftableUnaligned: boolean[];
  /** Exact hexadecimal offsets of entries beyond 2^53 (their `reftable` value is rounded). */
  reftableExact: Map<number, string>;
  readonly activeL1: Uint8Array;
  snapshots: SnapshotEntry[] = [];
  snapshotsSize = 0;
  /** Work bound against hostile images: L2 entries the walk (l1-walk.ts) may still visit. */
  budget: number;
  private readonly cache = new Map<number, Uint8Array>();
  private corruptionSignalled = false;
  /** Refblocks changed in the cache and not yet written. */
  private readonly dirtyBlocks = new Set<number>();
  /** A fatal corruption event happened: QEMU's driver writes nothing more. */
  dead = false;
  /** Called once on a fatal corruption event (the open is then unusable). */
  onFatal: (() => void) | undefined;
  /** QEMU's free_cluster_index: allocation searches start here; a freed cluster lowers it. */
  freeHint = 0;
  /** What QEMU's open state holds of the header (written back whole by qcow2_update_header). */
  readonly hstate: HeaderState;

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
    const rtd = decodeReftable(rt, n, this.cs);
    this.reftable = rtd.offsets;
    this.reftableReserved = rtd.reserved;
    this.reftableUnaligned = rtd.unaligned;
    this.reftableExact = rtd.exact;
    this.activeL1 = this.read(h.l1TableOffset, h.l1Size * 8);
    this.hstate = stateOf(h);
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
      // qcow2_mark_corrupt: the bit (v3 only has the field), through a whole-header rewrite.
      this.hstate.incompatibleFeatures |= C.INCOMPAT_CORRUPT;
      this.updateHeader();
      this.dead = true;
      this.onFatal?.();
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
    if (this.cache.size > REFBLOCK_CACHE_SIZE) {
      const oldest = this.cache.keys().next().value!;
      this.writeBack(oldest);
      this.dirtyBlocks.delete(oldest);
      this.cache.delete(oldest);
    }
    return b;
  }

  /**
   * qcow2_cache_entry_flush: a refblock write passes the overlap guard first (refcount blocks
   * excepted, QCOW2_OL_REFCOUNT_BLOCK); one that fails it stays dirty and the flush fails.
   * Observed, not derived from the source: QEMU 7.2 does not fail the flush of a refblock that is
   * also an active L2 table (mutant-3-228 and mutant-5-6, reftable[0] := the L2 table), while one
   * on the refcount table (mutant-3-219) or the L1 table (mutant-4-4) fails.
   */
  private writeBack(off: number): boolean {
    const b = this.cache.get(off);
    if (!b || !this.dirtyBlocks.has(off)) return true;
    if (!this.mayWrite(off, this.cs, ['refcount block', 'active L2 table'])) return false;
    this.dirtyBlocks.delete(off);
    if (!this.dead) this.dev.write(b, off);
    return true;
  }

  /**
   * qcow2_cache_flush of the refcount blocks: repaired refcounts reach the file here (and at the
   * end of the check), not when they are set — so a fatal corruption event in between loses them,
   * as QEMU's do (its driver is then unusable and never flushes again). False when a block failed
   * the overlap guard (it stays dirty, as in QEMU's cache).
   */
  flushRefblocks(): boolean {
    let ok = true;
    for (const off of [...this.dirtyBlocks]) if (!this.writeBack(off)) ok = false;
    return ok;
  }

  dropCache(): void {
    this.flushRefblocks();
    this.dirtyBlocks.clear();
    this.cache.clear();
  }

  /**
   * The stored refcount as qemu-img prints it (%PRIu64): a 64-bit entry above 2^53 exactly, read
   * as a BigInt (a double would round it, iotests 112). `value` is what `stored` returned.
   */
  storedText(k: number, value: number): string {
    if (this.order !== 6 || value <= Number.MAX_SAFE_INTEGER) return String(value);
    const off = this.reftable[Math.floor(k / this.rbEntries)]!;
    const b = this.block(off);
    const o = (k % this.rbEntries) * 8;
    return ((BigInt(u32(b, o)) << 32n) | BigInt(u32(b, o + 4))).toString();
  }

  /** qcow2_get_refcount: the stored refcount, or -1 for an unreadable (unaligned) refblock. */
  stored(k: number): number {
    const idx = Math.floor(k / this.rbEntries);
    if (idx >= this.reftable.length) return 0;
    const off = this.reftable[idx]!;
    if (off === 0) return 0;
    if (this.reftableUnaligned[idx]) {
      const exact = this.reftableExact.get(idx);
      this.signalCorruption(
        true,
        `Refblock offset ${exact !== undefined ? `0x${exact}` : altHex(off)} unaligned (reftable index: ${altHex(idx)})`,
      );
      return -1;
    }
    return getRefcount(this.block(off), k % this.rbEntries, this.order);
  }

  /**
   * Set a refcount in its (existing, aligned) refblock, through the cache. A cluster whose
   * refcount drops to 0 is discarded at once (QCOW2_DISCARD_ALWAYS: update_refcount passes it
   * down, and it then reads as zeros), before the refblock itself is written back.
   */
  setStored(k: number, v: number, discard = true): boolean {
    const idx = Math.floor(k / this.rbEntries);
    const off = idx < this.reftable.length ? this.reftable[idx]! : 0;
    if (off === 0 || this.reftableUnaligned[idx]) return false;
    const b = this.block(off);
    const i = k % this.rbEntries;
    const before = getRefcount(b, i, this.order);
    setRefcount(b, i, this.order, v);
    if (v === 0 && k < this.freeHint) this.freeHint = k;
    this.dirtyBlocks.add(off);
    if (discard && v === 0 && before > 0 && !this.dead && k * this.cs < this.dev.size()) {
      const len = Math.min(this.cs, this.dev.size() - k * this.cs);
      this.dev.write(new Uint8Array(len), k * this.cs);
    }
    return true;
  }

  // ---- metadata overlap guard (qcow2_check_metadata_overlap, "cached" mode) ----

  /** The metadata regions (format/regions.ts) this image has now, as QEMU's overlap check knows them. */
  metadataRegions(): Region[] {
    const l2Tables: number[] = [];
    for (let i = 0; i < this.h.l1Size; i++) l2Tables.push(readL1(this.activeL1, i).l2Offset);
    const regions = metadataRegions(this.h, {
      refcountTable: { offset: this.reftableOffset, bytes: this.reftable.length * 8 },
      snapshotTableBytes: this.snapshotsSize,
      snapshotL1s: this.snapshots,
      l2Tables,
      refcountBlocks: this.reftable,
    });
    // QCOW2_OL_BITMAP_DIRECTORY: guarded while the autoclear bitmaps bit says the directory is live.
    const b = this.hstate.bitmaps;
    if (b && b.directorySize > 0 && (this.hstate.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n)
      regions.push({ offset: b.directoryOffset, size: b.directorySize, kind: 'bitmap directory' });
    return regions;
  }

  /**
   * qcow2_pre_write_overlap_check: may a write go there? An overlap is a fatal corruption event
   * (QEMU marks the image corrupt and says which metadata the write would have hit).
   */
  mayWrite(offset: number, size: number, ignore: string[]): boolean {
    const kind = this.overlap(offset, size, ignore);
    if (kind === undefined) return true;
    this.signalCorruption(true, `Preventing invalid write on metadata (overlaps with ${kind})`);
    return false;
  }

  /** The kind of metadata a write would overlap (ignoring `ignore`), or undefined. */
  overlap(offset: number, size: number, ignore: string[]): string | undefined {
    return regionAt(this.metadataRegions(), offset, size, this.cs, ignore)?.kind;
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

  /** check_refcounts_l1 (l1-walk.ts). */
  checkL1(
    res: Res,
    imrt: RefcountArray,
    l1Offset: number,
    l1Size: number,
    frag: boolean,
    fix: number,
    active: boolean,
  ): void {
    checkL1(this, res, imrt, l1Offset, l1Size, frag, fix, active);
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
      if (this.reftableUnaligned[i]) {
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
          // QEMU grows the (sparse) file to cover the block. An offset past INT64_MAX is refused
          // before trying; a size the file system refuses fails the resize (ext4: 16 TiB). We also
          // refuse a growth that would need more than GROWTH_LIMIT_CLUSTERS counters in memory,
          // as if the file system had (a documented deviation, properties/damage/differences.ts).
          const exact = this.reftableExact.has(i)
            ? BigInt('0x' + this.reftableExact.get(i)!)
            : BigInt(offset);
          let failure: string | undefined;
          const newSize = offset + this.cs;
          if (exact > 2n ** 63n - 1n - BigInt(this.cs)) failure = EINVAL;
          else if (exact + BigInt(this.cs) > BigInt(GROWTH_LIMIT_CLUSTERS * this.cs)) failure = EFBIG;
          else {
            const before = this.dev.size();
            try {
              this.dev.truncate(newSize);
              this.dev.flush();
            } catch {
              this.dev.truncate(before);
              failure = EFBIG;
            }
          }
          if (failure !== undefined) {
            if (failure === EFBIG) this.msg(`qemu-img: Could not resize file: ${EFBIG}`);
            rebuild = true;
            this.msg(`ERROR could not resize image: ${failure}`);
            continue;
          }
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
      const d = decodeBitmapDirectoryEntry(dir, o);
      if (!d) {
        res.corruptions++;
        throw new CheckAbort(EINVAL);
      }
      const tableOffset = d.entry.bitmapTableOffset;
      const tableSize = d.entry.bitmapTableSize;
      o += d.size;
      this.inc(res, imrt, tableOffset, tableSize * 8);
      if (tableOffset % this.cs !== 0 || tableSize * 8 > 64 * 1024 * 1024) {
        res.corruptions++;
        break;
      }
      const table = this.read(tableOffset, tableSize * 8);
      for (let i = 0; i < tableSize; i++) {
        // Reserved bits, an unaligned offset, "all ones" with an offset: the decoder refuses them.
        let e: BitmapTableEntry;
        try {
          e = decodeBitmapTableEntry(table, i * 8, { clusterSize: this.cs, hostOffset: tableOffset + i * 8 });
        } catch (err) {
          if (!(err instanceof CorruptionError)) throw err;
          res.corruptions++;
          continue;
        }
        if (e.kind === 'data') this.inc(res, imrt, e.offset, this.cs);
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
      const exact = sn.l1TableOffsetExact;
      if (exact !== undefined ? exact % BigInt(this.cs) !== 0n : sn.l1TableOffset % this.cs !== 0) {
        this.msg(
          `ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${exact !== undefined ? `0x${exact.toString(16)}` : altHex(sn.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`,
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

  /**
   * qcow2_alloc_clusters: `count` contiguous clusters whose stored refcount is 0, searched from
   * freeHint (alloc_clusters_noref: a run broken by a used cluster restarts after it), then counted
   * (update_refcount). A cluster no refblock covers gets a new refblock first (allocRefblock); the
   * search then restarts at the same run, whose counts taken so far are undone.
   */
  allocClusters(count: number): number {
    for (;;) {
      let run = 0;
      while (run < count) {
        const k = this.freeHint++;
        if (k > Number.MAX_SAFE_INTEGER / this.cs) throw new CheckAbort(EIO);
        run = this.stored(k) === 0 ? run + 1 : 0;
      }
      const start = this.freeHint - count;
      let k = start;
      for (; k < start + count; k++) {
        if (this.setStored(k, 1)) continue;
        this.allocRefblock(k);
        break;
      }
      if (k === start + count) return start * this.cs;
      // -EAGAIN: "try the same ones first to see if they're still free", after undoing the counts.
      if (this.freeHint > start) this.freeHint = start;
      for (let j = start; j < k; j++) this.setStored(j, 0, false); // QCOW2_DISCARD_NEVER
    }
  }

  /**
   * alloc_refcount_block for a cluster whose refcount table entry is 0: a new refblock in the first
   * free cluster (offset 0 refused), counting itself if it falls in its own range, else counted
   * through its own refblock first; written through the refblock cache (so under the overlap
   * guard), then hooked into the refcount table by a direct write (no guard). Returns when the
   * caller must restart its search (-EAGAIN). Growing the refcount table (qcow2_refcount_area) is
   * not modelled: a cluster past the table's reach fails with EIO, before anything is written.
   */
  private allocRefblock(k: number): void {
    const idx = Math.floor(k / this.rbEntries);
    if (idx >= this.reftable.length || this.reftable[idx] !== 0 || this.reftableUnaligned[idx])
      throw new CheckAbort(EIO);
    let nb: number;
    for (;;) {
      nb = this.freeHint++;
      if (nb > Number.MAX_SAFE_INTEGER / this.cs) throw new CheckAbort(EIO);
      const r = this.stored(nb);
      if (r < 0) throw new CheckAbort(EIO);
      if (r === 0) break;
    }
    if (nb === 0) {
      this.signalCorruption(true, 'Preventing invalid allocation of refcount block at offset 0');
      throw new CheckAbort(EIO);
    }
    const block = new Uint8Array(this.cs);
    if (Math.floor(nb / this.rbEntries) === idx) {
      // The block describes itself.
      setRefcount(block, nb % this.rbEntries, this.order, 1);
    } else {
      // Described somewhere else: update_refcount(new_block, +1), which may itself need a refblock.
      if (!this.setStored(nb, 1, false)) {
        this.allocRefblock(nb);
        if (this.freeHint > nb) this.freeHint = nb;
        return;
      }
      if (!this.flushRefblocks()) throw new CheckAbort(EIO);
    }
    const off = nb * this.cs;
    this.cache.set(off, block);
    this.dirtyBlocks.add(off);
    if (!this.flushRefblocks()) throw new CheckAbort(EIO);
    // BLKDBG_REFBLOCK_ALLOC_HOOKUP: bdrv_pwrite_sync of the one reftable entry.
    const e = new Uint8Array(8);
    setU64(e, 0, off);
    this.dev.write(e, this.reftableOffset + idx * 8);
    this.dev.flush();
    this.reftable[idx] = off;
    this.reftableReserved[idx] = false;
  }

  /**
   * qcow2_free_clusters: one reference less on every cluster of [offset, offset + size), all or
   * nothing (update_refcount undoes its partial work when a refcount would drop below zero).
   * `discard`: whether QEMU passes the discard of a freed cluster down (by default it does for
   * QCOW2_DISCARD_ALWAYS and _SNAPSHOT, not for _OTHER).
   */
  freeClusters(offset: number, size: number, discard: boolean): void {
    if (size <= 0) return;
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    for (let k = first; k <= last; k++) {
      if (this.stored(k) <= 0) {
        this.msg(`qcow2_free_clusters failed: ${EINVAL}`);
        return;
      }
    }
    for (let k = first; k <= last; k++) this.setStored(k, this.stored(k) - 1, discard);
  }

  /** qcow2_update_header: the whole header cluster, from the open state. */
  updateHeader(): void {
    if (this.dead) return;
    this.dev.flush();
    this.dev.write(qemuHeaderCluster(this.h, this.hstate), 0);
    this.dev.flush();
  }

  /** Clear the dirty and corrupt bits (qcow2_mark_clean, qcow2_mark_consistent): a rewrite each. */
  markClean(bits: bigint = C.INCOMPAT_DIRTY | C.INCOMPAT_CORRUPT): void {
    if ((this.hstate.incompatibleFeatures & bits) === 0n) return;
    this.flushRefblocks(); // qcow2_flush_caches before the header says the image is clean
    this.hstate.incompatibleFeatures &= ~bits;
    this.updateHeader();
  }
}
