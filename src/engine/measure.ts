/**
 * `qemu-img measure`: how large a new image would be (QEMU's qcow2_measure, raw_measure). Pure
 * arithmetic over the layout rules of qcow2.txt: one header cluster, L2 tables for every guest
 * cluster, the L1 table, and refcount metadata for all of it (a fixed point: refcount blocks count
 * themselves). BigInt throughout: sizes up to 2^63.
 */
import { Qcow2Error } from '../errors.ts';
import * as C from '../format/constants.ts';

export interface Qcow2MeasureLayout {
  clusterSize: bigint;
  refcountBits: bigint;
  extendedL2: boolean;
}

/** The input image as measure sees it: its guest size, and the guest runs that hold data. */
export interface MeasureInput {
  size: bigint;
  /** Runs whose data must be copied (allocated, not reading as zeros), in guest order. */
  dataRuns: Iterable<{ offset: bigint; length: bigint }>;
  /** Persistent bitmaps (name and granularity), when the input supports them (qcow2 v3). */
  bitmaps?: Array<{ name: string; granularity: bigint }>;
}

export interface MeasureResult {
  required: bigint;
  fullyAllocated: bigint;
  /** Only when both the input and the output support persistent bitmaps. */
  bitmaps?: bigint;
}

const L1E_SIZE = 8n;
const REFTABLE_ENTRY_SIZE = 8n;
const BITMAP_TABLE_ENTRY_SIZE = 8n;
/** Bitmap directory entry without its name and extra data (qcow2.txt "Bitmap directory"). */
const BITMAP_DIR_ENTRY_FIXED = 24n;

const divUp = (a: bigint, b: bigint): bigint => (a + b - 1n) / b;
const roundUp = (a: bigint, b: bigint): bigint => divUp(a, b) * b;

/**
 * Bytes of refcount table and blocks needed to count `clusters` clusters plus themselves: iterate
 * until adding the refcount metadata needs no further refcount metadata.
 */
export function refcountMetadataSize(clusters: bigint, clusterSize: bigint, refcountBits: bigint): bigint {
  const blocksPerTableCluster = clusterSize / REFTABLE_ENTRY_SIZE;
  const refcountsPerBlock = (clusterSize * 8n) / refcountBits;
  let table = 0n;
  let blocks = 0n;
  let n = 0n;
  let last: bigint;
  do {
    last = n;
    blocks = divUp(clusters + table + blocks, refcountsPerBlock);
    table = divUp(blocks, blocksPerTableCluster);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * clusterSize;
}

/** A fully preallocated image of `totalSize` guest bytes: all metadata plus every data cluster. */
export function preallocatedSize(totalSize: bigint, l: Qcow2MeasureLayout): bigint {
  const cs = l.clusterSize;
  const aligned = roundUp(totalSize, cs);
  const l2e = l.extendedL2 ? 16n : 8n;
  let meta = cs; // the header cluster
  const nl2e = roundUp(aligned / cs, cs / l2e);
  meta += nl2e * l2e;
  const nl1e = roundUp((nl2e * l2e) / cs, cs / L1E_SIZE);
  meta += nl1e * L1E_SIZE;
  meta += refcountMetadataSize((meta + aligned) / cs, cs, l.refcountBits);
  return meta + aligned;
}

/** Room for the input's persistent bitmaps in a new image: data, tables, directory. */
export function bitmapsSize(bitmaps: MeasureInput['bitmaps'] & object, size: bigint, cs: bigint): bigint {
  let total = 0n;
  let dir = 0n;
  for (const b of bitmaps) {
    const bytes = divUp(divUp(size, b.granularity), 8n);
    const clusters = divUp(bytes, cs);
    total += clusters * cs + roundUp(clusters * BITMAP_TABLE_ENTRY_SIZE, cs);
    dir += roundUp(BITMAP_DIR_ENTRY_FIXED + BigInt(Buffer.byteLength(b.name)), 8n);
  }
  return total + roundUp(dir, cs);
}

export interface Qcow2MeasureOptions extends Qcow2MeasureLayout {
  /** Without an input: the new image's size. */
  size: bigint;
  version: 2 | 3;
  preallocation: 'off' | 'metadata' | 'falloc' | 'full';
  hasBackingFile: boolean;
  /** Bytes of LUKS header area, rounded to clusters (0 without LUKS). */
  luksPayload: bigint;
}

export function measureQcow2(o: Qcow2MeasureOptions, input: MeasureInput | undefined): MeasureResult {
  const cs = o.clusterSize;
  let virtualSize = roundUp(o.size, cs);
  // The requested size must fit QEMU's largest L1 table (checked before an input is looked at).
  const l2Tables = divUp(virtualSize / cs, cs / (o.extendedL2 ? 16n : 8n));
  if (l2Tables * L1E_SIZE > BigInt(C.QCOW_MAX_L1_SIZE))
    throw new Qcow2Error('IMAGE_TOO_BIG', 'The image size is too large (try using a larger cluster size)');
  let required = 0n;
  if (input) {
    virtualSize = roundUp(input.size, cs);
    if (o.hasBackingFile) {
      // Nothing is known about what the new backing file shares with the input: count it all.
      required = virtualSize;
    } else {
      // Each data run counts up to the end of its last cluster, from the start of its first.
      let end = 0n;
      for (const r of input.dataRuns) {
        const start = r.offset > end ? r.offset : end;
        const stop = roundUp(r.offset + r.length, cs);
        if (stop <= start) continue;
        required += (start % cs) + (stop - start);
        end = stop;
      }
    }
  }
  if (o.preallocation === 'full' || o.preallocation === 'falloc') required = virtualSize;
  const fullyAllocated = o.luksPayload + preallocatedSize(virtualSize, o);
  const result: MeasureResult = { required: fullyAllocated - virtualSize + required, fullyAllocated };
  if (o.version >= 3 && input?.bitmaps) result.bitmaps = bitmapsSize(input.bitmaps, input.size, cs);
  return result;
}

/** raw: the input's size, or the requested size rounded to sectors. */
export function measureRaw(size: bigint, input: MeasureInput | undefined): MeasureResult {
  const required = input ? input.size : roundUp(size, 512n);
  return { required, fullyAllocated: required };
}
