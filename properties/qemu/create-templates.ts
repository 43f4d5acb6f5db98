/**
 * Copies of LUKS images that qemu-img created, reused for a later create with the identical
 * command line (same `-o` options, same size).
 *
 * Why: QEMU 7.2 benchmarks PBKDF2 on every LUKS create, whatever `encrypt.iter-time` says
 * (crypto/pbkdf.c qcrypto_pbkdf2_count_iters runs PBKDF2 until one run takes over 500 ms of thread
 * CPU, and block/crypto's LUKS create calls it twice: master-key digest and key slot), so one
 * `qemu-img create` of a LUKS layout costs ~2.5 s of CPU where any other create costs ~20 ms.
 * 7.2 has no create option giving the iteration count instead (LUKS create options: cipher, ivgen,
 * hash, iter-time).
 *
 * What a copy keeps: every byte qemu-img wrote for that command (the qcow2 header, refcounts, L1
 * table, the LUKS header and key material); only the random master key, salts and the
 * load-dependent iteration counts are the same as in the earlier image of the same command, which
 * nothing in the harness compares across images. What it skips: nothing of the image's content;
 * only qemu-img's create code path itself runs once per command instead of once per sequence (the
 * first sequence of each command still runs it, and its output is what later ones get). Host-file
 * sparseness may differ (no oracle reads the host allocation of the image file).
 * Layouts with a backing file are not cached: their create also opens the backing file.
 *
 * When it pays: a campaign draws a fresh layout (options × size) per sequence, so fresh sequences
 * almost never repeat a command (a 60 s qemu-io campaign: 13 LUKS creates, 0 repeats); the gain is
 * in shrinking a failure on a LUKS layout, where every shrink step re-creates the same layout.
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageLayout } from '../layout.ts';

/** At most this many templates (about 2–3 MiB each) per process; the oldest goes first. */
const MAX_TEMPLATES = 32;

let dir: string | undefined;
const templates = new Map<string, string>();
let next = 0;

/** Whether a create of this layout goes through the template cache. */
export function usesTemplate(layout: ImageLayout): boolean {
  return layout.encrypt === 'luks' && layout.backing === undefined;
}

/** The cache key: the whole create command line except the output path. */
export function templateKey(args: readonly string[], path: string): string {
  return args.filter((a) => a !== path).join('\0');
}

/** Copy the template for `key` to `path`: false when there is none yet. */
export async function copyTemplate(key: string, path: string): Promise<boolean> {
  const t = templates.get(key);
  if (t === undefined) return false;
  await copyFile(t, path);
  // most recently used last: the eviction below drops the least recently used
  templates.delete(key);
  templates.set(key, t);
  return true;
}

/** Keep a copy of the image qemu-img just created at `path` as the template for `key`. */
export async function saveTemplate(key: string, path: string): Promise<void> {
  if (dir === undefined) {
    dir = await mkdtemp(join(tmpdir(), 'qcow2-create-templates-'));
    const d = dir;
    process.once('exit', () => rmSync(d, { recursive: true, force: true }));
  }
  const file = join(dir, `t${next++}.qcow2`);
  await copyFile(path, file);
  templates.set(key, file);
  while (templates.size > MAX_TEMPLATES) {
    const [oldKey, oldFile] = templates.entries().next().value as [string, string];
    templates.delete(oldKey);
    await rm(oldFile, { force: true });
  }
}
