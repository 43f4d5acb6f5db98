/**
 * A fixed sample of QEMU's own qemu-iotests, run by `check` with our CLI as qemu-img and qemu-io
 * (bin/qcow2.js under those names) and with the real tools. The suite comes from Debian's source
 * package of the installed qemu-utils (scripts/iotests/source.ts): when it cannot be had, this
 * fails — it is never skipped. The full run is `npm run iotests`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTests } from '../../scripts/iotests/runner.ts';
import { selectTests } from '../../scripts/iotests/select.ts';
import { ensureSuite } from '../../scripts/iotests/source.ts';

/** Fast tests (a few seconds each with qemu) covering create/info/check/map/io and messages. */
const SAMPLE = ['001', '010', '032', '062', '069', '104'];

describe('qemu-iotests sample', () => {
  it('passes with the real tools and with ours', { timeout: 300_000 }, async () => {
    const suite = await ensureSuite();
    const sel = selectTests(suite.dir);
    expect(sel.selected.length).toBeGreaterThanOrEqual(100);
    for (const t of SAMPLE) expect(sel.selected).toContain(t);
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-sample-'));
    try {
      const jobs = Math.min(2, os.availableParallelism());
      const base = { iotestsDir: suite.dir, tests: SAMPLE, jobs, workDir, timeoutSeconds: 240 };
      const qemu = await runTests({ ...base, side: 'qemu' });
      expect(qemu.map((r) => `${r.test} ${r.status} ${r.reason ?? ''}`.trim())).toEqual(
        SAMPLE.map((t) => `${t} pass`),
      );
      const ours = await runTests({ ...base, side: 'ours' });
      expect(ours.map((r) => `${r.test} ${r.status} ${r.reason ?? ''}`.trim())).toEqual(
        SAMPLE.map((t) => `${t} pass`),
      );
    } finally {
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  });
});
