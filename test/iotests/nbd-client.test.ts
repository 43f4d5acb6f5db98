/**
 * qemu-io over `driver=nbd` (qemu-iotests 277): ours (bin/qcow2.js as qemu-io) against the real
 * qemu-nbd (fixed-newstyle negotiation), and against the suite's own nbd-fault-injector.py
 * (oldstyle negotiation) that drops the connection after a write's data: with reconnect-delay the
 * write is sent again on a new connection and succeeds, without it the write fails.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureSuite } from '../../scripts/iotests/source.ts';
import { must } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-nbd-'));
const ourIo = path.join(dir, 'qemu-io');
fs.symlinkSync(BIN, ourIo);
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

function qemuIo(prog: string, args: string[]): { status: number; stdout: string } {
  const r = spawnSync(prog, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout.replace(/^\d.*ops; .*$/gm, 'TIMING') };
}

/** Waits until `file` exists (a server's socket). */
async function waitFor(file: string): Promise<void> {
  for (let i = 0; i < 200 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
  expect(fs.existsSync(file)).toBe(true);
}

async function injector(sock: string, event: string): Promise<ChildProcess> {
  const suite = await ensureSuite();
  const conf = path.join(dir, `${event}.conf`);
  fs.writeFileSync(conf, `[inject-error]\nevent=${event}\nwhen=after`);
  fs.rmSync(sock, { force: true });
  const p = spawn(path.join(suite.dir, 'nbd-fault-injector.py'), ['--classic-negotiation', sock, conf], {
    cwd: suite.dir,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(p);
  await waitFor(sock);
  return p;
}

const exited = (p: ChildProcess): Promise<void> =>
  p.exitCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));

describe('qemu-io over NBD (277)', () => {
  it('reads and writes an export of the real qemu-nbd as qemu-io does', async () => {
    for (const side of ['qemu', 'ours'] as const) {
      const img = path.join(dir, `nbd-${side}.raw`);
      const sock = path.join(dir, `nbd-${side}.sock`);
      must('qemu-img', ['create', '-f', 'raw', img, '4M']);
      const srv = spawn('qemu-nbd', ['-k', sock, '-f', 'raw', '-t', img], { stdio: 'ignore' });
      children.push(srv);
      await waitFor(sock);
      const opts = `driver=nbd,server.type=unix,server.path=${sock}`;
      const cmds = [
        '-c',
        'write -P 7 64k 128k',
        '-c',
        'read -P 7 64k 128k',
        '-c',
        'read -P 0 0 64k',
        '-c',
        'length',
      ];
      const r = qemuIo(side === 'qemu' ? 'qemu-io' : ourIo, [...cmds, '--image-opts', opts]);
      srv.kill();
      await exited(srv);
      expect(r.status, r.stdout).toBe(0);
      expect(r.stdout).toBe(
        'wrote 131072/131072 bytes at offset 65536\nTIMING\nread 131072/131072 bytes at offset 65536\nTIMING\n' +
          'read 65536/65536 bytes at offset 0\nTIMING\n4 MiB\n',
      );
      // What reached the server's file.
      expect(qemuIo('qemu-io', ['-f', 'raw', '-c', 'read -P 7 64k 128k', img]).status).toBe(0);
    }
  });

  it('a write whose connection drops is sent again after a reconnect (reconnect-delay)', async () => {
    const sock = path.join(dir, 'inj.sock');
    const opts = (delay: number): string =>
      `driver=nbd,server.type=unix,server.path=${sock}${delay ? `,reconnect-delay=${delay}` : ''}`;
    // Without reconnect-delay the write fails once the first server drops the connection.
    let srv = await injector(sock, 'data');
    const failed = qemuIo(ourIo, ['-c', 'write -P 7 0 1M', '--image-opts', opts(0)]);
    expect(failed.stdout).toMatch(/^write failed: Input\/output error/);
    await exited(srv);
    // With it, the client waits for the second server and completes the write there.
    srv = await injector(sock, 'data');
    const client = spawn(ourIo, ['-c', 'write -P 7 0 1M', '--image-opts', opts(7)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(client);
    let out = '';
    client.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await exited(srv);
    srv = await injector(sock, 'reply');
    await exited(client);
    expect(client.exitCode).toBe(0);
    expect(out.split('\n')[0]).toBe('wrote 1048576/1048576 bytes at offset 0');
    await exited(srv);
  }, 60_000);
});
