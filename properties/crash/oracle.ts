/**
 * The crash-state oracle. For a state whose crash point is just after log entry E:
 *   - the steps that had started by E (their first entry before E, or all of them before E) and
 *     the last flush-like step (`flush`, `close`) complete by E are found from the recording;
 *   - `qemu-img check` must find no corruption (leaks are allowed); with the dirty bit set (lazy
 *     refcounts), `qemu-img check -r all` must end clean;
 *   - the image must open and read (the repository's engine reads it in process, read-only; when
 *     it cannot or sees wrong data, `qemu-img convert` reads it too, and the failure is reported
 *     only if QEMU sees the same);
 *   - each byte must hold its value as of that flush, or a value a started step wrote since
 *     ('crash-lost-flushed-data' when it holds an older value, 'crash-never-written' when a value
 *     never written there); the virtual size must be one the disk had in that window. A crash
 *     inside an aio batch (its requests in flight together, then aio_flush) may leave each byte a
 *     request covers with the pattern of any covering request: each request landed or not, whole
 *     or torn, in any order. A completed batch counts as a flush, its result the serial order the
 *     run found (`# landed:`).
 * Engine-made and QEMU-made states are judged alike.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Image } from '../../src/image.ts';
import { MemoryDevice } from '../../src/io/device.ts';
import { DiskModel, type KnownQuirks } from '../model/disk-model.ts';
import type { ReferenceDisk } from '../model/reference-disk.ts';
import { parseStep, type AioWrite } from '../steps.ts';
import { applyToModel, expectedRefusal } from '../runner/execute-step.ts';
import type { ImageLayout } from '../layout.ts';
import type { WriteLog } from './log-format.ts';
import type { CrashState } from './replay.ts';
import type { CheckServer, CheckOutcome } from './check-server.ts';
import type { Recording } from './record.ts';
import { dataClusters } from './regions.ts';
import { QEMU_IMG } from '../qemu/qemu-img.ts';
import { runTool } from '../qemu/qemu-img.ts';

export type CrashCategory =
  | 'crash-corruption'
  | 'crash-copied-clear'
  | 'crash-check-error'
  | 'crash-repair-incomplete'
  | 'crash-unreadable'
  | 'crash-virtual-size'
  | 'crash-lost-flushed-data'
  | 'crash-never-written';

export interface StateFailure {
  category: CrashCategory;
  /** What was expected and what was seen, for the case file. */
  expected: string;
  observed: string;
  /** The step in progress at the crash (index), -1 before the first. */
  stepIndex: number;
  check?: unknown;
  /** For data failures: the first wrong byte, what it may hold and what it holds. */
  byte?: { offset: number; acceptable: number[]; seen: number };
}

/** The serial order a run found for an aio batch (`# landed: 2 0 1`, steps.ts), if noted. */
function landedOrder(line: string, requests: number): number[] | undefined {
  const m = /#\s*landed:\s*([\d\s]+)$/.exec(line);
  if (!m) return undefined;
  const order = m[1].trim().split(/\s+/).map(Number);
  return order.length === requests ? order : undefined;
}

/** The guest's disk after each step, and which steps flush. */
export class GuestTimeline {
  /** disks[0]: before the first step; disks[j + 1]: after step j. */
  readonly disks: ReferenceDisk[] = [];
  readonly flushLike: boolean[] = [];
  /** The requests of each aio batch step (undefined for other steps). */
  readonly aio: (readonly AioWrite[] | undefined)[] = [];

  constructor(layout: ImageLayout, steps: readonly string[], quirks: KnownQuirks) {
    const model = new DiskModel(layout, quirks);
    this.disks.push(model.disk.clone());
    for (const line of steps) {
      const step = parseStep(line);
      // An aio batch's disk after the step is the serial order the run found on the image.
      if (step.kind === 'aio-batch') step.landed = landedOrder(line, step.writes.length);
      if (!expectedRefusal(model, step)) applyToModel(model, step);
      this.disks.push(model.disk.clone());
      // Completed flushes make everything written before them durable; so does a close, and an
      // aio batch, which ends with aio_flush.
      this.flushLike.push(step.kind === 'flush' || step.kind === 'reopen' || step.kind === 'aio-batch');
      this.aio.push(step.kind === 'aio-batch' ? step.writes : undefined);
    }
  }

