/**
 * LUKS1 as QEMU's qcow2 uses it (header crypt_method 2; QEMU crypto/block-luks.c, crypto/afsplit.c,
 * block/qcow2.c qcow2_crypto_hdr_*). Pure: no I/O; the engine reads/writes the header area.
 *
 * Where it lives in a qcow2 image: the "full disk encryption header pointer" extension (type
 * 0x0537BE77, 16 bytes: u64 offset, u64 length, big-endian) points at a cluster-aligned area.
 * QEMU allocates ceil(length / cluster_size) clusters for it, zero-fills them, writes the 592-byte
 * LUKS header at the start of the area and the key material of each active slot at
 * key_offset * 512 from the start of the area. `length` is the LUKS payload offset in bytes
 * (payload_offset_sectors * 512); QEMU refuses to read the header area beyond it. The payload
 * offset has no other meaning in qcow2: guest data lives in ordinary data clusters, encrypted
 * sector by sector with the sector number taken from the HOST offset (host_offset / 512;
 * block/qcow2-threads.c qcow2_co_encdec, crypt_physical_offset = true for LUKS).
 *
 * Header layout (all big-endian; 592 bytes):
 *   0 magic "LUKS\xba\xbe"   6 version u16 = 1   8 cipher_name[32]   40 cipher_mode[32]
 *   72 hash_spec[32]   104 payload_offset u32 (sectors)   108 key_bytes u32
 *   112 mk_digest[20]   132 mk_digest_salt[32]   164 mk_digest_iterations u32   168 uuid[40]
 *   208 + 48*i key slot i: active u32 (0x00AC71F3 / 0x0000DEAD), iterations u32, salt[32],
 *       key_material_offset u32 (sectors), stripes u32
 *
 * Slot layout QEMU creates (cryptsetup's): slot i key material at sector
 * 8 + i * roundup(ceil(key_bytes * 4000 / 512), 8); payload offset = 8 + 8 * that. For the default
 * aes-256 xts-plain64 sha256 (64-byte key): slots at sectors 8, 512, 1016, ..., payload 4040
 * sectors, so the extension length is 2,068,480 bytes (0x1F9000) = 32 clusters of 64 KiB.
 */
import {
  createHash,
  getHashes,
  pbkdf2Sync,
  randomBytes,
  randomUUID,
  timingSafeEqual,
} from './node-crypto.ts';
import { CorruptionError, Qcow2Error, UnsupportedError, ArgumentError, type ErrorCode } from '../errors.ts';
import { textDecoder, textEncoder } from '../format/bytes.ts';
import { afMerge, afSplit } from './afsplit.ts';
import { recallUnlock, rememberUnlock, unlockInput } from './luks-unlock-memo.ts';
import { type CipherMode, type IvGenAlgorithm, CRYPTO_SECTOR_SIZE, SectorCipher } from './sector-cipher.ts';

/** The unlock memo (luks-unlock-memo.ts), turned on through this module by its callers. */
export { luksUnlockMemoHits, setLuksUnlockMemo } from './luks-unlock-memo.ts';

export const LUKS_MAGIC = new Uint8Array([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]); // "LUKS\xba\xbe"
export const LUKS_VERSION = 1;
export const LUKS_HEADER_SIZE = 592;
export const LUKS_NUM_KEY_SLOTS = 8;
export const LUKS_STRIPES = 4000;
export const LUKS_DIGEST_LEN = 20;
export const LUKS_SALT_LEN = 32;
export const LUKS_UUID_LEN = 40;
export const LUKS_KEY_SLOT_ENABLED = 0x00ac71f3;
export const LUKS_KEY_SLOT_DISABLED = 0x0000dead;
/** First key material at 4096 bytes; slot areas are aligned to 4096 bytes (8 sectors). */
export const LUKS_KEY_SLOT_OFFSET = 4096;
export const LUKS_SECTOR_SIZE = CRYPTO_SECTOR_SIZE;
/** QEMU's floors for computed iteration counts (explicit counts below it are accepted). */
export const LUKS_MIN_ITERATIONS = 1000;
/** QEMU's default encrypt.iter-time, in milliseconds. */
export const LUKS_DEFAULT_ITER_TIME_MS = 2000;
/** Length of the crypto header extension's data. */
export const CRYPTO_HEADER_EXT_LENGTH = 16;

const ALIGN_SECTORS = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR_SIZE;

