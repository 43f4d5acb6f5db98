/**
 * `qcow2 measure [--output=human|json] [-O fmt] [-o options] [--size N | [-f fmt] FILE]` as
 * qemu-img measure: the size a new image would need (engine/measure.ts), for a given size or to
 * hold a copy of FILE.
 */
import type { GuestDisk } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { measureQcow2, measureRaw, type MeasureInput, type MeasureResult } from '../engine/measure.ts';
import { luksHeaderLayout } from '../crypto/luks.ts';
import {
  all,
  getopt,
  has,
  last,
  mergeOptStrings,
  outputFormat,
  parseBool,
  parseOptString,
  parseSizeBig,
  UsageError,
} from './args.ts';
import { closeQuietly, isQcow2, openTarget, targetOf, type Io } from './common.ts';
import { qjson } from './format.ts';
import { QCOW2_CREATE_KEYS } from './qcow2-options.ts';
import { program } from './program.ts';

const INT64_MAX = 2n ** 63n - 1n;

/** The qcow2 create options measure honours, with QEMU's defaults and checks. */
const QCOW2_MEASURE_KEYS = new Set(QCOW2_CREATE_KEYS);

function sizeArg(name: string, v: string): bigint {
  const r = parseSizeBig(v);
  if (!r.ok && r.error === 'invalid') {
    throw new UsageError(
      `Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for\n` +
        `${program()}: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.`,
      false,
    );
  }
  if (!r.ok) throw new UsageError(`Invalid ${name} specified. Must be between 0 and ${INT64_MAX}.`, false);
  return r.value;
}

/** The input as measure reads it: data runs through the whole chain (bdrv_block_status_above). */
function inputOf(d: GuestDisk, snapshot?: string): MeasureInput {
  const size = d.size;
  function* runs(): Generator<{ offset: bigint; length: bigint }> {
    for (let off = 0; off < size;) {
      const st = d.blockStatus(off, size - off);
      const len = Math.max(1, Math.min(st.length, size - off));
      // Zero runs are skipped (safe: the new image has no backing file); allocated data counts.
      if (!st.zero && st.present && st.data) yield { offset: BigInt(off), length: BigInt(len) };
      off += len;
    }
  }
  const input: MeasureInput = { size: BigInt(size), dataRuns: runs() };
  if (snapshot !== undefined && isQcow2(d)) {
    // -l: the snapshot's own clusters (QEMU loads its L1 table in place of the active one; the
    // size stays the image's current one).
    const cs = BigInt(d.clusterSize);
    input.dataRuns = d.snapshotDataClusters(snapshot).map((c) => ({ offset: BigInt(c) * cs, length: cs }));
  }
  // Persistent bitmaps exist only in qcow2 v3 inputs (bdrv_supports_persistent_dirty_bitmap).
  if (isQcow2(d) && d.header.version >= 3) {
    input.bitmaps = (d.listBitmaps().bitmaps ?? []).map((b) => ({
      name: b.name,
      granularity: BigInt(b.granularity),
    }));
  }
  return input;
}

function invalidOptions(fmt: string, msg: string): never {
  throw new Qcow2Error('INVALID_OPTION', msg, {
    hint: `${program()}: Invalid options for file format '${fmt}'\n`,
  });
}

function measureQcow2Opts(
  o: Map<string, string>,
  size: bigint,
  input: MeasureInput | undefined,
): MeasureResult {
  for (const k of o.keys())
    if (!QCOW2_MEASURE_KEYS.has(k)) invalidOptions('qcow2', `Invalid parameter '${k}'`);
  const extendedL2 = o.has('extended_l2') ? parseBool('extended_l2', o.get('extended_l2')!) : false;
  const csText = o.get('cluster_size');
  let clusterSize = 65536n;
  if (csText !== undefined) {
    const r = parseSizeBig(csText);
    if (!r.ok) invalidOptions('qcow2', "Parameter 'cluster_size' expects a non-negative number below 2^64");
    clusterSize = r.value;
  }
  const bits = clusterSize > 0n ? clusterSize.toString(2).length - 1 : -1;
  if (bits < 9 || bits > 21 || 1n << BigInt(bits) !== clusterSize)
    throw new Qcow2Error('INVALID_OPTION', 'Cluster size must be a power of two between 512 and 2048k');
  if (extendedL2 && clusterSize < 16384n)
    throw new Qcow2Error(
      'INVALID_OPTION',
      'Extended L2 entries are only supported with cluster sizes of at least 16384 bytes',
    );
  const compat = o.get('compat');
  let version: 2 | 3 = 3;
  if (compat === '0.10' || compat === 'v2') version = 2;
  else if (compat !== undefined && compat !== '1.1' && compat !== 'v3')
    throw new Qcow2Error('INVALID_OPTION', `Invalid compatibility level: '${compat}'`);
  let refcountBits = 16n;
  const rb = o.get('refcount_bits');
  if (rb !== undefined) {
    const n = /^[0-9]+$/.test(rb) ? BigInt(rb) : 0n;
    if (n === 0n || n > 64n || (n & (n - 1n)) !== 0n)
      throw new Qcow2Error(
        'INVALID_OPTION',
        'Refcount width must be a power of two and may be at most 64 bits',
      );
    if (version < 3 && n !== 16n)
      throw new Qcow2Error(
        'INVALID_OPTION',
        'Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)',
      );
    refcountBits = n;
  }
  const pa = o.get('preallocation') ?? 'off';
  if (pa !== 'off' && pa !== 'metadata' && pa !== 'falloc' && pa !== 'full')
    throw new Qcow2Error('INVALID_OPTION', `Parameter 'preallocation' does not accept value '${pa}'`);
  let luksPayload = 0n;
  if (o.get('encrypt.format') === 'luks') {
    // qcrypto_block_calculate_payload_offset: the LUKS header and key material for the cipher's
    // key size (aes-256-xts by default: 64 bytes), rounded up to whole clusters.
    const alg = o.get('encrypt.cipher-alg') ?? 'aes-256';
    const algBytes = { 'aes-128': 16, 'aes-192': 24, 'aes-256': 32 }[alg];
    if (algBytes === undefined)
      invalidOptions('qcow2', `Parameter 'encrypt.cipher-alg' does not accept value '${alg}'`);
    const keyBytes = (o.get('encrypt.cipher-mode') ?? 'xts') === 'xts' ? algBytes * 2 : algBytes;
    const header = BigInt(luksHeaderLayout(keyBytes).headerLength);
    luksPayload = ((header + clusterSize - 1n) / clusterSize) * clusterSize;
  }
  return measureQcow2(
    {
      clusterSize,
      refcountBits,
      extendedL2,
      size,
      version,
      preallocation: pa,
      hasBackingFile: o.has('backing_file'),
      luksPayload,
    },
    input,
  );
}

