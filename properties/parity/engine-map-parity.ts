/**
 * The engine's block status (`qcow2 map`, `Image.blockStatus`, what its convert uses to skip zero
 * and unallocated ranges) beside `qemu-img map --output=json`, on the image the sequence left.
 * Both read the same closed file, so every extent must agree: start, length, depth, present, zero,
 * data and host offset (the backing file's name aside), exactly: the zero flag of a data extent
 * from a host-file hole (when QEMU asks the file below: a metadata-preallocated-looking image),
 * a raw backing file's tail sector past its end (QEMU counts whole sectors), extents unmerged.
 * Before it, the fuzz harness never asked the engine for block status at all (mutation testing: src/engine/block-status.ts never reached), so
 * a map that called written data a hole, or a hole data, went unseen.
 */
import type { Image } from '../../src/api.ts';
import { mapExtents, type MapEntry } from '../../src/cli/map.ts';
import { engineOpenSecret, loadEngine } from '../adapters/engine.ts';
import { qemuImageArgs, qemuObjectArgs, type ImageLayout } from '../layout.ts';
import { qemuImg } from '../qemu/qemu-img.ts';
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';

export type Extent = Omit<MapEntry, 'filename'>;

function extent(e: Record<string, unknown>): Extent {
  return {
    start: Number(e.start),
    length: Number(e.length),
    depth: Number(e.depth),
    present: e.present === true,
    zero: e.zero === true,
    data: e.data === true,
    offset: typeof e.offset === 'number' ? e.offset : undefined,
  };
}

const show = (e: Extent | undefined): string =>
  e === undefined
    ? 'nothing'
    : `[${e.start}, +${e.length}) depth ${e.depth}${e.present ? ' present' : ''}${e.zero ? ' zero' : ''}${e.data ? ' data' : ''}${e.offset !== undefined ? ` at host 0x${e.offset.toString(16)}` : ''}`;

/** The first extent where the engine's map and qemu-img's differ, in words, led by the field (undefined: they agree). */
export async function engineMapDifference(
  imagePath: string,
  layout: ImageLayout,
): Promise<string | undefined> {
  const r = await qemuImg([
    'map',
    '--output=json',
    ...qemuObjectArgs(layout),
    ...qemuImageArgs(layout, imagePath),
  ]);
  // qemu-img failing to map the image is for the convert and check oracles to report
  if (r.exitCode !== 0) return undefined;
  const theirs = (JSON.parse(r.stdout) as Array<Record<string, unknown>>).map(extent);
  const engine = await loadEngine();
  const secret = engineOpenSecret(layout);
  let img: Image | undefined;
  let ours: Extent[];
  try {
    img = engine.Qcow2Image.open(imagePath, { readOnly: true, sync: false, ...(secret ? { secret } : {}) });
    ours = mapExtents(img).map((e) => extent({ ...e }));
  } catch (e) {
    return `the engine's map threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  } finally {
    img?.close();
  }
  return mapDifference(ours, theirs);
}

/** The first difference of two maps, led by the field that differs. */
export function mapDifference(ours: readonly Extent[], theirs: readonly Extent[]): string | undefined {
  const key = (e: Extent | undefined): string => JSON.stringify(e ?? null);
  for (let i = 0; i < Math.max(ours.length, theirs.length); i++) {
    if (key(ours[i]) !== key(theirs[i])) {
      const a = ours[i];
      const b = theirs[i];
      const field =
        a && b ? (Object.keys(b) as Array<keyof Extent>).find((k) => a[k] !== b[k]) : 'extent count';
      return `${String(field)}: extent ${i}: qemu-img map ${show(b)}, qcow2 map ${show(a)}`;
    }
  }
  return undefined;
}

/** The oracle: at the end of a sequence (the image closed), the two maps must agree. */
export async function mapParityOracle(ctx: RunContext, label: string): Promise<void> {
  const difference = await engineMapDifference(ctx.imagePath, ctx.layout);
  if (difference === undefined) return;
  throw new Divergence({
    kind: 'map-parity',
    stepIndex: ctx.steps.length - 1,
    step: label,
    category: `qcow2 map ${difference.split(':')[0]}`,
    expected: 'qcow2 map lists the extents qemu-img map --output=json lists',
    observed: difference,
  });
}
