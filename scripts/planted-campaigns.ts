/**
 * The harness's power against planted bugs: for each bug of properties/campaign/planted-set.ts, a
 * copy of the engine with that one line changed, and a `qcow2 fuzz --seconds N` campaign against
 * it (the same command a user runs, the same seed for every bug: nothing tuned per bug). Prints a
 * table: bug, caught after how many seconds (the campaign's own first-seen time), the steps of the
 * shrunk case, and the campaign's wall time.
 *
 * Usage: tsx scripts/planted-campaigns.ts [--seconds 90] [--seed 1] [--jobs 2] [--only AREA]
 *        [--match TEXT] (bugs whose name contains TEXT) [--first N] [--skip N] (a slice of the set)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { plantEngineBug } from '../properties/campaign/planted-bug.ts';
import { PLANTED_SET } from '../properties/campaign/planted-set.ts';
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

const rows: string[][] = [];
const selected = PLANTED_SET.slice(SKIP, SKIP + FIRST).filter(
  (b) => (ONLY === '' || b.area === ONLY) && b.name.includes(MATCH),
);
for (const bug of selected) {
  const engine = plantEngineBug(bug);
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
    { env: { ...process.env, QCOW2_ENGINE: engine }, encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  const wall = (performance.now() - t0) / 1000;
  let caught = 'not caught';
  let steps = '';
  let signature = '';
  let volume = '';
  if (fs.existsSync(report)) {
    const rep = JSON.parse(fs.readFileSync(report, 'utf8')) as CampaignReport;
    volume = `${rep.volume.sequences} seq, ${rep.volume.operations} ops`;
    // new failures only (a known QEMU bug's signature is not the plant)
    const first = rep.failures
      .filter((f) => !f.signature.knownBug)
      .sort((a, b) => a.firstSeenMs - b.firstSeenMs)[0];
    if (first) {
      caught = `${(first.firstSeenMs / 1000).toFixed(1)} s`;
      steps = first.shrink
        ? `${first.unshrunkSteps} → ${first.shrink.steps.length} (${first.shrink.status})`
        : `${first.unshrunkSteps} (not shrunk)`;
      signature = `${first.signature.oracle} ${first.signature.command} ${first.signature.category}`;
    }
  } else caught = `no report (exit ${String(r.status)}): ${(r.stderr ?? '').trim().slice(-200)}`;
  if (bug.equivalent && caught === 'not caught') caught = 'not caught (equivalent)';
  rows.push([bug.area, bug.name, caught, steps, signature, volume, `${wall.toFixed(1)} s`]);
  process.stdout.write(`${rows[rows.length - 1].join(' | ')}\n`);
  fs.rmSync(path.dirname(path.dirname(engine)), { recursive: true, force: true });
  fs.rmSync(out, { recursive: true, force: true });
}

const header = [
  'area',
  'planted bug',
  'caught after',
  'steps (first → shrunk)',
  'signature',
  'volume',
  'campaign wall',
];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const fmt = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
process.stdout.write(
  [
    `planted bugs — ${SECONDS} s campaigns, seed ${SEED}, ${JOBS} jobs; nproc ${os.cpus().length}; load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
    fmt(header),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.map(fmt),
    `caught within ${SECONDS} s: ${rows.filter((r) => r[2].endsWith(' s') && Number.parseFloat(r[2]) <= SECONDS).length}/${rows.length}` +
      ` (${selected.filter((b) => b.equivalent).length} of them known equivalent: no sequence can observe it)`,
  ].join('\n') + '\n',
);
