import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import aesjs from 'aes-js';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AesLegacyCipher,
  aesLegacyKey,
  decryptSectors,
  encryptSectors,
} from '../../src/crypto/aes-legacy.ts';
import { Qcow2Error } from '../../src/errors.ts';
import {
  dataClusterOffset,
  firstDifference,
  randomBytes,
  readImage,
  run,
  tempDir,
} from '../codecs/qemu-image.ts';

const tmp = tempDir('aes');
afterAll(() => tmp.cleanup());

const secretArgs = (password: string, path: string): string[] => [
  '--object',
  `secret,id=s0,data=${password}`,
  '--image-opts',
  `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`,
];

/** Independent reference: aes-js CBC, one sector at a time, IV = plain64(sector). */
function referenceEncrypt(key: Uint8Array, firstSector: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let off = 0; off < data.length; off += 512) {
    const iv = new Uint8Array(16);
    new DataView(iv.buffer).setBigUint64(0, BigInt(firstSector + off / 512), true);
    const cbc = new aesjs.ModeOfOperation.cbc(key, iv);
    out.set(cbc.encrypt(data.subarray(off, off + 512)), off);
  }
  return out;
}

describe('legacy AES (pure)', () => {
  it('derives the key from the password: bytes, truncated or zero-padded to 16', () => {
    expect(Array.from(aesLegacyKey('abc'))).toEqual([0x61, 0x62, 0x63, ...new Array(13).fill(0)]);
    expect(new TextDecoder().decode(aesLegacyKey('0123456789abcdefXYZ'))).toBe('0123456789abcdef');
  });

  it('matches an independent AES-128-CBC/plain64 implementation (aes-js) and round-trips', () => {
    const data = randomBytes(4096, 3);
    const key = aesLegacyKey('hunter2');
    const ours = encryptSectors('hunter2', 1000, Uint8Array.from(data));
    expect(firstDifference(ours, referenceEncrypt(key, 1000, data))).toBeUndefined();
    expect(firstDifference(decryptSectors('hunter2', 1000, Uint8Array.from(ours)), data)).toBeUndefined();
    // The IV depends on the sector: the same plaintext at another sector encrypts differently.
    expect(firstDifference(encryptSectors('hunter2', 1001, Uint8Array.from(data)), ours)).toBe(0);
  });

  it('matches the reference over many sectors, in place, in a buffer at an odd byte offset', () => {
    // The cipher works on 32-bit words (CBC in lockstep over the sectors): an unaligned view
    // takes its copying path, an aligned one works on the caller's bytes directly.
    const data = randomBytes(64 * 512, 5);
    const key = aesLegacyKey('k');
    const want = referenceEncrypt(key, 77, data);
    const backing = new Uint8Array(data.length + 3);
    const view = backing.subarray(3);
    view.set(data);
    const aes = new AesLegacyCipher(key);
    expect(aes.encrypt(view, 77)).toBe(view);
    expect(firstDifference(view, want)).toBeUndefined();
    expect(firstDifference(aes.decrypt(view, 77), data)).toBeUndefined();
    const aligned = Uint8Array.from(data);
    expect(firstDifference(aes.encrypt(aligned, 77), want)).toBeUndefined();
    expect(firstDifference(aes.decrypt(aligned, 77), data)).toBeUndefined();
  });

  it('refuses data that is not whole sectors', () => {
    expect(() => new AesLegacyCipher(aesLegacyKey('x')).encrypt(new Uint8Array(100), 0)).toThrow(Qcow2Error);
  });
});

describe('legacy AES against QEMU', () => {
  function makeImage(tag: string): string {
    const path = join(tmp.dir, `${tag}.qcow2`);
    // qemu 7.2 still creates AES images with qemu-img (only the system emulator refuses them).
    run('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '--object',
      'secret,id=s0,data=abc',
      '-o',
      'encrypt.format=aes,encrypt.key-secret=s0',
      path,
      '4M',
    ]);
    return path;
  }

  it('decrypts what qemu-io wrote, with IVs from the GUEST sector number', () => {
    const path = makeImage('read');
    // Guest cluster 3 (offset 192 KiB) is the first data cluster allocated: guest != host sector.
    run('qemu-io', [...secretArgs('abc', path), '-c', 'write -P 0x11 192k 4k']);
    const img = readImage(path);
    expect(img.cryptMethod).toBe(1);
    const host = dataClusterOffset(img, 192 * 1024);
    expect(host).not.toBe(192 * 1024);
    const enc = img.bytes.slice(host, host + 4096);
    const plain = decryptSectors('abc', (192 * 1024) / 512, Uint8Array.from(enc));
    expect(firstDifference(plain, new Uint8Array(4096).fill(0x11))).toBeUndefined();
    // With the host sector number, the first block of each sector (CBC: IV xor) comes out wrong.
    const wrong = decryptSectors('abc', host / 512, Uint8Array.from(enc));
    expect(firstDifference(wrong, new Uint8Array(4096).fill(0x11))).toBeLessThan(16);
  });

  it('writes sectors QEMU decrypts (spliced into the image, verified by qemu-io read -P)', () => {
    const path = makeImage('write');
    run('qemu-io', [...secretArgs('abc', path), '-c', 'write -P 0x11 64k 64k']);
    const img = readImage(path);
    const host = dataClusterOffset(img, 64 * 1024);
    const enc = encryptSectors('abc', (64 * 1024) / 512, new Uint8Array(65536).fill(0x22));
    const bytes = new Uint8Array(readFileSync(path));
    bytes.set(enc, host);
    writeFileSync(path, bytes);
    run('qemu-io', [...secretArgs('abc', path), '-c', 'read -P 0x22 64k 64k']);
    // And a wrong password reads garbage, which the pattern check rejects.
    expect(() => run('qemu-io', [...secretArgs('abd', path), '-c', 'read -P 0x22 64k 64k'])).toThrow();
  });
});
