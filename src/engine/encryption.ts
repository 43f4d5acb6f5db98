/**
 * Encryption set-up and information (qcow2.txt "crypt_method", "Full disk encryption header
 * pointer"): the data cipher from a secret (legacy AES: the key itself; LUKS: a key slot unlocked
 * from the header area the crypto header extension points at), a new LUKS area at creation, and
 * the `encrypt` block `qemu-img info` prints (read without the key). The sector-level use of the
 * cipher is the data path's.
 */
import type { CreateOptions } from '../api.ts';
import { AesLegacyCipher, aesLegacyKey } from '../crypto/aes-legacy.ts';
import {
  createLuksHeader,
  decodeLuksHeader,
  LUKS_KEY_SLOT_ENABLED,
  LUKS_KEY_SLOT_OFFSET,
  LUKS_SECTOR_SIZE,
  LuksCipher,
  unlockLuks,
} from '../crypto/luks.ts';
import { CorruptionError, HeaderError } from '../errors.ts';
import * as C from '../format/constants.ts';
import {
  cryptoHeaderPointer,
  encodeCryptoHeaderPointer,
  setExtension,
  type Header,
} from '../format/header.ts';
import type { BlockDevice } from '../io/device.ts';
import type { DataCipher, ImageState } from './state.ts';

/** Copy a cipher's result back when it did not work in place. */
function inPlace(buf: Uint8Array, out: Uint8Array): void {
  if (out !== buf) buf.set(out);
}

function luksDataCipher(luks: LuksCipher): DataCipher {
  return {
    encrypt: (buf, host) => inPlace(buf, luks.encrypt(buf, host)),
    decrypt: (buf, host) => inPlace(buf, luks.decrypt(buf, host)),
  };
}

/** The crypto header pointer of a LUKS image, checked against the file. */
function luksArea(device: BlockDevice, h: Header): { offset: number; length: number } {
  const ptr = cryptoHeaderPointer(h);
  if (!ptr)
    throw new HeaderError(
      'MISSING_CRYPTO_HEADER',
      'LUKS image without a crypto header extension',
      'crypt_method',
      h.cryptMethod,
    );
  return ptr;
}

/**
 * The data cipher for `secret` (legacy AES: the key; LUKS: unlock a key slot); undefined for an
 * image that is not encrypted. A wrong secret throws.
 */
export function unlockCipher(device: BlockDevice, h: Header, secret: Uint8Array): DataCipher | undefined {
  if (h.cryptMethod === C.QCOW_CRYPT_AES) {
    const aes = new AesLegacyCipher(aesLegacyKey(secret));
    const S = C.SECTOR_SIZE;
    return {
      encrypt: (buf, _host, guest) => inPlace(buf, aes.encrypt(buf, guest / S)),
      decrypt: (buf, _host, guest) => inPlace(buf, aes.decrypt(buf, guest / S)),
    };
  }
  if (h.cryptMethod !== C.QCOW_CRYPT_LUKS) return undefined;
  const ptr = luksArea(device, h);
  const cs = 2 ** h.clusterBits;
  if (ptr.offset % cs !== 0 || ptr.length > C.QCOW_MAX_L1_SIZE || ptr.offset + ptr.length > device.size()) {
    throw new CorruptionError(
      'CORRUPT_CRYPTO_HEADER',
      `Invalid LUKS header area (offset 0x${ptr.offset.toString(16)}, length ${ptr.length})`,
      ptr.offset,
      { length: ptr.length },
    );
  }
  // The header first, then the area only up to the end of the last active slot's key material
  // (whole sectors, capped at the area's length): what the unlock reads, where the whole area is
  // ~2 MiB read and allocated at every open (the unlock's bounds checks see the same bytes and the
  // same length whenever a slot reaches past the area).
  const head = new Uint8Array(Math.min(ptr.length, LUKS_KEY_SLOT_OFFSET));
  device.read(head, ptr.offset);
  const luksHeader = decodeLuksHeader(head, ptr.offset);
  let end = head.length;
  for (const slot of luksHeader.keySlots) {
    if (slot.active !== LUKS_KEY_SLOT_ENABLED) continue;
    const material = Math.ceil((luksHeader.keyBytes * slot.stripes) / LUKS_SECTOR_SIZE) * LUKS_SECTOR_SIZE;
    end = Math.max(end, Math.min(ptr.length, slot.keyOffsetSectors * LUKS_SECTOR_SIZE + material));
  }
  let area = head;
  if (end > head.length) {
    area = new Uint8Array(end);
    device.read(area, ptr.offset);
  }
  const key = unlockLuks(luksHeader, area, secret, ptr.offset);
  return luksDataCipher(new LuksCipher(luksHeader, key));
}

