/**
 * Known bugs are data (properties/known-bugs/): a failure whose signature matches is labelled with
 * the bug's id; with the list disabled, nothing is labelled and nothing is steered, and the
 * harness finds a QEMU 7.2 defect again from scratch (a short fixed-seed qemu-io run whose command
 * weights favour compressed writes and discards of recent writes).
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { allKnownBugs, knownBugs, matchKnownBug, setKnownBugs, steeringOn } from './known-bugs/index.ts';
import { replayCase } from './cases/replay.ts';
import { loadCase, type CaseFile } from './cases/case-file.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { qemuIoImplementation } from './adapters/qemu-io.ts';
import { CATALOGUE } from './arbitraries/command-kinds.ts';
import { DiscardCommand } from './commands/discard-command.ts';
import { RunContext } from './runner/run-context.ts';
import { finalOracles } from './oracles/image-oracles.ts';
import { asDivergence } from './cases/replay.ts';
import type { Divergence } from './runner/divergence.ts';
import { plainLayout } from './layout.ts';
import * as fs from 'node:fs';

const LAYOUT = plainLayout({
  size: 64 << 20,
});

/** The issue's one-session sequence, then a read of the data at 1M. */
const ISSUE_CASE: CaseFile = {
  comment: 'known-bugs test',
  impl: 'qemu-io',
  image: { layout: LAYOUT, createOptions: '', size: LAYOUT.size },
  steps: [
    "qemu-io -c 'write -c -P 0x01 0 65536' -c 'discard 0 65536' -c 'write -s w1.bin 1048576 65536' -c 'write -c -s w2.bin 2097152 65536'",
    'read 1048576 65536',
  ],
  seed: null,
  path: null,
  replayPath: null,
  failure: { kind: 'harness', stepIndex: 0, step: '', expected: '', observed: '', message: '' },
  script: '',
};

afterEach(() => setKnownBugs('all'));

describe('known bugs', () => {
  it('are one well-formed file each, with a corpus case', () => {
    const bugs = allKnownBugs();
    expect(bugs.length).toBeGreaterThanOrEqual(3);
    for (const bug of bugs) {
      expect(bug.id).toMatch(/^[a-z0-9.-]+$/);
      expect(bug.signatures.length).toBeGreaterThan(0);
      expect(fs.existsSync(new URL(`../${bug.corpusCase}`, import.meta.url))).toBe(true);
      if (bug.steer) expect(bug.steer.why.length).toBeGreaterThan(20);
    }
  });

  it('label the issue’s compressed-write-after-free sequence, and --known-bugs none turns list and steering off', async () => {
    await requireQemuTools();
    const outcome = await replayCase(ISSUE_CASE);
    expect(outcome.passed).toBe(false);
    const d = outcome.divergence!.details;
    expect(d.kind).toBe('read-mismatch');
    // (the data at 1M now holds write #2's compressed stream: bytes no write produced)
    expect(d.category).toBe('never-written');
    expect(String(d.observed)).toMatch(/^guest 0x100[0-9a-f]{3} holds bytes never written anywhere/);
    expect(matchKnownBug(d, outcome.steps, 'qemu-io')?.id).toBe('qemu-7.2-compressed-write-after-free');
    expect(matchKnownBug(d, outcome.steps, 'engine')).toBeUndefined();
    expect(steeringOn('qemu-io', 'cluster-aligned-shrink')).toBe(true);
    setKnownBugs('none');
    expect(knownBugs()).toEqual([]);
    expect(matchKnownBug(d, outcome.steps, 'qemu-io')).toBeUndefined();
    expect(steeringOn('qemu-io', 'cluster-aligned-shrink')).toBe(false);
  }, 60_000);

  it("every known bug's corpus case matches it", () => {
    for (const bug of allKnownBugs()) {
      const file = loadCase(new URL(`../${bug.corpusCase}`, import.meta.url).pathname);
      // under every implementation it lists: a QEMU bug met through the engine (a qemu-img step's
      // own defect, as the repair's) is labelled for the engine too (scripts/bench-harness.ts)
      for (const impl of bug.implementations)
        expect(
          matchKnownBug(file.failure, file.steps, impl, file.image.layout)?.id,
          `${bug.id} (${impl})`,
        ).toBe(bug.id);
    }
  });

  it('the repair that drops the snapshot table needs a snapshot: a repair of an image without one is not labelled', () => {
    const bug = allKnownBugs().find((b) => b.id === 'qemu-7.2-check-repair-frees-bitmap-clusters')!;
    const file = loadCase(new URL(`../${bug.corpusCase}`, import.meta.url).pathname);
    expect(matchKnownBug(file.failure, file.steps, 'engine')?.id).toBe(bug.id);
    const withoutSnapshot = file.steps.filter((s) => !s.startsWith('snapshot -c '));
    expect(withoutSnapshot.length).toBeLessThan(file.steps.length);
    expect(matchKnownBug(file.failure, withoutSnapshot, 'engine')).toBeUndefined();
  });

  it('with the list disabled, a fixed-seed qemu-io run (compressed writes, writes, reads, discards of recent writes) finds a QEMU 7.2 defect from scratch', async () => {
    await requireQemuTools();
    setKnownBugs('none');
    const impl = qemuIoImplementation();
    let found: { divergence: Divergence; steps: string[] } | undefined;
    const property = fc.asyncProperty(
      fc.commands(
        [
          fc.oneof(
            { weight: 3, arbitrary: CATALOGUE['compressed-write'].arbitrary() },
            { weight: 3, arbitrary: CATALOGUE.write.arbitrary() },
            { weight: 1, arbitrary: CATALOGUE.read.arbitrary() },
            // discards over recent writes, whole clusters
            {
              weight: 2,
              arbitrary: fc
                .tuple(fc.nat(), fc.nat())
                .map(
                  ([start, length]) =>
                    new DiscardCommand({ placement: 'recent', extent: 'few-clusters', start, length }),
                ),
            },
          ),
        ],
        { maxCommands: 12, size: 'max' },
      ),
      async (commands) => {
        if (found) return;
        const ctx = await RunContext.start(impl, LAYOUT);
        try {
          await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
          await finalOracles(ctx);
        } catch (e) {
          found = { divergence: asDivergence(e, ctx.steps), steps: [...ctx.steps] };
        } finally {
          await ctx.dispose();
        }
      },
    );
    await fc.assert(property, { seed: 1, numRuns: 30 });
    expect(found, 'no failure in 30 sequences').toBeDefined();
    const d = found!.divergence.details;
    setKnownBugs('all');
    expect(matchKnownBug(d, found!.steps, 'qemu-io')?.id, found!.divergence.message).toBe(
      'qemu-7.2-compressed-write-after-free',
    );
  }, 240_000);
});
