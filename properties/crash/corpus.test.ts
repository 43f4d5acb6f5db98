/**
 * The crash-state cases kept in corpus/crash/: each script must still rebuild its state and show
 * the failure; each case's steps, recorded again with its implementation, must still produce a
 * crash state failing with the case's signature (a QEMU defect while QEMU has it; an open engine
 * finding until the engine is fixed — then the case becomes a regression that must pass).
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

const DIR = new URL('../../corpus/crash/', import.meta.url).pathname;
const files = fs.existsSync(DIR)
  ? fs
      .readdirSync(DIR)
      .filter((f) => f.endsWith('.json'))
      .sort()
  : [];

type Kept = CrashCase & { qemuDefect?: boolean; openFinding?: boolean };

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
      const impl = recordingImplementation(file.impl === 'qemu-io' ? 'qemu-io' : 'engine');
      const run = await rerecord(impl, file.image.layout, file.steps);
      const server = new CheckServer();
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-crash-corpus-'));
      try {
        const { failures } = await judgeSequence(run, await impl.capabilities(), server, {
          budget: 2000,
          seed: 1,
          all: true,
          scratchDir: scratch,
        });
        const want = signatureKey(signatureOf(file.failure, file.impl));
        const keys = failures.map((f) =>
          signatureKey(signatureOf(crashDivergence(run, f.state, f.failure), file.impl)),
        );
        if (file.qemuDefect || file.openFinding)
          expect(keys, `${name}: no longer reproduces`).toContain(want);
        else expect(keys).toEqual([]);
      } finally {
        await server.stop();
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
