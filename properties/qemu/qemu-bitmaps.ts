/**
 * QEMU's tools on persistent dirty bitmaps, as the harness uses them: `qemu-img bitmap` on a closed
 * image, `qemu-img info` for the bitmap list, and the real bits read through an NBD export:
 * `qemu-nbd -r -k SOCK -f qcow2 -B NAME IMAGE` publishes the bitmap as the metadata context
 * `qemu:dirty-bitmap:NAME`, and its NBD block status answers which ranges are dirty — the question
 * `qemu-img map --image-opts driver=nbd,…,x-dirty-bitmap=…` asks (case scripts ask it that way);
 * the harness asks it in process for every bitmap at once (nbd-block-status.ts).
 *
 * qemu-nbd is kept on a short leash: one process per read, killed in a `finally` whatever happens,
 * with a timeout on every wait, and never outliving the harness (readAllDirtyBits). Both run through the
 * tool launcher (tool-runner.ts), as every other tool: forking the harness costs 50–100 ms.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { qemuImageArgs, qemuObjectArgs, type ImageLayout } from '../layout.ts';
import { bitmapOptions, type BitmapStep } from '../steps.ts';
import { QEMU_IMG, runTool, type ToolResult } from './qemu-img.ts';
import { startThroughLauncher, type ToolRun } from './tool-runner.ts';
import { makeRunDir } from '../runner/scratch-root.ts';
import { nbdDirtyRanges } from './nbd-block-status.ts';

export const QEMU_NBD = process.env.QEMU_NBD ?? 'qemu-nbd';

type Naming = Pick<ImageLayout, 'encrypt'>;

/** `qemu-img bitmap OPTIONS IMG NAME` (an encrypted image is named with --image-opts). */
export async function qemuImgBitmap(file: string, step: BitmapStep, layout?: Naming): Promise<ToolResult> {
  const naming = layout?.encrypt
    ? [...qemuObjectArgs(layout as ImageLayout), ...qemuImageArgs(layout as ImageLayout, file)]
    : ['-f', 'qcow2', file];
  return runTool(QEMU_IMG, ['bitmap', ...bitmapOptions(step).split(' '), ...naming, step.name]);
}

/** One bitmap as `qemu-img info --output=json` lists it. */
export interface BitmapInfo {
  name: string;
  granularity: number;
  flags: string[];
}

/** The bitmaps a `qemu-img info --output=json` document lists (qcow2's format-specific part). */
export function bitmapsOfInfo(info: unknown): BitmapInfo[] {
  const data = (info as { 'format-specific'?: { data?: { bitmaps?: BitmapInfo[] } } })['format-specific'];
  return data?.data?.bitmaps ?? [];
}

/** A dirty range read back from QEMU. */
export interface DirtyRange {
  offset: number;
  length: number;
}

/** What reading a bitmap's bits gave: the ranges, or QEMU's refusal (e.g. an inconsistent bitmap). */
export type BitsResult = { ok: true; ranges: DirtyRange[] } | { ok: false; error: string };

const NBD_START_TIMEOUT_MS = 20_000;
/** sockaddr_un's sun_path: 108 bytes with its terminating NUL. */
const UNIX_PATH_MAX = 107;
const MAP_TIMEOUT_MS = 60_000;

/** The bitmap oracle's NBD export could not be read (not a refused bitmap: that is a BitsResult). */
export class NbdError extends Error {
  override name = 'NbdError';
}

/** qemu-nbd's `--pid-file` holds its pid, whole (it writes "PID\n" in one write once ready). */
function pidFileWritten(file: string): boolean {
  try {
    return /^\d+\n$/.test(fs.readFileSync(file, 'utf8'));
  } catch {
    return false; // not there yet
  }
}

/** The dirty ranges of bitmap `name` in the closed image `file`, read by QEMU itself. */
export async function readDirtyBits(file: string, name: string, layout?: Naming): Promise<BitsResult> {
  return (await readAllDirtyBits(file, [name], layout)).get(name)!;
}

/**
 * The dirty ranges of several bitmaps through one qemu-nbd export (`-t`, one `-B` per bitmap, read
 * by one in-process NBD client: nbd-block-status.ts). qemu-nbd refuses to
 * start when any of the bitmaps is unusable: then each is read alone, so that the refusal is
 * reported against the right one. Adjacent ranges are merged.
 *
 * qemu-nbd never ends by itself with `-t`: it is killed in a `finally`, by a timer, by the
 * launcher when the harness goes (stdin closed, SIGINT/SIGTERM/SIGHUP), and by the kernel when the
 * launcher dies any other way (dieWithParent). It stays in the harness's process group, so a
 * Ctrl-C reaches it as well.
 */
