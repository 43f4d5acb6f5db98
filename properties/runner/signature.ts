/**
 * The failure signature: the one place a divergence becomes "which failure is this". Campaigns
 * deduplicate by it (across jobs and shards), the known-bugs list matches it, `repro IMAGE` aims at
 * it, and crash-state and reader failures produce it too. Two failures with the same signature are
 * the same bug as far as the harness can tell; the signature never carries offsets, sizes or seeds.
 */
import { parseStep, StepSyntaxError, type StepKind } from '../steps.ts';
import type { Divergence, DivergenceDetails, DivergenceKind } from './divergence.ts';

export interface FailureSignature {
  /** The oracle (divergence kind) that saw it. */
  oracle: DivergenceKind;
  /** The kind of the first diverging command ('create' before any step, 'end' for final oracles). */
  command: StepKind | 'create' | 'end' | 'other';
  /**
   * What kind of wrong: a check category (`corruptions`, `leaks`, `check-errors`), an error class
   * (`[CODE]` or the message with its numbers taken out), or a read-mismatch class.
   */
  category: string;
  /** The implementation (or reader) that failed, with its version when known: `qemu-io@7.2.22`. */
  subject: string;
  /** Set when a known bug's signature matches (properties/known-bugs/). */
  knownBug?: string;
  /** The failure is a reader's (properties/readers/): `subject` names it; never the implementation's. */
  reader?: boolean;
}

/** The command kind of a step line (`! ` marker accepted); 'other' when it is not a step. */
export function commandKindOf(step: string): FailureSignature['command'] {
  if (step === 'create' || step === 'setup') return 'create';
  if (step === 'end' || step === '(end)' || step.startsWith('end of sequence')) return 'end';
  try {
    return parseStep(step).kind;
  } catch (e) {
    if (e instanceof StepSyntaxError) return 'other';
    throw e;
  }
}

/** The category of a `qemu-img check --output=json` report: the worst thing it counts. */
export function checkCategory(check: unknown): string | undefined {
  if (typeof check !== 'object' || check === null) return undefined;
  const c = check as Record<string, unknown>;
  const n = (k: string): number => (typeof c[k] === 'number' ? (c[k] as number) : 0);
  if (n('corruptions') > 0) return 'corruptions';
  if (n('check-errors') > 0) return 'check-errors';
  if (n('leaks') > 0) return 'leaks';
  return undefined;
}

/** An error message reduced to its class: the `[CODE]` when there is one, else the words without numbers. */
export function errorClass(message: string): string {
  const code = /\[([A-Z][A-Z0-9_]+)(?: [^\]]*)?\]/.exec(message);
  if (code) return code[1];
  return message
    .replace(/0x[0-9a-f]+|\d+/gi, 'N')
    .replace(/'[^']*'|"[^"]*"/g, 'S')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 120);
}

function categoryOf(d: DivergenceDetails): string {
  const fromCheck = checkCategory(d.check);
  if (fromCheck) return fromCheck;
  if (d.category) return d.category;
  switch (d.kind) {
    case 'operation-failed':
    case 'qemu-turn-failed':
    case 'harness':
      return errorClass(String(d.observed));
    default:
      return d.kind;
  }
}

/** The signature of a divergence seen while `subject` was under test. */
export function signatureOf(divergence: Divergence | DivergenceDetails, subject: string): FailureSignature {
  const d = 'details' in divergence ? divergence.details : divergence;
  return {
    oracle: d.kind,
    command: d.stepIndex < 0 ? 'create' : commandKindOf(d.step),
    category: categoryOf(d),
    // A reader's failure is the reader's, whoever was under test.
    subject: d.reader ?? subject,
    ...(d.reader ? { reader: true } : {}),
  };
}

/** A stable one-line key: equal keys are the same failure (the known-bug label is not part of it). */
export function signatureKey(s: FailureSignature): string {
  return `${s.subject} ${s.oracle} ${s.command} ${s.category}`;
}
