/**
 * The campaign runner, generic over what a sequence is (a `TaskSpec`: fuzz, crash states, …): it
 * hands sequence indices of its shard to N workers one at a time, honours the wall-clock budget
 * (sequences and shrinking stop between steps at the deadline; a worker still busy shortly after
 * is killed), keeps going after failures, deduplicates them by signature (each new signature is
 * shrunk once by the worker that found it, the rest counted), and gathers the report's data.
 *
 * Budget: with `seconds`, the campaign ends at `start + seconds` (the CLI counts from its process's
 * start), shrinking, the workers' exit, the coverage summary and the report included. Work stops
 * only as early as what follows it needs (`budgetOf`): so a user timing the command sees N seconds,
 * within ±5%, not N less a fixed margin.
 */
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { FailureSignature } from './signature.ts';
import { signatureKey, signatureOf } from './signature.ts';
import type { SequenceOutcome, TaskIdentity, TaskSpec } from '../campaign/sequence-task.ts';
import { globalIndex, toRanges, WHOLE, type Shard } from '../campaign/seed-space.ts';
import { LocalWorker, ProcessWorker, WorkerGone, type CampaignWorker } from '../campaign/workers.ts';
import {
  bucketThroughput,
  exitCodeOf,
  knownBugsOf,
  REPORT_FORMAT,
  type CampaignReport,
  type FailureEntry,
} from '../campaign/report.ts';
import { summariseCoverage } from '../campaign/coverage.ts';
import { workerModule } from '../campaign/worker-bundle.ts';
import { loadCase } from '../cases/case-file.ts';
import type { ReaderReport } from '../readers/reader-oracle.ts';
import { addReaderReports } from '../readers/report.ts';

export interface CampaignOptions {
  task: TaskSpec;
  /** Base seed (sequence i's seed derives from it and i). */
  seed: number;
  shard?: Shard;
  /** Stop after this many sequences of the shard … */
  runs?: number;
  /** … or after this many seconds, shrinking and report included (default 60 when neither). */
  seconds?: number;
  /** Worker processes; 0 runs the task in this process (no coverage, no kill at the deadline). */
  jobs: number;
  /** Directory for case files (none written when undefined). */
  outDir?: string;
  /** Time allowed for shrinking one failure (seconds, default 120; never past the deadline). */
  shrinkSeconds?: number;
  /** Stop handing out sequences once this many distinct failures were found (`repro IMAGE`: 1). */
  stopAfterFailures?: number;
  /** Labels a signature (the known-bugs list); never changes what runs. Default: identity. */
  classify?: (s: FailureSignature) => FailureSignature;
  onProgress?: (p: Progress) => void;
  /** Collect V8 coverage of src/ in the workers (needs jobs ≥ 1). */
  coverage?: boolean;
  /** Options shown in the report's identity. */
  reportOptions?: Record<string, unknown>;
  /** Environment for the workers (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** When the budget started (epoch ms; the CLI passes its process's start). Default: now. */
  startedAt?: number;
}

export interface Progress {
  elapsedMs: number;
  /** The budget (null with `runs`). */
  budgetMs: number | null;
  /** With `runs`: the target count. */
  runsTarget: number | null;
  sequences: number;
  operations: number;
  failuresNew: number;
  failuresKnown: number;
  shrinking: number;
  layout?: string;
  jobs: number;
}

/**
 * What the campaign does after its work deadline, in milliseconds, as estimates between what was
 * measured on the 2-core development machine at load 3 and at load 13 (a sequence stopped
 * 0.1–0.6 s after the deadline, 0.2–0.3 s without coverage; workers exited in 0.1 s, or 0.4–1.1 s when each writes its V8
 * coverage; c8 summarised 4–6 coverage files in 0.5–1.7 s and 15 in 2.7 s at load 13; the report
 * took 0.15 s; a 60 s campaign's whole tail took 1.3 s at load 3 and 4.2 s at load 13, and
 * `npm run` adds 0.3–0.8 s before the process starts). Aiming at the middle keeps both ends
 * inside ±5% of a 60 s budget. (At load 12 a 60 s `npm run fuzz` with an estimate of 100 ms a file
 * ended at 62.8 s and its coverage summary missed N + 3%: hence 150.)
 */
