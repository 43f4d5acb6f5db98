/**
 * What every differential suite needs: QEMU's tools (importing this module throws when qemu-img
 * or qemu-io cannot run — a machine without QEMU fails the suite, never skips it), runners with a
 * timeout (QEMU may hang, e.g. on a looping backing chain), temporary directories, `qemu-img map`
 * parsed, the engine's map through the same merge `qcow2 map` uses, and byte comparisons.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { GuestDisk } from '../../src/api.ts';
import { mapExtents } from '../../src/cli/map.ts';

const QEMU_TIMEOUT_MS = 60_000;

for (const tool of ['qemu-img', 'qemu-io'] as const) {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8', timeout: QEMU_TIMEOUT_MS });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${String(r.status)}: ${r.stderr}`;
    throw new Error(`These differential tests need ${tool} (QEMU 7.2) on PATH, and it could not run: ${why}`);
  }
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  cwd?: string;
  timeoutMs?: number;
}

/** Run a QEMU tool; never throws on a non-zero exit (the caller decides). */
export function run(cmd: 'qemu-img' | 'qemu-io', args: string[], opts: RunOptions = {}): RunResult {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? QEMU_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
  });
  const timedOut = r.error !== undefined && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
  if (r.error && !timedOut) throw new Error(`${cmd} could not run: ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '', timedOut };
}

/** Run a QEMU tool and throw unless it exits 0. */
export function must(cmd: 'qemu-img' | 'qemu-io', args: string[], opts: RunOptions = {}): string {
  const r = run(cmd, args, opts);
  if (r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (exit ${r.status}${r.timedOut ? ', timed out' : ''}):\n${r.stderr}${r.stdout}`,
    );
  }
  return r.stdout;
}

export interface TempDir {
  dir: string;
  file(name: string): string;
  cleanup(): void;
}

export function tempDir(prefix: string): TempDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  return {
    dir,
    file: (name: string) => path.join(dir, name),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** One extent as `qemu-img map --output=json` prints it. */
export interface MapExtent {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

export function qemuMap(file: string, o: { cwd?: string } = {}): MapExtent[] {
  const parsed = JSON.parse(must('qemu-img', ['map', '-f', 'qcow2', '--output=json', file], o)) as Array<
    Record<string, unknown>
  >;
  return parsed.map((e) => {
    const x: MapExtent = {
      start: Number(e.start),
      length: Number(e.length),
      depth: Number(e.depth),
      present: e.present === true,
      zero: e.zero === true,
      data: e.data === true,
    };
    if (typeof e.offset === 'number') x.offset = e.offset;
    return x;
  });
}

/** The engine's map: its blockStatus runs merged by the code behind `qcow2 map`. */
export function engineMap(disk: GuestDisk): MapExtent[] {
  return mapExtents(disk).map((e) => {
    const x: MapExtent = {
      start: e.start,
      length: e.length,
      depth: e.depth,
      present: e.present,
      zero: e.zero,
      data: e.data,
    };
    if (e.offset !== undefined) x.offset = e.offset;
    return x;
  });
}

/** First differing byte of two buffers, or -1 when equal (for readable failures). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Assert-friendly summary: equal buffers give 'equal', else where and how they differ. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): string {
  const d = firstDiff(actual, expected);
  if (d < 0) return 'equal';
  return `differ at ${d} (0x${d.toString(16)}): actual ${actual[d] ?? 'EOF'} expected ${expected[d] ?? 'EOF'} (lengths ${actual.length}/${expected.length})`;
}
