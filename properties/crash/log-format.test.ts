/**
 * The dm-log-writes format: the engine's recording device and QEMU's blklogwrites driver write
 * logs the one parser reads, and replaying a whole log onto the starting image gives the image
 * the run left.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/io/device.ts';
import { RecordingDevice } from '../../src/io/recording-device.ts';
import { Qcow2Image } from '../../src/image.ts';
import { parseWriteLog, LogFormatError } from './log-format.ts';
import { Replayer } from './replay.ts';
import { crashStates, segmentsOf } from './states.ts';
import { blklogwritesOptions } from './record.ts';
import { QEMU_IMG, QEMU_IO, requireQemuTools, runTool } from '../qemu/qemu-img.ts';
import { mulberry32 } from './crashtest.ts';

function replayAll(start: Uint8Array, logBytes: Uint8Array): Uint8Array {
  const log = parseWriteLog(logBytes, { scanPastCount: true });
  const n = log.entries.length;
  return new Replayer(start, log).build({ crashAt: n, durableTo: n, landed: [], how: 'all' }).slice();
}

describe('recording device', () => {
  it('logs aligned and unaligned writes, flushes and shrinks; the log replays to the device', () => {
    const inner = new MemoryDevice(new Uint8Array(4096).fill(7));
    const log = new MemoryDevice();
    const dev = new RecordingDevice(inner, log);
    dev.write(new Uint8Array(512).fill(1), 1024);
    dev.flush();
    dev.write(new Uint8Array(10).fill(2), 2000); // unaligned: sector 3 (1536..2047) logged whole
    dev.write(new Uint8Array(600).fill(3), 5000); // past the end: the device grows
    dev.truncate(4096);
    dev.flush();
    const parsed = parseWriteLog(log.bytes());
    expect(parsed.superEntries).toBe(6);
    expect(parsed.entries.map((e) => e.kind)).toEqual([
      'write',
      'flush',
      'write',
      'write',
      'discard',
      'flush',
    ]);
    const second = parsed.entries[2];
    expect(second.kind === 'write' && [second.offset, second.data.length]).toEqual([1536, 512]);
    expect(replayAll(new Uint8Array(4096).fill(7), log.bytes()).subarray(0, 4096)).toEqual(inner.bytes());
  });

  it('continues a log (append) and counts entries past the super block before a flush', () => {
    const log = new MemoryDevice();
    const a = new RecordingDevice(new MemoryDevice(), log);
    a.write(new Uint8Array(512).fill(1), 0);
    a.flush();
    a.write(new Uint8Array(512).fill(2), 512);
    expect(parseWriteLog(log.bytes()).entries).toHaveLength(2);
    expect(parseWriteLog(log.bytes(), { scanPastCount: true }).entries).toHaveLength(3);
    a.close();
    const b = new RecordingDevice(new MemoryDevice(), log, { append: true });
    expect(b.entryCount).toBe(3);
    b.flush();
    expect(parseWriteLog(log.bytes()).entries).toHaveLength(4);
  });

  it('rejects what is not a write log', () => {
    expect(() => parseWriteLog(new Uint8Array(1024))).toThrow(LogFormatError);
  });

  it('records the engine: replaying the log gives the image it wrote', () => {
    const created = new MemoryDevice();
    Qcow2Image.createOnDevice(created, { size: 1 << 20, clusterSize: 4096 }).close();
    const start = created.bytes();
    const file = new MemoryDevice(start);
    const log = new MemoryDevice();
    const img = Qcow2Image.openDevice(new RecordingDevice(file, log));
    img.write(0, new Uint8Array(10000).fill(0x5a));
    img.flush();
    img.write(70000, new Uint8Array(3).fill(0x11));
    img.close();
    const replayed = replayAll(start, log.bytes());
    const final = file.bytes();
    // (the log is in sectors: the replayed file may end at the next sector boundary, in zeros)
    expect(replayed.length - final.length).toBeLessThan(512);
    expect(Buffer.compare(replayed.subarray(0, final.length), final)).toBe(0);
    expect(parseWriteLog(log.bytes()).entries.some((e) => e.kind === 'flush')).toBe(true);
  });
});

describe("QEMU's blklogwrites", () => {
  it('writes a log the parser reads and that replays to the image qemu-io left', async () => {
    await requireQemuTools();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-blklog-'));
    try {
      const img = path.join(dir, 'disk.qcow2');
      const log = path.join(dir, 'disk.log');
      const c = await runTool(QEMU_IMG, [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        'cluster_size=4096',
        img,
        '1M',
      ]);
      expect(c.exitCode).toBe(0);
      const start = new Uint8Array(fs.readFileSync(img));
      fs.writeFileSync(log, '');
      const r = await runTool(QEMU_IO, [
        '--image-opts',
        blklogwritesOptions(img, log),
        '-c',
        'write -P 0x11 0 8192',
        '-c',
        'write -z 65536 4096',
        '-c',
        'write -P 0x22 4000 300',
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      const bytes = new Uint8Array(fs.readFileSync(log));
      const parsed = parseWriteLog(bytes);
      expect(parsed.sectorSize).toBe(512);
      expect(parsed.entries.filter((e) => e.kind === 'flush').length).toBeGreaterThan(0);
      const final = new Uint8Array(fs.readFileSync(img));
      const replayed = replayAll(start, bytes);
      expect(Buffer.compare(replayed.subarray(0, final.length), final)).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('crash states', () => {
  it('has every flush prefix, each write prefix, tears and subsets, once each', () => {
    const log = new MemoryDevice();
    const dev = new RecordingDevice(new MemoryDevice(), log);
    dev.write(new Uint8Array(1024).fill(1), 0);
    dev.flush();
    for (let i = 0; i < 4; i++) dev.write(new Uint8Array(1024).fill(2 + i), 4096 * i);
    dev.flush();
    dev.write(new Uint8Array(512).fill(9), 0);
    const parsed = parseWriteLog(log.bytes(), { scanPastCount: true });
    expect(segmentsOf(parsed).map((s) => s.writes.length)).toEqual([1, 4, 1]);
    const states = [...crashStates(parsed, { random: mulberry32(1), subsetK: 3 })];
    const keys = states.map((s) => JSON.stringify([s.durableTo, s.landed, s.torn]));
    expect(new Set(keys).size).toBe(keys.length);
    expect(states.filter((s) => s.how === 'flush')).toHaveLength(3);
    // the second segment: a subset with its first write missing and a later one landed
    expect(states.some((s) => s.durableTo === 2 && s.landed.length > 0 && !s.landed.includes(2))).toBe(true);
    expect(states.some((s) => s.torn && s.torn.sectors.length === 1)).toBe(true);
    // every state's crash point is just after its last landed write
    for (const s of states.filter((x) => x.how !== 'flush'))
      expect(s.crashAt).toBe(s.landed.length > 0 ? s.landed[s.landed.length - 1] + 1 : s.durableTo);
    expect([...crashStates(parsed, { random: mulberry32(1), budget: 5 })]).toHaveLength(5);
  });
});
