/**
 * A hang watchdog for in-process implementations: a synchronous engine call that never returns
 * blocks the event loop, so no timer of ours can fire. A worker thread watches a heartbeat in
 * shared memory; the run writes its layout and every step into shared memory as it goes. When the
 * heartbeat stalls, the worker writes a case file (kind "hang", the steps so far, the last one
 * being the step that hung), prints where it is, and kills the process (exit status 1 via SIGKILL
 * is not possible, so the CLI's parent sees the signal; the case file is the record).
 */
import { Worker } from 'node:worker_threads';

const TEXT_BYTES = 1 << 20;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const beat = new Float64Array(workerData.beat);
const lenView = new Int32Array(workerData.len);
const text = new Uint8Array(workerData.text);
setInterval(() => {
  const last = beat[0];
  if (last === 0 || Date.now() - last < workerData.stallMs) return;
  const body = new TextDecoder().decode(text.slice(0, Atomics.load(lenView, 0)));
  const lines = body.split('\\n').filter(Boolean);
  const header = JSON.parse(lines.shift() || '{}');
  const steps = lines;
  const file = {
    comment: 'Found by the fuzz watchdog: the implementation did not return for ' + (workerData.stallMs / 1000) + ' s during the last step (not shrunk).',
    impl: header.impl, image: header.image, steps, seed: header.seed ?? null, path: null, replayPath: null,
    failure: { kind: 'hang', stepIndex: steps.length - 1, step: steps[steps.length - 1] || 'create', expected: 'the operation returns', observed: 'no return after ' + workerData.stallMs + ' ms', message: 'hang at ' + (steps[steps.length - 1] || 'create') },
    script: '', foundAt: new Date().toISOString(),
  };
  fs.mkdirSync(workerData.outDir, { recursive: true });
  const out = path.join(workerData.outDir, 'case-' + header.impl + '-hang-' + Date.now() + '.json');
  fs.writeFileSync(out, JSON.stringify(file, null, 2) + '\\n');
  fs.writeSync(2, '\\nqcow2 fuzz: the implementation hung at step ' + (steps.length - 1) + ' (' + file.failure.step + '); case: ' + out + '\\n');
  process.kill(process.pid, 'SIGKILL');
}, 1000);
`;

export class Watchdog {
  private readonly beat = new Float64Array(new SharedArrayBuffer(8));
  private readonly len = new Int32Array(new SharedArrayBuffer(4));
  private readonly text = new Uint8Array(new SharedArrayBuffer(TEXT_BYTES));
  private readonly encoder = new TextEncoder();
  private readonly worker: Worker;

  constructor(opts: { stallMs: number; outDir: string }) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        beat: this.beat.buffer,
        len: this.len.buffer,
        text: this.text.buffer,
        stallMs: opts.stallMs,
        outDir: opts.outDir,
      },
    });
    this.worker.unref();
  }

  /** A new run: its header (impl, image, seed) replaces the previous run's record. */
  startRun(header: { impl: string; image: unknown; seed: number | null }): void {
    Atomics.store(this.len, 0, 0);
    this.append(JSON.stringify(header));
    this.beat[0] = Date.now();
  }

  /** About to perform a step. */
  step(line: string): void {
    this.append(line);
    this.beat[0] = Date.now();
  }

  /** Between runs (oracles of qemu-img are child processes: they do not block). */
  idle(): void {
    this.beat[0] = 0;
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }

  private append(line: string): void {
    const at = Atomics.load(this.len, 0);
    const room = TEXT_BYTES - at - 1;
    if (room <= 0) return;
    const { written } = this.encoder.encodeInto(`${line}\n`, this.text.subarray(at, at + room));
    Atomics.store(this.len, 0, at + written);
  }
}
