/**
 * A campaign (`fuzz --impl qemu-io --seed 7`, sequence 76, 2026-11-26) reported a `qemu-img check`
 * failure as NEW while `repro` of its saved (shrunk) case named the known bug
 * qemu-7.2-compressed-write-after-free: the unshrunk run's check printed 92 `Leaked cluster` lines
 * before its one `ERROR OFLAG_COPIED` line, and only the first 20 lines reached the text the
 * known-bugs list matches. The report below is that run's (leaks 92, corruptions 1).
 */
import { describe, expect, it } from 'vitest';
import { checkOutputText } from './check-text.ts';
import { checkDivergence } from './image-oracles.ts';
import { labelledSignature, matchKnownBug } from '../known-bugs/index.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const OFLAG = 'ERROR OFLAG_COPIED data cluster: l2_entry=8000000000002000 refcount=4';
// compare_refcounts prints the leaks before check_oflag_copied prints its errors
const stderr = `${Array.from({ length: 92 }, (_, i) => `Leaked cluster ${17 + i} refcount=1 reference=0`).join('\n')}\n${OFLAG}\n`;
const check = {
  'compressed-clusters': 3,
  'total-clusters': 219,
  corruptions: 1,
  'check-errors': 0,
  leaks: 92,
};
// the failing run's steps, as far as the labels look at them (its compressed writes and the check)
const steps = [
  'truncate 116736',
  'write -s w1.bin 4608 199',
  'write -c -P 0x16 31232 1024',
  'write -c -P 0x6a 109568 1536',
  'write -s w28.bin 19968 68',
  'check -r all',
];

describe('qemu-img check output in divergences', () => {
  it('puts ERROR lines before per-cluster leak lines and counts what it cuts', () => {
    const text = checkOutputText(stderr);
    expect(text.startsWith(OFLAG)).toBe(true);
    expect(text).toContain('Leaked cluster 17 refcount=1 reference=0');
    expect(text).not.toContain('Leaked cluster 36 ');
    expect(text).toContain('… (73 more lines)');
    expect(checkOutputText('Leaked cluster 3 refcount=1 reference=0\n')).toBe(
      'Leaked cluster 3 refcount=1 reference=0',
    );
  });

  it('labels the unshrunk run as its shrunk case is labelled (the known bug, not NEW)', () => {
    requireQemuTools();
    const d = checkDivergence(
      { exitCode: 2, json: check, stderr },
      steps.length - 1,
      'check -r all (step 5, before the repair)',
    );
    expect(d).toBeDefined();
    const sig = labelledSignature(d!.details, steps, 'qemu-io');
    expect(sig.category).toBe('corruptions');
    expect(sig.knownBug).toBe('qemu-7.2-compressed-write-after-free');
    // what `repro` of the shrunk case (no leaks, the same error line) says
    const shrunk = checkDivergence(
      { exitCode: 2, json: { ...check, leaks: 0 }, stderr: `${OFLAG}\n` },
      steps.length - 1,
      'check -r all (step 5, before the repair)',
    );
    expect(matchKnownBug(shrunk!.details, steps, 'qemu-io')?.id).toBe(sig.knownBug);
  });

  it('a clean report is no divergence', () => {
    expect(checkDivergence({ exitCode: 0, json: { 'check-errors': 0 }, stderr: '' }, 0, 'x')).toBeUndefined();
  });
});
