/** A difference between the implementation and the model: the failure a case records. */

export type DivergenceKind =
  | 'read-mismatch'
  | 'operation-failed'
  | 'refusal-missing'
  | 'qemu-img-check'
  | 'convert-mismatch'
  | 'snapshot-mismatch'
  | 'snapshot-list'
  | 'image-facts'
  | 'virtual-size'
  | 'reopen-mismatch'
  | 'qemu-turn-failed'
  | 'reader-failed'
  | 'crash-state'
  | 'fault-injection'
  | 'bitmap-failed'
  | 'bitmap-list'
  | 'bitmap-bits'
  | 'check-parity'
  | 'map-parity'
  | 'info-parity'
  | 'harness';

export interface DivergenceDetails {
  kind: DivergenceKind;
  /** The step during which it was seen (index into the run's steps), or after the last step. */
  stepIndex: number;
  step: string;
  expected: unknown;
  observed: unknown;
  /** The `qemu-img check --output=json` report when it was involved. */
  check?: unknown;
  /** A finer class of what went wrong, for the signature (e.g. a read mismatch's `stale`, `misplaced`). */
  category?: string;
  /** The guest offset of the first differing byte, for the oracles that compare data (read, reopen, convert, snapshot). */
  offset?: number;
  /** Set when a reader (properties/readers/) failed, not the implementation: `libqcow@20201213`. */
  reader?: string;
}

export class Divergence extends Error {
  readonly details: DivergenceDetails;
  constructor(details: DivergenceDetails) {
    super(
      `${details.kind} at step ${details.stepIndex} (${details.step}): expected ${show(details.expected)}, observed ${show(details.observed)}`,
    );
    this.name = 'Divergence';
    this.details = details;
  }
}

function show(v: unknown): string {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}
