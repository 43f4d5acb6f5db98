/**
 * The crash-state cases kept in corpus/crash/: each script must still rebuild its state and show
 * the failure; each case's steps, recorded again with its implementation, must still produce a
 * crash state failing with the case's signature (a QEMU defect while QEMU has it; an open engine
 * finding until the engine is fixed — then the case becomes a regression: its signature must not
 * come back, any other failure must be a labelled known finding, and an engine case on a v2 layout
 * must pass every crash state with the same steps on v3, where the dirty bit is available).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { signatureKey, signatureOf } from '../runner/signature.ts';
import type { CrashCase } from './crash-case.ts';
import { crashDivergence, judgeSequence, rerecord } from './crashtest.ts';
import { CheckServer } from './check-server.ts';
import { recordingImplementation } from './record.ts';
import { knownFinding } from './known-findings.ts';
import type { ImageLayout } from '../layout.ts';

const DIR = new URL('../../corpus/crash/', import.meta.url).pathname;
const files = fs.existsSync(DIR)
  ? fs
      .readdirSync(DIR)
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];

type Kept = CrashCase & {
  qemuDefect?: boolean;
  openFinding?: boolean;
  fixed?: boolean;
  timingDependent?: boolean;
};

/** The signatures of every failing crash state of `steps` recorded again on `layout`. */
async function failingSignatures(
  implName: 'engine' | 'qemu-io',
  layout: ImageLayout,
  steps: readonly string[],
): Promise<ReturnType<typeof signatureOf>[]> {
  const impl = recordingImplementation(implName);
  const run = await rerecord(impl, layout, steps);
  const server = new CheckServer();
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-crash-corpus-'));
  try {
    const { failures } = await judgeSequence(run, await impl.capabilities(), server, {
      budget: 2000,
      seed: 1,
      all: true,
      scratchDir: scratch,
    });
    return failures.map((f) => signatureOf(crashDivergence(run, f.state, f.failure), implName));
  } finally {
    await server.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

describe('crash corpus', () => {
  it('has cases', () => {
    expect(files.length).toBeGreaterThan(0);
  });
  it.each(files)(
    '%s',
    async (name) => {
      await requireQemuTools();
      const file = JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8')) as Kept;
      const script = await execa('bash', [path.join(DIR, name.replace(/\.json$/, '.sh'))], {
        reject: false,
        all: true,
      });
      expect(script.exitCode, script.all).toBe(1);
      // A case whose steps meet the failure only in some interleavings of requests in flight (an
      // aio batch) is kept for its script, which rebuilds the crash state from the recorded bytes:
      // recording the steps again need not give the same interleaving.
      if (file.timingDependent) return;
      const implName = file.impl === 'qemu-io' ? 'qemu-io' : 'engine';
      const sigs = await failingSignatures(implName, file.image.layout, file.steps);
      const want = signatureKey(signatureOf(file.failure, file.impl));
      const keys = sigs.map(signatureKey);
      if (file.qemuDefect || file.openFinding) {
        expect(keys, `${name}: no longer reproduces`).toContain(want);
        // a campaign meeting a kept QEMU defect labels it (properties/crash/known-findings.ts)
        if (file.qemuDefect)
          expect(
            knownFinding(signatureOf(file.failure, file.impl))?.label,
            `${name}: not a known finding`,
          ).toBeDefined();
        return;
      }
      expect(keys, `${name}: the fixed failure is back`).not.toContain(want);
      expect(
        sigs.filter((sig) => !knownFinding(sig)).map(signatureKey),
        `${name}: unlabelled failures`,
      ).toEqual([]);
      if (implName === 'engine' && file.image.layout.compat === '0.10') {
        const v3 = await failingSignatures(implName, { ...file.image.layout, compat: '1.1' }, file.steps);
        expect(v3.map(signatureKey), `${name} on v3`).toEqual([]);
      }
    },
    120_000,
  );
});
