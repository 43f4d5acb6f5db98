/**
 * The amend command picks the option's kind first: on a v3 image where all three kinds are legal,
 * compat, refcount_bits and lazy_refcounts changes each come a third of the time (the header
 * changes that the image-facts oracle checks are not drowned by the six refcount widths).
 */
import { describe, expect, it } from 'vitest';
import { AmendCommand } from './commands/amend-command.ts';
import { DiskModel, NO_QUIRKS } from './model/disk-model.ts';
import { plainLayout } from './layout.ts';

const LAYOUT = plainLayout();

describe('amend command', () => {
  it('chooses each option kind equally, and every option of a kind', () => {
    const model = new DiskModel(LAYOUT, NO_QUIRKS);
    const counts = new Map<string, number>();
    for (let choice = 0; choice < 300; choice++) {
      const step = new AmendCommand(choice).stepsFor(model)![0]!;
      if (step.kind !== 'amend') throw new Error(`not an amend: ${step.kind}`);
      counts.set(step.option, (counts.get(step.option) ?? 0) + 1);
    }
    const byKind = (k: string): number =>
      [...counts].filter(([o]) => o.startsWith(`${k}=`)).reduce((n, [, c]) => n + c, 0);
    expect([byKind('compat'), byKind('refcount_bits'), byKind('lazy_refcounts')]).toEqual([100, 100, 100]);
    expect(counts.get('compat=0.10')).toBe(100);
    expect(counts.get('lazy_refcounts=on')).toBe(100);
    // every other width is still chosen
    expect([...counts.keys()].filter((o) => o.startsWith('refcount_bits=')).sort()).toEqual([
      'refcount_bits=1',
      'refcount_bits=2',
      'refcount_bits=32',
      'refcount_bits=4',
      'refcount_bits=64',
      'refcount_bits=8',
    ]);
  });
});
