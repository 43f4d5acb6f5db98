/**
 * The oracles run on the closed image, at the end of every sequence and at random points:
 * `qemu-img check` is clean (exit 0: a leak is a failure too), `qemu-img convert -O raw` equals the
 * model, every snapshot equals its copy, `qemu-img info` lists the same snapshot names and size.
 */
import * as fs from 'node:fs';
import { Divergence, type DivergenceKind } from '../runner/divergence.ts';
import { errorClass } from '../runner/signature.ts';
import type { RunContext } from '../runner/run-context.ts';
import {
  imageInfoOf,
  qemuImgSnapshot,
  qemuImgCheck,
  qemuImgConvertRaw,
  qemuImgInfoJson,
  QemuImgFailed,
  type CheckReport,
} from '../qemu/qemu-img.ts';
import { bitmapOracle } from './bitmap-oracle.ts';
import { qemuImgBitmap } from '../qemu/qemu-bitmaps.ts';
import { compareRawFile, rawFileHoles } from './compare-raw.ts';
import { checkRead } from './read-oracle.ts';
import type { SnapshotCopy } from '../model/disk-model.ts';
import { imageFactMismatches } from './image-facts.ts';
import { checkOutputText } from './check-text.ts';
import { engineCheckDifferences } from '../parity/engine-check-parity.ts';
import { mapParityOracle } from '../parity/engine-map-parity.ts';
import { infoParityOracle } from '../parity/engine-info-parity.ts';

function where(ctx: RunContext, label: string): { stepIndex: number; step: string } {
  return { stepIndex: ctx.steps.length - 1, step: label };
}

/**
 * qemu-img refusing the image under test (it ran, and exited non-zero: say EIO on a compressed
 * cluster whose descriptor is too short) is that oracle's divergence, the implementation's failure;
 * anything else goes on as it was (a harness failure).
 */
async function orRefused<T>(
  p: Promise<T>,
  ctx: RunContext,
  label: string,
  kind: DivergenceKind,
  what: string,
): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (!(e instanceof QemuImgFailed)) throw e;
    throw new Divergence({
      kind,
      ...where(ctx, label),
      category: `qemu-img failed: ${errorClass(e.stderr.trim().split('\n')[0] ?? '')}`,
      expected: `${what} reads the image (exit 0)`,
      observed: `exit ${e.exitCode}: ${e.stderr.trim().split('\n').slice(0, 5).join(' | ')}`,
    });
  }
}

/** The divergence a `qemu-img check` report is (exit non-zero, or anything counted), else undefined. */
export function checkDivergence(
  report: CheckReport,
  stepIndex: number,
  label: string,
): Divergence | undefined {
  const counts = report.json ?? {};
  const bad = ['check-errors', 'corruptions', 'leaks'].filter(
    (k) => typeof counts[k] === 'number' && counts[k] !== 0,
  );
  if (report.exitCode === 0 && bad.length === 0 && report.json) return undefined;
  return new Divergence({
    kind: 'qemu-img-check',
    stepIndex,
    step: label,
    expected: 'qemu-img check exit 0, no corruptions, no leaks',
    // (ERROR lines before the per-cluster leak lines: the known-bugs list matches this text)
    observed: `exit ${report.exitCode}; ${checkOutputText(report.stderr)}`,
    check: report.json,
  });
}

export async function checkOracle(ctx: RunContext, label: string): Promise<void> {
  const report = await qemuImgCheck(ctx.imagePath, ctx.layout);
  const divergence = checkDivergence(report, where(ctx, label).stepIndex, label);
  if (divergence) throw divergence;
  // the engine's own checker must agree with qemu-img's on a clean image (parity/engine-check-parity.ts)
  const parity = engineCheckDifferences(ctx.imagePath, ctx.layout, report);
  if (parity.length > 0)
    throw new Divergence({
      kind: 'check-parity',
      ...where(ctx, label),
      category: `qcow2 check ${parity[0]!.split(':')[0]}`,
      expected: 'qcow2 check prints what qemu-img check --output=json prints',
      observed: parity.join('; '),
    });
}

export async function convertOracle(ctx: RunContext, label: string): Promise<void> {
  const out = ctx.scratch('active.raw');
  try {
    await orRefused(
      qemuImgConvertRaw(ctx.imagePath, out, undefined, ctx.layout),
      ctx,
      label,
      'convert-mismatch',
      'qemu-img convert -O raw',
    );
    const mismatch = compareRawFile(out, ctx.model.disk, ctx.model.size, await rawFileHoles(out));
    if (mismatch) {
      throw new Divergence({
        kind: 'convert-mismatch',
        ...where(ctx, label),
        offset: mismatch.offset,
        expected: mismatch.expected,
        observed: `at ${mismatch.offset}: ${mismatch.observed}`,
      });
    }
    const size = fs.statSync(out).size;
    if (size !== ctx.model.size) {
      throw new Divergence({
        kind: 'virtual-size',
        ...where(ctx, label),
        expected: ctx.model.size,
        observed: size,
      });
    }
  } finally {
    fs.rmSync(out, { force: true });
  }
}

