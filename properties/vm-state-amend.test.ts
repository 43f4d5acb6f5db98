/**
 * The VM-state and amend steps (issue 8 item 4): a fixed sequence replays clean on the engine and
 * on qemu-io (VM state written, read back exactly, carried by a snapshot and restored by its
 * apply; amend to v2 and back, refcount widths, lazy refcounts, with the end oracles); its script
 * runs with qemu-img and qemu-io alone and notices VM state changed behind the model's back; and the
 * kinds join the command set wherever the implementation declares them.
 */
import { execaSync } from 'execa';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { plainLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { EngineImplementation } from './adapters/engine.ts';
import { QEMU_CAPABILITIES } from './adapters/qemu-io.ts';
import { supportedKinds } from './arbitraries/command-kinds.ts';
import { parseStep, formatStep } from './steps.ts';

const LAYOUT = plainLayout();

const STEPS = [
  'write -P 0x11 0 65536',
  'write -b -P 0x22 0 8192',
  'read -b 0 16384',
  'snapshot -c s1',
  'write -b -P 0x33 4096 4096',
  'read -b 0 16384',
  'snapshot -a s1',
  'read -b 0 16384',
  'amend -o compat=0.10',
  'read 0 131072',
  'read -b 0 8192',
  'amend -o compat=1.1',
  'amend -o refcount_bits=64',
  'amend -o lazy_refcounts=on',
  'write -P 0x44 65536 512',
  'check',
  'amend -o lazy_refcounts=off',
  'amend -o refcount_bits=16',
  'read 0 131072',
];

function fixedCase(impl: 'engine' | 'qemu-io') {
  return buildCase({
    comment: 'vm-state and amend steps',
    impl,
    layout: LAYOUT,
    steps: STEPS,
    seed: null,
    path: null,
    replayPath: null,
    failure: { kind: 'harness', stepIndex: 0, step: 'none', expected: '', observed: '', message: 'none' },
  });
}

describe('VM-state and amend steps', () => {
  it('spell and parse back as qemu-io / qemu-img commands', () => {
    for (const line of STEPS) expect(formatStep(parseStep(line))).toBe(line);
  });

  for (const impl of ['engine', 'qemu-io'] as const) {
    it(`replay clean on ${impl}`, async () => {
      await requireQemuTools();
      const outcome = await replayCase(fixedCase(impl));
      expect(outcome.passed, outcome.divergence?.message).toBe(true);
    }, 120_000);
  }

  it('print a script that qemu-img/qemu-io alone run, and that notices changed VM state', async () => {
    await requireQemuTools();
    const file = fixedCase('qemu-io');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmstate-'));
    try {
      const script = path.join(dir, 'case.sh');
      fs.writeFileSync(script, file.script);
      const r = execaSync('bash', [script], { reject: false, all: true });
      expect(r.exitCode, r.all).toBe(0);
      expect(file.script).toContain('qemu-img amend -o compat=0.10');
      expect(file.script).toContain('read -b -P 0x22 0 8192');
      // the snapshot apply must bring 0x22 back over 4096+4096: break it by writing after the apply
      fs.writeFileSync(
        script,
        file.script.replace(
          'qemu-img amend -o compat=0.10',
          `qemu-io -f qcow2 -c 'write -b -P 0x77 0 512' "$img" >/dev/null; qemu-img amend -o compat=0.10`,
        ),
      );
      const broken = execaSync('bash', [script], { reject: false, all: true });
      expect(broken.exitCode, broken.all).toBe(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("spell the engine's amend as the engine's CLI (the run amended with the engine, not qemu-img)", () => {
    const script = fixedCase('engine').script;
    expect(script).toContain('npx qcow2 amend -f qcow2 -o compat=0.10 "$target"');
    expect(script).not.toContain('qemu-img amend');
    // every qemu-img/qemu-io call runs under a time limit (a known amend spin cannot hang it)
    expect(script).toMatch(/^qemu-img\(\) \{ timeout \d+ qemu-img "\$@"/m);
  });

  it('join the command set of every implementation that declares them', async () => {
    const engineCaps = await new EngineImplementation().capabilities();
    for (const caps of [engineCaps, QEMU_CAPABILITIES]) {
      const kinds = supportedKinds(caps);
      for (const k of ['vmstate-write', 'vmstate-read', 'amend'] as const) expect(kinds).toContain(k);
    }
  }, 60_000);
});
