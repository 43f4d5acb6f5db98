/**
 * The bitmap oracle (closed image): `qemu-img info` lists exactly the model's bitmaps (names in
 * order, granularity, `auto` = enabled, never `in-use` after a clean close), and every bitmap's
 * dirty bits, read by QEMU through an NBD export, equal the model's dirty set exactly (model/bitmaps.ts).
 */
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';
import { bitmapsOfInfo, readAllDirtyBits, type DirtyRange } from '../qemu/qemu-bitmaps.ts';
import { qemuImgInfoJson } from '../qemu/qemu-img.ts';

function show(ranges: readonly DirtyRange[]): string {
  const text = ranges.map((r) => `[${r.offset}, +${r.length})`).join(' ');
  return text === '' ? 'nothing dirty' : text;
}

/** `info`: the image's `qemu-img info --output=json` when the caller has it (one run for two oracles). */
export async function bitmapOracle(ctx: RunContext, label: string, info?: Promise<unknown>): Promise<void> {
  const model = ctx.model.bitmaps;
  const where = { stepIndex: ctx.steps.length - 1, step: label };
  // An image that never had a bitmap is left to the other oracles (no qemu-img info round).
  if (model.size === 0 && !ctx.layout.bitmaps?.length) return;
  const listed = bitmapsOfInfo(await (info ?? qemuImgInfoJson(ctx.imagePath, ctx.layout)));
  const expected = model.list.map((b) => `${b.name} g=${b.granularity} [${b.enabled ? 'auto' : ''}]`);
  const observed = listed.map((b) => `${b.name} g=${b.granularity} [${b.flags.join(',')}]`);
  if (JSON.stringify(expected) !== JSON.stringify(observed)) {
    throw new Divergence({ kind: 'bitmap-list', ...where, expected, observed });
  }
  const all = await readAllDirtyBits(
    ctx.imagePath,
    model.list.map((b) => b.name),
    ctx.layout,
  );
  for (const b of model.list) {
    const bits = all.get(b.name)!;
    if (!bits.ok) {
      throw new Divergence({
        kind: 'bitmap-bits',
        ...where,
        category: 'unreadable',
        expected: `bitmap ${b.name} readable through qemu-nbd`,
        observed: bits.error,
      });
    }
    const want = b.dirtyRanges(ctx.model.size);
    if (JSON.stringify(want) !== JSON.stringify(bits.ranges)) {
      const missed = want.some(
        (w) => !bits.ranges.some((r) => r.offset <= w.offset && w.offset + w.length <= r.offset + r.length),
      );
      throw new Divergence({
        kind: 'bitmap-bits',
        ...where,
        category: missed ? 'missed' : 'extra',
        expected: `${b.name}: ${show(want)}`,
        observed: `${b.name}: ${show(bits.ranges)}`,
      });
    }
  }
}
