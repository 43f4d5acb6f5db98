/**
 * Damage: byte patches applied to a healthy base image. A damage is data (base, patches, words),
 * so it prints as a script (`printf … | dd conv=notrunc`) and replays anywhere. Two families:
 * recipes in the style of QEMU's iotests 039/060/080/108/261 (named, fixed), and mutants (a seeded
 * choice of structure, field and boundary value, or random bytes in a metadata cluster).
 */
import { HEADER_FIELDS, mapImage, type HeaderField, type ImageMap } from './image-map.ts';
import type { BaseImage } from './base-images.ts';
import { baseScript } from './base-images.ts';

export interface Patch {
  offset: number;
  bytes: Uint8Array;
}

export interface Damage {
  id: string;
  base: string;
  family: 'recipe' | 'mutant';
  what: string;
  patches: Patch[];
  /** Bytes appended to / cut from the file (negative truncates), after the patches. */
  resize?: number;
}

export function be(value: bigint | number, width: 1 | 2 | 4 | 8): Uint8Array {
  const out = new Uint8Array(width);
  let v = BigInt.asUintN(width * 8, BigInt(value));
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

const patch = (offset: number, value: bigint | number, width: 1 | 2 | 4 | 8): Patch => ({
  offset,
  bytes: be(value, width),
});

function field(name: string): HeaderField {
  const f = HEADER_FIELDS.find((x) => x.name === name);
  if (!f) throw new Error(`no header field ${name}`);
  return f;
}

const setField = (name: string, value: bigint | number): Patch => {
  const f = field(name);
  return patch(f.offset, value, f.width);
};

/** The refcount block entry (bytes) for host cluster `cluster`, for 16-bit refcounts. */
function refcountEntry(m: ImageMap, hostOffset: number, value: number): Patch | undefined {
  const order = m.header.refcountOrder;
  if (order !== 4) return undefined;
  const perBlock = (m.clusterSize * 8) >> order;
  const cluster = Math.floor(hostOffset / m.clusterSize);
  const block = m.refBlocks.find((b) => b.index === Math.floor(cluster / perBlock));
  if (!block) return undefined;
  return patch(block.offset + (cluster % perBlock) * 2, value, 2);
}

const COPIED = 1n << 63n;
const COMPRESSED = 1n << 62n;

type Recipe = {
  id: string;
  base: string;
  what: string;
  make: (m: ImageMap) => Patch[] | undefined;
  resize?: number;
};

const first = <T>(xs: readonly T[]): T | undefined => xs[0];

/** Recipes after QEMU's iotests: each names the situation it builds. */
export const RECIPES: readonly Recipe[] = [
  // --- 039: dirty and corrupt bits
  {
    id: '039-dirty-bit',
    base: 'plain',
    what: 'dirty bit set without lazy refcounts',
    make: () => [setField('incompatible_features', 1)],
  },
  {
    id: '039-dirty-lazy-leak',
    base: 'lazy',
    what: 'lazy refcounts, dirty bit set, a data cluster refcount dropped to 0',
    make: (m) => {
      const d = first(m.dataClusters);
      const r = d !== undefined ? refcountEntry(m, d, 0) : undefined;
      return r ? [setField('incompatible_features', 1), r] : undefined;
    },
  },
  {
    id: '039-corrupt-bit',
    base: 'plain',
    what: 'corrupt bit set',
    make: () => [setField('incompatible_features', 2)],
  },
  {
    id: '039-unknown-incompat',
    base: 'plain',
    what: 'unknown incompatible feature bit 40',
    make: () => [setField('incompatible_features', 1n << 40n)],
  },
  {
    id: '039-unknown-compat',
    base: 'plain',
    what: 'unknown compatible feature bit 7',
    make: () => [setField('compatible_features', 1n << 7n)],
  },
  {
    id: '039-unknown-autoclear',
    base: 'plain',
    what: 'unknown autoclear bit 9',
    make: () => [setField('autoclear_features', 1n << 9n)],
  },
  // --- 060: metadata overlaps and bad references
  {
    id: '060-l1-refcount-zero',
    base: 'plain',
    what: 'refcount of the L1 table cluster set to 0',
    make: (m) => {
      const r = refcountEntry(m, m.header.l1TableOffset, 0);
      return r && [r];
    },
  },
  {
    id: '060-l2-refcount-zero',
    base: 'plain',
    what: 'refcount of an L2 table set to 0',
    make: (m) => {
      const t = first(m.l2Tables);
      const r = t !== undefined ? refcountEntry(m, t, 0) : undefined;
      return r && [r];
    },
  },
  {
    id: '060-data-refcount-two',
    base: 'plain',
    what: 'refcount of a data cluster set to 2 (COPIED now wrong)',
    make: (m) => {
      const d = first(m.dataClusters);
      const r = d !== undefined ? refcountEntry(m, d, 2) : undefined;
      return r && [r];
    },
  },
  {
    id: '060-l1-to-header',
    base: 'plain',
    what: 'L1 entry 0 points at the header cluster (COPIED set)',
    make: (m) => [patch(m.header.l1TableOffset, COPIED, 8)],
  },
  {
    id: '060-l1-to-refcount-table',
    base: 'plain',
    what: 'L1 entry 0 points at the refcount table',
    make: (m) => [patch(m.header.l1TableOffset, COPIED | BigInt(m.header.refcountTableOffset), 8)],
  },
  {
    id: '060-l1-unaligned',
    base: 'plain',
    what: 'L1 entry 0 holds an unaligned L2 offset',
    make: (m) => {
      const e = first(m.l1Entries);
      return e && [patch(m.header.l1TableOffset + e.index * 8, COPIED | BigInt(e.l2Offset + 0x200), 8)];
    },
  },
  {
    id: '060-l1-beyond-eof',
    base: 'plain',
    what: 'L1 entry 0 points past the end of the file',
    make: (m) => [patch(m.header.l1TableOffset, COPIED | BigInt(m.fileSize + 16 * m.clusterSize), 8)],
  },
  {
    id: '060-l2-to-header',
    base: 'plain',
    what: 'an L2 entry points at the header cluster',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'normal');
      return e && [patch(e.at, COPIED | 0n, 8), patch(e.at + 4, 0, 4)];
    },
  },
  {
    id: '060-l2-to-l1',
    base: 'plain',
    what: 'an L2 entry points at the L1 table',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'normal');
      return e && [patch(e.at, COPIED | BigInt(m.header.l1TableOffset), 8)];
    },
  },
  {
    id: '060-l2-unaligned',
    base: 'plain',
    what: 'an L2 entry holds an unaligned data offset',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'normal');
      const d = first(m.dataClusters);
      return e && d !== undefined ? [patch(e.at, COPIED | BigInt(d + 0x200), 8)] : undefined;
    },
  },
  {
    id: '060-zero-unaligned',
    base: 'plain',
    what: 'a zero cluster entry with an unaligned offset',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'zero');
      return e && [patch(e.at, COPIED | BigInt(m.fileSize + 0x200) | 1n, 8)];
    },
  },
  {
    id: '060-l2-beyond-eof',
    base: 'plain',
    what: 'an L2 entry points past the end of the file',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'normal');
      return e && [patch(e.at, COPIED | BigInt(m.fileSize + 64 * m.clusterSize), 8)];
    },
  },
  {
    id: '060-two-l2-entries-share',
    base: 'plain',
    what: 'two L2 entries point at the same data cluster',
    make: (m) => {
      const normal = m.l2Entries.filter((x) => x.kind === 'normal');
      const d = first(m.dataClusters);
      return normal.length >= 2 && d !== undefined
        ? [patch(normal[1]!.at, COPIED | BigInt(d), 8)]
        : undefined;
    },
  },
  {
    id: '060-compressed-beyond-eof',
    base: 'plain',
    what: 'a compressed cluster descriptor whose data lies past the end of the file',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'compressed');
      return e && [patch(e.at, COMPRESSED | BigInt(m.fileSize + 8 * m.clusterSize), 8)];
    },
  },
  {
    id: '060-compressed-over-l1',
    base: 'plain',
    what: 'a compressed cluster descriptor pointing into the L1 table',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'compressed');
      return e && [patch(e.at, COMPRESSED | BigInt(m.header.l1TableOffset), 8)];
    },
  },
  {
    id: '060-compressed-copied',
    base: 'plain',
    what: 'a compressed cluster descriptor with COPIED set',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'compressed');
      // Bit 63 (COPIED) is reserved in compressed descriptors (qcow2.txt "Compressed Clusters Descriptor").
      return e && [{ offset: e.at, bytes: new Uint8Array([0xc0]) }];
    },
  },
  {
    id: '060-l2-reserved-bits',
    base: 'plain',
    what: 'an L2 entry with reserved bits 56-61 set',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'normal');
      return e && [{ offset: e.at, bytes: new Uint8Array([0xbf]) }];
    },
  },
  {
    id: '060-l1-reserved-bits',
    base: 'plain',
    what: 'an L1 entry with reserved bits 56-62 set',
    make: (m) => {
      const e = first(m.l1Entries);
      return e && [{ offset: m.header.l1TableOffset + e.index * 8, bytes: new Uint8Array([0xff]) }];
    },
  },
  {
    id: '060-copied-cleared',
    base: 'plain',
    what: 'COPIED cleared on an L2 entry with refcount 1',
    make: (m) => {
      const e = m.l2Entries.find((x) => x.kind === 'normal');
      return e && [{ offset: e.at, bytes: new Uint8Array([0x00]) }];
    },
  },
  {
    id: '060-refblock-entry-zero',
    base: 'plain',
    what: 'refcount table entry 0 cleared (offset 0 means no block: the header loses its refcount)',
    make: (m) => [patch(m.header.refcountTableOffset, 0, 8)],
  },
  {
    id: '060-refblock-to-l1',
    base: 'plain',
    what: 'refcount table entry 0 points at the L1 table',
    make: (m) => [patch(m.header.refcountTableOffset, BigInt(m.header.l1TableOffset), 8)],
  },
  {
    id: '060-refblock-unaligned',
    base: 'plain',
    what: 'refcount table entry 0 unaligned',
    make: (m) => {
      const b = first(m.refBlocks);
      return b && [patch(m.header.refcountTableOffset, BigInt(b.offset + 0x200), 8)];
    },
  },
  {
    id: '060-refblock-beyond-eof',
    base: 'plain',
    what: 'refcount table entry 0 points past the end of the file',
    make: (m) => [patch(m.header.refcountTableOffset, BigInt(m.fileSize + 32 * m.clusterSize), 8)],
  },
  // --- 080: header fields out of range
  {
    id: '080-header-length-small',
    base: 'plain',
    what: 'header_length 96 (< 104)',
    make: () => [setField('header_length', 96)],
  },
  {
    id: '080-header-length-huge',
    base: 'plain',
    what: 'header_length past the first cluster',
    make: (m) => [setField('header_length', m.clusterSize + 8)],
  },
  {
    id: '080-header-length-odd',
    base: 'plain',
    what: 'header_length not a multiple of 8',
    make: () => [setField('header_length', 105)],
  },
  {
    id: '080-cluster-bits-small',
    base: 'plain',
    what: 'cluster_bits 8',
    make: () => [setField('cluster_bits', 8)],
  },
  {
    id: '080-cluster-bits-big',
    base: 'plain',
    what: 'cluster_bits 22',
    make: () => [setField('cluster_bits', 22)],
  },
  {
    id: '080-refcount-order-7',
    base: 'plain',
    what: 'refcount_order 7',
    make: () => [setField('refcount_order', 7)],
  },
  {
    id: '080-reftable-huge',
    base: 'plain',
    what: 'refcount_table_clusters 0x7fffffff',
    make: () => [setField('refcount_table_clusters', 0x7fffffff)],
  },
  {
    id: '080-reftable-zero-clusters',
    base: 'plain',
    what: 'refcount_table_clusters 0',
    make: () => [setField('refcount_table_clusters', 0)],
  },
  {
    id: '080-reftable-unaligned',
    base: 'plain',
    what: 'refcount_table_offset unaligned',
    make: (m) => [setField('refcount_table_offset', m.header.refcountTableOffset + 0x200)],
  },
  {
    id: '080-reftable-none',
    base: 'plain',
    what: 'refcount_table_offset 0',
    make: () => [setField('refcount_table_offset', 0)],
  },
  {
    id: '080-reftable-overflow',
    base: 'plain',
    what: 'refcount table offset + size overflows',
    make: () => [
      setField('refcount_table_offset', 0xffffffffffff0000n),
      setField('refcount_table_clusters', 0x100),
    ],
  },
  {
    id: '080-l1-size-huge',
    base: 'plain',
    what: 'l1_size 0x10000000',
    make: () => [setField('l1_size', 0x10000000)],
  },
  {
    id: '080-l1-size-too-small',
    base: 'plain',
    what: 'l1_size 0 for a 64 MiB disk',
    make: () => [setField('l1_size', 0)],
  },
  {
    id: '080-l1-unaligned',
    base: 'plain',
    what: 'l1_table_offset unaligned',
    make: (m) => [setField('l1_table_offset', m.header.l1TableOffset + 0x200)],
  },
  {
    id: '080-l1-overflow',
    base: 'plain',
    what: 'L1 offset + size overflows',
    make: () => [setField('l1_table_offset', 0xfffffffffffe0000n), setField('l1_size', 0x10000)],
  },
  {
    id: '080-size-huge',
    base: 'plain',
    what: 'virtual size 2^62',
    make: () => [setField('size', 1n << 62n)],
  },
  {
    id: '080-nb-snapshots-huge',
    base: 'snapshot',
    what: 'nb_snapshots 65537',
    make: () => [setField('nb_snapshots', 65537)],
  },
  {
    id: '080-snapshots-unaligned',
    base: 'snapshot',
    what: 'snapshots_offset unaligned',
    make: (m) => [setField('snapshots_offset', m.header.snapshotsOffset + 0x200)],
  },
  {
    id: '080-snapshots-beyond-eof',
    base: 'snapshot',
    what: 'snapshots_offset past the end of the file',
    make: (m) => [setField('snapshots_offset', m.fileSize + 16 * m.clusterSize)],
  },
  {
    id: '080-backing-name-beyond-cluster',
    base: 'plain',
    what: 'backing_file_offset + size past the first cluster',
    make: (m) => [setField('backing_file_offset', m.clusterSize - 8), setField('backing_file_size', 64)],
  },
  {
    id: '080-backing-name-long',
    base: 'plain',
    what: 'backing_file_size 1024',
    make: () => [setField('backing_file_offset', 0x1000), setField('backing_file_size', 1024)],
  },
  {
    id: '080-crypt-method-3',
    base: 'plain',
    what: 'crypt_method 3',
    make: () => [setField('crypt_method', 3)],
  },
  { id: '080-version-4', base: 'plain', what: 'version 4', make: () => [setField('version', 4)] },
  { id: '080-bad-magic', base: 'plain', what: 'magic QFI\\0', make: () => [setField('magic', 0x51464900)] },
  // --- 108: refcount structures to rebuild
  {
    id: '108-refblock-entry-zero',
    base: 'small-clusters',
    what: 'refcount table entry 0 cleared (every refcount in its block lost)',
    make: (m) => [patch(m.header.refcountTableOffset, 0, 8)],
  },
  {
    id: '108-refcounts-all-zero',
    base: 'plain',
    what: 'the first refcount block filled with zeros',
    make: (m) => {
      const b = first(m.refBlocks);
      return b && [{ offset: b.offset, bytes: new Uint8Array(m.clusterSize) }];
    },
  },
  {
    id: '108-refcount-leak',
    base: 'plain',
    what: 'a free cluster given refcount 1 (leak)',
    make: (m) => {
      const r = refcountEntry(m, m.fileSize + m.clusterSize, 1);
      return r && [r];
    },
  },
  // --- 261: snapshot table damage
  {
    id: '261-extra-data-huge',
    base: 'snapshot',
    what: 'snapshot extra_data_size 1025',
    make: (m) => {
      const s = first(m.snapshots);
      return s && [patch(s.at + 36, 1025, 4)];
    },
  },
  {
    id: '261-snapshot-l1-unaligned',
    base: 'snapshot',
    what: 'snapshot L1 table offset unaligned',
    make: (m) => {
      const s = first(m.snapshots);
      return s && [patch(s.at, BigInt(s.entry.l1TableOffset + 0x200), 8)];
    },
  },
  {
    id: '261-snapshot-l1-huge',
    base: 'snapshot',
    what: 'snapshot l1_size 0x10000000',
    make: (m) => {
      const s = first(m.snapshots);
      return s && [patch(s.at + 8, 0x10000000, 4)];
    },
  },
  {
    id: '261-snapshot-l1-beyond-eof',
    base: 'snapshot',
    what: 'snapshot L1 table past the end of the file',
    make: (m) => {
      const s = first(m.snapshots);
      return s && [patch(s.at, BigInt(m.fileSize + 64 * m.clusterSize), 8)];
    },
  },
  {
    id: '261-id-size-huge',
    base: 'snapshot',
    what: 'snapshot id_str_size 0xffff (table truncated)',
    make: (m) => {
      const s = first(m.snapshots);
      return s && [patch(s.at + 12, 0xffff, 2)];
    },
  },
  {
    id: '261-nb-snapshots-more',
    base: 'snapshot',
    what: 'nb_snapshots 2 with one entry in the table',
    make: () => [setField('nb_snapshots', 2)],
  },
  {
    id: '261-snapshot-l1-refcount-zero',
    base: 'snapshot',
    what: "refcount of the snapshot's L1 table set to 0",
    make: (m) => {
      const s = first(m.snapshots);
      const r = s ? refcountEntry(m, s.entry.l1TableOffset, 0) : undefined;
      return r && [r];
    },
  },
  // --- extensions
  {
    id: 'ext-length-huge',
    base: 'plain',
    what: 'first header extension length past the first cluster',
    make: (m) => {
      const e = first(m.extensions);
      return e && [patch(e.at + 4, m.clusterSize, 4)];
    },
  },
  {
    id: 'ext-bitmaps-bad-directory',
    base: 'bitmap',
    what: 'bitmaps extension: directory offset unaligned',
    make: (m) => {
      const e = m.extensions.find((x) => x.type === 0x23852875);
      return e && [patch(e.at + 8 + 16, 0x201, 8)];
    },
  },
  {
    id: 'ext-data-file-raw-alone',
    base: 'plain',
    what: 'autoclear data-file-raw without a data file',
    make: () => [setField('autoclear_features', 2)],
  },
];

