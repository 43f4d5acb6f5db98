/**
 * Every command the crashtest may draw must write to the image only through the recorded device:
 * a step run by another process on the closed image (a qemu turn, qemu-img check -r, convert,
 * amend, bitmap, rebase, commit) changes the file outside the log, and the log no longer replays
 * to the image ("harness: the replayed log differs from the image"). Fixed-seed samples of each
 * kind's commands, resolved on a fresh model, for both implementations' capabilities.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CATALOGUE } from '../arbitraries/command-kinds.ts';
import { EngineImplementation } from '../adapters/engine.ts';
import { QEMU_CAPABILITIES } from '../adapters/qemu-io.ts';
import type { Capabilities } from '../adapters/adapter.ts';
import { plainLayout } from '../layout.ts';
import { DiskModel } from '../model/disk-model.ts';
import type { StepCommand } from '../commands/step-command.ts';
import type { Step } from '../steps.ts';
import { crashKinds, quirksFor } from './crashtest.ts';

/** Step kinds that run outside the recorded device. */
const OUTSIDE_THE_LOG = new Set<Step['kind']>(['qemu-turn', 'check-repair', 'convert', 'amend', 'bitmap']);

function stepsOf(cmd: StepCommand, model: DiskModel): Step[] {
  return cmd.stepsFor(model) ?? [];
}

describe('crashtest command kinds', () => {
  it.each(['engine', 'qemu-io'] as const)('%s: no drawn command writes outside the log', async (impl) => {
    const caps: Capabilities =
      impl === 'engine' ? await new EngineImplementation().capabilities() : QEMU_CAPABILITIES;
    const layout = plainLayout({ size: 1 << 20 });
    const outside: string[] = [];
    for (const kind of crashKinds(caps)) {
      const cmds = fc.sample(CATALOGUE[kind].arbitrary(), { numRuns: 25, seed: 20261126 });
      for (const cmd of cmds)
        for (const step of stepsOf(cmd, new DiskModel(layout, quirksFor(caps))))
          if (OUTSIDE_THE_LOG.has(step.kind) || step.kind.startsWith('backing'))
            outside.push(`${kind}: ${step.kind}`);
    }
    expect([...new Set(outside)]).toEqual([]);
  });
});