/** is_valid_option_list: not empty, not starting with a comma, no odd run of trailing commas. */
function validOptionList(v: string): boolean {
  if (v === '' || v.startsWith(',')) return false;
  const trailing = v.length - v.replace(/,+$/, '').length;
  return trailing % 2 === 0;
}

/**
 * `-l snapshot.id=ID,snapshot.name=NAME` (QEMU's internal_snapshot_opts) or a bare id or name;
 * any other `snapshot.` key is refused with QEMU's two messages.
 */
function snapshotParam(v: string): string {
  if (!v.startsWith('snapshot.')) return v;
  const o = parseOptString(v);
  for (const k of o.keys()) {
    if (k !== 'snapshot.id' && k !== 'snapshot.name')
      throw new Qcow2Error('INVALID_OPTION', `Invalid parameter '${k}'`, {
        hint: `${program()}: Failed in parsing snapshot param '${v}'\n`,
      });
  }
  return o.get('snapshot.name') ?? o.get('snapshot.id') ?? v;
}

export async function cmdMeasure(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, 'hf:O:o:l:U', [
    { name: 'output', arg: 'required' },
    { name: 'size', arg: 'required' },
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  // accumulate_options: each -o must be a valid option list, checked as it is parsed.
  for (const v of all(p, 'o'))
    if (!validOptionList(v)) throw new UsageError(`Invalid option list: ${v}`, false);
  const snapText = last(p, 'l');
  const snapshot = snapText === undefined ? undefined : snapshotParam(snapText);
  const output = outputFormat(p);
  const sizeText = last(p, 'size');
  const size = sizeText === undefined ? undefined : sizeArg('image size', sizeText);
  if (p.operands.length > 1) throw new UsageError('At most one filename argument is allowed.', false);
  const filename = p.operands[0];
  if (filename === undefined && (has(p, 'image-opts') || has(p, 'f') || has(p, 'l')))
    throw new UsageError('--image-opts, -f, and -l require a filename argument.', false);
  if (filename !== undefined && size !== undefined)
    throw new UsageError('--size N cannot be used together with a filename.', false);
  if (filename === undefined && size === undefined)
    throw new UsageError('Either --size N or one filename must be specified.', false);
  const d = filename === undefined ? undefined : openTarget(targetOf(p, filename), true);
  try {
    const outFmt = last(p, 'O') ?? 'raw';
    if (outFmt !== 'raw' && outFmt !== 'qcow2')
      throw new UsageError(`Unknown file format '${outFmt}'`, false);
    const o = mergeOptStrings(all(p, 'o'));
    const input = d === undefined ? undefined : inputOf(d, snapshot);
    const optSize = o.get('size');
    const s = size ?? (optSize === undefined ? 0n : sizeArg('image size', optSize));
    let r: MeasureResult;
    if (outFmt === 'raw') {
      for (const k of o.keys())
        if (k !== 'size' && k !== 'preallocation') invalidOptions('raw', `Invalid parameter '${k}'`);
      r = measureRaw(s, input);
    } else {
      r = measureQcow2Opts(o, s, input);
    }
    if (output === 'json') {
      const j: Record<string, number> = {
        required: Number(r.required),
        'fully-allocated': Number(r.fullyAllocated),
      };
      if (r.bitmaps !== undefined) j.bitmaps = Number(r.bitmaps);
      io.out(`${qjson(j)}\n`);
    } else {
      io.out(`required size: ${r.required}\nfully allocated size: ${r.fullyAllocated}\n`);
      if (r.bitmaps !== undefined) io.out(`bitmaps size: ${r.bitmaps}\n`);
    }
    return 0;
  } finally {
    closeQuietly(d);
  }
}