/** Apply a damage to a copy of the base image's bytes. */
export function applyDamage(base: Uint8Array, d: Damage): Buffer {
  let out = Buffer.from(base);
  for (const p of d.patches) {
    if (p.offset + p.bytes.length > out.length) {
      const grown = Buffer.alloc(p.offset + p.bytes.length);
      out.copy(grown);
      out = grown;
    }
    out.set(p.bytes, p.offset);
  }
  if (d.resize !== undefined) {
    const n = Math.max(0, out.length + d.resize);
    const r = Buffer.alloc(n);
    out.copy(r, 0, 0, Math.min(n, out.length));
    out = r;
  }
  return out;
}

export function recipeDamages(bases: readonly BaseImage[]): Damage[] {
  const out: Damage[] = [];
  for (const r of RECIPES) {
    const base = bases.find((b) => b.recipe.name === r.base);
    if (!base) continue;
    const patches = r.make(mapImage(base.bytes));
    if (!patches) throw new Error(`recipe ${r.id} does not apply to base ${r.base}`);
    out.push({ id: r.id, base: r.base, family: 'recipe', what: r.what, patches, resize: r.resize });
  }
  return out;
}

// ---- mutants ----

/** mulberry32: a small seeded PRNG (the sample must be the same on every machine). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function boundaryValues(current: bigint, width: 4 | 8, m: ImageMap): bigint[] {
  const max = (1n << BigInt(width * 8)) - 1n;
  const cs = BigInt(m.clusterSize);
  return [
    0n,
    1n,
    max,
    max >> 1n,
    current + 1n,
    current - 1n,
    current + 0x200n,
    current * 2n,
    current + cs,
    BigInt(m.fileSize),
    BigInt(m.fileSize) + 1024n * cs,
  ].map((v) => BigInt.asUintN(width * 8, v));
}

/** `count` seeded mutants over the base images. */
export function mutantDamages(bases: readonly BaseImage[], seed: number, count: number): Damage[] {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const out: Damage[] = [];
  while (out.length < count) {
    const base = pick(bases);
    const m = mapImage(base.bytes);
    const n = out.length;
    const target = pick([
      'header',
      'header',
      'l1',
      'l2',
      'reftable',
      'refblock',
      'snapshot',
      'extension',
      'bytes',
    ]);
    const idBase = `mutant-${seed}-${n}-${base.recipe.name}`;
    const entry = (at: number, label: string, width: 4 | 8 = 8): Damage => {
      const cur = BigInt(Buffer.from(base.bytes).readBigUInt64BE(at)) >> (width === 4 ? 32n : 0n);
      const v = pick(boundaryValues(cur, width, m));
      return {
        id: `${idBase}-${label}`,
        base: base.recipe.name,
        family: 'mutant',
        what: `${label} := 0x${v.toString(16)}`,
        patches: [patch(at, v, width)],
      };
    };
    let d: Damage | undefined;
    switch (target) {
      case 'header': {
        const f = pick(HEADER_FIELDS.filter((x) => !x.v3 || m.header.version === 3));
        d = entry(f.offset, f.name, f.width);
        break;
      }
      case 'l1': {
        const e = m.l1Entries.length ? pick(m.l1Entries) : undefined;
        if (e) d = entry(m.header.l1TableOffset + e.index * 8, `L1[${e.index}]`);
        break;
      }
      case 'l2': {
        const e = m.l2Entries.length ? pick(m.l2Entries) : undefined;
        if (e) d = entry(e.at, `L2 entry at 0x${e.at.toString(16)} (${e.kind})`);
        break;
      }
      case 'reftable': {
        const b = m.refBlocks.length ? pick(m.refBlocks) : undefined;
        if (b) d = entry(m.header.refcountTableOffset + b.index * 8, `reftable[${b.index}]`);
        break;
      }
      case 'refblock': {
        const b = m.refBlocks.length ? pick(m.refBlocks) : undefined;
        if (b && m.header.refcountOrder === 4) {
          const used = Math.ceil(m.fileSize / m.clusterSize);
          const i = Math.floor(rnd() * Math.min(used + 2, m.clusterSize / 2));
          const v = pick([0, 1, 2, 3, 0xffff]);
          d = {
            id: `${idBase}-refcount-${i}`,
            base: base.recipe.name,
            family: 'mutant',
            what: `refcount of cluster ${i} := ${v}`,
            patches: [patch(b.offset + i * 2, v, 2)],
          };
        }
        break;
      }
      case 'snapshot': {
        const s = m.snapshots.length ? pick(m.snapshots) : undefined;
        if (s) {
          const f = pick([
            { off: 0, w: 8 as const, name: 'l1_table_offset' },
            { off: 8, w: 4 as const, name: 'l1_size' },
            { off: 36, w: 4 as const, name: 'extra_data_size' },
          ]);
          d = entry(s.at + f.off, `snapshot ${s.entry.name} ${f.name}`, f.w);
        }
        break;
      }
      case 'extension': {
        const e = m.extensions.length ? pick(m.extensions) : undefined;
        if (e) d = entry(e.at + 4, `extension 0x${e.type.toString(16)} length`, 4);
        break;
      }
      case 'bytes': {
        const regions = [
          { at: m.header.l1TableOffset, len: Math.max(8, m.header.l1Size * 8), label: 'L1 table' },
          { at: m.header.refcountTableOffset, len: 64, label: 'refcount table' },
          ...m.l2Tables.map((t) => ({ at: t, len: m.clusterSize, label: 'L2 table' })),
          ...m.refBlocks.map((b) => ({ at: b.offset, len: 256, label: 'refcount block' })),
        ];
        const r = pick(regions);
        const at = r.at + Math.floor(rnd() * Math.max(1, r.len - 8));
        const bytes = new Uint8Array(1 + Math.floor(rnd() * 8)).map(() => Math.floor(rnd() * 256));
        d = {
          id: `${idBase}-bytes-${at.toString(16)}`,
          base: base.recipe.name,
          family: 'mutant',
          what: `${bytes.length} random bytes in the ${r.label} at 0x${at.toString(16)}`,
          patches: [{ offset: at, bytes }],
        };
        break;
      }
    }
    if (d) out.push(d);
  }
  return out;
}

/** A bash script that rebuilds the damaged image with qemu-img, qemu-io, printf and dd alone. */
export function damageScript(d: Damage, base: BaseImage, img = 'img.qcow2'): string {
  const lines = ['#!/usr/bin/env bash', `# ${d.id}: ${d.what}`, 'set -eu', ...baseScript(base.recipe, img)];
  for (const p of d.patches) {
    const esc = [...p.bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
    lines.push(`printf '${esc}' | dd of=${img} bs=1 seek=${p.offset} conv=notrunc status=none`);
  }
  if (d.resize !== undefined) lines.push(`truncate -s ${d.resize >= 0 ? '+' : ''}${d.resize} ${img}`);
  lines.push(`qemu-img check ${img}; echo "exit $?"`);
  return `${lines.join('\n')}\n`;
}
