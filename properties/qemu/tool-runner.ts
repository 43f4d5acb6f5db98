/**
 * Runs tools (qemu-img, qemu-io, qemu-nbd's helpers) through one small long-lived launcher
 * process (spawn-helper.mjs) instead of forking the harness itself. Node forks by copying its
 * page tables: measured here, spawning `true` took 6.7 ms from a 50 MiB process, 71 ms from a
 * 350 MiB one and 105 ms from 1 GiB — and a campaign worker holds reference disks and engine
 * caches. The launcher stays small, so every qemu-img call costs what qemu-img costs.
 *
 * The launcher is started on first use, does not keep the harness alive when idle, and kills what
 * it started when the harness goes away (its stdin closes).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export interface ToolRun {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface ToolRunOptions {
  cwd?: string;
  /** Text for the tool's stdin (closed right away otherwise). */
  input?: string;
  /** stderr into stdout, in the order printed (`2>&1`). */
  mergeStderr?: boolean;
  /** In its own process group (a kill then reaches whatever it started). */
  detached?: boolean;
  /**
   * Killed by the kernel when the launcher dies, however it dies (`setpriv --pdeathsig KILL`,
   * where util-linux has it): for servers that never end by themselves (qemu-nbd -t).
   */
  dieWithParent?: boolean;
}

interface Reply {
  id: number;
  error?: string;
  exitCode?: number | null;
  signal?: string | null;
  stdout?: string;
  stderr?: string;
}

const HELPER = fileURLToPath(new URL('./spawn-helper.mjs', import.meta.url));

class Launcher {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly pending = new Map<number, { resolve: (r: ToolRun) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private buffer = '';
  dead = false;

  constructor() {
    this.child = spawn(process.execPath, [HELPER], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (text: string) => this.receive(text));
    this.child.stdin.on('error', () => {});
    this.child.on('exit', (code, signal) => {
      this.dead = true;
      const why = new Error(`the tool launcher exited (code ${String(code)}, signal ${String(signal)})`);
      for (const p of this.pending.values()) p.reject(why);
      this.pending.clear();
    });
    this.idle();
  }

  run(file: string, args: readonly string[], opts: ToolRunOptions): Promise<ToolRun> {
    return this.start(file, args, opts).done;
  }

  start(file: string, args: readonly string[], opts: ToolRunOptions): RunningTool {
    const id = this.nextId++;
    const done = new Promise<ToolRun>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.busy();
    this.child.stdin.write(`${JSON.stringify({ id, file, args, ...opts })}\n`);
    return {
      done,
      kill: () => {
        if (!this.dead && this.pending.has(id)) this.child.stdin.write(`${JSON.stringify({ kill: id })}\n`);
      },
    };
  }

  private receive(text: string): void {
    this.buffer += text;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      const r = JSON.parse(line) as Reply;
      const p = this.pending.get(r.id);
      if (!p) continue;
      this.pending.delete(r.id);
      if (r.error !== undefined) p.reject(new Error(r.error));
      else
        p.resolve({
          exitCode: r.exitCode ?? null,
          signal: r.signal ?? null,
          stdout: r.stdout ?? '',
          stderr: r.stderr ?? '',
        });
    }
    if (this.pending.size === 0) this.idle();
  }

  /** Waiting for replies keeps the harness alive; an idle launcher does not. */
  private busy(): void {
    this.child.ref();
    (this.child.stdout as unknown as { ref(): void }).ref();
  }

  private idle(): void {
    this.child.unref();
    (this.child.stdout as unknown as { unref(): void }).unref();
    (this.child.stdin as unknown as { unref?(): void }).unref?.();
  }
}

/** A tool started through the launcher: its outcome, and a SIGKILL (its group when detached). */
export interface RunningTool {
  done: Promise<ToolRun>;
  kill(): void;
}

let launcher: Launcher | undefined;

/** Per tool and subcommand (`qemu-img check`, `qemu-nbd`): runs started and their wall time. */
export interface ToolTally {
  runs: number;
  ms: number;
}

const tallies = new Map<string, ToolTally>();

/** The runs counted so far (a copy), keyed `tool subcommand`. */
export function toolTallies(): Map<string, ToolTally> {
  return new Map([...tallies].map(([k, v]) => [k, { ...v }]));
}

/** What was run since `before` (a `toolTallies()` result). */
export function toolTalliesSince(before: Map<string, ToolTally>): Map<string, ToolTally> {
  const out = new Map<string, ToolTally>();
  for (const [k, v] of tallies) {
    const b = before.get(k) ?? { runs: 0, ms: 0 };
    if (v.runs > b.runs) out.set(k, { runs: v.runs - b.runs, ms: v.ms - b.ms });
  }
  return out;
}

function tally(file: string, args: readonly string[], done: Promise<unknown>): void {
  const tool = file.slice(file.lastIndexOf('/') + 1);
  const sub = tool === 'qemu-img' ? ` ${args.find((a) => !a.startsWith('-')) ?? ''}` : '';
  const key = `${tool}${sub}`;
  const t = tallies.get(key) ?? { runs: 0, ms: 0 };
  tallies.set(key, t);
  t.runs++;
  const started = performance.now();
  const stop = (): void => {
    t.ms += performance.now() - started;
  };
  done.then(stop, stop);
}

/** Run `file args` to completion through the launcher; rejects when it cannot be started. */
export function runThroughLauncher(
  file: string,
  args: readonly string[],
  opts: ToolRunOptions = {},
): Promise<ToolRun> {
  if (!launcher || launcher.dead) launcher = new Launcher();
  const done = launcher.run(file, args, opts);
  tally(file, args, done);
  return done;
}

/** Start `file args` through the launcher without waiting for it (a server, a bounded wait). */
export function startThroughLauncher(
  file: string,
  args: readonly string[],
  opts: ToolRunOptions = {},
): RunningTool {
  if (!launcher || launcher.dead) launcher = new Launcher();
  const tool = launcher.start(file, args, opts);
  tally(file, args, tool.done);
  return tool;
}
