/**
 * Bulk byte comparisons: native `Buffer.compare` over blocks, a byte loop only inside the one
 * block that differs. Also the split of expected bytes into pieces of one repeated byte (checked by
 * qemu-io's cheap `read -P`) and pieces of mixed content (compared from a dump).
 */

const BLOCK = 4096;

function view(a: Uint8Array, from: number, to: number): Buffer {
  return Buffer.from(a.buffer, a.byteOffset + from, to - from);
}

/** Index of the first byte where `a` and `b` differ (over the shorter length; a length
 * difference counts at the shorter end), or -1 when equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  if (n === a.length && n === b.length && Buffer.compare(view(a, 0, n), view(b, 0, n)) === 0) return -1;
  for (let from = 0; from < n; from += BLOCK) {
    const to = Math.min(n, from + BLOCK);
    if (Buffer.compare(view(a, from, to), view(b, from, to)) === 0) continue;
    for (let i = from; i < to; i++) if (a[i] !== b[i]) return i;
  }
  return a.length === b.length ? -1 : n;
}

/** Whether every byte of `a[from, to)` equals `byte` (`Buffer.indexOf` of any other value is native). */
export function isUniform(a: Uint8Array, byte: number, from = 0, to = a.length): boolean {
  const v = view(a, from, to);
  for (let at = 0; at < v.length; at += BLOCK) {
    const piece = v.subarray(at, Math.min(v.length, at + BLOCK));
    if (piece[0] !== byte || piece[piece.length - 1] !== byte) return false;
    if (Buffer.compare(piece, uniformBlock(byte).subarray(0, piece.length)) !== 0) return false;
  }
  return true;
}

const uniformBlocks = new Map<number, Buffer>();
function uniformBlock(byte: number): Buffer {
  let b = uniformBlocks.get(byte);
  if (!b) {
    b = Buffer.alloc(BLOCK, byte);
    uniformBlocks.set(byte, b);
  }
  return b;
}

export interface ExpectedPiece {
  /** Index into the expected bytes. */
  from: number;
  to: number;
  /** Set when the piece is one repeated byte. */
  uniform?: number;
}

/**
 * Cut expected bytes into pieces at `grain` boundaries: runs of whole grains of one repeated byte
 * (merged), and mixed grains (merged, at most `maxMixed` bytes a piece).
 */
export function expectedPieces(expected: Uint8Array, grain = 65536, maxMixed = 1 << 20): ExpectedPiece[] {
  const pieces: ExpectedPiece[] = [];
  for (let from = 0; from < expected.length; from += grain) {
    const to = Math.min(expected.length, from + grain);
    const byte = expected[from];
    const uniform = isUniform(expected, byte, from, to) ? byte : undefined;
    const last = pieces[pieces.length - 1];
    if (
      last &&
      last.to === from &&
      last.uniform === uniform &&
      (uniform !== undefined || to - last.from <= maxMixed)
    )
      last.to = to;
    else pieces.push(uniform === undefined ? { from, to } : { from, to, uniform });
  }
  return pieces;
}

/**
 * `expectedPieces` for a reader where each command costs a round trip and a dumped byte costs
 * about five bytes of text (qemu-io: `read -P` per uniform piece, `read -v` per mixed one): cut at
 * a sector (`grain`), so that a few stamped bytes amid zeros dump one sector instead of 64 KiB,
 * then fold each uniform piece shorter than `minUniform` that borders a mixed piece into the dump
 * (a separate `read -P` of it would cost more than its share of the dump). Every byte is still in
 * exactly one piece, compared exactly either way.
 */
export function readerPieces(
  expected: Uint8Array,
  grain = 512,
  minUniform = 4096,
  maxMixed = 1 << 20,
): ExpectedPiece[] {
  const fine = expectedPieces(expected, grain, maxMixed);
  const out: ExpectedPiece[] = [];
  for (let i = 0; i < fine.length; i++) {
    const p = fine[i];
    const short =
      p.uniform !== undefined &&
      p.to - p.from < minUniform &&
      ((i > 0 && fine[i - 1].uniform === undefined) ||
        (i + 1 < fine.length && fine[i + 1].uniform === undefined));
    const last = out[out.length - 1];
    if (p.uniform === undefined || short) {
      if (last && last.uniform === undefined && last.to === p.from && p.to - last.from <= maxMixed)
        last.to = p.to;
      else out.push({ from: p.from, to: p.to });
    } else out.push(p);
  }
  return out;
}
