/** `qcow2 check [--output=json] [-r leaks|all] [-f fmt] [-q] FILE` as qemu-img check (exit 0/1/2/3/63). */
import { checkImage, formatCheckHuman, formatCheckJson, readHeader } from '../check/index.ts';
import { FileDevice } from '../io/device.ts';
import { getopt, has, last, outputFormat, UsageError } from './args.ts';
import { formatOf, targetOf, type Io } from './common.ts';
import { qcow1Refusal } from '../check/qcow1.ts';
import { bitmapsExtension } from '../format/header.ts';
import { AUTOCLEAR_BITMAPS } from '../format/constants.ts';
import { INCONSISTENT_BITMAPS_WARNING, V2_BITMAPS_WARNING } from '../engine/bitmaps.ts';

/**
 * QEMU's open (qcow2_read_extensions) warns when it ignores a bitmaps extension (autoclear bit 0
 * clear, or a v2 image): the bitmaps' clusters then show up as leaks below.
 */
function ignoredBitmapsWarning(dev: FileDevice, io: Io): void {
  try {
    const h = readHeader(dev);
    if (!bitmapsExtension(h)) return;
    if (h.version !== 2 && (h.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n) return;
    io.err(`qcow2: warning: ${h.version === 2 ? V2_BITMAPS_WARNING : INCONSISTENT_BITMAPS_WARNING}\n`);
    // (QEMU prints this line without a newline: the checker's first message follows on it)
    io.err("Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.");
  } catch {
    // a header the checker cannot read is the checker's to report
  }
}
import { program } from './program.ts';

export async function cmdCheck(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':hf:r:T:qU', [
    { name: 'output', arg: 'required' },
    { name: 'repair', arg: 'required', key: 'r' },
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const output = outputFormat(p);
  const r = last(p, 'r');
  if (r !== undefined && r !== 'leaks' && r !== 'all')
    throw new UsageError(`Invalid option for -r: ${r}`, false);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const t = targetOf(p, p.operands[0]!);
  if (formatOf(t) !== 'qcow2') {
    // A qcow (v1) header probes to QEMU's qcow driver: its open refuses it, or it has no check.
    const v1 = t.format === undefined ? qcow1Refusal(t.filename, t.secret !== undefined) : undefined;
    if (v1) throw v1;
    io.err(`${program()}: This image format does not support checks\n`);
    return 63;
  }
  const dev = FileDevice.open(t.filename, {
    readOnly: r === undefined,
    lockOptions: { forceShare: t.forceShare, locking: t.locking },
  });
  try {
    ignoredBitmapsWarning(dev, io);
    const report = checkImage(dev, {
      repair: r,
      filename: t.filename,
      keyAvailable: t.secret !== undefined,
      ownOpen: true,
    });
    for (const m of report.messages) io.err(`${m}\n`);
    // The checker's messages already carry qemu-img's "Check failed: ..." line.
    if (report.failure !== undefined) return 1;
    if (!has(p, 'q') || output === 'json')
      io.out(output === 'json' ? formatCheckJson(report) : formatCheckHuman(report));
    return report.exitCode;
  } finally {
    dev.close();
  }
}
