/**
 * Fault injection: a write below the image fails (EIO or ENOSPC) at the Nth write of an operation
 * or at a named point — the first write to a refcount block, an L2 table, the L1 table or the
 * header — of an operation (a write and the flush after it: metadata caches write back at flushes),
 * and afterwards:
 *   - the operation reports an error (the write or the flush fails);
 *   - the image, closed (a close that fails is allowed), stays consistent: `qemu-img check` finds
 *     no corruption (leaks at worst; with the dirty bit set, `check -r all` ends clean);
 *   - every byte acknowledged before the operation reads as it was, and the operation's own range
 *     reads as before or as written.
 * For the engine, the device is src/io/faulty-device.ts, the Nth write of a point found by a dry
 * run whose writes are named from the image's metadata (properties/crash/regions.ts). For QEMU, the
 * `blkdebug` driver (`file.driver=blkdebug,file.config=…`) fails the point's event: refblock_update,
 * l2_update, l1_update, or the first pwritev of the operation.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Qcow2Image } from '../../src/image.ts';
import { MemoryDevice, type BlockDevice } from '../../src/io/device.ts';
import { FaultyDevice, type FaultErrno } from '../../src/io/faulty-device.ts';
import { ReferenceDisk } from '../model/reference-disk.ts';
import { engineCreateOptions, qemuCreateOptions, type ImageLayout } from '../layout.ts';
import { QEMU_IMG, QEMU_IO, runTool } from '../qemu/qemu-img.ts';
import { classifyWrite, metadataMap, type MetadataMap, type Region } from './regions.ts';
import { mulberry32 } from './crashtest.ts';
import type { CrashImplName } from './record.ts';

export type FaultPoint = 'nth-write' | 'refcount-block' | 'l2-table' | 'l1-table' | 'header';

export interface DataWrite {
  offset: number;
  length: number;
  pattern: number;
}

export interface FaultScenario {
  layout: ImageLayout;
  /** Acknowledged and flushed before the fault. */
  before: DataWrite[];
  /** The operation that meets the fault. */
  target: DataWrite;
  point: FaultPoint;
  /** For 'nth-write': which write of the operation fails (1-based). */
  nth: number;
  errno: FaultErrno;
  sticky: boolean;
}

export type FaultOutcome =
  | { kind: 'passed' }
  | { kind: 'not-reached'; why: string }
  | { kind: 'failed'; category: string; detail: string };

const ERRNO_NUMBER: Record<FaultErrno, number> = { EIO: 5, ENOSPC: 28 };

/** blkdebug's event for a point (qemu 7.2's event names). */
export const BLKDEBUG_EVENT: Record<FaultPoint, string | undefined> = {
  'nth-write': 'pwritev',
  'refcount-block': 'refblock_update',
  'l2-table': 'l2_update',
  'l1-table': 'l1_update',
  header: undefined,
};

export function randomScenario(seed: number): FaultScenario {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const clusterBits = pick([9, 12, 16]);
  const compat = pick(['0.10', '1.1'] as const);
  const layout: ImageLayout = {
    compat,
    clusterBits,
    refcountBits: compat === '1.1' ? pick([1, 16, 64]) : 16,
    extendedL2: false,
    compressionType: 'zlib',
    lazyRefcounts: compat === '1.1' && rnd() < 0.3,
    size: 4 << 20,
  };
  const write = (): DataWrite => {
    const offset = Math.floor(rnd() * (layout.size - 70000));
    return { offset, length: 1 + Math.floor(rnd() * 66000), pattern: 1 + Math.floor(rnd() * 255) };
  };
  const before = Array.from({ length: 1 + Math.floor(rnd() * 3) }, write);
  return {
    layout,
    before,
    target: write(),
    point: pick(['nth-write', 'refcount-block', 'l2-table', 'l1-table', 'header'] as const),
    nth: 1 + Math.floor(rnd() * 4),
    errno: pick(['EIO', 'ENOSPC'] as const),
    sticky: rnd() < 0.5,
  };
}

export function describeScenario(s: FaultScenario): string {
  const w = (d: DataWrite): string => `write -P 0x${d.pattern.toString(16)} ${d.offset} ${d.length}`;
  return `${qemuCreateOptions(s.layout)}; ${s.before.map(w).join('; ')}; flush; ${w(s.target)} with ${s.errno}${s.sticky ? ' (sticky)' : ''} at ${s.point === 'nth-write' ? `write ${s.nth}` : `the first ${s.point} write`}`;
}

