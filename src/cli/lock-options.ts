/**
 * The CLI's image-locking options, as qemu-img and qemu-io take them: -U / --force-share, and in
 * an --image-opts string `force-share=on` and `file.locking=on|off|auto` (io/lock.ts).
 */
import { parseLockingMode, type LockingMode } from '../io/lock.ts';
import { has, parseOptString, UsageError, type Parsed } from './args.ts';

export interface CliLockOptions {
  forceShare?: boolean;
  locking?: LockingMode;
}

/** From the parsed options (-U) and, with --image-opts, the image's option string. */
export function lockOptionsOf(p: Parsed, imageOpts?: string): CliLockOptions {
  const out: CliLockOptions = {};
  if (has(p, 'U')) out.forceShare = true;
  if (imageOpts !== undefined) {
    const o = parseOptString(imageOpts);
    const fs = o.get('force-share');
    if (fs !== undefined) {
      if (fs !== 'on' && fs !== 'off')
        throw new UsageError(`Parameter 'force-share' expects 'on' or 'off'`, false);
      if (fs === 'on') out.forceShare = true;
    }
    const locking = o.get('file.locking') ?? o.get('locking');
    if (locking !== undefined) out.locking = parseLockingMode(locking);
  }
  return out;
}
