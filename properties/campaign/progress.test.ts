import { describe, expect, it, vi } from 'vitest';
import { progressLine, progressPrinter } from './progress.ts';
import type { Progress } from '../runner/campaign.ts';

const p: Progress = {
  elapsedMs: 75_000,
  budgetMs: 600_000,
  runsTarget: null,
  sequences: 42,
  operations: 15_000,
  failuresNew: 2,
  failuresKnown: 1,
  shrinking: 1,
  layout: 'v3 64K rc16',
  jobs: 2,
};

function fakeStream(tty: boolean): { stream: NodeJS.WriteStream; out: string[] } {
  const out: string[] = [];
  const stream = {
    isTTY: tty,
    columns: 200,
    write: (s: string) => out.push(s),
  } as unknown as NodeJS.WriteStream;
  return { stream, out };
}

describe('progress', () => {
  it('says elapsed/ETA, sequences, ops/s, failures new/known, shrinking and the layout', () => {
    expect(progressLine(p, 'fuzz engine')).toBe(
      'fuzz engine: 1:15 / 10:00 (ETA 8:45) · 42 seq · 200 ops/s · failures 2 new, 1 known · shrinking 1 · 2 job(s) · v3 64K rc16',
    );
  });

  it('redraws one line on a terminal, prints a plain line every 30 s otherwise', () => {
    vi.useFakeTimers();
    try {
      const tty = fakeStream(true);
      const t = progressPrinter(tty.stream, 'x');
      t.update(p);
      t.update(p);
      t.done();
      expect(tty.out).toHaveLength(3);
      expect(tty.out[0].startsWith('\r\x1b[K')).toBe(true);
      expect(tty.out[2]).toBe('\n');

      const ci = fakeStream(false);
      const c = progressPrinter(ci.stream, 'x');
      c.update(p);
      vi.advanceTimersByTime(29_000);
      c.update(p);
      expect(ci.out).toHaveLength(0);
      vi.advanceTimersByTime(1_000);
      c.update(p);
      c.update(p);
      c.done();
      expect(ci.out).toEqual([`${progressLine(p, 'x')}\n`]);
    } finally {
      vi.useRealTimers();
    }
  });
});
