/**
 * A campaign's throughput figures, computed in one place from its report: the campaign's closing
 * summary (`qcow2 fuzz`, `npm run fuzz`) and `npm run bench:harness` print these same numbers.
 *
 * - sequences per second: complete sequences (every oracle included) over the campaign's whole
 *   wall time, from the process's start to its report — what a campaign of that configuration
 *   gets, workers' start-up, shrinking and the end reserve included;
 * - CPU per sequence: the workers' own CPU and that of the tools they ran (qemu-img, qemu-io,
 *   qemu-nbd, the launcher; campaign/bench-cpu.ts), and the sequences per CPU-second they make —
 *   the figure the load of a shared machine does not depress;
 * - tool runs per sequence, by tool and subcommand.
 */
import type { CampaignReport } from './report.ts';

export interface CampaignRates {
  sequences: number;
  wallSeconds: number;
  jobs: number;
  sequencesPerSecond: number;
  /** Workers' own CPU milliseconds per sequence (undefined: an older report without them). */
  cpuMsPerSequence?: number;
  toolsCpuMsPerSequence?: number;
  sequencesPerCpuSecond?: number;
  /** Tool runs per sequence, all tools, and by tool, most frequent first. */
  toolRunsPerSequence?: number;
  toolRuns?: [string, number][];
  /** Tool wall milliseconds per sequence, by tool, most first; and the op loop's share of the jobs' wall time. */
  toolMs?: [string, number][];
  loopShare?: number;
  /**
   * The share of the machine's cores its sequences kept busy: the workers' and their tools' CPU
   * over the wall time times the cores (start-up, shrinking and the campaign's tail count as idle;
   * on a shared machine, also the CPU others took).
   */
  coreShare?: number;
  cores?: number;
}

export function campaignRates(r: CampaignReport): CampaignRates {
  const v = r.volume;
  const n = Math.max(v.sequences, 1);
  const wallSeconds = r.timing.elapsedMs / 1000;
  const rates: CampaignRates = {
    sequences: v.sequences,
    wallSeconds,
    jobs: r.timing.jobs,
    sequencesPerSecond: v.sequences / Math.max(wallSeconds, 1e-3),
  };
  if (v.cpuMs !== undefined) {
    const tools = v.toolsCpuMs ?? 0;
    rates.cpuMsPerSequence = v.cpuMs / n;
    rates.toolsCpuMsPerSequence = tools / n;
    rates.sequencesPerCpuSecond = v.sequences / Math.max((v.cpuMs + tools) / 1000, 1e-6);
    const cores = r.identity.host?.cpus;
    if (cores && r.timing.elapsedMs > 0) {
      rates.cores = cores;
      rates.coreShare = (v.cpuMs + tools) / (r.timing.elapsedMs * cores);
    }
  }
  if (v.toolRuns) {
    const runs = Object.entries(v.toolRuns).sort((a, b) => b[1] - a[1]);
    rates.toolRuns = runs.map(([k, c]) => [k, c / n]);
    rates.toolRunsPerSequence = runs.reduce((s, [, c]) => s + c, 0) / n;
  }
  if (v.toolMs && Object.keys(v.toolMs).length > 0)
    rates.toolMs = Object.entries(v.toolMs)
      .sort((a, b) => b[1] - a[1])
      .map(([k, ms]) => [k, ms / n]);
  if (v.loopMs !== undefined && r.timing.elapsedMs > 0)
    rates.loopShare = v.loopMs / (r.timing.elapsedMs * Math.max(1, r.timing.jobs));
  return rates;
}

/** `12.34` / `123`: two decimals below 100. */
export function rateText(x: number): string {
  return x.toFixed(x >= 100 ? 0 : 2);
}

