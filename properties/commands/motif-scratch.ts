/**
 * Motifs: commands made of a few steps chosen together, because the bug classes qcow2 engines
 * have live in short *interactions* (write, snapshot, overwrite, revert, overwrite again; shrink
 * then grow; two overlapping unaligned writes) that a random sequence of single steps meets
 * rarely within a short campaign. A motif resolves its steps one after the other on a scratch
 * copy of the model, so each step sees the disk the previous ones left, and leaves out any step
 * the model expects to be refused.
 */
import type { DiskModel } from '../model/disk-model.ts';
import { applyToModel, expectedRefusal } from '../runner/execute-step.ts';
import type { Step } from '../steps.ts';

export class MotifScratch {
  readonly model: DiskModel;
  readonly steps: Step[] = [];

  constructor(real: DiskModel) {
    this.model = real.clone();
  }

  get size(): number {
    return this.model.size;
  }

  get clusterSize(): number {
    return this.model.clusterSize;
  }

  /** Adds a step unless the model expects a refusal; returns whether it was added. */
  add(step: Step): boolean {
    if (expectedRefusal(this.model, step)) return false;
    this.steps.push(step);
    applyToModel(this.model, step);
    return true;
  }

  /** A stamped write of [offset, offset + length), clipped to the disk (nothing when empty). */
  write(offset: number, length: number): boolean {
    const r = this.clip(offset, length);
    return r !== undefined && this.add({ kind: 'write', ...r, stamp: this.model.nextWriteId() });
  }

  /** A discard of [offset, offset + length), clipped to the disk. */
  discard(offset: number, length: number): boolean {
    const r = this.clip(offset, length);
    return r !== undefined && this.add({ kind: 'discard', ...r });
  }

  /** A zero write (`-z`, with `-u` when `unmap`) of [offset, offset + length), clipped to the disk. */
  zero(offset: number, length: number, unmap: boolean): boolean {
    const r = this.clip(offset, length);
    return r !== undefined && this.add({ kind: 'write-zeroes', ...r, unmap });
  }

  /** A read of [offset, offset + length), clipped to the disk. */
  read(offset: number, length: number): boolean {
    const r = this.clip(offset, length);
    return r !== undefined && this.add({ kind: 'read', ...r });
  }

  /** A read of the whole clusters [offset, offset + length) touches (at most `maxBytes`). */
  readClusters(offset: number, length: number, maxBytes = 4 << 20): boolean {
    const cs = this.clusterSize;
    const start = Math.floor(offset / cs) * cs;
    const end = Math.min(Math.ceil((offset + length) / cs) * cs, start + Math.max(cs, maxBytes));
    return this.read(start, end - start);
  }

  clip(offset: number, length: number): { offset: number; length: number } | undefined {
    const start = Math.max(0, Math.min(offset, this.size));
    const end = Math.min(this.size, offset + length);
    return end > start ? { offset: start, length: end - start } : undefined;
  }

  /** The steps, or undefined when fewer than `min` were possible (the motif has no legal form). */
  result(min = 2): Step[] | undefined {
    return this.steps.length >= min ? this.steps : undefined;
  }
}

/** An anchor offset in the disk: a recent write's start (even seeds) or a spot the seed picks. */
export function anchorOf(model: DiskModel, seed: number): number {
  const recent = model.recent;
  if (seed % 2 === 0 && recent.length > 0) {
    const r = recent[(seed >> 1) % recent.length];
    if (r.offset < model.size) return r.offset;
  }
  return Math.floor(seed / 2) % Math.max(1, model.size);
}
