/**
 * QEMU's image locking (src/io/lock.ts) against the real qemu-io/qemu-img 7.2: the same lock
 * bytes as QEMU in every role, each direction of the conflict, -U, file.locking=off, and locks
 * released on exit and on SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { Qcow2Image } from '../../src/image.ts';
import { must, run, tempDir, type TempDir } from '../support/qemu.ts';

const bin = path.resolve(__dirname, '../../bin/qcow2.js');
let t: TempDir;
beforeAll(() => {
  t = tempDir('qcow2-lock');
});
afterAll(() => t.cleanup());

async function ours(...argv: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { out, err, code };
}

/** The bytes locked on `file` by anyone, from /proc/locks (OFD locks), as sorted "byte" numbers. */
function lockedBytes(file: string): number[] {
  const ino = fs.statSync(file).ino;
  const bytes: number[] = [];
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    // "1: OFDLCK ADVISORY READ -1 fe:00:2147425 100 101"
    if (f[1] !== 'OFDLCK' || Number(f[5]!.split(':')[2]) !== ino) continue;
    for (let b = Number(f[6]); b <= Number(f[7]); b++) bytes.push(b);
  }
  return bytes.sort((a, b) => a - b);
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A long-lived process holding `file` open: qemu-io or `qcow2 io`, reading commands from a pipe. */
async function hold(tool: 'qemu-io' | 'qcow2', args: string[], file: string): Promise<ChildProcess> {
  const before = lockedBytes(file).length;
  const child =
    tool === 'qemu-io'
      ? spawn('qemu-io', [...args, file], { stdio: ['pipe', 'ignore', 'pipe'] })
      : spawn('node', [bin, 'io', ...args, file], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => void (stderr += String(d)));
  child.on('error', (e) => {
    throw e; // qemu-io missing: a failure, never a skip
  });
  await until(() => {
    if (child.exitCode !== null) throw new Error(`${tool} exited early: ${stderr}`);
    return lockedBytes(file).length > before;
  }, `${tool} to lock ${file}`);
  return child;
}

async function release(child: ChildProcess, how: 'eof' | 'SIGKILL'): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  if (how === 'eof') child.stdin!.end();
  else child.kill('SIGKILL');
  await exited;
}

function image(name: string, fmt = 'qcow2'): string {
  const f = t.file(name);
  must('qemu-img', ['create', '-q', '-f', fmt, f, '1M']);
  return f;
}

describe('the same lock bytes as QEMU', () => {
  const roles: Array<[string, string, string[]]> = [
    ['qcow2 read-write', 'qcow2', []],
    ['qcow2 read-only', 'qcow2', ['-r']],
    ['qcow2 read-only, -U', 'qcow2', ['-r', '-U']],
    ['raw read-write', 'raw', ['-f', 'raw']],
    ['raw read-only', 'raw', ['-f', 'raw', '-r']],
  ];
  for (const [role, fmt, args] of roles) {
    it(role, async () => {
      const f = image(`bytes-${role.replace(/\W+/g, '-')}.${fmt}`, fmt);
      const q = await hold('qemu-io', args, f);
      const theirs = lockedBytes(f);
      await release(q, 'eof');
      expect(lockedBytes(f)).toEqual([]);
      const o = await hold('qcow2', args, f);
      const mine = lockedBytes(f);
      await release(o, 'eof');
      expect(mine).toEqual(theirs);
      expect(theirs.length).toBeGreaterThan(0);
    });
  }
});

