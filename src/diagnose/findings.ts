/**
 * Findings from an ownership map, in the words a QEMU developer would use: which cluster, which
 * table entries point at it, what its refcount says against the references found, and which guest
 * ranges read wrong or are at risk. Rules (qcow2.txt "Host cluster management", "Cluster
 * mapping"): a cluster's refcount equals its references; COPIED is set exactly when the refcount
 * is 1; a host cluster belongs to one structure, except an L2 table or data cluster shared by
 * snapshots (same guest offset) and compressed clusters packed side by side without overlap.
 */
import { codecFor } from '../codecs/index.ts';
import type { BlockDevice } from '../io/device.ts';
import { isQcow2Error } from '../errors.ts';
import type { GuestRange, Owner, OwnerKind, OwnershipMap, PointedFrom } from './ownership.ts';

export type Severity = 'corruption' | 'leak' | 'warning';

export interface Finding {
  severity: Severity;
  code: string;
  /** One line. */
  title: string;
  /** Further lines, each a sentence. */
  details: string[];
  hostCluster?: number;
  hostOffset?: number;
  owners?: Owner[];
  refcount?: number;
  references?: number;
  /** Guest ranges that read the wrong bytes now. */
  readsWrong?: GuestRange[];
  /** Guest ranges whose data or mapping a further write may destroy. */
  atRisk?: GuestRange[];
}

export const hex = (v: number): string => `0x${v.toString(16)}`;

export function describeRange(g: GuestRange): string {
  const where = g.snapshot === undefined ? '' : ` in snapshot '${g.snapshot}'`;
  return `guest ${hex(g.offset)}..${hex(g.offset + g.length - 1)}${where}`;
}

export function describeEntry(f: PointedFrom): string {
  return `${f.table} entry ${f.index} at ${hex(f.entryOffset)}`;
}

function ownerLine(o: Owner): string {
  const via = o.from ? ` (${describeEntry(o.from)}${o.copied ? ', COPIED set' : ''})` : '';
  const bytes = o.bytes ? `, bytes ${hex(o.bytes.start)}..${hex(o.bytes.end - 1)}` : '';
  return `${o.label}${bytes}${via}`;
}

const METADATA: ReadonlySet<OwnerKind> = new Set([
  'header',
  'l1',
  'l2',
  'reftable',
  'refblock',
  'snapshot-table',
  'snapshot-l1',
  'crypto-header',
  'bitmap-directory',
  'bitmap-table',
  'bitmap-data',
]);

/** Owners that may share a cluster: the same structure reached through several snapshots. */
function legitimatelyShared(dev: BlockDevice, map: OwnershipMap, owners: readonly Owner[]): boolean {
  const kinds = new Set(owners.map((o) => o.kind));
  if (kinds.size !== 1) return false;
  const kind = owners[0]!.kind;
  if (kind === 'l2' || kind === 'data') {
    // The same guest cluster in the active disk and its snapshots.
    return new Set(owners.map((o) => o.guest?.offset)).size === 1;
  }
  if (kind === 'compressed') {
    // Packed compressed clusters: a descriptor's length is rounded up to whole sectors (qcow2.txt
    // "Compressed Clusters Descriptor"), so neighbours overlap on paper. They are sound when each
    // starts at its own offset (or shares one descriptor with a snapshot) and each still inflates.
    return owners.every((o) => inflates(dev, map, o));
  }
  return false;
}

/** Does the compressed data an owner points at still inflate to a whole cluster? */
function inflates(dev: BlockDevice, map: OwnershipMap, o: Owner): boolean {
  if (!o.bytes || !map.header) return false;
  const len = Math.min(o.bytes.end, map.fileSize) - o.bytes.start;
  if (len <= 0) return false;
  const buf = new Uint8Array(len);
  dev.read(buf, o.bytes.start);
  try {
    codecFor(map.header.compressionType).decompress(buf, map.clusterSize, o.bytes.start);
    return true;
  } catch (e) {
    if (isQcow2Error(e)) return false;
    throw e;
  }
}