export interface LuksKeySlot {
  /** Raw on-disk state: LUKS_KEY_SLOT_ENABLED or LUKS_KEY_SLOT_DISABLED. */
  active: number;
  iterations: number;
  salt: Uint8Array;
  keyOffsetSectors: number;
  stripes: number;
}

export interface LuksHeader {
  version: number;
  cipherName: string;
  /** e.g. "xts-plain64", "cbc-essiv:sha256". */
  cipherMode: string;
  hashSpec: string;
  payloadOffsetSectors: number;
  keyBytes: number;
  mkDigest: Uint8Array;
  mkDigestSalt: Uint8Array;
  mkDigestIterations: number;
  uuid: string;
  keySlots: LuksKeySlot[];
}

/** The cipher a header describes, parsed as QEMU does (qcrypto_block_luks_parse_header). */
export interface LuksCipherSpec {
  mode: CipherMode;
  ivgen: IvGenAlgorithm;
  ivgenHash: string | undefined;
  hash: string;
  keyBytes: number;
}

// --- decode / encode -------------------------------------------------------------------------

function bad(
  code: ErrorCode,
  message: string,
  hostOffset: number,
  data: Record<string, unknown> = {},
): CorruptionError {
  return new CorruptionError(code, message, hostOffset, data);
}

function cString(b: Uint8Array, off: number, len: number, field: string, hostOffset: number): string {
  const field_ = b.subarray(off, off + len);
  const nul = field_.indexOf(0);
  if (nul < 0) {
    throw bad('LUKS_BAD_HEADER', `LUKS header ${field} is not NUL terminated`, hostOffset + off, { field });
  }
  return textDecoder.decode(field_.subarray(0, nul));
}

function putCString(b: Uint8Array, off: number, len: number, value: string, field: string): void {
  const bytes = textEncoder.encode(value);
  if (bytes.length >= len) {
    throw new ArgumentError('LUKS_FIELD_TOO_LONG', `${field} '${value}' is too long for LUKS header`, {
      field,
      value,
    });
  }
  b.set(bytes, off);
}

/** Sectors of key material per slot, rounded up to the 4 KiB alignment (QEMU's rule). */
export function splitKeySectors(keyBytes: number, stripes: number = LUKS_STRIPES): number {
  const sectors = Math.ceil((keyBytes * stripes) / LUKS_SECTOR_SIZE);
  return Math.ceil(sectors / ALIGN_SECTORS) * ALIGN_SECTORS;
}

/**
 * Decodes and validates the first 592 bytes of a LUKS area. Checks what QEMU checks at open
 * (qcrypto_block_luks_check_header): magic, version, NUL-terminated strings, payload offset past
 * the header, non-zero iteration counts, slot states, 4000 stripes, slots not overlapping the
 * header, the payload or each other. `hostOffset` (the area's offset in the image) goes into errors.
 */
export function decodeLuksHeader(b: Uint8Array, hostOffset = 0): LuksHeader {
  if (b.length < LUKS_HEADER_SIZE) {
    throw bad('LUKS_BAD_HEADER', `LUKS header needs ${LUKS_HEADER_SIZE} bytes, got ${b.length}`, hostOffset);
  }
  const dv = new DataView(b.buffer, b.byteOffset, LUKS_HEADER_SIZE);
  for (let i = 0; i < LUKS_MAGIC.length; i++) {
    if (b[i] !== LUKS_MAGIC[i]) throw bad('LUKS_BAD_MAGIC', 'Volume is not in LUKS format', hostOffset);
  }
  const version = dv.getUint16(6);
  if (version !== LUKS_VERSION) {
    throw new UnsupportedError('LUKS_BAD_VERSION', `LUKS version ${version} is not supported`, { version });
  }
  const h: LuksHeader = {
    version,
    cipherName: cString(b, 8, 32, 'cipher name', hostOffset),
    cipherMode: cString(b, 40, 32, 'cipher mode', hostOffset),
    hashSpec: cString(b, 72, 32, 'hash spec', hostOffset),
    payloadOffsetSectors: dv.getUint32(104),
    keyBytes: dv.getUint32(108),
    mkDigest: b.slice(112, 132),
    mkDigestSalt: b.slice(132, 164),
    mkDigestIterations: dv.getUint32(164),
    uuid: textDecoder.decode(b.subarray(168, 208)).replace(/\0+$/, ''),
    keySlots: [],
  };
  for (let i = 0; i < LUKS_NUM_KEY_SLOTS; i++) {
    const o = 208 + 48 * i;
    h.keySlots.push({
      active: dv.getUint32(o),
      iterations: dv.getUint32(o + 4),
      salt: b.slice(o + 8, o + 40),
      keyOffsetSectors: dv.getUint32(o + 40),
      stripes: dv.getUint32(o + 44),
    });
  }
  validateLuksHeader(h, hostOffset);
  return h;
}

