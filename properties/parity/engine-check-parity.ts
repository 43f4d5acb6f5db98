/**
 * The engine's own checker (`qcow2 check`, src/check/) beside `qemu-img check`, on every image the
 * fuzz harness checks. The fuzz images hold what the fixed check-parity recipes never combine:
 * snapshots over compressed and zero clusters, extended L2, bitmaps, every refcount width, grown
 * refcount tables, encryption, amended headers, images QEMU itself wrote (`--impl qemu-io`).
 *
 * When qemu-img finds the image clean (exit 0), the engine's checker, run in this process on the
 * same closed file, must print the same JSON (every counter: image end offset, total, allocated,
 * fragmented and compressed clusters; the file name aside) with nothing on stderr and exit 0.
 * Without it, the checker's walk could miscount or report a false leak on any image the damage
 * recipes do not build and no test would see it (mutation testing: src/check was never reached).
 * A dirty qemu-img check is the check oracle's failure already; the two are not compared then.
 */
import { checkImage, formatCheckJson } from '../../src/check/index.ts';
import { FileDevice } from '../../src/io/device.ts';
import type { ImageLayout } from '../layout.ts';
import type { CheckReport as QemuCheckReport } from '../qemu/qemu-img.ts';

/** What differs between the two checkers' answers, in words (empty: they agree). */
export function engineCheckDifferences(
  imagePath: string,
  layout: ImageLayout,
  qemu: QemuCheckReport,
): string[] {
  if (qemu.exitCode !== 0 || !qemu.json) return [];
  const dev = FileDevice.open(imagePath, { readOnly: true, lock: false });
  let report;
  try {
    report = checkImage(dev, { filename: imagePath, keyAvailable: layout.encrypt !== undefined });
  } catch (e) {
    return [`the engine's checker threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`];
  } finally {
    dev.close();
  }
  const out: string[] = [];
  if (report.exitCode !== 0) out.push(`exit: qemu-img check 0, qcow2 check ${report.exitCode}`);
  if (report.messages.length > 0)
    out.push(`qcow2 check says: ${report.messages.slice(0, 4).join(' | ').slice(0, 400)}`);
  const ours = JSON.parse(formatCheckJson(report)) as Record<string, unknown>;
  const theirs = qemu.json;
  for (const key of new Set([...Object.keys(theirs), ...Object.keys(ours)])) {
    if (key === 'filename') continue;
    if (ours[key] !== theirs[key])
      out.push(`${key}: qemu-img check ${String(theirs[key])}, qcow2 check ${String(ours[key])}`);
  }
  return out;
}
