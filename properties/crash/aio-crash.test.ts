/**
 * Crash states inside an aio batch (steps.ts `aio-batch`: requests in flight together, then
 * aio_flush). The oracle accepts, for each byte a request of the interrupted batch covers, its value
 * before the batch or the pattern of any covering request (each request landed or not, whole or
 * torn, in any order) — and nothing else; once the batch completed (its aio_flush), only the
 * serial order the run found. Recorded batches of both implementations pass every crash state.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { plainLayout } from '../layout.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { CheckServer } from './check-server.ts';
import { judgeSequence, quirksFor, rerecord } from './crashtest.ts';
import type { WriteLog } from './log-format.ts';
import { CrashJudge, GuestTimeline } from './oracle.ts';
import { recordingImplementation, type Recording } from './record.ts';

const LAYOUT = plainLayout();

// Two overlapping requests (4096..6143 covered by both) and one on its own.
const BATCH =
  'aio_write -P 0x11 0 6144; aio_write -P 0x22 4096 4096; aio_write -P 0x33 131072 4096; aio_flush';
const STEPS = ['write -P 0x01 0 65536', 'flush', BATCH, 'write -P 0x44 131072 512'];
const DISJOINT = [
  'write -P 0x01 0 65536',
  'flush',
  'aio_write -P 0x11 0 4096; aio_write -P 0x22 4096 4096; aio_write -P 0x33 131072 4096; aio_flush',
  'write -P 0x44 131072 512',
];

function judgeOf(steps: readonly string[]): CrashJudge {
  const timeline = new GuestTimeline(LAYOUT, steps, quirksFor({ involvesQemu: false } as never));
  return new CrashJudge({
    timeline,
    recording: {} as Recording,
    log: { sectorSize: 512, superEntries: 0, entries: [] } as WriteLog,
    servers: [],
    scratchDir: os.tmpdir(),
  });
}

/** The disk after step 1 (flushed) with `fill` applied: [offset, length, pattern]. */
function diskWith(...fill: [number, number, number][]): Uint8Array {
  const d = new Uint8Array(LAYOUT.size);
  d.fill(0x01, 0, 65536);
  for (const [o, l, p] of fill) d.fill(p, o, o + l);
  return d;
}

describe('aio batches in the crash oracle', () => {
  const judge = judgeOf(STEPS);

  it('accepts any subset of the in-flight requests, torn, in any order', () => {
    // started = 2 (the batch), flushed = 1
    expect(judge.compare(diskWith(), 2, 1)).toBeUndefined();
    expect(judge.compare(diskWith([4096, 4096, 0x22]), 2, 1)).toBeUndefined(); // only the second
    expect(judge.compare(diskWith([4096, 4096, 0x22], [0, 6144, 0x11]), 2, 1)).toBeUndefined(); // 2 then 1
    expect(judge.compare(diskWith([0, 512, 0x11], [131072 + 512, 512, 0x33]), 2, 1)).toBeUndefined(); // torn
  });

  it('rejects a value no request wrote there', () => {
    const f = judge.compare(diskWith([8192, 512, 0x11]), 2, 1); // 0x11 past the first request's end
    expect(f?.category).toBe('crash-never-written');
    expect(f?.byte?.offset).toBe(8192);
    expect(judge.compare(diskWith([0, 512, 0x33]), 2, 1)?.category).toBe('crash-never-written');
  });

  it('after aio_flush, only the serial order the run found', () => {
    const whole = diskWith([0, 6144, 0x11], [4096, 4096, 0x22], [131072, 4096, 0x33]);
    expect(judge.compare(whole, 3, 2)).toBeUndefined();
    // the batch completed and flushed: the second request missing is flushed data lost
    const lost = diskWith([0, 4096, 0x11], [131072, 4096, 0x33]);
    expect(judge.compare(lost, 3, 2)?.category).toBe('crash-lost-flushed-data');
    // the run found request 1 landing last
    const noted = judgeOf([...STEPS.slice(0, 2), `${BATCH}  # landed: 1 0 2`]);
    const oneLast = diskWith([4096, 4096, 0x22], [0, 6144, 0x11], [131072, 4096, 0x33]);
    expect(noted.compare(oneLast, 2, 2)).toBeUndefined();
    expect(judge.compare(oneLast, 2, 2)?.category).toBe('crash-never-written');
  });

  it.each(['engine', 'qemu-io'] as const)(
    '%s: every crash state of a recorded batch is consistent',
    async (implName) => {
      await requireQemuTools();
      const impl = recordingImplementation(implName);
      // (qemu-io: requests that do not overlap — overlapping ones in flight together can leave a
      // log that does not replay, counted as not judged: crashtest.ts, UnreplayableRun)
      const run = await rerecord(impl, LAYOUT, implName === 'engine' ? STEPS : DISJOINT);
      const server = new CheckServer();
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-aio-crash-'));
      try {
        const { judge: j, failures } = await judgeSequence(run, await impl.capabilities(), server, {
          budget: 400,
          seed: 3,
          all: true,
          scratchDir: scratch,
        });
        expect(failures.map((f) => f.failure)).toEqual([]);
        expect(j.stats.states).toBeGreaterThan(10);
      } finally {
        await server.stop();
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
