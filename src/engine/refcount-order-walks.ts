/**
 * The progress qemu-img amend reports for a refcount width change (qcow2_change_refcount_order in
 * QEMU 7.2's qcow2-refcount.c). QEMU walks the old refcount table several times: each "allocation
 * walk" gives every non-empty new refblock a cluster, first fit from the start of the image, then a
 * new reftable is allocated (the previous one freed); the walks repeat until one allocates nothing,
 * and a last walk writes the new refblocks. Every walk reports each old reftable entry, as
 * `(walk * entries + index) / (totalWalks * entries)`, where totalWalks is max(walk + 2, 3) for an
 * allocation walk and walk + 1 for the last one — so an extra walk shows as regressing progress
 * (iotests 112: 66.67 % then 50.00 %).
 *
 * The engine places the new structures its own way (amend.ts, changeRefcountOrder); this module
 * only replays QEMU's allocation loop on the old refcounts to count its walks, and reports the
 * same sequence of progress values.
 */

export interface WalkInput {
  /** Old refcount of each cluster (0 past the array). */
  refcountOf(cluster: number): number;
  /** Entries of the old refcount table, and whether entry i holds a refcount block. */
  tableEntries: number;
  hasBlock(index: number): boolean;
  /** Clusters covered by one old refcount block. */
  oldPerBlock: number;
  /** Clusters covered by one new refcount block. */
  newPerBlock: number;
  clusterSize: number;
}

/** Calls `status(offset, workSize)` as QEMU's walks would (walk_over_reftable's status_cb). */
export function replayRefcountOrderWalks(
  input: WalkInput,
  status: (offset: number, work: number) => void,
): void {
  const { tableEntries: S, oldPerBlock, newPerBlock, clusterSize: cs } = input;
  // Clusters QEMU allocated during the walks (refcount 1) or freed again (0), over the old counts.
  const changed = new Map<number, number>();
  const used = (c: number): boolean =>
    (changed.get(c) ?? (input.hasBlock(Math.floor(c / oldPerBlock)) ? input.refcountOf(c) : 0)) !== 0;
  let freeIndex = 0; // s->free_cluster_index after the open
  const alloc = (n: number): number => {
    // alloc_clusters_noref: first fit, restarting after any cluster in use
    for (;;) {
      const start = freeIndex;
      let ok = true;
      for (let i = 0; i < n; i++) {
        if (used(freeIndex++)) {
          ok = false;
          break;
        }
      }
      if (ok) {
        for (let c = start; c < start + n; c++) changed.set(c, 1);
        return start;
      }
    }
  };
  const free = (start: number, n: number): void => {
    for (let c = start; c < start + n; c++) changed.set(c, 0);
    if (start < freeIndex) freeIndex = start;
  };
  const covered = S * oldPerBlock;
  const newBlocks = Math.ceil(covered / newPerBlock);
  const reftable = new Map<number, number>();
  let reftableSize = 0; // entries
  let reftableAt = -1;
  let reftableClusters = 0;
  const report = (walk: number, total: number): void => {
    for (let i = 0; i < S; i++) status(walk * S + i, total * S);
    status((walk + 1) * S, total * S);
  };
  const baseBlocks = new Set<number>();
  for (let i = 0; i < S; i++) {
    if (!input.hasBlock(i)) continue;
    for (let c = i * oldPerBlock; c < (i + 1) * oldPerBlock; c++)
      if (input.refcountOf(c) !== 0) baseBlocks.add(Math.floor(c / newPerBlock));
  }
  let walk = 0;
  for (let allocated = true; allocated;) {
    allocated = false;
    const total = Math.max(walk + 2, 3);
    // Only new blocks that may be non-empty are looked at, in order: those over a cluster in use
    // at the start, those over a cluster changed by the walks, and those an allocation of this
    // walk lands in (the walk reads the refcounts as it goes, so it sees that allocation).
    const cand = new Set(baseBlocks);
    for (const c of changed.keys()) cand.add(Math.floor(c / newPerBlock));
    const order = [...cand].sort((a, b) => a - b);
    for (let j = 0; j < order.length; j++) {
      const k = order[j]!;
      if (k >= newBlocks) break;
      let nonEmpty = false;
      for (let c = k * newPerBlock; !nonEmpty && c < Math.min(covered, (k + 1) * newPerBlock); c++)
        nonEmpty = used(c);
      if (!nonEmpty) continue;
      if (k >= reftableSize) reftableSize = Math.ceil((k + 1) / (cs / 8)) * (cs / 8);
      if (!reftable.has(k)) {
        const at = alloc(1);
        reftable.set(k, at);
        allocated = true;
        const kk = Math.floor(at / newPerBlock);
        if (kk > k && !cand.has(kk)) {
          cand.add(kk);
          let pos = j + 1;
          while (pos < order.length && order[pos]! < kk) pos++;
          order.splice(pos, 0, kk);
        }
      }
    }
    report(walk++, total);
    if (allocated) {
      if (reftableAt >= 0) free(reftableAt, reftableClusters);
      reftableClusters = Math.ceil((reftableSize * 8) / cs);
      reftableAt = alloc(reftableClusters);
    }
  }
  report(walk, walk + 1); // the walk that writes the new refblocks
}
