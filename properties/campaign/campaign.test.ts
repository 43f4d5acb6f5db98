/**
 * The campaign runner end to end, through the CLI with worker processes, on an engine with a
 * planted bug (a scratch copy of src/image.ts with one line changed, selected by QCOW2_ENGINE):
 * the campaign keeps going past the first failure and reports each distinct signature once; two
 * shards of the same seed range, merged, equal the single run (same sequences, same failures).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { plantEngineBug, WRITE_FIRST_CLUSTER_ONLY } from './planted-bug.ts';
import { dumpDom } from './browser.ts';
import { readReport, type CampaignReport } from './report.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const CLI = fileURLToPath(new URL('../../bin/qcow2.js', import.meta.url));
const COMMON = ['--max-steps', '30', '--seed', '1', '--no-coverage'];

/** What must not depend on jobs or shards: the sequences run and what they found. */
function deterministicPart(r: CampaignReport): unknown {
  return {
    seed: r.identity.seed,
    impl: r.identity.impl,
    indices: r.indices,
    sequences: r.volume.sequences,
    operations: r.volume.operations,
    steps: r.volume.steps,
    byKind: r.volume.byKind,
    byLayout: r.volume.byLayout,
    lengths: r.lengths,
    failures: Object.fromEntries(
      r.failures.map((f) => [f.key, { count: f.count, firstIndex: f.firstIndex, unshrunk: f.unshrunkSteps }]),
    ),
    exitCode: r.exitCode,
  };
}

describe('campaign runner', () => {
  const engine = plantEngineBug();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-campaign-'));
  const env = { QCOW2_ENGINE: engine };
  let single: CampaignReport | undefined;

  it('keeps going past the first failure and reports each distinct signature once', async () => {
    await requireQemuTools();
    const out = path.join(dir, 'cases');
    const report = path.join(dir, 'single.json');
    const run = await execa(
      'node',
      [
        CLI,
        'fuzz',
        '--jobs',
        '2',
        '--runs',
        '6',
        '--shrink-seconds',
        '5',
        '--out',
        out,
        '--report',
        report,
        ...COMMON,
      ],
      { reject: false, env },
    );
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(1);
    const rep = readReport(report);
    single = rep;
    expect(rep.problems).toEqual([]);
    // Past the first failure: every sequence ran, and more than one failed.
    expect(rep.volume.sequences).toBe(6);
    expect(rep.failures.reduce((n, f) => n + f.count, 0)).toBeGreaterThanOrEqual(2);
    // Each distinct signature once, shrunk once, with its case.
    const keys = rep.failures.map((f) => f.key);
    expect(new Set(keys).size).toBe(keys.length);
    const cases = fs.readdirSync(out).filter((f) => f.endsWith('.json'));
    expect(cases.length).toBe(rep.failures.length);
    for (const f of rep.failures) {
      expect(f.shrink?.case && fs.existsSync(f.shrink.case)).toBeTruthy();
      expect(f.signature.subject).toMatch(/^engine@/);
    }
    expect(rep.exitCode).toBe(1);
    expect(run.stdout).toContain(`failures: ${rep.failures.length} distinct`);
  }, 240_000);

  it('two shards merged equal the single run over the same seed range', async () => {
    expect(single, 'needs the single run above').toBeDefined();
    const shards = await Promise.all(
      [0, 1].map(async (k) => {
        const report = path.join(dir, `shard-${k}.json`);
        const run = await execa(
          'node',
          [
            CLI,
            'fuzz',
            '--jobs',
            '1',
            '--runs',
            '3',
            '--shard',
            `${k}/2`,
            '--shrink-seconds',
            '1',
            '--out',
            path.join(dir, `cases-${k}`),
            '--report',
            report,
            ...COMMON,
          ],
          { reject: false, env },
        );
        expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBeLessThan(2);
        return report;
      }),
    );
    const merged = path.join(dir, 'merged.json');
    const run = await execa('node', [CLI, 'fuzz', 'merge', ...shards, '--report', merged], { reject: false });
    expect(run.exitCode, run.stderr).toBe(single?.exitCode);
    const m = readReport(merged);
    expect(m.identity.shards).toEqual([
      { index: 0, count: 2 },
      { index: 1, count: 2 },
    ]);
    expect(deterministicPart(m)).toEqual(deterministicPart(single as CampaignReport));
    // Shard 0/2 ran the even sequences, 1/2 the odd ones.
    expect(readReport(shards[0]).indices).toEqual([
      [0, 0],
      [2, 2],
      [4, 4],
    ]);
    // The merged page, in the browser, shows the merged numbers.
    const dom = await dumpDom(merged.replace(/json$/, 'html'));
    expect(dom).toContain('data-charts="drawn"');
    expect(/id="sequences">([^<]*)</.exec(dom)?.[1]).toBe(String(m.volume.sequences));
    expect(/id="failures">([^<]*)</.exec(dom)?.[1]).toBe(String(m.failures.length));
  }, 240_000);

  it('kills a worker stuck past the deadline and still ends within the budget', async () => {
    // Writes of more than 4 KiB never return (the capability probe's small writes do).
    const stuck = plantEngineBug({
      file: WRITE_FIRST_CLUSTER_ONLY.file,
      line: WRITE_FIRST_CLUSTER_ONLY.line,
      planted: `      if (data.length > 4096) for (;;);\n${WRITE_FIRST_CLUSTER_ONLY.line}`,
    });
    const report = path.join(dir, 'stuck.json');
    const run = await execa(
      'node',
      [
        CLI,
        'fuzz',
        '--jobs',
        '1',
        '--seconds',
        '10',
        '--seed',
        '1',
        '--no-coverage',
        '--out',
        path.join(dir, 'stuck'),
        '--report',
        report,
      ],
      { reject: false, env: { QCOW2_ENGINE: stuck } },
    );
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
    const rep = readReport(report);
    expect(rep.timing.elapsedMs).toBeLessThanOrEqual(10_500);
    // (a sequence whose writes are all small may complete before one gets stuck: the point is
    // that the stuck one is killed and the campaign still ends in its budget)
    expect(rep.identity.notes.join('\n')).toMatch(/still (busy|starting) at the deadline .*killed/);
  }, 60_000);
});