export const TAIL_MS = {
  stop: 300,
  exit: 100,
  coverageExit: 800,
  coverage: 300,
  coveragePerFile: 150,
  report: 100,
} as const;

/**
 * Where work stops, stuck workers die, the coverage summary must be done, and the campaign ends
 * (epoch ms; Infinity-free for IPC). Work stops at `end − tail`, the tail being what follows the
 * work: the step in progress, the workers' exit, the coverage summary of `coverageFiles` files (when
 * collected) and the report; the whole tail at most half the budget. Workers still
 * busy when only their exit, the coverage summary and the report fit are killed. The coverage
 * summary may run up to 3% past the end, inside the 5% a user may expect; past that it is dropped
 * with a note. So the campaign ends within 5% of `end` whenever the tail takes less than its
 * estimate plus 3% of the budget.
 */
export function budgetOf(
  startMs: number,
  seconds: number | undefined,
  opts: { coverage?: boolean; coverageFiles?: number } = {},
): { end: number; work: number; kill: number; coverageBy: number } {
  if (seconds === undefined) {
    const never = Number.MAX_SAFE_INTEGER;
    return { end: never, work: never, kill: never, coverageBy: never };
  }
  const budget = seconds * 1000;
  const afterKill =
    TAIL_MS.report +
    (opts.coverage
      ? TAIL_MS.coverageExit + TAIL_MS.coverage + TAIL_MS.coveragePerFile * (opts.coverageFiles ?? 0)
      : TAIL_MS.exit);
  const tail = Math.min(budget / 2, TAIL_MS.stop + afterKill);
  const end = startMs + budget;
  return {
    end,
    work: end - tail,
    kill: end - Math.min(afterKill, tail / 2),
    coverageBy: end + budget * 0.03,
  };
}

/**
 * How many coverage files `jobs` workers leave after `seconds` (workers.ts: each takes its coverage
 * at least 10 s and 10% of its age apart, and once more on exit): the kill time's estimate; the work
 * deadline counts the files actually written.
 */
export function expectedCoverageFiles(seconds: number, jobs: number): number {
  let takes = 1;
  for (let t = 10; t < seconds; t += Math.max(10, 0.1 * t)) takes++;
  return jobs * takes;
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: path.dirname(new URL(import.meta.url).pathname),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}

function toolVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    name?: string;
    version?: string;
  };
  return pkg.version ?? 'unknown';
}

const MAX_RESPAWNS = 8;

