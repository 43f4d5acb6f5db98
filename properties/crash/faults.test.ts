/**
 * Fault injection: a failing write (EIO, ENOSPC) at the Nth write of an operation or at a named
 * point, through the engine's faulty device and through QEMU's blkdebug: the operation reports the
 * error, the image stays consistent (leaks at worst) and acknowledged data stays readable.
 */
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/io/device.ts';
import { FaultyDevice } from '../../src/io/faulty-device.ts';
import { IoError } from '../../src/errors.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { runFaultCampaign } from './faults.ts';

describe('faulty device', () => {
  it('fails the armed Nth write with the errno, and with sticky every write and flush after', () => {
    const dev = new FaultyDevice(new MemoryDevice());
    dev.write(new Uint8Array(1), 0);
    dev.arm({ nth: 2, errno: 'ENOSPC', sticky: true });
    dev.write(new Uint8Array([1]), 0);
    expect(() => dev.write(new Uint8Array([2]), 1)).toThrow(IoError);
    expect(dev.failedAt).toEqual({ offset: 1, length: 1 });
    expect(() => dev.flush()).toThrow(/No space left on device/);
    expect(() => dev.write(new Uint8Array([3]), 2)).toThrow(IoError);
    const b = new Uint8Array(3);
    dev.read(b, 0);
    expect([...b]).toEqual([1, 0, 0]);
    dev.arm({ nth: 1, errno: 'EIO' });
    expect(() => dev.write(new Uint8Array([4]), 0)).toThrow(/Input\/output error/);
    dev.write(new Uint8Array([5]), 0);
    dev.flush();
  });
});

describe('fault injection', () => {
  it.each(['engine', 'qemu-io'] as const)(
    '%s: errors reported, images consistent, acknowledged data readable',
    async (impl) => {
      await requireQemuTools();
      const r = await runFaultCampaign({ impl, seed: 7, count: 16 });
      expect(r.failures, JSON.stringify(r.failures, null, 2)).toEqual([]);
      expect(r.injected).toBeGreaterThanOrEqual(6);
    },
    120_000,
  );
});
