/**
 * qemu-img convert's sparse detection with `-S N` (min_sparse, in 512-byte sectors): inside a run
 * of source data, zeros are left unwritten only where at least N sectors of them lie in a row,
 * and the pieces written are aligned to `alignment` sectors (pow2floor(N), at least the target's
 * request alignment) so that they need no read-modify-write (qemu-img.c, is_allocated_sectors and
 * is_allocated_sectors_min). With target clusters of 4 KiB or more and the default -S 4k, this
 * decides exactly what the cluster-wise zero test of convert.ts decides; with smaller clusters or
 * a larger N it does not (iotest 122), so an explicit -S goes through here.
 */
const SECTOR = 512;

function sectorIsZero(buf: Uint8Array, s: number): boolean {
  for (let i = s * SECTOR; i < (s + 1) * SECTOR && i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** is_allocated_sectors: the first run of `n` sectors from `first` in one state, end aligned. */
function allocatedRun(
  buf: Uint8Array,
  first: number,
  n: number,
  sector: number,
  alignment: number,
): [boolean, number] {
  if (n <= 0) return [false, 0];
  let zero = sectorIsZero(buf, first);
  let i = 1;
  while (i < n && sectorIsZero(buf, first + i) === zero) i++;
  if (i === n) return [!zero, i];
  const tail = (sector + i) & (alignment - 1);
  if (tail) {
    // a short zero tail before data: the data's read-modify-write rewrites it anyway
    if (zero && i <= tail) zero = false;
    if (!zero) i = Math.min(i + alignment - tail, n);
    else i -= tail;
  }
  return [!zero, i];
}

/**
 * is_allocated_sectors_min: from sector `first` of `buf` (at absolute sector `sector`), whether the
 * next piece is written and how many sectors it spans.
 */
export function sparsePiece(
  buf: Uint8Array,
  first: number,
  n: number,
  min: number,
  sector: number,
  alignment: number,
): { data: boolean; sectors: number } {
  if (n < min) min = n;
  let [data, pnum] = allocatedRun(buf, first, n, sector, alignment);
  if (!data) return { data, sectors: pnum };
  let used = pnum;
  let checked = pnum;
  let left = n - pnum;
  while (left > 0) {
    [data, pnum] = allocatedRun(buf, first + checked, left, sector + checked, alignment);
    left -= pnum;
    checked += pnum;
    if (data) used = checked;
    else if (pnum >= min) break;
  }
  return { data: true, sectors: used };
}

/** pow2floor(min) sectors, at least the target's request alignment (one sector). */
export function sparseAlignment(minSectors: number): number {
  let a = 1;
  while (a * 2 <= minSectors) a *= 2;
  return Math.max(a, 1);
}

/**
 * Split a buffer of source data that lands at byte `at` of the target into the pieces qemu-img
 * writes (data) and leaves alone (zeros), for `-S minBytes`.
 */
export function sparsePieces(
  buf: Uint8Array,
  at: number,
  minBytes: number,
): { offset: number; length: number; data: boolean }[] {
  const min = Math.max(1, Math.floor(minBytes / SECTOR));
  const alignment = sparseAlignment(min);
  const total = Math.ceil(buf.length / SECTOR);
  const out: { offset: number; length: number; data: boolean }[] = [];
  for (let s = 0; s < total;) {
    const p = sparsePiece(buf, s, total - s, min, at / SECTOR + s, alignment);
    const start = s * SECTOR;
    const end = Math.min((s + p.sectors) * SECTOR, buf.length);
    out.push({ offset: start, length: end - start, data: p.data });
    s += p.sectors;
  }
  return out;
}
