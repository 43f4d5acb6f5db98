/** qemu-io as an implementation under test: one long-lived process per image. */
import type { Capabilities, ScriptTool } from './adapter.ts';
import { StdinProtocolImplementation } from './stdin-protocol.ts';
import { QEMU_IO } from '../qemu/qemu-img.ts';

export const QEMU_CAPABILITIES: Capabilities = {
  compat: ['0.10', '1.1'],
  clusterBits: { min: 9, max: 21 },
  refcountBits: [1, 2, 4, 8, 16, 32, 64],
  extendedL2: true,
  compressionTypes: ['zlib', 'zstd'],
  lazyRefcounts: true,
  backingFile: true,
  encryption: ['aes', 'luks'],
  compressedWrite: true,
  snapshots: true,
  resize: true,
  bitmaps: true,
  involvesQemu: true,
  revertRaisesRefcountsFirst: true,
  v2GrowOverLongerBackingRefused: true,
  vmState: true,
  amend: true,
  aioWrite: true,
  rebaseCommit: true,
};

export const QEMU_SCRIPT_TOOL: ScriptTool = { io: 'qemu-io -f qcow2', snapshot: 'qemu-img snapshot' };

export function qemuIoImplementation(): StdinProtocolImplementation {
  return new StdinProtocolImplementation({
    name: 'qemu-io',
    argv: [QEMU_IO],
    capabilities: QEMU_CAPABILITIES,
    scriptTool: QEMU_SCRIPT_TOOL,
  });
}
