/**
 * `qemu-img amend -o OPTION` on the closed image: compat 1.1 ↔ 0.10, refcount_bits changes,
 * lazy_refcounts on/off. Only amends QEMU 7.2 carries out are generated (its refusals are its
 * business: a downgrade needs refcount_bits=16, no extended L2, zstd, LUKS or bitmaps,
 * and snapshots of the disk's size; narrower refcounts need every refcount to fit, certain here
 * only without snapshots or compressed clusters). The guest content does not change; the model's
 * layout follows the new options for the steps after it.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

const WIDTHS = [1, 2, 4, 8, 16, 32, 64];

export function amendOptions(model: DiskModel): string[] {
  const l = model.layout;
  const out: string[] = [];
  if (l.compat === '0.10') return ['compat=1.1'];
  const sameSize = [...model.snapshots.values()].every((s) => s.disk.size === model.size);
  if (
    l.refcountBits === 16 &&
    !l.extendedL2 &&
    l.compressionType === 'zlib' &&
    l.encrypt !== 'luks' &&
    (l.bitmaps?.length ?? 0) === 0 &&
    model.bitmaps.size === 0 &&
    sameSize
  )
    out.push('compat=0.10');
  const narrowOk = model.snapshots.size === 0 && !model.compressedEver;
  const widthSteered = model.quirks.noRefcountWidthAmendLargeClusters && model.clusterSize >= 256 * 1024;
  if (!widthSteered)
    for (const w of WIDTHS) if (w !== l.refcountBits && (w >= 16 || narrowOk)) out.push(`refcount_bits=${w}`);
  out.push(l.lazyRefcounts ? 'lazy_refcounts=off' : 'lazy_refcounts=on');
  return out;
}

export class AmendCommand extends StepCommand {
  constructor(private readonly choice: number) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    // The option's kind first (compat, refcount_bits, lazy_refcounts), then one of that kind: a
    // plain choice among all options made six refcount widths for each compat or lazy_refcounts
    // change, and left the header changes of those two rare (mutation survivors in engine/amend.ts).
    const kinds = [...new Set(amendOptions(model).map((o) => o.split('=')[0]!))];
    const kind = kinds[this.choice % kinds.length]!;
    const options = amendOptions(model).filter((o) => o.startsWith(`${kind}=`));
    return [{ kind: 'amend', option: options[Math.floor(this.choice / kinds.length) % options.length]! }];
  }

  protected describeSeed(): string {
    return `amend(${this.choice})`;
  }
}
