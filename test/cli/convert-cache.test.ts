/**
 * `convert -t CACHE`: qemu-img convert's target cache defaults to unsafe (img_convert), so after
 * the target's creation (which flushes, as qcow2_co_create does) no fdatasync reaches the disk;
 * `-t writeback` flushes the copied data at the end. An invalid mode is reported once the target
 * exists, as img_convert checks it after creating the target. fdatasync is counted through a
 * pass-through mock of node:fs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const sync = vi.hoisted(() => ({ calls: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return {
    ...real,
    fdatasyncSync: (fd: number): void => {
      sync.calls++;
      real.fdatasyncSync(fd);
    },
  };
});

// Imported after the mock is in place (vi.mock is hoisted above imports).
const { main } = await import('../../src/cli/main.ts');
const { Qcow2Image } = await import('../../src/image.ts');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-convert-cache-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const src = path.join(dir, 'src.qcow2');
{
  const img = Qcow2Image.create(src, { size: 4 << 20 });
  img.write(0, new Uint8Array(1 << 20).fill(7));
  img.close();
}

async function run(argv: string[]): Promise<{ code: number; err: string; syncs: number }> {
  let err = '';
  sync.calls = 0;
  const code = await main(argv, { out: () => {}, err: (s) => void (err += s) });
  return { code, err, syncs: sync.calls };
}

describe('convert -t', () => {
  it('flushes only at creation by default (unsafe), and at the end with -t writeback', async () => {
    const created = path.join(dir, 'created.qcow2');
    const createOnly = await run(['create', '-q', '-f', 'qcow2', created, '4M']);
    expect(createOnly.code).toBe(0);

    const dflt = await run(['convert', '-O', 'qcow2', src, path.join(dir, 'a.qcow2')]);
    expect(dflt.code).toBe(0);
    expect(dflt.syncs).toBe(createOnly.syncs); // the creation's flushes, none for the data

    const wb = await run(['convert', '-t', 'writeback', '-O', 'qcow2', src, path.join(dir, 'b.qcow2')]);
    expect(wb.code).toBe(0);
    expect(wb.syncs).toBeGreaterThan(createOnly.syncs);

    // Both copies hold the data.
    for (const f of ['a.qcow2', 'b.qcow2']) {
      const img = Qcow2Image.open(path.join(dir, f), { readOnly: true });
      expect(img.read(0, 1 << 20).every((b) => b === 7)).toBe(true);
      img.close();
    }
  });

  it('an invalid mode fails once the target exists, as qemu-img convert does', async () => {
    const out = path.join(dir, 'bad.qcow2');
    const r = await run(['convert', '-t', 'bogus', '-O', 'qcow2', src, out]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('Invalid cache option: bogus');
    expect(fs.existsSync(out)).toBe(true);
  });
});
