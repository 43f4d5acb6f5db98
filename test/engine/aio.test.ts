/**
 * Requests in flight (src/engine/aio.ts): many guest reads and writes at once on a file image give
 * what the same requests give one after another, in submission order; the image is clean for
 * qemu-img check and reads as the model for qemu-img convert; an allocating write's L2 entry
 * appears only once its data is written.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { MemoryDevice } from '../../src/io/device.ts';
import { qemuCheck, qemuCreate, qemuIo, qemuRaw, sameBytes, tempDir } from '../support/qemu.ts';

const tmp = tempDir('qcow2-aio');
afterAll(() => tmp.cleanup());

/** xorshift32: a fixed-seed stream, so that a failure replays. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

async function mixAtDepth(file: string, model: Uint8Array, seed: number, depth: number): Promise<void> {
  const size = model.length;
  const r = rng(seed);
  const img = Qcow2Image.open(file);
  const q = img.requests();
  const inFlight = new Set<Promise<void>>();
  const mismatches: string[] = [];
  for (let i = 0; i < 400; i++) {
    while (inFlight.size >= depth) await Promise.race(inFlight);
    // Lengths from a sector to three clusters; offsets sector-aligned, often cluster-aligned.
    const len = [512, 4096, 65536, 3 * 65536, 512 * (1 + r(300))][r(5)]!;
    const off = Math.min(r(2) ? r(size / 65536) * 65536 : r(size / 512) * 512, size - len);
    let p: Promise<void>;
    if (r(3) > 0) {
      const data = new Uint8Array(len);
      for (let k = 0; k < len; k += 512) data.fill((i * 7 + k / 512) & 0xff, k, k + 512);
      model.set(data, off); // the model in submission order
      p = q.write(off, data);
    } else {
      const expected = model.slice(off, off + len);
      const out = new Uint8Array(len);
      p = q.readInto(out, off).then(() => {
        const d = sameBytes(out, expected);
        if (d !== 'equal') mismatches.push(`read ${i} at ${off}+${len}: ${d}`);
      });
    }
    const tracked: Promise<void> = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  }
  await Promise.all(inFlight);
  await q.flush();
  await q.close();
  expect(mismatches).toEqual([]);
}

/** Transfers a HeldDevice holds: each completes when the test calls it. */
const held: Array<() => void> = [];
/** A memory device whose writes complete when the test says so (reads at once). */
class HeldDevice extends MemoryDevice {
  writevAsync(bufs: Uint8Array[], offset: number): Promise<void> {
    return new Promise((resolve) =>
      held.push(() => {
        let at = offset;
        for (const b of bufs) {
          this.write(b, at);
          at += b.length;
        }
        resolve();
      }),
    );
  }
  readvAsync(bufs: Uint8Array[], offset: number): Promise<void> {
    let at = offset;
    for (const b of bufs) {
      this.read(b, at);
      at += b.length;
    }
    return Promise.resolve();
  }
}

