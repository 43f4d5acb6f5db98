import { afterEach, describe, expect, it } from 'vitest';
import {
  createLuksHeader,
  decodeLuksHeader,
  luksUnlockMemoHits,
  setLuksUnlockMemo,
  unlockLuks,
} from '../../src/crypto/luks.ts';

const FAST = { slotIterations: 1000, masterKeyIterations: 1000 } as const;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('LUKS unlock memo (setLuksUnlockMemo)', () => {
  afterEach(() => setLuksUnlockMemo(0));

  it('hands back a remembered key only for the very same inputs, and a copy each time', () => {
    setLuksUnlockMemo(4);
    const c = createLuksHeader('pw', FAST);
    const h = decodeLuksHeader(c.bytes);
    const hits = luksUnlockMemoHits();
    const first = unlockLuks(h, c.bytes, 'pw');
    expect(Buffer.from(first).equals(Buffer.from(c.masterKey))).toBe(true);
    expect(luksUnlockMemoHits()).toBe(hits); // a full unlock the first time
    first.fill(0); // the caller's copy, not the memo's
    const second = unlockLuks(h, c.bytes, 'pw');
    expect(luksUnlockMemoHits()).toBe(hits + 1);
    expect(Buffer.from(second).equals(Buffer.from(c.masterKey))).toBe(true);
    // a wrong password is never answered from the memo
    expect(codeOf(() => unlockLuks(h, c.bytes, 'pW'))).toBe('BAD_PASSWORD');
    // one key material byte changed: a full unlock, which fails
    const changed = Uint8Array.from(c.bytes);
    const at = h.keySlots[0]!.keyOffsetSectors * 512 + 1000;
    changed[at] = changed[at]! ^ 1;
    expect(codeOf(() => unlockLuks(h, changed, 'pw'))).toBe('BAD_PASSWORD');
    // a header field changed (the digest's iteration count): a full unlock, which fails
    expect(codeOf(() => unlockLuks({ ...h, mkDigestIterations: 1001 }, c.bytes, 'pw'))).toBe('BAD_PASSWORD');
    expect(luksUnlockMemoHits()).toBe(hits + 1);
  });

  it('is off by default and forgets when turned off', () => {
    const c = createLuksHeader('pw', FAST);
    const h = decodeLuksHeader(c.bytes);
    const hits = luksUnlockMemoHits();
    unlockLuks(h, c.bytes, 'pw');
    unlockLuks(h, c.bytes, 'pw');
    expect(luksUnlockMemoHits()).toBe(hits);
    setLuksUnlockMemo(1);
    unlockLuks(h, c.bytes, 'pw');
    setLuksUnlockMemo(0);
    setLuksUnlockMemo(1);
    unlockLuks(h, c.bytes, 'pw');
    expect(luksUnlockMemoHits()).toBe(hits);
  });
});
