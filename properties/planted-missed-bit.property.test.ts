/**
 * The bitmap oracle catches a missed bit: a copy of the engine whose zero-write path forgets the
 * bitmaps (selected through QCOW2_ENGINE, as any engine module can be) must fail a short fixed-seed
 * campaign with a `bitmap-bits` divergence ("missed"), and the shrunk case must point at a zero write.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireQemuTools } from './qemu/qemu-img.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// inside the repository, so that the copy resolves the same node_modules
const scratch = fs.mkdtempSync(path.join(repo, '.planted-missed-bit-'));

/** Copy src/ and remove the zero-write path's bitmap hook (exactly one line). */
function plantMissedBit(): string {
  fs.cpSync(path.join(repo, 'src'), path.join(scratch, 'src'), { recursive: true });
  const file = path.join(scratch, 'src', 'image.ts');
  const text = fs.readFileSync(file, 'utf8');
  const hook =
    /(this\.ops\.writeZeroes\(offset, length, [^\n]*\);\n)(\s*)this\.bitmaps\.recordChange\(offset, length\);\n/;
  if (!hook.test(text))
    throw new Error('planted bug: the zero-write bitmap hook was not found in src/image.ts');
  fs.writeFileSync(file, text.replace(hook, '$1$2// planted bug: the bitmaps miss zero writes\n'));
  return path.join(scratch, 'src', 'image.ts');
}

describe('bitmap oracle against a planted missed bit', () => {
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

  it('a short campaign finds the zero write the bitmaps missed', async () => {
    await requireQemuTools();
    process.env.QCOW2_ENGINE = plantMissedBit();
    const { runCampaign } = await import('./runner/campaign.ts');
    // Fixed seeds, tried in order until one catches it (seed 2 did when this was written; the
    // others keep the test meaningful when the generators change).
    const tried: string[] = [];
    let found: Awaited<ReturnType<typeof runCampaign>>['failures'][number] | undefined;
    for (const seed of [2, 1, 3, 4, 5, 6]) {
      const report = await runCampaign({
        task: { name: 'fuzz', options: { impl: 'engine', seed, maxSteps: 50 } },
        seed,
        runs: 10,
        jobs: 0, // in this process, where QCOW2_ENGINE names the planted copy
        shrinkSeconds: 30,
      });
      tried.push(`seed ${seed}: ${report.failures.map((f) => f.message).join(' | ') || 'nothing'}`);
      found = report.failures.find((f) => f.signature.oracle === 'bitmap-bits');
      if (found) break;
    }
    expect(found, tried.join('\n')).toBeDefined();
    expect(found!.signature.category).toBe('missed');
    expect(found!.shrink?.steps.some((s) => s.startsWith('write -z'))).toBe(true);
  }, 600_000);
});
