/**
 * The node:crypto functions the crypto modules use, loaded on first call. Loading node:crypto
 * initialises OpenSSL (~6 ms at every start); most commands never encrypt, so the CLI's start
 * should not pay for it (issue 12). Same names and types as node:crypto's.
 */
import type * as NodeCrypto from 'node:crypto';
import { createRequire } from 'node:module';

export type { Cipher, Decipher } from 'node:crypto';

let loaded: typeof NodeCrypto | undefined;
const crypto = (): typeof NodeCrypto =>
  (loaded ??= createRequire(import.meta.url)('node:crypto') as typeof NodeCrypto);

/** `name` of node:crypto, called through on first use. */
function lazy<K extends keyof typeof NodeCrypto>(name: K): (typeof NodeCrypto)[K] {
  return ((...args: unknown[]) =>
    (crypto()[name] as (...a: unknown[]) => unknown)(...args)) as (typeof NodeCrypto)[K];
}

export const createCipheriv = lazy('createCipheriv');
export const createDecipheriv = lazy('createDecipheriv');
export const createHash = lazy('createHash');
export const getHashes = lazy('getHashes');
export const pbkdf2Sync = lazy('pbkdf2Sync');
export const randomBytes = lazy('randomBytes');
export const randomUUID = lazy('randomUUID');
export const timingSafeEqual = lazy('timingSafeEqual');

/**
 * One digest of `data`: node:crypto's one-shot `hash` (Node ≥ 20.12; no Hash object per call, which
 * the LUKS AF splitter's thousands of small digests per unlock pay), else createHash.
 */
export function hashOnce(algorithm: string, data: Uint8Array): Buffer {
  const c = crypto() as typeof NodeCrypto & {
    hash?: (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Buffer;
  };
  return c.hash ? c.hash(algorithm, data, 'buffer') : c.createHash(algorithm).update(data).digest();
}