export function validateLuksHeader(h: LuksHeader, hostOffset = 0): void {
  if (h.payloadOffsetSectors < ALIGN_SECTORS) {
    throw bad('LUKS_BAD_HEADER', 'LUKS payload is overlapping with the header', hostOffset + 104, {
      payloadOffsetSectors: h.payloadOffsetSectors,
    });
  }
  if (h.mkDigestIterations === 0) {
    throw bad('LUKS_BAD_HEADER', 'LUKS key iteration count is zero', hostOffset + 164);
  }
  if (h.keyBytes === 0 || h.keyBytes > 512) {
    throw bad('LUKS_BAD_HEADER', `LUKS key length ${h.keyBytes} is invalid`, hostOffset + 108, {
      keyBytes: h.keyBytes,
    });
  }
  const ranges: Array<[number, number]> = [];
  h.keySlots.forEach((s, i) => {
    const at = hostOffset + 208 + 48 * i;
    if (s.stripes !== LUKS_STRIPES) {
      throw bad(
        'LUKS_BAD_HEADER',
        `Keyslot ${i} is corrupted (stripes ${s.stripes} != ${LUKS_STRIPES})`,
        at,
        { slot: i },
      );
    }
    if (s.active !== LUKS_KEY_SLOT_ENABLED && s.active !== LUKS_KEY_SLOT_DISABLED) {
      throw bad('LUKS_BAD_HEADER', `Keyslot ${i} state (active/disable) is corrupted`, at, {
        slot: i,
        active: s.active,
      });
    }
    if (s.active === LUKS_KEY_SLOT_ENABLED && s.iterations === 0) {
      throw bad('LUKS_BAD_HEADER', `Keyslot ${i} iteration count is zero`, at, { slot: i });
    }
    const start = s.keyOffsetSectors;
    const len = splitKeySectors(h.keyBytes, s.stripes);
    if (start < ALIGN_SECTORS) {
      throw bad('LUKS_BAD_HEADER', `Keyslot ${i} is overlapping with the LUKS header`, at, { slot: i });
    }
    if (start + len > h.payloadOffsetSectors) {
      throw bad('LUKS_BAD_HEADER', `Keyslot ${i} is overlapping with the encrypted payload`, at, { slot: i });
    }
    ranges.forEach(([s2, l2], j) => {
      if (start < s2 + l2 && s2 < start + len) {
        throw bad('LUKS_BAD_HEADER', `Keyslots ${j} and ${i} are overlapping in the header`, at, {
          slot: i,
          other: j,
        });
      }
    });
    ranges.push([start, len]);
  });
}

export function encodeLuksHeader(h: LuksHeader): Uint8Array {
  const b = new Uint8Array(LUKS_HEADER_SIZE);
  const dv = new DataView(b.buffer);
  b.set(LUKS_MAGIC, 0);
  dv.setUint16(6, h.version);
  putCString(b, 8, 32, h.cipherName, 'cipher name');
  putCString(b, 40, 32, h.cipherMode, 'cipher mode');
  putCString(b, 72, 32, h.hashSpec, 'hash spec');
  dv.setUint32(104, h.payloadOffsetSectors);
  dv.setUint32(108, h.keyBytes);
  b.set(h.mkDigest.subarray(0, LUKS_DIGEST_LEN), 112);
  b.set(h.mkDigestSalt.subarray(0, LUKS_SALT_LEN), 132);
  dv.setUint32(164, h.mkDigestIterations);
  putCString(b, 168, LUKS_UUID_LEN, h.uuid, 'uuid');
  h.keySlots.slice(0, LUKS_NUM_KEY_SLOTS).forEach((s, i) => {
    const o = 208 + 48 * i;
    dv.setUint32(o, s.active);
    dv.setUint32(o + 4, s.iterations);
    b.set(s.salt.subarray(0, LUKS_SALT_LEN), o + 8);
    dv.setUint32(o + 40, s.keyOffsetSectors);
    dv.setUint32(o + 44, s.stripes);
  });
  return b;
}

