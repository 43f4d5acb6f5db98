/**
 * `repro IMAGE` as a campaign task: the fuzz task with the image's layout, command weights drawn
 * from what the image holds, and one judge — a run "fails" (is a hit) when the image it leaves
 * has the target's check signature. The campaign runner shrinks the first hit like any failure,
 * and its case script rebuilds such an image with qemu-img/qemu-io alone.
 */
import type { ImplementationName } from '../adapters/registry.ts';
import type { CommandKind } from '../arbitraries/command-kinds.ts';
import { FuzzTask } from '../campaign/fuzz-task.ts';
import type { ImageLayout } from '../layout.ts';
import { qemuImgCheck } from '../qemu/qemu-img.ts';
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';
import {
  describeSignature,
  sameSignature,
  signatureFromCheck,
  type CheckSignature,
} from './check-signature.ts';

export interface ReproTaskOptions {
  impl: ImplementationName;
  seed: number;
  maxSteps: number;
  layout: ImageLayout;
  weights: Partial<Record<CommandKind, number>>;
  target: CheckSignature;
  outDir?: string;
}

/** The judge: close the image, check it, and call it a hit when the signature is the target's. */
export function signatureJudge(target: CheckSignature): (ctx: RunContext) => Promise<void> {
  return async (ctx) => {
    await ctx.handle.close();
    const r = await qemuImgCheck(ctx.imagePath, ctx.layout);
    const got = signatureFromCheck(r.exitCode, r.json, r.stderr);
    if (!sameSignature(got, target)) return;
    throw new Divergence({
      kind: 'qemu-img-check',
      stepIndex: ctx.steps.length,
      step: 'end',
      expected: 'an image qemu-img check finds clean',
      observed: `the target's signature: ${describeSignature(got)} | ${r.stderr.trim().split('\n').slice(0, 10).join(' | ')}`,
      check: r.json,
      category: 'repro-hit',
    });
  };
}

export function createReproTask(o: ReproTaskOptions): FuzzTask {
  return new FuzzTask({
    impl: o.impl,
    seed: o.seed,
    maxSteps: o.maxSteps,
    outDir: o.outDir,
    // A search goes everywhere: no known bug steers it away from where the damage may come from.
    knownBugs: 'none',
    search: { name: 'repro', layout: o.layout, weights: o.weights, judge: signatureJudge(o.target) },
  });
}
