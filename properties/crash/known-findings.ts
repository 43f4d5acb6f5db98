/**
 * Crash-state failures already understood, by signature (oracle, command kind, category; any
 * implementation): a campaign labels them and still reports them, it never steers around them.
 * Each names the corpus case that shows it.
 */
import type { FailureSignature } from '../runner/signature.ts';

export interface KnownFinding {
  oracle: FailureSignature['oracle'];
  command: FailureSignature['command'];
  category: string;
  label: string;
  explanation: string;
  /** Only for these implementations (default: any). */
  subjects?: readonly string[];
}

const COPIED_WINDOW =
  'QEMU 7.2: snapshot operations change the refcounts of shared clusters and QCOW_OFLAG_COPIED in the active L1/L2 tables (which must say "refcount is exactly 1"): writes to different clusters with no atomic order. ' +
  'QEMU raises the refcounts and flushes them first (qcow2_update_snapshot_refcount: the L2 cache depends on the refcount cache), and sets no dirty bit; a crash between leaves COPIED set on a cluster of refcount 2 ' +
  '("ERROR OFLAG_COPIED … refcount=2": a later write in place would change the snapshot too; check -r all repairs it). ' +
  'Cases: corpus/crash/qemu-snapshot-{create,apply,delete}-copied-window.json. The engine closes the window with the dirty bit on v3 and with shadow copies switched by one header sector on v2 (src/engine/shadow-switch.ts; regression cases corpus/crash/engine-v2-snapshot-{create,delete}-copied-clear.json).';

/** One finding per snapshot operation: QEMU's COPIED window, in one direction or the other. */
function snapshotWindow(category: string, label: string, explanation: string): KnownFinding[] {
  return (['snapshot-create', 'snapshot-apply', 'snapshot-delete'] as const).map((command) => ({
    oracle: 'crash-state' as const,
    command,
    category,
    label: `${command}-${label}`,
    explanation,
    subjects: ['qemu-io'],
  }));
}

export const KNOWN_FINDINGS: readonly KnownFinding[] = snapshotWindow(
  'crash-corruption',
  'copied-flag-window',
  COPIED_WINDOW,
);

