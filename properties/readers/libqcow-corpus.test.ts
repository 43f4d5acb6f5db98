/**
 * libqcow's defects kept in corpus/ (`readerDefect: "libqcow"`): each must still show on Debian's
 * libqcow, both through the harness (the reader oracle fails, labelled libqcow@version, never the
 * implementation) and through the case's own script (qemu-img/qemu-io make the image, pyqcow
 * prints the wrong bytes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { loadCase } from '../cases/case-file.ts';
import { replayCase } from '../cases/replay.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const CORPUS = new URL('../../corpus/', import.meta.url).pathname;
const files = fs
  .readdirSync(CORPUS)
  .filter((f) => f.endsWith('.json') && loadCase(path.join(CORPUS, f)).readerDefect === 'libqcow')
  .sort();

describe('libqcow corpus (defects of libqcow, not of the implementation under test)', () => {
  it('has cases', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  it.each(files)(
    '%s still shows on Debian libqcow',
    async (name) => {
      await requireQemuTools();
      const file = loadCase(path.join(CORPUS, name));
      expect(file.steps.length, 'shrunk to at most 4 steps').toBeLessThanOrEqual(4);
      const outcome = await replayCase(file);
      expect(
        outcome.passed,
        `${name}: libqcow reads it right now — fixed upstream? ${file.explanation ?? ''}`,
      ).toBe(false);
      const d = outcome.divergence?.details;
      expect(d?.reader, outcome.divergence?.message).toMatch(/^libqcow@\d{8}$/);
      expect(d?.kind).toBe(file.failure.kind);
      expect(d?.category).toBe(file.failure.category);
      const script = await execa('bash', ['-c', file.script], { reject: false, all: true });
      expect(script.exitCode, script.all).toBe(1);
      expect(script.all).toMatch(/WRONG BYTES|WRONG SIZE|HANGS|CRASHED/);
    },
    120_000,
  );
});