// --- cipher spec -----------------------------------------------------------------------------

/** QEMU's hash names (QCryptoHashAlgorithm) mapped to OpenSSL digest names. */
const HASHES: Record<string, string> = {
  md5: 'md5',
  sha1: 'sha1',
  sha224: 'sha224',
  sha256: 'sha256',
  sha384: 'sha384',
  sha512: 'sha512',
  ripemd160: 'ripemd160',
};

function hashName(name: string): string {
  const n = HASHES[name];
  if (!n || !getHashes().includes(n)) {
    throw new UnsupportedError('LUKS_UNSUPPORTED_HASH', `Hash algorithm ${name} not supported`, {
      hash: name,
    });
  }
  return n;
}

/** Parses cipher name + "<mode>-<ivgen>[:<hash>]" as QEMU does; only AES is supported here. */
export function luksCipherSpec(h: LuksHeader): LuksCipherSpec {
  const dash = h.cipherMode.indexOf('-');
  if (dash < 0) {
    throw new UnsupportedError(
      'LUKS_UNSUPPORTED_CIPHER',
      `Unexpected cipher mode string format '${h.cipherMode}'`,
      {
        cipherMode: h.cipherMode,
      },
    );
  }
  const mode = h.cipherMode.slice(0, dash);
  const ivPart = h.cipherMode.slice(dash + 1);
  const colon = ivPart.indexOf(':');
  const ivgen = colon < 0 ? ivPart : ivPart.slice(0, colon);
  // A hash after plain/plain64 is parsed (and must be known) but ignored, like dm-crypt.
  const ivgenHash = colon < 0 ? undefined : hashName(ivPart.slice(colon + 1));
  if (mode !== 'xts' && mode !== 'cbc') {
    throw new UnsupportedError('LUKS_UNSUPPORTED_CIPHER', `Cipher mode ${mode} not supported`, {
      cipherMode: h.cipherMode,
    });
  }
  if (ivgen !== 'plain' && ivgen !== 'plain64' && ivgen !== 'essiv') {
    throw new UnsupportedError('LUKS_UNSUPPORTED_CIPHER', `IV generator ${ivgen} not supported`, {
      cipherMode: h.cipherMode,
    });
  }
  if (ivgen === 'essiv' && !ivgenHash) {
    throw new UnsupportedError('LUKS_UNSUPPORTED_CIPHER', 'Missing IV generator hash specification', {
      cipherMode: h.cipherMode,
    });
  }
  const aesKey = mode === 'xts' ? h.keyBytes / 2 : h.keyBytes;
  if (h.cipherName !== 'aes' || ![16, 24, 32].includes(aesKey) || (mode === 'xts' && aesKey === 24)) {
    throw new UnsupportedError(
      'LUKS_UNSUPPORTED_CIPHER',
      `Algorithm ${h.cipherName} with key size ${aesKey} bytes not supported`,
      { cipherName: h.cipherName, keyBytes: h.keyBytes },
    );
  }
  return { mode, ivgen, ivgenHash, hash: hashName(h.hashSpec), keyBytes: h.keyBytes };
}

function sectorCipher(spec: LuksCipherSpec, key: Uint8Array): SectorCipher {
  return new SectorCipher({ key, mode: spec.mode, ivgen: spec.ivgen, ivgenHash: spec.ivgenHash });
}

// --- unlock ----------------------------------------------------------------------------------

function passwordBytes(password: string | Uint8Array): Uint8Array {
  return typeof password === 'string' ? textEncoder.encode(password) : password;
}

/**
 * Recovers the master key: tries each active slot in order (PBKDF2 of the password → slot key,
 * decrypt the key material from sector 0 of the slot, AF-merge, check PBKDF2 of the candidate
 * against the header digest). `area` is the LUKS area from its start (the header, then the key
 * material): at least up to the end of every active slot's material.
 */
