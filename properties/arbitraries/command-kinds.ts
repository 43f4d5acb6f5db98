/**
 * The command catalogue: each kind, its weight in a sequence, the capability it needs, and the
 * arbitrary building it from seeds.
 */
import fc from 'fast-check';
import type { Capabilities } from '../adapters/adapter.ts';
import type { StepCommand } from '../commands/step-command.ts';
import { WriteCommand } from '../commands/write-command.ts';
import { WriteZeroesCommand } from '../commands/write-zeroes-command.ts';
import { DiscardCommand } from '../commands/discard-command.ts';
import { CompressedWriteCommand } from '../commands/compressed-write-command.ts';
import { ReadCommand } from '../commands/read-command.ts';
import { FlushCommand } from '../commands/flush-command.ts';
import { ReopenCommand } from '../commands/reopen-command.ts';
import { CheckCommand } from '../commands/check-command.ts';
import { CheckRepairCommand } from '../commands/check-repair-command.ts';
import { ConvertCommand } from '../commands/convert-command.ts';
import { SnapshotCreateCommand } from '../commands/snapshot-create-command.ts';
import { SnapshotApplyCommand } from '../commands/snapshot-apply-command.ts';
import { SnapshotDeleteCommand } from '../commands/snapshot-delete-command.ts';
import { ResizeGrowCommand, type GrowthKind } from '../commands/resize-grow-command.ts';
import { ResizeShrinkCommand } from '../commands/resize-shrink-command.ts';
import { QemuTurnCommand } from '../commands/qemu-turn-command.ts';
import { BitmapAddCommand } from '../commands/bitmap-add-command.ts';
import { BitmapRemoveCommand } from '../commands/bitmap-remove-command.ts';
import { BitmapClearCommand } from '../commands/bitmap-clear-command.ts';
import { BitmapEnableCommand } from '../commands/bitmap-enable-command.ts';
import { BitmapDisableCommand } from '../commands/bitmap-disable-command.ts';
import { BitmapMergeCommand } from '../commands/bitmap-merge-command.ts';
import { AioBatchCommand, type AioTarget } from '../commands/aio-batch-command.ts';
import { RebaseCommand, type RebaseMode } from '../commands/rebase-command.ts';
import { CommitCommand } from '../commands/commit-command.ts';
import {
  BackingPartialCommand,
  type PartialOp,
  type PartialWhere,
} from '../commands/backing-partial-command.ts';
import { VmStateWriteCommand } from '../commands/vm-state-write-command.ts';
import { VmStateReadCommand } from '../commands/vm-state-read-command.ts';
import { AmendCommand } from '../commands/amend-command.ts';
import { MOTIF_KINDS } from './motif-kinds.ts';
import { rangeSeedArbitrary } from './range-seed.ts';
import { patternArbitrary } from './pattern.ts';
import { turnOpsArbitrary } from './turn-ops.ts';

export const COMMAND_KINDS = [
  'write',
  'pattern-write',
  'write-zeroes',
  'discard',
  'compressed-write',
  'read',
  'flush',
  'reopen',
  'snapshot-create',
  'snapshot-apply',
  'snapshot-delete',
  'resize-grow',
  'resize-shrink',
  'qemu-turn',
  'check',
  'bitmap-add',
  'bitmap-remove',
  'bitmap-clear',
  'bitmap-enable',
  'bitmap-disable',
  'bitmap-merge',
  'check-repair',
  'convert',
  'aio-batch',
  'rebase',
  'commit',
  'backing-partial',
  'vmstate-write',
  'vmstate-read',
  'amend',
  'overlap-rmw',
  'snapshot-cycle',
  'shrink-grow',
  'compressed-overwrite',
  'l2-sweep',
  'bulk-alloc',
  'bad-request',
  'backing-eof',
  'packed-compressed',
] as const;

/**
 * The data path: the kinds every implementation performs itself, no qemu-img in their steps
 * (what the harness benchmark and scripts/profile-oploop.ts time apart from the oracles).
 */
