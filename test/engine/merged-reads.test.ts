/**
 * The synchronous read path reads clusters whose host data lie one after another with one device
 * read, as QEMU reads a host-contiguous run in one request; a cluster elsewhere on the host, a hole
 * or a zero cluster ends the run. The data must be what was written, wherever the runs break.
 */
import { describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { MemoryDevice } from '../../src/io/device.ts';

const CS = 65536;

/** A memory device that logs its reads (offset, length). */
class LoggedReads extends MemoryDevice {
  reads: Array<[number, number]> = [];
  override read(buf: Uint8Array, offset: number): void {
    this.reads.push([offset, buf.length]);
    super.read(buf, offset);
  }
}

const filled = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);

describe('merged synchronous reads', () => {
  it('reads a host-contiguous run in one device read, and breaks runs at holes, zeros and jumps', () => {
    const dev = new LoggedReads();
    const img = Qcow2Image.createOnDevice(dev, { size: 16 * CS });
    // Guest clusters 0-3 take host clusters one after another; 6 comes next on the host, then 5:
    // guest 5 and 6 are host-contiguous only in the order 6, 5 (not a run in guest order).
    img.write(0, filled(4 * CS, 1));
    img.write(6 * CS, filled(CS, 6));
    img.write(5 * CS, filled(CS, 5));
    img.writeZeroes(2 * CS, CS); // a zero cluster inside the first run
    const out = new Uint8Array(8 * CS).fill(0xee);
    dev.reads = [];
    img.readInto(out, 0);

    const expected = new Uint8Array(8 * CS);
    expected.fill(1, 0, 2 * CS);
    expected.fill(1, 3 * CS, 4 * CS);
    expected.fill(5, 5 * CS, 6 * CS);
    expected.fill(6, 6 * CS, 7 * CS);
    expect(Buffer.from(out).equals(Buffer.from(expected))).toBe(true);

    // Data reads only (the tables are cached after the writes): clusters 0-1 as one read, 3 alone
    // (2 reads as zeros), 5 and 6 one each (not contiguous in guest order), 4 and 7 not at all.
    const data = dev.reads.filter(([, len]) => len >= CS);
    expect(data.map(([, len]) => len / CS)).toEqual([2, 1, 1, 1]);
    img.close();
  });

  it('a read inside a run starts and ends mid-cluster', () => {
    const dev = new LoggedReads();
    const img = Qcow2Image.createOnDevice(dev, { size: 4 * CS });
    const pattern = new Uint8Array(3 * CS);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
    img.write(0, pattern);
    dev.reads = [];
    const out = new Uint8Array(2 * CS);
    img.readInto(out, CS / 2);
    expect(Buffer.from(out).equals(Buffer.from(pattern.subarray(CS / 2, CS / 2 + 2 * CS)))).toBe(true);
    expect(dev.reads.filter(([, len]) => len >= CS / 2)).toHaveLength(1);
    img.close();
  });
});
