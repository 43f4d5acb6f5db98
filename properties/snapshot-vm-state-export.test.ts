/**
 * `qemu-img convert -l snapshot.name=S` exports the image's current virtual size through the
 * snapshot's L1 copy: after the disk grew, past the snapshot's own disk it shows the VM state that
 * copy maps (qcow2_vm_state_offset: the old disk size rounded up to one L1 entry's reach), on QEMU
 * and on the engine alike. The snapshot oracle expects exactly those bytes there, zeros elsewhere
 * (found by `qcow2 fuzz --seed 4242`: the oracle expected zeros and reported the engine).
 */
import { execaSync } from 'execa';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { plainLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';

// 1 KiB clusters: one L1 entry reaches 128 KiB, so the VM state of a 1 MiB disk starts at 1 MiB
const LAYOUT = plainLayout({ clusterBits: 10, size: 1 << 20 });

function fixedCase(impl: 'engine' | 'qemu-io', steps: string[]) {
  return buildCase({
    comment: 'snapshot export past its size shows its VM state',
    impl,
    layout: LAYOUT,
    steps,
    seed: null,
    path: null,
    replayPath: null,
    failure: { kind: 'harness', stepIndex: 0, step: 'none', expected: '', observed: '', message: 'none' },
  });
}

// (the live VM state changes after the snapshot: the export must show the snapshot's copy)
const STEPS = [
  'write -b -P 0x03 4096 8192',
  'snapshot -c s1',
  'write -b -P 0x05 4096 512',
  'truncate 4194304',
  'read 1048576 16384',
];

describe('snapshot export past the snapshot size', () => {
  for (const impl of ['engine', 'qemu-io'] as const) {
    it(`shows the snapshot's VM state, and the oracle expects it (${impl})`, async () => {
      await requireQemuTools();
      const outcome = await replayCase(fixedCase(impl, STEPS));
      expect(outcome.passed, outcome.divergence?.message).toBe(true);
    }, 120_000);
  }

  it('QEMU alone shows the VM state there', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snap-vm-'));
    try {
      const img = path.join(dir, 'disk.qcow2');
      execaSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=1024', img, '1M']);
      execaSync('qemu-io', ['-c', 'write -b -P 0x03 4096 8192', img]);
      execaSync('qemu-img', ['snapshot', '-c', 's1', img]);
      execaSync('qemu-io', ['-c', 'write -b -P 0x05 4096 512', '-c', 'truncate 4194304', img]);
      const raw = path.join(dir, 's1.raw');
      execaSync('qemu-img', ['convert', '-l', 'snapshot.name=s1', '-O', 'raw', img, raw]);
      const bytes = fs.readFileSync(raw);
      expect(bytes.length).toBe(4 << 20);
      expect([bytes[(1 << 20) + 4095], bytes[(1 << 20) + 4096], bytes[(1 << 20) + 12287]]).toEqual([0, 3, 3]);
      expect(bytes[(1 << 20) + 12288]).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