const ALL: readonly KnownFinding[] = [
  ...KNOWN_FINDINGS,
  ...snapshotWindow(
    'crash-copied-clear',
    'copied-clear-window',
    'QEMU 7.2, the other side of the COPIED window on images without a dirty bit (v2): a crash after the refcounts fell and before QCOW_OFLAG_COPIED was set again leaves COPIED clear on a cluster of refcount 1 (ERROR OFLAG_COPIED; an extra copy-on-write, the data reads right). ' +
      'corpus/crash/qemu-snapshot-delete-copied-clear.json.',
  ),
  {
    oracle: 'crash-state',
    command: 'aio-batch',
    category: 'crash-never-written',
    label: 'qemu-lazy-l2-before-data',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2 with lazy refcounts: the window of qemu-lazy-l2-before-data met by an aio batch: an L2 table reaches the disk before the data of a cluster it now maps, and that host cluster still holds other bytes, which the guest then reads. ' +
      'corpus/crash/qemu-lazy-l2-before-data-aio.json.',
  },
  {
    oracle: 'crash-state',
    command: 'write-zeroes',
    category: 'crash-unreadable',
    label: 'qemu-discard-before-l2-update',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2 (qemu-io opens with discard=unmap): zeroing over a compressed cluster frees it and discards its host cluster in the file before the L2 table that still points at it is written, with no flush between; ' +
      'a crash after the discard and before the L2 write leaves an L2 entry pointing at a punched hole: the cluster no longer inflates and reads fail with EIO (qemu-img check sees nothing). ' +
      'corpus/crash/qemu-discard-before-l2-update.json.',
  },
  {
    oracle: 'crash-state',
    command: 'write',
    category: 'crash-never-written',
    label: 'qemu-reused-cluster-before-l2-update',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2: a discard (or any free) makes a host cluster allocatable at once, while the L2 table that drops the old mapping is still only in its cache; ' +
      'the next allocating write reuses the cluster and its guest data reaches the disk with no flush before that L2 update. ' +
      "A crash between leaves the old guest offset mapped to the reused cluster: it reads another offset's data, never written there. " +
      'corpus/crash/qemu-reused-cluster-before-l2-update.json (4 steps).',
  },
  {
    oracle: 'crash-state',
    command: 'write',
    category: 'crash-corruption',
    label: 'qemu-lazy-l2-before-data',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2 with lazy refcounts: the L2 cache has no dependency on the refcount cache, and an allocating write that needs no copy-on-write sets no flush dependency (perform_cow returns before qcow2_cache_depends_on_flush), ' +
      'so an L2 table can reach the disk before the data of a cluster it now maps. A crash between leaves the dirty image with an L2 entry past the end of the file, which qemu-img check -r all does not repair (exit 2). ' +
      'corpus/crash/qemu-lazy-l2-before-data.json (3 steps).',
  },
  {
    oracle: 'crash-state',
    command: 'write',
    category: 'crash-unreadable',
    label: 'qemu-reused-compressed-cluster-before-l2-update',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2: the window of qemu-reused-cluster-before-l2-update where the freed host cluster held compressed clusters: a discard frees it and QEMU makes it allocatable at once, while the L2 table that drops their mapping is still only in its cache; ' +
      'the next allocating write reuses the host cluster and its data reaches the disk with no flush before that L2 update. ' +
      'A crash between leaves the old guest offsets mapped as compressed clusters into bytes that no longer inflate (EIO). ' +
      'corpus/crash/qemu-reused-compressed-cluster-before-l2-update.json (4 steps).',
  },
  {
    oracle: 'crash-state',
    command: 'discard',
    category: 'crash-unreadable',
    label: 'qemu-discard-compressed-before-l2-update',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2 (qemu-io opens with discard=unmap): the window of qemu-discard-before-l2-update met by a guest discard: discarding compressed clusters frees their host cluster and punches it in the file (qcow2_process_discards right after discard_in_l2_slice) before the L2 table that still points at it is written, with no flush between; ' +
      'a crash after the punch and before the L2 write leaves L2 entries pointing at a hole: the clusters no longer inflate (EIO). ' +
      'corpus/crash/qemu-discard-compressed-before-l2-update.json (3 steps).',
  },
  {
    oracle: 'crash-state',
    command: 'write-compressed',
    category: 'crash-unreadable',
    label: 'qemu-compressed-l2-before-data',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2: a compressed write crossing into an L2 table not yet allocated. QEMU writes the clusters of one request as parallel tasks; each sets its compressed L2 entry in the cache before its data is written, and the task that allocates the next L2 table flushes the whole L2 cache (l2_allocate), ' +
      "so the table holding another task's new entry can reach the disk before that task's compressed bytes; a crash between leaves an entry pointing at bytes that do not inflate (EIO). " +
      'corpus/crash/qemu-compressed-l2-before-data.json (1 step).',
  },
  {
    oracle: 'crash-state',
    command: 'qemu-turn',
    category: 'crash-unreadable',
    label: 'qemu-turn-crash-window',
    subjects: ['engine'],
    explanation:
      "QEMU 7.2's crash windows met inside a qemu turn of the engine's crashtest (the turn's writes are QEMU's, recorded through blklogwrites): a compressed write's L2 table before its data (qemu-compressed-l2-before-data), a hole punched or a freed host cluster reused before the L2 update. " +
      'corpus/crash/qemu-compressed-l2-before-data-in-turn.json (1 step).',
  },
  {
    oracle: 'crash-state',
    command: 'check',
    category: 'crash-unreadable',
    label: 'qemu-l2-writeback-after-discard-compressed',
    subjects: ['qemu-io'],
    explanation:
      "QEMU 7.2: the window of qemu-discard-compressed-before-l2-update still open when a later step writes QEMU's cached metadata back (the check step closes the image): the hole is punched, the L2 table that still points at it is written only then, " +
      'and a crash before or during that write (a torn table) leaves compressed entries pointing at the hole (EIO). ' +
      'corpus/crash/qemu-l2-writeback-after-discard-compressed.json (6 steps).',
  },
  {
    oracle: 'crash-state',
    command: 'resize',
    category: 'crash-unreadable',
    label: 'qemu-shrink-discards-compressed-before-metadata',
    subjects: ['qemu-io'],
    explanation:
      'QEMU 7.2: a shrinking truncate can discard (punch) and flush the host bytes of a compressed cluster beyond the new size while the header still holds the old size and the L2 entry still points at those bytes; ' +
      'a crash there leaves guest bytes of the old size that fail to read (EIO: the cluster no longer inflates). Found with lazy refcounts, 1-bit refcounts and extended L2. ' +
      'corpus/crash/qemu-shrink-discards-compressed-before-metadata.json (4 steps).',
  },
];

export function knownFinding(sig: FailureSignature): KnownFinding | undefined {
  return ALL.find(
    (k) =>
      k.oracle === sig.oracle &&
      k.command === sig.command &&
      k.category === sig.category &&
      (!k.subjects || k.subjects.some((s) => sig.subject.startsWith(s))),
  );
}
