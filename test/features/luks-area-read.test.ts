/**
 * The LUKS area is read at open only up to the end of the active key slot's material (not the
 * whole ~2 MiB area): opening still unlocks, a wrong password is still refused, and an area whose
 * length stops inside the slot's key material is still refused with the same typed error.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'luks-area-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const secret = new TextEncoder().encode('pw');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('LUKS area read at open', () => {
  it('opens, reads back, refuses a wrong password, and refuses an area cut inside the key material', () => {
    const file = path.join(dir, 'l.qcow2');
    const img = Qcow2Image.create(file, {
      size: 4 << 20,
      sync: false,
      encrypt: { format: 'luks', secret, iterTimeMs: 1 },
    });
    img.write(4096, new Uint8Array(8192).fill(0x5a));
    img.close();
    const again = Qcow2Image.open(file, { sync: false, secret });
    expect(again.read(4096, 8192).every((b) => b === 0x5a)).toBe(true);
    again.close();
    expect(codeOf(() => Qcow2Image.open(file, { sync: false, secret: new TextEncoder().encode('pW') }))).toBe(
      'BAD_PASSWORD',
    );
    // the crypto header extension (0x0537BE77: u64 offset, u64 length) cut to end 100 KiB into
    // slot 0's key material (which starts at 4 KiB and runs 250 KiB for a 64-byte key)
    const bytes = fs.readFileSync(file);
    const ext = bytes.indexOf(Buffer.from([0x05, 0x37, 0xbe, 0x77]));
    expect(ext).toBeGreaterThan(0);
    bytes.writeBigUInt64BE(BigInt(100 << 10), ext + 8 + 8);
    const cut = path.join(dir, 'cut.qcow2');
    fs.writeFileSync(cut, bytes);
    expect(codeOf(() => Qcow2Image.open(cut, { sync: false, secret }))).toBe('LUKS_BAD_HEADER');
  });
});