export async function readAllDirtyBits(
  file: string,
  names: readonly string[],
  layout?: Naming,
): Promise<Map<string, BitsResult>> {
  const out = new Map<string, BitsResult>();
  if (names.length === 0) return out;
  // The socket in a run directory (runner/scratch-root.ts: /dev/shm when usable, where creating and
  // removing cost nothing next to the discard-mounted disk, and swept once its process is gone,
  // killed or not); in the system's temporary directory when that path is too long for a socket.
  let dir = makeRunDir();
  if (Buffer.byteLength(path.join(dir, 'nbd.sock')) > UNIX_PATH_MAX) {
    fs.rmSync(dir, { recursive: true, force: true });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-nbd-'));
  }
  const sock = path.join(dir, 'nbd.sock');
  const pidFile = path.join(dir, 'nbd.pid');
  const image = layout?.encrypt
    ? [...qemuObjectArgs(layout as ImageLayout), ...qemuImageArgs(layout as ImageLayout, file)]
    : ['-f', 'qcow2', file];
  // (through the tool launcher: forking the harness itself costs in proportion to its memory)
  const nbd = startThroughLauncher(
    QEMU_NBD,
    ['-r', '-t', '-k', sock, '--pid-file', pidFile, ...names.flatMap((n) => ['-B', n]), ...image],
    { mergeStderr: true, dieWithParent: true },
  );
  let ended: ToolRun | undefined;
  let endError: string | undefined;
  const gone = nbd.done.then(
    (r) => {
      ended = r;
    },
    (e: unknown) => {
      endError = e instanceof Error ? e.message : String(e);
    },
  );
  const killTimer = setTimeout(() => nbd.kill(), NBD_START_TIMEOUT_MS + MAP_TIMEOUT_MS);
  const exited = (): boolean => ended !== undefined || endError !== undefined;
  /** qemu-nbd, ended, said why (a refused bitmap): its words, else undefined. */
  const refusalOf = (): string | undefined => {
    if (endError !== undefined) return endError;
    if (!ended || ended.exitCode === null || ended.exitCode === 0) return undefined;
    const text = ended.stdout.trim();
    return text || `qemu-nbd exit ${String(ended.exitCode)}`;
  };
  let refused: string | undefined;
  try {
    // Ready only once qemu-nbd writes its pid file: it does so after its export is added (every
    // -B bitmap accepted) and its listener watched. Its socket file is no such sign: qemu-nbd binds
    // it before it listens (a client in between is refused: "Connection refused", seen under load)
    // and before it opens the image (a refused bitmap then leaves the socket behind, unlistened).
    const started = Date.now();
    for (;;) {
      if (exited()) {
        refused = refusalOf() ?? `qemu-nbd ended before it was ready (exit ${String(ended?.exitCode)})`;
        break;
      }
      if (pidFileWritten(pidFile)) break;
      if (Date.now() - started > NBD_START_TIMEOUT_MS)
        throw new NbdError(`qemu-nbd was not ready within ${NBD_START_TIMEOUT_MS} ms`);
      await new Promise((res) => setTimeout(res, 5));
    }
    if (refused === undefined) {
      // Every bitmap's block status in one NBD connection, in this process (nbd-block-status.ts):
      // the question `qemu-img map … x-dirty-bitmap=…` asks, without a qemu-img per bitmap.
      let timer: NodeJS.Timeout | undefined;
      try {
        const all = await Promise.race([
          nbdDirtyRanges(sock, names),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new NbdError(`no block status within ${MAP_TIMEOUT_MS} ms`)),
              MAP_TIMEOUT_MS,
            );
          }),
        ]);
        for (const [name, ranges] of all) out.set(name, { ok: true, ranges });
      } catch (e) {
        if (e instanceof NbdError) throw e;
        // (qemu-nbd was ready: its bitmaps were accepted; a failure now is a failure)
        const server = exited() ? `; qemu-nbd had ended: ${refusalOf() ?? String(ended?.signal)}` : '';
        throw new NbdError(
          `block status over NBD failed: ${e instanceof Error ? e.message : String(e)}${server}`,
        );
      } finally {
        clearTimeout(timer);
      }
    }
  } finally {
    clearTimeout(killTimer);
    nbd.kill();
    await gone;
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (refused === undefined) return out;
  if (names.length === 1) return new Map([[names[0], { ok: false, error: refused }]]);
  // which one: each alone
  for (const name of names) out.set(name, (await readAllDirtyBits(file, [name], layout)).get(name)!);
  return out;
}
