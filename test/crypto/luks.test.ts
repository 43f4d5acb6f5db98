import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { afMerge, afSplit } from '../../src/crypto/afsplit.ts';
import {
  LUKS_KEY_SLOT_DISABLED,
  LUKS_KEY_SLOT_ENABLED,
  LuksCipher,
  createLuksHeader,
  decodeCryptoHeaderExtension,
  decodeLuksHeader,
  encodeCryptoHeaderExtension,
  encodeLuksHeader,
  luksHeaderLayout,
  unlockLuks,
} from '../../src/crypto/luks.ts';
import { CorruptionError, Qcow2Error } from '../../src/errors.ts';
import {
  dataClusterOffset,
  firstDifference,
  randomBytes,
  readImage,
  run,
  tempDir,
} from '../codecs/qemu-image.ts';

const tmp = tempDir('luks');
afterAll(() => tmp.cleanup());

const EXT_CRYPTO_HEADER = 0x0537be77;
const FAST = { slotIterations: 1000, masterKeyIterations: 1000 } as const;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof Qcow2Error) return e.code;
    throw e;
  }
  return undefined;
}

const secretArgs = (password: string, path: string): string[] => [
  '--object',
  `secret,id=s0,data=${password}`,
  '--image-opts',
  `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`,
];

function makeLuksImage(tag: string, extraOpts = ''): string {
  const path = join(tmp.dir, `${tag}.qcow2`);
  const args = [
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    'secret,id=s0,data=abc',
    '-o',
    `encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10${extraOpts}`,
    path,
    '4M',
  ];
  // QEMU's PBKDF2 calibration (qcrypto_pbkdf2_count_iters) sometimes fails with "Unable to get
  // accurate CPU usage" when a timing sample rounds to zero (about 1 run in 5 on this machine).
  // That is QEMU's flake, not ours: retry it.
  for (let attempt = 1; ; attempt++) {
    try {
      run('qemu-img', args);
      return path;
    } catch (e) {
      const stderr = String((e as { stderr?: unknown }).stderr ?? '');
      if (attempt >= 10 || !stderr.includes('Unable to get accurate CPU usage')) throw e;
    }
  }
}

function luksArea(path: string): { offset: number; length: number; area: Uint8Array; clusterSize: number } {
  const img = readImage(path);
  expect(img.cryptMethod).toBe(2);
  const ext = img.extensions.get(EXT_CRYPTO_HEADER);
  expect(ext?.length).toBe(16);
  const clusterSize = 1 << img.clusterBits;
  const { offset, length } = decodeCryptoHeaderExtension(ext!, clusterSize);
  return { offset, length, area: img.bytes.subarray(offset, offset + length), clusterSize };
}

describe('anti-forensic splitter', () => {
  it('merges what it split, for key sizes that are and are not multiples of the digest', () => {
    for (const [hash, n] of [
      ['sha256', 64],
      ['sha256', 20],
      ['sha1', 32],
    ] as const) {
      const key = randomBytes(n, n);
      const split = afSplit(hash, key, 4000);
      expect(split.length).toBe(n * 4000);
      expect(firstDifference(afMerge(hash, split, n, 4000), key)).toBeUndefined();
    }
  });
});

