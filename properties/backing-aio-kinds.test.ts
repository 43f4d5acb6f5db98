/**
 * The command kinds for backing files and in-flight requests: `aio-batch` (either-order model),
 * `rebase` (safe onto a new file, flatten, -u onto a copy), `commit`, and partial clusters over a
 * backing file. Each kind runs on the engine and on qemu-io with a fixed seed and is checked by the
 * model and the oracles; a wrong implementation of each (planted in the handle) is caught.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { implementation } from './adapters/registry.ts';
import { RunContext } from './runner/run-context.ts';
import { executeStep } from './runner/execute-step.ts';
import { finalOracles } from './oracles/image-oracles.ts';
import { Divergence } from './runner/divergence.ts';
import { parseStep, formatStep, type AioWrite } from './steps.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { groupCandidates, overlapGroups } from './model/aio-orders.ts';
import { commandSequenceArbitrary } from './arbitraries/command-sequence.ts';
import { plainLayout } from './layout.ts';
import type { CommandKind } from './arbitraries/command-kinds.ts';

const LAYOUT = plainLayout({
  extendedL2: true,
  size: 4 << 20,
  backing: {
    format: 'qcow2',
    size: 3 << 20,
    writes: [
      { offset: 0, length: 1 << 20, pattern: 0x42 },
      { offset: 3000000, length: 145728, pattern: 0x17 },
    ],
  },
});

/** Every new step kind once, in an order that continues on each result. */
const STEPS = [
  'write -P 0x61 1000 3000',
  'aio_write -P 0x11 65536 4096; aio_write -P 0x12 66000 8000; aio_write -P 0x13 200000 512; aio_flush',
  'write -z 70000 100',
  'discard 131072 70000',
  'base-copy b2.img raw',
  'rebase -u -b b2.img -F raw',
  'commit',
  'write -P 0x62 3145000 2000',
  'base-create b3.img qcow2 2097152 0x33@0+5000 0x42@5000+100000',
  'rebase -b b3.img -F qcow2',
  "rebase -b ''",
];

async function run(
  impl: 'engine' | 'qemu-io',
  steps: readonly string[],
  plant?: (ctx: RunContext) => void,
): Promise<Divergence | undefined> {
  const ctx = await RunContext.start(implementation(impl), LAYOUT);
  try {
    plant?.(ctx);
    for (const line of steps) await executeStep(ctx, parseStep(line));
    await finalOracles(ctx);
    return undefined;
  } catch (e) {
    if (e instanceof Divergence) return e;
    throw e;
  } finally {
    await ctx.dispose();
  }
}

describe('the either-order model of aio_write batches', () => {
  const w = (offset: number, length: number, pattern: number): AioWrite => ({ offset, length, pattern });

  it('requests that overlap nothing form groups of one, with one result', () => {
    const writes = [w(0, 512, 1), w(512, 512, 2), w(4096, 100, 3)];
    const groups = overlapGroups(writes);
    expect(groups.map((g) => g.members)).toEqual([[0], [1], [2]]);
    for (const g of groups) expect(groupCandidates(writes, g, new Uint8Array(g.length))).toHaveLength(1);
  });

  it('overlapping requests give exactly the results of their serial orders, never a torn mix', () => {
    const writes = [w(0, 8, 1), w(4, 8, 2), w(10, 4, 3)];
    const [g] = overlapGroups(writes);
    expect(g.members).toEqual([0, 1, 2]);
    const results = groupCandidates(writes, g, new Uint8Array(g.length)).map((c) => [...c.bytes].join(''));
    // 6 orders, 4 distinct results (3 after 2 or before: bytes 10-11 differ; 1 before or after 2)
    expect(new Set(results).size).toBe(results.length);
    expect(results).toContain('11112222223333');
    expect(results).toContain('11111111223333');
    const torn = '11112211223333'; // request 2 landed in two pieces around request 1
    expect(results).not.toContain(torn);
  });

  it('spells and parses every new step as one line', () => {
    expect(parseStep(STEPS[1]).kind).toBe('aio-batch');
    for (const line of STEPS) expect(formatStep(parseStep(line))).toBe(line);
    // the order a run found is noted on the line, and a replay finds it again
    expect(parseStep(`${STEPS[1]}  # landed: 1 0 2`)).toEqual(parseStep(STEPS[1]));
  });
});

