/**
 * The planted set stays plantable: each bug's line occurs exactly once in its engine file, so that
 * an engine change never silently turns `npm run bench:planted` into a campaign against no bug.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PLANTED_SET, plantedSummary } from './planted-set.ts';
import { WRITE_FIRST_CLUSTER_ONLY } from './planted-bug.ts';

describe('planted bugs', () => {
  for (const bug of [...PLANTED_SET, { ...WRITE_FIRST_CLUSTER_ONLY, name: 'write-first-cluster-only' }]) {
    it(`${bug.name}: its line occurs once in src/${bug.file}`, () => {
      const text = fs.readFileSync(new URL(`../../src/${bug.file}`, import.meta.url), 'utf8');
      expect(text.split(bug.line).length - 1).toBe(1);
    });
  }

  it('the summary counts the equivalent plants from the set, and flags one that was caught', () => {
    const equivalent = PLANTED_SET.filter((b) => b.equivalent !== undefined);
    // (the encryption read-modify-write plant was caught last session: no longer listed)
    expect(equivalent.map((b) => b.name)).toEqual(['COPIED not recomputed after a revert']);
    const outcomes = PLANTED_SET.map((bug) => ({ bug, caughtAfter: bug.equivalent ? undefined : 5 }));
    const n = PLANTED_SET.length;
    expect(plantedSummary(outcomes, 90)).toEqual([
      `caught within 90 s: ${n - 1}/${n}; of the ${n - 1} not listed as equivalent: ${n - 1}/${n - 1}`,
      'listed as equivalent (no sequence can observe it): 1 — COPIED not recomputed after a revert',
    ]);
    const caughtAnyway = plantedSummary(
      PLANTED_SET.map((bug) => ({ bug, caughtAfter: bug.equivalent ? 95 : undefined })),
      90,
    );
    expect(caughtAnyway[0]).toBe(
      `caught within 90 s: 0/${n}; of the ${n - 1} not listed as equivalent: 0/${n - 1}`,
    );
    expect(caughtAnyway[2]).toMatch(
      /^CAUGHT although listed as equivalent: COPIED not recomputed after a revert \(after 95\.0 s\)/,
    );
    expect(plantedSummary([], 90)[1]).toBe('listed as equivalent: none of the plants run');
  });
});
