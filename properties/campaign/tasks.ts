/**
 * The tasks a campaign can run, by name: workers rebuild their task from a `TaskSpec` sent by the
 * parent. Another kind of campaign (crash states, `repro IMAGE`) adds one line here.
 */
import { isImplementationName } from '../adapters/registry.ts';
import { FuzzTask } from './fuzz-task.ts';
import { isReaderName } from '../readers/registry.ts';
import { createReproTask } from '../repro/repro-task.ts';
import type { ImageLayout } from '../layout.ts';
import type { CommandKind } from '../arbitraries/command-kinds.ts';
import type { CheckSignature } from '../repro/check-signature.ts';
import type { SequenceTask, TaskSpec } from './sequence-task.ts';

export function createTask(spec: TaskSpec): SequenceTask {
  switch (spec.name) {
    case 'fuzz': {
      const o = spec.options;
      const impl = String(o.impl);
      if (!isImplementationName(impl)) throw new Error(`fuzz task: unknown implementation '${impl}'`);
      return new FuzzTask({
        impl,
        seed: Number(o.seed) | 0,
        maxSteps: Number(o.maxSteps),
        replayPath: typeof o.replayPath === 'string' ? o.replayPath : undefined,
        outDir: typeof o.outDir === 'string' ? o.outDir : undefined,
        hangSeconds: typeof o.hangSeconds === 'number' ? o.hangSeconds : undefined,
        knownBugs: o.knownBugs === 'none' ? 'none' : 'all',
        readers: Array.isArray(o.readers)
          ? (o.readers as unknown[]).map(String).filter(isReaderName)
          : undefined,
      });
    }
    case 'repro': {
      const o = spec.options;
      const impl = String(o.impl);
      if (!isImplementationName(impl)) throw new Error(`repro task: unknown implementation '${impl}'`);
      return createReproTask({
        impl,
        seed: Number(o.seed) | 0,
        maxSteps: Number(o.maxSteps),
        layout: o.layout as ImageLayout,
        weights: o.weights as Partial<Record<CommandKind, number>>,
        target: o.target as CheckSignature,
        outDir: typeof o.outDir === 'string' ? o.outDir : undefined,
      });
    }
    default:
      throw new Error(`unknown campaign task '${spec.name}'`);
  }
}