export const DATA_PATH_KINDS: readonly CommandKind[] = [
  'write',
  'pattern-write',
  'write-zeroes',
  'discard',
  'compressed-write',
  'read',
  'flush',
  'reopen',
  'resize-grow',
  'resize-shrink',
];
export type CommandKind = (typeof COMMAND_KINDS)[number];

export interface KindEntry {
  weight: number;
  supported: (caps: Capabilities) => boolean;
  arbitrary: () => fc.Arbitrary<StepCommand>;
}

const always = (): boolean => true;

/** The kinds added for rebase/commit, aio batches and partial clusters over backing files. */
const BACKING_AND_AIO_KINDS = {
  'aio-batch': {
    weight: 3,
    supported: (c: Capabilities) => c.aioWrite === true,
    arbitrary: () =>
      fc
        .record({
          target: fc.constantFrom<AioTarget>('same-cluster', 'same-cluster', 'same-l2', 'spread'),
          start: fc.nat(),
          parts: fc.array(fc.nat(), { minLength: 2, maxLength: 4 }),
          pattern: fc.nat(254),
        })
        .map((seed) => new AioBatchCommand(seed)),
  },
  rebase: {
    weight: 3,
    supported: (c: Capabilities) => c.backingFile && c.rebaseCommit === true,
    arbitrary: () =>
      fc
        .record({
          mode: fc.constantFrom<RebaseMode>('onto-new', 'onto-new', 'flatten', 'unsafe-copy', 'unsafe-copy'),
          format: fc.constantFrom<'qcow2' | 'raw'>('qcow2', 'raw'),
          sizeClass: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
          writes: fc.array(fc.nat(), { maxLength: 3 }),
          keepOld: fc.boolean(),
        })
        .map((seed) => new RebaseCommand(seed)),
  },
  commit: {
    weight: 2,
    supported: (c: Capabilities) => c.backingFile && c.rebaseCommit === true,
    arbitrary: () => fc.constant(null).map(() => new CommitCommand()),
  },
  'backing-partial': {
    weight: 6,
    supported: (c: Capabilities) => c.backingFile,
    arbitrary: () =>
      fc
        .record({
          op: fc.constantFrom<PartialOp>('write', 'write', 'write-zeroes', 'discard'),
          where: fc.constantFrom<PartialWhere>(
            'inside-data',
            'inside-data',
            'data-edge',
            'base-end',
            'base-end',
          ),
          pick: fc.nat(),
          start: fc.nat(),
          length: fc.nat(),
          unmap: fc.boolean(),
        })
        .map((seed) => new BackingPartialCommand(seed)),
  },
} satisfies Record<'aio-batch' | 'rebase' | 'commit' | 'backing-partial', KindEntry>;