/** The model: the disk after `before`, and after the target too. */
function models(s: FaultScenario): { acked: Uint8Array; written: Uint8Array } {
  const disk = new ReferenceDisk(s.layout.size);
  for (const w of s.before) disk.fill(w.offset, w.length, w.pattern);
  const acked = disk.read(0, disk.size);
  disk.fill(s.target.offset, s.target.length, s.target.pattern);
  return { acked, written: disk.read(0, disk.size) };
}

function compareAfterFault(seen: Uint8Array, s: FaultScenario): string | undefined {
  const { acked, written } = models(s);
  if (seen.length !== acked.length) return `virtual size ${seen.length}, not ${acked.length}`;
  for (let i = 0; i < seen.length; i++) {
    if (seen[i] === acked[i] || seen[i] === written[i]) continue;
    return `byte ${i} reads 0x${seen[i].toString(16)}, acknowledged 0x${acked[i].toString(16)}${written[i] !== acked[i] ? ` (or 0x${written[i].toString(16)} being written)` : ''}`;
  }
  return undefined;
}

/** Records the region each write lands in, named from the metadata before it (and after the op). */
class NamingDevice extends MemoryDevice {
  writes: { offset: number; before: MetadataMap | undefined }[] = [];
  naming = false;
  override write(buf: Uint8Array, offset: number): void {
    if (this.naming) this.writes.push({ offset, before: metadataMap((o, l) => this.slice(o, l)) });
    super.write(buf, offset);
  }
  slice(offset: number, length: number): Uint8Array {
    const b = new Uint8Array(length);
    this.read(b, offset);
    return b;
  }
}

function runBefore(dev: BlockDevice, s: FaultScenario): ReturnType<typeof Qcow2Image.openDevice> {
  const img = Qcow2Image.openDevice(dev);
  for (const w of s.before) img.write(w.offset, new Uint8Array(w.length).fill(w.pattern));
  img.flush();
  return img;
}

async function judgeImage(bytes: Uint8Array, s: FaultScenario, dir: string): Promise<FaultOutcome> {
  const file = path.join(dir, 'after-fault.qcow2');
  fs.writeFileSync(file, bytes);
  const dirty =
    bytes.length >= 80 && new DataView(bytes.buffer, bytes.byteOffset).getUint32(4) >= 3
      ? (new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(72) & 1n) !== 0n
      : false;
  const check = await runTool(QEMU_IMG, ['check', ...(dirty ? ['-r', 'all'] : []), '-f', 'qcow2', file]);
  const ok = dirty ? check.exitCode === 0 : check.exitCode === 0 || check.exitCode === 3;
  if (!ok)
    return {
      kind: 'failed',
      category: check.exitCode === 2 ? 'fault-corruption' : 'fault-check-error',
      detail: `qemu-img check${dirty ? ' -r all' : ''} exit ${check.exitCode}: ${(check.stdout + check.stderr).trim().split('\n').slice(0, 6).join(' | ')}`,
    };
  const raw = path.join(dir, 'after-fault.raw');
  const conv = await runTool(QEMU_IMG, ['convert', '-f', 'qcow2', '-O', 'raw', file, raw]);
  if (conv.exitCode !== 0)
    return {
      kind: 'failed',
      category: 'fault-unreadable',
      detail: `qemu-img convert: ${conv.stderr.trim()}`,
    };
  const bad = compareAfterFault(new Uint8Array(fs.readFileSync(raw)), s);
  if (bad) return { kind: 'failed', category: 'fault-lost-data', detail: bad };
  return { kind: 'passed' };
}

