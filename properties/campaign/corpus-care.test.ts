import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCase, saveCase } from '../cases/case-file.ts';
import { plainLayout } from '../layout.ts';
import { runCorpusCli } from './corpus-care.ts';

const layout = plainLayout();

function save(dir: string, steps: string[], pattern: number): string {
  const file = buildCase({
    comment: 'test',
    impl: 'engine',
    layout,
    steps,
    seed: 1,
    path: '0',
    replayPath: null,
    failure: {
      kind: 'read-mismatch',
      stepIndex: steps.length - 1,
      step: steps[steps.length - 1],
      expected: `0x${pattern.toString(16)}`,
      observed: '00',
      message: 'read-mismatch',
    },
  });
  return saveCase(dir, file);
}

describe('corpus --minimize', () => {
  it('keeps the smallest case per signature', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-corpus-'));
    const big = save(dir, ['write -P 0x01 0 512', 'flush', 'read -P 0x01 0 512'], 1);
    await new Promise((r) => setTimeout(r, 5)); // distinct file names
    const small = save(dir, ['write -P 0x02 0 512', 'read -P 0x02 0 512'], 2);
    await new Promise((r) => setTimeout(r, 5));
    const other = save(dir, ['discard 0 512', 'write -P 0x03 0 512', 'flush', 'snapshot -c s1'], 3);
    expect(await runCorpusCli(['--minimize', '--dry-run', dir])).toBe(0);
    expect(fs.existsSync(big)).toBe(true);
    expect(await runCorpusCli(['--minimize', dir])).toBe(0);
    expect(fs.existsSync(big)).toBe(false);
    expect(fs.existsSync(big.replace(/json$/, 'sh'))).toBe(false);
    expect(fs.existsSync(small)).toBe(true);
    expect(fs.existsSync(other)).toBe(true); // another signature (snapshot-create)
    expect(await runCorpusCli([dir])).toBe(2);
  });
});
