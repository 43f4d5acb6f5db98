/**
 * The host file as a picture: one cell per cluster, or per run of clusters when the file has more
 * than MAX_CELLS of them, classed by owner (the worst class wins inside a run), with the findings
 * that touch each cell and the guest mapping of its data.
 */
import type { OwnershipMap } from './ownership.ts';
import type { Finding } from './findings.ts';

export type CellClass =
  | 'free'
  | 'header'
  | 'l1'
  | 'l2'
  | 'refcount'
  | 'snapshot'
  | 'data'
  | 'compressed'
  | 'bitmap'
  | 'crypto'
  | 'leaked'
  | 'doubly-owned'
  | 'beyond-end';

export interface Cell {
  /** First host cluster and number of clusters in the cell. */
  cluster: number;
  count: number;
  class: CellClass;
  /** Owner labels (at most a few; `more` counts the rest). */
  owners: string[];
  more: number;
  /** Indexes into the diagnosis's findings. */
  findings: number[];
}

export interface Picture {
  clusterSize: number;
  clustersPerCell: number;
  cells: Cell[];
}

export const MAX_CELLS = 4096;

/** Worse classes win when a cell covers a run of clusters. */
const RANK: readonly CellClass[] = [
  'free',
  'data',
  'compressed',
  'bitmap',
  'snapshot',
  'l2',
  'l1',
  'refcount',
  'crypto',
  'header',
  'leaked',
  'beyond-end',
  'doubly-owned',
];

const KIND_CLASS: Record<string, CellClass> = {
  header: 'header',
  l1: 'l1',
  l2: 'l2',
  reftable: 'refcount',
  refblock: 'refcount',
  'snapshot-table': 'snapshot',
  'snapshot-l1': 'snapshot',
  data: 'data',
  compressed: 'compressed',
  'crypto-header': 'crypto',
  'bitmap-directory': 'bitmap',
  'bitmap-table': 'bitmap',
  'bitmap-data': 'bitmap',
};

export function pictureOf(map: OwnershipMap, findings: readonly Finding[]): Picture {
  const byCluster = new Map<number, number[]>();
  findings.forEach((f, i) => {
    if (f.hostCluster === undefined) return;
    const list = byCluster.get(f.hostCluster);
    if (list) list.push(i);
    else byCluster.set(f.hostCluster, [i]);
  });
  const referenced = [...map.owners.keys(), ...byCluster.keys()];
  const total = Math.max(
    map.fileClusters,
    referenced.length ? Math.max(...referenced.filter((c) => c < map.fileClusters + 64)) + 1 : 0,
  );
  const per = Math.max(1, Math.ceil(total / MAX_CELLS));
  const cells: Cell[] = [];
  for (let start = 0; start < total; start += per) {
    const count = Math.min(per, total - start);
    let cls: CellClass = 'free';
    const owners: string[] = [];
    let more = 0;
    const cellFindings = new Set<number>();
    for (let c = start; c < start + count; c++) {
      const os = map.owners.get(c) ?? [];
      const fs = byCluster.get(c) ?? [];
      fs.forEach((i) => cellFindings.add(i));
      let here: CellClass = os.length ? (KIND_CLASS[os[0]!.kind] ?? 'data') : 'free';
      if (c >= map.fileClusters) here = 'beyond-end';
      else if (!os.length && (map.refcounts.get(c) ?? 0) > 0) here = 'leaked';
      if (fs.some((i) => findings[i]!.code === 'DOUBLY_OWNED')) here = 'doubly-owned';
      if (RANK.indexOf(here) > RANK.indexOf(cls)) cls = here;
      for (const o of os) {
        if (owners.length < 6) owners.push(o.label);
        else more += 1;
      }
    }
    cells.push({ cluster: start, count, class: cls, owners, more, findings: [...cellFindings] });
  }
  return { clusterSize: map.clusterSize, clustersPerCell: per, cells };
}
