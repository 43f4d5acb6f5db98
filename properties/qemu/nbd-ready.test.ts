/**
 * The bitmap oracle's NBD client must connect only once qemu-nbd serves. qemu-nbd binds its socket
 * before it listens and before it opens the image; on a loaded machine (load 13–20 on 2 cores) a
 * `qemu-img map` started as soon as the socket file existed was refused ("Connection refused").
 * Here the window is made wide on purpose: a wrapper binds the socket path without listening (what
 * qemu-nbd's bind() leaves between bind and listen), waits 400 ms, then execs the real qemu-nbd
 * (which unlinks the path and binds it again). The reads must come back exact. (Fails on the code
 * that waited for the socket file: every read was "Connection refused".)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QEMU_IMG, QEMU_IO, requireQemuTools, runTool } from './qemu-img.ts';

const REAL_NBD = process.env.QEMU_NBD ?? 'qemu-nbd';
let dir: string;

async function must(file: string, args: string[], input?: string): Promise<void> {
  const r = await runTool(file, args, input === undefined ? {} : { input });
  expect(r.exitCode, `${file} ${args.join(' ')}: ${r.stderr}`).toBe(0);
}

beforeAll(async () => {
  await requireQemuTools();
  const v = await runTool(REAL_NBD, ['--version']);
  expect(v.exitCode, 'qemu-nbd must be installed').toBe(0);
  expect((await runTool('perl', ['-MSocket', '-e', '1'])).exitCode, 'perl (Socket) must be installed').toBe(
    0,
  );
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-nbd-ready-'));
  const wrapper = path.join(dir, 'late-listen-nbd');
  fs.writeFileSync(
    wrapper,
    [
      '#!/bin/sh',
      '# the socket path bound, not listened on, for 400 ms; then the real qemu-nbd',
      'sock=; prev=',
      'for a in "$@"; do [ "$prev" = -k ] && sock=$a; prev=$a; done',
      `perl -MSocket -e 'socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die $!; bind($s, pack_sockaddr_un($ARGV[0])) or die $!' "$sock"`,
      'sleep 0.4',
      `exec ${JSON.stringify(REAL_NBD)} "$@"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  process.env.QEMU_NBD = wrapper;
  const good = path.join(dir, 'good.qcow2');
  await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', good, '64M']);
  for (const b of ['b0', 'b1']) await must(QEMU_IMG, ['bitmap', '--add', good, b]);
  await must(QEMU_IO, ['-c', 'write -P 1 1M 64k', good]);
}, 60_000);

afterAll(() => {
  process.env.QEMU_NBD = REAL_NBD;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('the bitmap oracle connects once qemu-nbd serves', () => {
  it('reads every bitmap exactly through a qemu-nbd slow to listen', async () => {
    // imported after QEMU_NBD names the wrapper (read once, at load)
    const { readAllDirtyBits, QEMU_NBD } = await import('./qemu-bitmaps.ts');
    expect(QEMU_NBD).toBe(path.join(dir, 'late-listen-nbd'));
    for (let i = 0; i < 2; i++) {
      const bits = await readAllDirtyBits(path.join(dir, 'good.qcow2'), ['b0', 'b1']);
      for (const name of ['b0', 'b1'])
        expect(bits.get(name), name).toEqual({ ok: true, ranges: [{ offset: 0x100000, length: 0x10000 }] });
    }
  }, 60_000);
});
