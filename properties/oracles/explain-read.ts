/**
 * A read mismatch in words. Stamped sectors (model/stamp.ts) say who wrote them and for which
 * guest offset, so the first differing byte is classified by decoding both sides:
 *
 * - misplaced: the image holds a write's sector meant for another guest offset;
 * - stale: it holds an older write's data for this very offset, which a later write replaced;
 * - lost: zeros where data was written;
 * - never-written: bytes no write of this run produced;
 * - wrong-pattern / corrupted: a `-P` pattern byte that is not the expected one, or a stamped
 *   sector of the right write with damaged bytes.
 */
import { originOf, STAMP_SECTOR, STAMP_HEADER, type StampOrigin } from '../model/stamp.ts';

export type ReadMismatchCategory =
  'misplaced' | 'stale' | 'lost' | 'never-written' | 'wrong-pattern' | 'corrupted';

export interface ReadExplanation {
  category: ReadMismatchCategory;
  words: string;
}

export interface ExplainInput {
  /** Guest offset of the first differing byte. */
  offset: number;
  /** The model's bytes and the image's bytes around `offset`, each starting at guest `at`. */
  expected: { at: number; bytes: Uint8Array };
  observed: { at: number; bytes: Uint8Array };
  /** Highest stamped write number of the run, and the `-P` byte values it wrote. */
  lastWriteId: number;
  patternsWritten: ReadonlySet<number>;
  /** Where write `id` went (a fill byte beyond a write's end is not that write's). */
  writeRange?: (id: number) => { offset: number; length: number } | undefined;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const byteHex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

let currentInput: ExplainInput | undefined;

function originAt(side: { at: number; bytes: Uint8Array }, guest: number): StampOrigin | undefined {
  const i = guest - side.at;
  if (i < 0 || i >= side.bytes.length) return undefined;
  const o = originOf(side.bytes, i);
  const range = o && currentInput?.writeRange?.(o.id);
  if (o && range && (o.source < range.offset || o.source >= range.offset + range.length)) return undefined;
  return o;
}

/** How many of the 512 bytes from guest `from` differ, within what both sides show. */
function differing(input: ExplainInput, from: number): number {
  const { expected, observed } = input;
  const end = Math.min(
    expected.at + expected.bytes.length,
    observed.at + observed.bytes.length,
    from + STAMP_SECTOR,
  );
  let n = 0;
  for (let g = Math.max(from, expected.at, observed.at); g < end; g++)
    if (expected.bytes[g - expected.at] !== observed.bytes[g - observed.at]) n++;
  return n;
}

function describeExpected(input: ExplainInput, guest: number): string {
  const origin = originAt(input.expected, guest);
  if (origin) return `write #${origin.id}'s data`;
  const b = input.expected.bytes[guest - input.expected.at];
  return b === 0 ? 'zeros' : `${byteHex(b)} (a pattern write)`;
}

export function explainReadMismatch(input: ExplainInput): ReadExplanation {
  currentInput = input;
  try {
    return explain(input);
  } finally {
    currentInput = undefined;
  }
}

function explain(input: ExplainInput): ReadExplanation {
  const { offset } = input;
  const want = input.expected.bytes[offset - input.expected.at];
  const got = input.observed.bytes[offset - input.observed.at];
  const seen = originAt(input.observed, offset);
  const meant = originAt(input.expected, offset);
  // a stamped sector is reported from its header on (where the wrong sector starts)
  const from = seen ? Math.max(input.observed.at + seen.header, offset - STAMP_SECTOR + 1) : offset;
  const run = differing(input, from);
  const extent = `${run} of the 512 bytes from there differ`;
  const at = `guest ${hex(from)}`;

  if (seen && seen.id <= input.lastWriteId) {
    if (seen.source !== offset) {
      const delta = offset - seen.source;
      return {
        category: 'misplaced',
        words: `${at} holds write #${seen.id}'s sector for guest ${hex(seen.source - (offset - from))} (misplaced by ${delta < 0 ? '-' : ''}${hex(Math.abs(delta))}; ${describeExpected(input, offset)} expected; ${extent})`,
      };
    }
    if (meant && meant.id === seen.id) {
      return {
        category: 'corrupted',
        words: `${at} holds write #${seen.id}'s sector for this offset with damaged bytes (${byteHex(got)} where ${byteHex(want)} belongs; ${extent})`,
      };
    }
    const by = meant
      ? `overwritten by write #${meant.id}`
      : want === 0
        ? 'since zeroed or discarded'
        : `overwritten by a ${byteHex(want)} pattern write`;
    return {
      category: 'stale',
      words: `${at} holds write #${seen.id}'s data, ${by} (stale; ${extent})`,
    };
  }
  if (got === 0) {
    return {
      category: 'lost',
      words: `${at} reads zeros where ${describeExpected(input, offset)} was (lost; ${extent})`,
    };
  }
  if (!seen && input.patternsWritten.has(got) && isRepeated(input.observed, offset, got)) {
    return {
      category: 'wrong-pattern',
      words: `${at} holds ${byteHex(got)} (a byte value a pattern write used) where ${describeExpected(input, offset)} is expected (${extent})`,
    };
  }
  const sample = Array.from(
    input.observed.bytes.subarray(offset - input.observed.at, offset - input.observed.at + 16),
    (b) => b.toString(16).padStart(2, '0'),
  ).join(' ');
  return {
    category: 'never-written',
    words: `${at} holds bytes never written anywhere (${sample}${seen ? `, a stamp of write #${seen.id}, beyond the run's last write #${input.lastWriteId}` : ''}) where ${describeExpected(input, offset)} is expected (${extent})`,
  };
}

function isRepeated(side: { at: number; bytes: Uint8Array }, guest: number, byte: number): boolean {
  const i = guest - side.at;
  const end = Math.min(side.bytes.length, i + 16);
  for (let j = i; j < end; j++) if (side.bytes[j] !== byte) return false;
  return true;
}

/** The guest window to show around a mismatch so a stamp header before it is in view. */
export function contextWindow(offset: number, size: number): { at: number; length: number } {
  const at = Math.max(0, offset - (STAMP_SECTOR - 1) - STAMP_HEADER);
  const end = Math.min(size, offset + STAMP_SECTOR);
  return { at, length: end - at };
}