describe('LUKS header (pure)', () => {
  it('lays out slots like QEMU for the default aes-256-xts (64-byte key)', () => {
    const l = luksHeaderLayout(64, 65536);
    expect(l.keySlotOffsetsSectors).toEqual([8, 512, 1016, 1520, 2024, 2528, 3032, 3536]);
    expect(l.payloadOffsetSectors).toBe(4040);
    expect(l.headerLength).toBe(0x1f9000);
    expect(l.clusters).toBe(32);
    expect(luksHeaderLayout(32).keySlotOffsetsSectors[1]).toBe(8 + 256);
  });

  it('creates a header that decodes, re-encodes byte for byte, and unlocks with its password only', () => {
    const created = createLuksHeader('secret', FAST);
    expect(created.length).toBe(0x1f9000);
    const h = decodeLuksHeader(created.bytes);
    expect(h).toEqual(created.header);
    expect(firstDifference(encodeLuksHeader(h), created.bytes.subarray(0, 592))).toBeUndefined();
    expect(h.cipherName).toBe('aes');
    expect(h.cipherMode).toBe('xts-plain64');
    expect(h.hashSpec).toBe('sha256');
    expect(h.keyBytes).toBe(64);
    expect(h.keySlots.map((s) => s.active)).toEqual([
      LUKS_KEY_SLOT_ENABLED,
      ...new Array(7).fill(LUKS_KEY_SLOT_DISABLED),
    ]);
    expect(firstDifference(unlockLuks(h, created.bytes, 'secret'), created.masterKey)).toBeUndefined();
    let err: unknown;
    try {
      unlockLuks(h, created.bytes, 'Secret');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Qcow2Error);
    expect((err as Qcow2Error).code).toBe('BAD_PASSWORD');
    expect((err as Qcow2Error).message).toBe('Invalid password, cannot unlock any keyslot');
  });

  it('supports cbc-essiv:sha256 and aes-128-xts', () => {
    for (const opts of [
      { cipherMode: 'cbc', ivgenAlg: 'essiv', cipherAlg: 'aes-256' },
      { cipherMode: 'xts', ivgenAlg: 'plain64', cipherAlg: 'aes-128' },
      { cipherMode: 'cbc', ivgenAlg: 'plain', cipherAlg: 'aes-192', hashAlg: 'sha1' },
    ] as const) {
      const c = createLuksHeader('pw', { ...FAST, ...opts });
      const h = decodeLuksHeader(c.bytes);
      const mk = unlockLuks(h, c.bytes, 'pw');
      expect(firstDifference(mk, c.masterKey)).toBeUndefined();
      const cipher = new LuksCipher(h, mk);
      const data = randomBytes(4096, 5);
      const enc = cipher.encrypt(Uint8Array.from(data), 0x50000);
      expect(firstDifference(enc, data)).toBe(0);
      expect(firstDifference(cipher.decrypt(enc, 0x50000), data)).toBeUndefined();
    }
    expect(createLuksHeader('pw', { ...FAST, cipherMode: 'cbc', ivgenAlg: 'essiv' }).header.cipherMode).toBe(
      'cbc-essiv:sha256',
    );
  });

  it('refuses malformed headers with stable codes', () => {
    const { bytes } = createLuksHeader('pw', FAST);
    const hdr = (): Uint8Array => bytes.slice(0, 592);
    const badMagic = hdr();
    badMagic[0] = 0x4d;
    expect(codeOf(() => decodeLuksHeader(badMagic))).toBe('LUKS_BAD_MAGIC');
    const badVersion = hdr();
    badVersion[7] = 2;
    expect(codeOf(() => decodeLuksHeader(badVersion))).toBe('LUKS_BAD_VERSION');
    const noNul = hdr();
    noNul.fill(0x61, 8, 40);
    expect(codeOf(() => decodeLuksHeader(noNul))).toBe('LUKS_BAD_HEADER');
    const stripes = hdr();
    new DataView(stripes.buffer).setUint32(208 + 48 * 3 + 44, 3999);
    expect(codeOf(() => decodeLuksHeader(stripes))).toBe('LUKS_BAD_HEADER');
    const state = hdr();
    new DataView(state.buffer).setUint32(208 + 48 * 2, 1);
    expect(codeOf(() => decodeLuksHeader(state))).toBe('LUKS_BAD_HEADER');
    const overlap = hdr();
    new DataView(overlap.buffer).setUint32(208 + 48 * 1 + 40, 100); // slot 1 inside slot 0
    expect(codeOf(() => decodeLuksHeader(overlap))).toBe('LUKS_BAD_HEADER');
    const payload = hdr();
    new DataView(payload.buffer).setUint32(104, 4000); // slot 7 runs past the payload
    let err: unknown;
    try {
      decodeLuksHeader(payload, 0x40000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CorruptionError);
    expect((err as CorruptionError).offset).toBeGreaterThanOrEqual(0x40000);
    expect(codeOf(() => decodeLuksHeader(bytes.subarray(0, 100)))).toBe('LUKS_BAD_HEADER');
    const unsupported = hdr();
    unsupported.set(new TextEncoder().encode('serpent\0'), 8);
    expect(codeOf(() => unlockLuks(decodeLuksHeader(unsupported), bytes, 'pw'))).toBe(
      'LUKS_UNSUPPORTED_CIPHER',
    );
  });

  it('encodes the crypto header extension as two big-endian u64', () => {
    const e = encodeCryptoHeaderExtension({ offset: 0x40000, length: 0x1f9000 });
    expect(Buffer.from(e).toString('hex')).toBe('0000000000040000' + '00000000001f9000');
    expect(decodeCryptoHeaderExtension(e, 65536)).toEqual({ offset: 0x40000, length: 0x1f9000 });
    expect(
      codeOf(() =>
        decodeCryptoHeaderExtension(encodeCryptoHeaderExtension({ offset: 0x40200, length: 1 }), 65536),
      ),
    ).toBe('CRYPTO_EXT_BAD');
  });
});

describe('LUKS against QEMU', () => {
  it('reads the header QEMU wrote, unlocks it, and decrypts data with HOST-offset IVs', () => {
    const path = makeLuksImage('read');
    run('qemu-io', [...secretArgs('abc', path), '-c', 'write -P 0x11 0 4k']);
    const { offset, length, area, clusterSize } = luksArea(path);
    // What QEMU writes in the extension: the area right after header, refcounts and L1, and the
    // payload offset in bytes as the length.
    expect(offset).toBe(0x40000);
    expect(length).toBe(luksHeaderLayout(64, clusterSize).headerLength);
    const h = decodeLuksHeader(area, offset);
    expect([h.cipherName, h.cipherMode, h.hashSpec, h.keyBytes]).toEqual([
      'aes',
      'xts-plain64',
      'sha256',
      64,
    ]);
    expect(h.payloadOffsetSectors * 512).toBe(length);
    expect(h.keySlots.map((s) => s.keyOffsetSectors)).toEqual(luksHeaderLayout(64).keySlotOffsetsSectors);
    expect(h.keySlots.slice(1).every((s) => s.iterations === 0 && s.salt.every((b) => b === 0))).toBe(true);
    expect(encodeLuksHeader(h)).toEqual(area.slice(0, 592));

    const mk = unlockLuks(h, area, 'abc', offset);
    expect(codeOf(() => unlockLuks(h, area, 'abd', offset))).toBe('BAD_PASSWORD');

    const img = readImage(path);
    const host = dataClusterOffset(img, 0);
    expect(host).toBeGreaterThanOrEqual(offset + length); // data lives after the LUKS area
    const plain = new LuksCipher(h, mk).decrypt(img.bytes.slice(host, host + 4096), host);
    expect(firstDifference(plain, new Uint8Array(4096).fill(0x11))).toBeUndefined();
    // IVs from the guest offset (0) would not decrypt it.
    const wrong = new LuksCipher(h, mk).decrypt(img.bytes.slice(host, host + 4096), 0);
    expect(firstDifference(wrong, new Uint8Array(4096).fill(0x11))).toBe(0);
  });

  it('reads QEMU cbc-essiv:sha256 LUKS data too', () => {
    const path = makeLuksImage(
      'essiv',
      ',encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256',
    );
    run('qemu-io', [...secretArgs('abc', path), '-c', 'write -P 0x44 8k 4k']);
    const { offset, area } = luksArea(path);
    const h = decodeLuksHeader(area, offset);
    expect([h.cipherMode, h.keyBytes]).toEqual(['cbc-essiv:sha256', 16]);
    const mk = unlockLuks(h, area, 'abc');
    const img = readImage(path);
    const host = dataClusterOffset(img, 0) + 8192;
    const plain = new LuksCipher(h, mk).decrypt(img.bytes.slice(host, host + 4096), host);
    expect(firstDifference(plain, new Uint8Array(4096).fill(0x44))).toBeUndefined();
  });

  it('QEMU opens a header we created and reads data we encrypted', () => {
    const path = makeLuksImage('write');
    run('qemu-io', [...secretArgs('abc', path), '-c', 'write -P 0x11 0 64k']);
    const { offset, length } = luksArea(path);
    const created = createLuksHeader('s3cret', FAST);
    expect(created.length).toBe(length); // same default parameters, same area size
    const img = readImage(path);
    const host = dataClusterOffset(img, 0);
    const bytes = new Uint8Array(readFileSync(path));
    bytes.set(created.bytes, offset);
    const cipher = new LuksCipher(created.header, created.masterKey);
    bytes.set(cipher.encrypt(new Uint8Array(65536).fill(0x33), host), host);
    writeFileSync(path, bytes);
    run('qemu-io', [...secretArgs('s3cret', path), '-c', 'read -P 0x33 0 64k']);
    // QEMU's own message for the old password.
    let stderr = '';
    try {
      run('qemu-io', [...secretArgs('abc', path), '-c', 'read 0 512']);
    } catch (e) {
      stderr = String((e as { stderr?: unknown }).stderr ?? '');
    }
    expect(stderr).toContain('Invalid password, cannot unlock any keyslot');
  });
});
