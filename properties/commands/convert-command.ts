/**
 * `convert [-c]`: a round trip through `qemu-img convert -O qcow2` (compressed with `-c`) into
 * the same layout, after which the sequence continues on the converted image (the image is
 * replaced; snapshots are not carried over by convert). Not with a backing file (convert would
 * flatten it) nor encryption; `-c` only with refcounts of 8 bits or more (compressed clusters share
 * host clusters).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class ConvertCommand extends StepCommand {
  constructor(private readonly compressed: boolean) {
    super();
  }
  protected resolve(model: DiskModel): Step[] | undefined {
    if (model.layout.backing || model.layout.encrypt) return undefined;
    if (this.compressed && model.layout.refcountBits < 8) return undefined;
    return [{ kind: 'convert', compressed: this.compressed }];
  }
  protected describeSeed(): string {
    return `convert${this.compressed ? ' -c' : ''}`;
  }
}
