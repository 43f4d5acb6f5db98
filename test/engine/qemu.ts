/**
 * Helpers for the engine's differential tests: temporary directories, qemu-img / qemu-io runners
 * (always with a timeout: QEMU may hang on a looping backing chain), and the outputs the tests
 * compare — `convert -O raw`, `check --output=json`, `map --output=json`.
 *
 * Importing this module checks that qemu-img and qemu-io are installed and throws otherwise: a
 * machine without QEMU makes the suite fail, never skip.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkImage } from '../../src/check/index.ts';
import { Qcow2Error } from '../../src/errors.ts';
import { FileDevice } from '../../src/io/device.ts';

const QEMU_TIMEOUT_MS = 60_000;

function requireTool(tool: 'qemu-img' | 'qemu-io'): void {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8', timeout: QEMU_TIMEOUT_MS });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${String(r.status)}: ${r.stderr}`;
    throw new Error(
      `The engine's differential tests need ${tool} (QEMU 7.2) on PATH, and it could not run: ${why}`,
    );
  }
}
requireTool('qemu-img');
requireTool('qemu-io');

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
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `engine-${prefix}-`));
  return {
    dir,
    file: (name: string) => path.join(dir, name),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** `qemu-img create -f qcow2 [-o opts] [-b backing -F fmt] file size`. */
export function qemuCreate(
  file: string,
  size: number | string,
  o: { opts?: string; backing?: string; backingFormat?: 'qcow2' | 'raw'; cwd?: string } = {},
): void {
  const args = ['create', '-q', '-f', 'qcow2'];
  if (o.opts) args.push('-o', o.opts);
  if (o.backing !== undefined) args.push('-b', o.backing, '-F', o.backingFormat ?? 'qcow2');
  args.push(file, String(size));
  must('qemu-img', args, { cwd: o.cwd });
}

/** One qemu-io session running `cmds` in order (`-c` each); throws if any command fails. */
export function qemuIo(
  file: string,
  cmds: string[],
  o: { format?: 'qcow2' | 'raw'; cwd?: string } = {},
): string {
  if (cmds.length === 0) return '';
  return must('qemu-io', ['-f', o.format ?? 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file], {
    cwd: o.cwd,
  });
}

/** Guest content as `qemu-img convert -O raw` writes it (optionally of an internal snapshot). */
export function qemuRaw(
  file: string,
  o: { snapshot?: string; format?: 'qcow2' | 'raw'; cwd?: string } = {},
): Uint8Array {
  const out = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.raw`;
  const args = ['convert', '-f', o.format ?? 'qcow2'];
  if (o.snapshot !== undefined) args.push('-l', `snapshot.name=${o.snapshot}`);
  args.push('-O', 'raw', file, out);
  try {
    must('qemu-img', args, { cwd: o.cwd });
    return new Uint8Array(fs.readFileSync(out));
  } finally {
    fs.rmSync(out, { force: true });
  }
}

export interface QemuCheck {
  status: number;
  /** Parsed JSON when qemu-img printed it. */
  json: Record<string, unknown> | undefined;
  stderr: string;
}

export function qemuCheck(file: string): QemuCheck {
  const r = run('qemu-img', ['check', '-f', 'qcow2', '--output=json', file]);
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: r.status, json, stderr: r.stderr };
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
  const out = must('qemu-img', ['map', '-f', 'qcow2', '--output=json', file], o);
  const parsed = JSON.parse(out) as Array<Record<string, unknown>>;
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

export interface QemuInfo {
  virtualSize: number;
  snapshots: Array<{ id: string; name: string }>;
  backingFilename?: string;
}

/** `qemu-img info --output=json` (snapshots, virtual size, backing file). */
export function qemuInfo(file: string, o: { cwd?: string } = {}): QemuInfo {
  const j = JSON.parse(must('qemu-img', ['info', '-f', 'qcow2', '--output=json', file], o)) as {
    'virtual-size': number;
    snapshots?: Array<{ id: string; name: string }>;
    'backing-filename'?: string;
  };
  const info: QemuInfo = {
    virtualSize: j['virtual-size'],
    snapshots: (j.snapshots ?? []).map((s) => ({ id: s.id, name: s.name })),
  };
  if (j['backing-filename'] !== undefined) info.backingFilename = j['backing-filename'];
  return info;
}

/** The error a call throws (its `code` when it is a Qcow2Error), or 'no error'. */
export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof Qcow2Error) return e.code;
    return `not a Qcow2Error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  }
  return 'no error';
}

/** qemu-img check and the in-process checker: both exit codes (they must agree). */
export function checkBoth(file: string): {
  qemu: number;
  engine: number;
  qemuJson: Record<string, unknown> | undefined;
} {
  const q = qemuCheck(file);
  const dev = FileDevice.open(file, { readOnly: true });
  try {
    return { qemu: q.status, engine: checkImage(dev, { filename: file }).exitCode, qemuJson: q.json };
  } finally {
    dev.close();
  }
}
