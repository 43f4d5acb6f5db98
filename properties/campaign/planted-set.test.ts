/**
 * The planted set stays plantable: each bug's line occurs exactly once in its engine file, so that
 * an engine change never silently turns `npm run bench:planted` into a campaign against no bug.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PLANTED_SET } from './planted-set.ts';
import { WRITE_FIRST_CLUSTER_ONLY } from './planted-bug.ts';

describe('planted bugs', () => {
  for (const bug of [...PLANTED_SET, { ...WRITE_FIRST_CLUSTER_ONLY, name: 'write-first-cluster-only' }]) {
    it(`${bug.name}: its line occurs once in src/${bug.file}`, () => {
      const text = fs.readFileSync(new URL(`../../src/${bug.file}`, import.meta.url), 'utf8');
      expect(text.split(bug.line).length - 1).toBe(1);
    });
  }
});
