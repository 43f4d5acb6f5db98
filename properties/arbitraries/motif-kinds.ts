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
import { BackingEofCommand, type EofOp } from '../commands/backing-eof-command.ts';
import { PackedCompressedCommand, type PackedFree } from '../commands/packed-compressed-command.ts';

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
  'backing-eof': {
    // only legal with a backing file (two layouts in five): weighted up so that a backed
    // sequence of ten commands meets it more often than not
    weight: 6,
    supported: (c: Capabilities) => c.backingFile && c.resize,
    arbitrary: () =>
      fc
        .record({
          ops: fc.array(
            fc.constantFrom<EofOp>(
              'read',
              'write-before',
              'write-after',
              'write-across',
              'write-across',
              'zero-across',
              'discard-across',
            ),
            { minLength: 1, maxLength: 3 },
          ),
          at: fc.nat(),
          length: fc.nat(),
          unmap: fc.boolean(),
          readFirst: fc.boolean(),
          subcluster: fc.boolean(),
        })
        .map((seed) => new BackingEofCommand(seed)),
  },
  'packed-compressed': {
    weight: 3,
    // the run is written by a qemu-io turn, whatever the implementation
    supported: (c: Capabilities) => c.compressedWrite,
    arbitrary: () =>
      fc
        .record({
          start: fc.nat(),
          hosts: fc.integer({ min: 1, max: 3 }),
          // stamped data three times in four (undefined), else a pattern
          pattern: fc.oneof(
            { weight: 3, arbitrary: fc.constant(undefined) },
            { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }) },
          ),
          free: fc.array(
            fc.constantFrom<PackedFree>(
              'overwrite',
              'overwrite-part',
              'zero',
              'zero-unmap',
              'discard',
              'discard',
            ),
            { minLength: 1, maxLength: 3 },
          ),
          whole: fc.boolean(),
          at: fc.nat(),
          span: fc.nat(),
          check: fc.boolean(),
        })
        .map((seed) => new PackedCompressedCommand(seed)),
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