/**
 * Each snapshot: `convert -l snapshot.name=S` (qemu 7.2 exports the image's *current* virtual
 * size: the snapshot's own length must match, the rest be zero (without a backing file); a snapshot larger than the
 * current disk is cut at the current size, so such a snapshot is also checked whole by applying it
 * to a copy of the image and converting that).
 */
export async function snapshotOracle(ctx: RunContext, label: string): Promise<void> {
  // Each snapshot apart (scratch files of its own), side by side; the first failure in the
  // snapshots' order is reported, as when they ran one after another.
  const outcomes = await Promise.allSettled(
    [...ctx.model.snapshots.values()].map((snap, i) => oneSnapshot(ctx, label, snap, i)),
  );
  for (const o of outcomes) if (o.status === 'rejected') throw o.reason;
}

async function oneSnapshot(ctx: RunContext, label: string, snap: SnapshotCopy, i: number): Promise<void> {
  const out = ctx.scratch(`snapshot-${i}.raw`);
  try {
    await orRefused(
      qemuImgConvertRaw(ctx.imagePath, out, snap.name, ctx.layout),
      ctx,
      `${label}: qemu-img convert -l snapshot.name=${snap.name}`,
      'snapshot-mismatch',
      `qemu-img convert -l snapshot.name=${snap.name}`,
    );
    const exported = fs.statSync(out).size;
    // With a backing file, the export beyond a smaller snapshot's own size reads through to the
    // backing file (QEMU 7.2): only the snapshot's own length is compared then.
    if (ctx.layout.backing && exported > snap.disk.size) fs.truncateSync(out, snap.disk.size);
    // Past the snapshot's own disk the export shows the VM state its L1 copy maps (write -b before
    // the snapshot): those sectors must hold it, and are then zeroed so the rest compares to zeros.
    const vmMismatch = ctx.layout.backing ? undefined : exportedVmState(out, ctx, snap, exported);
    if (vmMismatch) {
      throw new Divergence({
        kind: 'snapshot-mismatch',
        ...where(ctx, `${label}: qemu-img convert -l snapshot.name=${snap.name}`),
        expected: `snapshot ${snap.name}'s VM state at ${vmMismatch.offset}: ${vmMismatch.expected}`,
        observed: `at ${vmMismatch.offset}: ${vmMismatch.observed}`,
      });
    }
    const mismatch = compareRawFile(
      out,
      snap.disk,
      Math.min(exported, snap.disk.size),
      await rawFileHoles(out),
    );
    if (mismatch || exported !== ctx.model.size) {
      throw new Divergence({
        kind: 'snapshot-mismatch',
        ...where(ctx, `${label}: qemu-img convert -l snapshot.name=${snap.name}`),
        ...(mismatch ? { offset: mismatch.offset } : {}),
        expected: mismatch?.expected ?? `an export of ${ctx.model.size} bytes`,
        observed: mismatch ? `at ${mismatch.offset}: ${mismatch.observed}` : `${exported} bytes`,
      });
    }
    if (snap.disk.size > exported && ctx.layout.compat === '1.1') {
      const copy = ctx.scratch(`snapshot-copy-${i}.qcow2`);
      fs.copyFileSync(ctx.imagePath, copy);
      try {
        // QEMU refuses to apply a snapshot while the image has bitmaps: the copy drops them first.
        for (const b of ctx.model.bitmaps.list) {
          const removed = await qemuImgBitmap(
            copy,
            { kind: 'bitmap', op: 'remove', name: b.name },
            ctx.layout,
          );
          if (removed.exitCode !== 0)
            await orRefused(
              Promise.reject(new QemuImgFailed(['bitmap', '--remove'], removed.exitCode, removed.stderr)),
              ctx,
              `${label}: snapshot ${snap.name} applied to a copy`,
              'snapshot-mismatch',
              `qemu-img bitmap --remove ${b.name} on a copy`,
            );
        }
        const applied = await qemuImgSnapshot(copy, 'apply', snap.name, ctx.layout);
        if (applied.exitCode !== 0)
          await orRefused(
            Promise.reject(new QemuImgFailed(['snapshot', '-a'], applied.exitCode, applied.stderr)),
            ctx,
            `${label}: snapshot ${snap.name} applied to a copy`,
            'snapshot-mismatch',
            `qemu-img snapshot -a ${snap.name} on a copy`,
          );
        await orRefused(
          qemuImgConvertRaw(copy, out, undefined, ctx.layout),
          ctx,
          `${label}: snapshot ${snap.name} applied to a copy`,
          'snapshot-mismatch',
          'qemu-img convert -O raw of the copy',
        );
        const whole = compareRawFile(out, snap.disk, snap.disk.size, await rawFileHoles(out));
        const wholeSize = fs.statSync(out).size;
        if (whole || wholeSize !== snap.disk.size) {
          throw new Divergence({
            kind: 'snapshot-mismatch',
            ...where(ctx, `${label}: snapshot ${snap.name} applied to a copy`),
            expected: whole?.expected ?? `${snap.disk.size} bytes`,
            observed: whole ? `at ${whole.offset}: ${whole.observed}` : `${wholeSize} bytes`,
          });
        }
      } finally {
        fs.rmSync(copy, { force: true });
      }
    }
  } finally {
    fs.rmSync(out, { force: true });
  }
}

