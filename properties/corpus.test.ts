/**
 * Replays every case kept in corpus/ against the implementation it records: regressions must now
 * pass; cases marked as QEMU defects must still reproduce (they stay out of the engine's set).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';

const CORPUS = new URL('../corpus/', import.meta.url).pathname;
const files = fs
  .readdirSync(CORPUS)
  .filter((f) => f.endsWith('.json'))
  // (a reader's defects replay in properties/readers/libqcow-corpus.test.ts)
  .filter((f) => !loadCase(path.join(CORPUS, f)).readerDefect)
  .sort();

describe('corpus', () => {
  it('has cases', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  it.each(files)(
    '%s',
    async (name) => {
      await requireQemuTools();
      const file = loadCase(path.join(CORPUS, name));
      expect(typeof file.comment, 'every corpus case says how it was found').toBe('string');
      let outcome = await replayCase(file);
      // (a timing-dependent defect, as overlapping aio requests torn per cluster, may take a few)
      for (let n = 1; file.qemuDefect && outcome.passed && n < (file.reproduceAttempts ?? 1); n++)
        outcome = await replayCase(file);
      if (file.qemuDefect) {
        expect(
          outcome.passed,
          `${name}: the QEMU defect no longer reproduces — QEMU fixed? ${file.explanation ?? ''}`,
        ).toBe(false);
        expect(outcome.divergence?.details.kind).toBe(file.failure.kind);
      } else {
        expect(outcome.passed, outcome.divergence?.message).toBe(true);
      }
    },
    120_000,
  );
});
