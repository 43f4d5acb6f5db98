/**
 * Test helpers: run qemu-img / qemu-io, and find things in the images they make by parsing the
 * few metadata fields we need by hand (deliberately independent of src/format and src/engine, so
 * these tests check the codecs against QEMU and nothing else). A missing qemu-img makes the
 * test fail (execFileSync throws ENOENT), never skip.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function run(cmd: 'qemu-img' | 'qemu-io', args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const be64 = (b: Uint8Array, off: number): bigint =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, false);
const be32 = (b: Uint8Array, off: number): number =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, false);

export interface ImageFacts {
  bytes: Uint8Array;
  clusterBits: number;
  cryptMethod: number;
  compressionType: number;
  /** Header extensions: type → data. */
  extensions: Map<number, Uint8Array>;
}

export function readImage(path: string): ImageFacts {
  const bytes = new Uint8Array(readFileSync(path));
  const version = be32(bytes, 4);
  const headerLength = version >= 3 ? be32(bytes, 100) : 72;
  const extensions = new Map<number, Uint8Array>();
  let p = headerLength;
  for (;;) {
    const type = be32(bytes, p);
    const len = be32(bytes, p + 4);
    if (type === 0) break;
    extensions.set(type, bytes.slice(p + 8, p + 8 + len));
    p += 8 + Math.ceil(len / 8) * 8;
  }
  return {
    bytes,
    clusterBits: be32(bytes, 20),
    cryptMethod: be32(bytes, 32),
    compressionType: version >= 3 && headerLength > 104 ? bytes[104]! : 0,
    extensions,
  };
}

/** Header → L1 → L2: the raw 64-bit L2 entry of a guest offset, and where it sits in the file. */
export function l2EntryOf(img: ImageFacts, guestOffset: number): { entry: bigint; entryOffset: number } {
  const { bytes, clusterBits } = img;
  const clusterSize = 1 << clusterBits;
  const l2Entries = clusterSize / 8;
  const l1Offset = Number(be64(bytes, 40));
  const cluster = Math.floor(guestOffset / clusterSize);
  const l1e = be64(bytes, l1Offset + 8 * Math.floor(cluster / l2Entries));
  const l2Offset = Number(l1e & 0x00fffffffffffe00n);
  if (l2Offset === 0) throw new Error(`guest offset ${guestOffset} has no L2 table`);
  const entryOffset = l2Offset + 8 * (cluster % l2Entries);
  return { entry: be64(bytes, entryOffset), entryOffset };
}

/** Host offset of a normal (uncompressed) data cluster. */
export function dataClusterOffset(img: ImageFacts, guestOffset: number): number {
  const { entry } = l2EntryOf(img, guestOffset);
  if (entry & (1n << 62n)) throw new Error('cluster is compressed');
  const off = Number(entry & 0x00fffffffffffe00n);
  if (off === 0) throw new Error('cluster is not allocated');
  return off;
}

/** qcow2.txt "Compressed Clusters Descriptor": x = 62 - (cluster_bits - 8). */
export function compressedDescriptor(
  img: ImageFacts,
  guestOffset: number,
): { hostOffset: number; sectors: number; length: number; entryOffset: number; x: number } {
  const { entry, entryOffset } = l2EntryOf(img, guestOffset);
  if (!(entry & (1n << 62n))) throw new Error('cluster is not compressed');
  const x = 62 - (img.clusterBits - 8);
  const hostOffset = Number(entry & ((1n << BigInt(x)) - 1n));
  const extra = Number((entry >> BigInt(x)) & ((1n << BigInt(62 - x)) - 1n));
  return { hostOffset, sectors: extra + 1, length: (extra + 1) * 512 - (hostOffset & 511), entryOffset, x };
}

export function compressedEntry(hostOffset: number, length: number, x: number): bigint {
  const extra = Math.ceil(((hostOffset & 511) + length) / 512) - 1;
  return (1n << 62n) | (BigInt(extra) << BigInt(x)) | BigInt(hostOffset);
}

export function setBe64(b: Uint8Array, off: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(off, v, false);
}

/** Compressible but not trivial: text-like bytes with some structure. */
export function sampleCluster(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  const words = ['qcow2 ', 'cluster ', 'refcount ', 'L2 ', 'zstd ', 'deflate ', '0x5a ', 'sector '];
  let s = seed >>> 0;
  let p = 0;
  while (p < size) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const w = words[(s >>> 16) % words.length]!;
    for (let i = 0; i < w.length && p < size; i++) out[p++] = w.charCodeAt(i);
    if ((s & 0xff) < 20 && p < size) out[p++] = s >>> 24; // a sprinkle of noise
  }
  return out;
}

export function randomBytes(size: number, seed = 7): Uint8Array {
  const out = new Uint8Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

/** Fast byte comparison (vitest's deep equality walks a 2 MiB array element by element). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number | undefined {
  if (a.length !== b.length || Buffer.compare(a, b) !== 0) {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
    return n;
  }
  return undefined;
}
