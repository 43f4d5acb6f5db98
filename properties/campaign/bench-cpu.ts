/**
 * CPU time for the harness's throughput figures (`npm run bench:harness`): this process's own,
 * and that of the tools it ran (qemu-img, qemu-io, qemu-nbd), which on a shared machine is the
 * honest denominator next to wall time. Tools are counted once they have exited and been reaped:
 * those run through the launcher (properties/qemu/tool-runner.ts) in the launcher's children's
 * times, those spawned directly in this process's. Linux /proc only; elsewhere tools count 0.
 */
import * as fs from 'node:fs';
import { launcherPid } from '../qemu/tool-runner.ts';

/** USER_HZ: /proc's clock ticks per second (100 on Linux's mainstream architectures). */
const TICKS_PER_SECOND = 100;

/** utime, stime, cutime, cstime (ms) of a process from /proc/PID/stat, or zeros. */
function procTimes(pid: number | 'self'): { own: number; children: number } {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    // fields after the command name (in parentheses, which may hold spaces): state is field 3
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ms = (i: number): number => (Number(f[i - 3]) * 1000) / TICKS_PER_SECOND;
    return { own: ms(14) + ms(15), children: ms(16) + ms(17) };
  } catch {
    return { own: 0, children: 0 };
  }
}

export interface CpuSample {
  /** This process (process.cpuUsage), ms. */
  selfMs: number;
  /** Tools that have exited: the launcher and its children, and this process's reaped children, ms. */
  toolsMs: number;
}

export function cpuSample(): CpuSample {
  const c = process.cpuUsage();
  const pid = launcherPid();
  const launcher = pid === undefined ? { own: 0, children: 0 } : procTimes(pid);
  return {
    selfMs: (c.user + c.system) / 1000,
    toolsMs: procTimes('self').children + launcher.own + launcher.children,
  };
}

/** CPU used since `start` (a launcher started in between counts from zero). */
export function cpuSince(start: CpuSample): CpuSample {
  const now = cpuSample();
  return { selfMs: now.selfMs - start.selfMs, toolsMs: Math.max(0, now.toolsMs - start.toolsMs) };
}
