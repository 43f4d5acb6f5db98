/**
 * Performing the backing-file steps (steps.ts `BackingStep`; their meaning: model/backing-files.ts).
 * Files for a rebase are made by QEMU's tools whatever the implementation (as the first backing
 * file is); `rebase` and `commit` go through the implementation (`qemu-img` for qemu-io, the
 * engine's own for the engine). After a rebase or commit the guest must read what it read before
 * (read back at once), and after a commit the backing file must hold exactly the committed data
 * (`qemu-img convert -O raw` of it against the model; `qemu-img check` too when it is qcow2).
 */
import * as fs from 'node:fs';
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';
import { commitInto } from '../model/backing-files.ts';
import { qemuCreateBacking, qemuImgCheck, qemuImgConvertRaw } from '../qemu/qemu-img.ts';
import { qemuImgConvertBase } from '../qemu/qemu-backing.ts';
import { compareRawFile, rawFileHoles } from '../oracles/compare-raw.ts';
import { checkRead } from '../oracles/read-oracle.ts';
import type { BackingStep } from '../steps.ts';
import type { ReferenceDisk } from '../model/reference-disk.ts';
import { checkOutputText } from '../oracles/check-text.ts';

/**
 * Guests up to this size are read back whole through the implementation after a rebase or commit;
 * larger ones at both ends (the oracles at checkpoints and at the end convert the whole disk).
 */
const READ_BACK_WHOLE = 4 << 20;
const READ_BACK_END = 1 << 20;

export async function performBackingStep(
  ctx: RunContext,
  step: BackingStep,
  stepIndex: number,
  line: string,
): Promise<void> {
  const h = ctx.handle;
  const model = ctx.model;
  switch (step.kind) {
    case 'base-create':
      ctx.unwatch();
      await qemuCreateBacking(ctx.scratch(step.name), step);
      ctx.watch(`# after ${line}`);
      return;
    case 'base-copy': {
      const base = model.requireBase();
      ctx.unwatch();
      const r = await qemuImgConvertBase(
        ctx.scratch(base.name),
        base.format,
        ctx.scratch(step.name),
        step.format,
      );
      if (r.exitCode !== 0)
        throw new Error(`harness: ${line}: qemu-img convert exit ${r.exitCode}: ${r.stderr.trim()}`);
      ctx.watch(`# after ${line}`);
      return;
    }
    case 'rebase':
      if (!h.rebase) throw new Error(`harness: ${ctx.impl.name} has no rebase`);
      await h.rebase(step.name, step.format, step.unsafe);
      await readBack(ctx, stepIndex, line);
      return;
    case 'commit': {
      if (!h.commit) throw new Error(`harness: ${ctx.impl.name} has no commit`);
      const base = model.requireBase();
      const expected = base.disk.clone();
      commitInto(expected, model.disk);
      await h.commit();
      await readBack(ctx, stepIndex, line);
      await h.close();
      ctx.unwatch();
      await checkCommittedBase(ctx, ctx.scratch(base.name), base.format, expected, stepIndex, line);
      ctx.watch(`# reopen after ${line}`);
      await h.open();
      return;
    }
  }
}

/** The guest reads what it read before the step (the model did not change). */
async function readBack(ctx: RunContext, stepIndex: number, line: string): Promise<void> {
  const size = ctx.model.size;
  const where = { kind: 'read-mismatch' as const, stepIndex, step: `${line} (guest read back)` };
  if (size <= READ_BACK_WHOLE) return checkRead(ctx.handle, ctx.model, 0, size, where);
  await checkRead(ctx.handle, ctx.model, 0, READ_BACK_END, where);
  await checkRead(ctx.handle, ctx.model, size - READ_BACK_END, READ_BACK_END, where);
}

/** The committed backing file holds the model's bytes (and checks clean when it is qcow2). */
async function checkCommittedBase(
  ctx: RunContext,
  file: string,
  format: 'qcow2' | 'raw',
  expected: ReferenceDisk,
  stepIndex: number,
  line: string,
): Promise<void> {
  let raw = file;
  if (format === 'qcow2') {
    const report = await qemuImgCheck(file);
    if (report.exitCode !== 0) {
      throw new Divergence({
        kind: 'qemu-img-check',
        stepIndex,
        step: `${line} (the backing file)`,
        expected: 'qemu-img check of the committed backing file: exit 0',
        observed: `exit ${report.exitCode}; ${checkOutputText(report.stderr)}`,
        check: report.json,
      });
    }
    raw = ctx.scratch('committed-base.raw');
    await qemuImgConvertRaw(file, raw);
  }
  try {
    const size = fs.statSync(raw).size;
    const mismatch =
      size === expected.size
        ? compareRawFile(raw, expected, expected.size, await rawFileHoles(raw))
        : undefined;
    if (size !== expected.size || mismatch) {
      throw new Divergence({
        kind: 'convert-mismatch',
        category: 'committed-base',
        stepIndex,
        step: `${line} (the backing file)`,
        expected: mismatch ? mismatch.expected : `${expected.size} bytes`,
        observed: mismatch ? `at ${mismatch.offset}: ${mismatch.observed}` : `${size} bytes`,
      });
    }
  } finally {
    if (raw !== file) fs.rmSync(raw, { force: true });
  }
}
