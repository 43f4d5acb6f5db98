/**
 * The motif kinds (properties/commands/motif-scratch.ts) produce the interactions they exist for:
 * for each, over fixed seeds on a few layouts, the steps stay inside the disk, most seeds have a
 * legal form, and the shape that reaches the bug class appears (a shrink through data to a size
 * that is not a cluster multiple followed by a grow and a read of the old tail; a snapshot
 * followed by an overwrite, then a revert or delete followed by another overwrite; two writes
 * overlapping at different offsets inside a sector; writes in three or more L2 tables' ranges; a
 * bulk allocation of at least 64 clusters). Pure: no image is made.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MOTIF_KINDS } from './arbitraries/motif-kinds.ts';
import { DiskModel } from './model/disk-model.ts';
import { quirksOf } from './runner/run-context.ts';
import type { ImageLayout } from './layout.ts';
import type { Step } from './steps.ts';
import type { StepCommand } from './commands/step-command.ts';
import { applyToModel } from './runner/execute-step.ts';
import { EngineImplementation } from './adapters/engine.ts';

const base: ImageLayout = {
  compat: '1.1',
  clusterBits: 9,
  refcountBits: 64,
  extendedL2: false,
  compressionType: 'zlib',
  lazyRefcounts: false,
  size: 8 << 20,
};
const LAYOUTS: ImageLayout[] = [
  base,
  { ...base, clusterBits: 16, refcountBits: 16, extendedL2: true, size: 16 << 20 },
  { ...base, clusterBits: 12, refcountBits: 16, encrypt: 'luks', size: 1 << 20 },
  { ...base, compat: '0.10', clusterBits: 13, refcountBits: 16, size: 3 << 20 },
];
/** Layouts with a backing file that ends inside the disk (raw and qcow2, inside a cluster or not). */
const BACKED: ImageLayout[] = [
  {
    ...base,
    clusterBits: 12,
    refcountBits: 16,
    size: 1 << 20,
    backing: { format: 'raw', size: 300032, writes: [{ offset: 0, length: 300032, pattern: 0x42 }] },
  },
  {
    ...base,
    clusterBits: 16,
    refcountBits: 16,
    extendedL2: true,
    size: 4 << 20,
    backing: { format: 'qcow2', size: 2098688, writes: [{ offset: 0, length: 1 << 20, pattern: 0x42 }] },
  },
  { ...base, size: 1 << 20, backing: { format: 'qcow2', size: 1 << 19, writes: [] } },
];

type MotifName = keyof typeof MOTIF_KINDS;
let caps: Awaited<ReturnType<EngineImplementation['capabilities']>> | undefined;

/** Resolved step lists of `n` fixed seeds of a motif, each on a model that holds a few writes. */
async function resolveSamples(
  name: MotifName,
  layout: ImageLayout,
  n: number,
): Promise<(Step[] | undefined)[]> {
  caps ??= await new EngineImplementation().capabilities();
  const commands = fc.sample(MOTIF_KINDS[name].arbitrary() as fc.Arbitrary<StepCommand>, {
    seed: 42,
    numRuns: n,
  });
  return commands.map((c, i) => {
    const model = new DiskModel(layout, quirksOf('engine', caps!));
    const cs = model.clusterSize;
    applyToModel(model, {
      kind: 'write',
      offset: (i * 7919 * 512) % (layout.size - cs),
      length: cs + 300,
      stamp: 1,
    });
    const steps = c.stepsFor(model);
    // check() must not change the model (resolve runs on a scratch copy)
    expect(model.nextWriteId()).toBe(2);
    return steps;
  });
}

function inside(steps: Step[], layout: ImageLayout): void {
  let size = layout.size;
  for (const s of steps) {
    if (s.kind === 'resize') size = s.size;
    if ('offset' in s && 'length' in s && s.kind !== 'vmstate-write' && s.kind !== 'vmstate-read') {
      expect(s.length).toBeGreaterThan(0);
      expect(s.offset + s.length).toBeLessThanOrEqual(size);
    }
  }
}

