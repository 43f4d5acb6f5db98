/**
 * Model-based property: random sequences of write / writeZeroes / discard / resize / reopen on the
 * engine match a plain byte-array model after every operation; at the end `qemu-img check` exits 0
 * and `qemu-img convert -O raw` equals the model. Fixed seed (override with FC_SEED), modest runs;
 * fast-check prints the seed and the shrunk counterexample on failure.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { checkImage } from '../../src/check/index.ts';
import { Qcow2Image } from '../../src/image.ts';
import { FileDevice } from '../../src/io/device.ts';
import { ExpectedDisk, pattern } from './model.ts';
import { qemuCheck, qemuRaw, sameBytes, tempDir } from '../support/qemu.ts';

const tmp = tempDir('property');
afterAll(() => tmp.cleanup());

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 0x2a2a;
const NUM_RUNS = process.env.FC_RUNS !== undefined ? Number(process.env.FC_RUNS) : 150;
const MAX_SIZE = 1024 * 1024;

type Op =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'zero'; offset: number; length: number; unmap: boolean }
  | { kind: 'discard'; offset: number; length: number }
  | { kind: 'resize'; size: number }
  | { kind: 'reopen' };

interface Scenario {
  clusterSize: number;
  refcountBits: number;
  compat: '0.10' | '1.1';
  size: number;
  /** Offsets are taken modulo the size current when the op runs, lengths clamped to its end. */
  ops: Op[];
}

const lenArb = fc.oneof(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 200_000 }));

/** Ops carry raw numbers; they are clamped to the disk size current at the time they run. */
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      offset: fc.nat(),
      length: lenArb,
      seed: fc.nat(1000),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('zero' as const),
      offset: fc.nat(),
      length: lenArb,
      unmap: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('discard' as const), offset: fc.nat(), length: lenArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('resize' as const),
      size: fc.integer({ min: 1, max: MAX_SIZE / 512 }).map((s) => s * 512),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    clusterSize: fc.constantFrom(512, 4096, 65536),
    refcountBits: fc.constantFrom(1, 2, 4, 8, 16, 32, 64),
    v2: fc.boolean(),
    size: fc.integer({ min: 1, max: MAX_SIZE / 512 }).map((s) => s * 512),
    ops: fc.array(opArb, { minLength: 1, maxLength: 25 }),
  })
  .map(({ v2, refcountBits, ...rest }) => ({
    ...rest,
    compat: v2 ? ('0.10' as const) : ('1.1' as const),
    refcountBits: v2 ? 16 : refcountBits,
  }));

function clamp(size: number, offset: number, length: number): { offset: number; length: number } {
  if (size === 0) return { offset: 0, length: 0 };
  const o = offset % size;
  return { offset: o, length: Math.min(length, size - o) };
}

let runNo = 0;

function runScenario(s: Scenario): void {
  const file = tmp.file(`p${runNo++}.qcow2`);
  const model = new ExpectedDisk(s.size);
  let img = Qcow2Image.create(file, {
    size: s.size,
    clusterSize: s.clusterSize,
    refcountBits: s.refcountBits,
    compat: s.compat,
    sync: false,
  });
  try {
    for (const op of s.ops) {
      switch (op.kind) {
        case 'write': {
          const r = clamp(model.size, op.offset, op.length);
          const d = pattern(r.length, op.seed);
          img.write(r.offset, d);
          model.write(r.offset, d);
          break;
        }
        case 'zero': {
          const r = clamp(model.size, op.offset, op.length);
          img.writeZeroes(r.offset, r.length, { unmap: op.unmap });
          model.zero(r.offset, r.length);
          break;
        }
        case 'discard': {
          const r = clamp(model.size, op.offset, op.length);
          img.discard(r.offset, r.length);
          model.discard(r.offset, r.length, s.clusterSize);
          break;
        }
        case 'resize':
          img.resize(op.size, { shrink: true });
          model.resize(op.size);
          break;
        case 'reopen':
          img.close();
          img = Qcow2Image.open(file, { sync: false });
          break;
      }
      expect(img.size).toBe(model.size);
      expect(sameBytes(img.read(0, img.size), model.bytes)).toBe('equal');
    }
  } finally {
    img.close();
  }
  const q = qemuCheck(file);
  expect(q.stderr + `exit ${q.status}`).toBe('exit 0');
  const dev = FileDevice.open(file, { readOnly: true });
  try {
    expect(checkImage(dev, { filename: file }).exitCode).toBe(0);
  } finally {
    dev.close();
  }
  expect(sameBytes(qemuRaw(file), model.bytes)).toBe('equal');
  fs.rmSync(file, { force: true }); // keep the temp dir small; afterAll removes the rest
}

describe('random operation sequences on the engine match a byte-array model and qemu', () => {
  it('write / zero / discard / resize / reopen', () => {
    fc.assert(
      fc.property(scenarioArb, (s) => runScenario(s)),
      { seed: SEED, numRuns: NUM_RUNS },
    );
  });
});
