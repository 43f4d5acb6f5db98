/**
 * Performs one step on the implementation and on the model, and asserts. The commands resolve
 * their arguments against the model into steps and call this; replaying a case calls it on the
 * parsed steps. The model alone decides what is expected, including refusals.
 */
import { ImplementationError } from '../adapters/adapter.ts';
import { isHandOver } from '../adapters/mixed.ts';
import type { DiskModel } from '../model/disk-model.ts';
import { formatStep, formatStepLine, writeData, type DataStep, type Step, type WriteStep } from '../steps.ts';
import { isUniform } from '../model/compare-bytes.ts';
import { checkRead } from '../oracles/read-oracle.ts';
import * as fs from 'node:fs';
import { stampFileName, stampInto } from '../model/stamp.ts';
import { QEMU_IO, qemuImgConvertQcow2, qemuImgRepair, runTool } from '../qemu/qemu-img.ts';
import { qemuCreateOptions, qemuImageArgs, qemuObjectArgs } from '../layout.ts';
import { checkOracle, imageOracles } from '../oracles/image-oracles.ts';
import { qemuImgBitmap } from '../qemu/qemu-bitmaps.ts';
import { Divergence } from './divergence.ts';
import type { RunContext } from './run-context.ts';
import { applyAioBatch, performAioBatch } from '../commands/aio-batch-step.ts';
import { performBackingStep } from '../commands/backing-steps.ts';
import { amendLayoutChange, applyToVmState, performVmStateOrAmend } from './vm-state-amend-steps.ts';
import { badRequest, expectedErrorCode } from '../commands/bad-requests.ts';

/** Does the model expect the implementation to refuse this step? */
export function expectedRefusal(model: DiskModel, step: Step): boolean {
  if (badRequest(model, step)) return true;
  switch (step.kind) {
    case 'snapshot-create':
      return model.snapshotCreateRefused();
    case 'resize':
      return model.resizeRefused(step.size);
    case 'snapshot-apply':
      // QEMU 7.2: "Device has active dirty bitmaps" while the image has any bitmap (docs/bitmaps.md)
      return model.bitmaps.size > 0;
    default:
      return false;
  }
}

export function applyToModel(model: DiskModel, step: Step): void {
  applyToBitmaps(model, step);
  if (applyToVmState(model, step)) return;
  switch (step.kind) {
    case 'write':
      model.write(step);
      return;
    case 'write-zeroes':
      model.writeZeroes(step.offset, step.length, step.unmap);
      return;
    case 'write-compressed':
      model.writeCompressed(step);
      return;
    case 'discard':
      model.discard(step.offset, step.length);
      return;
    case 'resize':
      model.resize(step.size);
      return;
    case 'snapshot-create':
      model.createSnapshot(step.name);
      return;
    case 'snapshot-apply':
      model.applySnapshot(step.name);
      return;
    case 'snapshot-delete':
      model.deleteSnapshot(step.name);
      return;
    case 'qemu-turn':
      for (const op of step.ops) applyToModel(model, op);
      return;
    case 'convert':
      model.converted(step.compressed);
      return;
    case 'aio-batch':
      applyAioBatch(model, step);
      return;
    case 'base-create':
    case 'base-copy':
    case 'rebase':
    case 'commit':
      model.backingStep(step);
      return;
    case 'amend':
      model.amended(amendLayoutChange(step.option));
      return;
    case 'read':
    case 'flush':
    case 'reopen':
    case 'check':
    case 'check-repair':
    case 'bitmap':
    case 'vmstate-write':
    case 'vmstate-read':
      return;
  }
}

/** The bitmaps' side of a step (model/bitmaps.ts): changed guest ranges, resizes, bitmap ops. */
function applyToBitmaps(model: DiskModel, step: Step): void {
  const bitmaps = model.bitmaps;
  switch (step.kind) {
    case 'write':
    case 'write-zeroes':
    case 'write-compressed':
    case 'discard':
      bitmaps.record(step.offset, step.length, model.size);
      return;
    case 'resize':
      bitmaps.resize(step.size);
      return;
    case 'convert':
      // qemu-img convert without --bitmaps leaves the bitmaps behind.
      for (const b of [...bitmaps.list]) bitmaps.remove(b.name);
      return;
    case 'bitmap':
      switch (step.op) {
        case 'add':
          bitmaps.add(step.name, Math.log2(step.granularity), step.disabled);
          return;
        case 'remove':
          bitmaps.remove(step.name);
          return;
        case 'clear':
          bitmaps.require(step.name).dirty.clear();
          return;
        case 'enable':
        case 'disable':
          bitmaps.require(step.name).enabled = step.op === 'enable';
          return;
        case 'merge':
          bitmaps.merge(step.source, step.name, model.size);
          return;
      }
      return;
    default:
      return;
  }
}

