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
  /**
   * The first differing byte (DivergenceDetails.offset) lies where a shrink to a size inside a
   * cluster, then a grow, re-exposes the kept cluster's old bytes: `[S, S rounded up to the
   * cluster size)` for a `truncate S` below the size before it, followed (before the failing step)
   * by a `truncate` past that byte and by no shrink that frees the cluster. Needs the layout's
   * cluster size at match time; without it (or without the offset) the pattern does not match.
   */
  exposedByUnalignedShrink?: boolean;
  /** Matched against the failing step itself (`d.step`). */
  failingStep?: string;
  /**
   * Each must match a step in this order, among the steps up to and including the failing one
   * (a `qemu-io -c '…' -c '…'` line counts as its commands, one after another).
   */
  stepsInOrder?: string[];
  /**
   * A `truncate` to a size below the one before it (from the layout's size on) comes after a step
   * matching this, up to the failing step.
   */
  shrinkAfter?: string;
  /** The image is version 2 at the failure: the layout's compat, or the last `amend -o compat=`. */
  v2AtFailure?: boolean;
  /**
   * A check's leaked clusters are exactly the L1 copies of the refused snapshot creations
   * (`! snapshot -c`): each leaks its L1 table's clusters (measured: 64M, 512-byte clusters,
   * refcount_bits=1, two refused creations: 64 leaks = 2 x 32).
   */
  leaksAreRefusedSnapshotL1s?: boolean;
  /** The image has extended L2 entries (the layout's `extendedL2`; qcow2.txt incompatible bit 4). */
  extendedL2?: boolean;
  /**
   * The failing step is a `truncate` that grows the disk past Z, the size S before it rounded up to
   * a subcluster, Z lies inside a cluster (not on its boundary), and an earlier compressed write
   * (`write -c … OFF LEN` covering that cluster, or a `convert -c`) may have left it compressed:
   * growing must zero the rest of that cluster from Z on (measured with qemu-io 7.2: S = 138240,
   * 64 KiB clusters, new sizes 138752 and 139264 succeed, 139776 fails).
   */
  growsFromCompressedPartialCluster?: boolean;
}

/** What a signature may need beyond the divergence and the steps: the run's image layout. */
export interface MatchContext {
  /** log2 of the cluster size (ImageLayout.clusterBits) */
  clusterBits: number;
  /** The virtual size the image was created with (ImageLayout.size). */
  size: number;
  compat?: string;
  extendedL2?: boolean;
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
  context: MatchContext | undefined,
): boolean {
  if (!full(p.oracle, sig.oracle) || !full(p.command, sig.command) || !full(p.category, sig.category))
    return false;
  if (p.errorText !== undefined) {
    const text = `${typeof d.observed === 'string' ? d.observed : JSON.stringify(d.observed)} ${JSON.stringify(d.check ?? '')}`;
    if (!new RegExp(p.errorText).test(text)) return false;
  }
  if (!(p.stepsInclude ?? []).every((re) => steps.some((s) => new RegExp(re).test(s)))) return false;
  if (p.failingStep !== undefined && !new RegExp(p.failingStep).test(d.step)) return false;
  if (p.stepsInOrder !== undefined && !inOrder(p.stepsInOrder, stepsThroughFailure(d, steps))) return false;
  if (p.v2AtFailure && !v2AtFailure(d, steps, context)) return false;
  if (p.shrinkAfter !== undefined && !shrinkAfter(p.shrinkAfter, d, steps, context)) return false;
  if (p.leaksAreRefusedSnapshotL1s && !leaksAreRefusedSnapshotL1s(d, steps, context)) return false;
  if (p.extendedL2 !== undefined && context?.extendedL2 !== p.extendedL2) return false;
  if (p.growsFromCompressedPartialCluster && !growsFromCompressedPartialCluster(d, steps, context))
    return false;
  return !p.exposedByUnalignedShrink || exposedByUnalignedShrink(d, steps, context);
}

/**
 * The steps up to and including the failing one (a final oracle's index is the last step's: its
 * `step` says `end of sequence`).
 */
function stepsThrough(d: DivergenceDetails, steps: readonly string[]): readonly string[] {
  return steps.slice(0, Math.max(0, d.stepIndex + 1));
}

/** The commands up to and including the failing step, a `qemu-io -c '…'` line split into its commands. */
function stepsThroughFailure(d: DivergenceDetails, steps: readonly string[]): string[] {
  return stepsThrough(d, steps).flatMap((s) =>
    s.startsWith('qemu-io ') ? [...s.matchAll(/-c '([^']*)'/g)].map((m) => m[1]) : [s],
  );
}

function inOrder(patterns: readonly string[], steps: readonly string[]): boolean {
  let i = 0;
  for (const re of patterns) {
    const r = new RegExp(re);
    while (i < steps.length && !r.test(steps[i])) i++;
    if (i === steps.length) return false;
    i++;
  }
  return true;
}

function v2AtFailure(
  d: DivergenceDetails,
  steps: readonly string[],
  context: MatchContext | undefined,
): boolean {
  let compat = context?.compat;
  for (const s of stepsThrough(d, steps)) compat = /^amend -o compat=(\S+)$/.exec(s)?.[1] ?? compat;
  return compat === '0.10';
}