export function unlockLuks(
  header: LuksHeader,
  area: Uint8Array,
  password: string | Uint8Array,
  hostOffset = 0,
): Uint8Array {
  const spec = luksCipherSpec(header);
  const pw = passwordBytes(password);
  for (let i = 0; i < header.keySlots.length; i++) {
    const slot = header.keySlots[i]!;
    if (slot.active !== LUKS_KEY_SLOT_ENABLED) continue;
    const start = slot.keyOffsetSectors * LUKS_SECTOR_SIZE;
    const splitLen = header.keyBytes * slot.stripes;
    if (start + splitLen > area.length) {
      throw bad(
        'LUKS_BAD_HEADER',
        `Keyslot ${i} key material lies outside the LUKS area`,
        hostOffset + start,
        {
          slot: i,
          areaLength: area.length,
        },
      );
    }
    const memoInput = unlockInput(header, slot, pw, area.subarray(start, start + splitLen));
    const remembered = memoInput && recallUnlock(memoInput);
    if (remembered) return remembered;
    const slotKey = pbkdf2Sync(pw, slot.salt, slot.iterations, header.keyBytes, spec.hash);
    // Key material is a whole number of 512-byte sectors except for odd key sizes (24 bytes):
    // pad the copy to a sector and decrypt that; the pad does not affect the real bytes.
    const material = new Uint8Array(Math.ceil(splitLen / LUKS_SECTOR_SIZE) * LUKS_SECTOR_SIZE);
    material.set(area.subarray(start, start + Math.min(material.length, area.length - start)));
    sectorCipher(spec, slotKey).decrypt(material, 0);
    const candidate = afMerge(spec.hash, material, header.keyBytes, slot.stripes);
    const digest = pbkdf2Sync(
      candidate,
      header.mkDigestSalt,
      header.mkDigestIterations,
      LUKS_DIGEST_LEN,
      spec.hash,
    );
    if (timingSafeEqual(digest, header.mkDigest)) {
      if (memoInput) rememberUnlock(memoInput, candidate);
      return candidate;
    }
  }
  throw new Qcow2Error('BAD_PASSWORD', 'Invalid password, cannot unlock any keyslot');
}

/** Payload encryption with an unlocked master key. Offsets are HOST offsets (see file comment). */
export class LuksCipher {
  private readonly cipher: SectorCipher;

  constructor(header: LuksHeader, masterKey: Uint8Array) {
    this.cipher = sectorCipher(luksCipherSpec(header), masterKey);
  }

  encrypt(data: Uint8Array, hostOffset: number): Uint8Array {
    return this.cipher.encrypt(data, sectorOf(hostOffset, data));
  }

  decrypt(data: Uint8Array, hostOffset: number): Uint8Array {
    return this.cipher.decrypt(data, sectorOf(hostOffset, data));
  }
}

function sectorOf(hostOffset: number, data: Uint8Array): number {
  if (hostOffset % LUKS_SECTOR_SIZE !== 0 || data.length % LUKS_SECTOR_SIZE !== 0) {
    throw new ArgumentError(
      'CRYPTO_UNALIGNED',
      'LUKS data must be whole 512-byte sectors at a sector-aligned offset',
      {
        hostOffset,
        length: data.length,
      },
    );
  }
  return hostOffset / LUKS_SECTOR_SIZE;
}

// --- layout and creation ---------------------------------------------------------------------

export interface LuksHeaderLayout {
  /** Key material start of each of the 8 slots, in 512-byte sectors from the area start. */
  keySlotOffsetsSectors: number[];
  /** Bytes of key material per slot (key_bytes * stripes). */
  splitKeyLength: number;
  payloadOffsetSectors: number;
  /** What QEMU writes as the crypto header extension's length: payload offset in bytes. */
  headerLength: number;
  /** Clusters QEMU allocates for the area: ceil(headerLength / clusterSize), when given. */
  clusters: number | undefined;
}

export function luksHeaderLayout(
  keyBytes = 64,
  clusterSize?: number,
  stripes = LUKS_STRIPES,
): LuksHeaderLayout {
  const per = splitKeySectors(keyBytes, stripes);
  const keySlotOffsetsSectors = Array.from({ length: LUKS_NUM_KEY_SLOTS }, (_, i) => ALIGN_SECTORS + per * i);
  const payloadOffsetSectors = ALIGN_SECTORS + per * LUKS_NUM_KEY_SLOTS;
  const headerLength = payloadOffsetSectors * LUKS_SECTOR_SIZE;
  return {
    keySlotOffsetsSectors,
    splitKeyLength: keyBytes * stripes,
    payloadOffsetSectors,
    headerLength,
    clusters: clusterSize ? Math.ceil(headerLength / clusterSize) : undefined,
  };
}