/** Harness self-check: a read step is inside the disk, and its pattern (if any) is what the model holds. */
function assertModelPattern(model: DiskModel, step: DataStep, stepIndex: number, line: string): void {
  if (step.kind !== 'read') return;
  if (step.offset + step.length > model.size) {
    throw new Divergence({
      kind: 'harness',
      stepIndex,
      step: line,
      expected: `a read inside ${model.size} bytes`,
      observed: 'beyond the model disk',
    });
  }
  if (step.pattern !== undefined && !isUniform(model.read(step.offset, step.length), step.pattern)) {
    throw new Divergence({
      kind: 'harness',
      stepIndex,
      step: line,
      expected: `the model to hold 0x${step.pattern.toString(16)} there`,
      observed: 'other bytes',
    });
  }
}

/** The write data buffer lent to handles that borrow it (`ImageHandle.borrowsWriteData`). */
let lentData = new Uint8Array(0);

/**
 * A write step's bytes for the implementation: a fresh buffer, or for a handle done with the data
 * when its call returns (the engine in process), one buffer refilled for every write (the same
 * bytes, `stampInto` over the whole write or the pattern; no allocation of the write's size per
 * write). The model stores its own bytes (DiskModel.store), never this buffer.
 */
function dataFor(ctx: RunContext, step: WriteStep): Uint8Array {
  if (ctx.handle.borrowsWriteData !== true || ctx.pipelining) return writeData(step);
  if (lentData.length < step.length) lentData = new Uint8Array(Math.max(step.length, 1 << 20));
  const out = lentData.subarray(0, step.length);
  if (step.stamp !== undefined) stampInto(out, 0, step.stamp, step.offset, 0, step.length);
  else out.fill(step.pattern);
  return out;
}

async function performOnImplementation(
  ctx: RunContext,
  step: Step,
  stepIndex: number,
  line: string,
): Promise<void> {
  const h = ctx.handle;
  switch (step.kind) {
    case 'vmstate-write':
    case 'vmstate-read':
    case 'amend':
      return performVmStateOrAmend(ctx, step, stepIndex, line);
    case 'write':
      return h.write(step.offset, dataFor(ctx, step), step);
    case 'write-zeroes':
      return h.writeZeroes(step.offset, step.length, step.unmap);
    case 'write-compressed':
      return h.writeCompressed(step.offset, dataFor(ctx, step), step);
    case 'discard':
      return h.discard(step.offset, step.length);
    case 'read':
      // a read past the end of the disk: the model has no bytes there, the request must fail
      if (badRequest(ctx.model, step)) return void (await h.read(step.offset, step.length));
      return checkRead(h, ctx.model, step.offset, step.length, {
        kind: 'read-mismatch',
        stepIndex,
        step: line,
      });
    case 'flush':
      return h.flush();
    case 'reopen':
      if (isHandOver(h)) return h.handOver();
      await h.close();
      return h.open();
    case 'snapshot-create':
      return h.snapshotCreate(step.name);
    case 'snapshot-apply':
      return h.snapshotApply(step.name);
    case 'snapshot-delete':
      return h.snapshotDelete(step.name);
    case 'resize':
      return h.resize(step.size);
    case 'qemu-turn': {
      await h.close();
      // stamped writes read their data from files next to the image (the turn runs there)
      for (const op of step.ops)
        if ((op.kind === 'write' || op.kind === 'write-compressed') && op.stamp !== undefined)
          fs.writeFileSync(ctx.scratch(stampFileName(op.stamp)), writeData(op));
      const args = [
        ...qemuObjectArgs(ctx.layout),
        ...step.ops.flatMap((op) => ['-c', formatStep(op)]),
        ...qemuImageArgs(ctx.layout, ctx.imagePath),
      ];
      const r = await runTool(QEMU_IO, args, { cwd: ctx.dir, mergeStderr: true });
      if (r.exitCode !== 0) {
        throw new Divergence({
          kind: 'qemu-turn-failed',
          stepIndex,
          step: line,
          expected: 'qemu-io exit 0',
          observed: `exit ${String(r.exitCode)}: ${r.stdout.trim().slice(0, 2000)}`,
        });
      }
      return h.open();
    }
    case 'bitmap': {
      await h.close();
      ctx.unwatch();
      const r = await qemuImgBitmap(ctx.imagePath, step, ctx.layout);
      if (r.exitCode !== 0) {
        throw new Divergence({
          kind: 'bitmap-failed',
          stepIndex,
          step: line,
          expected: 'qemu-img bitmap exit 0',
          observed: `exit ${r.exitCode}: ${(r.stdout + r.stderr).trim().slice(0, 2000)}`,
        });
      }
      ctx.watch(`# reopen after ${line}`);
      return h.open();
    }
    case 'convert': {
      await h.close();
      ctx.unwatch();
      const out = ctx.scratch('converted.qcow2');
      const r = await qemuImgConvertQcow2(ctx.imagePath, out, qemuCreateOptions(ctx.layout), step.compressed);
      if (r.exitCode !== 0) {
        throw new Divergence({
          kind: 'operation-failed',
          stepIndex,
          step: line,
          expected: 'qemu-img convert exit 0',
          observed: `exit ${r.exitCode}: ${r.stderr.trim().slice(0, 2000)}`,
        });
      }
      fs.renameSync(out, ctx.imagePath);
      ctx.watch(`# reopen after ${line}`);
      return h.open();
    }
    case 'check-repair': {
      await h.close();
      ctx.unwatch();
      // A plain check first: what it finds is the image's (signature `check-repair` / qemu-img-check
      // from checkOracle); what only the repair then finds is the repair's own doing.
      await checkOracle(ctx, `${line} (step ${stepIndex}, before the repair)`);
      const r = await qemuImgRepair(ctx.imagePath, step.mode, ctx.layout);
      const said = `${r.stdout}\n${r.stderr}`;
      // a clean image has nothing to repair: anything found was there before the repair
      if (r.exitCode !== 0 || /Repairing|Leaked|ERROR|corrupt/.test(said)) {
        throw new Divergence({
          kind: 'qemu-img-check',
          stepIndex,
          step: line,
          expected: 'qemu-img check -r on an image qemu-img check finds clean: nothing to repair, exit 0',
          observed: `exit ${r.exitCode}; ${said.trim().split('\n').slice(0, 20).join(' | ')}`,
        });
      }
      ctx.watch(`# reopen after ${line}`);
      return h.open();
    }
    case 'aio-batch':
      return performAioBatch(ctx, step, stepIndex, line);
    case 'base-create':
    case 'base-copy':
    case 'rebase':
    case 'commit':
      return performBackingStep(ctx, step, stepIndex, line);
    case 'check':
      await h.close();
      ctx.unwatch();
      await imageOracles(ctx, `${line} (step ${stepIndex})`);
      ctx.watch(`# reopen after ${line}`);
      return h.open();
  }
}

