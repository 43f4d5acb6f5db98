/** `qcow2 commit [-f fmt] [-q] FILE`: write the image's data into its backing file (engine `commit`). */
import { getopt, has, UsageError } from './args.ts';
import { Qcow2Error } from '../errors.ts';
import { closeQuietly, isQcow2, openTarget, targetOf, type Io } from './common.ts';

export async function cmdCommit(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':f:ht:b:dpqr:U', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const d = openTarget(targetOf(p, p.operands[0]!), false);
  try {
    if (!isQcow2(d)) throw new Qcow2Error('NO_BACKING', 'This image format does not support backing files');
    d.commit();
    d.flush();
    if (!has(p, 'q')) io.out('Image committed.\n');
    return 0;
  } finally {
    closeQuietly(d);
  }
}
