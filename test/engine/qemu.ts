/**
 * Helpers for the engine's differential tests, on top of test/support/qemu.ts (which refuses to
 * load without QEMU): image creation, qemu-io sessions, `convert -O raw`, `check --output=json`,
 * `info --output=json`, and the in-process checker beside qemu-img's.
 */
import * as fs from 'node:fs';
import { checkImage } from '../../src/check/index.ts';
import { Qcow2Error } from '../../src/errors.ts';
import { FileDevice } from '../../src/io/device.ts';
import { must, run } from '../support/qemu.ts';

export {
  firstDiff,
  must,
  qemuMap,
  run,
  sameBytes,
  tempDir,
  type MapExtent,
  type RunOptions,
  type RunResult,
  type TempDir,
} from '../support/qemu.ts';

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
