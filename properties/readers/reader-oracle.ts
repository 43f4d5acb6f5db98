/**
 * The reader oracle: at a sequence's checkpoints (after each flush, at the end) every reader given
 * with `--readers` reads the implementation under test's whole guest disk and must see the model's
 * bytes. What it reports:
 *
 * - a clean refusal ("unsupported … features") or a declared gap (raw backing file, snapshots):
 *   the feature is counted as unsupported for that sequence and the reader sits the sequence out;
 * - wrong bytes, a crash, a hang, an error: a Divergence labelled with the reader and its version
 *   (`details.reader`), signed with `signatureOf(…, 'libqcow@20201213')`. A signature not seen
 *   before is thrown, so the campaign shrinks it into a case (`readerDefect`); a known one (kept in
 *   corpus/, or shrunk earlier in the campaign) is only counted and the reader sits the rest of the
 *   sequence out. Either way the implementation under test is not blamed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BACKING_NAME, FUZZ_SECRET } from '../layout.ts';
import { Divergence, type DivergenceDetails } from '../runner/divergence.ts';
import type { RunContext } from '../runner/run-context.ts';
import { errorClass, signatureKey, signatureOf, type FailureSignature } from '../runner/signature.ts';
import type { DiskReader, ReadOutcome } from './reader.ts';
import { isReaderName, reader, type ReaderName } from './registry.ts';

export interface ReaderFailureCount {
  signature: FailureSignature;
  count: number;
  /** The first message seen. */
  example: string;
  /** Known from corpus/ (this file) rather than found in this campaign. */
  knownFrom?: string;
}

export interface ReaderReport {
  name: string;
  version: string;
  subject: string;
  /** Sequences that reached a checkpoint with this reader enabled. */
  sequences: number;
  /** Sequences in which at least one whole-disk comparison completed. */
  sequencesChecked: number;
  /** Whole-disk comparisons completed (equal or not). */
  checkpoints: number;
  /** Feature → number of sequences in which it kept the reader out. */
  unsupported: Record<string, number>;
  failures: ReaderFailureCount[];
  bytesRead: number;
  readMs: number;
}

interface Entry {
  reader: DiskReader;
  subject: string;
  version: string;
  report: ReaderReport;
}

interface SequenceState {
  /** Readers sitting the rest of this sequence out (refusal, unsupported feature, known failure). */
  out: Set<string>;
  checked: Set<string>;
  unsupported: Set<string>;
  /** ctx.steps.length at the last comparison: a checkpoint after only reads and flushes is skipped. */
  comparedAt: number;
}

/** Steps that change neither the guest disk nor the image's layout on disk for a reader. */
const READ_ONLY_STEP = /^(read |flush$)/;

/** The readers' subject in signatures: `name@version`. */
export function readerSubject(name: string, version: string): string {
  return `${name}@${version}`;
}

export class ReaderOracle {
  private readonly entries: Entry[];
  /** 'campaign': new failures throw once, known ones count; 'replay': every failure throws. */
  private readonly mode: 'campaign' | 'replay';
  private readonly known = new Map<string, string>();
  private readonly sequences = new WeakMap<RunContext, SequenceState>();
  /** The campaign is shrinking: a reader failure (this key) or the implementation's ('impl'). */
  private shrinking: string | undefined;

  private constructor(entries: Entry[], mode: 'campaign' | 'replay') {
    this.entries = entries;
    this.mode = mode;
  }

  /** Start the readers (a missing one throws ReaderUnavailableError: asked for, it must be there). */
  static async create(
    names: readonly ReaderName[],
    mode: 'campaign' | 'replay' = 'campaign',
  ): Promise<ReaderOracle> {
    return ReaderOracle.of(
      names.map((n) => reader(n)),
      mode,
    );
  }

  /** An oracle over reader objects (other readers, test doubles). */
  static async of(
    readers: readonly DiskReader[],
    mode: 'campaign' | 'replay' = 'campaign',
  ): Promise<ReaderOracle> {
    const entries: Entry[] = [];
    for (const r of readers) {
      const name = r.name;
      const version = await r.version();
      const subject = readerSubject(name, version);
      entries.push({
        reader: r,
        subject,
        version,
        report: {
          name,
          version,
          subject,
          sequences: 0,
          sequencesChecked: 0,
          checkpoints: 0,
          unsupported: {},
          failures: [],
          bytesRead: 0,
          readMs: 0,
        },
      });
    }
    return new ReaderOracle(entries, mode);
  }

  /** Reader names from `--readers a,b` (throws on an unknown name). */
  static parseNames(list: string): ReaderName[] {
    const names = list
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    for (const n of names) if (!isReaderName(n)) throw new Error(`unknown reader '${n}' (known: libqcow)`);
    return names as ReaderName[];
  }

  get enabled(): boolean {
    return this.entries.length > 0;
  }

  /** Treat the reader defects kept in a corpus directory as known: counted, not shrunk again. */
  loadKnown(corpusDir: string): void {
    if (!fs.existsSync(corpusDir)) return;
    for (const f of fs.readdirSync(corpusDir).filter((n) => n.endsWith('.json'))) {
      const parsed = JSON.parse(fs.readFileSync(path.join(corpusDir, f), 'utf8')) as {
        readerDefect?: string;
        failure?: DivergenceDetails;
      };
      if (!parsed.readerDefect || !parsed.failure) continue;
      for (const e of this.entries) {
        if (e.reader.name !== parsed.readerDefect) continue;
        this.known.set(signatureKey(signatureOf(parsed.failure, e.subject)), f);
      }
    }
  }

