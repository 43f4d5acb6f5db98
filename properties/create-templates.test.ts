/**
 * LUKS create templates (qemu/create-templates.ts): the second create of a LUKS layout with the
 * same command is a byte copy of the first one's qemu-img output (no second PBKDF2 benchmark),
 * the copy opens with the password and passes `qemu-img check`; a different size is a new
 * qemu-img create; a layout without LUKS never goes through the cache.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qemuImgCheck, qemuImgCreate, requireQemuTools } from './qemu/qemu-img.ts';
import { usesTemplate } from './qemu/create-templates.ts';
import { plainLayout } from './layout.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'create-templates-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const LUKS = plainLayout({
  encrypt: 'luks',
});

describe('LUKS create templates', () => {
  it('reuse qemu-img’s own output for the identical create command, and only that', async () => {
    await requireQemuTools();
    const at = (name: string): string => path.join(dir, name);
    await qemuImgCreate(at('a.qcow2'), LUKS);
    const t0 = performance.now();
    await qemuImgCreate(at('b.qcow2'), LUKS);
    const copyMs = performance.now() - t0;
    expect(Buffer.compare(fs.readFileSync(at('a.qcow2')), fs.readFileSync(at('b.qcow2')))).toBe(0);
    // a copy, not a second PBKDF2 benchmark (which alone runs over 500 ms of CPU, twice)
    expect(copyMs).toBeLessThan(500);
    const check = await qemuImgCheck(at('b.qcow2'), LUKS);
    expect(check.exitCode).toBe(0);

    // another size: another command, so qemu-img creates it (new random keys: other bytes)
    await qemuImgCreate(at('c.qcow2'), { ...LUKS, size: 2 << 20 });
    const c = fs.readFileSync(at('c.qcow2'));
    expect(c.readBigUInt64BE(24)).toBe(2n << 20n); // qcow2.txt: header bytes 24-31 = size
    expect(usesTemplate({ ...LUKS, encrypt: 'aes' })).toBe(false);
    expect(usesTemplate({ ...LUKS, encrypt: undefined })).toBe(false);
  }, 60_000);
});
