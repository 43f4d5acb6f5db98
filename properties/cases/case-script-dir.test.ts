/**
 * A case script makes its images where the harness made them (runner/scratch-root.ts:
 * $QCOW2_FUZZ_TMPDIR, else /dev/shm, else the system's temporary directory): host-file holes
 * depend on the file system (tmpfs keeps the hole QEMU's write-zeroes leaves; ext4 turns it into an
 * unwritten extent that reads as data once its pages are cached), and the map-parity case
 * corpus/engine-map-host-hole-without-metadata-preallocation reproduced only on tmpfs, so its
 * script, made in mktemp's /tmp, passed against the engine it was found with.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execaSync } from 'execa';
import { describe, expect, it } from 'vitest';
import { loadCase } from './case-file.ts';
import { writeScript } from './script-writer.ts';
import { scratchRoot } from '../runner/scratch-root.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CASE = path.join(ROOT, 'corpus', 'engine-map-host-hole-without-metadata-preallocation');

/** The script's lines up to its run directory, then the directory it picked (made and removed). */
function pickedDir(script: string, env: Record<string, string | undefined>): string {
  const lines = script.split('\n');
  const upTo = lines.findIndex((l) => l.startsWith('dir=$(mktemp'));
  expect(upTo).toBeGreaterThan(0);
  const head = lines.filter((l, i) => i <= upTo && (l.startsWith('root=') || l.startsWith('dir=')));
  const r = execaSync('bash', ['-c', [...head, 'rmdir "$dir"; dirname "$dir"'].join('\n')], {
    env,
    extendEnv: true,
    reject: false,
  });
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout.trim();
}

describe('case scripts: run directory and the map-parity host-hole case', () => {
  const file = loadCase(`${CASE}.json`);

  it('the corpus script is what the script writer writes for its case', () => {
    const script = writeScript(file);
    expect(file.script).toBe(script);
    expect(fs.readFileSync(`${CASE}.sh`, 'utf8')).toBe(script);
  });

  it('picks the directory the harness picks, and $QCOW2_FUZZ_TMPDIR when set', () => {
    const mine = fs.mkdtempSync(path.join(os.tmpdir(), 'case-script-dir-'));
    try {
      expect(pickedDir(writeScript(file), { QCOW2_FUZZ_TMPDIR: mine })).toBe(mine);
      // (this process's own choice, $QCOW2_FUZZ_TMPDIR or not, is the harness's)
      expect(pickedDir(writeScript(file), { QCOW2_FUZZ_TMPDIR: process.env.QCOW2_FUZZ_TMPDIR ?? '' })).toBe(
        path.resolve(scratchRoot()),
      );
    } finally {
      fs.rmSync(mine, { recursive: true, force: true });
    }
  });

  it('runs clean against the built engine (the fixed block status)', async () => {
    await requireQemuTools();
    const r = execaSync('bash', [`${CASE}.sh`], { reject: false, all: true, cwd: ROOT });
    expect(r.exitCode, r.all).toBe(0);
    expect(r.all).toContain('no failure reproduced');
  }, 60_000);
});
