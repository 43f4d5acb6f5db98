/**
 * qemu-img, as the harness uses it: create, check, convert, info, snapshot. Every call fails
 * loudly when qemu-img is missing (the cross-checks are never skipped).
 */
import { execa } from 'execa';
import { qemuCreateOptions, type ImageLayout } from '../layout.ts';

export const QEMU_IMG = process.env.QEMU_IMG ?? 'qemu-img';
export const QEMU_IO = process.env.QEMU_IO ?? 'qemu-io';

export interface ToolResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function runTool(file: string, args: readonly string[]): Promise<ToolResult> {
  const r = await execa(file, args, { reject: false, all: false, stripFinalNewline: false });
  if (r.failed && r.exitCode === undefined) {
    throw new Error(`could not run ${file} ${args.join(' ')}: ${r.message}`);
  }
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
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

export async function qemuImgCreate(path: string, layout: ImageLayout): Promise<void> {
  const r = await qemuImg([
    'create',
    '-q',
    '-f',
    'qcow2',
    '-o',
    qemuCreateOptions(layout),
    path,
    String(layout.size),
  ]);
  if (r.exitCode !== 0) throw new Error(`qemu-img create failed (${r.exitCode}): ${r.stderr.trim()}`);
}

export interface CheckReport {
  exitCode: number;
  json: Record<string, unknown> | undefined;
  stderr: string;
}

export async function qemuImgCheck(path: string): Promise<CheckReport> {
  const r = await qemuImg(['check', '--output=json', '-f', 'qcow2', path]);
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode, json, stderr: r.stderr };
}

export interface ImageInfo {
  virtualSize: number;
  snapshotNames: string[];
}

export async function qemuImgInfo(path: string): Promise<ImageInfo> {
  const r = await qemuImg(['info', '--output=json', '-f', 'qcow2', path]);
  if (r.exitCode !== 0) throw new Error(`qemu-img info failed (${r.exitCode}): ${r.stderr.trim()}`);
  const info = JSON.parse(r.stdout) as { 'virtual-size': number; snapshots?: { name: string }[] };
  return { virtualSize: info['virtual-size'], snapshotNames: (info.snapshots ?? []).map((s) => s.name) };
}

/** `qemu-img convert -O raw` of the active disk, or of a snapshot with `snapshot`. */
export async function qemuImgConvertRaw(path: string, out: string, snapshot?: string): Promise<void> {
  const args = ['convert', '-f', 'qcow2', '-O', 'raw'];
  if (snapshot !== undefined) args.push('-l', `snapshot.name=${snapshot}`);
  args.push(path, out);
  const r = await qemuImg(args);
  if (r.exitCode !== 0)
    throw new Error(`qemu-img ${args.join(' ')} failed (${r.exitCode}): ${r.stderr.trim()}`);
}

export type SnapshotOp = 'create' | 'apply' | 'delete';
const SNAPSHOT_FLAG: Record<SnapshotOp, string> = { create: '-c', apply: '-a', delete: '-d' };

export async function qemuImgSnapshot(path: string, op: SnapshotOp, name: string): Promise<ToolResult> {
  return qemuImg(['snapshot', SNAPSHOT_FLAG[op], name, path]);
}