/** A new LUKS header in its own clusters, pointed at by the crypto header extension. */
export function createLuksArea(s: ImageState, enc: NonNullable<CreateOptions['encrypt']>): void {
  const created = createLuksHeader(enc.secret, {
    iterTimeMs: enc.iterTimeMs,
    cipherAlg: (enc.cipherAlg as 'aes-128' | 'aes-192' | 'aes-256' | undefined) ?? undefined,
  });
  const cs = s.clusterSize;
  const clusters = Math.ceil(created.length / cs);
  const offset = s.alloc.alloc(clusters);
  const padded = new Uint8Array(clusters * cs);
  padded.set(created.bytes);
  s.device.write(padded, offset);
  setExtension(s.header, C.EXT_CRYPTO_HEADER, encodeCryptoHeaderPointer({ offset, length: created.length }));
  s.meta.markHeaderDirty();
  s.cipher = luksDataCipher(new LuksCipher(created.header, created.masterKey));
}

/** One LUKS key slot as `qemu-img info` lists it. */
export interface LuksSlotInfo {
  active: boolean;
  iters?: number;
  stripes?: number;
  'key-offset': number;
}

/** The `encrypt` block of `qemu-img info` (QCryptoBlockInfo), members in QAPI order. */
export type EncryptionInfo =
  | { format: 'aes' }
  | {
      format: 'luks';
      'cipher-alg': string;
      'cipher-mode': string;
      'ivgen-alg': string;
      'ivgen-hash-alg'?: string;
      'hash-alg': string;
      'payload-offset': number;
      'master-key-iters': number;
      uuid: string;
      slots: LuksSlotInfo[];
    };

/** "aes" + key bits, as QCryptoCipherAlgorithm names it (XTS keys hold two cipher keys). */
function luksCipherAlg(name: string, keyBytes: number, xts: boolean): string {
  const bits = (xts ? keyBytes / 2 : keyBytes) * 8;
  if (name === 'cast5') return 'cast5-128';
  if (name === 'des3_ede' || name === 'des3-ede') return '3des';
  return `${name}-${bits}`;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + sep.length)];
}

/**
 * What `qemu-img info` says about an encrypted image's encryption (qcrypto_block_luks_get_info for
 * LUKS, read from the crypto header area without the key); undefined when not encrypted.
 */
export function encryptionInfo(device: BlockDevice, h: Header): EncryptionInfo | undefined {
  if (h.cryptMethod === C.QCOW_CRYPT_NONE) return undefined;
  if (h.cryptMethod !== C.QCOW_CRYPT_LUKS) return { format: 'aes' };
  const ptr = luksArea(device, h);
  const area = new Uint8Array(Math.min(ptr.length, LUKS_KEY_SLOT_OFFSET));
  device.read(area, ptr.offset);
  const l = decodeLuksHeader(area, ptr.offset);
  const [mode = '', ivPart = ''] = splitOnce(l.cipherMode, '-');
  const [ivgen, ivHash] = splitOnce(ivPart, ':');
  const base = {
    format: 'luks' as const,
    'cipher-alg': luksCipherAlg(l.cipherName, l.keyBytes, mode === 'xts'),
    'cipher-mode': mode,
    'ivgen-alg': ivgen,
  };
  return {
    ...base,
    ...(ivgen === 'essiv' && ivHash !== undefined ? { 'ivgen-hash-alg': ivHash } : {}),
    'hash-alg': l.hashSpec,
    'payload-offset': l.payloadOffsetSectors * LUKS_SECTOR_SIZE,
    'master-key-iters': l.mkDigestIterations,
    uuid: l.uuid,
    slots: l.keySlots.map((sl) => {
      const active = sl.active === LUKS_KEY_SLOT_ENABLED;
      return {
        active,
        ...(active ? { iters: sl.iterations, stripes: sl.stripes } : {}),
        'key-offset': sl.keyOffsetSectors * LUKS_SECTOR_SIZE,
      };
    }),
  };
}
