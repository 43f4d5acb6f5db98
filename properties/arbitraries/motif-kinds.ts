/**
 * The motif kinds (properties/commands/motif-scratch.ts): short step groups aimed at one bug
 * class each, weighted so that a 90-second campaign meets every class many times.
 */
import fc from 'fast-check';
import type { Capabilities } from '../adapters/adapter.ts';
import type { StepCommand } from '../commands/step-command.ts';
import { OverlapRmwCommand, type RmwGranule, type RmwMiddle } from '../commands/overlap-rmw-command.ts';
import { SnapshotCycleCommand, type SnapshotCycleEnd } from '../commands/snapshot-cycle-command.ts';
import { ShrinkGrowCommand, type RegrowKind } from '../commands/shrink-grow-command.ts';
import {
  CompressedOverwriteCommand,
  type CompressedFollow,
} from '../commands/compressed-overwrite-command.ts';
import { L2SweepCommand } from '../commands/l2-sweep-command.ts';
import { BulkAllocCommand } from '../commands/bulk-alloc-command.ts';
import { BadRequestCommand, type BadRequestKind } from '../commands/bad-request-command.ts';

interface MotifEntry {
  weight: number;
  supported: (caps: Capabilities) => boolean;
  arbitrary: () => fc.Arbitrary<StepCommand>;
}

const always = (): boolean => true;

export const MOTIF_KINDS = {
  'overlap-rmw': {
    weight: 5,
    supported: always,
    arbitrary: () =>
      fc
        .record({
          granule: fc.constantFrom<RmwGranule>('sector', 'sector', 'subcluster', 'cluster'),
          anchor: fc.nat(),
          len1: fc.nat(),
          shift: fc.nat(),
          len2: fc.nat(),
          middle: fc.constantFrom<RmwMiddle>('none', 'none', 'zero', 'discard'),
        })
        .map((seed) => new OverlapRmwCommand(seed)),
  },
  'snapshot-cycle': {
    weight: 4,
    supported: (c: Capabilities) => c.snapshots,
    arbitrary: () =>
      fc
        .record({
          end: fc.constantFrom<SnapshotCycleEnd>('apply', 'delete', 'apply-delete', 'delete-other'),
          anchor: fc.nat(),
          length: fc.nat(),
          offsets: fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
        })
        .map((seed) => new SnapshotCycleCommand(seed)),
  },
  'shrink-grow': {
    weight: 3,
    supported: (c: Capabilities) => c.resize,
    arbitrary: () =>
      fc
        .record({
          anchor: fc.nat(),
          cut: fc.nat(),
          regrow: fc.constantFrom<RegrowKind>('back', 'sectors', 'clusters'),
          writeTail: fc.boolean(),
        })
        .map((seed) => new ShrinkGrowCommand(seed)),
  },
  'compressed-overwrite': {
    weight: 3,
    supported: (c: Capabilities) => c.compressedWrite,
    arbitrary: () =>
      fc
        .record({
          start: fc.nat(),
          clusters: fc.integer({ min: 1, max: 3 }),
          follow: fc.constantFrom<CompressedFollow>('write', 'write', 'zero', 'discard', 'none'),
          at: fc.nat(),
          length: fc.nat(),
          again: fc.boolean(),
        })
        .map((seed) => new CompressedOverwriteCommand(seed)),
  },
  'l2-sweep': {
    weight: 3,
    supported: always,
    arbitrary: () =>
      fc
        .record({
          start: fc.nat(),
          tables: fc.integer({ min: 3, max: 6 }),
          length: fc.nat(),
          reverse: fc.boolean(),
          discardFirst: fc.boolean(),
        })
        .map((seed) => new L2SweepCommand(seed)),
  },
  'bulk-alloc': {
    weight: 1,
    supported: always,
    arbitrary: () =>
      fc
        .record({
          start: fc.nat(),
          clusters: fc.nat(),
          pieces: fc.integer({ min: 1, max: 4 }),
          discardHalf: fc.boolean(),
        })
        .map((seed) => new BulkAllocCommand(seed)),
  },
  'bad-request': {
    weight: 2,
    supported: always,
    arbitrary: () =>
      fc
        .record({
          kind: fc.constantFrom<BadRequestKind>(
            'read-past-end',
            'write-past-end',
            'zero-past-end',
            'discard-past-end',
            'compressed-past-end',
            'apply-missing-snapshot',
            'delete-missing-snapshot',
          ),
          seed: fc.nat(),
        })
        .map(({ kind, seed }) => new BadRequestCommand(kind, seed)),
  },
} satisfies Record<string, MotifEntry>;