  /**
   * The requests of an aio batch a crash interrupted (step `started`, begun after the last
   * completed flush `flushed`): each may have landed or not, whole or torn, in any order, so each
   * byte they cover may hold its value before the batch (a candidate disk already) or the pattern
   * of any request covering it.
   */
  inFlight(started: number, flushed: number): readonly AioWrite[] {
    return started > flushed && started >= 0 ? (this.aio[started] ?? []) : [];
  }
}

/**
 * Which steps a crash after `issued` log entries had started, and the last complete flush; and the
 * step a failure there is reported at (`blamed`): the last started one that had logged a write by
 * then. Steps that logged nothing (reads, cached metadata updates) count as started when all before
 * them completed, but a crash at that boundary interrupted none of them: it follows the write of an
 * earlier step (a read must not be the command of a failure it could not cause).
 */
export function crashWindow(
  rec: Pick<Recording, 'setupEntries' | 'stepEnds'>,
  timeline: GuestTimeline,
  issued: number,
): { started: number; flushed: number; blamed: number } {
  let started = -1;
  let flushed = -1;
  let blamed = -1;
  for (let j = 0; j < rec.stepEnds.length; j++) {
    const begin = j === 0 ? rec.setupEntries : rec.stepEnds[j - 1];
    const end = rec.stepEnds[j];
    if (begin < issued || end <= issued) started = j;
    if (begin < issued && end > begin) blamed = j;
    if (end <= issued && timeline.flushLike[j]) flushed = j;
  }
  return { started, flushed, blamed: blamed >= 0 ? blamed : started };
}

const INCOMPAT_DIRTY = 1n;

function incompatibleFeatures(bytes: Uint8Array): bigint {
  if (bytes.length < 80) return 0n;
  const v = new DataView(bytes.buffer, bytes.byteOffset, 80);
  // (header version 3: incompatible_features is the u64 at byte 72; v2 has no such field)
  return v.getUint32(4) >= 3 ? v.getBigUint64(72) : 0n;
}

const BLOCK = 4096;

/**
 * Whether every corruption `qemu-img check` counted is a QCOW_OFLAG_COPIED flag left clear on a
 * cluster whose refcount is 1 ("ERROR OFLAG_COPIED … refcount=1"): the one direction of a COPIED
 * mismatch that costs only an unneeded copy-on-write at the next write (the other, COPIED set on
 * a shared cluster, lets a write in place change a snapshot). It is still a failure, in a
 * category of its own, so that a label for one direction can never hide the other.
 */
export function onlyCopiedClear(outcome: Pick<CheckOutcome, 'output' | 'json'>): boolean {
  const errors = outcome.output.split('\n').filter((l) => l.startsWith('ERROR'));
  const corruptions = outcome.json?.corruptions;
  return (
    errors.length > 0 &&
    errors.length === corruptions &&
    errors.every((l) => /^ERROR OFLAG_COPIED (L2|data) cluster: .* refcount=1$/.test(l.trim()))
  );
}

/**
 * The key under which a `qemu-img check` verdict is reused: a hash of the image with the contents
 * of its guest data clusters left out. qemu-img check reads the header, the L1, L2 and refcount
 * tables and blocks, the snapshot table (none here) and the file's length — never the data a
 * standard L2 entry points at — so two images equal outside those clusters get the same verdict.
 * Images with snapshots or bitmaps are hashed whole.
 */
export function checkKey(bytes: Uint8Array): string {
  const read = (o: number, l: number): Uint8Array => {
    const out = new Uint8Array(l);
    if (o < bytes.length) out.set(bytes.subarray(o, Math.min(bytes.length, o + l)));
    return out;
  };
  let data: Set<number> | undefined;
  let cs = 0;
  try {
    data = dataClusters(read);
    cs = 2 ** new DataView(bytes.buffer, bytes.byteOffset).getUint32(20);
  } catch {
    data = undefined;
  }
  const h = crypto.createHash('sha1');
  h.update(`${bytes.length}:`);
  if (!data || data.size === 0) return h.update(bytes).digest('hex');
  let from = 0;
  for (const c of [...data].sort((a, b) => a - b)) {
    const at = c * cs;
    if (at >= bytes.length) break;
    if (at > from) h.update(bytes.subarray(from, at));
    h.update(`[data ${c}]`);
    from = Math.max(from, at + cs);
  }
  if (from < bytes.length) h.update(bytes.subarray(from));
  return h.digest('hex');
}

export interface JudgeStats {
  states: number;
  /** Distinct images (by content) given to qemu-img check. */
  qemuChecks: number;
  /** States whose image had been qemu-img-checked already (identical bytes: identical verdict). */
  checkCacheHits: number;
  engineReads: number;
  qemuReads: number;
}