export interface CreateLuksOptions {
  /** 'aes-128' | 'aes-192' | 'aes-256' (QEMU default aes-256). */
  cipherAlg?: 'aes-128' | 'aes-192' | 'aes-256';
  /** Default 'xts' (QEMU's default). */
  cipherMode?: CipherMode;
  /** Default 'plain64'. */
  ivgenAlg?: IvGenAlgorithm;
  /** For essiv; QEMU defaults it to sha256 with essiv. */
  ivgenHashAlg?: string;
  /** PBKDF2 and AF hash; default 'sha256'. */
  hashAlg?: string;
  /** Like QEMU's encrypt.iter-time (ms, default 2000): used when counts are not given. */
  iterTimeMs?: number;
  /** Explicit PBKDF2 iterations for slot 0 (tests use small counts). */
  slotIterations?: number;
  /** Explicit PBKDF2 iterations for the master-key digest. */
  masterKeyIterations?: number;
  /** Fixed master key (tests); random otherwise. */
  masterKey?: Uint8Array;
  uuid?: string;
}

export interface CreatedLuks {
  header: LuksHeader;
  masterKey: Uint8Array;
  /** The bytes to write at the cluster-aligned area offset: header + slot 0 material, zeros elsewhere. */
  bytes: Uint8Array;
  /** = bytes.length = the crypto header extension's length. */
  length: number;
}

/**
 * Measured rates by hash and key length: the measurement takes at least 50 ms and a LUKS creation
 * asks twice, so a process creating many images (the fuzz harness) measures once. QEMU measures on
 * every creation; the rate only scales the iteration counts, which the header records.
 */
const measuredRates = new Map<string, number>();

/** PBKDF2 iterations per second on this machine (QEMU's qcrypto_pbkdf2_count_iters, roughly). */
export function pbkdf2IterationsPerSecond(
  hash: string,
  password: Uint8Array,
  salt: Uint8Array,
  keyLen: number,
): number {
  const key = `${hash}/${keyLen}`;
  let rate = measuredRates.get(key);
  if (rate === undefined) {
    rate = measurePbkdf2Rate(hash, password, salt, keyLen);
    measuredRates.set(key, rate);
  }
  return rate;
}

function measurePbkdf2Rate(hash: string, password: Uint8Array, salt: Uint8Array, keyLen: number): number {
  let n = 1 << 12;
  for (;;) {
    const t0 = process.hrtime.bigint();
    pbkdf2Sync(password, salt, n, keyLen, hash);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (ms >= 50 || n >= 1 << 26) return Math.floor((n * 1000) / Math.max(ms, 0.001));
    n *= 2;
  }
}

/**
 * Creates a LUKS area like qcrypto_block_luks_create with one password in slot 0: random master
 * key, master-key digest, 8 slots laid out at 4 KiB-aligned offsets (slot 0 active, 1..7
 * DEAD with zero iterations and salt), slot 0 key material AF-split and encrypted with the
 * password-derived key. Iterations follow QEMU: slot = max(1000, rate * iterTime / 1000),
 * master digest = max(1000, rate * iterTime / 1000 / 8), unless given explicitly.
 */
