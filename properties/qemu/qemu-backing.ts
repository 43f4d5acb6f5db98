/**
 * qemu-img on backing files, as the harness uses it: `rebase [-u]`, `commit`, and the files a
 * rebase targets (made by `qemu-img create` + `qemu-io`, or converted from the current backing
 * file). Every call fails loudly when qemu-img is missing.
 */
import { qemuImageArgs, qemuObjectArgs, type BackingFormat, type ImageLayout } from '../layout.ts';
import { qemuImg, type ToolResult } from './qemu-img.ts';

type Naming = Pick<ImageLayout, 'encrypt' | 'cache'>;
const image = (file: string, layout: Naming): string[] => [
  ...qemuObjectArgs(layout as ImageLayout),
  ...qemuImageArgs(layout as ImageLayout, file),
];

/** `qemu-img rebase [-u] -b NAME -F FMT IMG` (NAME null: `-b ''`, no backing file). */
export function qemuImgRebase(
  file: string,
  name: string | null,
  format: BackingFormat | undefined,
  unsafe: boolean,
  layout: Naming,
): Promise<ToolResult> {
  const target = name === null ? ['-b', ''] : ['-b', name, '-F', format ?? 'qcow2'];
  return qemuImg(['rebase', ...(unsafe ? ['-u'] : []), ...target, ...image(file, layout)]);
}

/** `qemu-img commit IMG` (into its backing file; the image is emptied). */
export function qemuImgCommit(file: string, layout: Naming): Promise<ToolResult> {
  return qemuImg(['commit', '-q', ...image(file, layout)]);
}

/** `qemu-img convert -f FROMFMT -O TOFMT FROM TO` (a backing file's copy in another format). */
export function qemuImgConvertBase(
  from: string,
  fromFormat: BackingFormat,
  to: string,
  toFormat: BackingFormat,
): Promise<ToolResult> {
  return qemuImg(['convert', '-f', fromFormat, '-O', toFormat, from, to]);
}
