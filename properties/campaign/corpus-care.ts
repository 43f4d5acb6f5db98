/**
 * `qcow2 fuzz corpus --minimize [DIR] [--dry-run]`: keep the smallest case per failure signature in
 * a corpus directory (default corpus/), removing the others (their .json and .sh). Smallest: fewest
 * steps, then the shortest steps text, then the name. QEMU defects and engine regressions never
 * stand in for each other (the signature's subject differs, and `qemuDefect` is part of the group).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { loadCase, type CaseFile } from '../cases/case-file.ts';
import { signatureKey, signatureOf } from '../runner/signature.ts';

export interface MinimizePlan {
  keep: { file: string; key: string }[];
  remove: { file: string; key: string; keptInstead: string }[];
}

function size(c: CaseFile): [number, number] {
  return [c.steps.length, c.steps.join('\n').length];
}

export function planMinimize(dir: string): MinimizePlan {
  const groups = new Map<string, { file: string; c: CaseFile }[]>();
  for (const name of fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const file = path.join(dir, name);
    const c = loadCase(file);
    const key = `${signatureKey(signatureOf(c.failure, c.impl))}${c.qemuDefect ? ' (qemu defect)' : ''}`;
    groups.set(key, [...(groups.get(key) ?? []), { file, c }]);
  }
  const plan: MinimizePlan = { keep: [], remove: [] };
  for (const [key, list] of groups) {
    list.sort((a, b) => {
      const [sa, ta] = size(a.c);
      const [sb, tb] = size(b.c);
      return sa - sb || ta - tb || a.file.localeCompare(b.file);
    });
    plan.keep.push({ file: list[0].file, key });
    for (const other of list.slice(1)) plan.remove.push({ file: other.file, key, keptInstead: list[0].file });
  }
  return plan;
}

const USAGE = 'usage: qcow2 fuzz corpus --minimize [DIR] [--dry-run]';

export async function runCorpusCli(argv: string[]): Promise<number> {
  let dir: string;
  let dryRun: boolean;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        minimize: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (!values.minimize) throw new Error('say what to do: --minimize');
    if (positionals.length > 1) throw new Error('one directory at most');
    dir = positionals[0] ?? 'corpus';
    dryRun = values['dry-run'] === true;
  } catch (e) {
    process.stderr.write(`qcow2 fuzz corpus: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  let plan: MinimizePlan;
  try {
    plan = planMinimize(dir);
  } catch (e) {
    process.stderr.write(`qcow2 fuzz corpus: ${(e as Error).message}\n`);
    return 2;
  }
  const lines = [`${dir}: ${plan.keep.length + plan.remove.length} cases, ${plan.keep.length} signatures`];
  for (const r of plan.remove) {
    lines.push(
      `${dryRun ? 'would remove' : 'removed'} ${r.file} (same signature as ${r.keptInstead}: ${r.key})`,
    );
    if (!dryRun) {
      fs.rmSync(r.file);
      fs.rmSync(r.file.replace(/\.json$/, '.sh'), { force: true });
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
