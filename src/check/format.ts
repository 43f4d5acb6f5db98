/**
 * qemu-img check's stdout: the human text (dump_human_image_check in qemu-img.c, preceded by the
 * repair summary after `-r`) and the JSON text (QDict order as qemu-img 7.2 prints it).
 */
import type { CheckReport, CheckResult } from './check.ts';

/** The text `qemu-img check` prints on stdout (stderr lines are `report.messages`). */
export function formatCheckHuman(report: CheckReport): string {
  let out = '';
  if (report.repairSummary) {
    out +=
      'The following inconsistencies were found and repaired:\n\n' +
      `    ${report.repairSummary.leaksFixed} leaked clusters\n` +
      `    ${report.repairSummary.corruptionsFixed} corruptions\n\n` +
      'Double checking the fixed image now...\n';
  }
  if (report.failure !== undefined) return out; // "Check failed: ..." goes to stderr only
  const r = report.result;
  const corruptions = r.corruptions ?? 0;
  const leaks = r.leaks ?? 0;
  const errors = r['check-errors'];
  if (!corruptions && !leaks && !errors) {
    out += 'No errors were found on the image.\n';
  } else {
    if (corruptions) {
      out += `\n${corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    }
    if (leaks) {
      out += `\n${leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    }
    if (errors) out += `\n${errors} internal errors have occurred during the check.\n`;
  }
  const total = r['total-clusters'] ?? 0;
  const allocated = r['allocated-clusters'] ?? 0;
  if (total !== 0 && allocated !== 0) {
    const pct = (v: number): string => v.toFixed(2);
    out +=
      `${allocated}/${total} = ${pct((allocated * 100) / total)}% allocated, ` +
      `${pct(((r['fragmented-clusters'] ?? 0) * 100) / allocated)}% fragmented, ` +
      `${pct(((r['compressed-clusters'] ?? 0) * 100) / allocated)}% compressed clusters\n`;
  }
  if (r['image-end-offset']) out += `Image end offset: ${r['image-end-offset']}\n`;
  return out;
}

/** Key order of qemu-img 7.2's JSON output (its QDict hash order). */
const JSON_ORDER: readonly (keyof CheckResult)[] = [
  'image-end-offset',
  'compressed-clusters',
  'total-clusters',
  'corruptions-fixed',
  'corruptions',
  'check-errors',
  'leaks-fixed',
  'leaks',
  'allocated-clusters',
  'filename',
  'format',
  'fragmented-clusters',
];

/** `qemu-img check --output=json`'s stdout (empty when the check failed). */
export function formatCheckJson(report: CheckReport): string {
  if (report.failure !== undefined) return '';
  const r = report.result;
  const lines: string[] = [];
  for (const k of JSON_ORDER) {
    const v = r[k];
    if (v === undefined) continue;
    lines.push(`    ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  }
  return `{\n${lines.join(',\n')}\n}\n`;
}
