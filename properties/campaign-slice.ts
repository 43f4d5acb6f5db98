/** The fixed-seed slices `npm test` runs (shared by the *.property.test.ts files). */
import { expect } from 'vitest';
import { runCampaign } from './runner/campaign.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import type { ImplementationName } from './adapters/registry.ts';

export async function expectSliceToPass(
  impl: ImplementationName,
  seed: number,
  runs: number,
  maxSteps: number,
): Promise<void> {
  // Never skipped: without qemu-img/qemu-io this throws and the test fails.
  await requireQemuTools();
  const result = await runCampaign({ impl, seed, runs, maxSteps, shrinkSeconds: 30 });
  // A known bug's failure (properties/known-bugs/) is reported, not a regression.
  for (const c of result.cases.filter((k) => k.file.knownBug))
    process.stderr.write(
      `${impl} slice: known bug ${c.file.knownBug}: ${c.file.failure.message.slice(0, 300)}\n`,
    );
  const failures = result.cases
    .filter((c) => !c.file.knownBug)
    .map(
      (c) =>
        `${c.file.failure.message}\n  steps (${c.file.steps.length}): ${c.file.steps.join(' ; ')}\n  seed ${String(c.file.seed)} path ${String(c.file.path)} replayPath ${String(c.file.replayPath)}\n  image ${c.file.image.createOptions} size ${c.file.image.size}`,
    );
  expect(failures, failures.join('\n\n')).toEqual([]);
  if (result.cases.length === 0) expect(result.runs).toBeGreaterThanOrEqual(runs);
}
