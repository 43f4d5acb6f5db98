/**
 * The VM-state and amend steps' side of step execution (execute-step.ts calls in): what they do
 * to the model, and how they run on an implementation (its handle's `vmStateWrite`,
 * `vmStateVerify` and `amend`, declared by the `vmState` / `amend` capabilities).
 */
import type { ImageLayout } from '../layout.ts';
import type { DiskModel } from '../model/disk-model.ts';
import { vmStateOffset } from '../model/vm-state.ts';
import { writeData, type Step, type VmStateStep } from '../steps.ts';
import { Divergence } from './divergence.ts';
import type { RunContext } from './run-context.ts';

/** The layout fields an `amend -o OPTION` step changes (compat=0.10 also drops lazy refcounts). */
export function amendLayoutChange(option: string): Partial<ImageLayout> {
  const [key, value] = option.split('=') as [string, string];
  if (key === 'compat')
    return value === '0.10' ? { compat: '0.10', lazyRefcounts: false } : { compat: '1.1' };
  if (key === 'refcount_bits') return { refcountBits: Number(value) };
  if (key === 'lazy_refcounts') return { lazyRefcounts: value === 'on' };
  throw new Error(`harness: unknown amend option ${option}`);
}

/**
 * The model's VM-state area follows steps that move or copy it (model/vm-state.ts). Returns true
 * when the step was a VM-state step and is fully applied.
 */
export function applyToVmState(model: DiskModel, step: Step): boolean {
  const vm = model.vmState;
  switch (step.kind) {
    case 'vmstate-write':
      vm.write(vmStateOffset(model.layout, model.size), step.offset, writeData(step));
      model.touched = true; // clusters were allocated (refcount_bits=1 refuses snapshots from now on)
      return true;
    case 'vmstate-read':
      return true;
    case 'resize': {
      const old = model.size;
      // QEMU zero-fills the new area when a longer backing file would show through it.
      const zeroFilled = (model.layout.backing?.size ?? 0) > old;
      const exposed = vm.resized(old, step.size, zeroFilled);
      if (exposed.size === 0) return false;
      model.resize(step.size);
      for (const [at, bytes] of exposed) {
        model.disk.write(at, bytes);
        const cs = model.clusterSize;
        model.maybeAllocated.add(Math.floor(at / cs), Math.ceil((at + bytes.length) / cs));
      }
      return true;
    }
    case 'snapshot-create':
      vm.snapshotCreated(step.name);
      return false;
    case 'snapshot-apply':
      vm.snapshotApplied(step.name);
      return false;
    case 'snapshot-delete':
      vm.snapshotDeleted(step.name);
      return false;
    case 'convert':
      vm.converted();
      return false;
    default:
      return false;
  }
}

export async function performVmStateOrAmend(
  ctx: RunContext,
  step: VmStateStep | { kind: 'amend'; option: string },
  stepIndex: number,
  line: string,
): Promise<void> {
  const h = ctx.handle;
  if (step.kind === 'amend') {
    if (!h.amend) throw new Error(`harness: ${ctx.impl.name} has no amend`);
    await h.amend(step.option);
    ctx.layout = { ...ctx.layout, ...amendLayoutChange(step.option) };
    return;
  }
  if (!h.vmStateWrite || !h.vmStateVerify) throw new Error(`harness: ${ctx.impl.name} has no VM-state area`);
  if (step.kind === 'vmstate-write') return h.vmStateWrite(step.offset, writeData(step), step);
  const model = ctx.model;
  const expected = model.vmState.read(vmStateOffset(model.layout, model.size), step.offset, step.length);
  const mismatch = await h.vmStateVerify(step.offset, expected);
  if (!mismatch) return;
  const i = mismatch.offset - mismatch.observedAt;
  throw new Divergence({
    kind: 'read-mismatch',
    stepIndex,
    step: line,
    category: 'vm-state',
    expected: `the model's VM state over ${step.offset}+${step.length} (byte 0x${expected[mismatch.offset - step.offset]!.toString(16)} at VM-state offset ${mismatch.offset})`,
    observed: `byte 0x${(mismatch.observed[i] ?? 0).toString(16)} there`,
  });
}
