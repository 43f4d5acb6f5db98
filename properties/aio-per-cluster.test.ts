/**
 * The per-cluster wording of an aio batch that holds no serial order (model/aio-per-cluster.ts)
 * and the known bug it lets match: QEMU 7.2's overlapping requests torn at a cluster boundary are
 * labelled, a result that is not even per-cluster serial stays new, and `--known-bugs none` turns
 * the label off.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { overlapGroups } from './model/aio-orders.ts';
import { describePerCluster, perClusterSerial } from './model/aio-per-cluster.ts';
import { matchKnownBug, setKnownBugs } from './known-bugs/index.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import type { DivergenceDetails } from './runner/divergence.ts';

const CLUSTER = 65536;
// the campaign's batch (seed 7, 2026-11-26), over an image of zeros from 20480 to 87040
const writes = [
  { offset: 56320, length: 30720, pattern: 0xaa },
  { offset: 20480, length: 65536, pattern: 0xcf },
  { offset: 71680, length: 10566, pattern: 0xf4 },
];
const [group] = overlapGroups(writes);
const before = new Uint8Array(group.length);

function image(runs: [number, number, number][]): Uint8Array {
  const got = before.slice();
  for (const [at, len, p] of runs) got.fill(p, at - group.offset, at - group.offset + len);
  return got;
}

const STEP =
  'break write_aio; aio_write -P 0xaa 56320 30720; aio_write -P 0xcf 20480 65536; aio_write -P 0xf4 71680 10566; aio_flush';
const divergence = (observed: string): DivergenceDetails => ({
  kind: 'read-mismatch',
  category: 'aio-no-serial-order',
  stepIndex: 3,
  step: STEP,
  expected: 'the result of one of 4 serial orders of requests 0, 1, 2 over 20480+66560',
  observed,
});

afterEach(() => setKnownBugs('all'));

describe('aio batches torn per cluster', () => {
  it('name the cluster boundary a request was torn at (the campaign’s bytes)', () => {
    // request 1 over request 0 in cluster 0; request 0 over request 1 in cluster 1
    const got = image([
      [20480, 45056, 0xcf],
      [65536, 6144, 0xaa],
      [71680, 10566, 0xf4],
      [82246, 4794, 0xaa],
    ]);
    const p = perClusterSerial(writes, group, before, got, CLUSTER);
    expect(p?.tornAt).toEqual([0x10000]);
    expect(describePerCluster(p!)).toBe(
      'per cluster a serial order (0x5000: 0,1,2; 0x10000: 1,0,2), torn at cluster boundary 0x10000',
    );
  });

  it('say nothing when a cluster itself holds a mix no serial order gives', () => {
    // request 0 torn inside cluster 0 (at 60416): not a per-cluster composition
    const got = image([
      [20480, 65536, 0xcf],
      [56320, 4096, 0xaa],
      [71680, 10566, 0xf4],
      [86016, 1024, 0xaa],
    ]);
    expect(perClusterSerial(writes, group, before, got, CLUSTER)).toBeUndefined();
  });

  it('a whole serial order is per-cluster serial with no boundary torn', () => {
    const got = image([
      [56320, 30720, 0xaa],
      [20480, 65536, 0xcf],
      [71680, 10566, 0xf4],
    ]);
    expect(perClusterSerial(writes, group, before, got, CLUSTER)?.tornAt).toEqual([]);
  });

  it('the known bug labels the per-cluster wording only, and --known-bugs none turns it off', async () => {
    await requireQemuTools();
    const torn = divergence(
      'the image holds 0xcf ×45056 at 20480 (request 1), 0xaa ×6144 at 65536 (request 0), 0xf4 ×10566 at 71680 (request 2), 0xaa ×4794 at 82246 (request 0); per cluster a serial order (0x5000: 0,1,2; 0x10000: 1,0,2), torn at cluster boundary 0x10000',
    );
    const mixed = divergence(
      'the image holds 0xcf ×35840 at 20480 (request 1), 0xaa ×4096 at 56320 (request 0), 0xcf ×11264 at 60416 (request 1)',
    );
    expect(matchKnownBug(torn, [STEP], 'qemu-io')?.id).toBe('qemu-7.2-overlapping-aio-torn-per-cluster');
    expect(matchKnownBug(mixed, [STEP], 'qemu-io')).toBeUndefined();
    expect(matchKnownBug(torn, [STEP], 'engine')).toBeUndefined();
    setKnownBugs('none');
    expect(matchKnownBug(torn, [STEP], 'qemu-io')).toBeUndefined();
  });
});
