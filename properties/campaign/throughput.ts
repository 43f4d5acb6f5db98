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
  }
  if (v.toolRuns) {
    const runs = Object.entries(v.toolRuns).sort((a, b) => b[1] - a[1]);
    rates.toolRuns = runs.map(([k, c]) => [k, c / n]);
    rates.toolRunsPerSequence = runs.reduce((s, [, c]) => s + c, 0) / n;
  }
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
      `${rateText(x.sequencesPerCpuSecond)} per CPU-second (workers ${x.cpuMsPerSequence!.toFixed(0)} + tools ${x.toolsCpuMsPerSequence!.toFixed(0)} CPU-ms a sequence)`,
    );
  if (x.toolRuns)
    parts.push(
      `${x.toolRunsPerSequence!.toFixed(2)} tool runs a sequence: ${x.toolRuns.map(([k, c]) => `${k} ${c.toFixed(2)}`).join(', ')}`,
    );
  return parts.join('; ');
}