describe('qemu-io holds the image', () => {
  it('refuses our writes and plain reads, allows -U reads; locking=off opts out', async () => {
    const f = image('held-by-qemu.qcow2');
    must('qemu-io', ['-c', 'write -P 5 0 64k', f]);
    const q = await hold('qemu-io', [], f);
    try {
      const w = await ours('io', '-c', 'write -P 6 0 64k', f);
      expect(w.code).toBe(1);
      expect(w.err).toContain(`Failed to get "write" lock. Is another process using the image [${f}]?`);
      const r = await ours('io', '-r', '-c', 'read -P 5 0 64k', f);
      expect(r.code).toBe(1);
      expect(r.err).toContain('Failed to get shared "write" lock');
      const i = await ours('info', f);
      expect(i.code).toBe(1);
      expect(i.err).toContain('[IMAGE_LOCKED]');
      const u = await ours('io', '-r', '-U', '-c', 'read -P 5 0 64k', f);
      expect(u.err).toBe('');
      expect(u.code).toBe(0);
      expect((await ours('info', '-U', f)).code).toBe(0);
      expect((await ours('map', '-U', '--output=json', f)).code).toBe(0);
      expect((await ours('check', '-U', f)).code).toBe(0);
      const rw = await ours('io', '-U', '-c', 'read 0 512', f);
      expect(rw.err).toContain('force-share=on can only be used with read-only images');
      const off = await ours(
        'io',
        '-r',
        '--image-opts',
        '-c',
        'read -P 5 0 64k',
        `driver=qcow2,file.filename=${f},file.locking=off`,
      );
      expect(off.code).toBe(0);
    } finally {
      await release(q, 'eof');
    }
    // Released when qemu-io exits.
    expect((await ours('io', '-c', 'write -P 6 0 64k', f)).code).toBe(0);
  });

  it('a read-only qemu-io refuses our writes but allows our reads', async () => {
    const f = image('held-ro-by-qemu.qcow2');
    const q = await hold('qemu-io', ['-r'], f);
    try {
      expect((await ours('io', '-c', 'write 0 512', f)).err).toContain('Failed to get "write" lock');
      expect((await ours('io', '-r', '-c', 'read 0 512', f)).code).toBe(0);
    } finally {
      await release(q, 'eof');
    }
  });
});

describe('qcow2 io holds the image', () => {
  it("refuses qemu-io's writes as QEMU does, allows qemu-io -r -U; released on exit", async () => {
    const f = image('held-by-us.qcow2');
    const o = await hold('qcow2', [], f);
    try {
      const w = run('qemu-io', ['-c', 'write 0 512', f]);
      expect(w.status).toBe(1);
      expect(w.stderr).toContain(
        `can't open device ${f}: Failed to get "write" lock\nIs another process using the image [${f}]?`,
      );
      expect(run('qemu-img', ['info', f]).stderr).toContain('Failed to get shared "write" lock');
      expect(run('qemu-io', ['-r', '-U', '-c', 'read 0 512', f]).status).toBe(0);
      expect(run('qemu-img', ['info', '-U', f]).status).toBe(0);
    } finally {
      await release(o, 'eof');
    }
    expect(run('qemu-io', ['-c', 'write 0 512', f]).status).toBe(0);
  });

  it('released when the process is killed (SIGKILL)', async () => {
    const f = image('killed.qcow2');
    const o = await hold('qcow2', [], f);
    expect(run('qemu-io', ['-c', 'write 0 512', f]).status).toBe(1);
    await release(o, 'SIGKILL');
    expect(lockedBytes(f)).toEqual([]);
    expect(run('qemu-io', ['-c', 'write 0 512', f]).status).toBe(0);
    must('qemu-img', ['check', f]);
  });

  it('two opens in one process exclude each other, as in QEMU', () => {
    const f = image('twice.qcow2');
    const a = Qcow2Image.open(f);
    try {
      expect(() => Qcow2Image.open(f)).toThrow(/Failed to get "write" lock/);
      expect(() => Qcow2Image.open(f, { readOnly: true })).toThrow(/Failed to get shared "write" lock/);
    } finally {
      a.close();
    }
    Qcow2Image.open(f).close();
  });

  it('a backing file is held read-only; -U reaches it', async () => {
    const base = image('base.qcow2');
    const top = t.file('top.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    const q = await hold('qemu-io', [], base);
    try {
      const r = await ours('io', '-r', '-c', 'read 0 512', top);
      expect(r.err).toContain(
        `Failed to get shared "write" lock. Is another process using the image [${base}]?`,
      );
      expect((await ours('io', '-r', '-U', '-c', 'read 0 512', top)).code).toBe(0);
    } finally {
      await release(q, 'eof');
    }
    const o = await hold('qcow2', [], top);
    try {
      expect(run('qemu-io', ['-c', 'write 0 512', base]).stderr).toContain('Failed to get "write" lock');
    } finally {
      await release(o, 'eof');
    }
  });
});