/** `truncate N` (a refused step, `! truncate`, changes nothing). */
const TRUNCATE = /^truncate (\d+)$/;

function shrinkAfter(
  re: string,
  d: DivergenceDetails,
  steps: readonly string[],
  context: MatchContext | undefined,
): boolean {
  if (context === undefined) return false;
  let size = context.size;
  let seen = false;
  for (const s of stepsThrough(d, steps)) {
    const t = TRUNCATE.exec(s);
    if (t) {
      if (seen && Number(t[1]) < size) return true;
      size = Number(t[1]);
    }
    if (new RegExp(re).test(s)) seen = true;
  }
  return false;
}

function leaksAreRefusedSnapshotL1s(
  d: DivergenceDetails,
  steps: readonly string[],
  context: MatchContext | undefined,
): boolean {
  const leaks = (d.check as { leaks?: unknown } | undefined)?.leaks;
  if (context === undefined || typeof leaks !== 'number') return false;
  const cluster = 2 ** context.clusterBits;
  // an L2 table maps cluster/8 clusters (cluster/16 with extended L2); an L1 entry is 8 bytes
  const perL2 = cluster / (context.extendedL2 ? 16 : 8);
  let size = context.size;
  let expected = 0;
  for (const s of stepsThrough(d, steps)) {
    const t = TRUNCATE.exec(s);
    if (t) size = Number(t[1]);
    else if (s.startsWith('! snapshot -c '))
      expected += Math.ceil((Math.ceil(size / (cluster * perL2)) * 8) / cluster);
  }
  return expected > 0 && leaks === expected;
}

/** A compressed write's range: `write -c [flags…] OFF LEN`. */
const COMPRESSED_WRITE = /^write -c .*?(\d+) (\d+)$/;

/** See SignaturePattern.growsFromCompressedPartialCluster. */
function growsFromCompressedPartialCluster(
  d: DivergenceDetails,
  steps: readonly string[],
  context: MatchContext | undefined,
): boolean {
  const grow = TRUNCATE.exec(d.step);
  if (context === undefined || grow === null) return false;
  const cluster = 2 ** context.clusterBits;
  const before = stepsThroughFailure(d, steps).slice(0, -1);
  // the size just before the failing truncate
  let size = context.size;
  for (const s of before) size = Number(TRUNCATE.exec(s)?.[1] ?? size);
  // qcow2_co_truncate zeroizes from the old size rounded up to a subcluster (a 32nd of a cluster
  // with extended L2, qcow2.txt "Extended L2 Entries"), and only when the new size is past that
  const sub = context.extendedL2 ? cluster / 32 : cluster;
  const zeroStart = Math.ceil(size / sub) * sub;
  if (Number(grow[1]) <= zeroStart || zeroStart % cluster === 0) return false;
  const tail = Math.floor(zeroStart / cluster) * cluster;
  return before.some((s) => {
    if (s === 'convert -c') return true;
    const w = COMPRESSED_WRITE.exec(s);
    return w !== null && Number(w[1]) <= tail && tail < Number(w[1]) + Number(w[2]);
  });
}

/** See SignaturePattern.exposedByUnalignedShrink (measured with qemu-io 7.2: v2 and v3, with and without extended L2, the kept cluster's bytes past the cut read back, the clusters after it zeros). */
export function exposedByUnalignedShrink(
  d: DivergenceDetails,
  steps: readonly string[],
  context: MatchContext | undefined,
): boolean {
  const at = d.offset;
  if (context === undefined || at === undefined) return false;
  const cluster = 2 ** context.clusterBits;
  const sizes = stepsThrough(d, steps)
    .map((s) => TRUNCATE.exec(s))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]));
  let before = context.size;
  for (let i = 0; i < sizes.length; i++) {
    const cut = sizes[i];
    const shrink = cut < before;
    before = cut;
    if (!shrink || cut % cluster === 0 || at < cut || at >= Math.ceil(cut / cluster) * cluster) continue;
    // grown past the byte again, and the cluster never freed by a deeper shrink on the way
    let grown = false;
    for (const later of sizes.slice(i + 1)) {
      if (later <= Math.floor(cut / cluster) * cluster) break;
      if (later > at) grown = true;
    }
    if (grown) return true;
  }
  return false;
}

/**
 * The enabled known bug a failure of `impl` matches, if any. `context` (the run's image layout)
 * is needed by the signatures that look at guest offsets; without it they do not match.
 */
export function matchKnownBug(
  d: DivergenceDetails,
  steps: readonly string[],
  impl: string,
  context?: MatchContext,
): KnownBug | undefined {
  const version = implementationVersion(impl);
  const sig = signatureOf(d, `${impl}@${version}`);
  return knownBugs().find(
    (bug) =>
      bug.implementations.includes(impl) &&
      new RegExp(bug.version).test(version) &&
      bug.signatures.some((p) => patternMatches(p, sig, d, steps, context)),
  );
}

/** The signature of a failure, labelled with the known bug it matches. */
export function labelledSignature(
  d: DivergenceDetails,
  steps: readonly string[],
  impl: string,
  context?: MatchContext,
): FailureSignature {
  const sig = signatureOf(d, `${impl}@${implementationVersion(impl)}`);
  const bug = matchKnownBug(d, steps, impl, context);
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
