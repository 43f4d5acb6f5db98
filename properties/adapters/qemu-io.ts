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
  // LUKS a third as often as by default (1/12 of the layouts that may be encrypted, was 1/4; AES
  // keeps its 1/4): QEMU 7.2's qemu-img create of a LUKS image runs a PBKDF2 benchmark of ≥ 2 ×
  // 500 ms CPU whatever iter-time says (create-templates.ts), measured 2.3–2.4 CPU-s, while a
  // whole plain sequence with its oracles costs ~0.35 CPU-s; a 60 s campaign still meets several.
  encryptionWeights: { none: 8, aes: 3, luks: 1 },
  // QEMU 7.2's shrink walks every dropped cluster, allocated or not, at a cost growing faster than
  // their number: `truncate 512M` of a 1 GiB image took 74 s wall (10.5 CPU-s) with 512-byte
  // clusters (1 Mi clusters dropped), 0.87 s (0.1 CPU-s) with 4 KiB (128 Ki), 0.03 s with 64 KiB
  slowShrinkClusters: 1 << 18,
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
