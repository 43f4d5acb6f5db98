/**
 * Implementations whose writes to the image file are recorded in the dm-log-writes format, from the
 * moment the freshly created image is first opened:
 *   engine   the engine (QCOW2_ENGINE honoured) on a RecordingDevice over the image file, the log
 *            kept in memory (reopens continue it, as blklogwrites' log-append does)
 *   qemu-io  one qemu-io process opening the image through QEMU's `blklogwrites` driver
 *            (`driver=qcow2,file.driver=blklogwrites,file.file.filename=IMG,file.log.filename=LOG`)
 * The starting image (as created, closed) is kept, and after every call on the handle the number
 * of log entries so far is noted against the step being run: a crash state's position in the log
 * maps back to the steps that had started and those that had completed.
 *
 * Two things keep the recorded state space the one the run really went through:
 *   - set-up that changes the closed image outside the log (the layout's bitmaps, added by
 *     `qemu-img bitmap --add` between a close and an open, before the first step) re-bases the
 *     recording: at that open, the starting image is taken again and the log starts afresh — else
 *     crash states would be built on an image without those writes (refcount 0 for the bitmap's
 *     clusters, a header extension cut short);
 *   - the layout's runtime cache options (tiny `l2-cache-size` / `refcount-cache-size`) apply to
 *     every recorded open, qemu-img's snapshot commands included, so evictions happen as in the
 *     runs without recording.
 */
import * as fs from 'node:fs';
import type { ImageHandle, ImplementationUnderTest, Capabilities } from '../adapters/adapter.ts';
import { EngineHandle, engineOpenSecret, loadEngine, type EngineModule } from '../adapters/engine.ts';
import { EngineImplementation } from '../adapters/engine.ts';
import { QEMU_CAPABILITIES } from '../adapters/qemu-io.ts';
import { StdinProtocolHandle } from '../adapters/stdin-protocol.ts';
import { CommandSession } from '../adapters/command-session.ts';
import { cacheOptions, engineCreateOptions, qemuObjectArgs, type ImageLayout } from '../layout.ts';
// (crashtest layouts have no encryption: the recorded snapshot commands need no secret)
import { qemuImgCreate, QEMU_IMG, QEMU_IO, runTool } from '../qemu/qemu-img.ts';
import { FileDevice, MemoryDevice, type BlockDevice } from '../../src/io/device.ts';
import { RecordingDevice } from '../../src/io/recording-device.ts';
import { encodeLogSuper, LOG_DISCARD_FLAG } from '../../src/io/recording-device.ts';
import type { CreateOptions, Image, OpenOptions } from '../../src/api.ts';
import { ImplementationError } from '../adapters/adapter.ts';

export type CrashImplName = 'engine' | 'qemu-io';

/** What a recorded run leaves: the starting image, the log, and where each step ended in it. */
export interface Recording {
  start: Uint8Array;
  /** Entries logged before the first step (opening the image). */
  setupEntries: number;
  /** Log entries after each step (index = step index). */
  stepEnds: number[];
  logBytes(): Uint8Array;
}

/** The engine module with the device-level entry points the recording needs. */
interface DeviceEngineModule extends EngineModule {
  Qcow2Image: EngineModule['Qcow2Image'] & {
    openDevice(dev: BlockDevice, opts?: OpenOptions & { filename?: string }): Image;
  };
}

/** Counts the entries of a log file as it grows (blklogwrites updates the super block only at flushes). */
class LogFileCounter {
  private at = 512;
  private count = 0;
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }
  entries(): number {
    const fd = fs.openSync(this.file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const head = Buffer.alloc(32);
      while (this.at + 32 <= size) {
        fs.readSync(fd, head, 0, 32, this.at);
        const nr = Number(head.readBigUInt64LE(8));
        const flags = head.readBigUInt64LE(16);
        const next = this.at + 512 + ((flags & LOG_DISCARD_FLAG) !== 0n ? 0 : nr * 512);
        if (next > size) break;
        this.at = next;
        this.count += 1;
      }
    } finally {
      fs.closeSync(fd);
    }
    return this.count;
  }
}

export interface RecordingImplementation extends ImplementationUnderTest {
  readonly implName: CrashImplName;
  /** The recording of the image created last (one run at a time). */
  recording(): Recording;
  /** Notes, after each handle call, which step it belonged to. */
  stepIndex: () => number;
}

/**
 * Wraps a handle so that every call notes the log position at its end against the current step
 * (and `beforeOpen` runs before each `open`).
 */
function noting(handle: ImageHandle, note: () => void, beforeOpen: () => void): ImageHandle {
  return new Proxy(handle, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        if (prop === 'open' && !target.isOpen) beforeOpen();
        try {
          return await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        } finally {
          note();
        }
      };
    },
  });
}

