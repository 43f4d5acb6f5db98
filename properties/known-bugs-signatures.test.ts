/**
 * Each known bug's signature is as narrow as the bug (issue 8 item 3: known bugs are data, not
 * blind spots): its corpus case is still labelled, and a near miss — a failure of another kind,
 * or the same failure without the steps or the place the bug needs — is not, so it is reported
 * as new. Pure matching: the failures are the corpus cases' records, edited.
 */
import { describe, expect, it } from 'vitest';
import { allKnownBugs, matchKnownBug, exposedByUnalignedShrink } from './known-bugs/index.ts';
import { loadCase, type CaseFile } from './cases/case-file.ts';
import type { DivergenceDetails } from './runner/divergence.ts';

function corpus(id: string): { file: CaseFile; label: (f?: Partial<CaseFile>) => string | undefined } {
  const bug = allKnownBugs().find((b) => b.id === id)!;
  const file = loadCase(new URL(`../${bug.corpusCase}`, import.meta.url).pathname);
  const label = (f: Partial<CaseFile> = {}): string | undefined => {
    const c = { ...file, ...f };
    return matchKnownBug(c.failure, c.steps, c.impl, c.image.layout)?.id;
  };
  return { file, label };
}

const withFailure = (file: CaseFile, d: Partial<DivergenceDetails>): Partial<CaseFile> => ({
  failure: { ...file.failure, ...d },
});
const withLayout = (file: CaseFile, l: Partial<CaseFile['image']['layout']>): Partial<CaseFile> => ({
  image: { ...file.image, layout: { ...file.image.layout, ...l } },
});

