/**
 * Runs qemu-iotests one `./check -qcow2 <test>` at a time per slot, `jobs` slots in parallel, with
 * either the real tools ("qemu") or ours ("ours": bin/qcow2.js under QEMU's names), and classifies
 * each failure by the first line its output differs from QEMU's reference output.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export type Side = 'qemu' | 'ours';
export type Status = 'pass' | 'fail' | 'not run';
export type Category = 'missing command/option' | 'message text' | 'wrong data' | 'exit code' | 'timeout';

export interface TestResult {
  test: string;
  status: Status;
  seconds: number;
  /** for failures: the first differing lines of the .out diff (or check's description) */
  reason?: string;
  category?: Category;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const STUBS = path.join(HERE, 'stubs');

/** A directory holding qemu-img and qemu-io as QEMU names them: ours, or the installed ones. */
export function toolsDir(side: Side, workDir: string, bundle?: string): { img: string; io: string } {
  if (side === 'qemu') {
    const which = (n: string): string => {
      for (const d of (process.env.PATH ?? '').split(':')) {
        const f = path.join(d, n);
        if (fs.existsSync(f)) return f;
      }
      throw new Error(`${n} not found on PATH (Debian's qemu-utils; run scripts/setup.sh)`);
    };
    return { img: which('qemu-img'), io: which('qemu-io') };
  }
  const dir = path.join(workDir, 'bin-ours');
  fs.mkdirSync(dir, { recursive: true });
  for (const n of ['qemu-img', 'qemu-io']) {
    const link = path.join(dir, n);
    fs.rmSync(link, { force: true });
    // One binary that behaves as the tool it is called as (src/cli/entry.ts looks at argv[1]).
    fs.symlinkSync(bundle ?? path.join(REPO, 'bin', 'qcow2.js'), link);
  }
  return { img: path.join(dir, 'qemu-img'), io: path.join(dir, 'qemu-io') };
}

/**
 * An esbuild bundle of src/cli/entry.ts (npm packages left external): the same code as
 * bin/qcow2.js without tsx's per-start transpiling, which halves each start's CPU time; the
 * suite starts qemu-img/qemu-io thousands of times.
 */
export async function bundleEntry(workDir: string): Promise<string> {
  const out = path.join(workDir, 'qcow2-bundle.mjs');
  const { build } = await import('esbuild');
  await build({
    entryPoints: [path.join(REPO, 'src', 'cli', 'entry.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    packages: 'external',
    outfile: out,
    banner: { js: '#!/usr/bin/env node' },
    logLevel: 'error',
  });
  // Packages resolve from the repository's node_modules, so the bundle lives where it can see them.
  fs.chmodSync(out, 0o755);
  return out;
}

export interface RunOptions {
  bundle?: string;
  iotestsDir: string;
  side: Side;
  tests: string[];
  jobs: number;
  workDir: string;
  timeoutSeconds: number;
  onResult?: (r: TestResult) => void;
}

export async function runTests(o: RunOptions): Promise<TestResult[]> {
  const tools = toolsDir(o.side, o.workDir, o.bundle);
  const queue = [...o.tests];
  const results: TestResult[] = [];
  const worker = async (): Promise<void> => {
    for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
      const r = await runOne(o, tools, t);
      results.push(r);
      o.onResult?.(r);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.jobs) }, worker));
  const order = new Map(o.tests.map((t, i) => [t, i]));
  return results.sort((a, b) => order.get(a.test)! - order.get(b.test)!);
}

