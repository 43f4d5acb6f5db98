/**
 * `qcow2 check` beside `qemu-img check` on every damage recipe and a fixed sample of mutants:
 * human and JSON output (exit code, stdout, stderr), and on damaged images both repairs
 * (`-r leaks`, `-r all`: their own output, then the check verdict and guest content they leave).
 * Recipes must all agree (or be explained in differences.ts); mutants at least 99%; never a crash.
 * The larger run is `npm run check-parity`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { buildBaseImages, type BaseImage } from './base-images.ts';
import { mutantDamages, recipeDamages, type Damage } from './damage.ts';
import { CHECK_DIFFERENCES } from './differences.ts';
import { sideBySide, type SideBySide } from './side-by-side.ts';

/** The fixed mutant sample (seed 7). */
const MUTANTS = 100;

let dir: string;
let bases: BaseImage[];

beforeAll(async () => {
  await requireQemuTools();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-parity-'));
  bases = await buildBaseImages(path.join(dir, 'bases'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function run(damages: Damage[]): Promise<SideBySide[]> {
  const out: SideBySide[] = [];
  for (const d of damages)
    out.push(
      await sideBySide(
        dir,
        bases.find((b) => b.recipe.name === d.base)!,
        d,
        { repair: true },
      ),
    );
  return out;
}

const differs = (r: SideBySide): boolean => r.disagreements.length > 0 || r.crashed !== undefined;
const show = (r: SideBySide): string =>
  `${r.damage.id}: ${r.crashed ?? r.disagreements.map((d) => `${d.what} [${d.mode}] qemu «${d.qemu}» ours «${d.ours}»`).join('; ')}`;

describe('qcow2 check beside qemu-img check on damaged images', () => {
  it('agrees on every iotests-style recipe, repairs included', async () => {
    const results = await run(recipeDamages(bases));
    expect(results.length).toBeGreaterThan(60);
    expect(results.filter((r) => r.crashed)).toEqual([]);
    const unexplained = results.filter((r) => differs(r) && !(r.damage.id in CHECK_DIFFERENCES)).map(show);
    expect(unexplained).toEqual([]);
    // An explained difference that went away must leave the list.
    const stale = results
      .filter((r) => !differs(r) && r.damage.id in CHECK_DIFFERENCES)
      .map((r) => r.damage.id);
    expect(stale).toEqual([]);
  }, 300_000);

  it('agrees on a fixed sample of mutants, repairs included, but the explained ones', async () => {
    const results = await run(mutantDamages(bases, 7, MUTANTS));
    expect(results.filter((r) => r.crashed).map(show)).toEqual([]);
    const bad = results.filter(differs);
    // Every difference is one differences.ts explains; an explained one that went away must leave.
    expect(bad.filter((r) => !(r.damage.id in CHECK_DIFFERENCES)).map(show)).toEqual([]);
    const explainedMutants = Object.keys(CHECK_DIFFERENCES).filter((id) => id.startsWith('mutant-7-'));
    expect(explainedMutants.filter((id) => !bad.some((r) => r.damage.id === id))).toEqual([]);
    expect(results.length - bad.length).toBeGreaterThanOrEqual(Math.ceil(results.length * 0.98));
  }, 600_000);
});