function guestsOf(owners: readonly Owner[], kinds?: ReadonlySet<OwnerKind>): GuestRange[] {
  return owners.filter((o) => o.guest && (!kinds || kinds.has(o.kind))).map((o) => o.guest!);
}

const DATA_KINDS: ReadonlySet<OwnerKind> = new Set(['data', 'compressed']);

/** Words for a cluster owned by structures that may not share it, and who reads wrong. */
function conflictFinding(
  dev: BlockDevice,
  map: OwnershipMap,
  c: number,
  owners: Owner[],
  refcount: number | undefined,
): Finding {
  const host = c * map.clusterSize;
  const details = owners.map((o) => `It is the ${ownerLine(o)}.`);
  const data = owners.filter((o) => o.kind === 'data');
  const compressed = owners.filter((o) => o.kind === 'compressed');
  const meta = owners.filter((o) => METADATA.has(o.kind));
  let readsWrong: GuestRange[] = [];
  let atRisk: GuestRange[] = [];
  if (meta.length > 0 && data.length + compressed.length > 0) {
    readsWrong = guestsOf(owners, DATA_KINDS);
    atRisk = [...readsWrong, ...guestsOf(meta)];
    details.push(
      `The guest data there reads ${meta.map((m) => m.label).join(' and ')} bytes instead of its own, and a guest write there would overwrite that metadata.`,
    );
  } else if (data.length > 0 && compressed.length > 0) {
    const intact = compressed.filter((o) => inflates(dev, map, o));
    if (intact.length === compressed.length) {
      // The compressed stream is whole, so it was written last: the plain cluster reads it
      // wherever the two overlap.
      for (const c of compressed) {
        for (const d of data) {
          const start = Math.max(c.bytes!.start, host);
          const end = Math.min(c.bytes!.end, host + map.clusterSize);
          if (start >= end || !d.guest) continue;
          const wrong = { ...d.guest, offset: d.guest.offset + (start - host), length: end - start };
          readsWrong.push(wrong);
          details.push(
            `The compressed data still inflates, so the compressed write came last: ${describeRange(wrong)} reads ${describeRange(c.guest!)}'s compressed bytes (host ${hex(start)}..${hex(end - 1)}) instead of the data written there.`,
          );
        }
      }
    } else {
      readsWrong = guestsOf(compressed.filter((o) => !intact.includes(o)));
      details.push(
        `The compressed data no longer inflates, so a plain write landed on it: ${readsWrong.map(describeRange).join(', ')} reads wrong (corrupt compressed data).`,
      );
    }
    atRisk = guestsOf(owners, DATA_KINDS);
  } else if (meta.length > 1) {
    atRisk = guestsOf(meta);
    details.push('Two metadata structures share it: writing one destroys the other.');
  } else {
    atRisk = guestsOf(owners, DATA_KINDS);
    details.push(
      `These guest ranges read the same host bytes: at most one of them holds what was written there (${atRisk.map(describeRange).join(', ')}).`,
    );
  }
  if (refcount !== undefined)
    details.push(`Its refcount is ${refcount}; ${owners.length} references were found.`);
  return {
    severity: 'corruption',
    code: 'DOUBLY_OWNED',
    title: `host cluster ${hex(host)} is owned by ${owners.length} things that may not share it`,
    details,
    hostCluster: c,
    hostOffset: host,
    owners,
    refcount,
    references: owners.length,
    readsWrong,
    atRisk,
  };
}

