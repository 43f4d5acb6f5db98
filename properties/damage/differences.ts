/**
 * Where `qcow2 check` (with and without `-r leaks|all`) and `qemu-img check` still differ on the
 * damaged-image set, and why. The side-by-side test requires every other damage to agree exactly,
 * and every damage listed here to still differ (so the list shrinks as the checker improves and
 * never hides a regression). Empty: every recipe agrees, repairs included.
 */
export const CHECK_DIFFERENCES: Readonly<Record<string, string>> = {};

/**
 * Deliberate deviations of our repair from QEMU 7.2's, each on purpose and none met by the recipe
 * set (a mutant that meets one shows up as a difference in `npm run check-parity`, with its id).
 */
export const REPAIR_DEVIATIONS: Readonly<Record<string, string>> = {
  'snapshots-kept-at-read-write-open':
    "QEMU's repairing check opens the image read-write in check mode, where it has not read the snapshot table; when that open rewrites the header (bitmaps marked in use, unknown autoclear bits dropped, an ignored bitmaps extension dropped) it writes nb_snapshots = 0 and snapshots_offset = 0, losing every internal snapshot, whose clusters the check then 'repairs' as leaks (properties/known-bugs/qemu-7.2-check-repair-frees-bitmap-clusters.json; qemu-img alone: create, bitmap --add, snapshot -c, check -r leaks, then snapshot -l lists nothing). We never copy a corrupting behaviour: our header rewrite keeps the snapshot table.",
  'file-growth-bound':
    "A refcount block outside the image makes QEMU's repair grow the (sparse) file up to whatever the file system allows (ext4: 16 TiB) and count every cluster of it in memory. We grow it as QEMU does up to 2^24 clusters (64 MiB of counters) and beyond that answer as if the file system had refused ('Could not resize file: File too large'), so a hostile offset cannot make us allocate without bound.",
  'no-refblock-for-repair-allocations':
    "The snapshot-table rewrite and the bitmaps stored at close allocate clusters first fit; when the first free cluster is not covered by any refcount block QEMU allocates a refcount block for it (alloc_refcount_block). Our checker does not place new refcount blocks there: the rewrite fails with 'Input/output error' instead (no damaged image of the set needs it).",
};
