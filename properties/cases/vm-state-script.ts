/**
 * How the VM-state and amend steps print in a case's bash script (script-writer.ts): VM-state
 * writes and reads are qemu-io commands (`write -b`, and `read -b -P` per run of one byte of the
 * model's VM state, so qemu-io checks them itself); amend is `qemu-img amend -o`. A grow that turns
 * VM state into guest data puts those bytes into the expected raw file too.
 */
import type { DiskModel } from '../model/disk-model.ts';
import { expectedPieces } from '../model/compare-bytes.ts';
import { vmStateOffset } from '../model/vm-state.ts';
import { formatStep, type Step } from '../steps.ts';

/** The qemu-io commands of a VM-state step (read: one checked `read -b -P` per uniform run). */
export function vmStateCommands(model: DiskModel, step: Step): string[] {
  if (step.kind === 'vmstate-write') return [formatStep(step)];
  if (step.kind !== 'vmstate-read') return [];
  const expected = model.vmState.read(vmStateOffset(model.layout, model.size), step.offset, step.length);
  return expectedPieces(expected).map((p) =>
    p.uniform !== undefined
      ? `read -b -P 0x${p.uniform.toString(16).padStart(2, '0')} ${step.offset + p.from} ${p.to - p.from}`
      : `read -b ${step.offset + p.from} ${p.to - p.from}`,
  );
}

/** Commands for the expected raw file when a grow exposes VM state as guest data. */
export function exposedShadowCommands(model: DiskModel, step: Step): string[] {
  if (step.kind !== 'resize' || step.size <= model.size) return [];
  const scratch = model.vmState.clone();
  const zeroFilled = (model.layout.backing?.size ?? 0) > model.size;
  const out: string[] = [];
  for (const [at, bytes] of scratch.resized(model.size, step.size, zeroFilled))
    out.push(`write -P 0x${bytes[0]!.toString(16).padStart(2, '0')} ${at} ${bytes.length}`);
  return out;
}