export function findingsOf(dev: BlockDevice, map: OwnershipMap): Finding[] {
  const out: Finding[] = [];
  if (!map.header) {
    out.push({
      severity: 'corruption',
      code: 'HEADER',
      title: `the header cannot be read: ${map.headerError ?? 'unknown reason'}`,
      details: ['Nothing else can be located without it.'],
      hostOffset: 0,
    });
    return out;
  }
  for (const p of map.problems) {
    out.push({
      severity: 'corruption',
      code: p.code,
      title: p.message,
      details: p.from
        ? [`The entry lives at ${hex(p.from.entryOffset)} (${p.from.table} at ${hex(p.from.tableOffset)}).`]
        : [],
      hostOffset: p.hostOffset,
    });
  }
  // Refcounts past the end of the file are not looked at (QEMU's check counts only the file's clusters).
  const stored = [...map.refcounts].filter(([c, v]) => v > 0 && c < map.fileClusters).map(([c]) => c);
  const clusters = new Set<number>([...map.owners.keys(), ...stored]);
  for (const c of [...clusters].sort((a, b) => a - b)) {
    const owners = map.owners.get(c) ?? [];
    const refcount = map.coveredByRefblock(c) ? (map.refcounts.get(c) ?? 0) : undefined;
    const host = c * map.clusterSize;
    const refs = owners.length;
    if (c >= map.fileClusters && refs > 0) {
      out.push({
        severity: 'corruption',
        code: 'BEYOND_END',
        title: `host cluster ${hex(host)} lies past the end of the file (${hex(map.fileSize)} bytes)`,
        details: [
          ...owners.map((o) => `The ${ownerLine(o)} points there.`),
          'Reads return zeros; the refcount structures cannot describe it.',
        ],
        hostCluster: c,
        hostOffset: host,
        owners,
        readsWrong: guestsOf(owners, DATA_KINDS),
      });
      continue;
    }
    if (refs > 1 && !legitimatelyShared(dev, map, owners))
      out.push(conflictFinding(dev, map, c, owners, refcount));
    if (refcount === undefined) {
      if (refs > 0)
        out.push({
          severity: 'corruption',
          code: 'NO_REFBLOCK',
          title: `no refcount block covers host cluster ${hex(host)}, which is in use`,
          details: owners.map((o) => `It is the ${ownerLine(o)}.`),
          hostCluster: c,
          hostOffset: host,
          owners,
          references: refs,
          atRisk: guestsOf(owners),
        });
    } else if (refcount < refs) {
      out.push({
        severity: 'corruption',
        code: 'REFCOUNT_TOO_LOW',
        title: `host cluster ${hex(host)} has refcount ${refcount} but ${refs} reference${refs === 1 ? '' : 's'}`,
        details: [
          ...owners.map((o) => `It is the ${ownerLine(o)}.`),
          'The allocator may hand it out again: a later write would overwrite it.',
        ],
        hostCluster: c,
        hostOffset: host,
        owners,
        refcount,
        references: refs,
        atRisk: guestsOf(owners),
      });
    } else if (refcount > refs) {
      out.push({
        severity: refs === 0 ? 'leak' : 'leak',
        code: refs === 0 ? 'LEAKED' : 'REFCOUNT_TOO_HIGH',
        title:
          refs === 0
            ? `host cluster ${hex(host)} is leaked: refcount ${refcount}, no references`
            : `host cluster ${hex(host)} has refcount ${refcount} but only ${refs} reference${refs === 1 ? '' : 's'}`,
        details:
          refs === 0
            ? ['Space is wasted; no data is at risk.']
            : owners.map((o) => `It is the ${ownerLine(o)}.`),
        hostCluster: c,
        hostOffset: host,
        owners,
        refcount,
        references: refs,
      });
    }
    // COPIED (bit 63 of L1/L2 entries) must be set exactly when the refcount is 1.
    if (refcount !== undefined) {
      for (const o of owners) {
        if ((o.kind !== 'data' && o.kind !== 'l2') || o.copied === undefined) continue;
        if (o.guest?.snapshot !== undefined) continue; // snapshot tables never carry COPIED
        if (o.copied === (refcount === 1)) continue;
        out.push({
          severity: 'corruption',
          code: o.copied ? 'COPIED_SET' : 'COPIED_MISSING',
          title: o.copied
            ? `COPIED is set on the entry for host cluster ${hex(host)}, whose refcount is ${refcount}`
            : `COPIED is missing on the entry for host cluster ${hex(host)}, whose refcount is 1`,
          details: [
            `The ${ownerLine(o)}.`,
            o.copied
              ? 'A write through this entry will overwrite the cluster in place, changing every other user of it.'
              : 'Writes through this entry copy the cluster first: space is wasted, data is safe.',
          ],
          hostCluster: c,
          hostOffset: host,
          owners: [o],
          refcount,
          atRisk: o.copied ? guestsOf(owners) : [],
        });
      }
    }
  }
  return out;
}
