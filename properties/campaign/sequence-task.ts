/**
 * What the campaign runner runs, without knowing what it is: a task turns a sequence index into
 * one run (generate, execute, oracles) and, when asked, shrinks a failing index into a case file.
 * `qcow2 fuzz` is one task (fuzz-task.ts); crash states and `repro IMAGE` plug in as others
 * (tasks.ts) — they differ in what a sequence is and which oracles run, never in the machinery
 * (budget, jobs, shards, dedup, shrink scheduling, progress, report: runner/campaign.ts).
 *
 * A task never throws for a failure of the implementation: failures come back as data with their
 * signature. A throw means the harness itself broke (exit code 2).
 */
import type { FailureSignature } from '../runner/signature.ts';
import type { ReaderReport } from '../readers/reader-oracle.ts';

/** Who is under test, for the report's identity. */
export interface TaskIdentity {
  /** The task's name (`fuzz`, …). */
  task: string;
  /** The implementation under test and its version (`engine`, `0.1.0`; `qemu-io`, `7.2.22`). */
  impl: string;
  implVersion: string;
  /** Free-form notes (capability probes, …). */
  notes: string[];
}

/** One sequence's outcome. */
export interface SequenceOutcome {
  index: number;
  /** False when the deadline cut it short: it does not count as run. */
  completed: boolean;
  /** Data operations performed. */
  operations: number;
  /** Steps performed (the sequence's length). */
  steps: number;
  /** Steps per command kind. */
  kinds: Record<string, number>;
  /** A coarse class of the image layout (`v3 64k rc16 zlib`, …). */
  layoutClass: string;
  /** Milliseconds it took. */
  ms: number;
  /**
   * Time in the operation loop (outside image creation and the end-of-sequence oracles): wall
   * milliseconds and the worker process's CPU milliseconds (tools' CPU excluded).
   */
  loopMs?: number;
  loopCpuMs?: number;
  /** The worker process's CPU milliseconds for the whole sequence (oracles' tools excluded). */
  cpuMs?: number;
  /** CPU milliseconds of the tools the sequence ran (qemu-img, qemu-nbd…; campaign/bench-cpu.ts). */
  toolsCpuMs?: number;
  /** Tool runs the sequence started, by tool and subcommand (`qemu-img check`: 2). */
  toolRuns?: Record<string, number>;
  /** Wall milliseconds of those runs, by tool and subcommand (where a sequence's set-up and oracles go). */
  toolMs?: Record<string, number>;
  failure?: FoundFailure;
  /** What the extra readers did during this sequence (summed by the runner). */
  readers?: ReaderReport[];
}

export interface FoundFailure {
  signature: FailureSignature;
  message: string;
  /** Steps of the failing sequence, unshrunk. */
  steps: number;
}

/** What shrinking one failure left. */
export interface ShrinkOutcome {
  index: number;
  /** `full`: shrinking finished; `partial`: stopped at the deadline, best so far kept; `none`: saved unshrunk. */
  status: 'full' | 'partial' | 'none';
  /** The shrunk steps (the case's). */
  steps: string[];
  message: string;
  /** The known bug (properties/known-bugs/) the failure matches, as the campaign summary labels it. */
  knownBug?: string;
  /** Case file (JSON) and its script, when saved. */
  casePath?: string;
  scriptPath?: string;
  ms: number;
}

export interface SequenceTask {
  identity(): Promise<TaskIdentity>;
  /** Run sequence `index`; stop between steps once `deadline` (epoch ms) has passed. */
  run(index: number, deadline: number): Promise<SequenceOutcome>;
  /**
   * Shrink the failure of sequence `index` (the last one `run` reported), keeping the best so far
   * when `deadline` passes, and save it as a case in `outDir` — as the file `into` when given (the
   * runner first saves it unshrunk with a past deadline, then has it overwritten once shrunk).
   */
  shrink(index: number, deadline: number, outDir: string | undefined, into?: string): Promise<ShrinkOutcome>;
  close(): Promise<void>;
}

/** How a task is named across process boundaries (workers build their own from it). */
export interface TaskSpec {
  name: string;
  /** The task's own options (JSON). */
  options: Record<string, unknown>;
}
