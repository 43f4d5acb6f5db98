/**
 * The seed space of a campaign and its shards. Sequence `i` of a campaign with base seed S is
 * fast-check run `i mod BLOCK` of the seed `blockSeed(S, ⌊i / BLOCK⌋)` (block 0 uses S itself, so
 * the first thousand sequences are exactly `fc.check(…, { seed: S })`'s runs). It depends on (S, i)
 * only, and replays with `--seed <blockSeed> --path <i mod BLOCK>…`. fast-check reaches run k by
 * jumping its generator k times, so blocks keep that cheap however long the campaign runs.
 *
 * Shard K/N takes the indices i ≡ K (mod N): its j-th sequence is i = K + j·N. The slices of the
 * N shards are disjoint and cover every index, and no index depends on the number of jobs.
 */
export const BLOCK = 1000;

export interface Shard {
  /** 0-based shard index K. */
  index: number;
  /** Number of shards N. */
  count: number;
}

export const WHOLE: Shard = { index: 0, count: 1 };

/** A 32-bit mix of two integers (the finaliser of MurmurHash3 over a ^ b·φ). */
function mix(a: number, b: number): number {
  let h = (a ^ Math.imul((b + 0x9e3779b9) | 0, 0x85ebca6b)) | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h | 0;
}

export function blockSeed(seed: number, block: number): number {
  return block === 0 ? seed | 0 : mix(seed, block);
}

/** fast-check's seed and path for sequence `index` of a campaign with base seed `seed`. */
export function sequenceSeed(seed: number, index: number): { seed: number; path: string } {
  return { seed: blockSeed(seed, Math.floor(index / BLOCK)), path: String(index % BLOCK) };
}

/** The global index of a shard's j-th sequence. */
export function globalIndex(shard: Shard, j: number): number {
  return shard.index + j * shard.count;
}

export class ShardSyntaxError extends Error {}

/** `K/N` (0 ≤ K < N). */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) throw new ShardSyntaxError(`--shard needs K/N (e.g. 0/4), got '${text}'`);
  const shard = { index: Number(m[1]), count: Number(m[2]) };
  if (shard.count < 1 || shard.index >= shard.count)
    throw new ShardSyntaxError(`--shard ${text}: K must be in 0..N-1 and N at least 1`);
  return shard;
}

/**
 * The shard from the option, else from a Kubernetes Indexed Job's environment:
 * JOB_COMPLETION_INDEX for K, N from `--shards` or JOB_COMPLETIONS / SHARD_COUNT.
 */
export function shardFrom(
  option: string | undefined,
  count: number | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Shard {
  if (option !== undefined) {
    if (/^\d+$/.test(option) && count !== undefined) return parseShard(`${option}/${count}`);
    return parseShard(option);
  }
  const k = env.JOB_COMPLETION_INDEX;
  if (k === undefined || k === '') return count !== undefined ? parseShard(`0/${count}`) : WHOLE;
  const n = count ?? Number(env.JOB_COMPLETIONS ?? env.SHARD_COUNT ?? NaN);
  if (!Number.isInteger(n))
    throw new ShardSyntaxError(
      `JOB_COMPLETION_INDEX=${k} is set but the number of shards is not: pass --shards N or set JOB_COMPLETIONS`,
    );
  return parseShard(`${k}/${n}`);
}

/** Sorted indices as inclusive ranges [[a, b], …] (compact in reports; exact for merging). */
export function toRanges(indices: Iterable<number>): [number, number][] {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last && (last[1] === i - 1 || last[1] === i)) last[1] = i;
    else out.push([i, i]);
  }
  return out;
}

export function fromRanges(ranges: readonly (readonly [number, number])[]): number[] {
  const out: number[] = [];
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) out.push(i);
  return out;
}