export async function runCampaign(opts: CampaignOptions): Promise<CampaignReport> {
  const started = opts.startedAt ?? Date.now();
  const shard = opts.shard ?? WHOLE;
  const seconds = opts.runs === undefined ? (opts.seconds ?? 60) : opts.seconds;
  const jobs = Math.max(0, opts.jobs);
  // Summarising coverage takes a few seconds after the workers have exited.
  const withCoverage = opts.coverage === true && jobs > 0;
  const budget = budgetOf(started, seconds, {
    coverage: withCoverage,
    coverageFiles: seconds === undefined ? 0 : expectedCoverageFiles(seconds, jobs),
  });
  const classify = opts.classify ?? ((s: FailureSignature) => s);
  const shrinkMs = (opts.shrinkSeconds ?? 120) * 1000;
  const problems: string[] = [];
  const notes: string[] = [];

  const coverageDir = withCoverage ? fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-coverage-')) : undefined;
  /** Work stops when what follows it fits: the coverage files written so far, and one per worker's exit. */
  const workEnd = (): number =>
    coverageDir && seconds !== undefined
      ? budgetOf(started, seconds, {
          coverage: true,
          coverageFiles: fs.readdirSync(coverageDir).length + jobs,
        }).work
      : budget.work;
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env) };
  if (coverageDir) env.NODE_V8_COVERAGE = coverageDir;

  // Volume and failures.
  let sequences = 0;
  let operations = 0;
  let loopMs = 0;
  let loopCpuMs = 0;
  let cpuMs = 0;
  let toolsCpuMs = 0;
  let steps = 0;
  let shrinkTotal = 0;
  let shrinking = 0;
  const byKind: Record<string, number> = {};
  const toolRuns: Record<string, number> = {};
  const toolMs: Record<string, number> = {};
  const byLayout: Record<string, number> = {};
  const lengths: Record<string, number> = {};
  const completions: { t: number; operations: number }[] = [];
  const indices: number[] = [];
  const failures = new Map<string, FailureEntry>();
  const readers: ReaderReport[] = [];
  let lastLayout: string | undefined;

  const progress = (): void => {
    if (!opts.onProgress) return;
    let known = 0;
    for (const f of failures.values()) if (f.signature.knownBug) known++;
    opts.onProgress({
      elapsedMs: Date.now() - started,
      budgetMs: seconds === undefined ? null : seconds * 1000,
      runsTarget: opts.runs ?? null,
      sequences,
      operations,
      failuresNew: failures.size - known,
      failuresKnown: known,
      shrinking,
      layout: lastLayout,
      jobs,
    });
  };
  const ticker = opts.onProgress ? setInterval(progress, 1000) : undefined;

  let next = 0;
  const nextIndex = (): number | undefined => {
    if (opts.runs !== undefined && next >= opts.runs) return undefined;
    if (Date.now() >= workEnd()) return undefined;
    if (opts.stopAfterFailures !== undefined && failures.size >= opts.stopAfterFailures) return undefined;
    return globalIndex(shard, next++);
  };

  const record = (out: SequenceOutcome): void => {
    loopMs += out.loopMs ?? 0;
    loopCpuMs += out.loopCpuMs ?? 0;
    cpuMs += out.cpuMs ?? 0;
    toolsCpuMs += out.toolsCpuMs ?? 0;
    sequences += 1;
    operations += out.operations;
    steps += out.steps;
    indices.push(out.index);
    completions.push({ t: Date.now() - started, operations: out.operations });
    for (const [k, n] of Object.entries(out.kinds)) byKind[k] = (byKind[k] ?? 0) + n;
    for (const [k, n] of Object.entries(out.toolRuns ?? {})) toolRuns[k] = (toolRuns[k] ?? 0) + n;
    for (const [k, n] of Object.entries(out.toolMs ?? {})) toolMs[k] = (toolMs[k] ?? 0) + n;
    byLayout[out.layoutClass] = (byLayout[out.layoutClass] ?? 0) + 1;
    lengths[String(out.steps)] = (lengths[String(out.steps)] ?? 0) + 1;
    if (out.readers) addReaderReports(readers, out.readers);
    lastLayout = out.layoutClass;
  };

  /** A failure: counted; shrunk when its signature is new. Returns true when it must be shrunk. */
  const failureSeen = (out: SequenceOutcome, signature: FailureSignature): FailureEntry | undefined => {
    const key = signatureKey(signature);
    const known = failures.get(key);
    if (known) {
      known.count += 1;
      // (as merge.ts does: the lowest index's failure describes it, whichever job finished first)
      if (out.index < known.firstIndex) {
        known.firstIndex = out.index;
        known.message = out.failure?.message ?? known.message;
        known.unshrunkSteps = out.failure?.steps ?? known.unshrunkSteps;
      }
      return undefined;
    }
    const entry: FailureEntry = {
      key,
      signature,
      count: 1,
      firstSeenMs: Date.now() - started,
      firstIndex: out.index,
      message: out.failure?.message ?? '',
      unshrunkSteps: out.failure?.steps ?? 0,
      shrink: null,
    };
    failures.set(key, entry);
    return entry;
  };

  let identity: TaskIdentity | undefined;
  let respawns = 0;
  const workers: CampaignWorker[] = [];

  // The workers' prebuilt bundle (built now when missing or out of date), else the CLI through tsx.
  const module = jobs > 0 ? await workerModule(env, (why) => notes.push(why)) : undefined;
  const startWorker = async (id: number): Promise<CampaignWorker> => {
    const w: CampaignWorker = jobs === 0 ? new LocalWorker() : new ProcessWorker(id, env, module);
    workers.push(w);
    const ident = await w.init(opts.task);
    identity ??= ident;
    return w;
  };

  /** A worker died on its own: the hang watchdog's case when it left one, else a harness problem. */
  const workerDied = (gone: WorkerGone, index: number | undefined, since: number): void => {
    const hang = opts.outDir ? newestHangCase(opts.outDir, since) : undefined;
    if (hang && index !== undefined) {
      const file = loadCase(hang);
      const sig = classify(
        signatureOf(file.failure, `${identity?.impl ?? file.impl}@${identity?.implVersion ?? ''}`),
      );
      const entry = failureSeen(
        {
          index,
          completed: true,
          operations: 0,
          steps: file.steps.length,
          kinds: {},
          layoutClass: '',
          ms: 0,
          failure: { signature: sig, message: file.failure.message, steps: file.steps.length },
        },
        sig,
      );
      if (entry) entry.shrink = { status: 'none', steps: file.steps, ms: 0, case: hang, script: undefined };
      return;
    }
    problems.push(`${gone.message}${index !== undefined ? ` during sequence ${index}` : ''}`);
  };

  const drive = async (first: CampaignWorker): Promise<void> => {
    let w = first;
    for (;;) {
      const index = nextIndex();
      if (index === undefined) return;
      const since = Date.now();
      let current: 'run' | 'shrink' = 'run';
      try {
        const out = await w.run(index, workEnd());
        if (!out.completed) return; // the deadline cut it short: not counted
        record(out);
        if (out.failure) {
          const signature = classify(out.failure.signature);
          const entry = failureSeen(out, signature);
          if (entry) {
            current = 'shrink';
            shrinking += 1;
            try {
              // Saved unshrunk first (a past deadline): a worker killed while shrinking leaves it.
              const unshrunk = opts.outDir ? await w.shrink(index, 0, opts.outDir) : undefined;
              if (unshrunk?.casePath)
                entry.shrink = {
                  status: 'none',
                  steps: unshrunk.steps,
                  ms: 0,
                  case: unshrunk.casePath,
                  script: unshrunk.scriptPath,
                };
              // A known bug (the list's label) already has its shrunk case in corpus/: shrinking it
              // again tells nothing new and would hold this worker for up to shrinkSeconds.
              if (signature.knownBug) continue;
              const res = await w.shrink(
                index,
                Math.min(workEnd(), Date.now() + shrinkMs),
                opts.outDir,
                unshrunk?.casePath,
              );
              shrinkTotal += res.ms;
              entry.shrink = {
                status: res.status,
                steps: res.steps,
                ms: res.ms,
                case: res.casePath,
                script: res.scriptPath,
              };
            } finally {
              shrinking -= 1;
            }
          }
        }
      } catch (e) {
        if (!(e instanceof WorkerGone)) throw e;
        if (e.killedByUs) {
          notes.push(
            `worker ${w.id} was still busy at the deadline (${current} of sequence ${index}) and was killed; that sequence is not counted`,
          );
          return;
        }
        workerDied(e, index, since);
        if (++respawns > MAX_RESPAWNS || Date.now() >= workEnd()) return;
        w = await startWorker(w.id);
      }
    }
  };

  // Armed before the workers start: a worker still starting or busy at the kill time dies.
  const killer =
    seconds === undefined
      ? undefined
      : setTimeout(
          () => {
            for (const w of workers) if (w.busy) w.kill();
          },
          Math.max(0, budget.kill - Date.now()),
        );
  try {
    await Promise.all(
      Array.from({ length: Math.max(1, jobs) }, async (_, i) => {
        let w: CampaignWorker;
        try {
          w = await startWorker(i + 1);
        } catch (e) {
          if (e instanceof WorkerGone && e.killedByUs) {
            notes.push(`worker ${i + 1} was still starting at the deadline and was killed`);
            return;
          }
          throw e;
        }
        await drive(w);
      }),
    );
  } catch (e) {
    problems.push(`the campaign broke: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    for (const w of workers) w.kill();
  } finally {
    clearTimeout(killer);
    if (ticker) clearInterval(ticker);
    // Workers exit (writing their coverage); within the budget, or a second when it is spent.
    const grace = Math.min(10_000, Math.max(1000, budget.kill - Date.now()));
    await Promise.all(workers.map((w) => (w instanceof ProcessWorker ? w.close(grace) : w.close())));
  }
  progress();

  let coverage = null;
  if (coverageDir) {
    try {
      // Up to 4% past the end, less a moment for the report (budgetOf).
      coverage = await summariseCoverage(coverageDir, seconds === undefined ? undefined : budget.coverageBy);
      if (Object.keys(coverage.files).length === 0) {
        coverage = null;
        notes.push('no coverage: the workers wrote none (killed before their first write)');
      }
    } catch (e) {
      notes.push(`coverage could not be summarised: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      fs.rmSync(coverageDir, { recursive: true, force: true });
    }
  }

  const elapsedMs = Date.now() - started;
  const failureList = [...failures.values()].sort((a, b) => a.firstIndex - b.firstIndex);
  const report: CampaignReport = {
    format: REPORT_FORMAT,
    version: 1,
    identity: {
      tool: 'qcow2-ts',
      toolVersion: toolVersion(),
      gitCommit: gitCommit(),
      task: identity?.task ?? opts.task.name,
      impl: identity?.impl ?? String(opts.task.options.impl ?? 'unknown'),
      implVersion: identity?.implVersion ?? 'unknown',
      seed: opts.seed,
      shards: [shard],
      options: opts.reportOptions ?? {},
      host: { hostname: os.hostname(), cpus: os.availableParallelism(), node: process.version },
      startedAt: new Date(started).toISOString(),
      notes: [...(identity?.notes ?? []), ...notes],
    },
    timing: { elapsedMs, budgetMs: seconds === undefined ? null : seconds * 1000, jobs },
    volume: {
      sequences,
      operations,
      steps,
      byKind,
      byLayout,
      shrinkMs: shrinkTotal,
      loopMs,
      loopCpuMs,
      cpuMs,
      toolsCpuMs,
      toolRuns,
      toolMs,
    },
    indices: toRanges(indices),
    throughput: bucketThroughput(completions, elapsedMs),
    lengths,
    coverage,
    failures: failureList,
    knownBugs: knownBugsOf(failureList),
    ...(readers.length ? { readers } : {}),
    problems,
    exitCode: 0,
  };
  report.exitCode = exitCodeOf(report);
  return report;
}

/** The newest `case-*-hang-*.json` the watchdog wrote in `dir` since `since` (epoch ms). */
function newestHangCase(dir: string, since: number): string | undefined {
  let best: { file: string; mtime: number } | undefined;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (!/^case-.*-hang-.*\.json$/.test(name)) continue;
    const file = path.join(dir, name);
    const mtime = fs.statSync(file).mtimeMs;
    if (mtime >= since - 1000 && (!best || mtime > best.mtime)) best = { file, mtime };
  }
  return best?.file;
}