  /** The campaign saw a failure and shrinks it now. */
  noteFailure(d: Divergence): void {
    this.shrinking ??= d.details.reader ? this.keyOf(d) : 'impl';
  }

  /** The campaign recorded the case of the failure it shrank: its signature is known from now on. */
  noteRecorded(d: DivergenceDetails | undefined): void {
    if (d?.reader) this.known.set(this.keyOf(d), 'this campaign');
    this.shrinking = undefined;
  }

  /** Every reader reads the whole disk; the image is closed or flushed. */
  async checkpoint(ctx: RunContext, label: string): Promise<void> {
    // Only the reader's process works now: the implementation's watchdog must not count this time.
    ctx.unwatch();
    let seq = this.sequences.get(ctx);
    if (!seq) {
      seq = { out: new Set(), checked: new Set(), unsupported: new Set(), comparedAt: -1 };
      this.sequences.set(ctx, seq);
      if (!this.shrinking) for (const e of this.entries) e.report.sequences += 1;
    } else if (ctx.steps.slice(seq.comparedAt).every((line) => READ_ONLY_STEP.test(line))) {
      // Nothing a reader could see differently since the last comparison (replays too: same answer).
      return;
    }
    seq.comparedAt = ctx.steps.length;
    for (const e of this.entries) {
      const r = e.reader;
      if (seq.out.has(r.name)) continue;
      const declared = r.unsupported(ctx.layout);
      if (ctx.model.snapshots.size > 0 && !r.readsSnapshots)
        this.unsupported(e, seq, 'reading internal snapshots');
      if (declared.length > 0) {
        for (const f of declared) this.unsupported(e, seq, f);
        seq.out.add(r.name);
        continue;
      }
      const started = Date.now();
      const outcome = await r.read({
        image: ctx.imagePath,
        parents: ctx.layout.backing ? [path.join(ctx.dir, BACKING_NAME)] : [],
        password: ctx.layout.encrypt ? FUZZ_SECRET : undefined,
        size: ctx.model.size,
        expected: (offset, length) => ctx.model.disk.read(offset, length),
      });
      if (!this.shrinking) e.report.readMs += Date.now() - started;
      if (outcome.status === 'ok') {
        this.checked(e, seq, ctx.model.size);
        continue;
      }
      if (outcome.status === 'refused') {
        this.unsupported(e, seq, outcome.feature);
        seq.out.add(r.name);
        continue;
      }
      if (outcome.status === 'mismatch') this.checked(e, seq, ctx.model.size);
      const divergence = this.divergence(ctx, e, label, outcome);
      const key = this.keyOf(divergence);
      if (this.mode === 'replay') throw divergence;
      // The same state would fail again at the next checkpoint: the reader sits the sequence out.
      seq.out.add(r.name);
      if (this.shrinking === key) throw divergence;
      if (this.shrinking) continue;
      this.count(e, divergence, this.known.get(key));
      if (!this.known.has(key)) throw divergence;
    }
  }

  reports(): ReaderReport[] {
    return this.entries.map((e) => e.report);
  }

  async shutdown(): Promise<void> {
    for (const e of this.entries) await e.reader.shutdown();
  }

  private keyOf(d: Divergence | DivergenceDetails): string {
    const details = 'details' in d ? d.details : d;
    return signatureKey(signatureOf(details, details.reader ?? 'unknown reader'));
  }

  private checked(e: Entry, seq: SequenceState, bytes: number): void {
    if (this.shrinking) return;
    e.report.checkpoints += 1;
    e.report.bytesRead += bytes;
    if (!seq.checked.has(e.reader.name)) {
      seq.checked.add(e.reader.name);
      e.report.sequencesChecked += 1;
    }
  }

  private unsupported(e: Entry, seq: SequenceState, feature: string): void {
    if (this.shrinking || seq.unsupported.has(feature)) return;
    seq.unsupported.add(feature);
    e.report.unsupported[feature] = (e.report.unsupported[feature] ?? 0) + 1;
  }

  private count(e: Entry, d: Divergence, knownFrom: string | undefined): void {
    const signature = signatureOf(d, e.subject);
    const key = signatureKey(signature);
    const existing = e.report.failures.find((f) => signatureKey(f.signature) === key);
    if (existing) existing.count += 1;
    else e.report.failures.push({ signature, count: 1, example: d.message, knownFrom });
  }

  private divergence(
    ctx: RunContext,
    e: Entry,
    label: string,
    outcome: Exclude<ReadOutcome, { status: 'ok' } | { status: 'refused' }>,
  ): Divergence {
    const where = {
      stepIndex: ctx.steps.length - 1,
      step: `${e.reader.name} reads the whole disk (${label})`,
      reader: e.subject,
    };
    if (outcome.status === 'mismatch')
      return new Divergence({
        kind: 'read-mismatch',
        ...where,
        expected: outcome.expected,
        observed: `at ${outcome.offset}: ${outcome.observed}`,
        category: `${e.reader.name}: ${outcome.category}`,
      });
    return new Divergence({
      kind: 'reader-failed',
      ...where,
      expected: 'the whole disk read',
      observed: `${outcome.how}: ${outcome.message.slice(0, 2000)}`,
      category: `${e.reader.name}: ${outcome.how === 'error' ? `error ${errorClass(outcome.message)}` : outcome.how}`,
    });
  }
}
