/**
 * The LUKS unlocking memo, off unless a caller turns it on (`setLuksUnlockMemo`). An unlock is a
 * pure function of the header's cipher, hash and digest fields, the slot's iterations, stripes and
 * salt, the password and the slot's encrypted key material, and costs ~10 ms (PBKDF2 twice and
 * 4,000 AF-merge stripes); a process that reopens the same image again and again (the fuzz
 * harness: every `reopen` step) can keep the master keys it recovered and hand one back when every
 * one of those input bytes is the same as before (compared in full, never by a hash). A changed
 * byte anywhere in them is a full unlock again. Master keys stay in memory while remembered: off
 * by default.
 */
import { textEncoder } from '../format/bytes.ts';
import type { LuksHeader, LuksKeySlot } from './luks.ts';

const memo = { entries: 0, hits: 0, map: new Map<string, { input: Buffer; masterKey: Uint8Array }>() };

/** How many unlocks the memo answered so far (tests). */
export function luksUnlockMemoHits(): number {
  return memo.hits;
}

/** Remember up to `entries` unlocked master keys (0: none, and forget those remembered). */
export function setLuksUnlockMemo(entries: number): void {
  memo.entries = Math.max(0, Math.floor(entries));
  if (memo.entries === 0) memo.map.clear();
}

/**
 * Every input of one slot's unlock, end to end (lengths first, so no two inputs run together), or
 * undefined while the memo is off.
 */
export function unlockInput(
  header: LuksHeader,
  slot: LuksKeySlot,
  pw: Uint8Array,
  material: Uint8Array,
): Buffer | undefined {
  if (memo.entries === 0) return undefined;
  const text = textEncoder.encode(
    [
      header.cipherName,
      header.cipherMode,
      header.hashSpec,
      header.keyBytes,
      header.mkDigestIterations,
      slot.iterations,
      slot.stripes,
      pw.length,
      slot.salt.length,
      header.mkDigestSalt.length,
      header.mkDigest.length,
      material.length,
    ].join('\0') + '\0',
  );
  return Buffer.concat([text, pw, slot.salt, header.mkDigestSalt, header.mkDigest, material]);
}

/** The map's key: the input's first 4 KiB (fields, password, salts); equality is checked in full. */
function mapKey(input: Buffer): string {
  return input.subarray(0, Math.min(input.length, 4096)).toString('latin1');
}

/** The master key remembered for exactly this input, as a copy. */
export function recallUnlock(input: Buffer): Uint8Array | undefined {
  const hit = memo.map.get(mapKey(input));
  if (!hit || !hit.input.equals(input)) return undefined;
  memo.hits++;
  return Uint8Array.from(hit.masterKey);
}

export function rememberUnlock(input: Buffer, masterKey: Uint8Array): void {
  const key = mapKey(input);
  memo.map.delete(key);
  memo.map.set(key, { input, masterKey: Uint8Array.from(masterKey) });
  // the oldest remembered first out
  for (const k of memo.map.keys()) {
    if (memo.map.size <= memo.entries) break;
    memo.map.delete(k);
  }
}
