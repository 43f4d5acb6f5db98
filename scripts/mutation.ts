/**
 * `npm run mutation`: StrykerJS over src/ with a fixed-seed fuzz slice as the only test
 * (mutation/fuzz-slice.mutation.test.ts). Prints the mutation score, the counts by status and the
 * surviving mutants by file. Not part of CI.
 *
 * Sampling, so that a run ends within the time budget: every mutant of the chosen files is listed
 * first (Stryker's own instrumenter, no test run), then a fixed-seed random choice of mutation
 * SITES (one source location; Stryker mutates a location with all of its mutators) is drawn until
 * the sample holds `--mutants` mutants. Stryker is then told exactly those locations
 * (`--mutate file:line:col-line:col`). A location also takes in the mutants nested inside it, so a
 * site enclosing more than `--max-nested` mutants (a whole function body's BlockStatement, say) is
 * passed over: the sample leaves out whole-block removals, which the slice kills almost always.
 * Mutants the slice never executes (NoCoverage) cost no test run.
 *
 * Budget (measured 2026-11-26, 2 cores, load 8-17, niced): over all of src/, 110 mutants held 24
 * the slice reaches and took 8.8 min; over src/engine, src/image.ts and src/format, 162 held 79 and
 * took 25.6 min (~19 s per reached mutant). The default, 300 over src/ (~65 reached), is sized
 * from those to end within ~30-45 minutes under that load.
 *
 * Usage: tsx scripts/mutation.ts [--mutants N] [--seed S] [--files src/engine,src/image.ts]
 *                                [--max-nested K] [--list-only]
 *        tsx scripts/mutation.ts --sites FILE   (exactly the sites listed in FILE, one
 *                                                `file:line:col-line:col` a line: a re-run of
 *                                                survivors, e.g. an earlier reports/mutation/sample.txt)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { Instrumenter } from '@stryker-mutator/instrumenter';
import type { InstrumenterOptions } from '@stryker-mutator/instrumenter';
import type { Logger } from '@stryker-mutator/api/logging';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const MUTANTS = Number(arg('mutants', '300'));
const MAX_NESTED = Number(arg('max-nested', '6'));
const ROOTS = arg('files', 'src').split(',');
const LIST_ONLY = process.argv.includes('--list-only');
let seed = Number(arg('seed', '1')) >>> 0;
const random = (): number => {
  // mulberry32: the same sample for the same seed
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

function tsFiles(root: string): string[] {
  if (root.endsWith('.ts')) return [root];
  return fs
    .readdirSync(root, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(root, f))
    .sort();
}
const files = [...new Set(ROOTS.flatMap(tsFiles))];

// 1. Every mutant of those files, as Stryker would place them (lines 0-based, columns 0-based).
const quiet = {
  isTraceEnabled: () => false,
  isDebugEnabled: () => false,
  isInfoEnabled: () => false,
  isWarnEnabled: () => true,
  isErrorEnabled: () => true,
  isFatalEnabled: () => true,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (m: string) => process.stderr.write(`${m}\n`),
  error: (m: string) => process.stderr.write(`${m}\n`),
  fatal: (m: string) => process.stderr.write(`${m}\n`),
} satisfies Logger;
// (With --sites, nothing is listed: the sites are given.)
const SITES = arg('sites', '');
const instrumented = await new Instrumenter(quiet).instrument(
  (SITES ? [] : files).map((name) => ({
    name,
    mutate: true as const,
    content: fs.readFileSync(name, 'utf8'),
  })),
  { ignorers: [], plugins: null, excludedMutations: [] } satisfies InstrumenterOptions,
);
interface Pos {
  line: number;
  column: number;
}
interface Loc {
  start: Pos;
  end: Pos;
}
const before = (a: Pos, b: Pos): boolean => a.line < b.line || (a.line === b.line && a.column <= b.column);
const includes = (outer: Loc, inner: Loc): boolean =>
  before(outer.start, inner.start) && before(inner.end, outer.end);
const all = instrumented.mutants.map((m) => ({ id: m.id, file: m.fileName, loc: m.location as Loc }));
const sites = new Map<string, { file: string; loc: Loc }>();
for (const m of all) {
  const key = `${m.file}:${m.loc.start.line}:${m.loc.start.column}-${m.loc.end.line}:${m.loc.end.column}`;
  if (!sites.has(key)) sites.set(key, { file: m.file, loc: m.loc });
}

// 2. A seeded shuffle of the sites; take each whose location (with what it encloses) is small.
const order = [...sites.values()];
for (let i = order.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [order[i], order[j]] = [order[j], order[i]];
}
const chosen = new Set<string>();
const specs: string[] = [];
let passedOver = 0;
if (SITES) {
  specs.push(
    ...fs
      .readFileSync(SITES, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== ''),
  );
  order.length = 0;
}
for (const site of order) {
  if (chosen.size >= MUTANTS) break;
  const inside = all.filter((m) => m.file === site.file && includes(site.loc, m.loc));
  if (inside.length > MAX_NESTED) {
    passedOver++;
    continue;
  }
  for (const m of inside) chosen.add(m.id);
  const { start, end } = site.loc;
  // Stryker's --mutate range: 1-based lines, columns as the instrumenter counts them (inclusive).
  specs.push(
    `${path.relative('.', site.file)}:${start.line + 1}:${start.column}-${end.line + 1}:${end.column}`,
  );
}
const perFile = new Map<string, number>();
for (const s of specs) perFile.set(s.split(':')[0], (perFile.get(s.split(':')[0]) ?? 0) + 1);
process.stdout.write(
  (SITES
    ? `${specs.length} sites listed in ${SITES}\n`
    : `${all.length} mutants at ${sites.size} sites in ${files.length} files (${ROOTS.join(', ')}); seed ${arg('seed', '1')}: ` +
      `${specs.length} sites holding ${chosen.size} mutants sampled (${passedOver} sites enclosing more than ${MAX_NESTED} mutants passed over)\n`) +
    `sites by file: ${[...perFile].map(([f, n]) => `${f} ${n}`).join(', ')}\n`,
);
if (LIST_ONLY) {
  process.stdout.write(`${specs.join('\n')}\n`);
  process.exit(0);
}

// 3. Stryker on exactly those locations.
const load0 = os.loadavg();
const t0 = Date.now();
fs.mkdirSync('reports/mutation', { recursive: true });
fs.writeFileSync('reports/mutation/sample.txt', `${specs.join('\n')}\n`);
const r = await execa('npx', ['stryker', 'run', '--mutate', specs.join(',')], {
  stdio: 'inherit',
  reject: false,
});
const wall = (Date.now() - t0) / 1000;
const load1 = os.loadavg();

const report = 'reports/mutation/mutation.json';
if (!fs.existsSync(report) || fs.statSync(report).mtimeMs < t0) {
  process.stderr.write(`no new report (${report}); stryker exit ${String(r.exitCode)}\n`);
  process.exit(2);
}
interface Mutant {
  status: string;
  mutatorName: string;
  replacement?: string;
  location: { start: { line: number; column: number } };
}
const json = JSON.parse(fs.readFileSync(report, 'utf8')) as { files: Record<string, { mutants: Mutant[] }> };
const counts: Record<string, number> = {};
const survivors = new Map<string, string[]>();
for (const [file, { mutants }] of Object.entries(json.files)) {
  for (const m of mutants) {
    counts[m.status] = (counts[m.status] ?? 0) + 1;
    if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue;
    const line = `${m.location.start.line}:${m.location.start.column} ${m.mutatorName}${m.replacement ? ` → ${m.replacement.replace(/\s+/g, ' ').slice(0, 70)}` : ''}${m.status === 'NoCoverage' ? ' (not reached)' : ''}`;
    survivors.set(file, [...(survivors.get(file) ?? []), line]);
  }
}
const n = (s: string): number => counts[s] ?? 0;
const detected = n('Killed') + n('Timeout');
const undetected = n('Survived') + n('NoCoverage');
const covered = detected + n('Survived');
const pct = (a: number, b: number): string => (b > 0 ? ((100 * a) / b).toFixed(1) : '—');
process.stdout.write(
  `\nmutation score: ${pct(detected, detected + undetected)}% ` +
    `(killed ${n('Killed')}, timeout ${n('Timeout')}, survived ${n('Survived')}, no coverage ${n('NoCoverage')}` +
    `${Object.keys(counts)
      .filter((s) => !['Killed', 'Timeout', 'Survived', 'NoCoverage'].includes(s))
      .map((s) => `, ${s.toLowerCase()} ${n(s)}`)
      .join('')})\n` +
    `score over the mutants the slice reaches: ${pct(detected, covered)}%\n` +
    `wall ${wall.toFixed(0)} s; load ${load0[0].toFixed(1)} → ${load1[0].toFixed(1)} on ${os.cpus().length} cores\n` +
    `report: ${report} and reports/mutation/mutation.html; sample: reports/mutation/sample.txt\n` +
    `survivors by file:\n${[...survivors]
      .sort()
      .map(([f, l]) => `  ${f} (${l.length})\n    ${l.join('\n    ')}`)
      .join('\n')}\n`,
);
