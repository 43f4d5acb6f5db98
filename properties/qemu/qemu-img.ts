/**
 * qemu-img, as the harness uses it: create, check, convert, info, snapshot. Every call fails
 * loudly when qemu-img is missing (the cross-checks are never skipped).
 */
import { execa } from 'execa';
import { copyTemplate, saveTemplate, templateKey, usesTemplate } from './create-templates.ts';
import { runThroughLauncher, type ToolRunOptions } from './tool-runner.ts';
import type { InfoJson } from '../oracles/image-facts.ts';
import {
  qemuCreateOptions,
  qemuImageArgs,
  qemuObjectArgs,
  type BackingLayout,
  type ImageLayout,
} from '../layout.ts';

/** Without a layout: a plain qcow2 image (no secret needed). */
const PLAIN = { encrypt: undefined } as const;
type Naming = Pick<ImageLayout, 'encrypt' | 'cache'>;
const image = (file: string, layout: Naming = PLAIN): string[] => [
  ...qemuObjectArgs(layout as ImageLayout),
  ...qemuImageArgs(layout as ImageLayout, file),
];

export const QEMU_IMG = process.env.QEMU_IMG ?? 'qemu-img';
export const QEMU_IO = process.env.QEMU_IO ?? 'qemu-io';

export interface ToolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Run a tool to completion (through the small launcher process, tool-runner.ts). */
export async function runTool(
  file: string,
  args: readonly string[],
  opts: ToolRunOptions = {},
): Promise<ToolResult> {
  let r;
  try {
    r = await runThroughLauncher(file, args, opts);
  } catch (e) {
    throw new Error(`could not run ${file} ${args.join(' ')}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export async function qemuImg(args: readonly string[]): Promise<ToolResult> {
  return runTool(QEMU_IMG, args);
}

/** Fails (throws) when qemu-img or qemu-io cannot be run at all. */
export async function requireQemuTools(): Promise<void> {
  for (const tool of [QEMU_IMG, QEMU_IO]) {
    const r = await runTool(tool, ['--version']);
    if (r.exitCode !== 0) throw new Error(`${tool} --version exited ${r.exitCode}: ${r.stderr}`);
  }
}

/** qemu-img's LUKS key derivation times itself; on a busy machine it sometimes gives up. */
const CPU_TIMING_FLAKE = /Unable to get accurate CPU usage/;

export async function qemuImgCreate(path: string, layout: ImageLayout): Promise<void> {
  const args = [
    'create',
    '-q',
    ...qemuObjectArgs(layout),
    '-f',
    'qcow2',
    '-o',
    qemuCreateOptions(layout),
    path,
    String(layout.size),
  ];
  // LUKS: qemu-img's PBKDF2 benchmark costs seconds per create; reuse its output (create-templates.ts)
  const key = usesTemplate(layout) ? templateKey(args, path) : undefined;
  if (key !== undefined && (await copyTemplate(key, path))) return;
  let r = await qemuImg(args);
  for (let retry = 0; retry < 5 && r.exitCode !== 0 && CPU_TIMING_FLAKE.test(r.stderr); retry++)
    r = await qemuImg(args);
  if (r.exitCode !== 0) throw new Error(`qemu-img create failed (${r.exitCode}): ${r.stderr.trim()}`);
  if (key !== undefined) await saveTemplate(key, path);
}

/** The `qemu-io -c` commands writing a backing file's ranges. */
export function backingWriteCommands(backing: BackingLayout): string[] {
  return backing.writes.map((w) => `write -q -P ${w.pattern} ${w.offset} ${w.length}`);
}

/** Create a backing file with qemu-img and write its ranges with qemu-io. */
export async function qemuCreateBacking(path: string, backing: BackingLayout): Promise<void> {
  const r = await qemuImg(['create', '-q', '-f', backing.format, path, String(backing.size)]);
  if (r.exitCode !== 0)
    throw new Error(`qemu-img create (backing) failed (${r.exitCode}): ${r.stderr.trim()}`);
  const commands = backingWriteCommands(backing);
  if (commands.length === 0) return;
  const w = await runTool(QEMU_IO, ['-f', backing.format, ...commands.flatMap((c) => ['-c', c]), path]);
  if (w.exitCode !== 0 || /failed/.test(w.stdout + w.stderr))
    throw new Error(`qemu-io (backing writes) failed (${w.exitCode}): ${(w.stdout + w.stderr).trim()}`);
}

export interface CheckReport {
  exitCode: number;
  json: Record<string, unknown> | undefined;
  stderr: string;
}

export async function qemuImgCheck(path: string, layout?: Naming): Promise<CheckReport> {
  const r = await qemuImg(['check', '--output=json', ...image(path, layout)]);
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode, json, stderr: r.stderr };
}

/** `qemu-img check -r leaks|all` (human output: what it found and repaired). */
export async function qemuImgRepair(
  path: string,
  mode: 'leaks' | 'all',
  layout?: Naming,
): Promise<ToolResult> {
  return qemuImg(['check', '-r', mode, ...image(path, layout)]);
}

export interface ImageInfo {
  virtualSize: number;
  snapshotNames: string[];
  /** The whole JSON answer (its header facts are checked by oracles/image-facts.ts). */
  json: InfoJson;
}

/**
 * qemu-img ran and refused the image (a non-zero exit, e.g. EIO reading a corrupt compressed
 * cluster): a fact about the image, which the oracles report as their divergence. A tool that could
 * not be started at all still throws a plain Error (runTool): that one is the harness's.
 */
export class QemuImgFailed extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number,
    readonly stderr: string,
  ) {
    super(`qemu-img ${args.join(' ')} failed (${exitCode}): ${stderr.trim()}`);
    this.name = 'QemuImgFailed';
  }
}

/** `qemu-img info --output=json`, parsed as it is (one run serves the info and bitmap oracles). */
export async function qemuImgInfoJson(path: string, layout?: Naming): Promise<unknown> {
  const args = ['info', '--output=json', ...image(path, layout)];
  const r = await qemuImg(args);
  if (r.exitCode !== 0) throw new QemuImgFailed(args, r.exitCode, r.stderr);
  return JSON.parse(r.stdout) as unknown;
}

/** The virtual size, snapshot names and whole answer of an info document (qemuImgInfoJson). */
export function imageInfoOf(json: unknown): ImageInfo {
  const info = json as InfoJson & { 'virtual-size': number; snapshots?: { name: string }[] };
  return {
    virtualSize: info['virtual-size'],
    snapshotNames: (info.snapshots ?? []).map((s) => s.name),
    json: info,
  };
}

export async function qemuImgInfo(path: string, layout?: Naming): Promise<ImageInfo> {
  return imageInfoOf(await qemuImgInfoJson(path, layout));
}

/** `qemu-img convert -O qcow2 -o OPTS [-c] FROM TO` (a round trip into the same layout). */
export async function qemuImgConvertQcow2(
  from: string,
  to: string,
  createOptions: string,
  compressed: boolean,
): Promise<ToolResult> {
  return qemuImg([
    'convert',
    '-f',
    'qcow2',
    '-O',
    'qcow2',
    '-o',
    createOptions,
    ...(compressed ? ['-c'] : []),
    from,
    to,
  ]);
}

/** `qemu-img convert -O raw` of the active disk, or of a snapshot with `snapshot`. */
export async function qemuImgConvertRaw(
  path: string,
  out: string,
  snapshot?: string,
  layout?: Naming,
): Promise<void> {
  const args = ['convert', '-O', 'raw'];
  if (snapshot !== undefined) args.push('-l', `snapshot.name=${snapshot}`);
  args.push(...image(path, layout), out);
  const r = await qemuImg(args);
  if (r.exitCode !== 0) throw new QemuImgFailed(args, r.exitCode, r.stderr);
}

export type SnapshotOp = 'create' | 'apply' | 'delete';
const SNAPSHOT_FLAG: Record<SnapshotOp, string> = { create: '-c', apply: '-a', delete: '-d' };

export async function qemuImgSnapshot(
  path: string,
  op: SnapshotOp,
  name: string,
  layout?: Naming,
): Promise<ToolResult> {
  // (`qemu-img snapshot` takes no -f: a plain image is just its path)
  const naming = layout?.encrypt || layout?.cache ? image(path, layout) : [path];
  return qemuImg(['snapshot', SNAPSHOT_FLAG[op], name, ...naming]);
}

/** How long an amend of a fuzz-sized image may take before it counts as a failure (see below). */
export const AMEND_TIMEOUT_MS = 20_000;

/**
 * `qemu-img amend`, run directly with a time limit: QEMU 7.2's refcount_bits amend can spin for minutes
 * (known bug qemu-7.2-amend-refcount-bits-spins); a run past the limit is killed and
 * reported as a failure whose text says so.
 */
export async function qemuImgAmend(path: string, option: string, layout?: Naming): Promise<ToolResult> {
  const r = await execa(QEMU_IMG, ['amend', '-o', option, ...image(path, layout)], {
    reject: false,
    timeout: AMEND_TIMEOUT_MS,
  });
  if (r.timedOut)
    return {
      exitCode: -1,
      stdout: r.stdout,
      stderr: `qemu-img amend did not finish within ${AMEND_TIMEOUT_MS / 1000} s (killed)`,
    };
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}
