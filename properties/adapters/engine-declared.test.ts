/**
 * The declared floor under the engine's capability probe (adapters/engine-declared.ts): a probe
 * that lost a feature (its create threw) gets it back, named in the notes with what the probe saw;
 * a probe that found everything is left as it was; and this repository's engine probes to exactly
 * what it declares.
 */
import { describe, expect, it } from 'vitest';
import type { Capabilities } from './adapter.ts';
import { ENGINE_DECLARED, keepDeclared } from './engine-declared.ts';
import { implementation } from './registry.ts';

const FULL: Capabilities = { ...ENGINE_DECLARED, involvesQemu: false };

describe('engine capabilities: declared, never narrowed by the probe', () => {
  it('puts back what a failing probe left out, and says so', () => {
    const notes = ['refcount_bits 4: CorruptionError REFCOUNT_OVERLAP: Refcount of cluster 1 is 0'];
    const narrowed: Capabilities = {
      ...FULL,
      refcountBits: [1, 2, 8, 16, 32, 64],
      encryption: ['luks'],
      extendedL2: false,
      clusterBits: { min: 12, max: 21 },
      encryptMinClusterBits: undefined,
    };
    const caps = keepDeclared(narrowed, notes);
    expect(caps).toEqual(FULL);
    expect(notes.slice(1)).toEqual([
      'declared, refused by the probe (kept in the layouts, so the runs report it): refcount_bits 4 — refcount_bits 4: CorruptionError REFCOUNT_OVERLAP: Refcount of cluster 1 is 0',
      'declared, refused by the probe (kept in the layouts, so the runs report it): encryption aes',
      'declared, refused by the probe (kept in the layouts, so the runs report it): cluster_bits 9-21 (probed 12-21)',
      'declared, refused by the probe (kept in the layouts, so the runs report it): encryptMinClusterBits 9 (probed undefined)',
      'declared, refused by the probe (kept in the layouts, so the runs report it): extendedL2',
    ]);
  });

  it('leaves a full probe as it is (same order: the layouts of a seed do not move)', () => {
    const notes: string[] = [];
    expect(keepDeclared(FULL, notes)).toEqual(FULL);
    expect(JSON.stringify(keepDeclared(FULL, notes))).toBe(JSON.stringify(FULL));
    expect(notes).toEqual([]);
  });

  it('the engine probes to what it declares', async () => {
    const impl = implementation('engine');
    const caps = await impl.capabilities();
    expect((impl as unknown as { probeNotes: string[] }).probeNotes).toEqual([]);
    expect(caps).toMatchObject(ENGINE_DECLARED);
  });
});
