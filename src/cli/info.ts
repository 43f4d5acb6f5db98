/** `qcow2 info [--output=json] [-f fmt] [--backing-chain] [-U] FILE` as qemu-img info. */
import * as fs from 'node:fs';
import type { GuestDisk, Image, SnapshotInfo } from '../api.ts';
import * as C from '../format/constants.ts';
import { backingFormat, dataFileName, type Header } from '../format/header.ts';
import { Bitmaps } from '../engine/bitmaps.ts';
import { encryptionInfo } from '../engine/encryption.ts';
import { openImage } from '../open.ts';
import type { CliLockOptions } from './lock-options.ts';
import { getopt, has, outputFormat, parseImageOpts, UsageError, type Parsed } from './args.ts';
import { closeQuietly, combinePath, isQcow2, targetOf, type Io } from './common.ts';
import { nameOpenError } from './common.ts';
import { hostPath } from '../io/device.ts';
import { describeTree } from '../block-tree.ts';
import { program } from './program.ts';
import { dumpQdict, qdictOrder, qjson, sizeToStr, type JsonObject, type JsonValue } from './format.ts';

function allocatedBytes(file: string): number | undefined {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return undefined;
  }
}

export function snapshotJson(s: SnapshotInfo): JsonObject {
  return {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    icount: s.icount,
  };
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** One row of qemu's snapshot table (bdrv_snapshot_dump); no argument: the header. */
export function snapshotRow(s?: SnapshotInfo): string {
  if (!s)
    return `${'ID'.padEnd(10)}${'TAG'.padEnd(17)}${'VM SIZE'.padStart(8)}${'DATE'.padStart(20)}${'VM CLOCK'.padStart(13)}${'ICOUNT'.padStart(11)}`;
  const d = new Date(s.dateSec * 1000);
  const date = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  const secs = Math.floor(s.vmClockNsec / 1e9);
  const clock = `${pad2(Math.floor(secs / 3600))}:${pad2(Math.floor(secs / 60) % 60)}:${pad2(secs % 60)}.${String(Math.floor(s.vmClockNsec / 1e6) % 1000).padStart(3, '0')}`;
  const icount = s.icount === undefined ? '' : String(s.icount);
  return `${s.id.padEnd(9)} ${s.name.padEnd(16)} ${sizeToStr(s.vmStateSize).padStart(8)}${date.padStart(20)}${clock.padStart(13)}${icount.padStart(11)}`;
}

export function snapshotTable(list: readonly SnapshotInfo[]): string {
  return `Snapshot list:\n${snapshotRow()}\n${list.map((s) => `${snapshotRow(s)}\n`).join('')}`;
}

/**
 * The persistent bitmaps as qemu-img info lists them (engine/bitmaps.ts); undefined when there
 * are none or QEMU ignores the extension, in which case `warn` receives QEMU's warning lines.
 */
export function bitmapInfo(img: Image, warn?: (line: string) => void): JsonObject[] | undefined {
  const listing = new Bitmaps(img.device, img.header as Header).list();
  for (const line of listing.warnings) warn?.(line);
  return listing.bitmaps?.map((b) => ({ name: b.name, granularity: b.granularity, flags: [...b.flags] }));
}

/** ImageInfoSpecificQCow2, members inserted in QAPI order (equal hash buckets keep QEMU's order). */
function qcow2Specific(img: Image, warn?: (line: string) => void): JsonObject {
  const h = img.header;
  const v3 = h.version === 3;
  const data: JsonObject = { compat: v3 ? '1.1' : '0.10' };
  if (v3) {
    const df = dataFileName(h);
    if (df !== undefined) data['data-file'] = df;
    // QEMU shows data-file-raw whenever a data file is attached (has_data_file), named in the
    // header or not (then the open had it from the `data-file` option).
    if (df !== undefined || (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n)
      data['data-file-raw'] = (h.autoclearFeatures & C.AUTOCLEAR_DATA_FILE_RAW) !== 0n;
    data['extended-l2'] = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
    data['lazy-refcounts'] = (h.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n;
    data.corrupt = (h.incompatibleFeatures & C.INCOMPAT_CORRUPT) !== 0n;
  }
  data['refcount-bits'] = 2 ** h.refcountOrder;
  if (h.cryptMethod !== C.QCOW_CRYPT_NONE) {
    data.encrypt = encryptionInfo(img.device, h as Header) as unknown as JsonObject;
  }
  const bitmaps = bitmapInfo(img, warn);
  if (bitmaps && bitmaps.length > 0) data.bitmaps = bitmaps;
  data['compression-type'] = h.compressionType === C.COMPRESSION_ZSTD ? 'zstd' : 'zlib';
  return data;
}

/** The ImageInfo QDict qemu-img info builds for one layer. */
export function imageInfo(d: GuestDisk, filename: string, warn?: (line: string) => void): JsonObject {
  const info: JsonObject = {
    filename,
    format: d.format,
    'dirty-flag': false,
    'virtual-size': d.size,
  };
  // (the file itself: the shown name may be a json:{...} name)
  let actual = allocatedBytes(hostPath(d.filename));
  if (isQcow2(d)) {
    const h = d.header;
    info['cluster-size'] = d.clusterSize;
    if (h.cryptMethod !== C.QCOW_CRYPT_NONE) info.encrypted = true;
    info['dirty-flag'] = (h.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n;
    const df = dataFileName(h);
    if (df !== undefined && actual !== undefined) actual += allocatedBytes(df) ?? 0;
    if (h.backingFile !== undefined) {
      info['backing-filename'] = h.backingFile;
      // A tree without one directory (quorum) cannot resolve a relative backing name.
      if (!filename.startsWith('json:') || describeTree(filename, d.filename).hasDirname)
        info['full-backing-filename'] = combinePath(
          filename.startsWith('json:') ? d.filename : filename,
          h.backingFile,
        );
      const bf = backingFormat(h);
      if (bf !== undefined) info['backing-filename-format'] = bf;
    }
    const snaps = d.listSnapshots();
    if (snaps.length > 0) info.snapshots = snaps.map(snapshotJson);
    info['format-specific'] = { type: 'qcow2', data: qcow2Specific(d, warn) };
  }
  if (actual !== undefined) info['actual-size'] = actual;
  return info;
}

function str(v: JsonValue | undefined): string {
  return typeof v === 'string' ? v : String(v);
}

/** bdrv_image_info_dump. */
export function humanInfo(info: JsonObject, snapshots: readonly SnapshotInfo[]): string {
  const vs = info['virtual-size'] as number;
  let out = `image: ${str(info.filename)}\nfile format: ${str(info.format)}\nvirtual size: ${sizeToStr(vs)} (${vs} bytes)\n`;
  if (info['actual-size'] !== undefined) out += `disk size: ${sizeToStr(info['actual-size'] as number)}\n`;
  if (info.encrypted === true) out += 'encrypted: yes\n';
  if (info['cluster-size'] !== undefined) out += `cluster_size: ${str(info['cluster-size'])}\n`;
  if (info['dirty-flag'] === true) out += 'cleanly shut down: no\n';
  if (info['backing-filename'] !== undefined) {
    out += `backing file: ${str(info['backing-filename'])}`;
    if (info['full-backing-filename'] === undefined) out += ' (cannot determine actual path)';
    else if (info['full-backing-filename'] !== info['backing-filename'])
      out += ` (actual path: ${str(info['full-backing-filename'])})`;
    out += '\n';
  }
  if (info['backing-filename-format'] !== undefined)
    out += `backing file format: ${str(info['backing-filename-format'])}\n`;
  if (snapshots.length > 0) out += snapshotTable(snapshots);
  const fs = info['format-specific'] as JsonObject | undefined;
  if (fs) out += `Format specific information:\n${dumpQdict(fs.data as JsonObject, 1)}`;
  return out;
}

/**
 * The image name qemu-img prints: a json:{...} name as its file; a `file:` name without the
 * prefix, and "./" before a relative name whose first component holds a colon (so that it cannot
 * read as a protocol prefix).
 */
function shownName(filename: string, d: GuestDisk): string {
  if (filename.startsWith('json:')) return describeTree(filename, d.filename).shown;
  if (!filename.startsWith('file:')) return filename;
  const plain = hostPath(filename);
  return !plain.startsWith('/') && /^[^/]*:/.test(plain) ? `./${plain}` : plain;
}

/**
 * bdrv_refresh_filename: a qcow2 node opened with a strong runtime option (qcow2's only one is
 * encrypt.key-secret) is named by its options, as json:{...} in QDict order.
 */
function strongOptionsName(p: Parsed, d: GuestDisk): string | undefined {
  if (!has(p, 'image-opts') || !isQcow2(d)) return undefined;
  const o = parseImageOpts(p.operands[0]!);
  if (o.secretId === undefined) return undefined;
  const node: Record<string, string> = { driver: 'qcow2', 'encrypt.key-secret': o.secretId };
  const file = `{"driver": "file", "filename": ${JSON.stringify(o.filename)}}`;
  const keys = qdictOrder(['driver', 'encrypt.key-secret', 'file']);
  return `json:{${keys.map((k) => `${JSON.stringify(k)}: ${k === 'file' ? file : JSON.stringify(node[k])}`).join(', ')}}`;
}

function openLayer(
  filename: string,
  format: 'qcow2' | 'raw' | undefined,
  secret: Uint8Array | undefined,
  lock: CliLockOptions = {},
): GuestDisk {
  try {
    return openImage(filename, { format, readOnly: true, openBacking: false, secret, noIo: true, ...lock });
  } catch (e) {
    throw nameOpenError(e, filename);
  }
}

export async function cmdInfo(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':f:hU', [
    { name: 'output', arg: 'required' },
    { name: 'backing-chain', arg: 'none' },
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const output = outputFormat(p);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const t = targetOf(p, p.operands[0]!);
  const chain = has(p, 'backing-chain');
  const infos: Array<{ info: JsonObject; snaps: SnapshotInfo[] }> = [];
  let filename = t.filename;
  let format = t.format;
  // qemu-img (collect_image_info_list): a name met a second time, as opened, ends the walk.
  const seen = new Set<string>();
  for (;;) {
    if (seen.has(filename))
      throw new UsageError(`Backing file '${filename}' creates an infinite loop.`, false);
    seen.add(filename);
    const d = openLayer(filename, format, t.secret, t);
    try {
      const top = infos.length === 0;
      infos.push({
        // A json:{...} name of a plain format-over-file node prints as its file, as QEMU's does.
        info: imageInfo(d, (top && strongOptionsName(p, d)) || shownName(filename, d), (line) =>
          io.err(line.startsWith('warning:') ? `${program()}: ${line}\n` : `${line}\n`),
        ),
        snaps: isQcow2(d) ? d.listSnapshots() : [],
      });
      if (!chain || !isQcow2(d) || d.header.backingFile === undefined) break;
      const next = combinePath(filename, d.header.backingFile);
      const bf = backingFormat(d.header);
      format = bf === 'qcow2' || bf === 'raw' ? bf : undefined;
      filename = next;
    } finally {
      closeQuietly(d);
    }
  }
  if (output === 'json') {
    io.out(`${qjson(chain ? infos.map((x) => x.info) : infos[0]!.info)}\n`);
  } else {
    io.out(infos.map((x) => humanInfo(x.info, x.snaps)).join('\n'));
  }
  return 0;
}
