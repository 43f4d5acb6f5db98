/**
 * Images that name no backing format. QEMU 7.2 refuses to make one (`qemu-img create -b` and
 * `rebase -u` want `-F`), but older QEMUs did, and such images are still opened: the backing file's
 * format is then probed. A layout asks for one with `backing.probed`; the image is made as usual,
 * then its backing format extension (qcow2.txt "Header extensions", type 0xe2792aca) is given a type
 * no reader knows, which readers skip — so the image no longer names a format, every other
 * extension stays where it is, and qcow2.txt lets a writer keep or drop it.
 */
import * as fs from 'node:fs';

/** qcow2.txt: "0xe2792aca - Backing file format name string". */
const BACKING_FORMAT_EXTENSION = 0xe2792aca;
/** A type no qcow2 reader knows ("zzzz"). */
export const UNKNOWN_EXTENSION = 0x7a7a7a7a;
/** Header extensions start after the header (72 bytes in v2, header_length in v3), 8-byte aligned. */
const SEARCH_BYTES = 64 << 10;

/** Where the backing format extension's type field is (8-byte aligned, past the v2 header). */
function extensionOffset(head: Buffer): number | undefined {
  for (let off = 72; off + 4 <= head.length; off += 8)
    if (head.readUInt32BE(off) === BACKING_FORMAT_EXTENSION) return off;
  return undefined;
}

/** Make the closed image at `file` name no backing format. */
export function dropBackingFormat(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = Buffer.alloc(SEARCH_BYTES);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    const off = extensionOffset(head.subarray(0, n));
    if (off === undefined) throw new Error(`harness: ${file} has no backing format extension to drop`);
    const type = Buffer.alloc(4);
    type.writeUInt32BE(UNKNOWN_EXTENSION);
    fs.writeSync(fd, type, 0, 4, off);
  } finally {
    fs.closeSync(fd);
  }
}

/** The same in bash (coreutils' od and dd) on the image in shell variable `v`. */
export function dropBackingFormatScript(v: string): string[] {
  return [
    '# the image names no backing format (its format is probed): the extension gets an unknown type',
    `line=$(od -An -v -tx1 -w8 -N ${SEARCH_BYTES} "$${v}" | tr -d ' ' | grep -n '^e2792aca' | head -1 | cut -d: -f1)`,
    `[ -n "$line" ] || exit 2`,
    `printf '\\x7a\\x7a\\x7a\\x7a' | dd of="$${v}" bs=1 seek=$(( (line - 1) * 8 )) conv=notrunc status=none || exit 2`,
  ];
}
