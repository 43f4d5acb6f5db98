/**
 * The deploy examples are runnable: the fuzz command lines of the GitHub Actions workflow and of
 * the Kubernetes Indexed Job, taken from the YAML files, run here for two shards with a small
 * budget (only the expressions CI/Kubernetes fill in are substituted), then their merge steps.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { load, loadAll } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { readReport } from './report.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECONDS = 12;

interface Workflow {
  jobs: Record<
    string,
    { steps: { id?: string; run?: string }[]; strategy?: { matrix: { shard: number[] } } }
  >;
}
interface K8sJob {
  kind: string;
  spec: {
    completionMode?: string;
    completions?: number;
    template: { spec: { containers: { args: string[]; env: { name: string; value: string }[] }[] } };
  };
}

function step(wf: Workflow, job: string, id: string): string {
  const s = wf.jobs[job].steps.find((x) => x.id === id)?.run;
  if (!s) throw new Error(`no step ${job}.${id} in the workflow`);
  return s;
}

/** The command line of a script that runs `node bin/qcow2.js fuzz …` (the clone and set-up are CI's). */
function fuzzLine(script: string): string {
  const line = script.split('\n').find((l) => l.startsWith('node bin/qcow2.js fuzz'));
  if (!line) throw new Error(`no fuzz command in:\n${script}`);
  return line;
}

async function bash(line: string, env: Record<string, string>): Promise<number> {
  const r = await execa('bash', ['-c', line], { cwd: ROOT, env, reject: false });
  if ((r.exitCode ?? 2) > 1) throw new Error(`${line}\nexit ${r.exitCode}\n${r.stdout}\n${r.stderr}`);
  return r.exitCode ?? 2;
}

describe('deploy examples', () => {
  it('GitHub Actions matrix and Kubernetes Indexed Job command lines run two shards and merge', async () => {
    await requireQemuTools();
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-deploy-'));
    const wf = load(
      fs.readFileSync(path.join(ROOT, 'deploy/github-actions/fuzz-campaign.yml'), 'utf8'),
    ) as Workflow;
    const k8s = loadAll(
      fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/fuzz-indexed-job.yaml'), 'utf8'),
    ) as K8sJob[];
    const job = k8s.find((d) => d.kind === 'Job');
    expect(job?.spec.completionMode).toBe('Indexed');
    const container = job?.spec.template.spec.containers[0];
    expect(container?.env.find((e) => e.name === 'JOB_COMPLETIONS')?.value).toBe(
      String(job?.spec.completions),
    );
    expect(wf.jobs.shard.strategy?.matrix.shard.length).toBeGreaterThan(1);

    const ghDir = path.join(tmp, 'gh');
    const k8sDir = path.join(tmp, 'k8s');
    const base = { FUZZ_SEED: '7', FUZZ_SECONDS: String(SECONDS), PATH: process.env.PATH ?? '' };
    const ghLine = step(wf, 'shard', 'fuzz').replaceAll('${{ strategy.job-total }}', '2').trim();
    const k8sLine = fuzzLine(container?.args[0] ?? '');
    // One pair at a time: two campaigns of two workers each already fill this 2-core machine.
    let longest = 0;
    const timed = async (runs: Promise<number>[]): Promise<void> => {
      const t0 = Date.now();
      await Promise.all(runs);
      longest = Math.max(longest, Date.now() - t0);
    };
    await timed(
      [0, 1].map((k) =>
        bash(ghLine.replaceAll('${{ matrix.shard }}', String(k)), { ...base, REPORT_DIR: ghDir }),
      ),
    );
    await timed(
      [0, 1].map((k) =>
        bash(k8sLine, { ...base, REPORT_DIR: k8sDir, JOB_COMPLETION_INDEX: String(k), JOB_COMPLETIONS: '2' }),
      ),
    );
    // Each campaign honours its budget (plus the process start-up before the budget's clock).
    expect(longest).toBeLessThan(SECONDS * 1000 * 1.05 + 5000);
    for (const d of [ghDir, k8sDir])
      for (const k of [0, 1]) {
        const r = readReport(path.join(d, `shard-${k}.json`));
        expect(r.identity.shards).toEqual([{ index: k, count: 2 }]);
        expect(r.identity.seed).toBe(7);
        // sharding is what this test is about; the 5% contract itself is budget.test.ts's (here two
        // shards share the cores with the rest of the suite: 1 s of slack on a 12 s budget)
        expect(r.timing.elapsedMs).toBeLessThanOrEqual(SECONDS * 1000 * 1.05 + 1000);
        for (const [a] of r.indices) expect(a % 2).toBe(k);
      }
    // The merge steps.
    const ghMerge = step(wf, 'merge', 'merge');
    await bash(ghMerge, { ...base, REPORT_DIR: ghDir });
    const merged = readReport(path.join(ghDir, 'campaign.json'));
    expect(merged.identity.shards).toHaveLength(2);
    expect(fs.existsSync(path.join(ghDir, 'campaign.html'))).toBe(true);
    const k8sMerge = loadAll(
      fs.readFileSync(path.join(ROOT, 'deploy/kubernetes/fuzz-merge-job.yaml'), 'utf8'),
    ) as K8sJob[];
    await bash(fuzzLine(k8sMerge[0].spec.template.spec.containers[0].args[0]), {
      ...base,
      REPORT_DIR: k8sDir,
    });
    expect(readReport(path.join(k8sDir, 'campaign.json')).identity.shards).toHaveLength(2);
  }, 120_000);
});
