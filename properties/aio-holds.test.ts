/**
 * aio_write batches really in flight on qemu-io: the first request to reach a blkdebug event
 * (data write, cluster allocation, L2 table allocation or update, copy-on-write, refcount block
 * allocation) is held there while the others are submitted. Each hold is checked to have held a
 * request, the either-order model accepts what QEMU did, and the case script replays the batch
 * with qemu-io alone.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { implementation } from './adapters/registry.ts';
import { StdinProtocolHandle } from './adapters/stdin-protocol.ts';
import { writeScript } from './cases/script-writer.ts';
import { plainLayout, qemuCreateOptions } from './layout.ts';
import { finalOracles } from './oracles/image-oracles.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { executeStep } from './runner/execute-step.ts';
import { RunContext } from './runner/run-context.ts';
import { AIO_HOLDS, formatStep, parseStep, type AioBatchStep } from './steps.ts';

/** 512-byte clusters over a backing file: every request allocates, COWs, and soon needs refcount blocks. */
const LAYOUT = plainLayout({
  clusterBits: 9,
  size: 4 << 20,
  cache: { l2CacheSize: 1024, refcountCacheSize: 2048 },
  backing: { format: 'qcow2', size: 3 << 20, writes: [{ offset: 0, length: 1 << 20, pattern: 0x42 }] },
});

const BATCH =
  'aio_write -P 0x11 1000 300; aio_write -P 0x12 1100 600; aio_write -P 0x13 300000 700; aio_write -P 0x14 2000000 512; aio_flush';
const STEPS = (hold: string): string[] => [
  'write -P 0x61 0 100',
  `break ${hold}; ${BATCH}`,
  'read 0 2100000',
];

/**
 * Run `steps` on a fresh image, each run judged by the model and the final oracles, until a request
 * was held: the hold lasts 1 ms of qemu-io's main loop, so on a loaded machine the request may
 * reach its event only after the hold is removed (up to 3 tries). Returns the requests held.
 */
async function heldWithRetries(impl: 'qemu-io' | 'mixed', steps: readonly string[]): Promise<number> {
  let got = 0;
  for (let attempt = 0; attempt < 3 && got === 0; attempt++) {
    const ctx = await RunContext.start(implementation(impl), LAYOUT);
    const held = StdinProtocolHandle.holds.held;
    try {
      for (const line of steps) await executeStep(ctx, parseStep(line));
      await finalOracles(ctx);
    } finally {
      await ctx.dispose();
    }
    got = StdinProtocolHandle.holds.held - held;
  }
  return got;
}

describe('held aio batches', () => {
  it('spell the hold as the first part of the line, and parse it back', () => {
    const step = parseStep(`break l2_update; ${BATCH}`) as AioBatchStep;
    expect(step.hold).toBe('l2_update');
    expect(step.writes).toHaveLength(4);
    expect(formatStep(step)).toBe(`break l2_update; ${BATCH}`);
    expect((parseStep(BATCH) as AioBatchStep).hold).toBeUndefined();
    expect(() => parseStep(`break no_such_event; ${BATCH}`)).toThrow(/bad aio step/);
  });

  it('qemu-io: every hold holds a request while the others run, and the model accepts the result', async () => {
    await requireQemuTools();
    for (const hold of AIO_HOLDS) {
      expect(await heldWithRetries('qemu-io', STEPS(hold)), `a request held at ${hold}`).toBe(1);
    }
  }, 120_000);

  it('the engine serves a held batch one request after another (the hold is qemu-io’s)', async () => {
    await requireQemuTools();
    const ctx = await RunContext.start(implementation('engine'), LAYOUT);
    try {
      for (const line of STEPS('cluster_alloc')) await executeStep(ctx, parseStep(line));
      await finalOracles(ctx);
    } finally {
      await ctx.dispose();
    }
  });

  it('mixed: on qemu-io’s turn a held batch holds a request too', async () => {
    await requireQemuTools();
    // (`close` hands the image from the engine to qemu-io)
    const steps = ['write -P 0x61 0 100', 'close', `break write_aio; ${BATCH}`, 'read 0 2100000'];
    expect(await heldWithRetries('mixed', steps)).toBe(1);
  }, 60_000);

  it('a case script replays a held batch with qemu-io alone (blkdebug through --image-opts)', async () => {
    await requireQemuTools();
    const script = writeScript({
      comment: 'held aio batch',
      impl: 'qemu-io',
      image: { layout: LAYOUT, createOptions: qemuCreateOptions(LAYOUT), size: LAYOUT.size },
      steps: STEPS('cow_write'),
      seed: null,
      path: null,
      replayPath: null,
      failure: {
        kind: 'read-mismatch',
        stepIndex: 2,
        step: 'read 0 2100000',
        expected: '',
        observed: '',
        message: '',
      },
      script: '',
    });
    expect(script).toMatch(
      /file\.driver=blkdebug.*-c 'break cow_write hold'.*-c 'remove_break hold' -c 'aio_flush'/,
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'held-script-'));
    try {
      fs.writeFileSync(path.join(dir, 'case.sh'), script);
      // exit 0: nothing reproduced (QEMU's result is one serial order; the script's checks pass)
      const out = execFileSync('bash', [path.join(dir, 'case.sh')], { encoding: 'utf8', stdio: 'pipe' });
      expect(out).toMatch(/blkdebug: Suspended request 'hold'|wrote 300\/300/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
