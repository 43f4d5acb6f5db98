/**
 * Layouts whose image names no backing format (runner/backing-format.ts): the harness's edit and
 * the case script's bash edit give the same bytes, after which qemu-img reports no backing format
 * and both implementations read through to the probed backing file.
 */
import { execaSync } from 'execa';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dropBackingFormat, dropBackingFormatScript } from './runner/backing-format.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { Qcow2Image } from '../src/image.ts';

describe('images that name no backing format', () => {
  it('lose the format the same way in process and in a script, and still read the backing file', async () => {
    await requireQemuTools();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'backing-format-'));
    try {
      const base = path.join(dir, 'base.img');
      const a = path.join(dir, 'a.qcow2');
      const b = path.join(dir, 'b.qcow2');
      execaSync('qemu-img', ['create', '-q', '-f', 'raw', base, '300032']);
      execaSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x42 0 300032', base]);
      const opts = 'cluster_size=4096,backing_file=base.img,backing_fmt=raw';
      execaSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts, a, '1M']);
      fs.copyFileSync(a, b);
      const info = (f: string): Record<string, unknown> =>
        JSON.parse(execaSync('qemu-img', ['info', '--output=json', f]).stdout) as Record<string, unknown>;
      expect(info(a)['backing-filename-format']).toBe('raw');
      dropBackingFormat(a);
      execaSync('bash', ['-c', ['img="$1"', ...dropBackingFormatScript('img')].join('\n'), 'x', b]);
      expect(Buffer.compare(fs.readFileSync(a), fs.readFileSync(b))).toBe(0);
      expect(info(a)['backing-filename-format']).toBeUndefined();
      expect(info(a)['backing-filename']).toBe('base.img');
      // read across the base's end (300032, inside cluster 73): the base's bytes, then zeros
      execaSync('qemu-io', [
        '-f',
        'qcow2',
        '-c',
        'read -P 0x42 299008 1024',
        '-c',
        'read -P 0 300032 3072',
        a,
      ]);
      const img = Qcow2Image.open(a, { readOnly: true });
      try {
        const got = img.read(299008, 4096);
        expect(got.subarray(0, 1024).every((x) => x === 0x42)).toBe(true);
        expect(got.subarray(1024).every((x) => x === 0)).toBe(true);
      } finally {
        img.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