export const CATALOGUE: Record<CommandKind, KindEntry> = {
  write: {
    weight: 16,
    supported: always,
    arbitrary: () => rangeSeedArbitrary().map((r) => new WriteCommand(r)),
  },
  'pattern-write': {
    weight: 4,
    supported: always,
    arbitrary: () =>
      fc.tuple(rangeSeedArbitrary(), patternArbitrary()).map(([r, p]) => new WriteCommand(r, p)),
  },
  'write-zeroes': {
    weight: 6,
    supported: always,
    arbitrary: () =>
      fc.tuple(rangeSeedArbitrary(), fc.boolean()).map(([r, u]) => new WriteZeroesCommand(r, u)),
  },
  discard: {
    weight: 6,
    supported: always,
    arbitrary: () => rangeSeedArbitrary().map((r) => new DiscardCommand(r)),
  },
  'compressed-write': {
    weight: 4,
    supported: (c) => c.compressedWrite,
    arbitrary: () =>
      fc
        .tuple(fc.nat(), fc.integer({ min: 1, max: 4 }), fc.option(patternArbitrary(), { nil: undefined }))
        .map(([s, n, p]) => new CompressedWriteCommand(s, n, p)),
  },
  read: {
    weight: 14,
    supported: always,
    arbitrary: () => rangeSeedArbitrary().map((r) => new ReadCommand(r)),
  },
  flush: { weight: 3, supported: always, arbitrary: () => fc.constant(null).map(() => new FlushCommand()) },
  reopen: { weight: 3, supported: always, arbitrary: () => fc.constant(null).map(() => new ReopenCommand()) },
  'snapshot-create': {
    weight: 3,
    supported: (c) => c.snapshots,
    arbitrary: () => fc.constant(null).map(() => new SnapshotCreateCommand()),
  },
  'snapshot-apply': {
    weight: 2,
    supported: (c) => c.snapshots,
    arbitrary: () => fc.nat(64).map((n) => new SnapshotApplyCommand(n)),
  },
  'snapshot-delete': {
    weight: 2,
    supported: (c) => c.snapshots,
    arbitrary: () => fc.nat(64).map((n) => new SnapshotDeleteCommand(n)),
  },
  'resize-grow': {
    weight: 2,
    supported: (c) => c.resize,
    arbitrary: () =>
      fc
        .tuple(fc.constantFrom<GrowthKind>('sectors', 'clusters', 'clusters', 'double'), fc.nat())
        .map(([g, n]) => new ResizeGrowCommand(g, n)),
  },
  'resize-shrink': {
    weight: 2,
    supported: (c) => c.resize,
    arbitrary: () => fc.double({ min: 0.05, max: 0.99, noNaN: true }).map((f) => new ResizeShrinkCommand(f)),
  },
  'qemu-turn': {
    weight: 2,
    supported: always,
    arbitrary: () => turnOpsArbitrary().map((ops) => new QemuTurnCommand(ops)),
  },
  check: { weight: 1, supported: always, arbitrary: () => fc.constant(null).map(() => new CheckCommand()) },
  'bitmap-add': {
    weight: 1,
    supported: (c) => c.bitmaps === true,
    arbitrary: () =>
      fc.tuple(fc.integer({ min: 9, max: 22 }), fc.boolean()).map(([g, d]) => new BitmapAddCommand(g, d)),
  },
  'bitmap-remove': {
    weight: 1,
    supported: (c) => c.bitmaps === true,
    arbitrary: () => fc.nat(64).map((n) => new BitmapRemoveCommand(n)),
  },
  'bitmap-clear': {
    weight: 1,
    supported: (c) => c.bitmaps === true,
    arbitrary: () => fc.nat(64).map((n) => new BitmapClearCommand(n)),
  },
  'bitmap-enable': {
    weight: 1,
    supported: (c) => c.bitmaps === true,
    arbitrary: () => fc.nat(64).map((n) => new BitmapEnableCommand(n)),
  },
  'bitmap-disable': {
    weight: 1,
    supported: (c) => c.bitmaps === true,
    arbitrary: () => fc.nat(64).map((n) => new BitmapDisableCommand(n)),
  },
  'bitmap-merge': {
    weight: 1,
    supported: (c) => c.bitmaps === true,
    arbitrary: () => fc.tuple(fc.nat(64), fc.nat(64)).map(([a, b]) => new BitmapMergeCommand(a, b)),
  },
  convert: {
    weight: 1,
    supported: always,
    arbitrary: () => fc.boolean().map((c) => new ConvertCommand(c)),
  },
  'check-repair': {
    weight: 1,
    supported: always,
    arbitrary: () => fc.constantFrom<'leaks' | 'all'>('leaks', 'all').map((m) => new CheckRepairCommand(m)),
  },
  ...BACKING_AND_AIO_KINDS,
  'vmstate-write': {
    weight: 1,
    supported: (c) => c.vmState === true,
    arbitrary: () =>
      fc.tuple(fc.nat(), fc.integer({ min: 1, max: 128 })).map(([s, n]) => new VmStateWriteCommand(s, n)),
  },
  'vmstate-read': {
    weight: 1,
    supported: (c) => c.vmState === true,
    arbitrary: () =>
      fc.tuple(fc.nat(), fc.integer({ min: 1, max: 128 })).map(([s, n]) => new VmStateReadCommand(s, n)),
  },
  amend: {
    weight: 1,
    supported: (c) => c.amend === true,
    arbitrary: () => fc.nat().map((n) => new AmendCommand(n)),
  },
  ...MOTIF_KINDS,
};

export function supportedKinds(caps: Capabilities): CommandKind[] {
  return COMMAND_KINDS.filter((k) => CATALOGUE[k].supported(caps));
}
