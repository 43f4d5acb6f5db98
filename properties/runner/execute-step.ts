/**
 * Performs one step on the implementation and on the model, and asserts. The commands resolve
 * their arguments against the model into steps and call this; replaying a case calls it on the
 * parsed steps. The model alone decides what is expected, including refusals.
 */
import { execa } from 'execa';
import { ImplementationError } from '../adapters/adapter.ts';
import { isHandOver } from '../adapters/mixed.ts';
import type { DiskModel } from '../model/disk-model.ts';
import { formatStep, formatStepLine, type DataStep, type Step } from '../steps.ts';
import { QEMU_IO } from '../qemu/qemu-img.ts';
import { qemuImageArgs, qemuObjectArgs } from '../layout.ts';
import { imageOracles } from '../oracles/image-oracles.ts';
import { qemuImgBitmap } from '../qemu/qemu-bitmaps.ts';
import { Divergence } from './divergence.ts';
import type { RunContext } from './run-context.ts';

/** Does the model expect the implementation to refuse this step? */
export function expectedRefusal(model: DiskModel, step: Step): boolean {
  switch (step.kind) {
    case 'snapshot-create':
      return model.snapshotCreateRefused();
    case 'resize':
      return model.resizeRefused();
    case 'snapshot-apply':
      // QEMU 7.2: "Device has active dirty bitmaps" while the image has any bitmap (docs/bitmaps.md)
      return model.bitmaps.size > 0;
    default:
      return false;
  }
}

export function applyToModel(model: DiskModel, step: Step): void {
  applyToBitmaps(model, step);
  switch (step.kind) {
    case 'write':
      model.write(step.offset, step.length, step.pattern);
      return;
    case 'write-zeroes':
      model.writeZeroes(step.offset, step.length, step.unmap);
      return;
    case 'write-compressed':
      model.writeCompressed(step.offset, step.length, step.pattern);
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
    case 'read':
    case 'flush':
    case 'reopen':
    case 'check':
    case 'bitmap':
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

/** Harness self-check: a read step's pattern is what the model holds there. */
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
  const runs = model.runs(step.offset, step.length);
  if (runs.length !== 1 || runs[0].pattern !== step.pattern) {
    throw new Divergence({
      kind: 'harness',
      stepIndex,
      step: line,
      expected: `the model to hold 0x${step.pattern.toString(16)} there`,
      observed: runs.slice(0, 4),
    });
  }
}

async function performOnImplementation(
  ctx: RunContext,
  step: Step,
  stepIndex: number,
  line: string,
): Promise<void> {
  const h = ctx.handle;
  switch (step.kind) {
    case 'write':
      return h.write(step.offset, step.length, step.pattern);
    case 'write-zeroes':
      return h.writeZeroes(step.offset, step.length, step.unmap);
    case 'write-compressed':
      return h.writeCompressed(step.offset, step.length, step.pattern);
    case 'discard':
      return h.discard(step.offset, step.length);
    case 'read': {
      const mismatch = await h.verify([{ offset: step.offset, length: step.length, pattern: step.pattern }]);
      if (mismatch) {
        throw new Divergence({
          kind: 'read-mismatch',
          stepIndex,
          step: line,
          expected: mismatch.expected,
          observed: `at ${mismatch.offset}: ${mismatch.observed}`,
        });
      }
      return;
    }
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
      const args = [
        ...qemuObjectArgs(ctx.layout),
        ...step.ops.flatMap((op) => ['-c', formatStep(op)]),
        ...qemuImageArgs(ctx.layout, ctx.imagePath),
      ];
      const r = await execa(QEMU_IO, args, { reject: false, all: true });
      if (r.exitCode !== 0) {
        throw new Divergence({
          kind: 'qemu-turn-failed',
          stepIndex,
          step: line,
          expected: 'qemu-io exit 0',
          observed: `exit ${String(r.exitCode)}: ${String(r.all).trim().slice(0, 2000)}`,
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
    case 'check':
      await h.close();
      ctx.unwatch();
      await imageOracles(ctx, `${line} (step ${stepIndex})`);
      ctx.watch(`# reopen after ${line}`);
      return h.open();
  }
}

export async function executeStep(ctx: RunContext, step: Step): Promise<void> {
  const refused = expectedRefusal(ctx.model, step);
  const line = formatStepLine(step, refused);
  ctx.steps.push(line);
  const stepIndex = ctx.steps.length - 1;
  ctx.watch(line);
  if (process.env.QCOW2_FUZZ_TRACE) process.stderr.write(`[${ctx.impl.name}] ${stepIndex}: ${line}\n`);
  // (a qemu turn's reads are checked by qemu-io itself: its own `read -P` fails)
  if (step.kind === 'read') assertModelPattern(ctx.model, step, stepIndex, line);
  ctx.operations += step.kind === 'qemu-turn' ? step.ops.length : 1;
  try {
    await performOnImplementation(ctx, step, stepIndex, line);
  } catch (e) {
    if (!(e instanceof ImplementationError)) throw e;
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