/** `json`: the image's `qemu-img info --output=json` when the caller has it (shared with bitmapOracle). */
export async function infoOracle(ctx: RunContext, label: string, json?: Promise<unknown>): Promise<void> {
  const info = imageInfoOf(
    await orRefused(
      json ?? qemuImgInfoJson(ctx.imagePath, ctx.layout),
      ctx,
      label,
      'image-facts',
      'qemu-img info',
    ),
  );
  const expected = [...ctx.model.snapshots.keys()];
  if (JSON.stringify(info.snapshotNames) !== JSON.stringify(expected)) {
    throw new Divergence({
      kind: 'snapshot-list',
      ...where(ctx, label),
      expected,
      observed: info.snapshotNames,
    });
  }
  if (info.virtualSize !== ctx.model.size) {
    throw new Divergence({
      kind: 'virtual-size',
      ...where(ctx, label),
      expected: ctx.model.size,
      observed: info.virtualSize,
    });
  }
  const facts = imageFactMismatches(ctx.layout, info.json);
  if (facts.length > 0) {
    throw new Divergence({
      kind: 'image-facts',
      ...where(ctx, label),
      category: facts[0]!.split(':')[0],
      expected: 'the header facts of the layout (as amended)',
      observed: facts.join('; '),
    });
  }
}

/**
 * All image oracles; the image must be closed. They only read it (qemu-img's read-only opens share
 * it) and write scratch files of their own, so they run side by side; what is reported is still
 * the first failure in this order, as when they ran one after another.
 */
export async function imageOracles(ctx: RunContext, label: string): Promise<void> {
  // One `qemu-img info` for the info and the bitmap oracles.
  const info = qemuImgInfoJson(ctx.imagePath, ctx.layout);
  info.catch(() => {}); // (its failure is each user's to report)
  const outcomes = await Promise.allSettled([
    checkOracle(ctx, label),
    infoOracle(ctx, label, info),
    convertOracle(ctx, label),
    snapshotOracle(ctx, label),
    bitmapOracle(ctx, label, info),
    // the engine's own info beside qemu-img's (parity/engine-info-parity.ts)
    infoParityOracle(ctx, label, info),
  ]);
  for (const o of outcomes) if (o.status === 'rejected') throw o.reason;
}

/** Reopen through the implementation and read the whole disk back. */
export async function reopenOracle(ctx: RunContext, label: string): Promise<void> {
  await ctx.handle.open();
  await checkRead(ctx.handle, ctx.model, 0, ctx.model.size, {
    kind: 'reopen-mismatch',
    ...where(ctx, label),
  });
  await ctx.handle.close();
}

/** The end of a sequence: close, every image oracle, then reopen and read. */
export async function finalOracles(ctx: RunContext): Promise<void> {
  await ctx.settle();
  ctx.watch('# end of sequence: close');
  await ctx.handle.close();
  ctx.unwatch();
  await imageOracles(ctx, 'end of sequence');
  // the engine's block status beside qemu-img map (parity/engine-map-parity.ts)
  await mapParityOracle(ctx, 'end of sequence: qemu-img map and qcow2 map');
  ctx.watch('# end of sequence: reopen and read');
  await reopenOracle(ctx, 'end of sequence: reopen and read');
}

/**
 * Checks the VM-state sectors of `snap` inside an export of `exported` bytes (past the snapshot's
 * disk) and zeroes them in the scratch file; the first sector that differs, if any.
 */
function exportedVmState(
  out: string,
  ctx: RunContext,
  snap: SnapshotCopy,
  exported: number,
): { offset: number; expected: string; observed: string } | undefined {
  const sectors = ctx.model.vmState.savedIn(snap.name, snap.disk.size, exported);
  if (sectors.length === 0) return undefined;
  const hex = (b: Uint8Array): string =>
    Array.from(b.subarray(0, 16), (x) => x.toString(16).padStart(2, '0')).join(' ');
  const fd = fs.openSync(out, 'r+');
  try {
    for (const [at, want] of sectors) {
      const len = Math.min(want.length, exported - at);
      const got = Buffer.alloc(len);
      fs.readSync(fd, got, 0, len, at);
      if (Buffer.compare(got, want.subarray(0, len)) !== 0) {
        let i = 0;
        while (got[i] === want[i]) i++;
        return { offset: at + i, expected: hex(want.subarray(i)), observed: hex(got.subarray(i)) };
      }
      fs.writeSync(fd, Buffer.alloc(len), 0, len, at);
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
