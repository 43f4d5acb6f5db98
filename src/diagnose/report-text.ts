/** `qcow2 diagnose`'s human and JSON output. */
import type { Diagnosis } from './index.ts';
import { describeRange, hex } from './findings.ts';

function size(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    u += 1;
  }
  return `${v} ${units[u]}`;
}

export function formatDiagnosisHuman(d: Diagnosis): string {
  const lines: string[] = [];
  const what =
    d.version === undefined
      ? 'header unreadable'
      : `qcow2 v${d.version}, ${size(d.virtualSize ?? 0)} virtual, ${size(d.clusterSize)} clusters, ${d.refcountBits}-bit refcounts${d.snapshots.length ? `, snapshots ${d.snapshots.map((s) => `'${s}'`).join(', ')}` : ''}`;
  lines.push(`Image: ${d.file} (${what}); file ${hex(d.fileSize)} bytes`);
  if (d.findings.length === 0) {
    lines.push(
      'No problems found: every cluster has the refcount its references need, and no two structures share one.',
    );
    return `${lines.join('\n')}\n`;
  }
  lines.push(
    `${d.corruptions} corruption${d.corruptions === 1 ? '' : 's'}, ${d.leaks} leak${d.leaks === 1 ? '' : 's'}`,
  );
  d.findings.forEach((f, i) => {
    lines.push('', `[${i + 1}] ${f.severity} ${f.code}: ${f.title}`);
    for (const line of f.details) lines.push(`    ${line}`);
    if (f.readsWrong?.length) lines.push(`    Reads wrong: ${f.readsWrong.map(describeRange).join(', ')}`);
    if (f.atRisk?.length) lines.push(`    At risk: ${f.atRisk.map(describeRange).join(', ')}`);
  });
  return `${lines.join('\n')}\n`;
}

export function formatDiagnosisJson(d: Diagnosis): string {
  const { picture, ...rest } = d;
  return `${JSON.stringify({ ...rest, picture: { clustersPerCell: picture.clustersPerCell, cells: picture.cells.length } }, null, 2)}\n`;
}