abstract class RecordingBase implements RecordingImplementation {
  abstract readonly implName: CrashImplName;
  abstract readonly name: string;
  abstract readonly scriptTool: ImplementationUnderTest['scriptTool'];
  abstract capabilities(): Promise<Capabilities>;
  stepIndex: () => number = () => -1;
  protected current: Recording | undefined;
  protected abstract entries(): number;

  recording(): Recording {
    if (!this.current) throw new Error('harness: nothing recorded yet');
    return this.current;
  }

  protected note(): void {
    const rec = this.current;
    if (!rec) return;
    const i = this.stepIndex();
    const n = this.entries();
    if (i < 0) {
      // (after the steps, a dispose is no step: only the opening counts as set-up)
      if (rec.stepEnds.length === 0) rec.setupEntries = n;
    } else {
      while (rec.stepEnds.length < i)
        rec.stepEnds.push(rec.stepEnds[rec.stepEnds.length - 1] ?? rec.setupEntries);
      rec.stepEnds[i] = n;
    }
  }

  /** Start the recording again from the image file as it is now (closed). */
  protected abstract rebase(): void;

  /**
   * Before an open: during set-up (no step yet), the closed image may have been changed outside
   * the log (the layout's bitmaps): the recording starts again from it.
   */
  protected beforeOpen(): void {
    const rec = this.current;
    if (rec && rec.stepEnds.length === 0 && this.stepIndex() < 0) this.rebase();
  }

  abstract create(path: string, layout: ImageLayout): Promise<ImageHandle>;
}

export class RecordingEngine extends RecordingBase {
  readonly implName = 'engine' as const;
  readonly name = 'engine';
  private readonly plain = new EngineImplementation();
  readonly scriptTool = this.plain.scriptTool;
  private recorder: RecordingDevice | undefined;
  private log: MemoryDevice | undefined;
  private file: string | undefined;

  capabilities(): Promise<Capabilities> {
    return this.plain.capabilities();
  }

  protected entries(): number {
    return this.recorder?.entryCount ?? 0;
  }

  async create(file: string, layout: ImageLayout): Promise<ImageHandle> {
    const engine = (await loadEngine()) as DeviceEngineModule;
    let created: Image;
    try {
      created = engine.Qcow2Image.create(file, engineCreateOptions(layout) as CreateOptions);
      created.close();
    } catch (e) {
      throw new ImplementationError('create', e instanceof Error ? e.message : String(e));
    }
    this.file = file;
    this.log = new MemoryDevice(undefined, { name: `${file}.log` });
    const start = new Uint8Array(fs.readFileSync(file));
    this.current = { start, setupEntries: 0, stepEnds: [], logBytes: () => this.log!.bytes() };
    // The engine module as EngineHandle uses it, opening through a recording device.
    const recordingModule: EngineModule = {
      Qcow2Image: {
        create: engine.Qcow2Image.create,
        open: (p: string, opts?: OpenOptions): Image => {
          const dev = FileDevice.open(p, { sync: false });
          this.recorder = new RecordingDevice(dev, this.log!, { append: true });
          return engine.Qcow2Image.openDevice(this.recorder, { ...opts, filename: p });
        },
      },
    };
    const secret = engineOpenSecret(layout);
    const cache = layout.cache;
    const image = recordingModule.Qcow2Image.open(file, {
      sync: false,
      ...(secret ? { secret } : {}),
      ...(cache ? { cache } : {}),
    });
    const handle = new EngineHandle(file, recordingModule, image, secret, cache);
    this.note();
    return noting(
      handle,
      () => this.note(),
      () => this.beforeOpen(),
    );
  }

  /**
   * A qemu turn on the closed image writes through blklogwrites, appending to a file copy of the
   * log (the engine's close wrote its super block), read back as the log afterwards.
   */
  recordedTurn(path: string, layout: ImageLayout): { imageArgs: string[]; done(): void } {
    const logFile = `${path}.turn.log`;
    fs.writeFileSync(logFile, this.log ? this.log.bytes() : new Uint8Array(0));
    return {
      imageArgs: ['--image-opts', blklogwritesOptions(path, logFile, layout)],
      done: () => {
        this.log = new MemoryDevice(new Uint8Array(fs.readFileSync(logFile)), { name: `${path}.log` });
        fs.rmSync(logFile, { force: true });
      },
    };
  }

  protected rebase(): void {
    if (!this.current || !this.file) return;
    this.log = new MemoryDevice(undefined, { name: `${this.file}.log` });
    this.recorder = undefined;
    this.current.start = new Uint8Array(fs.readFileSync(this.file));
    this.current.setupEntries = 0;
  }