describe('known-bug signatures are as narrow as the bugs', () => {
  it('stale tail after shrink+grow: only old data, only in the kept cluster past an unaligned cut, grown again', () => {
    const id = 'qemu-7.2-stale-tail-after-shrink-grow';
    const { file, label } = corpus(id);
    // write -P 0x11 0 16384; truncate 9728; truncate 20480: 4 KiB clusters, [9728, 12288) exposed
    expect(label()).toBe(id);
    expect(label(withFailure(file, { offset: 12287 }))).toBe(id);
    // the same read, another kind of wrong: misplaced, lost or never-written data is not this bug
    for (const category of ['misplaced', 'lost', 'never-written'])
      expect(label(withFailure(file, { category })), category).toBeUndefined();
    // outside the kept cluster's tail: before the cut, or in the next cluster (QEMU reads zeros there)
    expect(label(withFailure(file, { offset: 9216 }))).toBeUndefined();
    expect(label(withFailure(file, { offset: 12288 }))).toBeUndefined();
    // no offset recorded, or no layout to know the cluster: not matched (reported as new)
    expect(label(withFailure(file, { offset: undefined }))).toBeUndefined();
    expect(matchKnownBug(file.failure, file.steps, 'qemu-io')).toBeUndefined();
    // 64 KiB clusters: [9728, 65536) is the kept tail, 12288 is in it
    expect(label({ ...withLayout(file, { clusterBits: 16 }), ...withFailure(file, { offset: 12288 }) })).toBe(
      id,
    );
    // a cluster-aligned shrink (what the steering generates) exposes nothing
    const aligned = file.steps.map((s) => (s === 'truncate 9728' ? 'truncate 8192' : s));
    expect(label({ steps: aligned })).toBeUndefined();
    // not grown again before the read, or the cluster freed by a deeper shrink before the grow
    expect(label({ steps: file.steps.filter((s) => s !== 'truncate 20480') })).toBeUndefined();
    const deeper = file.steps.flatMap((s) => (s === 'truncate 9728' ? [s, 'truncate 4096'] : [s]));
    expect(label({ steps: deeper, failure: { ...file.failure, stepIndex: 5 } })).toBeUndefined();
    // the final convert oracle (no byte classes) needs the place alone
    const convert = { kind: 'convert-mismatch' as const, category: undefined, step: 'end of sequence' };
    expect(label(withFailure(file, { ...convert, offset: 9728 }))).toBe(id);
    expect(label(withFailure(file, { ...convert, offset: 16384 }))).toBeUndefined();
  });

  it('stale tail: the failure `qcow2 fuzz --impl qemu-io --known-bugs none --seconds 120 --seed 1` found is labelled', () => {
    // its layout (v2, 8 KiB clusters, 48169472 bytes) and the steps the signature looks at
    const steps = [
      'write -s w4.bin 40639237 9467',
      '! truncate 35333632',
      'truncate 40646144',
      'truncate 40651776',
      'read 40645632 6144',
    ];
    const d: DivergenceDetails = {
      kind: 'read-mismatch',
      stepIndex: 4,
      step: 'read 40645632 6144',
      expected: "the model's bytes over 40645632+6144",
      observed:
        "guest 0x26c3505 holds write #4's data, since zeroed or discarded (stale; 261 of the 512 bytes from there differ)",
      category: 'stale',
      offset: 40646144,
    };
    const ctx = { clusterBits: 13, size: 48169472 };
    expect(exposedByUnalignedShrink(d, steps, ctx)).toBe(true);
    expect(matchKnownBug(d, steps, 'qemu-io', ctx)?.id).toBe('qemu-7.2-stale-tail-after-shrink-grow');
    // with 2 MiB clusters the kept tail is [40646144, 41943040): still in it
    expect(exposedByUnalignedShrink(d, steps, { clusterBits: 21, size: 48169472 })).toBe(true);
    // a created size below the cut makes `truncate 40646144` a grow: nothing was kept
    expect(exposedByUnalignedShrink(d, steps, { clusterBits: 13, size: 40000000 })).toBe(false);
  });

  it('amend refcount_bits spins: only when the refcount_bits amend itself does not finish', () => {
    const id = 'qemu-7.2-amend-refcount-bits-spins';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    // an earlier refcount_bits amend, but a compat amend is the one that hangs: another bug
    const steps = ['amend -o refcount_bits=32', 'amend -o compat=0.10'];
    expect(label({ steps, failure: { ...file.failure, stepIndex: 1, step: steps[1] } })).toBeUndefined();
  });

  it('check -r drops the snapshot table: the snapshot must exist before the repair', () => {
    const id = 'qemu-7.2-check-repair-frees-bitmap-clusters';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    const after = ['check -r leaks', 'snapshot -c s1'];
    expect(
      label({ steps: after, failure: { ...file.failure, stepIndex: 0, step: after[0] } }),
    ).toBeUndefined();
  });

  it('compressed write after free: a compressed write, then something that frees or reuses clusters', () => {
    const id = 'qemu-7.2-compressed-write-after-free';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    // never-written bytes in a run whose only compressed write was followed by reads alone
    const steps = ['write -P 0x01 0 512', 'write -c -P 0x02 512 512', 'read 0 1024'];
    const d: Partial<DivergenceDetails> = {
      kind: 'read-mismatch',
      category: 'never-written',
      stepIndex: 2,
      step: steps[2],
    };
    expect(label({ steps, ...withFailure(file, d) })).toBeUndefined();
    // with a discard between, the same failure is this bug's
    const freed = ['write -c -P 0x02 512 512', 'discard 512 512', 'read 0 1024'];
    expect(label({ steps: freed, ...withFailure(file, d) })).toBe(id);
  });

  it('compressed write after free: a zero write with unmap over part of a compressed range (zstd, seed 1, 2026-11-26)', () => {
    // `qcow2 fuzz --impl qemu-io --known-bugs none --seed 1`: 512-byte clusters, zstd; the zeroed
    // cluster at guest 0x139400 read a zstd frame (28 b5 2f fd) from 0x139420: the next compressed
    // write was packed into the host cluster the partial zero write had rewritten that cluster to
    const id = 'qemu-7.2-compressed-write-after-free';
    const { file, label } = corpus(id);
    const steps = [
      'write -c -s w16.bin 1280512 8192',
      'read 1280512 8192',
      'write -z -u 1282373 1157',
      'write -c -s w17.bin 1288704 8192',
      'read 1288704 8192',
      'read 1280512 8192',
    ];
    const d: Partial<DivergenceDetails> = {
      kind: 'read-mismatch',
      category: 'never-written',
      stepIndex: 5,
      step: steps[5],
      offset: 1283104,
    };
    const layout = { ...withLayout(file, { clusterBits: 9, compressionType: 'zstd' }) };
    expect(label({ steps, ...layout, ...withFailure(file, d) })).toBe(id);
    // qemu-img check's view of the same image (measured: `OFLAG_COPIED data cluster:
    // l2_entry=8000000000000c00 refcount=15`) is this bug's too
    const check = { kind: 'qemu-img-check' as const, category: 'corruptions', step: 'end of sequence' };
    const copied = 'ERROR OFLAG_COPIED data cluster: l2_entry=8000000000000c00 refcount=15';
    expect(label({ steps, ...layout, ...withFailure(file, { ...check, observed: copied }) })).toBe(id);
    // near misses: no compressed write, or nothing after the compressed write but reads
    const uncompressed = steps.map((s) => s.replace('write -c ', 'write '));
    expect(label({ steps: uncompressed, ...layout, ...withFailure(file, d) })).toBeUndefined();
    const readsOnly = [steps[0], steps[1], steps[5]];
    expect(
      label({ steps: readsOnly, ...layout, ...withFailure(file, { ...d, stepIndex: 2 }) }),
    ).toBeUndefined();
  });

  it('overlapping aio torn per cluster: only with the write_aio hold it was measured under', () => {
    const id = 'qemu-7.2-overlapping-aio-torn-per-cluster';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    const unheld = file.failure.step.replace(/^break write_aio; /, '');
    expect(unheld).not.toBe(file.failure.step);
    const steps = [...file.steps.slice(0, -1), unheld];
    expect(label({ steps, ...withFailure(file, { step: unheld }) })).toBeUndefined();
  });

  it('rebase v2 loses zeros: only on a version 2 image, rebased onto a file after `rebase -b ""`', () => {
    const id = 'qemu-7.2-rebase-v2-loses-zeros';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    expect(label(withLayout(file, { compat: '1.1' }))).toBeUndefined();
    // amended to v3 before the rebase: v3 has the zero flag
    const amended = ['amend -o compat=1.1', ...file.steps];
    expect(label({ steps: amended, failure: { ...file.failure, stepIndex: 3 } })).toBeUndefined();
    // v3 amended to v2: the bug again
    const toV2 = ['amend -o compat=0.10', ...file.steps];
    expect(
      label({
        ...withLayout(file, { compat: '1.1' }),
        steps: toV2,
        failure: { ...file.failure, stepIndex: 3 },
      }),
    ).toBe(id);
  });

  it('refused snapshot leaks: the leaks are exactly the refused creations’ L1 tables', () => {
    const id = 'qemu-7.2-refused-snapshot-leaks-cluster';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    const check = file.failure.check as Record<string, unknown>;
    // one refusal of a 1-cluster L1 table, two leaked clusters: another leak besides
    expect(label(withFailure(file, { check: { ...check, leaks: 2 } }))).toBeUndefined();
    // measured with qemu-img 7.2: 64M, 512-byte clusters, two refusals leak 2 x 32 clusters
    const steps = ['write -P 0x01 0 1024', '! snapshot -c s1', '! snapshot -c s2'];
    const big = { ...withLayout(file, { size: 64 << 20 }), steps };
    const fail = (leaks: number): Partial<CaseFile> => ({
      failure: { ...file.failure, stepIndex: 2, check: { ...check, leaks } },
    });
    expect(label({ ...big, ...fail(64) })).toBe(id);
    expect(label({ ...big, ...fail(65) })).toBeUndefined();
  });

  it('shrink leaks VM state: VM state written, then a shrink (a grow leaks nothing)', () => {
    const id = 'qemu-7.2-shrink-leaks-vm-state';
    const { label } = corpus(id);
    expect(label()).toBe(id);
    const grow = ['write -b -P 0x01 0 65536', 'truncate 2097152'];
    expect(label({ steps: grow })).toBeUndefined();
    const shrinkFirst = ['truncate 512', 'write -b -P 0x01 0 65536'];
    expect(label({ steps: shrinkFirst })).toBeUndefined();
  });
  it('grow over a compressed tail fails: a grow, extended L2, a compressed write over the old last cluster', () => {
    const id = 'qemu-7.2-grow-over-compressed-tail-fails';
    const { file, label } = corpus(id);
    expect(label()).toBe(id);
    expect(label(withLayout(file, { extendedL2: false }))).toBeUndefined();
    // the same error text after an uncompressed write, or with the old size on a cluster boundary
    const plain = ['write -P 0x11 0 138240', 'truncate 237056'];
    expect(label({ steps: plain })).toBeUndefined();
    expect(label(withLayout(file, { size: 131072 }))).toBeUndefined();
    // the compressed write must cover the old last cluster (here [131072, 196608))
    expect(label({ steps: ['write -c -P 0x11 0 65536', 'truncate 237056'] })).toBeUndefined();
    expect(label({ steps: ['write -c -P 0x11 131072 7168', 'truncate 237056'] })).toBe(id);
    // a grow that stays within the explicitly zeroed head (up to the next 2 KiB subcluster) succeeds
    const small = (n: number): Partial<CaseFile> => ({
      steps: ['write -c -P 0x11 0 138240', `truncate ${n}`],
      ...withFailure(file, { step: `truncate ${n}` }),
    });
    expect(label(small(139264))).toBeUndefined();
    expect(label(small(139776))).toBe(id);
    // the old size in the tail cluster's last subcluster: zeroing starts at the next cluster
    expect(label(withLayout(file, { size: 196096 }))).toBeUndefined();
    // a compressed convert leaves the tail cluster compressed too
    expect(
      label({
        steps: ['write -P 0x11 0 138240', 'convert -c', 'truncate 237056'],
        failure: { ...file.failure, stepIndex: 2 },
      }),
    ).toBe(id);
    // a shrink, or another error, is not this bug
    const shrink = ['write -c -P 0x11 0 138240', 'truncate 512'];
    expect(label({ steps: shrink, ...withFailure(file, { step: shrink[1] }) })).toBeUndefined();
    const other = withFailure(file, {
      observed: 'truncate 237056: qemu-io: Failed to zero out the new area',
    });
    expect(label(other)).toBeUndefined();
    // an earlier truncate sets the old size: grown to a cluster boundary first, then grown again
    const aligned = ['write -c -P 0x11 0 138240', 'truncate 196608', 'truncate 237056'];
    expect(
      label({ steps: aligned, failure: { ...file.failure, stepIndex: 2, step: aligned[2] } }),
    ).toBeUndefined();
  });
});
