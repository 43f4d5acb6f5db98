/**
 * The engine's `qcow2 info --output=json` (src/cli/info.ts `imageInfo`: header facts, snapshot
 * list with VM-state sizes, clocks and icount, bitmaps with their flags, encryption details)
 * beside the `qemu-img info --output=json` the image oracles already ran, on every closed image.
 * Every member must be equal except the ones about the host file or how it was named (file name,
 * full backing name, actual size). Before it, the fuzz harness read none of the engine's own
 * metadata listings: an engine listing a snapshot's VM-state size, a bitmap's `in-use` flag or a
 * LUKS slot wrongly went unseen as long as the data read back.
 */
import type { Image } from '../../src/api.ts';
import { imageInfo } from '../../src/cli/info.ts';
import { engineOpenSecret, loadEngine } from '../adapters/engine.ts';
import type { ImageLayout } from '../layout.ts';
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';

/** Members that describe the host file or its naming, not the image. */
const NOT_COMPARED = new Set(['filename', 'full-backing-filename', 'actual-size']);

/** The first member where the two answers differ, as `path: qemu-img X, qcow2 Y`. */
export function infoDifference(ours: unknown, theirs: unknown, at = ''): string | undefined {
  if (typeof ours === 'object' && ours !== null && typeof theirs === 'object' && theirs !== null) {
    if (Array.isArray(ours) !== Array.isArray(theirs))
      return `${at || '.'}: qemu-img ${JSON.stringify(theirs)}, qcow2 ${JSON.stringify(ours)}`;
    const a = ours as Record<string, unknown>;
    const b = theirs as Record<string, unknown>;
    for (const k of new Set([...Object.keys(b), ...Object.keys(a)])) {
      if (at === '' && NOT_COMPARED.has(k)) continue;
      const d = infoDifference(a[k], b[k], at === '' ? k : `${at}.${k}`);
      if (d !== undefined) return d;
    }
    return undefined;
  }
  return ours === theirs
    ? undefined
    : `${at}: qemu-img ${JSON.stringify(theirs)}, qcow2 ${JSON.stringify(ours)}`;
}

/** What differs between `qemu-img info`'s JSON and the engine's for the same closed image. */
export async function engineInfoDifference(
  imagePath: string,
  layout: ImageLayout,
  qemuInfo: unknown,
): Promise<string | undefined> {
  const engine = await loadEngine();
  const secret = engineOpenSecret(layout);
  let img: Image | undefined;
  try {
    // as `qcow2 info` opens a layer: read-only, metadata only, the backing file not opened
    img = engine.Qcow2Image.open(imagePath, {
      readOnly: true,
      sync: false,
      openBacking: false,
      noIo: true,
      ...(secret ? { secret } : {}),
    });
    return infoDifference(imageInfo(img, imagePath), qemuInfo);
  } catch (e) {
    return `the engine's info threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  } finally {
    img?.close();
  }
}

/** The oracle, beside the info oracle (the same `qemu-img info` answer). */
export async function infoParityOracle(
  ctx: RunContext,
  label: string,
  qemuInfo: Promise<unknown>,
): Promise<void> {
  let theirs: unknown;
  try {
    theirs = await qemuInfo;
  } catch {
    return; // qemu-img info failing is the info oracle's to report
  }
  const difference = await engineInfoDifference(ctx.imagePath, ctx.layout, theirs);
  if (difference === undefined) return;
  throw new Divergence({
    kind: 'info-parity',
    stepIndex: ctx.steps.length - 1,
    step: label,
    category: `qcow2 info ${difference.split(':')[0]!.replace(/\.\d+/g, '.N')}`,
    expected: 'qcow2 info --output=json says what qemu-img info --output=json says',
    observed: difference,
  });
}
