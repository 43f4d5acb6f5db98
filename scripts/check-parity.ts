/**
 * `npm run check-parity [-- --mutants N --seed S|--seeds S1,S2,... --no-repair --only ID --dump DIR]`: qcow2 check beside qemu-img check on
 * every damage recipe and N seeded mutants; prints the agreement figures and every difference.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { buildBaseImages } from '../properties/damage/base-images.ts';
import {
  applyDamage,
  damageScript,
  mutantDamages,
  recipeDamages,
  type Damage,
} from '../properties/damage/damage.ts';
import { sideBySide, type SideBySide } from '../properties/damage/side-by-side.ts';
import { requireQemuTools } from '../properties/qemu/qemu-img.ts';

const { values } = parseArgs({
  options: {
    mutants: { type: 'string', default: '150' },
    seed: { type: 'string', default: '1' },
    /** Comma-separated seeds: N mutants for each (overrides --seed). */
    seeds: { type: 'string' },
    'no-repair': { type: 'boolean', default: false },
    only: { type: 'string' },
    dump: { type: 'string' },
  },
});
await requireQemuTools();
const t0 = Date.now();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-parity-'));
try {
  const bases = await buildBaseImages(path.join(dir, 'bases'));
  const recipes = recipeDamages(bases);
  const seeds = (values.seeds ?? values.seed).split(',').map(Number);
  const mutants = seeds.flatMap((seed) => mutantDamages(bases, seed, Number(values.mutants)));
  const all = [...recipes, ...mutants].filter((d) => !values.only || d.id.includes(values.only));
  const results: SideBySide[] = [];
  for (const d of all) {
    const base = bases.find((b) => b.recipe.name === d.base)!;
    results.push(await sideBySide(dir, base, d, { repair: !values['no-repair'] }));
  }
  const tally = (family: Damage['family']): string => {
    const rs = results.filter((r) => r.damage.family === family);
    const ok = rs.filter((r) => r.disagreements.length === 0 && !r.crashed).length;
    return `${family}s: ${ok}/${rs.length} agree (${rs.length ? ((ok * 100) / rs.length).toFixed(1) : '0'}%)`;
  };
  for (const r of results) {
    if (r.disagreements.length === 0 && !r.crashed) continue;
    console.log(`\n${r.damage.id} (${r.damage.what}; qemu exit ${r.qemuExit})`);
    if (r.crashed) console.log(`  CRASH: ${r.crashed}`);
    if (values.dump) {
      // The damaged image and its qemu-only script, to look at by hand.
      const base = bases.find((b) => b.recipe.name === r.damage.base)!;
      fs.mkdirSync(values.dump, { recursive: true });
      fs.writeFileSync(path.join(values.dump, `${r.damage.id}.qcow2`), applyDamage(base.bytes, r.damage));
      fs.writeFileSync(path.join(values.dump, `${r.damage.id}.sh`), damageScript(r.damage, base));
    }
    for (const d of r.disagreements)
      console.log(`  ${d.what} [${d.mode}]\n    qemu: ${d.qemu}\n    ours: ${d.ours}`);
  }
  console.log(`\n${tally('recipe')}; ${tally('mutant')} (seeds ${seeds.join(',')}, ${values.mutants} each)`);
  const cpu = process.cpuUsage();
  console.log(
    `wall ${((Date.now() - t0) / 1000).toFixed(1)} s; our process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s (qemu-img runs are child processes, not counted)`,
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
