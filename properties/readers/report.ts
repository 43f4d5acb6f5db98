/** The campaign summary's lines for each reader: features unsupported, sequences checked, failures by signature. */
import type { CaseFile } from '../cases/case-file.ts';
import type { ReaderReport } from './reader-oracle.ts';
import { signatureKey } from '../runner/signature.ts';

export function readerReportLines(
  reports: readonly ReaderReport[],
  cases: readonly { file: CaseFile; savedAt?: string }[],
): string[] {
  const lines: string[] = [];
  for (const r of reports) {
    const mib = r.bytesRead / (1 << 20);
    const rate = r.readMs > 0 ? (mib / (r.readMs / 1000)).toFixed(0) : '-';
    lines.push(
      `reader ${r.subject} (not the implementation under test; its failures never fail this campaign):`,
      `  sequences checked: ${r.sequencesChecked} of ${r.sequences} reaching a checkpoint; ${r.checkpoints} whole-disk comparisons, ${mib.toFixed(0)} MiB read in ${(r.readMs / 1000).toFixed(1)}s (${rate} MiB/s with the model's side)`,
    );
    const unsupported = Object.entries(r.unsupported).sort((a, b) => b[1] - a[1]);
    lines.push(
      unsupported.length === 0
        ? '  features unsupported: none met'
        : `  features unsupported (sequences): ${unsupported.map(([f, n]) => `${f} (${n})`).join(', ')}`,
    );
    if (r.failures.length === 0) lines.push('  failures: none');
    else {
      lines.push(`  failures by signature (${r.failures.reduce((n, f) => n + f.count, 0)} in all):`);
      for (const f of [...r.failures].sort((a, b) => b.count - a.count)) {
        const s = f.signature;
        lines.push(
          `    ${f.count}× ${s.oracle} / ${s.category}${f.knownFrom ? ` — known (${f.knownFrom})` : ' — new'}`,
          `       e.g. ${f.example.slice(0, 300)}`,
        );
      }
    }
    for (const c of cases.filter((k) => k.file.readerDefect === r.name)) {
      lines.push(
        `  new ${r.name} defect, shrunk to ${c.file.steps.length} steps: ${c.file.failure.message.slice(0, 300)}`,
        `    case: ${c.savedAt ?? '(not saved)'}`,
      );
    }
  }
  return lines;
}

/** What each reader did between two snapshots of its report (one sequence's share). */
export function readerDelta(before: readonly ReaderReport[], after: readonly ReaderReport[]): ReaderReport[] {
  return after.map((a, i) => {
    const b = before[i]!;
    const unsupported: Record<string, number> = {};
    for (const [f, n] of Object.entries(a.unsupported)) {
      const d = n - (b.unsupported[f] ?? 0);
      if (d > 0) unsupported[f] = d;
    }
    const failures = a.failures
      .map((f) => {
        const old = b.failures.find((x) => signatureKey(x.signature) === signatureKey(f.signature));
        return { ...f, count: f.count - (old?.count ?? 0) };
      })
      .filter((f) => f.count > 0);
    return {
      ...a,
      sequences: a.sequences - b.sequences,
      sequencesChecked: a.sequencesChecked - b.sequencesChecked,
      checkpoints: a.checkpoints - b.checkpoints,
      bytesRead: a.bytesRead - b.bytesRead,
      readMs: a.readMs - b.readMs,
      unsupported,
      failures,
    };
  });
}

/** Add one sequence's reader share into the campaign's totals. */
export function addReaderReports(total: ReaderReport[], part: readonly ReaderReport[]): void {
  for (const p of part) {
    let t = total.find((x) => x.subject === p.subject);
    if (!t) {
      t = {
        ...p,
        unsupported: {},
        failures: [],
        sequences: 0,
        sequencesChecked: 0,
        checkpoints: 0,
        bytesRead: 0,
        readMs: 0,
      };
      total.push(t);
    }
    t.sequences += p.sequences;
    t.sequencesChecked += p.sequencesChecked;
    t.checkpoints += p.checkpoints;
    t.bytesRead += p.bytesRead;
    t.readMs += p.readMs;
    for (const [f, n] of Object.entries(p.unsupported)) t.unsupported[f] = (t.unsupported[f] ?? 0) + n;
    for (const f of p.failures) {
      const same = t.failures.find((x) => signatureKey(x.signature) === signatureKey(f.signature));
      if (same) same.count += f.count;
      else t.failures.push({ ...f });
    }
  }
}
