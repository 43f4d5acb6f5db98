/**
 * QEMU's runtime cache options (l2-cache-size, refcount-cache-size, l2-cache-entry-size,
 * cache-clean-interval): QEMU's sizing rules and errors, and a tiny cache — one L2 table's worth,
 * on a workload touching many L2 tables — still writing images `qemu-img check` finds clean and
 * that read back correctly (the eviction and write-back path).
 */
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { cacheBudget } from '../../src/engine/options.ts';
import { Qcow2Error } from '../../src/errors.ts';
import { Qcow2Image } from '../../src/image.ts';
import {
  errorCode,
  pattern,
  qemuCheck,
  qemuCreate,
  qemuRaw,
  run,
  sameBytes,
  tempDir,
} from '../support/qemu.ts';

const tmp = tempDir('cache-opts');
afterAll(() => tmp.cleanup());

const DEFAULTS = { l2Tables: 64, refcountBlocks: 16 };
const geometry = { clusterSize: 65536, diskSize: 1 << 30, extendedL2: false };

describe('cache sizing (read_cache_sizes)', () => {
  it('counts whole tables with QEMU minimums: 2 L2 tables, 4 refcount blocks', () => {
    expect(cacheBudget({ l2CacheSize: 65536, refcountCacheSize: 0 }, geometry, DEFAULTS)).toEqual({
      l2Tables: 2,
      refcountBlocks: 4,
    });
    expect(
      cacheBudget(
        { l2CacheSize: 10 * 65536, refcountCacheSize: 8 * 65536 },
        { ...geometry, diskSize: 2 ** 36 },
        DEFAULTS,
      ),
    ).toEqual({
      l2Tables: 10,
      refcountBlocks: 8,
    });
    // Never more than covers the disk: 1 GiB of 64 KiB clusters needs 16384 entries = 2 tables.
    expect(cacheBudget({ l2CacheSize: 1 << 30 }, geometry, DEFAULTS).l2Tables).toBe(2);
    expect(cacheBudget(undefined, geometry, DEFAULTS)).toBe(DEFAULTS);
    expect(cacheBudget({ cacheCleanInterval: 600 }, geometry, DEFAULTS)).toEqual(DEFAULTS);
  });

  it('refuses what QEMU refuses, with its wording', () => {
    const message = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return e instanceof Qcow2Error ? `${e.code}: ${e.message}` : String(e);
      }
      return 'no error';
    };
    for (const size of [256, 1000, 131072]) {
      expect(message(() => cacheBudget({ l2CacheEntrySize: size }, geometry, DEFAULTS))).toBe(
        'INVALID_OPTION: L2 cache entry size must be a power of two between 512 and the cluster size (65536)',
      );
    }
    expect(message(() => cacheBudget({ cacheCleanInterval: 2 ** 32 }, geometry, DEFAULTS))).toBe(
      'INVALID_OPTION: Cache clean interval too big',
    );
    expect(message(() => cacheBudget({ l2CacheSize: -1 }, geometry, DEFAULTS))).toMatch(/^INVALID_OPTION: /);
  });
});

describe('a tiny cache', () => {
  it('engine: one L2 table of cache over many tables writes a clean image that reads back', () => {
    const f = path.join(tmp.dir, 'tiny.qcow2');
    // 512-byte clusters: an L2 table maps 32 KiB, so 8 MiB spans 256 tables.
    qemuCreate(f, '8M', { opts: 'cluster_size=512' });
    const size = 8 << 20;
    const expected = new Uint8Array(size);
    const img = Qcow2Image.open(f, { sync: false, cache: { l2CacheSize: 512, refcountCacheSize: 512 } });
    for (let i = 0; i < 300; i++) {
      // Strides of ~27 KiB walk through every L2 table, then wrap around and overwrite.
      const off = ((i * 27_648) % (size - 4096)) & ~511;
      const data = pattern(1536, i + 1);
      img.write(off, data);
      expected.set(data, off);
      if (i % 50 === 49) img.flush();
    }
    expect(sameBytes(img.read(0, size), expected)).toBe('equal');
    img.close();
    const check = qemuCheck(f);
    expect(check.status, check.stderr).toBe(0);
    expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
  });

  it('CLI: --image-opts cache options reach the engine (qemu-io command line)', async () => {
    const f = path.join(tmp.dir, 'cli.qcow2');
    qemuCreate(f, '4M', { opts: 'cluster_size=512' });
    const opts = `driver=qcow2,file.filename=${f},l2-cache-size=512,refcount-cache-size=1k,l2-cache-entry-size=512,cache-clean-interval=30`;
    const cmds = ['write -P 0x5a 0 1M', 'write -P 0xa5 2M 1M', 'read -P 0x5a 0 1M', 'read -P 0xa5 2M 1M'];
    let out = '';
    let err = '';
    const code = await main(['io', '--image-opts', ...cmds.flatMap((c) => ['-c', c]), opts], {
      out: (s) => (out += s),
      err: (s) => (err += s),
    });
    expect(code, err + out).toBe(0);
    expect(qemuCheck(f).status).toBe(0);
    const q = run('qemu-io', ['--image-opts', '-c', 'read -P 0xa5 2M 1M', opts]);
    expect(q.status, q.stderr).toBe(0);
  });

  it('CLI: an invalid entry size is refused as qemu-io refuses it', async () => {
    const f = path.join(tmp.dir, 'bad.qcow2');
    qemuCreate(f, '4M');
    const opts = `driver=qcow2,file.filename=${f},l2-cache-entry-size=1000`;
    let err = '';
    const code = await main(['io', '--image-opts', '-c', 'read 0 512', opts], {
      out: () => {},
      err: (s) => (err += s),
    });
    const q = run('qemu-io', ['--image-opts', '-c', 'read 0 512', opts]);
    const reason = 'L2 cache entry size must be a power of two between 512 and the cluster size (65536)';
    expect(q.stderr).toContain(reason);
    expect(err).toContain(reason);
    expect(code).toBe(1);
    expect(errorCode(() => Qcow2Image.open(f, { cache: { l2CacheEntrySize: 1000 } }))).toBe('INVALID_OPTION');
  });
});