describe('requests in flight', () => {
  it('a fixed-seed mix of writes and reads at depth 32 equals the same requests in order', async () => {
    const file = tmp.file('mix.qcow2');
    const size = 8 << 20;
    qemuCreate(file, size);
    // Some clusters hold data already (in-place writes), one is a zero cluster (allocating path).
    qemuIo(file, ['write -P 0x11 0 192k', 'write -P 0x22 1M 64k', 'write -z 2M 64k']);
    const model = new Uint8Array(size);
    model.fill(0x11, 0, 192 << 10);
    model.fill(0x22, 1 << 20, (1 << 20) + (64 << 10));
    await mixAtDepth(file, model, 12, 32);
    const check = qemuCheck(file);
    expect(check.status, check.stderr).toBe(0);
    expect(sameBytes(qemuRaw(file), model)).toBe('equal');
  });

  it('sequential requests at depth 64 merge into transfers split over the thread pool, data and image intact', async () => {
    const file = tmp.file('seq.qcow2');
    const size = 16 << 20;
    qemuCreate(file, size);
    const img = Qcow2Image.open(file);
    const q = img.requests();
    const calls = { async: 0, sync: 0 };
    // Count the device's vectored calls: merged runs of 4 MiB go out in 512 KiB write parts.
    const dev = (img as unknown as { s: { data: Record<string, (...a: unknown[]) => unknown> } }).s.data;
    for (const [name, key] of [
      ['writevAsync', 'async'],
      ['readvAsync', 'async'],
      ['writevSync', 'sync'],
      ['readvSync', 'sync'],
    ] as const) {
      const f = dev[name]!.bind(dev);
      dev[name] = (...a: unknown[]) => {
        calls[key]++;
        return f(...a);
      };
    }
    const model = new Uint8Array(size);
    const all: Array<Promise<void>> = [];
    for (let i = 0; i < 256; i++) {
      const data = new Uint8Array(65536).fill((i * 13 + 1) & 0xff);
      model.set(data, i * 65536);
      all.push(q.write(i * 65536, data)); // 64 at a time: they start together, adjacent on the host
      if (all.length % 64 === 0) await Promise.all(all);
    }
    await Promise.all(all);
    expect(calls.async).toBe(32); // 4 batches of 4 MiB, each in eight 512 KiB write parts
    const reads: Array<Promise<void>> = [];
    const outs: Uint8Array[] = [];
    for (let i = 0; i < 256; i++) {
      const out = new Uint8Array(65536);
      outs.push(out);
      reads.push(q.readInto(out, i * 65536));
    }
    await Promise.all(reads);
    for (let i = 0; i < 256; i++)
      expect(sameBytes(outs[i]!, model.subarray(i * 65536, (i + 1) * 65536))).toBe('equal');
    // A short run (4 KiB requests, not adjacent on the host) is synchronous.
    await Promise.all([
      q.write(size - 4096, new Uint8Array(4096).fill(7)),
      q.readInto(new Uint8Array(4096), 0),
    ]);
    model.fill(7, size - 4096);
    expect(calls.sync).toBeGreaterThan(0);
    await q.close();
    const check = qemuCheck(file);
    expect(check.status, check.stderr).toBe(0);
    expect(sameBytes(qemuRaw(file), model)).toBe('equal');
  });

  it('over a backing file (the synchronous engine for copy-on-write) the result is the same', async () => {
    const base = tmp.file('base.qcow2');
    const top = tmp.file('top.qcow2');
    const size = 4 << 20;
    qemuCreate(base, size);
    qemuIo(base, ['write -P 0x33 0 4M']);
    qemuCreate(top, size, { backing: base });
    const model = new Uint8Array(size).fill(0x33);
    await mixAtDepth(top, model, 5, 16);
    const check = qemuCheck(top);
    expect(check.status, check.stderr).toBe(0);
    expect(sameBytes(qemuRaw(top), model)).toBe('equal');
  });

  it('an allocating write links its L2 entry only once its data is written', async () => {
    held.length = 0;
    const img = Qcow2Image.createOnDevice(new HeldDevice(), { size: 1 << 20 });
    const q = img.requests();
    // 256 KiB: long enough to go to the thread pool (shorter transfers are synchronous).
    const done = q.write(65536, new Uint8Array(4 * 65536).fill(9));
    await new Promise((r) => setImmediate(r)); // the transfers are issued, not completed
    expect(held.length).toBeGreaterThan(0);
    expect(img.blockStatus(65536, 4 * 65536).present).toBe(false);
    // A read of the same cluster waits for the write (submission order).
    const out = new Uint8Array(512);
    const read = q.readInto(out, 65536);
    held.splice(0).forEach((release) => release());
    await done;
    await read;
    const st = img.blockStatus(65536, 4 * 65536);
    expect(st.present && st.length).toBe(4 * 65536);
    expect(out.every((b) => b === 9)).toBe(true);
    await q.close();
  });

  it("a run split into parts completes each part's requests on their own; a request cut between parts waits for both", async () => {
    held.length = 0;
    const img = Qcow2Image.createOnDevice(new HeldDevice(), { size: 4 << 20 });
    const q = img.requests();
    // Three adjacent 320 KiB writes, 960 KiB on the host: two write parts of 480 KiB, the second
    // request cut between them.
    const K = 320 * 1024;
    const settled = [false, false, false];
    const writes = [0, 1, 2].map((k) =>
      q.write(k * K, new Uint8Array(K).fill(k + 1)).then(() => {
        settled[k] = true;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(held.length).toBe(2);
    held.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(settled).toEqual([true, false, false]);
    // The first request's clusters are linked; the cut one's are not yet.
    expect(img.blockStatus(0, K).present).toBe(true);
    expect(img.blockStatus(K, 65536).present).toBe(false);
    held.shift()!();
    await Promise.all(writes);
    expect(settled).toEqual([true, true, true]);
    const out = new Uint8Array(3 * K);
    await q.readInto(out, 0);
    for (let k = 0; k < 3; k++) expect(out.subarray(k * K, (k + 1) * K).every((b) => b === k + 1)).toBe(true);
    await q.close();
  });
});
