/**
 * Stamped write data: content unique to (write number, guest offset), so that data landing in the
 * wrong place, an older copy of a sector, or a lost write reads back as something recognisably
 * wrong. The write's bytes are cut into 512-byte sectors counted from the write's first byte;
 * each sector starts with a 24-byte ASCII header `#w<id, 8 hex>@<guest offset, 12 hex>:` and is
 * filled with one letter chosen by the write number (a compressible fill, so compressed writes
 * still compress). A write of length L is the first L bytes of that stream.
 *
 * ASCII on purpose: a reproduction script makes the same file with bash's builtin printf
 * (`stampScriptFunction`), and qemu-io writes it with `write -s FILE`.
 */

export const STAMP_SECTOR = 512;
export const STAMP_HEADER = 24;
const FILL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** The fill letter of write `id`. */
export function stampFill(id: number): number {
  return FILL.charCodeAt(id % FILL.length);
}

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/**
 * The bytes write number `id` puts at guest [offset, offset + length) (`stampInto` over all of
 * them, into a new buffer).
 */
export function stampBytes(id: number, offset: number, length: number): Uint8Array {
  // (not zeroed first: stampInto writes every byte)
  const b = Buffer.allocUnsafe(length);
  const out = new Uint8Array(b.buffer, b.byteOffset, length);
  stampInto(out, 0, id, offset, 0, length);
  return out;
}

/** One sector's header, built by `stampInto` (one buffer for every sector). */
const headerScratch = new Uint8Array(STAMP_HEADER);

/**
 * Bytes [from, to) of write `id`'s stream (the write starting at guest `offset`) into `dst` at
 * `dstAt`: one native fill, then each sector header in view stored byte by byte (the bytes of
 * `header`, without a string per sector; guest offsets below 2^48, as two 24-bit halves of six
 * hex digits). Any piece of the stream can be made on its own, so the model stamps a write
 * straight into its reference disk's chunks, piece by piece, with no copy of the whole write.
 */
export function stampInto(
  dst: Uint8Array,
  dstAt: number,
  id: number,
  offset: number,
  from: number,
  to: number,
): void {
  if (to <= from) return;
  dst.fill(stampFill(id), dstAt, dstAt + (to - from));
  const h = headerScratch;
  h[0] = 0x23; // '#'
  h[1] = 0x77; // 'w'
  let idDigits = id;
  for (let k = 9; k >= 2; k--, idDigits = Math.floor(idDigits / 16)) h[k] = HEX_DIGITS[idDigits % 16]!;
  h[10] = 0x40; // '@'
  h[23] = 0x3a; // ':'
  const first = from - (from % STAMP_SECTOR);
  // the guest offset's 24-bit halves, stepped by one sector (the high half's digits only redone
  // when it changes)
  let lo = (offset + first) % 0x1000000;
  let hi = (offset + first - lo) / 0x1000000;
  let hiDone = -1;
  for (let at = first; at < to; at += STAMP_SECTOR, lo += STAMP_SECTOR) {
    if (lo >= 0x1000000) {
      lo -= 0x1000000;
      hi++;
    }
    if (at + STAMP_HEADER <= from) continue;
    for (let k = 22, v = lo; k >= 17; k--, v >>>= 4) h[k] = HEX_DIGITS[v & 15]!;
    if (hi !== hiDone) {
      for (let k = 16, v = hi; k >= 11; k--, v >>>= 4) h[k] = HEX_DIGITS[v & 15]!;
      hiDone = hi;
    }
    const k0 = Math.max(0, from - at);
    const k1 = Math.min(STAMP_HEADER, to - at);
    const base = dstAt + at - from;
    for (let k = k0; k < k1; k++) dst[base + k] = h[k]!;
  }
}

/** The file name a stamped write's data lives in (next to the image; in scripts, in "$dir"). */
export function stampFileName(id: number): string {
  return `w${id}.bin`;
}

export interface StampHeader {
  id: number;
  /** Guest offset of the header's first byte when it was written. */
  guest: number;
}

const HEX = /^[0-9a-f]+$/;

/** The header starting at `at` in `bytes`, if there is one. */
export function headerAt(bytes: Uint8Array, at: number): StampHeader | undefined {
  if (at < 0 || at + STAMP_HEADER > bytes.length) return undefined;
  if (bytes[at] !== 0x23 || bytes[at + 1] !== 0x77 || bytes[at + 10] !== 0x40 || bytes[at + 23] !== 0x3a)
    return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + at, STAMP_HEADER).toString('latin1');
  const id = text.slice(2, 10);
  const guest = text.slice(11, 23);
  if (!HEX.test(id) || !HEX.test(guest)) return undefined;
  return { id: parseInt(id, 16), guest: parseInt(guest, 16) };
}

/** Where byte `i` of `bytes` came from: the write and the guest offset it was written for. */
export interface StampOrigin {
  id: number;
  /** The guest offset write `id` meant this byte for. */
  source: number;
  /** Index (in the decoded bytes) of the sector header it belongs to. */
  header: number;
}

/**
 * Decode byte `i`: the nearest header at or before it within one sector whose stream covers it
 * (the byte must equal that write's byte there). Undefined when no header is in view.
 */
export function originOf(bytes: Uint8Array, i: number): StampOrigin | undefined {
  for (let at = i; at > i - STAMP_SECTOR && at >= 0; at--) {
    if (bytes[at] !== 0x23) continue;
    const h = headerAt(bytes, at);
    if (!h) continue;
    const source = h.guest + (i - at);
    const expected = i - at < STAMP_HEADER ? bytes[i] : stampFill(h.id);
    if (bytes[i] !== expected) return undefined;
    return { id: h.id, source, header: at };
  }
  return undefined;
}

/**
 * A bash function `stamp ID OFFSET LENGTH FILE` writing the same bytes as `stampBytes` with
 * builtin printf (one `head` per write to cut the last sector).
 */
export function stampScriptFunction(): string {
  return [
    `FILL=${FILL}`,
    'stamp() { local id=$1 off=$2 len=$3 f=$4 s n c pad',
    '  c=${FILL:$((id % 52)):1}; printf -v pad "%488s" ""; pad=${pad// /$c}',
    '  n=$(( (len + 511) / 512 ))',
    '  for ((s = 0; s < n; s++)); do printf "#w%08x@%012x:%s" "$id" $((off + s * 512)) "$pad"; done | head -c "$len" > "$f"',
    '}',
  ].join('\n');
}
