/** The campaign summary's lines for each reader: features unsupported, sequences checked, failures by signature. */
import type { CaseFile } from '../cases/case-file.ts';
import type { ReaderReport } from './reader-oracle.ts';

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
