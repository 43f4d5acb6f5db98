/**
 * One run: a temporary directory with one image, the implementation's handle on it, the model,
 * and the log of steps performed so far (the case's `steps` when the run fails).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ImageHandle, ImplementationUnderTest } from '../adapters/adapter.ts';
import { DiskModel, type KnownQuirks } from '../model/disk-model.ts';
import { BACKING_NAME, type ImageLayout } from '../layout.ts';
import { qemuCreateBacking } from '../qemu/qemu-img.ts';
import type { Watchdog } from './watchdog.ts';
import { steeringOn } from '../known-bugs/index.ts';

export class RunContext {
  readonly impl: ImplementationUnderTest;
  readonly layout: ImageLayout;
  readonly model: DiskModel;
  readonly dir: string;
  readonly imagePath: string;
  readonly steps: string[] = [];
  handle!: ImageHandle;
  /** Data operations performed (for operations-per-second figures). */
  operations = 0;
  watchdog: Watchdog | undefined;

  private constructor(impl: ImplementationUnderTest, layout: ImageLayout, quirks: KnownQuirks) {
    this.impl = impl;
    this.layout = layout;
    this.model = new DiskModel(layout, quirks);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-fuzz-'));
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
    const ctx = new RunContext(impl, layout, {
      clusterAlignedShrink: steeringOn(impl.name, 'cluster-aligned-shrink'),
      skipRefusedSnapshotCreate: steeringOn(impl.name, 'skip-refused-snapshot-create'),
      revertRaisesRefcountsFirst: caps.revertRaisesRefcountsFirst === true,
      v2GrowOverLongerBackingRefused: caps.v2GrowOverLongerBackingRefused === true,
    });
    ctx.watchdog = watchdog;
    try {
      // The backing file is the harness's (QEMU's tools make it), whatever the implementation.
      if (layout.backing) await qemuCreateBacking(path.join(ctx.dir, BACKING_NAME), layout.backing);
      ctx.handle = await impl.create(ctx.imagePath, layout);
    } catch (e) {
      ctx.removeDir();
      throw e;
    }
    return ctx;
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
