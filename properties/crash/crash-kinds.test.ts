/**
 * Every command the crashtest may draw must write to the image only through the recording: a step
 * run by another process on the closed image (qemu-img check -r, convert, amend, bitmap, rebase,
 * commit) changes the file outside the log, and the log no longer replays to the image ("harness:
 * the replayed log differs from the image"). Qemu turns are recorded (through blklogwrites,
 * record.ts recordedTurn): the packed-compressed motif's turn must leave a log that replays to
 * the image, for either implementation. Fixed-seed samples of each kind's commands, resolved on a
 * fresh model, for both implementations' capabilities.
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
import { crashKinds, quirksFor, rerecord } from './crashtest.ts';
import { recordingImplementation } from './record.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

/** Step kinds that run outside the recorded device. */
const OUTSIDE_THE_LOG = new Set<Step['kind']>(['check-repair', 'convert', 'amend', 'bitmap']);

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

  // (the shrunk case of `crashtest --seed 11`: a 131584-byte run of compressed clusters written by
  // a qemu-io turn, one cluster overwritten, all read; the turn used to bypass the log)
  it.each(['engine', 'qemu-io'] as const)(
    '%s: a packed-compressed turn is in the log',
    async (impl) => {
      await requireQemuTools();
      const layout = plainLayout({ compat: '0.10', clusterBits: 13, refcountBits: 16, size: 131584 });
      const steps = ["qemu-io -c 'write -c -s w1.bin 0 131584'", 'write -s w2.bin 0 8192', 'read 0 131584'];
      // (rerecord throws the harness divergence when the log does not replay to the image)
      const run = await rerecord(recordingImplementation(impl), layout, steps);
      expect(run.steps).toHaveLength(3);
      expect(run.recording.stepEnds[0]).toBeGreaterThan(run.recording.setupEntries);
    },
    60_000,
  );
});
