/**
 * What every differential suite needs (the one qemu helper module of test/): QEMU's tools
 * (importing this module throws when qemu-img or qemu-io cannot run — a machine without QEMU fails
 * the suite, never skips it), runners with a timeout (QEMU may hang, e.g. on a looping backing
 * chain), temporary directories, image creation, qemu-io sessions, `convert -O raw`, `check`,
 * `info` and `map` parsed (with or without an encryption secret), the engine's map through the
 * same merge `qcow2 map` uses, the in-process checker and CLI, data patterns and byte comparisons.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { GuestDisk } from '../../src/api.ts';
import { mapExtents } from '../../src/cli/map.ts';
import { main } from '../../src/cli/main.ts';
import { checkImage } from '../../src/check/index.ts';
import { Qcow2Error } from '../../src/errors.ts';
import { FileDevice } from '../../src/io/device.ts';

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

/**
 * Like `must`, retrying a few times when QEMU fails with "Unable to get accurate CPU usage" (LUKS
 * iteration benchmarking on a busy machine); any other failure throws at once.
 */
export function mustRetryCpu(
  cmd: 'qemu-img' | 'qemu-io',
  args: string[],
  opts: { cwd?: string } = {},
): string {
  for (let attempt = 0; ; attempt++) {
    const r = run(cmd, args, opts);
    if (r.status === 0) return r.stdout;
    if (attempt < 8 && r.stderr.includes('Unable to get accurate CPU usage')) continue;
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  }
}

/** Secret options for qemu: `--object secret,... --image-opts driver=qcow2,...`. */
export function secretArgs(file: string, password: string): { object: string[]; image: string } {
  return {
    object: ['--object', `secret,id=s0,data=${password}`],
    image: `driver=qcow2,file.filename=${file},encrypt.key-secret=s0`,
  };
}

/**
 * One qemu-io session running `cmds` in order (`-c` each); throws if any command fails. With
 * `password`, the image is opened through --image-opts with the secret.
 */
export function qemuIo(
  file: string,
  cmds: string[],
  o: { format?: 'qcow2' | 'raw'; password?: string; cwd?: string } = {},
): string {
  if (cmds.length === 0) return '';
  const c = cmds.flatMap((x) => ['-c', x]);
  if (o.password === undefined)
    return must('qemu-io', ['-f', o.format ?? 'qcow2', ...c, file], { cwd: o.cwd });
  const s = secretArgs(file, o.password);
  return must('qemu-io', [...s.object, '--image-opts', ...c, s.image], { cwd: o.cwd });
}

/** Guest content as `qemu-img convert -O raw` writes it (optionally of an internal snapshot). */
export function qemuRaw(
  file: string,
  o: { snapshot?: string; format?: 'qcow2' | 'raw'; password?: string; cwd?: string } = {},
): Uint8Array {
  const out = path.join(
    path.dirname(path.resolve(o.cwd ?? '.', file)),
    `convert-${process.pid}-${Math.random().toString(36).slice(2)}.raw`,
  );
  const args = ['convert'];
  if (o.snapshot !== undefined) args.push('-l', `snapshot.name=${o.snapshot}`);
  if (o.password === undefined) args.push('-f', o.format ?? 'qcow2', '-O', 'raw', file, out);
  else {
    const s = secretArgs(file, o.password);
    args.push(...s.object, '--image-opts', s.image, '-O', 'raw', out);
  }
  try {
    must('qemu-img', args, { cwd: o.cwd });
    return new Uint8Array(fs.readFileSync(out));
  } finally {
    fs.rmSync(out, { force: true });
  }
}

export interface QemuCheck {
  status: number;
  json: Record<string, unknown> | undefined;
  stderr: string;
}

export function qemuCheck(
  file: string,
  o: { password?: string; cwd?: string; repair?: 'leaks' | 'all' } = {},
): QemuCheck {
  const args = ['check', '--output=json'];
  if (o.repair) args.push('-r', o.repair);
  if (o.password === undefined) args.push('-f', 'qcow2', file);
  else {
    const s = secretArgs(file, o.password);
    args.push(...s.object, '--image-opts', s.image);
  }
  const r = run('qemu-img', args, { cwd: o.cwd });
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: r.status, json, stderr: r.stderr };
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

/** Deterministic pseudo-random bytes (xorshift32). */
export function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Compressible bytes: runs of a repeating text. */
export function compressible(n: number, seed: number): Uint8Array {
  const text = new TextEncoder().encode(`qcow2 feature test ${seed} `.repeat(8));
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = text[i % text.length]!;
  return b;
}

/** The `qcow2` CLI in-process. */
export async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
