/** `qcow2 check [--output=json] [-r leaks|all] [-f fmt] [-q] FILE` as qemu-img check (exit 0/1/2/3/63). */
import { checkImage, formatCheckHuman, formatCheckJson } from '../check/index.ts';
import { FileDevice } from '../io/device.ts';
import { getopt, has, last, outputFormat, UsageError } from './args.ts';
import { formatOf, targetOf, type Io } from './common.ts';
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
    io.err(`${program()}: This image format does not support checks\n`);
    return 63;
  }
  const dev = FileDevice.open(t.filename, { readOnly: r === undefined });
  try {
    const report = checkImage(dev, { repair: r, filename: t.filename });
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