  /** The log so far (for tests). */
  logDevice(): MemoryDevice | undefined {
    return this.log;
  }
}

/**
 * `open -o driver=qcow2,file.driver=blklogwrites,…`: the image through QEMU's write logger, with
 * the layout's runtime cache options when it has them.
 */
export function blklogwritesOptions(image: string, log: string, layout?: ImageLayout): string {
  const cache = layout?.cache ? `,${cacheOptions(layout)}` : '';
  // (log-append: a reopen continues the log; an empty log file starts a new one)
  return `driver=qcow2${cache},file.driver=blklogwrites,file.file.filename=${image},file.log.filename=${log},file.log-append=on`;
}

export class RecordingQemuIo extends RecordingBase {
  readonly implName = 'qemu-io' as const;
  readonly name = 'qemu-io';
  readonly scriptTool = { io: 'qemu-io -f qcow2', snapshot: 'qemu-img snapshot' };
  private counter: LogFileCounter | undefined;
  private file: string | undefined;

  async capabilities(): Promise<Capabilities> {
    return QEMU_CAPABILITIES;
  }

  protected entries(): number {
    return this.counter?.entries() ?? 0;
  }

  async create(file: string, layout: ImageLayout): Promise<ImageHandle> {
    await qemuImgCreate(file, layout);
    const logFile = `${file}.log`;
    this.file = file;
    fs.writeFileSync(logFile, '');
    this.counter = new LogFileCounter(logFile);
    const start = new Uint8Array(fs.readFileSync(file));
    // (blklogwrites writes its super block at the first flush: an untouched log is empty)
    const logBytes = (): Uint8Array => {
      const b = new Uint8Array(fs.readFileSync(logFile));
      return b.length > 0 ? b : encodeLogSuper(0, 512);
    };
    this.current = { start, setupEntries: 0, stepEnds: [], logBytes };
    const session = await CommandSession.start({ argv: [QEMU_IO, ...qemuObjectArgs(layout)] });
    const handle = new RecordedSnapshotsHandle(
      file,
      session,
      (p) => `open -o ${blklogwritesOptions(p, logFile, layout)}`,
      logFile,
      layout,
    );
    await handle.open();
    this.note();
    return noting(
      handle,
      () => this.note(),
      () => this.beforeOpen(),
    );
  }

  /** A qemu turn on the closed image appends to the same log through blklogwrites. */
  recordedTurn(path: string, layout: ImageLayout): { imageArgs: string[]; done(): void } {
    return { imageArgs: ['--image-opts', blklogwritesOptions(path, `${path}.log`, layout)], done: () => {} };
  }

  protected rebase(): void {
    if (!this.current || !this.file) return;
    // (the image is closed: blklogwrites has let go of the log; an empty one starts afresh)
    fs.writeFileSync(`${this.file}.log`, '');
    this.counter = new LogFileCounter(`${this.file}.log`);
    this.current.start = new Uint8Array(fs.readFileSync(this.file));
    this.current.setupEntries = 0;
  }
}

/** qemu-io's handle, with snapshots made by `qemu-img snapshot --image-opts` through blklogwrites. */
class RecordedSnapshotsHandle extends StdinProtocolHandle {
  private readonly logFile: string;
  private readonly imageLayout: ImageLayout;
  constructor(
    file: string,
    session: CommandSession,
    open: (p: string) => string,
    logFile: string,
    layout: ImageLayout,
  ) {
    super(file, session, open);
    this.logFile = logFile;
    this.imageLayout = layout;
  }
  private async recordedSnapshot(flag: string, name: string): Promise<void> {
    const wasOpen = this.isOpen;
    await this.close();
    const r = await runTool(QEMU_IMG, [
      'snapshot',
      flag,
      name,
      '--image-opts',
      blklogwritesOptions(this.path, this.logFile, this.imageLayout),
    ]);
    if (wasOpen) await this.open();
    if (r.exitCode !== 0) throw new ImplementationError(`qemu-img snapshot ${flag} ${name}`, r.stderr.trim());
  }
  override snapshotCreate(name: string): Promise<void> {
    return this.recordedSnapshot('-c', name);
  }
  override snapshotApply(name: string): Promise<void> {
    return this.recordedSnapshot('-a', name);
  }
  override snapshotDelete(name: string): Promise<void> {
    return this.recordedSnapshot('-d', name);
  }
}

export function recordingImplementation(name: CrashImplName): RecordingImplementation {
  return name === 'engine' ? new RecordingEngine() : new RecordingQemuIo();
}
