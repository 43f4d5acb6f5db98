/**
 * Mixed: the engine and qemu-io take turns on the same image. The engine creates the image; every
 * close-and-reopen hands it to the other side (engine → qemu-io → engine …), and snapshot
 * operations go through whichever side holds it (the engine's API, or qemu-img between qemu-io
 * sessions). The rule is deterministic so a case replays and a script can be written from it.
 * Every other step goes to the side holding the image too: aio batches, rebase/commit, the
 * VM-state area (`write -b`/`read -b`) and amend (the engine's, or qemu-img's between sessions),
 * so VM state one side wrote is read back by the other after a hand-over.
 */
import { QEMU_CAPABILITIES } from './qemu-io.ts';
import type { Capabilities, ImageHandle, ImplementationUnderTest, ReadMismatch } from './adapter.ts';
import { EngineHandle, EngineImplementation, ENGINE_SCRIPT_TOOL, loadEngine } from './engine.ts';
import { CommandSession } from './command-session.ts';
import { debugOpenCommand, defaultOpenCommand, StdinProtocolHandle } from './stdin-protocol.ts';
import { QEMU_IO } from '../qemu/qemu-img.ts';
import { qemuObjectArgs, type ImageLayout } from '../layout.ts';
import type { AioHold, AioWrite, WriteSource } from '../steps.ts';
import type { BackingFormat } from '../layout.ts';

export type Side = 'engine' | 'qemu-io';

export class MixedImplementation implements ImplementationUnderTest {
  readonly name = 'mixed';
  readonly scriptTool = ENGINE_SCRIPT_TOOL;
  private readonly engine = new EngineImplementation();

  get probeNotes(): string[] {
    return this.engine.probeNotes;
  }

  async capabilities(): Promise<Capabilities> {
    // (the qemu-io side's declared behaviours apply on its turns)
    const engine = await this.engine.capabilities();
    return {
      ...engine,
      involvesQemu: true,
      revertRaisesRefcountsFirst: true,
      v2GrowOverLongerBackingRefused: true,
      // (both sides serve them: the engine serially, qemu-io in flight)
      aioWrite: true,
      // (both sides have them when the engine does: qemu-io always)
      vmState: engine.vmState === true,
      amend: engine.amend === true,
      // (qemu-io's turns shrink too: its cost applies; the engine creates LUKS cheaply itself)
      slowShrinkClusters: QEMU_CAPABILITIES.slowShrinkClusters,
    };
  }

  async create(file: string, layout: ImageLayout): Promise<ImageHandle> {
    const engineHandle = (await this.engine.create(file, layout)) as EngineHandle;
    await loadEngine();
    const session = await CommandSession.start({ argv: [QEMU_IO, ...qemuObjectArgs(layout)] });
    const qemuHandle = new StdinProtocolHandle(
      file,
      session,
      (p) => defaultOpenCommand(p, layout),
      layout,
      // (aio batches with a hold hold a request on qemu-io's turns)
      (p) => debugOpenCommand(p, layout),
    );
    return new MixedHandle(file, engineHandle, qemuHandle);
  }
}

export class MixedHandle implements ImageHandle {
  readonly path: string;
  private side: Side = 'engine';
  private readonly sides: Record<Side, ImageHandle>;

  constructor(file: string, engine: ImageHandle, qemu: ImageHandle) {
    this.path = file;
    this.sides = { engine, 'qemu-io': qemu };
  }

  get activeSide(): Side {
    return this.side;
  }

  private get active(): ImageHandle {
    return this.sides[this.side];
  }

  get isOpen(): boolean {
    return this.active.isOpen;
  }

  /** Close, then the other side opens: the turn changes hands. */
  async open(): Promise<void> {
    await this.active.open();
  }

  async close(): Promise<void> {
    await this.active.close();
  }

  /** The close-and-reopen step: hand the image to the other side. */
  async handOver(): Promise<void> {
    await this.active.close();
    this.side = this.side === 'engine' ? 'qemu-io' : 'engine';
    await this.active.open();
  }

  async dispose(): Promise<void> {
    await this.sides.engine.dispose();
    await this.sides['qemu-io'].dispose();
  }

  write(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    return this.active.write(offset, data, source);
  }
  writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    return this.active.writeZeroes(offset, length, unmap);
  }
  writeCompressed(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    return this.active.writeCompressed(offset, data, source);
  }
  discard(offset: number, length: number): Promise<void> {
    return this.active.discard(offset, length);
  }
  verify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    return this.active.verify(offset, expected);
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.active.read(offset, length);
  }
  flush(): Promise<void> {
    return this.active.flush();
  }
  resize(newSize: number): Promise<void> {
    return this.active.resize(newSize);
  }
  snapshotCreate(name: string): Promise<void> {
    return this.active.snapshotCreate(name);
  }
  snapshotApply(name: string): Promise<void> {
    return this.active.snapshotApply(name);
  }
  snapshotDelete(name: string): Promise<void> {
    return this.active.snapshotDelete(name);
  }
  aioWriteBatch(writes: readonly AioWrite[], hold?: AioHold): Promise<void> {
    return required(this.active.aioWriteBatch, 'aio_write').call(this.active, writes, hold);
  }
  rebase(name: string | null, format: BackingFormat | undefined, unsafe: boolean): Promise<void> {
    return required(this.active.rebase, 'rebase').call(this.active, name, format, unsafe);
  }
  commit(): Promise<void> {
    return required(this.active.commit, 'commit').call(this.active);
  }
  vmStateWrite(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    return required(this.active.vmStateWrite, 'VM-state area').call(this.active, offset, data, source);
  }
  vmStateVerify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    return required(this.active.vmStateVerify, 'VM-state area').call(this.active, offset, expected);
  }
  amend(option: string): Promise<void> {
    return required(this.active.amend, 'amend').call(this.active, option);
  }
}

function required<F>(method: F | undefined, what: string): F {
  if (!method) throw new Error(`harness: the active side has no ${what}`);
  return method;
}

/** Handles that change implementation at close-and-reopen expose it. */
export function isHandOver(handle: ImageHandle): handle is MixedHandle {
  return handle instanceof MixedHandle;
}
