/**
 * External data files (`-o data_file=NAME[,data_file_raw=on]`), both directions. QEMU 7.2 opens a
 * relative data file name from the current directory, the engine from the image's directory: qemu
 * runs here with cwd = the image's directory, so both find the same file.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import {
  cli,
  must,
  pattern,
  qemuCheck,
  qemuIo,
  qemuMap,
  qemuRaw,
  sameBytes,
  tempDir,
  type TempDir,
} from '../support/qemu.ts';

const SIZE = 2 << 20;

interface InfoJson {
  'format-specific': { type: string; data: Record<string, unknown> };
}

for (const raw of [false, true]) {
  describe(`external data file${raw ? ' (data_file_raw=on)' : ''}`, () => {
    let t: TempDir;
    beforeAll(() => {
      t = tempDir(`datafile-${raw ? 'raw' : 'plain'}`);
    });
    afterAll(() => t.cleanup());
    const opts = (name: string): string => `data_file=${name}${raw ? ',data_file_raw=on' : ''}`;

    it('qemu-created: engine reads qemu data, qemu reads engine data, check clean', () => {
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts('q.data'), 'q.qcow2', String(SIZE)], {
        cwd: t.dir,
      });
      qemuIo('q.qcow2', ['write -P 0x51 0 100k', 'write -P 0x52 1m 4k'], { cwd: t.dir });
      const d = pattern(70_000, 3);
      const img = Qcow2Image.open(t.file('q.qcow2'), { sync: false });
      try {
        const exp = new Uint8Array(SIZE);
        exp.fill(0x51, 0, 100 * 1024);
        exp.fill(0x52, 1 << 20, (1 << 20) + 4096);
        expect(sameBytes(img.read(0, SIZE), exp)).toBe('equal');
        img.write(300_000, d);
      } finally {
        img.close();
      }
      const exp = new Uint8Array(SIZE);
      exp.fill(0x51, 0, 100 * 1024);
      exp.fill(0x52, 1 << 20, (1 << 20) + 4096);
      exp.set(d, 300_000);
      expect(sameBytes(qemuRaw('q.qcow2', { cwd: t.dir }), exp)).toBe('equal');
      if (raw)
        expect(sameBytes(new Uint8Array(fs.readFileSync(t.file('q.data'))).subarray(0, SIZE), exp)).toBe(
          'equal',
        );
      const c = qemuCheck('q.qcow2', { cwd: t.dir });
      expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
      // No guest data in the qcow2 file itself: every data extent maps into the data file.
      for (const e of qemuMap('q.qcow2', { cwd: t.dir })) if (e.data) expect(e.offset).toBe(e.start);
    });

    it('engine-created: qemu reads it (content, check, map), and qemu writes into it', () => {
      const f = t.file('e.qcow2');
      const a = pattern(65536 * 3 + 100, 4);
      const img = Qcow2Image.create(f, { size: SIZE, dataFile: 'e.data', dataFileRaw: raw, sync: false });
      try {
        img.write(4096, a);
        img.writeZeroes(1 << 20, 65536);
      } finally {
        img.close();
      }
      expect(fs.existsSync(t.file('e.data'))).toBe(true);
      const exp = new Uint8Array(SIZE);
      exp.set(a, 4096);
      expect(sameBytes(qemuRaw('e.qcow2', { cwd: t.dir }), exp)).toBe('equal');
      let c = qemuCheck('e.qcow2', { cwd: t.dir });
      expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
      qemuIo('e.qcow2', ['write -P 0x61 1536k 8k'], { cwd: t.dir });
      exp.fill(0x61, 1536 * 1024, 1544 * 1024);
      const r = Qcow2Image.open(f, { readOnly: true });
      try {
        expect(sameBytes(r.read(0, SIZE), exp)).toBe('equal');
      } finally {
        r.close();
      }
      if (raw)
        expect(sameBytes(new Uint8Array(fs.readFileSync(t.file('e.data'))).subarray(0, SIZE), exp)).toBe(
          'equal',
        );
      c = qemuCheck('e.qcow2', { cwd: t.dir });
      expect(c.status).toBe(0);
    });

    it('info shows the data file as qemu-img info does', async () => {
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts('i.data'), 'i.qcow2', String(SIZE)], {
        cwd: t.dir,
      });
      Qcow2Image.create(t.file('j.qcow2'), {
        size: SIZE,
        dataFile: 'j.data',
        dataFileRaw: raw,
        sync: false,
      }).close();
      for (const name of ['i.qcow2', 'j.qcow2']) {
        const theirs = JSON.parse(
          must('qemu-img', ['info', '--output=json', name], { cwd: t.dir }),
        ) as InfoJson;
        const ours = await cli(['info', '--output=json', t.file(name)]);
        expect(ours.code).toBe(0);
        const oj = JSON.parse(ours.out) as InfoJson;
        expect(oj['format-specific']).toEqual(theirs['format-specific']);
        expect(oj['format-specific'].data['data-file']).toBe(name.replace('.qcow2', '.data'));
        expect(oj['format-specific'].data['data-file-raw']).toBe(raw);
      }
    });
  });
}
