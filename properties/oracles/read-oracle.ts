/**
 * The read oracle: the image's bytes over a range equal the model's exactly; a difference is
 * explained in words (explain-read.ts) and becomes a divergence whose category says what kind of
 * wrong it is (misplaced, stale, lost, never-written, …).
 */
import type { ImageHandle } from '../adapters/adapter.ts';
import { ImplementationError } from '../adapters/adapter.ts';
import type { DiskModel } from '../model/disk-model.ts';
import { Divergence, type DivergenceKind } from '../runner/divergence.ts';
import { contextWindow, explainReadMismatch } from './explain-read.ts';

/** The model is read in pieces of this size (a 1 GiB disk is never materialised at once). */
const PIECE = 16 << 20;
const ZEROS = new Uint8Array(PIECE);
/**
 * The model's side of a read, reused from check to check (a read of 8 MiB allocated 8 MiB of
 * garbage each time). Taken by one check at a time: while a pipelined handle holds it (several
 * reads in flight), the next check makes its own.
 */
let spare: Uint8Array | undefined;

export async function checkRead(
  handle: ImageHandle,
  model: DiskModel,
  offset: number,
  length: number,
  where: { kind: DivergenceKind; stepIndex: number; step: string },
): Promise<void> {
  for (let from = offset; from < offset + length; from += PIECE) {
    const len = Math.min(PIECE, offset + length - from);
    let expected: Uint8Array = ZEROS.subarray(0, len);
    let taken: Uint8Array | undefined;
    if (!model.disk.isZeroRange(from, len)) {
      taken = spare !== undefined && spare.length >= len ? spare : new Uint8Array(Math.max(len, 64 << 10));
      spare = undefined;
      expected = taken.subarray(0, len);
      model.disk.readInto(from, expected);
    }
    let mismatch;
    try {
      mismatch = await handle.verify(from, expected);
    } finally {
      // the buffer is free again once the handle has compared (a pipelined handle holds it until then)
      if (taken && (spare === undefined || spare.length < taken.length)) spare = taken;
    }
    if (!mismatch) continue;
    const window = contextWindow(mismatch.offset, model.size);
    let observed = { at: mismatch.observedAt, bytes: mismatch.observed };
    try {
      observed = { at: window.at, bytes: await handle.read(window.at, window.length) };
    } catch (e) {
      if (!(e instanceof ImplementationError)) throw e; // keep what the verify saw
    }
    const explanation = explainReadMismatch({
      offset: mismatch.offset,
      expected: { at: window.at, bytes: model.read(window.at, window.length) },
      observed,
      lastWriteId: model.lastWriteId,
      patternsWritten: model.patternsWritten,
      writeRange: (id) => model.writeRange(id),
    });
    throw new Divergence({
      ...where,
      category: explanation.category,
      offset: mismatch.offset,
      expected: `the model's bytes over ${from}+${len}`,
      observed: explanation.words,
    });
  }
}
