/**
 * Worker processes: each runs the workers' bundle (worker-bundle.ts) or the CLI's
 * `bin/qcow2.js fuzz --worker` (the sources through tsx), builds its task from the
 * spec the parent sends, and answers one request at a time over the IPC channel (JSON messages):
 * `init` → identity, `run` → a sequence's outcome, `shrink` → a case, `close` → exits (V8 writes
 * its coverage on a normal exit). The parent kills a worker that is still busy past the deadline.
 *
 * The in-process worker (`LocalWorker`) runs the task directly: `npm test`'s slices and `--jobs 0`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
import type {
  SequenceOutcome,
  SequenceTask,
  ShrinkOutcome,
  TaskIdentity,
  TaskSpec,
} from './sequence-task.ts';
import { createTask } from './tasks.ts';

export type Request =
  | { type: 'init'; spec: TaskSpec }
  | { type: 'run'; index: number; deadline: number }
  | { type: 'shrink'; index: number; deadline: number; outDir?: string; into?: string }
  | { type: 'close' };

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** What the runner drives: a task in this process or in a worker process. */
export interface CampaignWorker {
  readonly id: number;
  init(spec: TaskSpec): Promise<TaskIdentity>;
  run(index: number, deadline: number): Promise<SequenceOutcome>;
  shrink(index: number, deadline: number, outDir: string | undefined, into?: string): Promise<ShrinkOutcome>;
  close(): Promise<void>;
  /** Kill it now (stuck past the deadline); pending requests reject with WorkerGone. */
  kill(): void;
  readonly busy: boolean;
}

/** A worker process ended (killed at the deadline, crashed, or killed by the hang watchdog). */
export class WorkerGone extends Error {
  readonly killedByUs: boolean;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  constructor(id: number, killedByUs: boolean, code: number | null, signal: NodeJS.Signals | null) {
    super(
      `worker ${id} ${killedByUs ? 'killed at the deadline' : `exited (${signal ?? `code ${String(code)}`})`}`,
    );
    this.name = 'WorkerGone';
    this.killedByUs = killedByUs;
    this.code = code;
    this.signal = signal;
  }
}

/** A worker's reply carrying a thrown error: the harness broke inside the worker. */
export class WorkerError extends Error {
  constructor(id: number, message: string) {
    super(`worker ${id}: ${message}`);
    this.name = 'WorkerError';
  }
}

const CLI = fileURLToPath(new URL('../../bin/qcow2.js', import.meta.url));

export class ProcessWorker implements CampaignWorker {
  readonly id: number;
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private killedByUs = false;
  private gone: WorkerGone | undefined;
  private readonly exited: Promise<void>;

  /**
   * `module`: the workers' bundle (worker-bundle.ts), run as it is; without it, the CLI's
   * `qcow2 fuzz --worker` (the sources through tsx).
   */
  constructor(id: number, env: NodeJS.ProcessEnv, module?: string) {
    this.id = id;
    this.child = fork(module ?? CLI, module ? [] : ['fuzz', '--worker'], {
      env,
      // The bundle runs as it is: none of this process's Node options (a parent under tsx would
      // hand its loader down); its stack traces name the TypeScript sources (+30 CPU-ms a start).
      ...(module ? { execArgv: ['--enable-source-maps'] } : {}),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.child.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new WorkerError(this.id, m.error));
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.gone = new WorkerGone(this.id, this.killedByUs, code, signal);
        for (const p of this.pending.values()) p.reject(this.gone);
        this.pending.clear();
        resolve();
      });
    });
    // A send to a dead worker errors asynchronously: the exit handler reports it.
    this.child.on('error', () => undefined);
  }

  get busy(): boolean {
    return this.pending.size > 0;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private request<T>(req: Request): Promise<T> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, ...req });
    });
  }

  init(spec: TaskSpec): Promise<TaskIdentity> {
    return this.request({ type: 'init', spec });
  }

  run(index: number, deadline: number): Promise<SequenceOutcome> {
    return this.request({ type: 'run', index, deadline });
  }

  shrink(index: number, deadline: number, outDir: string | undefined, into?: string): Promise<ShrinkOutcome> {
    return this.request({ type: 'shrink', index, deadline, outDir, into });
  }

  /** Ask it to finish (writing its coverage); killed when it has not exited within `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    if (!this.gone) {
      this.request({ type: 'close' }).catch(() => undefined);
      const timer = setTimeout(() => this.kill(), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.gone) return;
    this.killedByUs = true;
    this.child.kill('SIGKILL');
  }

  /** Resolves when the process has exited. */
  whenExited(): Promise<void> {
    return this.exited;
  }
}

