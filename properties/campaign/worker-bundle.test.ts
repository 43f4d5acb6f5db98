/**
 * The campaign workers' bundle (worker-bundle.ts): built when its inputs change, chosen for the
 * repository's engine only (a planted copy, QCOW2_ENGINE, runs through tsx), and a campaign run
 * from it checks sequences and reports the engine's coverage, mapped back to src/ — where a
 * function that never ran (an I/O error path) is not counted as covered.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WORKER_BUNDLE, workerBundleCurrent, workerModule } from './worker-bundle.ts';
import { parseLineRanges } from './coverage.ts';
import { runCampaign } from '../runner/campaign.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe("the campaign workers' bundle", () => {
  it('is built for the repository engine, and not for a planted copy or with QCOW2_WORKER_TSX=1', async () => {
    const problems: string[] = [];
    expect(await workerModule({}, (p) => problems.push(p))).toBe(WORKER_BUNDLE);
    expect(problems).toEqual([]);
    expect(workerBundleCurrent()).toBe(true);
    expect(await workerModule({ QCOW2_ENGINE: '/tmp/planted/image.ts' }, () => {})).toBeUndefined();
    expect(await workerModule({ QCOW2_WORKER_TSX: '1' }, () => {})).toBeUndefined();
    // an input whose size or time changed makes it out of date
    const inputs = `${WORKER_BUNDLE}.inputs.json`;
    const saved = fs.readFileSync(inputs, 'utf8');
    try {
      const stamps = JSON.parse(saved) as [string, number, number][];
      expect(stamps.some(([f]) => f === path.join(ROOT, 'src/image.ts'))).toBe(true);
      stamps[0] = [stamps[0][0], stamps[0][1] + 1, stamps[0][2]];
      fs.writeFileSync(inputs, JSON.stringify(stamps));
      expect(workerBundleCurrent()).toBe(false);
    } finally {
      fs.writeFileSync(inputs, saved);
    }
    expect(workerBundleCurrent()).toBe(true);
  });

  it('runs a campaign whose coverage maps back to src/, uncalled functions uncovered', async () => {
    await requireQemuTools();
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-bundle-'));
    try {
      const report = await runCampaign({
        task: { name: 'fuzz', options: { impl: 'engine', seed: 1, maxSteps: 20, outDir, knownBugs: 'all' } },
        seed: 1,
        runs: 2,
        jobs: 1,
        outDir,
        coverage: true,
      });
      expect(report.problems).toEqual([]);
      expect(report.volume.sequences).toBe(2);
      expect(report.identity.notes.join(' ')).not.toMatch(/bundle|coverage/);
      const files = report.coverage?.files ?? {};
      expect(files['src/image.ts']?.lines.covered).toBeGreaterThan(100);
      // no file outside src/ (the harness is in the same bundle)
      expect(Object.keys(files).every((f) => f.startsWith('src/'))).toBe(true);
      // ioError (src/io/device.ts) runs only when a file operation fails: never in these runs
      const device = fs.readFileSync(path.join(ROOT, 'src/io/device.ts'), 'utf8').split('\n');
      const line = device.findIndex((l) => l.startsWith('function ioError(')) + 1;
      expect(line).toBeGreaterThan(0);
      const hit = new Set(parseLineRanges(files['src/io/device.ts']?.lines.hit ?? ''));
      expect(hit.size).toBeGreaterThan(10);
      expect(hit.has(line + 2)).toBe(false);
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  }, 120_000);
});
