/**
 * `convert -c` over concatenated sources whose sizes are not whole clusters of the target: the
 * pieces of the sources then meet inside target clusters, and a compressed cluster must be written
 * whole (qcow2.txt: a compressed cluster is one descriptor for one guest cluster). As qemu-img
 * does (convert_iteration_sectors: "We need to write complete clusters for compressed images"),
 * each target cluster is read across the source boundaries it spans and written as one compressed
 * cluster; only the image's last cluster may be shorter.
 */
import type { GuestDisk } from '../api.ts';
import type { Qcow2Image } from '../image.ts';

/** Does a copy need the cross-source path (some source ends inside a target cluster)? */
export function needsConcatCompression(srcs: readonly GuestDisk[], clusterSize: number): boolean {
  return srcs.length > 1 && srcs.slice(0, -1).some((s) => s.size % clusterSize !== 0);
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Copy the concatenation of `srcs` into `out` cluster by cluster, compressed. `skipHoles`: the
 * target is fresh and reads as zeros, so clusters whose pieces are all unallocated or zero are
 * left alone; otherwise such clusters are written as zeros. `allocateAll` (-S 0): every cluster is
 * written, zeros compressed too.
 */
export function copyConcatCompressed(
  srcs: readonly GuestDisk[],
  out: Qcow2Image,
  o: { skipHoles: boolean; allocateAll: boolean },
): void {
  const skipHoles = o.skipHoles && !o.allocateAll;
  const cs = out.clusterSize;
  const starts: number[] = [];
  let total = 0;
  for (const s of srcs) {
    starts.push(total);
    total += s.size;
  }
  const pieces = (t: number, len: number): { src: GuestDisk; off: number; at: number; len: number }[] => {
    const r: { src: GuestDisk; off: number; at: number; len: number }[] = [];
    srcs.forEach((src, i) => {
      const a = Math.max(t, starts[i]!);
      const b = Math.min(t + len, starts[i]! + src.size);
      if (a < b) r.push({ src, off: a - starts[i]!, at: a - t, len: b - a });
    });
    return r;
  };
  for (let t = 0; t < total; t += cs) {
    const len = Math.min(cs, total - t);
    const ps = pieces(t, len);
    const hole = ps.every((p) => {
      const st = p.src.blockStatus(p.off, p.len);
      return st.length >= p.len && (!st.present || st.zero);
    });
    if (hole && skipHoles) continue;
    const buf = new Uint8Array(len);
    for (const p of ps) buf.set(p.src.read(p.off, p.len), p.at);
    // qemu-img convert: a compressed cluster that reads as zeros is not written.
    if (isZero(buf) && !o.allocateAll) {
      if (!skipHoles) out.writeZeroes(t, len);
      continue;
    }
    out.writeCompressed(t, buf);
  }
}
