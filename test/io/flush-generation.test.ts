/**
 * FileDevice.flush skips fdatasync when nothing reached the file since the last successful one (as
 * QEMU's bdrv_co_flush compares write_gen with flushed_gen), and never otherwise: a write, a
 * truncate, a fallocate or a punched hole makes the next flush sync, and a failed fdatasync leaves
 * the device unflushed, so the next flush tries again. fdatasync is counted through a pass-through
 * mock of node:fs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

const sync = vi.hoisted(() => ({ calls: 0, failNext: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return {
    ...real,
    fdatasyncSync: (fd: number): void => {
      sync.calls++;
      if (sync.failNext > 0) {
        sync.failNext--;
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
      }
      real.fdatasyncSync(fd);
    },
  };
});

// Imported after the mock is in place (vi.mock is hoisted above imports).
const { FileDevice } = await import('../../src/io/device.ts');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-flushgen-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
function fresh(): ReturnType<typeof FileDevice.open> {
  const f = path.join(dir, `f${n++}`);
  fs.writeFileSync(f, new Uint8Array(8192));
  return FileDevice.open(f, { lock: false });
}

beforeEach(() => {
  sync.calls = 0;
  sync.failNext = 0;
});

describe('FileDevice flush generations', () => {
  it('a flush with nothing written since opening or since the last flush issues no fdatasync', () => {
    const d = fresh();
    d.flush();
    expect(sync.calls).toBe(0);
    d.write(new Uint8Array([1, 2, 3]), 0);
    d.flush();
    d.flush();
    d.flush();
    expect(sync.calls).toBe(1);
    d.close();
  });

  it('a created (emptied) file is synced at its first flush', () => {
    const d = FileDevice.create(path.join(dir, `c${n++}`), { lock: false });
    d.flush();
    d.flush();
    expect(sync.calls).toBe(1);
    d.close();
  });

  it('each kind of change makes the next flush sync', async () => {
    const d = fresh();
    const changes: [string, () => void | Promise<void>][] = [
      ['write', () => d.write(new Uint8Array(512).fill(7), 512)],
      ['writevSync', () => d.writevSync([new Uint8Array(512), new Uint8Array(512)], 1024)],
      ['writeAsync', () => d.writeAsync(new Uint8Array(512).fill(9), 4096)],
      ['shrinking truncate', () => d.truncate(4096)],
      ['growing truncate (deferred to the flush)', () => d.truncate(1 << 20)],
      ['allocate (fallocate)', () => d.allocate(1 << 20, 65536)],
      ['discard (punched hole)', () => d.discard(0, 4096)],
    ];
    for (const [what, change] of changes) {
      await change();
      const before = sync.calls;
      d.flush();
      expect(sync.calls - before, what).toBe(1);
      d.flush();
      expect(sync.calls - before, `${what}, flushed twice`).toBe(1);
    }
    d.close();
  });

  it('a write in flight while a flush runs is synced by the next flush', async () => {
    const d = fresh();
    const pending = d.writeAsync(new Uint8Array(4096).fill(5), 0);
    d.flush(); // may run before the thread pool wrote the bytes
    await pending;
    const before = sync.calls;
    d.flush();
    expect(sync.calls - before).toBe(1);
    d.close();
  });

  it('a failed fdatasync marks nothing flushed: the next flush syncs again', () => {
    const d = fresh();
    d.write(new Uint8Array([1]), 0);
    sync.failNext = 1;
    expect(() => d.flush()).toThrow(/flush failed/);
    expect(sync.calls).toBe(1);
    d.flush();
    expect(sync.calls).toBe(2);
    d.flush();
    expect(sync.calls).toBe(2);
    d.close();
  });
});
