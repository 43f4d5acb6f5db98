/**
 * Bad requests (properties/commands/bad-request-command.ts) are refused by the engine with the
 * error code the model expects, and by qemu-io, and leave the image as it was: each is performed
 * through the harness's own step executor after a write, then the end-of-sequence oracles
 * (qemu-img check, convert, info, reopen and read) must find the image unchanged.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MOTIF_KINDS } from './arbitraries/motif-kinds.ts';
import { implementation } from './adapters/registry.ts';
import { RunContext } from './runner/run-context.ts';
import { executeStep } from './runner/execute-step.ts';
import { finalOracles } from './oracles/image-oracles.ts';
import { badRequest } from './commands/bad-requests.ts';
import type { StepCommand } from './commands/step-command.ts';
import type { ImageLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';

const layout: ImageLayout = {
  compat: '1.1',
  clusterBits: 12,
  refcountBits: 16,
  extendedL2: false,
  compressionType: 'zlib',
  lazyRefcounts: false,
  size: 3 * 4096 + 1536,
};

describe('bad requests', () => {
  for (const impl of ['engine', 'qemu-io'] as const) {
    it(`${impl} refuses each kind and leaves the image unchanged`, async () => {
      await requireQemuTools();
      const commands = fc.sample(MOTIF_KINDS['bad-request'].arbitrary() as fc.Arbitrary<StepCommand>, {
        seed: 7,
        numRuns: 14,
      });
      const ctx = await RunContext.start(implementation(impl), layout);
      try {
        await executeStep(ctx, {
          kind: 'write',
          offset: 1000,
          length: 12000,
          stamp: ctx.model.nextWriteId(),
        });
        const kinds = new Set<string>();
        for (const c of commands) {
          const steps = c.stepsFor(ctx.model);
          if (!steps) continue;
          for (const step of steps) {
            expect(badRequest(ctx.model, step)).toBe(true);
            kinds.add(step.kind);
            await executeStep(ctx, step);
          }
        }
        expect([...kinds].sort()).toEqual(
          [
            'discard',
            'read',
            'snapshot-apply',
            'snapshot-delete',
            'write',
            'write-compressed',
            'write-zeroes',
          ].sort(),
        );
        expect(ctx.steps.slice(1).every((s) => s.startsWith('! '))).toBe(true);
        await finalOracles(ctx);
      } finally {
        await ctx.dispose();
      }
    }, 120_000);
  }
});
