/**
 * The order rule of discard passthrough (src/engine/refcounts.ts, metadata.ts flush step 5): a
 * hole is punched only in clusters no table on disk refers to any more. Every discard the engine
 * sends to the image file is intercepted and, before it is let through, QEMU's `qemu-img map` of
 * the file as it is on disk at that moment must name no host range inside it; afterwards, QEMU's
 * check of the closed image is clean and every byte reads back as written. Also: the discards
 * happen at all (the scenario frees clusters with request and snapshot types), and not with
 * pass-discard-request/-snapshot off or the unmap flag clear.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import type { OpenOptions } from '../../src/api.ts';
import { Qcow2Image } from '../../src/image.ts';
import type { BlockDevice } from '../../src/io/device.ts';
import { FileDevice } from '../../src/io/device.ts';
import { tempDir } from '../support/qemu.ts';

const tmp = tempDir('discard-order');
afterAll(() => tmp.cleanup());

const CS = 65536;

interface Mapped {
  start: number;
  length: number;
  offset?: number;
  data: boolean;
}

/** Host ranges QEMU's map names in the file as it is on disk now (-U: the engine holds it open). */
function mappedHost(file: string): Array<[number, number]> {
  const r = spawnSync('qemu-img', ['map', '-U', '--output=json', '-f', 'qcow2', file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Mapped[])
    .filter((m) => m.offset !== undefined)
    .map((m) => [m.offset!, m.offset! + m.length]);
}

function fill(n: number, v: number): Uint8Array {
  return new Uint8Array(n).fill(v);
}

/** Runs the scenario on a fresh image; returns the discards the engine sent to the file. */
function scenario(name: string, discard: OpenOptions['discard']): Array<[number, number]> {
  const file = tmp.file(`${name}.qcow2`);
  Qcow2Image.create(file, { size: 16 * 1024 * 1024 }).close();
  const dev = FileDevice.open(file, { sync: false, lock: false });
  const sent: Array<[number, number]> = [];
  const watched = new Proxy(dev, {
    get(target, prop, receiver) {
      if (prop === 'discard')
        return (offset: number, length: number): void => {
          for (const [a, b] of mappedHost(file)) {
            const overlaps = a < offset + length && offset < b;
            expect(overlaps, `discard ${offset}+${length} hits mapped host range ${a}-${b}`).toBe(false);
          }
          sent.push([offset, length]);
          target.discard(offset, length);
        };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as BlockDevice;
  const img = Qcow2Image.openDevice(watched, { filename: file, discard });
  img.write(0, fill(8 * CS, 1));
  img.createSnapshot('s1');
  img.write(0, fill(4 * CS, 2)); // copies of the shared clusters: the old ones stay with s1
  img.flush();
  img.discard(4 * CS, 2 * CS); // request: exclusively owned? no — shared with s1, refcount 2 → 1
  img.write(8 * CS, fill(4 * CS, 3));
  img.flush(); // the references on disk before they are dropped: an early hole would be seen
  img.discard(8 * CS, 2 * CS); // request: refcount 1 → 0
  img.writeZeroes(10 * CS, 2 * CS, { unmap: true }); // request: refcount 1 → 0
  img.flush();
  img.deleteSnapshot('s1'); // snapshot: the clusters only s1 held
  img.write(16 * CS, fill(2 * CS, 4));
  img.createSnapshot('s2');
  img.write(16 * CS, fill(2 * CS, 5));
  img.flush();
  img.applySnapshot('s2'); // snapshot: the active copies
  img.close();
  const check = spawnSync('qemu-img', ['check', file], { encoding: 'utf8' });
  expect(check.status, check.stdout + check.stderr).toBe(0);
  const expectRead = (cmd: string): void => {
    const r = spawnSync('qemu-io', ['-r', '-f', 'qcow2', '-c', cmd, file], { encoding: 'utf8' });
    expect(r.stdout, cmd).not.toMatch(/fail/i);
  };
  expectRead(`read -P 2 0 ${4 * CS}`);
  expectRead(`read -P 1 ${6 * CS} ${2 * CS}`);
  const unmapOn = discard?.unmap ?? true;
  expectRead(unmapOn ? `read -z ${4 * CS} ${2 * CS}` : `read -P 1 ${4 * CS} ${2 * CS}`);
  expectRead(unmapOn ? `read -z ${8 * CS} ${2 * CS}` : `read -P 3 ${8 * CS} ${2 * CS}`);
  expectRead(`read -z ${10 * CS} ${2 * CS}`);
  expectRead(`read -P 4 ${16 * CS} ${2 * CS}`);
  return sent;
}

const bytes = (sent: Array<[number, number]>): number => sent.reduce((n, [, l]) => n + l, 0);

describe('discard passthrough never punches a cluster a table on disk refers to', () => {
  it('defaults: request and snapshot frees are punched, each after the tables dropped the cluster', () => {
    const sent = scenario('defaults', undefined);
    // 2 (discard) + 2 (zero -u) request clusters, 4 + 2 + 2 snapshot-only data clusters at least
    expect(bytes(sent)).toBeGreaterThanOrEqual(12 * CS);
  });

  it('pass-discard-request=off and pass-discard-snapshot=off: nothing is punched', () => {
    expect(scenario('off', { passRequest: false, passSnapshot: false })).toEqual([]);
  });

  it('pass-discard-request=off alone: only the snapshot frees are punched', () => {
    const all = bytes(scenario('all', undefined));
    const some = bytes(scenario('snap-only', { passRequest: false }));
    expect(some).toBeGreaterThan(0);
    expect(some).toBeLessThan(all);
  });

  it('unmap off (qemu-io -d ignore): discards are dropped and zero writes do not unmap', () => {
    const sent = scenario('ignore', { unmap: false });
    // (the snapshot frees still pass: pass-discard-snapshot does not depend on the flag)
    expect(bytes(sent)).toBeGreaterThan(0);
  });
});
