/**
 * crashtest finds a planted ordering bug: the engine behind properties/crash/planted-engine.ts
 * (selected with QCOW2_ENGINE, as any engine copy is) writes refcount blocks only after the next
 * flush, so tables pointing at new clusters reach the disk before the refcounts covering them.
 * The failure must be found, shrunk to at most 5 operations, and its case script must rebuild the
 * crash state and show qemu-img check failing on it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { requireQemuTools } from '../qemu/qemu-img.ts';

// (before the engine module is first loaded: the adapter reads it once per process)
process.env.QCOW2_ENGINE = new URL('./planted-engine.ts', import.meta.url).pathname;

describe('planted ordering bug', () => {
  it('is found, shrunk to at most 5 operations and saved as a reproducing case', async () => {
    await requireQemuTools();
    const { runCrashtest } = await import('./crashtest.ts');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-planted-'));
    try {
      const r = await runCrashtest({
        impl: 'engine',
        seed: 5,
        runs: 30,
        maxSteps: 10,
        statesPerSequence: 60,
        // Shrinking is bounded by a count, so where it stops does not depend on the machine's load
        // (a time limit alone left the case at 8 steps on a loaded machine). At load ~2.5 this seed
        // needed 11 attempts to reach 1 step and fast-check was done after 16 (~4 s); the time
        // limit is only an outer safety net, far above what 30 attempts take even under heavy load.
        shrinkRuns: 30,
        shrinkSeconds: 240,
        outDir: out,
        // (snapshot operations left out: with them, this seed's 30 sequences no longer meet the
        // planted bug; the repository's engine passes snapshot sequences on v2 and v3 alike)
        excludeKinds: ['snapshot-create', 'snapshot-apply', 'snapshot-delete'],
      });
      expect(r.failuresDetail).toHaveLength(1);
      const f = r.failuresDetail[0];
      expect(f.category).toBe('crash-corruption');
      expect(f.steps).toBeLessThanOrEqual(5);
      const c = r.cases[0].file;
      expect(c.engineModule).toContain('planted-engine.ts');
      expect(c.crash?.failure.category).toBe('crash-corruption');
      // the planted bug's mark: a cluster in use whose refcount never reached the disk
      expect(c.crash?.failure.observed).toMatch(/refcount=0 reference=1/);
      // the script rebuilds the state with base64/gunzip/dd and qemu-img shows the corruption
      const script = f.case!.replace(/\.json$/, '.sh');
      const run = await execa('bash', [script], { reject: false, all: true });
      expect(run.exitCode, run.all).toBe(1);
      expect(run.all).toMatch(/REPRODUCED: qemu-img check exit 2/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
      delete process.env.QCOW2_ENGINE;
    }
  }, 330_000);
});
