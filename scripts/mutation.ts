/**
 * `npm run mutation`: StrykerJS over src/ with a fixed-seed fuzz slice as the only test
 * (mutation/fuzz-slice.mutation.test.ts), sampled so that it ends within the time budget: a fixed-seed
 * random choice of line ranges of src/engine and src/image.ts is mutated (Stryker's `--mutate
 * file:start-end`). Prints the mutation score and the surviving mutants by file. Not part of CI.
 *
 * Usage: tsx scripts/mutation.ts [--ranges N] [--lines L] [--seed S]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const RANGES = arg('ranges', 24);
const LINES = arg('lines', 25);
let seed = arg('seed', 1) >>> 0;
const random = (): number => {
  // mulberry32: the same sample for the same seed
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const files = ['src/image.ts', ...fs.readdirSync('src/engine').map((f) => path.join('src/engine', f))].filter(
  (f) => f.endsWith('.ts'),
);
const lineCounts = files.map((f) => fs.readFileSync(f, 'utf8').split('\n').length);
const total = lineCounts.reduce((a, b) => a + b, 0);
const specs: string[] = [];
for (let i = 0; i < RANGES; i++) {
  let at = Math.floor(random() * total);
  let k = 0;
  while (at >= lineCounts[k]) at -= lineCounts[k++];
  const start = Math.max(1, at);
  specs.push(`${files[k]}:${start}-${Math.min(lineCounts[k], start + LINES)}`);
}
process.stdout.write(`mutating ${RANGES} sampled ranges of ${LINES} lines:\n  ${specs.join('\n  ')}\n`);
const r = await execa('npx', ['stryker', 'run', '--mutate', specs.join(',')], {
  stdio: 'inherit',
  reject: false,
});

const report = 'reports/mutation/mutation.json';
if (!fs.existsSync(report)) {
  process.stderr.write(`no report (${report}); stryker exit ${String(r.exitCode)}\n`);
  process.exit(2);
}
interface Mutant {
  status: string;
  mutatorName: string;
  replacement?: string;
  location: { start: { line: number } };
}
const json = JSON.parse(fs.readFileSync(report, 'utf8')) as { files: Record<string, { mutants: Mutant[] }> };
let killed = 0;
let survived = 0;
const survivors: string[] = [];
for (const [file, { mutants }] of Object.entries(json.files)) {
  for (const m of mutants) {
    if (m.status === 'Killed' || m.status === 'Timeout') killed++;
    else if (m.status === 'Survived' || m.status === 'NoCoverage') {
      survived++;
      survivors.push(
        `${file}:${m.location.start.line} ${m.mutatorName}${m.replacement ? ` → ${m.replacement.slice(0, 60)}` : ''} (${m.status})`,
      );
    }
  }
}
const score = killed + survived > 0 ? (100 * killed) / (killed + survived) : 0;
process.stdout.write(
  `\nmutation score: ${score.toFixed(1)}% (${killed} killed or timed out, ${survived} survived or not covered)\nsurvivors by file:\n  ${survivors.sort().join('\n  ')}\n`,
);