describe.each(['engine', 'qemu-io'] as const)('new step kinds on %s', (impl) => {
  it('aio batch, rebase -u onto a copy, commit, base-create + safe rebase and flatten: all pass', async () => {
    await requireQemuTools();
    const d = await run(impl, STEPS);
    expect(d?.message).toBeUndefined();
  });

  it('a commit that does nothing is caught (the backing file lacks the committed data)', async () => {
    await requireQemuTools();
    const d = await run(impl, STEPS.slice(0, 7), (ctx) => {
      ctx.handle.commit = async () => {};
    });
    expect(d?.details.kind).toBe('convert-mismatch');
    expect(d?.details.category).toBe('committed-base');
  });

  it('a safe rebase done as -u is caught (the guest reads the new file)', async () => {
    await requireQemuTools();
    const steps = [...STEPS.slice(0, 4), STEPS[8], STEPS[9]];
    const d = await run(impl, steps, (ctx) => {
      const rebase = ctx.handle.rebase!.bind(ctx.handle);
      ctx.handle.rebase = (name, format) => rebase(name, format, true);
    });
    expect(d?.details.kind).toBe('read-mismatch');
    expect(d?.details.step).toMatch(/^rebase -b b3\.img/);
  });

  it('overlapping requests landing torn are caught', async () => {
    await requireQemuTools();
    const d = await run(impl, STEPS.slice(0, 2), (ctx) => {
      const h = ctx.handle;
      // request 1 whole, then request 0 in two pieces around it: no serial order gives that
      h.aioWriteBatch = async (writes) => {
        const [a, b, ...rest] = writes;
        const half = Math.floor(a.length / 2);
        await h.write(a.offset, new Uint8Array(half).fill(a.pattern), { pattern: a.pattern });
        await h.write(b.offset, new Uint8Array(b.length).fill(b.pattern), { pattern: b.pattern });
        const tail = a.length - half;
        await h.write(a.offset + half, new Uint8Array(tail).fill(a.pattern), { pattern: a.pattern });
        for (const r of rest) await h.write(r.offset, new Uint8Array(r.length).fill(r.pattern), r);
      };
    });
    expect(d?.details.category).toBe('aio-no-serial-order');
  });
});

describe('a fixed-seed sequence of the new kinds', () => {
  const KINDS: CommandKind[] = [
    'write',
    'read',
    'aio-batch',
    'rebase',
    'commit',
    'backing-partial',
    'reopen',
  ];

  it.each(['engine', 'qemu-io'] as const)(
    '%s: each new kind runs, the model and the oracles agree',
    async (impl) => {
      await requireQemuTools();
      const weights = {
        write: 3,
        read: 2,
        reopen: 1,
        'aio-batch': 4,
        rebase: 6,
        commit: 4,
        'backing-partial': 6,
      };
      const samples = fc.sample(commandSequenceArbitrary(KINDS, { maxCommands: 40, weights }), {
        seed: 8,
        numRuns: 3,
      });
      const seen = new Set<string>();
      for (const commands of samples) {
        const ctx = await RunContext.start(implementation(impl), LAYOUT);
        try {
          await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
          await finalOracles(ctx);
          for (const s of ctx.steps) seen.add(parseStep(s).kind);
        } finally {
          await ctx.dispose();
        }
      }
      for (const kind of [
        'aio-batch',
        'rebase',
        'commit',
        'base-create',
        'base-copy',
        'discard',
        'write-zeroes',
      ])
        expect(seen, `kinds seen: ${[...seen].join(', ')}`).toContain(kind);
    },
  );
});
