/**
 * Where `qcow2 check` (with and without `-r leaks|all`) and `qemu-img check` still differ on the
 * damaged-image set, and why. The side-by-side test requires every other damage to agree exactly,
 * and every damage listed here to still differ (so the list shrinks as the checker improves and
 * never hides a regression). Empty: every recipe agrees, repairs included.
 */
export const CHECK_DIFFERENCES: Readonly<Record<string, string>> = {
  'mutant-7-91-bitmap-reftable[0]':
    "-r leaks on an image whose refcount table entry 0 points past the end of the file (0x40a0000, reserved bits): at close QEMU allocates cluster 0 for the bitmap, its write hits the header ('overlaps with qcow2_header'), yet its refblock cache is still flushed at close, writing the refblock at 0x40a0000 (the file grows to 64.7 MiB). We mark the image corrupt at the same write but do not flush after it, so the refcounts left differ (cluster 0 vs 1 in the verdict after). Not yet reconciled: in other images QEMU's post-event flush leaves nothing (mutant-7-7).",
};

/**
 * What the larger run (`npm run check-parity -- --mutants 250 --seeds 2,3,4,5 --only bitmap`)
 * still finds: 9 of 178 mutants of the base image with a bitmap (14 before the checker placed
 * refcount blocks for its allocations, alloc_refcount_block, and guarded refblock flushes; the
 * whole run, `--mutants 250 --seeds 2,3,4,5`, at 7d5303d: 66/66 recipes, 990/1000 mutants, every
 * difference on that base, mutant-4-142 since fixed):
 * - 3 × `-r leaks` with refcount_order 0/1 or reftable[0] past the end (mutant-2-4, -2-82, -4-120,
 *   as mutant-7-91 above): the post-event refblock flush (cluster 0 vs 1 left unreferenced);
 * - 4 × a bitmaps-extension length or header_length that moves the extensions (mutant-3-92,
 *   -3-197, -4-227, -4-235): not analysed in this change;
 * - 1 × bitmap + nb_snapshots 512 (mutant-2-38): QEMU's check-mode header rewrite drops the
 *   snapshots (REPAIR_DEVIATIONS below), ours keeps them, so the repairs differ;
 * - 1 × disk size 1 byte with a bitmap (mutant-3-244): QEMU refuses the open while loading the
 *   bitmap; our load check (checkBitmapsLoadable) only compares the table size.
 */

/**
 * Deliberate deviations of our repair from QEMU 7.2's, each on purpose and none met by the recipe
 * set (a mutant that meets one shows up as a difference in `npm run check-parity`, with its id).
 */
export const REPAIR_DEVIATIONS: Readonly<Record<string, string>> = {
  'snapshots-kept-at-read-write-open':
    "QEMU's repairing check opens the image read-write in check mode, where it has not read the snapshot table; when that open rewrites the header (bitmaps marked in use, unknown autoclear bits dropped, an ignored bitmaps extension dropped) it writes nb_snapshots = 0 and snapshots_offset = 0, losing every internal snapshot, whose clusters the check then 'repairs' as leaks (properties/known-bugs/qemu-7.2-check-repair-frees-bitmap-clusters.json; qemu-img alone: create, bitmap --add, snapshot -c, check -r leaks, then snapshot -l lists nothing). We never copy a corrupting behaviour: our header rewrite keeps the snapshot table.",
  'file-growth-bound':
    "A refcount block outside the image makes QEMU's repair grow the (sparse) file up to whatever the file system allows (ext4: 16 TiB) and count every cluster of it in memory. We grow it as QEMU does up to 2^24 clusters (64 MiB of counters) and beyond that answer as if the file system had refused ('Could not resize file: File too large'), so a hostile offset cannot make us allocate without bound.",
  'no-reftable-growth-for-repair-allocations':
    "The snapshot-table rewrite and the bitmaps stored at close allocate clusters first fit; a cluster no refcount block covers gets one (alloc_refcount_block, as QEMU), but when the refcount table itself is too short QEMU grows it (qcow2_refcount_area) and we do not: the allocation fails with 'Input/output error' (no damaged image of the set needs it).",
};