export class CrashJudge {
  private readonly timeline: GuestTimeline;
  private readonly rec: Recording;
  private readonly log: WriteLog;
  private readonly servers: CheckServer[];
  private nextFile = 0;
  private readonly file: string;
  /** qemu-img check verdicts by image content (a promise while the check runs). */
  private readonly checked = new Map<string, Promise<CheckOutcome & { repaired: boolean }>>();
  private readonly materialized = new Map<number, Uint8Array>();
  readonly stats: JudgeStats = { states: 0, qemuChecks: 0, checkCacheHits: 0, engineReads: 0, qemuReads: 0 };

  constructor(opts: {
    timeline: GuestTimeline;
    recording: Recording;
    log: WriteLog;
    /** Checks run on these workers side by side. */
    servers: CheckServer[];
    scratchDir: string;
  }) {
    this.timeline = opts.timeline;
    this.rec = opts.recording;
    this.log = opts.log;
    this.servers = opts.servers;
    this.file = path.join(opts.scratchDir, 'crash-state.qcow2');
  }

  /** The log entries issued before the state's crash point. */
  issuedEntries(state: CrashState): number {
    return state.crashAt === 0 ? 0 : this.log.entries[state.crashAt - 1].index + 1;
  }

  private disk(j: number): Uint8Array {
    let d = this.materialized.get(j);
    if (!d) {
      const ref = this.timeline.disks[j + 1];
      d = ref.read(0, ref.size);
      this.materialized.set(j, d);
    }
    return d;
  }

  /**
   * Judge a state: the data oracle now (`bytes` may be reused once this returns), the
   * `qemu-img check` verdict when the returned promise settles (checks run side by side).
   */
  async judge(state: CrashState, bytes: Uint8Array): Promise<() => Promise<StateFailure | undefined>> {
    this.stats.states += 1;
    const { started, flushed, blamed } = crashWindow(this.rec, this.timeline, this.issuedEntries(state));
    const check = this.startCheck(bytes);
    const dataFailure = await this.judgeData(bytes, started, flushed);
    return async () => {
      const f = (await this.verdict(await check, started)) ?? dataFailure;
      return f && f.stepIndex === started ? { ...f, stepIndex: blamed } : f;
    };
  }

  private startCheck(bytes: Uint8Array): Promise<CheckOutcome & { repaired: boolean }> {
    const hash = checkKey(bytes);
    const cached = this.checked.get(hash);
    if (cached) {
      this.stats.checkCacheHits += 1;
      return cached;
    }
    const repaired = (incompatibleFeatures(bytes) & INCOMPAT_DIRTY) !== 0n;
    const n = this.nextFile++;
    const file = `${this.file}.${n}`;
    fs.writeFileSync(file, bytes);
    this.stats.qemuChecks += 1;
    const server = this.servers[n % this.servers.length];
    const pending = server.check(file, repaired).then(
      (o) => {
        fs.rmSync(file, { force: true });
        return { ...o, repaired };
      },
      (e: unknown) => {
        fs.rmSync(file, { force: true });
        throw e;
      },
    );
    this.checked.set(hash, pending);
    return pending;
  }

  private verdict(
    outcome: CheckOutcome & { repaired: boolean },
    stepIndex: number,
  ): StateFailure | undefined {
    const out = outcome.output.trim().split('\n').slice(0, 12).join(' | ');
    if (outcome.repaired) {
      if (outcome.exitCode === 0) return undefined;
      return {
        category: outcome.exitCode === 2 ? 'crash-corruption' : 'crash-repair-incomplete',
        expected: 'dirty image: qemu-img check -r all ends clean (exit 0)',
        observed: `exit ${outcome.exitCode}: ${out}`,
        stepIndex,
        check: outcome.json,
      };
    }
    if (outcome.exitCode === 0 || outcome.exitCode === 3) return undefined;
    return {
      category:
        outcome.exitCode !== 2
          ? 'crash-check-error'
          : onlyCopiedClear(outcome)
            ? 'crash-copied-clear'
            : 'crash-corruption',
      expected: 'qemu-img check: no corruption (exit 0, or 3 for leaks)',
      observed: `exit ${outcome.exitCode}: ${out}`,
      stepIndex,
      check: outcome.json,
    };
  }

