/**
 * CPU time for the harness's throughput figures (`npm run bench:harness`, the campaign summary):
 * this process's own, and that of the tools it runs (qemu-img, qemu-io, qemu-nbd, the launcher),
 * which on a shared machine is the honest denominator next to wall time. The tools' time is the
 * whole process tree below this one, read from /proc: each live descendant's own time (a qemu-io
 * session still running counts as it goes) plus what every process of the tree has reaped from
 * its exited children. Linux only; elsewhere tools count 0.
 */
import * as fs from 'node:fs';

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

/** Process ids of `pid`'s children (every thread's; /proc/PID/task/TID/children). */
function childPids(pid: number): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'latin1').split(' '))
        if (c.trim() !== '') out.push(Number(c));
    } catch {
      // the thread is gone
    }
  }
  return out;
}

export interface CpuSample {
  /** This process (process.cpuUsage), ms. */
  selfMs: number;
  /** The process tree below this one: live descendants' own time and every reaped child's, ms. */
  toolsMs: number;
}

export function cpuSample(): CpuSample {
  const c = process.cpuUsage();
  let toolsMs = procTimes('self').children;
  const pending = childPids(process.pid);
  for (let pid = pending.pop(); pid !== undefined; pid = pending.pop()) {
    const t = procTimes(pid);
    toolsMs += t.own + t.children;
    pending.push(...childPids(pid));
  }
  return { selfMs: (c.user + c.system) / 1000, toolsMs };
}

/** CPU used since `start` (a process that exited unreaped in between is not counted). */
export function cpuSince(start: CpuSample): CpuSample {
  const now = cpuSample();
  return { selfMs: now.selfMs - start.selfMs, toolsMs: Math.max(0, now.toolsMs - start.toolsMs) };
}