async function runOne(o: RunOptions, tools: { img: string; io: string }, test: string): Promise<TestResult> {
  const testDir = path.join(o.workDir, o.side, test.replace(/\//g, '_'));
  fs.rmSync(testDir, { recursive: true, force: true });
  fs.mkdirSync(testDir, { recursive: true });
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iot-sock-'));
  const t0 = Date.now();
  // check takes named tests (tests/NAME) by their bare name.
  const r = await execa('./check', ['-qcow2', test.replace(/^tests\//, '')], {
    cwd: o.iotestsDir,
    reject: false,
    all: true,
    timeout: o.timeoutSeconds * 1000,
    killSignal: 'SIGKILL',
    env: {
      TEST_DIR: testDir,
      SOCK_DIR: sockDir,
      QEMU_PROG: path.join(STUBS, 'qemu-system'),
      QEMU_IMG_PROG: tools.img,
      QEMU_IO_PROG: tools.io,
      QEMU_NBD_PROG: path.join(STUBS, 'qemu-nbd'),
      QSD_PROG: path.join(STUBS, 'qemu-storage-daemon'),
      // our CLI's own debugging output stays off whatever the caller's environment says
      QCOW2_DEBUG: '0',
    },
  });
  fs.rmSync(sockDir, { recursive: true, force: true });
  const seconds = (Date.now() - t0) / 1000;
  const out = r.all ?? '';
  if (r.timedOut) {
    return {
      test,
      status: 'fail',
      seconds,
      category: 'timeout',
      reason: `no result in ${o.timeoutSeconds} s`,
    };
  }
  const name = test.replace(/^tests\//, '');
  // check redraws its status line with carriage returns: the last state wins.
  const line = out
    .split(/[\r\n]+/)
    .map((l) => l.trim())
    .filter((l) => new RegExp(`^(tests/)?${escape(name)}\\s+(pass|fail|not run)`).test(l))
    .pop();
  const status = (/\s(pass|fail|not run)\b/.exec(line ?? '')?.[1] as Status | undefined) ?? 'fail';
  if (status === 'pass') {
    fs.rmSync(testDir, { recursive: true, force: true });
    return { test, status, seconds };
  }
  if (status === 'not run')
    return { test, status, seconds, reason: line?.replace(/^\S+\s+not run\s*/, '').trim() };
  return { test, status, seconds, ...classify(out, line) };
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The first differing line pair of check's unified diff, and what kind of difference it is.
 * "-" lines are QEMU's reference output, "+" lines ours.
 */
export function classify(
  out: string,
  statusLine: string | undefined,
): { reason: string; category: Category } {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => l.startsWith('@@'));
  let minus: string | undefined;
  let plus: string | undefined;
  if (start >= 0) {
    for (const l of lines.slice(start + 1)) {
      if (l.startsWith('-') && plus === undefined) minus ??= l.slice(1);
      else if (l.startsWith('+')) plus ??= l.slice(1);
      else if (minus !== undefined || plus !== undefined) break;
    }
  }
  const exitStatus = /failed, exit status (\d+)/.exec(statusLine ?? '');
  const reason =
    [minus !== undefined ? `expected: ${minus}` : '', plus !== undefined ? `got: ${plus}` : '']
      .filter(Boolean)
      .join(' | ') || (statusLine ?? 'no result line from check').trim();
  const got = plus ?? '';
  let category: Category;
  if (
    /not found|[Uu]nknown (command|option|protocol|driver)|invalid option|unrecognized option|Unexpected argument|not supported by this engine|is not supported|Unknown file format|Invalid format|Could not open 'json:|Could not open '(file|blkdebug):/.test(
      got,
    )
  )
    category = 'missing command/option';
  else if (minus !== undefined && plus === undefined && exitStatus) category = 'exit code';
  else if (
    /^(qemu-img|qemu-io|IMGFMT|qcow2): |error|Error|failed|Could not|Invalid|invalid|must|cannot|can't/.test(
      minus ?? '',
    ) &&
    /^(qemu-img|qemu-io|IMGFMT|qcow2): |error|Error|failed|Could not|Invalid|invalid|must|cannot|can't/.test(
      got,
    )
  )
    category = 'message text';
  else if (minus === undefined && plus === undefined) category = 'exit code';
  else category = 'wrong data';
  return { reason, category };
}

export const REPO_DIR = REPO;
