/**
 * Helpers for the feature differential tests (compression, encryption, extended L2, external data
 * files, bitmaps): temporary directories, qemu-img / qemu-io runners with a timeout, the outputs
 * compared (`convert -O raw`, `check --output=json`, `map --output=json`), the engine's
 * blockStatus runs in map form, and the `qcow2` CLI run in-process.
 *
 * Importing this module checks that qemu-img and qemu-io run and throws otherwise: a machine
 * without QEMU makes the suite fail, never skip.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Image } from '../../src/api.ts';
import { main } from '../../src/cli/main.ts';

const QEMU_TIMEOUT_MS = 60_000;

for (const tool of ['qemu-img', 'qemu-io'] as const) {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8', timeout: QEMU_TIMEOUT_MS });
  if (r.error || r.status !== 0) {
    throw new Error(`The feature tests need ${tool} (QEMU 7.2) on PATH, and it could not run: ${r.error ? r.error.message : r.stderr}`);
  }
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: 'qemu-img' | 'qemu-io', args: string[], opts: { cwd?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, timeout: QEMU_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function must(cmd: 'qemu-img' | 'qemu-io', args: string[], opts: { cwd?: string } = {}): string {
  const r = run(cmd, args, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * Like `must`, retrying a few times when QEMU fails with "Unable to get accurate CPU usage" (LUKS
 * iteration benchmarking on a busy machine); any other failure throws at once.
 */
export function mustRetryCpu(cmd: 'qemu-img' | 'qemu-io', args: string[], opts: { cwd?: string } = {}): string {
  for (let attempt = 0; ; attempt++) {
    const r = run(cmd, args, opts);
    if (r.status === 0) return r.stdout;
    if (attempt < 8 && r.stderr.includes('Unable to get accurate CPU usage')) continue;
    throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  }
}

export interface TempDir {
  dir: string;
  file(name: string): string;
  cleanup(): void;
}

export function tempDir(prefix: string): TempDir {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `features-${prefix}-`));
  return { dir, file: (n) => path.join(dir, n), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Secret options for qemu: `--object secret,... --image-opts driver=qcow2,...`. */
export function secretArgs(file: string, password: string): { object: string[]; image: string } {
  return {
    object: ['--object', `secret,id=s0,data=${password}`],
    image: `driver=qcow2,file.filename=${file},encrypt.key-secret=s0`,
  };
}

/** qemu-io on a plain file or (with `password`) through --image-opts with the secret. */
export function qemuIo(file: string, cmds: string[], o: { password?: string; cwd?: string } = {}): string {
  const c = cmds.flatMap((x) => ['-c', x]);
  if (o.password === undefined) return must('qemu-io', ['-f', 'qcow2', ...c, file], { cwd: o.cwd });
  const s = secretArgs(file, o.password);
  return must('qemu-io', [...s.object, '--image-opts', ...c, s.image], { cwd: o.cwd });
}

/** Guest content through `qemu-img convert -O raw`. */
export function qemuRaw(file: string, o: { password?: string; cwd?: string } = {}): Uint8Array {
  const out = path.join(path.dirname(path.resolve(o.cwd ?? '.', file)), `convert-${process.pid}-${Math.random().toString(36).slice(2)}.raw`);
  try {
    if (o.password === undefined) must('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, out], { cwd: o.cwd });
    else {
      const s = secretArgs(file, o.password);
      must('qemu-img', ['convert', ...s.object, '--image-opts', s.image, '-O', 'raw', out], { cwd: o.cwd });
    }
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

export function qemuCheck(file: string, o: { password?: string; cwd?: string; repair?: 'leaks' | 'all' } = {}): QemuCheck {
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
  const parsed = JSON.parse(must('qemu-img', ['map', '-f', 'qcow2', '--output=json', file], o)) as Array<Record<string, unknown>>;
  return parsed.map((e) => {
    const x: MapExtent = { start: Number(e.start), length: Number(e.length), depth: Number(e.depth), present: e.present === true, zero: e.zero === true, data: e.data === true };
    if (typeof e.offset === 'number') x.offset = e.offset;
    return x;
  });
}

/** The engine's blockStatus runs, merged as qemu-img map merges adjacent equal extents. */
export function engineMap(img: Image): MapExtent[] {
  const out: MapExtent[] = [];
  let pos = 0;
  while (pos < img.size) {
    const s = img.blockStatus(pos, img.size - pos);
    if (s.length <= 0) throw new Error(`blockStatus(${pos}) returned an empty run`);
    const x: MapExtent = { start: s.offset, length: s.length, depth: s.depth, present: s.present, zero: s.zero, data: s.data };
    if (s.hostOffset !== undefined) x.offset = s.hostOffset;
    const prev = out[out.length - 1];
    const contiguous =
      prev !== undefined &&
      prev.depth === x.depth &&
      prev.present === x.present &&
      prev.zero === x.zero &&
      prev.data === x.data &&
      (prev.offset === undefined ? x.offset === undefined : x.offset === prev.offset + prev.length);
    if (prev && contiguous) prev.length += x.length;
    else out.push(x);
    pos = s.offset + s.length;
  }
  return out;
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

/** A readable comparison: 'equal' or where two buffers first differ. */
export function sameBytes(actual: Uint8Array, expected: Uint8Array): string {
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    if (actual[i] !== expected[i]) return `differ at ${i} (0x${i.toString(16)}): actual ${actual[i]} expected ${expected[i]}`;
  }
  return actual.length === expected.length ? 'equal' : `lengths differ: ${actual.length} vs ${expected.length}`;
}

/** The `qcow2` CLI in-process. */
export async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
