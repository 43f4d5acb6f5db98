/**
 * `qcow2 check` beside `qemu-img check` on the same damaged image: exit code, stdout and stderr
 * (after the program name and our `[CODE]` suffix are normalised away), in human and JSON output,
 * and for damaged images the `-r leaks` and `-r all` repairs: same report, then the same check verdict and the
 * same guest content afterwards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../../src/cli/main.ts';
import type { Io } from '../../src/cli/common.ts';
import { qemuImg } from '../qemu/qemu-img.ts';
import { applyDamage, type Damage } from './damage.ts';
import type { BaseImage } from './base-images.ts';

export interface CheckRun {
  exit: number;
  stdout: string;
  stderr: string;
}

export async function qemuCheck(file: string, args: readonly string[]): Promise<CheckRun> {
  const r = await qemuImg(['check', ...args, file]);
  return { exit: r.exitCode, stdout: r.stdout, stderr: r.stderr };
}

/** Our checker, in process (the CLI's own code path, without a process start). */
export async function oursCheck(file: string, args: readonly string[]): Promise<CheckRun> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    out: (s: string) => {
      stdout += s;
    },
    err: (s: string) => {
      stderr += s;
    },
  } as Io;
  const exit = await main(['check', ...args, file], io);
  return { exit, stdout, stderr };
}

/** What is compared: the program name, our error codes and the file's directory taken out. */
export function normalise(run: CheckRun, file: string): CheckRun {
  const n = (s: string): string =>
    s
      .split(file)
      .join('IMG')
      .replace(/^(qcow2|qemu-img): /gm, 'PROG: ')
      // QEMU names qemu-img's top node automatically ("#block" and an internal counter).
      .replace(/node '#block\d+'/g, "node '#blockN'")
      .replace(/ \[[A-Z][A-Z0-9_]*(?: [^\]]*)?\]$/gm, '');
  return { exit: run.exit, stdout: n(run.stdout), stderr: n(run.stderr) };
}

export interface Disagreement {
  what: 'exit' | 'stdout' | 'stderr' | 'repair' | 'after-repair';
  mode: string;
  qemu: string;
  ours: string;
}

function firstDifference(a: string, b: string): { qemu: string; ours: string } {
  const la = a.split('\n');
  const lb = b.split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++) {
    if (la[i] !== lb[i]) return { qemu: la[i] ?? '(nothing)', ours: lb[i] ?? '(nothing)' };
  }
  return { qemu: '', ours: '' };
}

function compareRuns(
  mode: string,
  q: CheckRun,
  o: CheckRun,
  out: Disagreement[],
  what?: Disagreement['what'],
): void {
  if (q.exit !== o.exit)
    out.push({ what: what ?? 'exit', mode, qemu: `exit ${q.exit}`, ours: `exit ${o.exit}` });
  if (q.stdout !== o.stdout)
    out.push({ what: what ?? 'stdout', mode, ...firstDifference(q.stdout, o.stdout) });
  if (q.stderr !== o.stderr)
    out.push({ what: what ?? 'stderr', mode, ...firstDifference(q.stderr, o.stderr) });
}

/** The repairs compared on every damaged image qemu-img check finds damage in. */
export const REPAIR_MODES = ['leaks', 'all'] as const;

export interface SideBySide {
  damage: Damage;
  qemuExit: number;
  disagreements: Disagreement[];
  /** Our side threw or returned an internal error: never acceptable. */
  crashed?: string;
}

/** Run both checkers on one damaged image (in `dir`), and both repairs when qemu finds damage. */
export async function sideBySide(
  dir: string,
  base: BaseImage,
  damage: Damage,
  opts: { repair?: boolean } = {},
): Promise<SideBySide> {
  const bytes = applyDamage(base.bytes, damage);
  const file = path.join(dir, `${damage.id}.qcow2`);
  const disagreements: Disagreement[] = [];
  let crashed: string | undefined;
  let qemuExit = -1;
  try {
    for (const args of [[], ['--output=json']]) {
      fs.writeFileSync(file, bytes);
      const q = normalise(await qemuCheck(file, args), file);
      fs.writeFileSync(file, bytes); // qemu-img check may not write, but be sure both see the same bytes
      const o = normalise(await oursCheck(file, args), file);
      if (/internal error/.test(o.stderr)) crashed = o.stderr.trim();
      if (args.length === 0) qemuExit = q.exit;
      compareRuns(args.join(' ') || 'human', q, o, disagreements);
    }
    for (const mode of opts.repair && (qemuExit === 2 || qemuExit === 3) ? REPAIR_MODES : []) {
      const qFile = path.join(dir, `${damage.id}.qemu-repaired.qcow2`);
      const oFile = path.join(dir, `${damage.id}.ours-repaired.qcow2`);
      fs.writeFileSync(qFile, bytes);
      fs.writeFileSync(oFile, bytes);
      const q = normalise(await qemuCheck(qFile, ['-r', mode]), qFile);
      const o = normalise(await oursCheck(oFile, ['-r', mode]), oFile);
      if (/internal error/.test(o.stderr)) crashed = o.stderr.trim();
      compareRuns(`-r ${mode}`, q, o, disagreements, 'repair');
      // After the repair: the same verdict, and (when both open) the same guest content.
      const qa = normalise(await qemuCheck(qFile, ['--output=json']), qFile);
      const oa = normalise(await qemuCheck(oFile, ['--output=json']), oFile);
      compareRuns(`check after -r ${mode}`, qa, oa, disagreements, 'after-repair');
      if (qa.exit === 0 && oa.exit === 0) {
        const cmp = await qemuImg(['compare', '-f', 'qcow2', '-F', 'qcow2', qFile, oFile]);
        // compare exits above 1 when it cannot read a guest range (a compressed cluster that does
        // not inflate): then only identical files are known to hold the same content.
        const same =
          cmp.exitCode === 0 ||
          (cmp.exitCode > 1 && Buffer.compare(fs.readFileSync(qFile), fs.readFileSync(oFile)) === 0);
        if (!same)
          disagreements.push({
            what: 'after-repair',
            mode: `compare after -r ${mode}`,
            qemu: 'same content',
            ours: cmp.stdout.trim(),
          });
      }
      fs.rmSync(qFile, { force: true });
      fs.rmSync(oFile, { force: true });
    }
  } catch (e) {
    crashed = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } finally {
    fs.rmSync(file, { force: true });
  }
  return { damage, qemuExit, disagreements, crashed };
}