describe('motifs', () => {
  for (const name of (Object.keys(MOTIF_KINDS) as MotifName[]).filter((k) => k !== 'bad-request')) {
    it(`${name}: legal on most seeds, inside the disk`, async () => {
      // backing-eof needs a backing file that ends inside the disk
      for (const layout of name === 'backing-eof' ? BACKED : LAYOUTS) {
        const all = await resolveSamples(name, layout, 24);
        const legal = all.filter((s): s is Step[] => s !== undefined);
        // compressed writes are never generated for encrypted images
        if ((name === 'compressed-overwrite' || name === 'packed-compressed') && layout.encrypt)
          expect(legal).toEqual([]);
        else expect(legal.length, `${name} on ${JSON.stringify(layout)}`).toBeGreaterThan(all.length / 2);
        for (const steps of legal) inside(steps, layout);
      }
    });
  }

  it('shrink-grow cuts through data at a non-cluster size, grows and reads the old tail', async () => {
    const layout = LAYOUTS[3];
    const cs = 2 ** layout.clusterBits;
    const hits = (await resolveSamples('shrink-grow', layout, 40)).filter((steps) => {
      const r = steps?.filter((s) => s.kind === 'resize') ?? [];
      if (r.length !== 2 || r[0].kind !== 'resize' || r[1].kind !== 'resize') return false;
      const cut = r[0].size;
      const read = steps!.find((s) => s.kind === 'read');
      const wrote = steps!.find((s) => s.kind === 'write');
      return (
        cut % cs !== 0 &&
        r[1].size > cut &&
        wrote !== undefined &&
        wrote.kind === 'write' &&
        wrote.offset + wrote.length > cut &&
        read !== undefined &&
        read.kind === 'read' &&
        read.offset < cut &&
        read.offset + read.length > cut
      );
    });
    expect(hits.length).toBeGreaterThan(10);
  });

  it('snapshot-cycle overwrites after the snapshot and again after the revert or delete', async () => {
    const kinds = (await resolveSamples('snapshot-cycle', base, 40))
      .filter((s) => s !== undefined)
      .map((steps) => steps!.map((s) => s.kind).join(' '));
    expect(kinds.some((k) => /snapshot-create write read snapshot-apply write read/.test(k))).toBe(true);
    expect(kinds.some((k) => /snapshot-create write read snapshot-delete write read/.test(k))).toBe(true);
    expect(kinds.some((k) => /snapshot-apply write read snapshot-delete write read/.test(k))).toBe(true);
  });

  it('overlap-rmw overlaps two writes inside one sector at different offsets', async () => {
    const hits = (await resolveSamples('overlap-rmw', LAYOUTS[2], 40)).filter((steps) => {
      const w = steps?.filter((s) => s.kind === 'write') ?? [];
      if (w.length !== 2) return false;
      const [a, b] = w as { offset: number; length: number }[];
      const overlap = Math.min(a.offset + a.length, b.offset + b.length) - Math.max(a.offset, b.offset);
      return overlap > 0 && a.offset % 512 !== b.offset % 512;
    });
    expect(hits.length).toBeGreaterThan(5);
  });

  it('l2-sweep writes into at least three L2 tables, and bulk-alloc allocates at least 64 clusters', async () => {
    const coverage = (512 / 8) * 512;
    const sweeps = (await resolveSamples('l2-sweep', base, 20)).filter(
      (steps) =>
        new Set(
          steps
            ?.filter((s) => s.kind === 'write')
            .map((s) => Math.floor((s as { offset: number }).offset / coverage)),
        ).size >= 3,
    );
    expect(sweeps.length).toBeGreaterThan(10);
    const bulk = (await resolveSamples('bulk-alloc', base, 20)).filter(
      (steps) =>
        (steps ?? [])
          .filter((s) => s.kind === 'write')
          .reduce((n, s) => n + (s as { length: number }).length, 0) >=
        64 * 512,
    );
    expect(bulk.length).toBeGreaterThan(15);
  });

  it('backing-eof writes, zeroes or discards part of the granule holding the base end, and reads across it', async () => {
    for (const layout of BACKED.slice(0, 2)) {
      const eof = layout.backing!.size;
      const cs = 2 ** layout.clusterBits;
      const g0 = eof - (eof % cs);
      const all = await resolveSamples('backing-eof', layout, 40);
      const partial = all.filter((steps) =>
        steps?.some(
          (s) =>
            (s.kind === 'write' || s.kind === 'write-zeroes' || s.kind === 'discard') &&
            s.offset < g0 + cs &&
            s.offset + s.length > g0 &&
            !(s.offset <= g0 && s.offset + s.length >= g0 + cs),
        ),
      );
      const across = all.filter((steps) =>
        steps?.some((s) => s.kind === 'read' && s.offset < eof && s.offset + s.length > eof),
      );
      expect(partial.length, JSON.stringify(layout)).toBeGreaterThan(10);
      expect(across.length).toBeGreaterThan(30);
    }
  });

  it('packed-compressed: a qemu-io turn of compressed clusters that pack past a host cluster, then frees', async () => {
    for (const layout of [base, LAYOUTS[1]]) {
      const cs = 2 ** layout.clusterBits;
      const all = (await resolveSamples('packed-compressed', layout, 30)).filter((s) => s !== undefined);
      const whole = all.filter((steps) => {
        const turn = steps![0];
        if (turn.kind !== 'qemu-turn' || turn.ops[0]?.kind !== 'write-compressed') return false;
        const w = turn.ops[0];
        // enough clusters to pack past a host cluster (QEMU's 4 KiB stamped clusters: ~73 bytes each)
        const freed = steps!
          .slice(1)
          .some(
            (s) =>
              (s.kind === 'discard' || s.kind === 'write' || s.kind === 'write-zeroes') &&
              s.offset === w.offset &&
              s.length === w.length,
          );
        return w.length / cs >= 8 && freed;
      });
      expect(whole.length, JSON.stringify(layout)).toBeGreaterThan(5);
    }
  });
});
