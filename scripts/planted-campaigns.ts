/**
 * The harness's power against planted bugs: for each bug of properties/campaign/planted-set.ts, a
 * copy of the engine with that one line changed, and a `qcow2 fuzz --seconds N` campaign against
 * it (the same command a user runs, the same seed for every bug: nothing tuned per bug). Prints a
 * table: bug, caught after how many seconds (the campaign's own first-seen time), the steps of the
 * shrunk case, and the campaign's wall time.
 *
 * A failure of the harness itself (signature oracle `harness`: a tool it runs broke) is not a
 * catch: it is counted apart. `--control` first runs the same campaign against the repository's
 * own engine: whatever it reports is not the plants' doing (a row of its own).
 *
 * Usage: tsx scripts/planted-campaigns.ts [--seconds 90] [--seed 1] [--jobs 2] [--only AREA]
 *        [--match TEXT] (bugs whose name contains TEXT) [--first N] [--skip N] (a slice of the set)
 *        [--control] [--keep DIR]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { plantEngineBug } from '../properties/campaign/planted-bug.ts';
import {
  PLANTED_SET,
  plantedSummary,
  type NamedPlantedBug,
  type PlantedOutcome,
} from '../properties/campaign/planted-set.ts';
import type { CampaignReport } from '../properties/campaign/report.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const SECONDS = Number(arg('seconds', '90'));
const SEED = arg('seed', '1');
const JOBS = arg('jobs', '2');
const ONLY = arg('only', '');
const MATCH = arg('match', '');
const SKIP = Number(arg('skip', '0'));
const FIRST = Number(arg('first', String(PLANTED_SET.length)));
const CONTROL = process.argv.includes('--control');
/** Keep each campaign's cases and report under DIR/<row number> (else they are removed). */
const KEEP = arg('keep', '');

const rows: string[][] = [];
const outcomes: PlantedOutcome[] = [];
const controlRows: string[][] = [];
const selected = PLANTED_SET.slice(SKIP, SKIP + FIRST).filter(
  (b) => (ONLY === '' || b.area === ONLY) && b.name.includes(MATCH),
);
const runs: (NamedPlantedBug | undefined)[] = [...(CONTROL ? [undefined] : []), ...selected];
for (const bug of runs) {
  // (undefined: the control run, the repository's engine)
  const engine = bug ? plantEngineBug(bug) : undefined;
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'planted-'));
  const report = path.join(out, 'report.json');
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    [
      path.join(ROOT, 'bin/qcow2.js'),
      'fuzz',
      '--impl',
      'engine',
      '--seconds',
      String(SECONDS),
      '--seed',
      SEED,
      '--jobs',
      JOBS,
      '--no-coverage',
      '--out',
      out,
      '--report',
      report,
    ],
    {
      env: engine ? { ...process.env, QCOW2_ENGINE: engine } : process.env,
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    },
  );
  const wall = (performance.now() - t0) / 1000;
  let caught = 'not caught';
  let steps = '';
  let signature = '';
  let volume = '';
  let harness = '';
  if (fs.existsSync(report)) {
    const rep = JSON.parse(fs.readFileSync(report, 'utf8')) as CampaignReport;
    volume = `${rep.volume.sequences} seq, ${rep.volume.operations} ops`;
    // the harness's own breakage is not a catch
    const broke = rep.failures.filter((f) => f.signature.oracle === 'harness');
    if (broke.length > 0) harness = `${broke.length} (${broke[0].signature.category.slice(0, 60)})`;
    // new failures only (a known QEMU bug's signature is not the plant)
    const first = rep.failures
      .filter((f) => !f.signature.knownBug && f.signature.oracle !== 'harness')
      .sort((a, b) => a.firstSeenMs - b.firstSeenMs)[0];
    if (first) {
      if (bug) outcomes.push({ bug, caughtAfter: first.firstSeenMs / 1000 });
      caught = `${(first.firstSeenMs / 1000).toFixed(1)} s`;
      steps = first.shrink
        ? `${first.unshrunkSteps} → ${first.shrink.steps.length} (${first.shrink.status})`
        : `${first.unshrunkSteps} (not shrunk)`;
      signature = `${first.signature.oracle} ${first.signature.command} ${first.signature.category}`;
    }
  } else caught = `no report (exit ${String(r.status)}): ${(r.stderr ?? '').trim().slice(-200)}`;
  if (bug && !outcomes.some((o) => o.bug === bug)) outcomes.push({ bug });
  if (bug?.equivalent && caught === 'not caught') caught = 'not caught (equivalent)';
  const row = [
    bug?.area ?? 'control',
    bug?.name ?? 'none planted (the repository engine)',
    caught,
    steps,
    signature,
    harness,
    volume,
    `${wall.toFixed(1)} s`,
  ];
  (bug ? rows : controlRows).push(row);
  process.stdout.write(`${row.join(' | ')}\n`);
  if (engine) fs.rmSync(path.dirname(path.dirname(engine)), { recursive: true, force: true });
  if (KEEP) fs.cpSync(out, path.join(KEEP, String(controlRows.length + rows.length)), { recursive: true });
  fs.rmSync(out, { recursive: true, force: true });
}

const header = [
  'area',
  'planted bug',
  'caught after',
  'steps (first → shrunk)',
  'signature',
  'harness failures (not catches)',
  'volume',
  'campaign wall',
];
const widths = header.map((h, i) => Math.max(h.length, ...[...controlRows, ...rows].map((r) => r[i].length)));
const fmt = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
process.stdout.write(
  [
    `planted bugs — ${SECONDS} s campaigns, seed ${SEED}, ${JOBS} jobs; nproc ${os.cpus().length}; load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    fmt(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...controlRows.map(fmt),
    ...rows.map(fmt),
    ...plantedSummary(outcomes, SECONDS),
  ].join('\n') + '\n',
);
