/**
 * `qcow2 crashtest --report DIR/r.json` writes its report even when DIR does not exist yet: a
 * campaign without failures never creates `--out`, and the report used to fail with ENOENT (an
 * internal error, exit 1, after a clean 300 s campaign: crashtest --seed 31337 and --seed 2024).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCrashtestCli } from './cli.ts';

describe('crashtest --report', () => {
  it('makes the report directory (crash states and --faults)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crash-report-'));
    try {
      const out = path.join(dir, 'out');
      const crash = path.join(dir, 'a', 'b', 'crash.json');
      const faults = path.join(dir, 'c', 'faults.json');
      const code = await runCrashtestCli([
        '--runs',
        '1',
        '--seed',
        '5',
        '--max-steps',
        '3',
        '--out',
        out,
        '--report',
        crash,
      ]);
      expect(fs.existsSync(crash), `exit ${code}`).toBe(true);
      expect(Object.keys(JSON.parse(fs.readFileSync(crash, 'utf8')) as object)).toEqual(['crashtest']);
      await runCrashtestCli(['--faults', '--runs', '1', '--seed', '5', '--report', faults]);
      expect(Object.keys(JSON.parse(fs.readFileSync(faults, 'utf8')) as object)).toEqual(['faults']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
