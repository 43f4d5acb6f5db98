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
  /** Mutation testing: stop at the first failure, without shrinking (a failure is the answer). */
  opts: { firstFailureOnly?: boolean } = {},
): Promise<void> {
  // Never skipped: without qemu-img/qemu-io this throws and the test fails.
  await requireQemuTools();
  // In this process (jobs 0): sequences 0..runs-1 of the seed, each new signature shrunk once.
  const report = await runCampaign({
    task: { name: 'fuzz', options: { impl, seed, maxSteps } },
    seed,
    runs,
    jobs: 0,
    shrinkSeconds: opts.firstFailureOnly ? 0 : 30,
    ...(opts.firstFailureOnly ? { stopAfterFailures: 1 } : {}),
  });
  const failures = report.failures
    .filter((f) => !f.signature.knownBug)
    .map(
      (f) =>
        `${f.message}\n  signature ${f.key} (${f.count} sequences, first: sequence ${f.firstIndex})\n  shrunk (${f.shrink?.status ?? 'no'}): ${f.shrink?.steps.join(' ; ') ?? ''}`,
    );
  // A known bug's failure (properties/known-bugs/) is reported, not a regression.
  for (const f of report.failures.filter((k) => k.signature.knownBug))
    process.stderr.write(`${impl} slice: known bug ${f.signature.knownBug}: ${f.message.slice(0, 300)}\n`);
  expect(report.problems, report.problems.join('\n')).toEqual([]);
  expect(failures, failures.join('\n\n')).toEqual([]);
  expect(report.volume.sequences).toBe(runs);
}
