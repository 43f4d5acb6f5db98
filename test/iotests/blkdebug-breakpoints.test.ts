/**
 * blkdebug breakpoints (qemu-iotests 046, 271): `break EVENT TAG` suspends the request that raises
 * EVENT until `resume TAG`; later aio requests on its clusters wait for it, others complete. The
 * qemu-io scripts run with the real qemu-io and with ours (bin/qcow2.js under QEMU's name) on twin
 * images; the engine case checks that a suspended write really has not reached the file.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlkdebugDevice } from '../../src/io/blkdebug.ts';
import { MemoryDevice } from '../../src/io/device.ts';
import { Qcow2Image } from '../../src/image.ts';
import { must } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-breakpoints-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
fs.symlinkSync(BIN, path.join(tools, 'qemu-io'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Result {
  status: number;
  stdout: string;
}

/** qemu-io reading `script` on stdin (as the iotests pipe it), prompts and timings removed. */
function qemuIo(prog: string, image: string, script: string): Result {
  const r = spawnSync(prog, [image], { input: script, encoding: 'utf8', timeout: 60_000, cwd: dir });
  const stdout = r.stdout
    .replace(/qemu-io> /g, '')
    .replace(/^\d.*ops; .*$/gm, 'TIMING')
    .split(dir)
    .join('DIR');
  return { status: r.status ?? -1, stdout };
}

/** A fresh pair of twin images (made by qemu-img), the script run on each side. */
function bothSides(name: string, make: (img: string) => void, script: string, verify?: string) {
  const out: Record<'qemu' | 'ours', Result[]> = { qemu: [], ours: [] };
  for (const side of ['qemu', 'ours'] as const) {
    const img = path.join(dir, `${name}-${side}.qcow2`);
    make(img);
    const prog = side === 'qemu' ? 'qemu-io' : path.join(tools, 'qemu-io');
    out[side].push(qemuIo(prog, `blkdebug::${img}`, script));
    // The image afterwards, read by QEMU's own tools on both sides.
    if (verify) out[side].push(qemuIo('qemu-io', img, verify));
    out[side].push({ status: 0, stdout: must('qemu-img', ['check', img]).split(img).join('IMG') });
  }
  return out;
}

describe('blkdebug breakpoints in qemu-io (046, 271)', () => {
  it('046: requests on the suspended request cluster wait for it; data as QEMU writes it', () => {
    const make = (img: string): void => {
      must('qemu-img', ['create', '-f', 'qcow2', `${img}.base`, '128M']);
      must('qemu-io', ['-c', 'write -P 1 0 1M', `${img}.base`]);
      must('qemu-img', ['create', '-f', 'qcow2', '-b', `${img}.base`, '-F', 'qcow2', img, '6G']);
    };
    const script = [
      'break write_aio A',
      'aio_write -P 10 0x18000 0x2000',
      'wait_break A',
      'aio_write -P 11 0x12000 0x2000',
      'aio_write -P 12 0x1c000 0x2000',
      'resume A',
      'aio_flush',
      '',
    ].join('\n');
    const verify = [
      'read -P 1 0x10000 0x2000',
      'read -P 11 0x12000 0x2000',
      'read -P 1 0x14000 0x4000',
      'read -P 10 0x18000 0x2000',
      'read -P 1 0x1a000 0x2000',
      'read -P 12 0x1c000 0x2000',
      'read -P 1 0x1e000 0x2000',
      '',
    ].join('\n');
    const r = bothSides('046', make, script, verify);
    expect(r.ours[0]!.stdout).toContain(
      "blkdebug: Suspended request 'A'\nblkdebug: Resuming request 'A'\nwrote",
    );
    // The two waiting requests complete in either order in QEMU (046 filters their offsets out).
    const offsets = (t: string): string[] => [...t.matchAll(/offset (\d+)/g)].map((m) => m[1]!).sort();
    const masked = (t: string): string => t.replace(/offset \d+/g, 'offset X');
    expect(offsets(r.ours[0]!.stdout)).toEqual(offsets(r.qemu[0]!.stdout));
    expect(masked(r.ours[0]!.stdout)).toEqual(masked(r.qemu[0]!.stdout));
    expect(r.ours.slice(1)).toEqual(r.qemu.slice(1));
  });

  it('a request on other clusters completes while the suspended one waits', () => {
    const make = (img: string): void => void must('qemu-img', ['create', '-f', 'qcow2', img, '1M']);
    // A synchronous write elsewhere completes in QEMU too (an aio one would complete whenever
    // qemu-io polls: the order of its line is not fixed there).
    const script = (w: string): string =>
      ['break write_aio A', 'aio_write -P 10 0 4k', 'wait_break A', w, 'resume A', 'aio_flush', ''].join(
        '\n',
      );
    const r = bothSides(
      'other',
      make,
      script('write -P 11 512k 4k'),
      'read -P 10 0 4k\nread -P 11 512k 4k\n',
    );
    expect(r.ours).toEqual(r.qemu);
    const a = bothSides('other-aio', make, script('aio_write -P 11 512k 4k'), 'read -P 11 512k 4k\n');
    const out = a.ours[0]!.stdout;
    expect(out.indexOf('offset 524288')).toBeLessThan(out.indexOf('Resuming'));
    expect(a.ours.slice(1)).toEqual(a.qemu.slice(1));
  });

  it('the messages of unknown events and tags, remove_break resuming, no blkdebug node', () => {
    const make = (img: string): void => void must('qemu-img', ['create', '-f', 'qcow2', img, '1M']);
    const script = [
      'break no_such_event A',
      'resume B',
      'remove_break B',
      'break write_aio C',
      'aio_write -P 7 64k 4k',
      'wait_break C',
      'remove_break C',
      'aio_flush',
      '',
    ].join('\n');
    const r = bothSides('msgs', make, script, 'read -P 7 64k 4k\n');
    expect(r.ours).toEqual(r.qemu);
    const plain = path.join(dir, 'plain.qcow2');
    must('qemu-img', ['create', '-f', 'qcow2', plain, '1M']);
    const q = qemuIo('qemu-io', plain, 'break write_aio A\nresume A\n');
    expect(qemuIo(path.join(tools, 'qemu-io'), plain, 'break write_aio A\nresume A\n')).toEqual(q);
  });

  it('a suspended write has not reached the file until it is resumed', () => {
    const file = new MemoryDevice();
    Qcow2Image.createOnDevice(file, { size: 1 << 20 }).close();
    const dev = new BlkdebugDevice(file, []);
    const img = Qcow2Image.openDevice(dev);
    dev.breakpoints.print = () => undefined;
    expect(dev.breakpoint('write_aio', 'A')).toBe(true);
    img.write(0, new Uint8Array(4096).fill(0x5a));
    const s = dev.breakpoints.take();
    expect(s?.tag).toBe('A');
    const has5a = (): boolean => {
      const all = new Uint8Array(file.size());
      file.read(all, 0);
      return all.includes(0x5a);
    };
    // Held: the file lacks the data; reads through the node see it (the engine's view).
    expect(has5a()).toBe(false);
    expect(img.read(0, 4096).every((b) => b === 0x5a)).toBe(true);
    let done = false;
    s!.onDone = () => (done = true);
    expect(dev.breakpoints.resume('A')).toBe(true);
    expect(done).toBe(true);
    expect(has5a()).toBe(true);
    img.close();
  });
});
