/**
 * Decoding qemu-io's `read -v` dump straight from the bytes it printed (no string in between: a
 * dump is about 4.8 bytes of text per byte read, so a megabyte read is five megabytes of text).
 *
 * qemu-io prints each 16 bytes as one line: the offset in hex (`%08x`, more digits past 4 GiB),
 * `:  `, then `xx ` per byte, one more space and the bytes as text (`.` for what is not
 * printable); the last line of a read may hold fewer bytes. Lines that are not dump lines (the
 * `read N/N bytes at offset …` statistics, error messages) are kept apart as messages, so that a
 * failure is looked for in them alone.
 */

/** Hex digit value of each byte, -1 for others. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}

const NL = 10;
const COLON = 58;
const SPACE = 32;
/** A full line with an 8-digit offset: 8 + `:  ` + 16 × `xx ` + ` ` + 16 text bytes. */
const FULL_LINE = 8 + 3 + 48 + 1 + 16;

export interface DecodedDump {
  /** The bytes the dump shows, in order. */
  data: Uint8Array;
  /** Every line that is not a dump line, joined with newlines. */
  messages: string;
}

/** Decode `read -v` output (one command's reply). */
export function decodeDump(text: Uint8Array): DecodedDump {
  const out = new Uint8Array(Math.ceil(text.length / 4));
  let n = 0;
  const messages: string[] = [];
  let line = 0;
  while (line < text.length) {
    if (text[line + FULL_LINE] === NL && text[line + 8] === COLON && isFullLine(text, line)) {
      // the common case: 16 bytes at fixed columns
      for (let i = line + 11; i < line + 59; i += 3) out[n++] = (HEX[text[i]] << 4) | HEX[text[i + 1]];
      line += FULL_LINE + 1;
      continue;
    }
    let end = text.indexOf(NL, line);
    if (end < 0) end = text.length;
    {
      const got = decodeLine(text, line, end, out, n);
      if (got < 0)
        messages.push(Buffer.from(text.buffer, text.byteOffset + line, end - line).toString('latin1'));
      else n = got;
    }
    line = end + 1;
  }
  return { data: out.subarray(0, n), messages: messages.join('\n') };
}

/** Whether the 76-byte line at `at` is a dump line of 16 bytes (offset digits, separators, digits). */
function isFullLine(text: Uint8Array, at: number): boolean {
  for (let i = at; i < at + 8; i++) if (HEX[text[i]] < 0) return false;
  if (text[at + 9] !== SPACE || text[at + 10] !== SPACE || text[at + 59] !== SPACE) return false;
  for (let k = 0, i = at + 11; k < 16; k++, i += 3)
    if (HEX[text[i]] < 0 || HEX[text[i + 1]] < 0 || text[i + 2] !== SPACE) return false;
  return true;
}

/**
 * Any dump line (a longer offset, or fewer bytes): its bytes appended to `out` at `n`; returns
 * the new count, or -1 when the line is not a dump line.
 */
function decodeLine(text: Uint8Array, from: number, end: number, out: Uint8Array, n: number): number {
  let i = from;
  while (i < end && HEX[text[i]] >= 0) i++;
  if (i - from < 8 || text[i] !== COLON || text[i + 1] !== SPACE || text[i + 2] !== SPACE) return -1;
  i += 3;
  for (let k = 0; k < 16 && i + 2 < end; k++, i += 3) {
    const hi = HEX[text[i]];
    const lo = HEX[text[i + 1]];
    if (hi < 0 || lo < 0 || text[i + 2] !== SPACE) break;
    out[n++] = (hi << 4) | lo;
    if (text[i + 3] === SPACE) break; // two spaces: the text column follows
  }
  return n;
}
