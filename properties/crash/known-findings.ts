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
}

export const KNOWN_FINDINGS: readonly KnownFinding[] = [
  {
    oracle: 'crash-state',
    command: 'snapshot-create',
    category: 'crash-corruption',
    label: 'snapshot-create-copied-flag-window',
    explanation:
      'Creating a snapshot raises the refcounts of the active clusters to 2 and clears QCOW_OFLAG_COPIED in the active L1/L2 tables: two writes to different clusters with no atomic order. ' +
      'A crash between them leaves refcount 2 with COPIED still set (QEMU 7.2 flushes the refcount blocks first, as the engine does), which qemu-img check counts as corruptions ' +
      '("ERROR OFLAG_COPIED"; check -r all repairs them). corpus/crash/qemu-snapshot-create-copied-window.json (QEMU) and engine-snapshot-create-copied-window.json (the engine, same window).',
  },
];

export function knownFinding(sig: FailureSignature): KnownFinding | undefined {
  return KNOWN_FINDINGS.find(
    (k) => k.oracle === sig.oracle && k.command === sig.command && k.category === sig.category,
  );
}
