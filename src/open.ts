/**
 * Opening a disk of either format by name, probing when the format is not given: the entry point
 * of the CLI and the harness. Sits above the image facade (the facade never imports it); the
 * backing-chain rules live in engine/backing.ts.
 */
import type { GuestDisk } from './api.ts';
import { openChainMember, probeFormat, registerTreeOpener, type ChainOpenOptions } from './engine/backing.ts';
import { openTree, parseJsonOptions, type TreeOpenOptions } from './block-tree.ts';
import { Qcow2Image } from './image.ts';

export { probeFormat };
/** The chain's options, and the secret objects a node tree's `encrypt.key-secret` options name. */
export type OpenImageOptions = ChainOpenOptions & Pick<TreeOpenOptions, 'secrets'>;

export function openImage(file: string, opts: OpenImageOptions = {}): GuestDisk {
  // blkdebug:CONFIG:FILE and json:{...} name a tree of block nodes (block-tree.ts).
  if (file.startsWith('blkdebug:')) return openTree(new Map([['filename', file]]), { ...opts, name: file });
  if (file.startsWith('json:')) return openTree(parseJsonOptions(file), { ...opts, name: file });
  const { secrets: _secrets, ...chain } = opts;
  return openChainMember(file, chain, (dev, o) => Qcow2Image.openDevice(dev, o));
}

// Backing files named `json:{...}` / `blkdebug:...` open as node trees too.
registerTreeOpener((name, opts) => openImage(name, opts));
