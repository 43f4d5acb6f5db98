/**
 * What a write touched, named from the image's own metadata at that moment (the engine does not
 * tag its writes): the header cluster, the L1 table, the refcount table, a refcount block, an L2
 * table, the snapshot table, or data. Decoded from the bytes with the header's fields (qcow2.txt
 * "Header"): cluster_bits at 20, l1_size at 36, l1_table_offset at 40, refcount_table_offset at
 * 48, refcount_table_clusters at 56, nb_snapshots at 60, snapshots_offset at 64 (big-endian).
 * A table written before anything points at it (a new L2 table, a new refcount block) is data by
 * this measure; `classifyWrite` also looks at the image after the write's operation to name it.
 */
export type Region =
  'header' | 'l1-table' | 'refcount-table' | 'refcount-block' | 'l2-table' | 'snapshot-table' | 'data';

/** L1/L2 and refcount table entries: host offset in bits 9-55 (qcow2.txt "L1 table entry"). */
const OFFSET_MASK = 0x00fffffffffffe00n;

export interface MetadataMap {
  clusterSize: number;
  /** Host cluster index → region (clusters absent: data or free). */
  clusters: Map<number, Region>;
}

export function metadataMap(read: (offset: number, length: number) => Uint8Array): MetadataMap | undefined {
  const h = read(0, 72);
  const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
  if (v.getUint32(0) !== 0x514649fb) return undefined;
  const clusterBits = v.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21) return undefined;
  const cs = 2 ** clusterBits;
  const clusters = new Map<number, Region>([[0, 'header']]);
  const table = (offset: number, bytes: number, region: Region): void => {
    for (let c = Math.floor(offset / cs); c * cs < offset + bytes; c++) clusters.set(c, region);
  };
  const entries = (offset: number, count: number): number[] => {
    const out: number[] = [];
    if (count <= 0 || count > 1 << 20) return out;
    const t = read(offset, count * 8);
    const tv = new DataView(t.buffer, t.byteOffset, t.byteLength);
    for (let i = 0; i < count; i++) {
      const e = Number(tv.getBigUint64(i * 8) & OFFSET_MASK);
      if (e !== 0) out.push(e);
    }
    return out;
  };
  const l1Size = v.getUint32(36);
  const l1Offset = Number(v.getBigUint64(40));
  const rtOffset = Number(v.getBigUint64(48));
  const rtClusters = v.getUint32(56);
  const nbSnapshots = v.getUint32(60);
  const snOffset = Number(v.getBigUint64(64));
  if (l1Size > 0) table(l1Offset, l1Size * 8, 'l1-table');
  if (rtClusters > 0 && rtClusters < 1 << 16) {
    table(rtOffset, rtClusters * cs, 'refcount-table');
    for (const rb of entries(rtOffset, (rtClusters * cs) / 8))
      clusters.set(Math.floor(rb / cs), 'refcount-block');
  }
  for (const l2 of entries(l1Offset, l1Size)) clusters.set(Math.floor(l2 / cs), 'l2-table');
  if (nbSnapshots > 0) clusters.set(Math.floor(snOffset / cs), 'snapshot-table');
  return { clusterSize: cs, clusters };
}

export function regionOf(map: MetadataMap | undefined, offset: number): Region {
  if (!map) return 'data';
  return map.clusters.get(Math.floor(offset / map.clusterSize)) ?? 'data';
}

/** The region of a write: named by the metadata before it, or else by the metadata after. */
export function classifyWrite(
  before: MetadataMap | undefined,
  after: MetadataMap | undefined,
  offset: number,
): Region {
  const r = regionOf(before, offset);
  return r !== 'data' ? r : regionOf(after, offset);
}

/**
 * The host clusters the active L2 tables map as guest data (standard clusters, not compressed),
 * excluding any cluster the metadata also claims. `undefined` when the image has snapshots or
 * bitmaps (their tables are not walked here) or its header does not decode.
 * (qcow2.txt "Standard Cluster Descriptor": host offset in bits 9-55; bit 62: compressed; extended
 * L2 entries, incompatible bit 4, are 16 bytes.)
 */
export function dataClusters(read: (offset: number, length: number) => Uint8Array): Set<number> | undefined {
  const h = read(0, 104);
  const v = new DataView(h.buffer, h.byteOffset, h.byteLength);
  if (v.getUint32(0) !== 0x514649fb) return undefined;
  const version = v.getUint32(4);
  if (v.getUint32(60) !== 0) return undefined; // snapshots
  const incompatible = version >= 3 ? v.getBigUint64(72) : 0n;
  const autoclear = version >= 3 ? v.getBigUint64(88) : 0n;
  if ((autoclear & 1n) !== 0n) return undefined; // bitmaps extension
  const map = metadataMap(read);
  if (!map) return undefined;
  const cs = map.clusterSize;
  const entryBytes = (incompatible & (1n << 4n)) !== 0n ? 16 : 8;
  const out = new Set<number>();
  const l1Size = v.getUint32(36);
  const l1Offset = Number(v.getBigUint64(40));
  if (l1Size > 1 << 20) return undefined;
  const l1 = read(l1Offset, l1Size * 8);
  const l1v = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  for (let i = 0; i < l1Size; i++) {
    const l2Offset = Number(l1v.getBigUint64(i * 8) & OFFSET_MASK);
    if (l2Offset === 0) continue;
    const l2 = read(l2Offset, cs);
    const l2v = new DataView(l2.buffer, l2.byteOffset, l2.byteLength);
    for (let e = 0; e + 8 <= cs; e += entryBytes) {
      const entry = l2v.getBigUint64(e);
      if ((entry & (1n << 62n)) !== 0n) continue; // compressed: left in the hash
      const host = Number(entry & OFFSET_MASK);
      if (host === 0 || host % cs !== 0) continue;
      const c = host / cs;
      if (!map.clusters.has(c)) out.add(c);
    }
  }
  return out;
}
