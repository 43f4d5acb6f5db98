/**
 * The mixed implementation routes the VM-state area and amend steps to the side holding the
 * image: VM state written by one side is read back exactly by the other after a hand-over, and
 * amends run on either side; the kinds are in mixed's command set.
 */
import { describe, expect, it } from 'vitest';
import { buildCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { plainLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { implementation } from './adapters/registry.ts';
import { supportedKinds } from './arbitraries/command-kinds.ts';
import { RunContext } from './runner/run-context.ts';
import { executeStep } from './runner/execute-step.ts';
import { parseStep } from './steps.ts';
import { isHandOver } from './adapters/mixed.ts';

const LAYOUT = plainLayout();

/** `close` hands the image to the other side (engine first). */
const STEPS = [
  'write -P 0x11 0 65536',
  'write -b -P 0x22 0 8192', // engine
  'close',
  'read -b 0 16384', // qemu-io reads the engine's VM state
  'write -b -P 0x33 4096 4096',
  'amend -o compat=0.10', // qemu-img's amend
  'close',
  'read -b 0 16384', // the engine reads qemu-io's
  'amend -o compat=1.1', // the engine's amend
  'amend -o lazy_refcounts=on',
  'close',
  'read -b 0 16384',
  'amend -o lazy_refcounts=off',
  'read 0 131072',
];

describe('mixed: VM-state and amend steps go to the side holding the image', () => {
  it('declares the kinds', async () => {
    const kinds = supportedKinds(await implementation('mixed').capabilities());
    expect(kinds).toEqual(expect.arrayContaining(['vmstate-write', 'vmstate-read', 'amend']));
  });

  it('replays clean, each step on the side the hand-overs give', async () => {
    await requireQemuTools();
    const ctx = await RunContext.start(implementation('mixed'), LAYOUT);
    const sides: string[] = [];
    try {
      for (const line of STEPS) {
        await executeStep(ctx, parseStep(line));
        if (isHandOver(ctx.handle)) sides.push(ctx.handle.activeSide);
      }
    } finally {
      await ctx.dispose();
    }
    expect(sides[1]).toBe('engine');
    expect(sides[3]).toBe('qemu-io');
    expect(sides[5]).toBe('qemu-io');
    expect(sides[8]).toBe('engine');
    const outcome = await replayCase(
      buildCase({
        comment: 'mixed VM state and amend',
        impl: 'mixed',
        layout: LAYOUT,
        steps: STEPS,
        seed: null,
        path: null,
        replayPath: null,
        failure: { kind: 'harness', stepIndex: 0, step: 'none', expected: '', observed: '', message: 'none' },
      }),
    );
    expect(outcome.passed, outcome.divergence?.message).toBe(true);
  }, 120_000);
});
