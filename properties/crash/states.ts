/**
 * The crash states of a write log. A crash after entry c leaves durable every write before the
 * last FLUSH that precedes c, and any subset of the writes issued since (a FUA write lands when
 * issued); a write may also be torn, some of its sectors landing and others not. Reordering the
 * unflushed writes adds no state beyond these subsets: writes here are issued one after another,
 * each acknowledged before the next, so where two land on the same sector the later one wins.
 *
 * Generated, by segment (the writes between two flushes), in this order until the budget:
 *   flush   the log up to each FLUSH (a crash just after it)
 *   prefix  a crash after each write, all issued writes landed
 *   torn    the last issued write torn (first sector only, all but the first, all but the last, random)
 *   subset  every subset of the last k writes issued (the earlier ones landed)
 *   sample  random subsets of all the writes of the segment issued so far
 * Positions are indexes into `WriteLog.entries`. A state's crash point is just after its last landed
 * write (a crash later, with nothing more landing, leaves the same bytes and is judged more
 * leniently: fewer operations completed, more values acceptable).
 */
import type { WriteLog } from './log-format.ts';
import type { CrashState } from './replay.ts';

export interface StateOptions {
  /** All subsets of the last k unflushed writes (default 3). */
  subsetK?: number;
  /** Random subsets per segment (default 4). */
  samplesPerSegment?: number;
  /** Tear patterns per multi-sector write (default 2). */
  tearsPerWrite?: number;
  /** Stop after this many states (default: no limit). */
  budget?: number;
  /** Randomness (samples, random tears): a seeded generator for reproducible runs. */
  random: () => number;
}

interface Segment {
  /** Just past the FLUSH opening the segment (0 for the first). */
  durableTo: number;
  /** Positions of the segment's writes and discards, in order. */
  writes: number[];
  /** Position of the FLUSH closing it, or the log's length. */
  end: number;
}

export function segmentsOf(log: WriteLog): Segment[] {
  const out: Segment[] = [];
  let cur: Segment = { durableTo: 0, writes: [], end: 0 };
  log.entries.forEach((e, i) => {
    if (e.kind === 'flush') {
      cur.end = i;
      out.push(cur);
      cur = { durableTo: i + 1, writes: [], end: 0 };
    } else if (e.kind === 'write' || e.kind === 'discard') cur.writes.push(i);
  });
  cur.end = log.entries.length;
  out.push(cur);
  return out;
}

function sectorsOf(log: WriteLog, at: number): number {
  const e = log.entries[at];
  return e.kind === 'write' ? e.data.length / log.sectorSize : 0;
}

export function* crashStates(log: WriteLog, opts: StateOptions): Generator<CrashState> {
  const k = opts.subsetK ?? 3;
  const samples = opts.samplesPerSegment ?? 4;
  const tears = opts.tearsPerWrite ?? 2;
  const budget = opts.budget ?? Infinity;
  const seen = new Set<string>();
  let made = 0;
  const segments = segmentsOf(log);
  const isFua = (at: number): boolean => {
    const e = log.entries[at];
    return e.kind === 'write' && e.fua;
  };

  function* emit(s: CrashState): Generator<CrashState> {
    const key = `${s.durableTo}|${s.landed.join(',')}|${s.torn ? `${s.torn.at}:${s.torn.sectors.join('.')}` : ''}`;
    if (seen.has(key) || made >= budget) return;
    seen.add(key);
    made += 1;
    yield s;
  }
  /** A state whose crash point is just after its last landed write (the strictest judgement). */
  const state = (seg: Segment, landed: number[], how: string): CrashState => ({
    crashAt: landed.length > 0 ? landed[landed.length - 1] + 1 : seg.durableTo,
    durableTo: seg.durableTo,
    landed,
    how,
  });

  // 1. every flush prefix (and the whole log)
  for (const seg of segments) {
    if (made >= budget) return;
    yield* emit({
      crashAt: seg.end + (seg.end < log.entries.length ? 1 : 0),
      durableTo: seg.durableTo,
      landed: seg.writes,
      how: 'flush',
    });
  }
  // 2. a crash after each write, everything issued landed
  for (const seg of segments)
    for (let i = 0; i < seg.writes.length; i++) yield* emit(state(seg, seg.writes.slice(0, i + 1), 'prefix'));
  // 3. the last issued write torn
  for (const seg of segments) {
    for (let i = 0; i < seg.writes.length; i++) {
      const at = seg.writes[i];
      const n = sectorsOf(log, at);
      if (n < 2 || isFua(at)) continue;
      const patterns: number[][] = [[0], range(1, n), range(0, n - 1)];
      for (let t = 0; t < tears; t++) {
        const pick = range(0, n).filter(() => opts.random() < 0.5);
        if (pick.length > 0 && pick.length < n) patterns.push(pick);
      }
      for (const sectors of patterns)
        yield* emit({ ...state(seg, seg.writes.slice(0, i + 1), 'torn'), torn: { at, sectors } });
    }
  }
  // 4. all subsets of the last k issued writes (FUA writes always land)
  for (const seg of segments) {
    for (let i = 0; i < seg.writes.length; i++) {
      const issued = seg.writes.slice(0, i + 1);
      const tail = issued.slice(Math.max(0, issued.length - k));
      const head = issued.slice(0, issued.length - tail.length);
      for (let mask = 0; mask < (1 << tail.length) - 1; mask++) {
        const chosen = tail.filter((at, b) => (mask & (1 << b)) !== 0 || isFua(at));
        yield* emit(state(seg, [...head, ...chosen], 'subset'));
      }
    }
  }
  // 5. random subsets of a random number of issued writes
  for (const seg of segments) {
    if (seg.writes.length < 2) continue;
    for (let t = 0; t < samples; t++) {
      const upTo = 1 + Math.floor(opts.random() * seg.writes.length);
      const landed = seg.writes.slice(0, upTo).filter((at) => isFua(at) || opts.random() < 0.5);
      yield* emit(state(seg, landed, 'sample'));
    }
  }
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(i);
  return out;
}
