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
  'Snapshot operations change the refcounts of shared clusters and QCOW_OFLAG_COPIED in the active L1/L2 tables (which must say "refcount is exactly 1"): writes to different clusters with no atomic order. ' +
  'QEMU 7.2 flushes the refcount blocks first, as the engine does; a crash between leaves a COPIED flag that disagrees with its refcount, which qemu-img check counts as a corruption ' +
  '("ERROR OFLAG_COPIED", either direction, so no write order avoids it; check -r all repairs it). ' +
  'Cases: corpus/crash/qemu-snapshot-{create,apply,delete}-copied-window.json (QEMU), engine-snapshot-create-copied-window.json (the engine, same window).';

export const KNOWN_FINDINGS: readonly KnownFinding[] = (
  ['snapshot-create', 'snapshot-apply', 'snapshot-delete'] as const
).map((command) => ({
  oracle: 'crash-state' as const,
  command,
  category: 'crash-corruption',
  label: `${command}-copied-flag-window`,
  explanation: COPIED_WINDOW,
}));

const ALL: readonly KnownFinding[] = [
  ...KNOWN_FINDINGS,
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