/** One line: the sequences per second and what each sequence cost (the summary's and the bench's). */
export function sequenceRateLine(r: CampaignReport): string {
  const x = campaignRates(r);
  const parts = [
    `${rateText(x.sequencesPerSecond)} sequences/s with every qemu-img oracle (${x.sequences} in ${x.wallSeconds.toFixed(1)} s wall, ${x.jobs} job(s) of one sequence at a time)`,
  ];
  if (x.sequencesPerCpuSecond !== undefined)
    parts.push(
      `${rateText(x.sequencesPerCpuSecond)} per CPU-second (workers ${x.cpuMsPerSequence!.toFixed(0)} + tools ${x.toolsCpuMsPerSequence!.toFixed(0)} CPU-ms a sequence)` +
        (x.coreShare !== undefined
          ? `, which kept ${(100 * x.coreShare).toFixed(0)}% of the ${x.cores} cores busy over the wall time`
          : ''),
    );
  if (x.toolRuns)
    parts.push(
      `${x.toolRunsPerSequence!.toFixed(2)} tool runs a sequence: ${x.toolRuns.map(([k, c]) => `${k} ${c.toFixed(2)}`).join(', ')}`,
    );
  // where the jobs' wall time goes: the op loop's share, and each tool's wall time a sequence
  if (x.toolMs && x.loopShare !== undefined)
    parts.push(
      `wall: op loop ${(100 * x.loopShare).toFixed(0)}% of the jobs' time; tool wall ms a sequence (some run side by side): ${x.toolMs.map(([k, ms]) => `${k} ${ms.toFixed(0)}`).join(', ')}`,
    );
  return parts.join('; ');
}

/** The operation loop's figures (the data path's): per job, across the jobs, and over the wall time. */
export interface OpLoopRates {
  operations: number;
  jobs: number;
  /** Model-checked operations per second of one job's op-loop time (wall), and per its CPU-second. */
  perJob?: number;
  perJobCpu?: number;
  /** The jobs together: the per-job rate times the jobs (each ran its op loops at that rate). */
  acrossJobs?: number;
  /** Operations over the campaign's whole wall time (oracles, set-up and start-up included). */
  overWall: number;
}

export function opLoopRates(r: CampaignReport): OpLoopRates {
  const v = r.volume;
  const jobs = Math.max(1, r.timing.jobs);
  const out: OpLoopRates = {
    operations: v.operations,
    jobs,
    overWall: v.operations / Math.max(r.timing.elapsedMs / 1000, 1e-3),
  };
  if (v.loopMs !== undefined && v.loopMs > 0) {
    out.perJob = v.operations / (v.loopMs / 1000);
    out.acrossJobs = out.perJob * jobs;
  }
  if (v.loopCpuMs !== undefined && v.loopCpuMs > 0) out.perJobCpu = v.operations / (v.loopCpuMs / 1000);
  return out;
}

/**
 * One line: the data path's throughput as the campaign measured it, per job and machine-wide, with
 * the load (`load`: os.loadavg() and the cores, given by the caller). The campaign's op loop runs
 * every command kind, qemu-img steps included: not the data-path-only mix of bench:harness's first
 * column, which is said here.
 */
export function opRateLine(r: CampaignReport, load: { avg: number[]; cores: number }): string {
  const x = opLoopRates(r);
  const loadText = `load ${load.avg.map((l) => l.toFixed(1)).join(' ')} on ${load.cores} cores`;
  const overWall = `${rateText(x.overWall)} ops/s over the campaign's wall time (oracles, set-up and start-up included)`;
  if (x.perJob === undefined) return `${x.operations} operations; ${overWall}; ${loadText}`;
  return (
    `${rateText(x.perJob)} model-checked ops/s per job in the op loop` +
    (x.perJobCpu !== undefined ? ` (${rateText(x.perJobCpu)} per CPU-second)` : '') +
    `, ${rateText(x.acrossJobs!)} machine-wide across the ${x.jobs} job(s); ${overWall}; ` +
    `every command kind, qemu-img steps included (bench:harness's data-path column runs the data-path kinds only); ${loadText}`
  );
}