  /** The engine reads the state; a failure is confirmed with QEMU's reader before it counts. */
  private async judgeData(
    bytes: Uint8Array,
    started: number,
    flushed: number,
  ): Promise<StateFailure | undefined> {
    this.stats.engineReads += 1;
    let disk: Uint8Array;
    try {
      const img = Qcow2Image.openDevice(new MemoryDevice(bytes, { readOnly: true }), { readOnly: true });
      try {
        disk = img.read(0, img.size);
      } finally {
        img.close();
      }
    } catch (e) {
      const engineSaid = e instanceof Error ? e.message : String(e);
      const viaQemu = await this.readWithQemu(bytes);
      if (typeof viaQemu === 'string')
        return {
          category: 'crash-unreadable',
          expected: 'the image opens and reads',
          observed: `engine: ${engineSaid}; qemu-img convert: ${viaQemu}`,
          stepIndex: started,
        };
      disk = viaQemu;
    }
    const failure = this.compare(disk, started, flushed);
    if (!failure) return undefined;
    // Confirm with QEMU's reader: a failure only QEMU or only the engine sees is a reader's bug.
    const viaQemu = await this.readWithQemu(bytes);
    if (typeof viaQemu === 'string')
      return { ...failure, observed: `${failure.observed}; qemu-img convert fails: ${viaQemu}` };
    const again = this.compare(viaQemu, started, flushed);
    if (!again)
      return {
        category: 'crash-unreadable',
        expected: 'the engine and qemu-img read the same disk',
        observed: `the engine reads: ${failure.observed}; qemu-img convert reads what is expected`,
        stepIndex: started,
      };
    return again;
  }

  private async readWithQemu(bytes: Uint8Array): Promise<Uint8Array | string> {
    this.stats.qemuReads += 1;
    const img = `${this.file}.read.qcow2`;
    const raw = `${this.file}.read.raw`;
    fs.writeFileSync(img, bytes);
    try {
      const r = await runTool(QEMU_IMG, ['convert', '-f', 'qcow2', '-O', 'raw', img, raw]);
      if (r.exitCode !== 0) return `exit ${r.exitCode}: ${r.stderr.trim().slice(0, 400)}`;
      return new Uint8Array(fs.readFileSync(raw));
    } finally {
      fs.rmSync(img, { force: true });
      fs.rmSync(raw, { force: true });
    }
  }

  /** The disk against the values acceptable at the crash: the flushed disk or a later started step's. */
  compare(disk: Uint8Array, started: number, flushed: number): StateFailure | undefined {
    const candidates: Uint8Array[] = [];
    for (let j = flushed; j <= started; j++) candidates.push(this.disk(j));
    const requests = this.timeline.inFlight(started, flushed);
    const written = (x: number, v: number): boolean =>
      requests.some((w) => w.pattern === v && x >= w.offset && x < w.offset + w.length);
    const sizes = new Set(candidates.map((c) => c.length));
    if (!sizes.has(disk.length))
      return {
        category: 'crash-virtual-size',
        expected: `a virtual size of ${[...sizes].join(' or ')}`,
        observed: `${disk.length}`,
        stepIndex: started,
      };
    const at = (d: Uint8Array, x: number): number => (x < d.length ? d[x] : 0);
    for (let block = 0; block < disk.length; block += BLOCK) {
      const end = Math.min(disk.length, block + BLOCK);
      const seen = disk.subarray(block, end);
      if (candidates.some((c) => end <= c.length && Buffer.compare(seen, c.subarray(block, end)) === 0))
        continue;
      for (let x = block; x < end; x++) {
        const v = disk[x];
        if (candidates.some((c) => at(c, x) === v) || written(x, v)) continue;
        let older = false;
        for (let j = -1; j < flushed && !older; j++) older = at(this.disk(j), x) === v;
        let run = x;
        while (run < end && !candidates.some((c) => at(c, run) === disk[run]) && !written(run, disk[run]))
          run++;
        const hex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;
        return {
          category: older ? 'crash-lost-flushed-data' : 'crash-never-written',
          expected: `byte ${x}: ${[
            ...new Set([
              ...candidates.map((c) => hex(at(c, x))),
              ...requests.filter((w) => x >= w.offset && x < w.offset + w.length).map((w) => hex(w.pattern)),
            ]),
          ].join(' or ')} (flushed at step ${flushed}, steps up to ${started} started)`,
          observed: `${hex(v)} over ${run - x} bytes from ${x}${older ? ' (an older value, overwritten and flushed)' : ' (never written there)'}`,
          stepIndex: started,
          byte: { offset: x, acceptable: [...new Set(candidates.map((c) => at(c, x)))], seen: v },
        };
      }
    }
    return undefined;
  }
}
