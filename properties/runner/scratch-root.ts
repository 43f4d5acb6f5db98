/**
 * Where a run's directory (image, backing files, converted copies) lives. A run writes its image
 * and removes it within a second; on this project's machines the disk's file system is mounted
 * with online `discard`, where removing a written file cost 40 ms a sequence (measured, half the
 * time of a short sequence), while a memory file system (`/dev/shm`) removes it at once. So runs
 * go to:
 *
 * 1. `$QCOW2_FUZZ_TMPDIR` when set (any directory: a user's choice wins);
 * 2. `/dev/shm` when it is a writable directory with at least 4 GiB free (Linux tmpfs; the run's
 *    files are gone at the end of each sequence, so the memory is lent, not kept);
 * 3. the system's temporary directory otherwise.
 *
 * Directories are named `qcow2-fuzz-<pid>-XXXXXX`: a worker killed at a campaign's deadline cannot
 * remove its own, so each process sweeps, once, the directories of processes that no longer exist.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const PREFIX = 'qcow2-fuzz-';
/** Free space /dev/shm must have to be used (a run holds at most a few hundred MiB). */
const MIN_FREE = 4 * 2 ** 30;

let root: string | undefined;

function usableShm(): boolean {
  const shm = '/dev/shm';
  try {
    if (process.platform !== 'linux' || !fs.statSync(shm).isDirectory()) return false;
    fs.accessSync(shm, fs.constants.W_OK);
    const s = fs.statfsSync(shm);
    return s.bavail * s.bsize >= MIN_FREE;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove run directories left behind by processes that are gone (best effort). */
function sweep(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^qcow2-fuzz-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    try {
      fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    } catch {
      // another process's sweep, or not ours to remove: leave it
    }
  }
}

/** The directory runs are made in (chosen and swept once per process). */
export function scratchRoot(): string {
  if (root === undefined) {
    const fromEnv = process.env.QCOW2_FUZZ_TMPDIR;
    root = fromEnv && fromEnv.length > 0 ? fromEnv : usableShm() ? '/dev/shm' : os.tmpdir();
    sweep(root);
  }
  return root;
}

/** A new, empty run directory. */
export function makeRunDir(): string {
  return fs.mkdtempSync(path.join(scratchRoot(), `${PREFIX}${process.pid}-`));
}
