/**
 * Legacy AES and LUKS, both directions: qemu-written data read by the engine with the secret;
 * engine-written images read by qemu-io / qemu-img with `--object secret --image-opts`; a wrong
 * LUKS password (BAD_PASSWORD, file unchanged byte for byte); `qemu-img check` with the secret;
 * `qcow2 info --output=json` equal to qemu-img's for the encrypt block.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../src/errors.ts';
import { Qcow2Image } from '../../src/image.ts';
import {
  cli,
  enc,
  mustRetryCpu,
  pattern,
  qemuCheck,
  qemuIo,
  qemuRaw,
  sameBytes,
  tempDir,
  must,
  type TempDir,
} from '../support/qemu.ts';

const SIZE = 4 << 20;
const PW = 'hunter2';

function qemuCreateEncrypted(file: string, format: 'aes' | 'luks', password: string, extra = ''): void {
  const o = `encrypt.format=${format},encrypt.key-secret=s0${format === 'luks' ? ',encrypt.iter-time=10' : ''}${extra}`;
  mustRetryCpu('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '--object',
    `secret,id=s0,data=${password}`,
    '-o',
    o,
    file,
    String(SIZE),
  ]);
}

function expectedContent(writes: Array<[number, Uint8Array]>): Uint8Array {
  const b = new Uint8Array(SIZE);
  for (const [o, d] of writes) b.set(d, o);
  return b;
}

interface InfoJson {
  'format-specific': { type: string; data: Record<string, unknown> };
  encrypted?: boolean;
}

for (const format of ['aes', 'luks'] as const) {
  describe(`encryption (${format})`, () => {
    let t: TempDir;
    beforeAll(() => {
      t = tempDir(`crypt-${format}`);
    });
    afterAll(() => t.cleanup());

    it('qemu-written data is read by the engine with the secret', () => {
      const f = t.file('q.qcow2');
      qemuCreateEncrypted(f, format, PW);
      qemuIo(f, ['write -P 0x5a 0 64k', 'write -P 0xa5 1000k 3k', 'write -z 128k 64k'], { password: PW });
      const exp = new Uint8Array(SIZE);
      exp.fill(0x5a, 0, 65536);
      exp.fill(0xa5, 1000 * 1024, 1003 * 1024);
      const img = Qcow2Image.open(f, { readOnly: true, secret: enc(PW) });
      try {
        expect(sameBytes(img.read(0, SIZE), exp)).toBe('equal');
      } finally {
        img.close();
      }
      // And the engine writes into qemu's image; qemu reads both.
      const w = Qcow2Image.open(f, { secret: enc(PW), sync: false });
      const d = pattern(70000, 11);
      try {
        w.write(200_000, d);
      } finally {
        w.close();
      }
      exp.set(d, 200_000);
      expect(sameBytes(qemuRaw(f, { password: PW }), exp)).toBe('equal');
      const c = qemuCheck(f, { password: PW });
      expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
    });

    it('engine-written images are read by qemu-io and qemu-img convert; check is clean', () => {
      const f = t.file('e.qcow2');
      const a = pattern(65536 + 512, 21);
      const b = pattern(4096, 22);
      const img = Qcow2Image.create(f, {
        size: SIZE,
        encrypt: { format, secret: enc(PW), iterTimeMs: 10 },
        sync: false,
      });
      try {
        img.write(512, a);
        img.write(SIZE - 4096, b);
        img.writeZeroes(3 << 20, 65536);
      } finally {
        img.close();
      }
      const exp = expectedContent([
        [512, a],
        [SIZE - 4096, b],
      ]);
      expect(sameBytes(qemuRaw(f, { password: PW }), exp)).toBe('equal');
      qemuIo(f, ['read -P 0 0 512', 'read -P 0 1m 64k'], { password: PW });
      const c = qemuCheck(f, { password: PW });
      expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
      // Without the secret qemu-img info still reads the header; a wrong LUKS secret is refused.
      expect(must('qemu-img', ['info', f])).toContain('encrypted: yes');
      if (format === 'luks') {
        const s = [
          '--object',
          'secret,id=s0,data=wrong',
          '--image-opts',
          `driver=qcow2,file.filename=${f},encrypt.key-secret=s0`,
        ];
        expect(() => must('qemu-io', [...s, '-c', 'read 0 512'])).toThrow(/Invalid password/);
      }
    });

    it('qcow2 info --output=json equals qemu-img info on the format-specific data', async () => {
      const q = t.file('info-q.qcow2');
      qemuCreateEncrypted(q, format, PW);
      const e = t.file('info-e.qcow2');
      Qcow2Image.create(e, {
        size: SIZE,
        encrypt: { format, secret: enc(PW), iterTimeMs: 10 },
        sync: false,
      }).close();
      for (const f of [q, e]) {
        const ours = await cli(['info', '--output=json', f]);
        expect(ours.code).toBe(0);
        const theirs = must('qemu-img', ['info', '--output=json', f]);
        const oj = JSON.parse(ours.out) as InfoJson;
        const tj = JSON.parse(theirs) as InfoJson;
        expect(oj['format-specific']).toEqual(tj['format-specific']);
        expect(oj.encrypted).toBe(true);
        // The text itself: the format-specific block prints identically.
        const block = (s: string): string =>
          s.slice(s.indexOf('"format-specific"'), s.indexOf('"dirty-flag"'));
        expect(block(ours.out)).toBe(block(theirs));
        const human = await cli(['info', f]);
        const th = must('qemu-img', ['info', f]);
        expect(human.out.slice(human.out.indexOf('encrypted:'))).toBe(th.slice(th.indexOf('encrypted:')));
      }
    });
  });
}

describe('LUKS wrong password', () => {
  let t: TempDir;
  beforeAll(() => {
    t = tempDir('luks-pw');
  });
  afterAll(() => t.cleanup());

  it('BAD_PASSWORD and the file unchanged byte for byte (qemu-created and engine-created)', () => {
    const q = t.file('q.qcow2');
    qemuCreateEncrypted(q, 'luks', PW);
    qemuIo(q, ['write -P 7 0 64k'], { password: PW });
    const e = t.file('e.qcow2');
    Qcow2Image.create(e, {
      size: SIZE,
      encrypt: { format: 'luks', secret: enc(PW), iterTimeMs: 10 },
      sync: false,
    }).close();
    for (const f of [q, e]) {
      const before = new Uint8Array(fs.readFileSync(f));
      for (const readOnly of [false, true]) {
        let err: unknown;
        try {
          Qcow2Image.open(f, { readOnly, secret: enc('not-the-password') }).close();
        } catch (x) {
          err = x;
        }
        expect(err).toBeInstanceOf(Qcow2Error);
        expect((err as Qcow2Error).code).toBe('BAD_PASSWORD');
      }
      expect(sameBytes(new Uint8Array(fs.readFileSync(f)), before)).toBe('equal');
      // The right password still works afterwards.
      const img = Qcow2Image.open(f, { readOnly: true, secret: enc(PW) });
      img.close();
    }
  });

  it('engine LUKS with cipher aes-128 is readable by qemu', () => {
    const f = t.file('aes128.qcow2');
    const img = Qcow2Image.create(f, {
      size: SIZE,
      encrypt: { format: 'luks', secret: enc(PW), iterTimeMs: 10, cipherAlg: 'aes-128' },
      sync: false,
    });
    const d = pattern(5000, 9);
    try {
      img.write(4096, d);
    } finally {
      img.close();
    }
    expect(sameBytes(qemuRaw(f, { password: PW }), expectedContent([[4096, d]]))).toBe('equal');
    const info = JSON.parse(must('qemu-img', ['info', '--output=json', f])) as InfoJson;
    expect((info['format-specific'].data.encrypt as Record<string, unknown>)['cipher-alg']).toBe('aes-128');
  });
});
