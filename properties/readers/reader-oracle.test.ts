/**
 * The reader oracle's bookkeeping, with a scripted reader: refusals are unsupported features, a new
 * failure is thrown once (labelled with the reader, never the implementation), a known one is
 * counted, and a replay throws every failure.
 */
import { describe, expect, it } from 'vitest';
import { Divergence } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';
import type { ImageLayout } from '../layout.ts';
import { ReaderOracle } from './reader-oracle.ts';
import { wrongDataCategory, type DiskReader, type ReadOutcome } from './reader.ts';

const layout: ImageLayout = {
  compat: '1.1',
  clusterBits: 16,
  refcountBits: 16,
  extendedL2: false,
  compressionType: 'zlib',
  lazyRefcounts: false,
  size: 1 << 20,
};

function scripted(outcomes: ReadOutcome[]): DiskReader {
  return {
    name: 'fake',
    readsSnapshots: false,
    version: () => Promise.resolve('1'),
    unsupported: (l) => (l.backing?.format === 'raw' ? ['raw backing file'] : []),
    read: () => Promise.resolve(outcomes.shift() ?? { status: 'ok' }),
    shutdown: () => Promise.resolve(),
  };
}

/** Just what the oracle reads from a run. */
function run(steps: string[], l: ImageLayout = layout): RunContext {
  const disk = { read: (_o: number, n: number) => new Uint8Array(n) };
  return {
    layout: l,
    steps,
    imagePath: '/nonexistent/disk.qcow2',
    dir: '/nonexistent',
    model: { size: l.size, disk, snapshots: new Map() },
    unwatch: () => undefined,
  } as unknown as RunContext;
}

const wrong: ReadOutcome = {
  status: 'mismatch',
  offset: 65536,
  expected: '00',
  observed: '51',
  category: 'image-header-as-data',
};

describe('reader oracle', () => {
  it('counts a refusal as an unsupported feature and sits the sequence out', async () => {
    const oracle = await ReaderOracle.of([
      scripted([
        { status: 'refused', feature: 'extended L2 entries', message: 'unsupported incompatible features' },
        wrong,
      ]),
    ]);
    const ctx = run(['write -P 0x01 0 512', 'flush']);
    await oracle.checkpoint(ctx, 'after step 1');
    ctx.steps.push('write -P 0x02 0 512');
    await oracle.checkpoint(ctx, 'end'); // (the scripted mismatch is never asked for)
    const [r] = oracle.reports();
    expect(r.unsupported).toEqual({ 'extended L2 entries': 1 });
    expect(r.failures).toEqual([]);
    expect(r.sequencesChecked).toBe(0);
  });

  it('declared gaps are unsupported without a read', async () => {
    const oracle = await ReaderOracle.of([scripted([wrong])]);
    await oracle.checkpoint(run([], { ...layout, backing: { format: 'raw', size: 512, writes: [] } }), 'end');
    expect(oracle.reports()[0].unsupported).toEqual({ 'raw backing file': 1 });
  });

  it('throws a new failure once, labelled with the reader; then counts it as known', async () => {
    const oracle = await ReaderOracle.of([scripted([wrong, wrong])]);
    const first = await oracle.checkpoint(run(['write -z 65536 65536']), 'end').catch((e: unknown) => e);
    expect(first).toBeInstanceOf(Divergence);
    const d = (first as Divergence).details;
    expect(d.reader).toBe('fake@1');
    expect(d.category).toBe('fake: image-header-as-data');
    oracle.noteFailure(first as Divergence);
    oracle.noteRecorded(d);
    await oracle.checkpoint(run(['write -z 0 65536']), 'end');
    const [r] = oracle.reports();
    expect(r.failures.map((f) => [f.count, f.signature.subject, f.signature.category])).toEqual([
      [2, 'fake@1', 'fake: image-header-as-data'],
    ]);
  });

  it('in a replay, every failure throws', async () => {
    const oracle = await ReaderOracle.of(
      [scripted([{ status: 'failed', how: 'hang', message: 'no answer' }])],
      'replay',
    );
    await expect(oracle.checkpoint(run([]), 'end')).rejects.toMatchObject({
      details: { kind: 'reader-failed', category: 'fake: hang', reader: 'fake@1' },
    });
  });

  it('skips a checkpoint when only reads and flushes came since the last comparison', async () => {
    const oracle = await ReaderOracle.of([scripted([{ status: 'ok' }, wrong])]);
    const ctx = run(['write -P 0x01 0 512', 'flush']);
    await oracle.checkpoint(ctx, 'after step 1');
    ctx.steps.push('read -P 0x01 0 512', 'flush');
    await oracle.checkpoint(ctx, 'after step 3'); // not read: the scripted mismatch stays unused
    expect(oracle.reports()[0].checkpoints).toBe(1);
  });
});

describe('wrong-data categories', () => {
  const zeros = new Uint8Array(1024);
  it('tells the image header, noise, data where zeros and zeros where data apart', () => {
    const header = new Uint8Array(1024);
    header.set([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3], 512);
    expect(wrongDataCategory(zeros, header, 512)).toBe('image-header-as-data');
    const noise = Uint8Array.from({ length: 1024 }, (_, i) => (i * 167 + 13) % 251);
    expect(wrongDataCategory(zeros, noise, 0)).toBe('noise');
    expect(wrongDataCategory(zeros, new Uint8Array(1024).fill(0xaa), 0)).toBe('data-where-zeros');
    expect(wrongDataCategory(new Uint8Array(1024).fill(0x22), zeros, 0)).toBe('zeros-where-data');
    expect(wrongDataCategory(new Uint8Array(1024).fill(0x22), new Uint8Array(1024).fill(0x11), 0)).toBe(
      'other-data',
    );
  });
});