/** The task in this process (no kill: a stuck call blocks; the hang watchdog covers that). */
export class LocalWorker implements CampaignWorker {
  readonly id = 0;
  private task: SequenceTask | undefined;
  private active = 0;

  get busy(): boolean {
    return this.active > 0;
  }

  private async track<T>(p: () => Promise<T>): Promise<T> {
    this.active++;
    try {
      return await p();
    } finally {
      this.active--;
    }
  }

  private get t(): SequenceTask {
    if (!this.task) throw new Error('worker used before init');
    return this.task;
  }

  async init(spec: TaskSpec): Promise<TaskIdentity> {
    this.task = createTask(spec);
    return this.task.identity();
  }

  run(index: number, deadline: number): Promise<SequenceOutcome> {
    return this.track(() => this.t.run(index, deadline));
  }

  shrink(index: number, deadline: number, outDir: string | undefined, into?: string): Promise<ShrinkOutcome> {
    return this.track(() => this.t.shrink(index, deadline, outDir, into));
  }

  async close(): Promise<void> {
    await this.task?.close();
  }

  kill(): void {
    // cannot interrupt synchronous work in this process
  }
}

/**
 * The worker side: `qcow2 fuzz --worker` or the workers' bundle (started by ProcessWorker, never by
 * hand); `coverageOn`: this process collects V8 coverage (NODE_V8_COVERAGE at its start).
 */
export async function runWorkerProcess(
  coverageOn = process.env.NODE_V8_COVERAGE !== undefined,
): Promise<number> {
  const send = process.send?.bind(process);
  if (!send) {
    process.stderr.write(
      'qcow2 fuzz --worker: started without an IPC channel (the campaign starts workers)\n',
    );
    return 2;
  }
  let task: SequenceTask | undefined;
  let queue = Promise.resolve();
  // Coverage is written on exit; a worker killed at the deadline never exits, so it also writes
  // what it has every so often (10% of its age, at least 10 s apart: a few dozen files a night).
  const born = Date.now();
  let lastTake = born;
  // Node took the coverage directory at this process's start; the processes it starts (the tool
  // launcher, a Node process running no engine code) write none: no files for the summary to read
  // and for the campaign's tail to wait for.
  const covered = coverageOn;
  delete process.env.NODE_V8_COVERAGE;
  const maybeTakeCoverage = (): void => {
    if (!covered) return;
    const now = Date.now();
    if (now - lastTake < Math.max(10_000, 0.1 * (now - born))) return;
    v8.takeCoverage();
    lastTake = now;
  };
  return new Promise<number>((resolveExit) => {
    process.on('disconnect', () => resolveExit(0));
    process.on('message', (m: Request & { id: number }) => {
      queue = queue.then(async () => {
        try {
          let result: unknown;
          switch (m.type) {
            case 'init':
              task = createTask(m.spec);
              result = await task.identity();
              break;
            case 'run':
              if (!task) throw new Error('run before init');
              result = await task.run(m.index, m.deadline);
              break;
            case 'shrink':
              if (!task) throw new Error('shrink before init');
              result = await task.shrink(m.index, m.deadline, m.outDir, m.into);
              break;
            case 'close':
              await task?.close();
              send({ id: m.id, ok: true, result: null });
              process.disconnect();
              resolveExit(0);
              return;
          }
          send({ id: m.id, ok: true, result });
          maybeTakeCoverage();
        } catch (e) {
          send({ id: m.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
        }
      });
    });
  });
}