/** Steps whose only outcome is success or an error (no data comes back to compare). */
const PIPELINED_KINDS: ReadonlySet<Step['kind']> = new Set([
  'write',
  'write-zeroes',
  'write-compressed',
  'discard',
  'flush',
]);

export async function executeStep(ctx: RunContext, step: Step): Promise<void> {
  const refused = expectedRefusal(ctx.model, step);
  const line = formatStepLine(step, refused);
  ctx.steps.push(line);
  const stepIndex = ctx.steps.length - 1;
  ctx.watch(line);
  if (process.env.QCOW2_FUZZ_TRACE) process.stderr.write(`[${ctx.impl.name}] ${stepIndex}: ${line}\n`);
  // (a qemu turn's reads are checked by qemu-io itself: its own `read -P` fails)
  if (step.kind === 'read' && !refused) assertModelPattern(ctx.model, step, stepIndex, line);
  ctx.count(step);
  // Data steps go to a pipelined implementation without waiting for the reply (their failures
  // are reported at their own step by `settle`); any other step first waits for them all.
  if (
    !refused &&
    ctx.pipelining &&
    PIPELINED_KINDS.has(step.kind) &&
    !(step.kind === 'flush' && ctx.readers)
  ) {
    ctx.defer(stepIndex, line, performOnImplementation(ctx, step, stepIndex, line));
    applyToModel(ctx.model, step);
    return;
  }
  await ctx.settle();
  try {
    await performOnImplementation(ctx, step, stepIndex, line);
  } catch (e) {
    if (!(e instanceof ImplementationError)) throw e;
    const code = refused && ctx.impl.name === 'engine' ? expectedErrorCode(ctx.model, step) : undefined;
    if (code !== undefined && !e.detail.includes(code)) {
      throw new Divergence({
        kind: 'operation-failed',
        stepIndex,
        step: line,
        expected: `a refusal with error code ${code}`,
        observed: e.message,
      });
    }
    if (refused) return;
    throw new Divergence({
      kind: 'operation-failed',
      stepIndex,
      step: line,
      expected: 'success',
      observed: e.message,
    });
  }
  if (refused) {
    throw new Divergence({
      kind: 'refusal-missing',
      stepIndex,
      step: line,
      expected: 'the implementation to refuse this step (as QEMU does)',
      observed: 'it succeeded',
    });
  }
  applyToModel(ctx.model, step);
  // Checkpoint: a flushed image is what other readers of the file see (properties/readers/).
  if (step.kind === 'flush' && ctx.readers) {
    await ctx.readers.checkpoint(ctx, `after step ${stepIndex}: ${line}`);
  }
}
