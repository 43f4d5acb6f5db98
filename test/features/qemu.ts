/**
 * Helpers for the feature differential tests (compression, encryption, extended L2, external data
 * files, bitmaps), on top of test/support/qemu.ts (which refuses to load without QEMU): secrets
 * for qemu, `convert -O raw` and `check` with them, data patterns, and the `qcow2` CLI in-process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../../src/cli/main.ts';
import { must, run } from '../support/qemu.ts';

export {
  engineMap,
  must,
  qemuMap,
  run,
  sameBytes,
  tempDir,
  type MapExtent,
  type RunResult,
  type TempDir,
} from '../support/qemu.ts';

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

/** qemu-io on a plain file or (with `password`) through --image-opts with the secret. */
export function qemuIo(file: string, cmds: string[], o: { password?: string; cwd?: string } = {}): string {
  const c = cmds.flatMap((x) => ['-c', x]);
  if (o.password === undefined) return must('qemu-io', ['-f', 'qcow2', ...c, file], { cwd: o.cwd });
  const s = secretArgs(file, o.password);
  return must('qemu-io', [...s.object, '--image-opts', ...c, s.image], { cwd: o.cwd });
}

/** Guest content through `qemu-img convert -O raw`. */
export function qemuRaw(file: string, o: { password?: string; cwd?: string } = {}): Uint8Array {
  const out = path.join(
    path.dirname(path.resolve(o.cwd ?? '.', file)),
    `convert-${process.pid}-${Math.random().toString(36).slice(2)}.raw`,
  );
  try {
    if (o.password === undefined)
      must('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, out], { cwd: o.cwd });
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
