/**
 * `qcow2 bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)...
 *  [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [--object OBJ] [--image-opts | -f FMT] FILE BITMAP`
 * as qemu-img bitmap (7.2): the operations run in command-line order on one read-write open; the
 * first failure stops (earlier ones stay done) with "Operation OP on bitmap NAME failed: …", exit 1.
 * `-g` (the last one given) is the granularity of every --add; `--add --disable` adds a disabled
 * bitmap. The default granularity is the cluster size, clamped to 4 KiB … 64 KiB.
 */
import { Qcow2Error } from '../errors.ts';
import { getopt, last, parseSize, UsageError } from './args.ts';
import { closeQuietly, isQcow2, openTarget, targetOf, type Io } from './common.ts';
import { openImage } from '../open.ts';

type Op = 'add' | 'remove' | 'clear' | 'enable' | 'disable' | 'merge';

export async function cmdBitmap(argv: string[], io: Io): Promise<number> {
  void io;
  const p = getopt(argv, ':b:f:F:g:hq', [
    { name: 'add', arg: 'none' },
    { name: 'remove', arg: 'none' },
    { name: 'clear', arg: 'none' },
    { name: 'enable', arg: 'none' },
    { name: 'disable', arg: 'none' },
    { name: 'merge', arg: 'required' },
    { name: 'granularity', arg: 'required', key: 'g' },
    { name: 'source-file', arg: 'required', key: 'b' },
    { name: 'source-format', arg: 'required', key: 'F' },
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const ops: { op: Op; source?: string }[] = [];
  for (const o of p.opts) {
    if (['add', 'remove', 'clear', 'enable', 'disable'].includes(o.key)) ops.push({ op: o.key as Op });
    else if (o.key === 'merge') ops.push({ op: 'merge', source: o.value });
  }
  if (ops.length === 0)
    throw new UsageError('Need at least one of --add, --remove, --clear, --enable, --disable, or --merge');
  const adding = ops.some((o) => o.op === 'add');
  const merging = ops.some((o) => o.op === 'merge');
  const g = last(p, 'g');
  if (g !== undefined && !adding) throw new UsageError('granularity only supported with --add', false);
  const sourceFile = last(p, 'b');
  if (sourceFile !== undefined && !merging)
    throw new UsageError('Merge bitmap source file only supported with --merge', false);
  const sourceFmt = last(p, 'F');
  if (sourceFmt !== undefined && sourceFile === undefined)
    throw new UsageError('--source-format requires --source-file', false);
  if (p.operands.length !== 2) throw new UsageError('Expecting filename and bitmap name');
  let granularity: number | undefined;
  if (g !== undefined) {
    const v = parseSize(g);
    if (typeof v !== 'number') throw new UsageError('Invalid granularity specified', false);
    granularity = v;
  }
  const [file, name] = p.operands as [string, string];
  const target = targetOf(p, file);
  const d = openTarget(target, false);
  try {
    if (!isQcow2(d))
      throw new Qcow2Error(
        'BITMAPS_UNSUPPORTED',
        `Could not open '${d.filename}': bitmaps need a qcow2 image`,
      );
    for (const { op, source } of ops) {
      try {
        switch (op) {
          case 'add':
            // --add --disable: the bitmap is added, then disabled (the same as adding it disabled)
            d.addBitmap(name, { granularity });
            break;
          case 'remove':
            d.removeBitmap(name);
            break;
          case 'clear':
            d.clearBitmap(name);
            break;
          case 'enable':
          case 'disable':
            d.setBitmapEnabled(name, op === 'enable');
            break;
          case 'merge': {
            if (sourceFile === undefined) {
              d.mergeBitmap(name, d.bitmapSource(source ?? ''));
              break;
            }
            const fmt = sourceFmt === 'qcow2' || sourceFmt === 'raw' ? sourceFmt : undefined;
            // (qemu-img opens the source file as named, from the current directory)
            const src = openImage(sourceFile, { format: fmt, readOnly: true });
            try {
              if (!isQcow2(src))
                throw new Qcow2Error('BITMAP_NOT_FOUND', `Dirty bitmap '${source ?? ''}' not found`);
              d.mergeBitmap(name, src.bitmapSource(source ?? ''));
            } finally {
              closeQuietly(src);
            }
            break;
          }
        }
      } catch (e) {
        if (e instanceof Qcow2Error)
          throw new Qcow2Error(e.code, `Operation ${op} on bitmap ${name} failed: ${e.message}`, e.data);
        throw e;
      }
    }
    d.close();
    return 0;
  } finally {
    closeQuietly(d);
  }
}
