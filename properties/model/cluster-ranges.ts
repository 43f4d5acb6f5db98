/**
 * A set of cluster indices kept as sorted, disjoint, non-adjacent [start, end) ranges: adding or
 * removing a run of clusters, asking whether any of a run is in the set, and copying it (one per
 * snapshot) cost the number of ranges, not the number of clusters (a 1 GiB disk of 512-byte
 * clusters has two million of them).
 */
export class ClusterRanges {
  private starts: number[] = [];
  private ends: number[] = [];

  /** Index of the first range whose end is beyond `c` (ranges before it end at or before c). */
  private firstEndingAfter(c: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ends[mid] <= c) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Add clusters [first, end). */
  add(first: number, end: number): void {
    if (end <= first) return;
    // ranges touching [first, end) (adjacent ones included) merge into one
    let i = this.firstEndingAfter(first - 1);
    if (i > 0 && this.ends[i - 1] === first) i--;
    let j = i;
    let start = first;
    let stop = end;
    while (j < this.starts.length && this.starts[j] <= end) {
      start = Math.min(start, this.starts[j]);
      stop = Math.max(stop, this.ends[j]);
      j++;
    }
    this.starts.splice(i, j - i, start);
    this.ends.splice(i, j - i, stop);
  }

  /** Remove clusters [first, end). */
  remove(first: number, end: number): void {
    if (end <= first) return;
    const i = this.firstEndingAfter(first);
    let j = i;
    const keepStarts: number[] = [];
    const keepEnds: number[] = [];
    while (j < this.starts.length && this.starts[j] < end) {
      if (this.starts[j] < first) {
        keepStarts.push(this.starts[j]);
        keepEnds.push(first);
      }
      if (this.ends[j] > end) {
        keepStarts.push(end);
        keepEnds.push(this.ends[j]);
      }
      j++;
    }
    this.starts.splice(i, j - i, ...keepStarts);
    this.ends.splice(i, j - i, ...keepEnds);
  }

  /** Whether any cluster of [first, end) is in the set. */
  intersects(first: number, end: number): boolean {
    if (end <= first) return false;
    const i = this.firstEndingAfter(first);
    return i < this.starts.length && this.starts[i] < end;
  }

  has(c: number): boolean {
    return this.intersects(c, c + 1);
  }

  /** Remove every cluster from `first` on. */
  truncateFrom(first: number): void {
    this.remove(first, Number.MAX_SAFE_INTEGER);
  }

  clone(): ClusterRanges {
    const copy = new ClusterRanges();
    copy.starts = [...this.starts];
    copy.ends = [...this.ends];
    return copy;
  }

  /** The ranges, in order (tests, messages). */
  ranges(): [number, number][] {
    return this.starts.map((s, k) => [s, this.ends[k]]);
  }
}
