/**
 * The campaign runner end to end, through the CLI with worker processes: a planted engine bug
 * (a scratch copy of src/image.ts with one line changed, selected by QCOW2_ENGINE) is found, the
 * campaign keeps going past the first failure, and each distinct signature is reported and
 * shrunk once.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { plantEngineBug } from './planted-bug.ts';
import { readReport } from './report.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const CLI = fileURLToPath(new URL('../../bin/qcow2.js', import.meta.url));

describe('campaign runner', () => {
  it('keeps going past the first failure and reports each distinct signature once', async () => {
    await requireQemuTools();
    const engine = plantEngineBug();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-campaign-'));
    const out = path.join(dir, 'cases');
    const report = path.join(dir, 'r.json');
    const run = await execa(
      'node',
      [
        CLI,
        'fuzz',
        '--jobs',
        '2',
        '--runs',
        '6',
        '--max-steps',
        '30',
        '--seed',
        '1',
        '--shrink-seconds',
        '10',
        '--out',
        out,
        '--report',
        report,
        '--no-coverage',
      ],
      { reject: false, env: { QCOW2_ENGINE: engine } },
    );
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(1);
    const rep = readReport(report);
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
  }, 240_000);
});
