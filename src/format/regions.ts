/**
 * What is metadata: the one list of host regions that qcow2 structures occupy, shared by the
 * engine's overlap guard (allocator: a free cluster must not hold metadata) and the checker's
 * (qcow2_check_metadata_overlap). Kinds are QEMU's overlap-check names. Pure: callers pass the
 * places they already know (in-memory tables may be newer than the header on disk).
 */
import { cryptoHeaderPointer, type Header } from './header.ts';

export interface Region {
  offset: number;
  size: number;
  kind: string;
}

export interface RegionSources {
  /** Refcount table place; the header's when absent. */
  refcountTable?: { offset: number; bytes: number };
  /** Active L1 table place; the header's when absent. */
  l1Table?: { offset: number; bytes: number };
  /** Encoded size of the snapshot table (the header records only its entry count). */
  snapshotTableBytes: number;
  /** Inactive (snapshot) L1 tables. */
  snapshotL1s?: ReadonlyArray<{ l1TableOffset: number; l1Size: number }>;
  /** Active L2 tables and refcount blocks, when the caller walked them. */
  l2Tables?: readonly number[];
  refcountBlocks?: readonly number[];
  /** The LUKS header area (the engine guards it; QEMU's overlap check has no bit for it). */
  cryptoHeader?: boolean;
}

/** Every metadata region the sources name, header first. Empty regions are left out. */
export function metadataRegions(h: Header, s: RegionSources): Region[] {
  const cs = 2 ** h.clusterBits;
  const out: Region[] = [{ offset: 0, size: cs, kind: 'qcow2_header' }];
  const l1 = s.l1Table ?? { offset: h.l1TableOffset, bytes: h.l1Size * 8 };
  if (l1.bytes > 0) out.push({ offset: l1.offset, size: l1.bytes, kind: 'active L1 table' });
  const rt = s.refcountTable ?? { offset: h.refcountTableOffset, bytes: h.refcountTableClusters * cs };
  if (rt.bytes > 0) out.push({ offset: rt.offset, size: rt.bytes, kind: 'refcount table' });
  if (h.nbSnapshots > 0 && s.snapshotTableBytes > 0)
    out.push({ offset: h.snapshotsOffset, size: s.snapshotTableBytes, kind: 'snapshot table' });
  for (const sn of s.snapshotL1s ?? [])
    if (sn.l1Size) out.push({ offset: sn.l1TableOffset, size: sn.l1Size * 8, kind: 'inactive L1 table' });
  for (const off of s.l2Tables ?? []) if (off) out.push({ offset: off, size: cs, kind: 'active L2 table' });
  for (const off of s.refcountBlocks ?? [])
    if (off) out.push({ offset: off, size: cs, kind: 'refcount block' });
  if (s.cryptoHeader) {
    const p = cryptoHeaderPointer(h);
    if (p && p.length > 0) out.push({ offset: p.offset, size: p.length, kind: 'LUKS header' });
  }
  return out;
}

/**
 * The first region overlapping [offset, offset + size) at cluster granularity (both ends rounded
 * out to clusters), skipping the kinds in `ignore`.
 */
export function regionAt(
  regions: readonly Region[],
  offset: number,
  size: number,
  clusterSize: number,
  ignore: readonly string[] = [],
): Region | undefined {
  const start = Math.floor(offset / clusterSize) * clusterSize;
  const end = Math.ceil((offset + size) / clusterSize) * clusterSize;
  for (const r of regions) {
    if (r.size <= 0 || ignore.includes(r.kind)) continue;
    if (r.offset < end && start < r.offset + r.size) return r;
  }
  return undefined;
}
