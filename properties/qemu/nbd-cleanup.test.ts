/**
 * The bitmap oracle's qemu-nbd (`-t`: it never ends by itself) must not outlive a campaign killed
 * from outside. A real campaign (`qcow2 fuzz`, one worker) runs with a qemu-nbd whose pid file is
 * written elsewhere, so that the oracle waits for a ready sign that never comes (up to its start
 * timeout, 20 s) and qemu-nbd is up for as long as the test needs; each time
 * a qemu-nbd appears below the campaign, something is killed, and that qemu-nbd must be gone:
 * - the tool launcher (qemu-nbd's parent) SIGKILLed: nothing can clean up, the kernel must
 *   (parent-death signal);
 * - then a Ctrl-C: SIGINT to the campaign's whole process group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireQemuTools, runTool } from './qemu-img.ts';
import { QEMU_NBD } from './qemu-bitmaps.ts';

const CLI = fileURLToPath(new URL('../../bin/qcow2.js', import.meta.url));

/** Parent pid of `pid` (undefined when it is gone). */
function parentOf(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive and not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** qemu-nbd processes below `root`. */
function nbdBelow(root: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let comm: string;
    try {
      comm = fs.readFileSync(`/proc/${entry}/comm`, 'latin1').trim();
    } catch {
      continue;
    }
    if (comm !== 'qemu-nbd') continue;
    for (let p: number | undefined = Number(entry); p !== undefined && p > 1; p = parentOf(p)) {
      if (p === root) {
        out.push(Number(entry));
        break;
      }
    }
  }
  return out;
}

async function waitFor<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a killed campaign leaves no qemu-nbd behind', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-nbd-kill-'));
  const campaigns: ChildProcess[] = [];
  afterAll(() => {
    for (const c of campaigns)
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A campaign in its own process group, with a qemu-nbd that stays up; returns it and its first qemu-nbd. */
  async function campaignWithNbd(): Promise<{ campaign: ChildProcess; nbd: number }> {
    await requireQemuTools();
    const nbdVersion = await runTool(QEMU_NBD, ['--version']);
    expect(nbdVersion.exitCode, 'qemu-nbd must be installed').toBe(0);
    const real = (await runTool('sh', ['-c', `command -v ${QEMU_NBD}`])).stdout.trim();
    expect(real, 'qemu-nbd on PATH').not.toBe('');
    // qemu-nbd itself (exec: its parent stays the tool launcher), its --pid-file moved aside
    const wrapper = path.join(dir, 'qemu-nbd');
    fs.writeFileSync(
      wrapper,
      `#!/bin/bash\na=("$@")\nfor i in "\${!a[@]}"; do [ "\${a[$i]}" = --pid-file ] && a[$((i+1))]+=.aside; done\nexec ${real} "\${a[@]}"\n`,
      { mode: 0o755 },
    );
    const campaign = spawn(
      'node',
      [
        CLI,
        'fuzz',
        '--impl',
        'engine',
        '--seconds',
        '60',
        '--jobs',
        '1',
        '--seed',
        '7',
        '--no-coverage',
        '--out',
        path.join(dir, 'cases'),
      ],
      { detached: true, stdio: 'ignore', env: { ...process.env, QEMU_NBD: wrapper } },
    );
    campaigns.push(campaign);
    const nbd = await waitFor('a qemu-nbd below the campaign', 60_000, () => nbdBelow(campaign.pid!)[0]);
    return { campaign, nbd };
  }

  it('the launcher SIGKILLed, then Ctrl-C (SIGINT to the process group): each qemu-nbd ends', async () => {
    const { campaign, nbd } = await campaignWithNbd();
    // The launcher (qemu-nbd's parent) SIGKILLed: nothing can clean up, the kernel must.
    const launcher = parentOf(nbd)!;
    expect(fs.readFileSync(`/proc/${launcher}/cmdline`, 'latin1')).toContain('spawn-helper');
    process.kill(launcher, 'SIGKILL');
    await waitFor(`qemu-nbd ${nbd} gone after its launcher`, 5_000, () => (alive(nbd) ? undefined : true));
    // The campaign goes on (a new launcher) and reaches another bitmap oracle: Ctrl-C now.
    const next = await waitFor('another qemu-nbd', 60_000, () => nbdBelow(campaign.pid!)[0]);
    const exited = new Promise((r) => campaign.once('exit', r));
    process.kill(-campaign.pid!, 'SIGINT');
    await exited;
    await waitFor(`qemu-nbd ${next} gone after Ctrl-C`, 5_000, () => (alive(next) ? undefined : true));
  }, 120_000);
});
