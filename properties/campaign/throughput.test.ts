/**
 * The campaign's throughput figures come from one function: the summary of `qcow2 fuzz` prints
 * exactly the line `npm run bench:harness` is computed from.
 */
import { describe, expect, it } from 'vitest';
import { REPORT_FORMAT, type CampaignReport } from './report.ts';
import { campaignRates, opLoopRates, opRateLine, sequenceRateLine } from './throughput.ts';
import { summary } from './fuzz-cli.ts';

describe('campaign throughput', () => {
  const r: CampaignReport = {
    format: REPORT_FORMAT,
    version: 1,
    identity: {
      tool: 'qcow2-ts',
      toolVersion: '0.1.0',
      gitCommit: null,
      task: 'fuzz',
      impl: 'engine',
      implVersion: '0.1.0',
      seed: 1,
      shards: [{ index: 0, count: 1 }],
      options: {},
      host: { hostname: 'h', cpus: 2, node: 'v20' },
      startedAt: '2026-11-26T00:00:00.000Z',
      notes: [],
    },
    timing: { elapsedMs: 20_000, budgetMs: 20_000, jobs: 2 },
    volume: {
      sequences: 100,
      operations: 4000,
      steps: 5000,
      byKind: {},
      byLayout: {},
      shrinkMs: 0,
      loopMs: 10_000,
      loopCpuMs: 8000,
      cpuMs: 15_000,
      toolsCpuMs: 10_000,
      toolRuns: { 'qemu-img check': 150, 'qemu-img info': 100, 'qemu-nbd': 30 },
    },
    indices: [[0, 99]],
    throughput: { bucketSeconds: 1, points: [] },
    lengths: {},
    coverage: null,
    failures: [],
    knownBugs: [],
    problems: [],
    exitCode: 0,
  };

  it('computes sequences per wall second and per CPU-second, CPU and tool runs per sequence', () => {
    const x = campaignRates(r);
    expect(x.sequencesPerSecond).toBe(5);
    expect(x.sequencesPerCpuSecond).toBe(4);
    expect(x.cpuMsPerSequence).toBe(150);
    expect(x.toolsCpuMsPerSequence).toBe(100);
    expect(x.toolRunsPerSequence).toBe(2.8);
    expect(x.toolRuns).toEqual([
      ['qemu-img check', 1.5],
      ['qemu-img info', 1],
      ['qemu-nbd', 0.3],
    ]);
  });

  it('is printed as such by the campaign summary', () => {
    const line = sequenceRateLine(r);
    expect(line).toContain('5.00 sequences/s');
    expect(line).toContain('4.00 per CPU-second (workers 150 + tools 100 CPU-ms a sequence)');
    // 25 CPU-s over 20 s on 2 cores
    expect(campaignRates(r).coreShare).toBe(0.625);
    expect(line).toContain('which kept 63% of the 2 cores busy over the wall time');
    expect(line).toContain('2.80 tool runs a sequence: qemu-img check 1.50');
    expect(summary(r)).toContain(line);
  });

  it('prints the data path per job and machine-wide, with the load (the summary too)', () => {
    const x = opLoopRates(r);
    expect(x.perJob).toBe(400);
    expect(x.perJobCpu).toBe(500);
    expect(x.acrossJobs).toBe(800);
    expect(x.overWall).toBe(200);
    const line = opRateLine(r, { avg: [1.5, 2, 3], cores: 2 });
    expect(line).toContain('400 model-checked ops/s per job in the op loop (500 per CPU-second)');
    expect(line).toContain('800 machine-wide across the 2 job(s)');
    expect(line).toContain("200 ops/s over the campaign's wall time");
    expect(line).toContain('load 1.5 2.0 3.0 on 2 cores');
    expect(summary(r)).toContain('data path: 400 model-checked ops/s per job in the op loop');
    expect(summary(r)).toContain('800 machine-wide across the 2 job(s)');
  });
});

describe('where the wall time goes', () => {
  it('prints the op loop share and tool wall time a sequence, most first (only when recorded)', () => {
    const base = {
      timing: { elapsedMs: 20_000, budgetMs: 20_000, jobs: 2 },
      volume: {
        sequences: 10,
        loopMs: 10_000,
        toolMs: { 'qemu-img check': 3000, 'qemu-img create': 24_000 },
      },
    };
    const x = campaignRates(base as unknown as CampaignReport);
    expect(x.loopShare).toBe(0.25);
    expect(x.toolMs).toEqual([
      ['qemu-img create', 2400],
      ['qemu-img check', 300],
    ]);
    const line = sequenceRateLine(base as unknown as CampaignReport);
    expect(line).toContain('wall: op loop 25% of the jobs');
    expect(line).toContain('qemu-img create 2400, qemu-img check 300');
    const older = { ...base, volume: { sequences: 10, loopMs: 10_000 } };
    expect(sequenceRateLine(older as unknown as CampaignReport)).not.toContain('wall:');
  });
});
