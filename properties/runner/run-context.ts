/**
 * One run: a temporary directory with one image, the implementation's handle on it, the model,
 * and the log of steps performed so far (the case's `steps` when the run fails).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ImplementationError, type ImageHandle, type ImplementationUnderTest } from '../adapters/adapter.ts';
import { Divergence } from './divergence.ts';
import { DiskModel, type KnownQuirks } from '../model/disk-model.ts';
import type { Capabilities } from '../adapters/adapter.ts';
import { BACKING_NAME, type ImageLayout } from '../layout.ts';
import { dropBackingFormat } from './backing-format.ts';
import type { Step } from '../steps.ts';
import { createBackingFile } from './backing-setup.ts';
import type { Watchdog } from './watchdog.ts';
import type { ReaderOracle } from '../readers/reader-oracle.ts';
import { qemuImgBitmap } from '../qemu/qemu-bitmaps.ts';
import { steeringOn } from '../known-bugs/index.ts';
import { makeRunDir } from './scratch-root.ts';

export class RunContext {
  readonly impl: ImplementationUnderTest;
  /** (Replaced after an amend step: later qemu-img calls use the image's new options.) */
  layout: ImageLayout;
  readonly model: DiskModel;
  readonly dir: string;
  readonly imagePath: string;
  readonly steps: string[] = [];
  handle!: ImageHandle;
  /** Data operations performed (for operations-per-second figures). */
  operations = 0;
  /** Guest bytes those operations wrote, zeroed, discarded or read (for their average size). */
  bytes = 0;
  watchdog: Watchdog | undefined;
  /** Readers checking the image at checkpoints (`--readers`), when any. */
  readers: ReaderOracle | undefined;
  /**
   * Send data steps without waiting for their replies when the handle is pipelined (campaigns and
   * benchmarks turn this on; replays keep one step at a time).
   */
  pipeline = false;
  /** Steps sent and not yet confirmed, in order (pipelined handles). */
  private inFlight: { stepIndex: number; line: string; outcome: Promise<unknown> }[] = [];

  private constructor(impl: ImplementationUnderTest, layout: ImageLayout, quirks: KnownQuirks) {
    this.impl = impl;
    this.layout = layout;
    this.model = new DiskModel(layout, quirks);
    this.dir = makeRunDir();
    this.imagePath = path.join(this.dir, 'disk.qcow2');
  }

  static async start(
    impl: ImplementationUnderTest,
    layout: ImageLayout,
    watchdog?: Watchdog,
    seed?: number,
  ): Promise<RunContext> {
    const caps = await impl.capabilities();
    watchdog?.startRun({ impl: impl.name, image: { layout, size: layout.size }, seed: seed ?? null });
    const ctx = new RunContext(impl, layout, quirksOf(impl.name, caps));
    ctx.watchdog = watchdog;
    try {
      // The backing file is the harness's (QEMU's tools make a qcow2 one), whatever the implementation.
      if (layout.backing) await createBackingFile(path.join(ctx.dir, BACKING_NAME), layout.backing);
      ctx.handle = await impl.create(ctx.imagePath, layout);
      if (layout.backing?.probed) await ctx.dropBackingFormat();
      if (layout.bitmaps?.length) await ctx.addLayoutBitmaps();
    } catch (e) {
      ctx.removeDir();
      throw e;
    }
    return ctx;
  }

  /** The image made to name no backing format, on the closed image (whatever the implementation). */
  private async dropBackingFormat(): Promise<void> {
    await this.handle.close();
    dropBackingFormat(this.imagePath);
    await this.handle.open();
  }

  /** The layout's bitmaps, added by qemu-img on the closed image (whatever the implementation). */
  private async addLayoutBitmaps(): Promise<void> {
    await this.handle.close();
    for (const b of this.layout.bitmaps ?? []) {
      const step = {
        kind: 'bitmap',
        op: 'add',
        name: b.name,
        granularity: 2 ** b.granularityBits,
        disabled: b.disabled,
      } as const;
      const r = await qemuImgBitmap(this.imagePath, step, this.layout);
      if (r.exitCode !== 0)
        throw new Error(`qemu-img bitmap --add ${b.name} failed (${r.exitCode}): ${r.stderr.trim()}`);
    }
    await this.handle.open();
  }

  /** Count a step's operations (each of a qemu turn's and of an aio batch's counts) and their bytes. */
  count(step: Step): void {
    if (step.kind === 'aio-batch') {
      this.operations += step.writes.length;
      for (const w of step.writes) this.bytes += w.length;
      return;
    }
    const ops = step.kind === 'qemu-turn' ? step.ops : [step];
    this.operations += ops.length;
    for (const op of ops) if ('length' in op) this.bytes += op.length;
  }

  /** Whether this step may be sent now and confirmed later. */
  get pipelining(): boolean {
    return this.pipeline && this.handle.pipelined === true;
  }

  /** Remember a sent step; its outcome (undefined, or what it threw) is looked at by `settle`. */
  defer(stepIndex: number, line: string, done: Promise<void>): void {
    this.inFlight.push({
      stepIndex,
      line,
      outcome: done.then(
        () => undefined,
        (e: unknown) => e ?? new Error('rejected'),
      ),
    });
  }

  /**
   * Wait for every step sent: the first that failed becomes a divergence at its own step (the
   * steps after it are dropped from the log: the case ends where the failure is).
   */
  async settle(): Promise<void> {
    while (this.inFlight.length > 0) {
      const { stepIndex, line, outcome } = this.inFlight.shift()!;
      this.watch(line);
      const failure = await outcome;
      if (failure === undefined) continue;
      this.inFlight = [];
      this.steps.length = stepIndex + 1;
      if (!(failure instanceof ImplementationError)) throw failure;
      throw new Divergence({
        kind: 'operation-failed',
        stepIndex,
        step: line,
        expected: 'success',
        observed: failure.message,
      });
    }
  }

  /** The implementation is about to work (a hang is reported against this line). */
  watch(line: string): void {
    this.watchdog?.step(line);
  }

  /** Only child processes work now (qemu-img): no hang to watch for. */
  unwatch(): void {
    this.watchdog?.idle();
  }

  /** A scratch file name inside the run's directory. */
  scratch(name: string): string {
    return path.join(this.dir, name);
  }

  async dispose(): Promise<void> {
    this.inFlight = [];
    this.watch('# dispose');
    try {
      await this.handle.dispose();
    } finally {
      this.unwatch();
      this.removeDir();
    }
  }

  private removeDir(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** What the model expects of an implementation: the known bugs' steering and its declared refusals. */
export function quirksOf(implName: string, caps: Capabilities): KnownQuirks {
  return {
    clusterAlignedShrink: steeringOn(implName, 'cluster-aligned-shrink'),
    skipRefusedSnapshotCreate: steeringOn(implName, 'skip-refused-snapshot-create'),
    noRefcountWidthAmendLargeClusters: steeringOn(implName, 'no-refcount-width-amend-large-clusters'),
    revertRaisesRefcountsFirst: caps.revertRaisesRefcountsFirst === true,
    v2GrowOverLongerBackingRefused: caps.v2GrowOverLongerBackingRefused === true,
  };
}
