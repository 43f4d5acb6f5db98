/**
 * Known bugs are data: one JSON file per bug in this directory (id, implementations and version,
 * signature patterns, corpus case, and only where unavoidable a steering condition with its why).
 * A failure whose signature matches is labelled with the bug's id and reported as known; a bug's
 * steering condition (if any) is on only while the list is enabled: `qcow2 fuzz --known-bugs none`
 * turns the whole list off, and the harness then has to find these bugs again by itself.
 */
import * as fs from 'node:fs';
import { execaSync } from 'execa';
import type { DivergenceDetails } from '../runner/divergence.ts';
import { signatureOf, type FailureSignature } from '../runner/signature.ts';
import { QEMU_IO } from '../qemu/qemu-img.ts';

/** What a bug's failure looks like: each field a regular expression (anchored), all given must match. */
export interface SignaturePattern {
  oracle?: string;
  command?: string;
  category?: string;
  /** Matched against the divergence's observed text and message. */
  errorText?: string;
  /** Each must match at least one step line of the failing run. */
  stepsInclude?: string[];
}

export type SteeringCondition =
  'skip-refused-snapshot-create' | 'cluster-aligned-shrink' | 'no-refcount-width-amend-large-clusters';

export interface KnownBug {
  id: string;
  title: string;
  implementations: string[];
  /** Regular expression over the implementation's version (`7.2.22`). */
  version: string;
  corpusCase: string;
  explanation: string;
  signatures: SignaturePattern[];
  steer?: { condition: SteeringCondition; why: string };
}

const DIR = new URL('./', import.meta.url);

function load(): KnownBug[] {
  return fs
    .readdirSync(DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(fs.readFileSync(new URL(f, DIR), 'utf8')) as KnownBug);
}

export type KnownBugsSetting = 'all' | 'none';
let setting: KnownBugsSetting = 'all';
let cache: KnownBug[] | undefined;

/** `--known-bugs all|none` (default all). */
export function setKnownBugs(value: KnownBugsSetting): void {
  setting = value;
}

export function knownBugsSetting(): KnownBugsSetting {
  return setting;
}

/** The enabled list (empty with `--known-bugs none`). */
export function knownBugs(): KnownBug[] {
  if (setting === 'none') return [];
  cache ??= load();
  return cache;
}

/** Every bug in the directory, enabled or not (for tests and listings). */
export function allKnownBugs(): KnownBug[] {
  cache ??= load();
  return cache;
}

const versions = new Map<string, string>();

/** The version of the program behind an implementation (qemu-io's for qemu-io and mixed). */
export function implementationVersion(impl: string): string {
  if (impl !== 'qemu-io' && impl !== 'mixed') return 'repository';
  let v = versions.get(QEMU_IO);
  if (v === undefined) {
    const r = execaSync(QEMU_IO, ['--version'], { reject: false });
    v = /version (\d+\.\d+\.\d+)/.exec(String(r.stdout))?.[1] ?? 'unknown';
    versions.set(QEMU_IO, v);
  }
  return v;
}

const full = (re: string | undefined, text: string): boolean =>
  re === undefined || new RegExp(`^(?:${re})$`).test(text);

function patternMatches(
  p: SignaturePattern,
  sig: FailureSignature,
  d: DivergenceDetails,
  steps: readonly string[],
): boolean {
  if (!full(p.oracle, sig.oracle) || !full(p.command, sig.command) || !full(p.category, sig.category))
    return false;
  if (p.errorText !== undefined) {
    const text = `${typeof d.observed === 'string' ? d.observed : JSON.stringify(d.observed)} ${JSON.stringify(d.check ?? '')}`;
    if (!new RegExp(p.errorText).test(text)) return false;
  }
  return (p.stepsInclude ?? []).every((re) => steps.some((s) => new RegExp(re).test(s)));
}

/** The enabled known bug a failure of `impl` matches, if any. */
export function matchKnownBug(
  d: DivergenceDetails,
  steps: readonly string[],
  impl: string,
): KnownBug | undefined {
  const version = implementationVersion(impl);
  const sig = signatureOf(d, `${impl}@${version}`);
  return knownBugs().find(
    (bug) =>
      bug.implementations.includes(impl) &&
      new RegExp(bug.version).test(version) &&
      bug.signatures.some((p) => patternMatches(p, sig, d, steps)),
  );
}

/** The signature of a failure, labelled with the known bug it matches. */
export function labelledSignature(
  d: DivergenceDetails,
  steps: readonly string[],
  impl: string,
): FailureSignature {
  const sig = signatureOf(d, `${impl}@${implementationVersion(impl)}`);
  const bug = matchKnownBug(d, steps, impl);
  return bug ? { ...sig, knownBug: bug.id } : sig;
}

/** Whether an enabled known bug of `impl` asks for this steering condition. */
export function steeringOn(impl: string, condition: SteeringCondition): boolean {
  const version = implementationVersion(impl);
  return knownBugs().some(
    (b) =>
      b.steer?.condition === condition &&
      b.implementations.includes(impl) &&
      new RegExp(b.version).test(version),
  );
}
