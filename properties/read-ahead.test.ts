/**
 * Reads sent behind pipelined writes (runner/execute-step.ts): qemu-io answers in order, so a read
 * sees the writes still in flight; and a failed write is still reported at its own step, not as
 * the read mismatch it causes.
 */
import { describe, expect, it } from 'vitest';
import { ImplementationError } from './adapters/adapter.ts';
import { implementation } from './adapters/registry.ts';
import { plainLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { Divergence } from './runner/divergence.ts';
import { executeStep } from './runner/execute-step.ts';
import { RunContext } from './runner/run-context.ts';
import { parseStep } from './steps.ts';

const LAYOUT = plainLayout({ clusterBits: 12, size: 1 << 20 });
const STEPS = ['write -P 0x11 0 8192', 'write -P 0x22 4096 512', 'discard 8192 4096', 'read 0 16384'];

async function run(failSecondWrite: boolean): Promise<unknown> {
  const ctx = await RunContext.start(implementation('qemu-io'), LAYOUT);
  ctx.pipeline = true;
  try {
    expect(ctx.pipelining).toBe(true);
    if (failSecondWrite) {
      const h = ctx.handle;
      const write = h.write.bind(h);
      let n = 0;
      h.write = (...args) =>
        ++n === 2 ? Promise.reject(new ImplementationError('write', 'planted failure')) : write(...args);
    }
    for (const line of STEPS) await executeStep(ctx, parseStep(line));
    await ctx.settle();
    return undefined;
  } catch (e) {
    return e;
  } finally {
    await ctx.dispose();
  }
}

describe('reads behind pipelined writes (qemu-io)', () => {
  it('read what the writes in flight left', async () => {
    await requireQemuTools();
    expect(await run(false)).toBeUndefined();
  }, 60_000);

  it('a failed write is reported at its own step, not as the read that misses its data', async () => {
    await requireQemuTools();
    const e = await run(true);
    expect(e).toBeInstanceOf(Divergence);
    expect((e as Divergence).details).toMatchObject({ kind: 'operation-failed', stepIndex: 1 });
  }, 60_000);
});
