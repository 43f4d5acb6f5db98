/**
 * Where `qcow2 check` and `qemu-img check` still differ on the damaged-image set, and why. The
 * side-by-side test requires every other damage to agree exactly, and every damage listed here to
 * still differ (so the list shrinks as the checker improves and never hides a regression).
 */
export const CHECK_DIFFERENCES: Readonly<Record<string, string>> = {
  'ext-bitmaps-bad-directory':
    "QEMU refuses to open an image whose bitmaps extension has an unaligned directory offset ('bitmaps_ext: invalid bitmap directory offset'); our checker reads the directory and reports the clusters it finds instead.",
};

/** Mutants whose header claims version 1 are the older qcow format, which QEMU probes and opens with its qcow driver; we have no qcow (v1) driver and treat the file as raw. */
export const QCOW1_EXPLANATION =
  'version 1 is the older qcow format (QEMU opens it with its qcow driver; not supported here)';
