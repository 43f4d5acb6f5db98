/**
 * A saved case replays under the cache mode its campaign ran: the qemu-io sessions of a campaign
 * open the image with `-t unsafe` (adapters/stdin-protocol.ts), so the case records it and its
 * script runs the implementation's steps with `qemu-io -t unsafe` (dirty metadata-cache entries,
 * eviction and write-back as in the campaign), while qemu turns keep qemu-io's default as the
 * campaign runs them. Cases saved before the mode was recorded keep write-through scripts.
 */
import { execaSync } from 'execa';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCase } from './cases/case-file.ts';
import { writeScript } from './cases/script-writer.ts';
import { plainLayout } from './layout.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';

// tiny caches (two L2 tables): writes in four L2 tables' ranges evict dirty tables
const LAYOUT = plainLayout({
  clusterBits: 9,
  cache: { l2CacheSize: 1024, refcountCacheSize: 2048 },
});

const STEPS = [
  'write -s w1.bin 0 1000',
  'write -s w2.bin 40000 700',
  'write -s w3.bin 80000 513',
  "qemu-io -c 'write -P 0x05 100000 3000'",
  'write -s w4.bin 120000 9000',
  'flush',
  'read 0 131072',
];

function caseFor(): ReturnType<typeof buildCase> {
  return buildCase({
    comment: 'cache mode test',
    impl: 'qemu-io',
    layout: LAYOUT,
    steps: STEPS,
    seed: null,
    path: null,
    replayPath: null,
    failure: { kind: 'harness', stepIndex: 0, step: 'none', expected: '', observed: '', message: 'none' },
  });
}

describe('case scripts and the cache mode', () => {
  it('run the steps with -t unsafe as the campaign did, turns with the default, and replay clean', async () => {
    await requireQemuTools();
    const file = caseFor();
    expect(file.cacheMode).toBe('unsafe');
    const lines = file.script.split('\n');
    const session = lines.filter((l) => /^run qemu-io .*w1\.bin/.test(l));
    expect(session.length).toBe(1);
    expect(session[0]).toMatch(/^run qemu-io -t unsafe --image-opts /);
    const turn = lines.filter((l) => l.includes('write -P 0x05 100000 3000') && l.startsWith('run qemu-io'));
    expect(turn.length).toBe(1);
    expect(turn[0]).not.toContain('-t unsafe');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cache-mode-'));
    try {
      const script = path.join(dir, 'case.sh');
      fs.writeFileSync(script, file.script);
      const r = execaSync('bash', [script], { reject: false, all: true });
      expect(r.exitCode, r.all).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keep write-through for a case saved without a cache mode', () => {
    const { cacheMode: _, ...old } = caseFor();
    expect(writeScript(old)).not.toContain('-t unsafe');
  });
});
