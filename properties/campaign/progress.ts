/**
 * Campaign progress on stderr: on a terminal one live line, redrawn every second (elapsed/ETA,
 * sequences, operations/s, failures new/known, what is being shrunk, the last layout); without a
 * terminal (CI logs) one plain line every 30 seconds.
 */
import type { Progress } from '../runner/campaign.ts';

const clock = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
};

export function progressLine(p: Progress, label: string): string {
  const secs = p.elapsedMs / 1000;
  const rate = secs > 0 ? Math.round(p.operations / secs) : 0;
  let eta = '';
  if (p.budgetMs !== null) eta = ` / ${clock(p.budgetMs)} (ETA ${clock(p.budgetMs - p.elapsedMs)})`;
  else if (p.runsTarget !== null && p.sequences > 0)
    eta = ` (ETA ${clock((p.elapsedMs / p.sequences) * (p.runsTarget - p.sequences))})`;
  const runs = p.runsTarget !== null ? `${p.sequences}/${p.runsTarget}` : String(p.sequences);
  return (
    `${label}: ${clock(p.elapsedMs)}${eta} · ${runs} seq · ${rate} ops/s · ` +
    `failures ${p.failuresNew} new, ${p.failuresKnown} known${p.shrinking > 0 ? ` · shrinking ${p.shrinking}` : ''}` +
    ` · ${p.jobs} job(s)${p.layout ? ` · ${p.layout}` : ''}`
  );
}

export interface ProgressPrinter {
  update(p: Progress): void;
  /** Leave the live line (a newline) before the summary. */
  done(): void;
}

export function progressPrinter(
  stream: NodeJS.WriteStream,
  label: string,
  plainEveryMs = 30_000,
): ProgressPrinter {
  const tty = stream.isTTY === true;
  let lastPlain = Date.now();
  let drawn = false;
  return {
    update(p) {
      if (tty) {
        const width = stream.columns ?? 120;
        stream.write(`\r\x1b[K${progressLine(p, label).slice(0, width - 1)}`);
        drawn = true;
      } else if (Date.now() - lastPlain >= plainEveryMs) {
        lastPlain = Date.now();
        stream.write(`${progressLine(p, label)}\n`);
      }
    },
    done() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}
