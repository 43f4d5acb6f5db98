/**
 * qemu-img refusing the image under test is the implementation's failure, reported by the oracle
 * that ran it, never a harness error: `qemu-img convert -O raw` of an image whose compressed cluster
 * does not inflate (the planted "descriptor one sector short" made such images, and its campaign
 * counted them as harness errors) is a convert-mismatch divergence; `qemu-img info` refusing a
 * header is an image-facts one.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QEMU_IO, qemuImgCreate, requireQemuTools, runTool } from './qemu/qemu-img.ts';
import { convertOracle, infoOracle } from './oracles/image-oracles.ts';
import { Divergence } from './runner/divergence.ts';
import { signatureOf } from './runner/signature.ts';
import type { RunContext } from './runner/run-context.ts';
import { plainLayout } from './layout.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oracle-refusal-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const LAYOUT = plainLayout();

/** Just what the image oracles touch before they run qemu-img. */
function contextFor(file: string): RunContext {
  return {
    imagePath: file,
    layout: LAYOUT,
    steps: ['write -c -P 0x55 0 65536'],
    scratch: (name: string) => path.join(dir, name),
    model: { size: LAYOUT.size, snapshots: new Map() },
  } as unknown as RunContext;
}

async function refusal(p: Promise<void>): Promise<Divergence> {
  const e: unknown = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(Divergence);
  return e as Divergence;
}

describe('an image qemu-img refuses is a divergence of the oracle, not a harness error', () => {
  it('convert: a compressed cluster that does not inflate', async () => {
    await requireQemuTools();
    const file = path.join(dir, 'c.qcow2');
    await qemuImgCreate(file, LAYOUT);
    const w = await runTool(QEMU_IO, ['-f', 'qcow2', '-c', 'write -c -P 0x55 0 65536', file]);
    expect(w.exitCode, w.stderr).toBe(0);
    // qcow2.txt: l1_table_offset is the u64 at header offset 40; an L1 entry's bits 9–55 give the
    // L2 table; a compressed L2 entry (bit 62) holds its host offset in bits 0..x-1, x = 62 − (cluster_bits − 8).
    const img = fs.readFileSync(file);
    const l2 = img.readBigUInt64BE(Number(img.readBigUInt64BE(40))) & 0x00fffffffffffe00n;
    const entry = img.readBigUInt64BE(Number(l2));
    expect(entry >> 62n).toBe(1n);
    const host = Number(entry & ((1n << BigInt(62 - (LAYOUT.clusterBits - 8))) - 1n));
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(64, 0xff), 0, 64, host); // not a deflate stream any more
    fs.closeSync(fd);

    const d = await refusal(convertOracle(contextFor(file), 'end of sequence'));
    expect(d.details.kind).toBe('convert-mismatch');
    expect(String(d.details.observed)).toMatch(/^exit 1: /);
    const sig = signatureOf(d, 'engine@test');
    expect(sig.oracle).toBe('convert-mismatch');
    expect(sig.category).toMatch(/^qemu-img failed: /);
  });

  it('info: a header qemu-img cannot open', async () => {
    const file = path.join(dir, 'h.qcow2');
    await qemuImgCreate(file, LAYOUT);
    const fd = fs.openSync(file, 'r+');
    // qcow2.txt: cluster_bits (u32 at offset 20) must be 9–21; 40 is refused.
    const bits = Buffer.alloc(4);
    bits.writeUInt32BE(40);
    fs.writeSync(fd, bits, 0, 4, 20);
    fs.closeSync(fd);
    const d = await refusal(infoOracle(contextFor(file), 'end of sequence'));
    expect(d.details.kind).toBe('image-facts');
    expect(signatureOf(d, 'engine@test').oracle).not.toBe('harness');
  });
});
