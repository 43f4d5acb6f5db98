/**
 * `crashtest --seconds N` and `--faults --seconds N` end within 5% of N counted from the process's
 * start (`startedAt`): sequences, crash-state judging and shrinking stop at the deadline less the
 * reserved tail. Here 2 s of an 8 s budget are already spent when the campaign starts.
 */
import { describe, expect, it } from 'vitest';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { runCrashtest } from './crashtest.ts';
import { runFaultCampaign } from './faults.ts';

describe('crashtest budget', () => {
  it('crash states: ends within 5% of N from startedAt', async () => {
    await requireQemuTools();
    const startedAt = Date.now() - 2000;
    await runCrashtest({ impl: 'engine', seed: 20261126, seconds: 8, startedAt, shrinkRuns: 3 });
    const took = Date.now() - startedAt;
    expect(took).toBeGreaterThanOrEqual(7600);
    expect(took).toBeLessThanOrEqual(8400);
  }, 60_000);

  it('faults: ends within 5% of N from startedAt', async () => {
    await requireQemuTools();
    const startedAt = Date.now() - 2000;
    const r = await runFaultCampaign({ impl: 'engine', seed: 1, seconds: 5, startedAt });
    const took = Date.now() - startedAt;
    expect(r.scenarios).toBeGreaterThan(0);
    expect(took).toBeGreaterThanOrEqual(4750);
    expect(took).toBeLessThanOrEqual(5250);
  }, 60_000);
});