export function createLuksHeader(
  password: string | Uint8Array,
  options: CreateLuksOptions = {},
): CreatedLuks {
  const cipherAlg = options.cipherAlg ?? 'aes-256';
  const mode = options.cipherMode ?? 'xts';
  const ivgen = options.ivgenAlg ?? 'plain64';
  const hashAlg = options.hashAlg ?? 'sha256';
  const ivgenHash = options.ivgenHashAlg ?? (ivgen === 'essiv' ? 'sha256' : undefined);
  const aesKeyBytes = Number(cipherAlg.slice(4)) / 8;
  const keyBytes = mode === 'xts' ? aesKeyBytes * 2 : aesKeyBytes;
  const iterTime = options.iterTimeMs ?? LUKS_DEFAULT_ITER_TIME_MS;
  const pw = passwordBytes(password);
  const layout = luksHeaderLayout(keyBytes);

  const masterKey = options.masterKey
    ? Uint8Array.from(options.masterKey)
    : new Uint8Array(randomBytes(keyBytes));
  if (masterKey.length !== keyBytes) {
    throw new ArgumentError('LUKS_BAD_KEY', `master key must be ${keyBytes} bytes`, {
      length: masterKey.length,
    });
  }
  const mkDigestSalt = new Uint8Array(randomBytes(LUKS_SALT_LEN));
  const slotSalt = new Uint8Array(randomBytes(LUKS_SALT_LEN));

  const mkDigestIterations =
    options.masterKeyIterations ??
    Math.max(
      LUKS_MIN_ITERATIONS,
      Math.floor(
        (pbkdf2IterationsPerSecond(hashAlg, masterKey, mkDigestSalt, LUKS_DIGEST_LEN) * iterTime) / 1000 / 8,
      ),
    );
  const slotIterations =
    options.slotIterations ??
    Math.max(
      LUKS_MIN_ITERATIONS,
      Math.floor((pbkdf2IterationsPerSecond(hashAlg, pw, slotSalt, keyBytes) * iterTime) / 1000),
    );
  for (const [name, v] of [
    ['masterKeyIterations', mkDigestIterations],
    ['slotIterations', slotIterations],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffffffff) {
      throw new ArgumentError('LUKS_BAD_ITERATIONS', `${name} ${v} out of range`, { [name]: v });
    }
  }

  const header: LuksHeader = {
    version: LUKS_VERSION,
    cipherName: 'aes',
    cipherMode: `${mode}-${ivgen}${ivgenHash ? `:${ivgenHash}` : ''}`,
    hashSpec: hashAlg,
    payloadOffsetSectors: layout.payloadOffsetSectors,
    keyBytes,
    mkDigest: new Uint8Array(
      pbkdf2Sync(masterKey, mkDigestSalt, mkDigestIterations, LUKS_DIGEST_LEN, hashAlg),
    ),
    mkDigestSalt,
    mkDigestIterations,
    uuid: options.uuid ?? randomUUID(),
    keySlots: layout.keySlotOffsetsSectors.map((keyOffsetSectors, i) => ({
      active: i === 0 ? LUKS_KEY_SLOT_ENABLED : LUKS_KEY_SLOT_DISABLED,
      iterations: i === 0 ? slotIterations : 0,
      salt: i === 0 ? slotSalt : new Uint8Array(LUKS_SALT_LEN),
      keyOffsetSectors,
      stripes: LUKS_STRIPES,
    })),
  };
  const spec = luksCipherSpec(header); // validates the combination

  const slotKey = pbkdf2Sync(pw, slotSalt, slotIterations, keyBytes, spec.hash);
  const split = afSplit(spec.hash, masterKey, LUKS_STRIPES);
  const material = new Uint8Array(Math.ceil(split.length / LUKS_SECTOR_SIZE) * LUKS_SECTOR_SIZE);
  material.set(split);
  sectorCipher(spec, slotKey).encrypt(material, 0);

  const bytes = new Uint8Array(layout.headerLength);
  bytes.set(encodeLuksHeader(header), 0);
  bytes.set(material.subarray(0, split.length), layout.keySlotOffsetsSectors[0]! * LUKS_SECTOR_SIZE);
  validateLuksHeader(header);
  return { header, masterKey, bytes, length: bytes.length };
}

// --- the qcow2 header extension ----------------------------------------------------------------

export interface CryptoHeaderPointer {
  offset: number;
  length: number;
}

/** Data of extension 0x0537BE77: u64 offset (cluster aligned), u64 length, big-endian. */
export function decodeCryptoHeaderExtension(
  data: Uint8Array,
  clusterSize?: number,
  extOffset = 0,
): CryptoHeaderPointer {
  if (data.length < CRYPTO_HEADER_EXT_LENGTH) {
    throw bad('CRYPTO_EXT_BAD', `crypto header extension is ${data.length} bytes, expected 16`, extOffset);
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const offset = Number(dv.getBigUint64(0));
  const length = Number(dv.getBigUint64(8));
  if (clusterSize && offset % clusterSize !== 0) {
    throw bad(
      'CRYPTO_EXT_BAD',
      `Encryption header offset 0x${offset.toString(16)} is not cluster aligned`,
      extOffset,
      {
        offset,
      },
    );
  }
  return { offset, length };
}

export function encodeCryptoHeaderExtension(p: CryptoHeaderPointer): Uint8Array {
  const b = new Uint8Array(CRYPTO_HEADER_EXT_LENGTH);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, BigInt(p.offset));
  dv.setBigUint64(8, BigInt(p.length));
  return b;
}

/** A digest of a master key, for tests and debugging output that must not print the key. */
export function keyFingerprint(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}