export async function runEngineFault(s: FaultScenario, dir: string): Promise<FaultOutcome> {
  const created = new MemoryDevice();
  Qcow2Image.createOnDevice(created, engineCreateOptions(s.layout)).close();
  const start = created.bytes();
  // Dry run: which write of the operation is the point's first.
  const dry = new NamingDevice(start);
  const dryImg = runBefore(dry, s);
  dry.naming = true;
  dryImg.write(s.target.offset, new Uint8Array(s.target.length).fill(s.target.pattern));
  dryImg.flush();
  dry.naming = false;
  const after = metadataMap((o, l) => dry.slice(o, l));
  dryImg.close();
  const regions: Region[] = dry.writes.map((w) => classifyWrite(w.before, after, w.offset));
  const nth = s.point === 'nth-write' ? s.nth : regions.indexOf(s.point as Region) + 1;
  if (nth < 1 || nth > regions.length)
    return {
      kind: 'not-reached',
      why: `the operation makes ${regions.length} writes (${regions.join(', ')})`,
    };
  // The run with the fault.
  const disk = new MemoryDevice(start);
  const faulty = new FaultyDevice(disk);
  const img = runBefore(faulty, s);
  faulty.arm({ nth, errno: s.errno, sticky: s.sticky });
  let reported = false;
  try {
    img.write(s.target.offset, new Uint8Array(s.target.length).fill(s.target.pattern));
    img.flush();
  } catch {
    reported = true;
  }
  try {
    img.close();
  } catch {
    // a close after a failed write may fail too (sticky faults): the image is judged as it is
  }
  if (!faulty.failedAt)
    return { kind: 'failed', category: 'harness', detail: `write ${nth} was never made in the faulty run` };
  if (!reported)
    return {
      kind: 'failed',
      category: 'fault-not-reported',
      detail: `write ${nth} (${regions[nth - 1]}) failed with ${s.errno}, the operation reported success`,
    };
  return judgeImage(disk.bytes(), s, dir);
}

export async function runQemuFault(s: FaultScenario, dir: string): Promise<FaultOutcome> {
  const event = BLKDEBUG_EVENT[s.point];
  if (!event) return { kind: 'not-reached', why: `blkdebug has no event for ${s.point} writes` };
  const img = path.join(dir, 'disk.qcow2');
  const c = await runTool(QEMU_IMG, [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-o',
    qemuCreateOptions(s.layout),
    img,
    String(s.layout.size),
  ]);
  if (c.exitCode !== 0) return { kind: 'failed', category: 'harness', detail: c.stderr };
  const cmds = s.before.flatMap((w) => ['-c', `write -q -P ${w.pattern} ${w.offset} ${w.length}`]);
  const b = await runTool(QEMU_IO, ['-f', 'qcow2', ...cmds, '-c', 'flush', img]);
  if (b.exitCode !== 0) return { kind: 'failed', category: 'harness', detail: b.stdout + b.stderr };
  const cfg = path.join(dir, 'blkdebug.cfg');
  // (once: fail the event's first occurrence; sticky: every later one too)
  fs.writeFileSync(
    cfg,
    `[inject-error]\nevent = "${event}"\nerrno = "${ERRNO_NUMBER[s.errno]}"\nonce = "${s.sticky ? 'off' : 'on'}"\n`,
  );
  const t = await runTool(QEMU_IO, [
    '--image-opts',
    `driver=qcow2,file.driver=blkdebug,file.config=${cfg},file.image.filename=${img}`,
    '-c',
    `write -q -P ${s.target.pattern} ${s.target.offset} ${s.target.length}`,
    '-c',
    'flush',
  ]);
  const out = t.stdout + t.stderr;
  if (!/failed|error/i.test(out)) return { kind: 'not-reached', why: `no ${event} event in the operation` };
  return judgeImage(new Uint8Array(fs.readFileSync(img)), s, dir);
}

export interface FaultCampaignResult {
  scenarios: number;
  injected: number;
  notReached: number;
  failures: { scenario: string; category: string; detail: string }[];
  elapsedMs: number;
}

export async function runFaultCampaign(opts: {
  impl: CrashImplName;
  seed: number;
  count?: number;
  seconds?: number;
  /** When `seconds` counts from (epoch ms; the CLI passes its process's start). Default: now. */
  startedAt?: number;
}): Promise<FaultCampaignResult> {
  const started = Date.now();
  // A scenario takes ~0.2 s here: one started before the deadline ends about at it.
  const deadline =
    opts.seconds !== undefined ? (opts.startedAt ?? started) + opts.seconds * 1000 - 200 : Infinity;
  const result: FaultCampaignResult = {
    scenarios: 0,
    injected: 0,
    notReached: 0,
    failures: [],
    elapsedMs: 0,
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-faults-'));
  try {
    for (let i = 0; (opts.count === undefined || i < opts.count) && Date.now() < deadline; i++) {
      const s = randomScenario((opts.seed + i * 7919) | 0);
      const outcome = opts.impl === 'engine' ? await runEngineFault(s, dir) : await runQemuFault(s, dir);
      result.scenarios += 1;
      if (outcome.kind === 'not-reached') result.notReached += 1;
      else result.injected += 1;
      if (outcome.kind === 'failed')
        result.failures.push({
          scenario: describeScenario(s),
          category: outcome.category,
          detail: outcome.detail,
        });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  result.elapsedMs = Date.now() - started;
  return result;
}
