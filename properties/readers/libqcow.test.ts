/**
 * The libqcow reader on images QEMU makes: reads what QEMU wrote, names a refused feature, and
 * reports the first wrong byte. Needs Debian's python3-libqcow (scripts/setup.sh installs it);
 * fails loudly without it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { LibqcowReader, refusedFeature } from './libqcow.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libqcow-test-'));
const reader = new LibqcowReader();
afterAll(async () => {
  await reader.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function image(name: string, options: string, size: number, commands: string[]): Promise<string> {
  const file = path.join(dir, name);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', options, file, String(size)]);
  if (commands.length > 0)
    await execa('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);
  return file;
}

/** A model of the disk: [offset, length, byte] runs over zeros. */
function disk(
  size: number,
  runs: [number, number, number][],
): (offset: number, length: number) => Uint8Array {
  const bytes = new Uint8Array(size);
  for (const [o, l, b] of runs) bytes.fill(b, o, o + l);
  return (offset, length) => bytes.slice(offset, offset + length);
}

describe('libqcow reader', () => {
  it('is installed and says its version', async () => {
    expect(await reader.version()).toMatch(/^\d{8}$/);
  });

  it('reads plain and compressed clusters of a QEMU image, across several chunks', async () => {
    const size = 9 << 20;
    const file = await image('plain.qcow2', 'cluster_size=4096', size, [
      'write -P 0x5a 4096 8192',
      'write -c -P 0x33 8388608 4096',
    ]);
    const outcome = await reader.read({
      image: file,
      parents: [],
      size,
      expected: disk(size, [
        [4096, 8192, 0x5a],
        [8388608, 4096, 0x33],
      ]),
    });
    expect(outcome).toEqual({ status: 'ok' });
  });

  it('reports the first wrong byte with what was expected and observed', async () => {
    const size = 1 << 20;
    const file = await image('wrong.qcow2', 'cluster_size=65536', size, ['write -P 0x5a 0 65536']);
    const outcome = await reader.read({
      image: file,
      parents: [],
      size,
      expected: disk(size, [
        [0, 65536, 0x5a],
        [70000, 3, 0x01],
      ]),
    });
    expect(outcome).toMatchObject({ status: 'mismatch', offset: 70000, category: 'zeros-where-data' });
    if (outcome.status === 'mismatch') {
      expect(outcome.expected.startsWith('01 01 01 00')).toBe(true);
      expect(outcome.observed.startsWith('00 00 00 00')).toBe(true);
    }
  });

  it('records a clean refusal as an unsupported feature (extended L2)', async () => {
    const file = await image('ext.qcow2', 'cluster_size=65536,extended_l2=on', 1 << 20, []);
    const outcome = await reader.read({
      image: file,
      parents: [],
      size: 1 << 20,
      expected: disk(1 << 20, []),
    });
    expect(outcome).toMatchObject({ status: 'refused', feature: 'extended L2 entries' });
  });

  it('names refused incompatible bits, leaving out the dirty bit it supports', () => {
    expect(
      refusedFeature('libqcow_file_header_read_data: unsupported incompatible features flags: 0x00000011.'),
    ).toBe('extended L2 entries');
    expect(refusedFeature('unsupported incompatible features flags: 0x00000008.')).toBe(
      'compression type (zstd)',
    );
    expect(refusedFeature('unable to read cluster block.')).toBeUndefined();
  });

  it('reads through a qcow2 backing file', async () => {
    const base = await image('base.qcow2', 'cluster_size=65536', 1 << 20, ['write -P 0x11 0 1M']);
    const top = path.join(dir, 'top.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top, '1M']);
    const outcome = await reader.read({
      image: top,
      parents: [base],
      size: 1 << 20,
      expected: disk(1 << 20, [[0, 1 << 20, 0x11]]),
    });
    expect(outcome).toEqual({ status: 'ok' });
  });
});
