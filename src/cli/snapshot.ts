/** `qcow2 snapshot [-l | -c NAME | -a NAME | -d NAME] [-q] FILE` as qemu-img snapshot. */
import { Qcow2Error } from '../errors.ts';
import { getopt, has, last, UsageError } from './args.ts';
import { closeQuietly, isQcow2, openTarget, targetOf, type Io } from './common.ts';
import { snapshotTable } from './info.ts';

export async function cmdSnapshot(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':la:c:d:f:hqU', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const actions = p.opts.filter((o) => ['l', 'a', 'c', 'd'].includes(o.key));
  if (actions.length > 1) throw new UsageError("Cannot mix '-l', '-a', '-c', '-d'");
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const action = actions[0]?.key ?? 'l';
  const d = openTarget(targetOf(p, p.operands[0]!), action === 'l', { noIo: true });
  try {
    if (!isQcow2(d))
      throw new Qcow2Error(
        'NO_SNAPSHOTS',
        `Could not open '${d.filename}': this format does not support snapshots`,
      );
    const name = last(p, action) ?? '';
    switch (action) {
      case 'l': {
        const list = d.listSnapshots();
        if (!has(p, 'q')) io.out(snapshotTable(list));
        break;
      }
      case 'c':
        d.createSnapshot(name);
        break;
      case 'a':
        d.applySnapshot(name);
        break;
      case 'd':
        d.deleteSnapshot(name);
        break;
    }
    d.flush();
    return 0;
  } catch (e) {
    if (e instanceof Qcow2Error && action !== 'l') {
      const verb = action === 'c' ? 'create' : action === 'a' ? 'apply' : 'delete';
      // qemu-img prints a failed create as "errno (strerror)"; a refcount overflow is -EINVAL.
      const text = action === 'c' && e.code === 'REFCOUNT_OVERFLOW' ? '-22 (Invalid argument)' : e.message;
      throw new Qcow2Error(e.code, `Could not ${verb} snapshot '${last(p, action) ?? ''}': ${text}`, e.data);
    }
    throw e;
  } finally {
    closeQuietly(d);
  }
}
