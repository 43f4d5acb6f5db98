/**
 * `npm run bench:harness`: the harness's own throughput, per implementation, measured here and now
 * (never hard-coded), in wall time and in CPU time: the harness process's plus that of the tools
 * it ran (properties/campaign/bench-cpu.ts; the machine is shared: the load average is printed
 * with the table, and wall time suffers from the load where CPU time does not):
 *
 * - model-checked operations per second outside the oracles: sequences of the data-path commands
 *   every implementation performs itself (writes of both kinds, zero writes, discards, compressed
 *   writes, reads, flushes, reopens, resizes), each operation performed on the implementation and
 *   the model and every read compared byte for byte; time in the operation loop (image creation
 *   and disposal apart), with the operations' average size (writes reach 8 MiB: the figure is
 *   bound by bytes as much as by operations). Steps that run qemu-img (check, convert, check -r, bitmaps, qemu-io turns,
 *   qemu-io's snapshots) are left to the next column. Measured twice: in this one process, and as
 *   a campaign runs (one worker per core): N processes (default the campaign's --jobs) each running
 *   the same op loop on seeds of its own over one shared wall-time window, printed per process and
 *   machine-wide (every process's ops over the shared wall time, set-up included; and the sum of
 *   the processes' op-loop rates, comparable with the one-process figure), with the load;
 * - complete sequences per second with every qemu-img oracle: a real campaign, configured as
 *   `npm run fuzz` runs one (runner/campaign.ts: `--jobs` = the cores, one sequence at a time per
 *   worker process, up to 300 steps a sequence, V8 coverage collected, failures shrunk), for the
 *   same number of seconds; the figures are the ones its own summary prints
 *   (campaign/throughput.ts): sequences over the campaign's wall time, CPU per sequence (workers
 *   and their tools) and tool runs per sequence. The configuration is printed with the table;
 * - for qemu-io, qemu-io's own speed on the same command stream: every command line the harness
 *   sent to qemu-io in the first measurement (stamp files included), replayed into one fresh
 *   qemu-io per sequence over a fresh image of the same layout, no model and no comparisons, two
 *   ways: read from a file (`qemu-io < commands`: no other process in the loop at all, qemu-io's
 *   own speed, wall and CPU; the ratio is to this), and through a command session as the harness
 *   drives it (all sent, the replies read in order). The slowest sequence's share of that time is
 *   printed with it (one sequence can hold most of it: a QEMU operation that is slow by itself).
 *
 * Usage: tsx scripts/bench-harness.ts [--seconds N] (per measurement, default 20) [--impl engine|qemu-io]
 *          [--jobs N] [--no-coverage] (the campaign's configuration; default: as `npm run fuzz`)
 *          [--procs N] (the data path's processes; default: --jobs)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { implementation, type ImplementationName } from '../properties/adapters/registry.ts';
import { imageLayoutArbitrary } from '../properties/arbitraries/image-layout.ts';
import { commandSequenceArbitrary } from '../properties/arbitraries/command-sequence.ts';
import { DATA_PATH_KINDS, supportedKinds } from '../properties/arbitraries/command-kinds.ts';
import { RunContext } from '../properties/runner/run-context.ts';
import { finalOracles } from '../properties/oracles/image-oracles.ts';
import { CommandSession } from '../properties/adapters/command-session.ts';
import { recordCommands, type RecordedStream } from '../properties/adapters/stream-recording.ts';
import { BACKING_NAME, type ImageLayout } from '../properties/layout.ts';
import { qemuCreateBacking, qemuImgCreate } from '../properties/qemu/qemu-img.ts';
import { cpuSample, cpuSince } from '../properties/campaign/bench-cpu.ts';
import { toolTallies, toolTalliesSince, type ToolTally } from '../properties/qemu/tool-runner.ts';
import { Divergence } from '../properties/runner/divergence.ts';
import { matchKnownBug } from '../properties/known-bugs/index.ts';
import { runCampaign } from '../properties/runner/campaign.ts';
import type { CampaignReport } from '../properties/campaign/report.ts';
import { campaignRates, rateText } from '../properties/campaign/throughput.ts';
import { workerModule } from '../properties/campaign/worker-bundle.ts';

const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 20;
/** `--impl NAME`: measure one implementation only (default: each in turn). */
const implArg = process.argv.indexOf('--impl');
const ONLY = implArg > 0 ? process.argv[implArg + 1] : undefined;
/** The campaign's configuration: `npm run fuzz`'s (jobs = cores, coverage on), unless told otherwise. */
const jobsArg = process.argv.indexOf('--jobs');
const JOBS = jobsArg > 0 ? Number(process.argv[jobsArg + 1]) : os.availableParallelism();
const COVERAGE = !process.argv.includes('--no-coverage');
/** `--procs N`: the data path measured again in N processes at once (default: the campaign's jobs). */
const procsArg = process.argv.indexOf('--procs');
const PROCS = procsArg > 0 ? Number(process.argv[procsArg + 1]) : JOBS;
/** Internal: one of those processes (`--data-path-process SEED START_AT_EPOCH_MS`). */
const childArg = process.argv.indexOf('--data-path-process');
const MAX_STEPS = 300;

/**
 * A campaign as `npm run fuzz` runs it (fuzz-cli.ts), for SECONDS; its report, and the CPU time of
 * the whole campaign: this process's, the workers' from their start, and their tools' — the
 * per-sequence figures leave out the workers' start-up and the runner.
 */
async function campaign(
  impl: ImplementationName,
  seed: number,
): Promise<CampaignReport & { treeCpuMs: number }> {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-campaign-'));
  const before = cpuSample();
  try {
    const report = await runCampaign({
      task: { name: 'fuzz', options: { impl, seed, maxSteps: MAX_STEPS, outDir, knownBugs: 'all' } },
      seed,
      seconds: SECONDS,
      jobs: JOBS,
      outDir,
      coverage: COVERAGE,
    });
    // This process and the workers it reaped (their start-up included); the tools are counted from
    // the workers' per-sequence figures: each worker's launcher outlives it and is never reaped by it.
    const cpu = cpuSince(before);
    return { ...report, treeCpuMs: cpu.selfMs + cpu.toolsMs + (report.volume.toolsCpuMs ?? 0) };
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

/** One sequence's command stream to qemu-io, for the replay alone. */
interface Stream extends RecordedStream {
  layout: ImageLayout;
  dir: string;
  operations: number;
  /** The sequence's seed. */
  seed: number;
  /** The commands sent by the operation loop: `commands[loopFrom, loopTo)` (set-up and disposal apart). */
  loopFrom: number;
  loopTo: number;
}

interface Measure {
  ops: number;
  /** Guest bytes the operations wrote, zeroed, discarded or read. */
  bytes: number;
  sequences: number;
  /** Wall and CPU time, whole sequences (generation, set-up, oracles, disposal included). */
  ms: number;
  cpuMs: number;
  /** CPU time of the tools those sequences ran (qemu-img, qemu-io, qemu-nbd; bench-cpu.ts). */
  toolsCpuMs: number;
  /** Wall and CPU time in the operation loop alone (and the tools' CPU there). */
  loopMs: number;
  loopCpuMs: number;
  loopToolsCpuMs: number;
  failures: number;
  /** Failures matching a known bug's signature (properties/known-bugs/), by bug id. */
  knownBugs: Map<string, number>;
  streams: Stream[];
  /** Tools run through the launcher during the measurement, by tool and subcommand. */
  tools: Map<string, ToolTally>;
}

async function measure(impl: ImplementationName, withOracles: boolean, seed: number): Promise<Measure> {
  const im = implementation(impl);
  const caps = await im.capabilities();
  const kinds = supportedKinds(caps).filter((k) => withOracles || DATA_PATH_KINDS.includes(k));
  const arb = fc.tuple(imageLayoutArbitrary(caps), commandSequenceArbitrary(kinds, { maxCommands: 50 }));
  const m: Measure = {
    ops: 0,
    bytes: 0,
    sequences: 0,
    ms: 0,
    cpuMs: 0,
    toolsCpuMs: 0,
    loopMs: 0,
    loopCpuMs: 0,
    loopToolsCpuMs: 0,
    failures: 0,
    knownBugs: new Map(),
    streams: [],
    tools: new Map(),
  };
  const toolsBefore = toolTallies();
  let stream: Stream | undefined;
  const stopRecording = withOracles ? undefined : recordCommands(() => stream);
  const deadline = Date.now() + SECONDS * 1000;
  let s = seed;
  try {
    while (Date.now() < deadline) {
      const started = performance.now();
      const cpuStarted = cpuSample();
      const [[layout, commands]] = fc.sample(arb, { seed: s++, numRuns: 1 });
      const ctx = await RunContext.start(im, layout);
      ctx.pipeline = true;
      stream = {
        layout,
        dir: ctx.dir,
        argv: [],
        commands: [],
        files: new Map(),
        operations: 0,
        seed: s - 1,
        loopFrom: 0,
        loopTo: 0,
      };
      try {
        const loopStarted = performance.now();
        const loopCpu = cpuSample();
        stream.loopFrom = stream.commands.length;
        try {
          await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
          await ctx.settle();
        } finally {
          m.loopMs += performance.now() - loopStarted;
          stream.loopTo = stream.commands.length;
          const cpu = cpuSince(loopCpu);
          m.loopCpuMs += cpu.selfMs;
          m.loopToolsCpuMs += cpu.toolsMs;
        }
        if (withOracles) await finalOracles(ctx);
      } catch (e) {
        m.failures++;
        // labelled as the campaigns label it (fuzz-task.ts), so that a known QEMU bug met through
        // the engine (a qemu-img step's own defect) is not read as the engine's failure
        const bug =
          e instanceof Divergence ? matchKnownBug(e.details, ctx.steps, impl, layout)?.id : undefined;
        if (bug) m.knownBugs.set(bug, (m.knownBugs.get(bug) ?? 0) + 1);
        process.stderr.write(
          `(${impl}: sequence seed ${s - 1} failed, counted as run${bug ? `; known bug ${bug}` : ''}: ${String(e).slice(0, 160)})\n`,
        );
      } finally {
        await ctx.dispose();
      }
      m.ms += performance.now() - started;
      const cpu = cpuSince(cpuStarted);
      m.cpuMs += cpu.selfMs;
      m.toolsCpuMs += cpu.toolsMs;
      m.ops += ctx.operations;
      m.bytes += ctx.bytes;
      m.sequences += 1;
      stream.operations = ctx.operations;
      if (stream.commands.length > 0) m.streams.push(stream);
      stream = undefined;
    }
  } finally {
    stopRecording?.();
    await im.shutdown?.();
    m.tools = toolTalliesSince(toolsBefore);
  }
  return m;
}

/** What one data-path process reports: the op loop's figures of `measure` (streams left out). */
interface ProcessFigures {
  ops: number;
  bytes: number;
  sequences: number;
  ms: number;
  loopMs: number;
  loopCpuMs: number;
  loopToolsCpuMs: number;
  failures: number;
  /** When its measurement started and ended (epoch ms). */
  startedAt: number;
  endedAt: number;
}

/**
 * A child process of `dataPathTogether`: loads everything, says `ready`, waits for `go`, runs the
 * same op loop as the one-process measurement on its own seeds for SECONDS, prints its figures.
 */
async function dataPathProcess(impl: ImplementationName, seed: number): Promise<void> {
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('go\n')) resolve();
    });
  });
  process.stdin.pause();
  const startedAt = Date.now();
  const m = await measure(impl, false, seed);
  const figures: ProcessFigures = {
    ops: m.ops,
    bytes: m.bytes,
    sequences: m.sequences,
    ms: m.ms,
    loopMs: m.loopMs,
    loopCpuMs: m.loopCpuMs,
    loopToolsCpuMs: m.loopToolsCpuMs,
    failures: m.failures,
    startedAt,
    endedAt: Date.now(),
  };
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

interface Together {
  procs: ProcessFigures[];
  /** From `go` to the last process's end. */
  wallMs: number;
  load: { before: string; after: string };
}

/**
 * The data path as a campaign runs it: PROCS processes at once (this script again, one op loop
 * each, seeds 1 + k·10^6), started together once all have loaded (set-up apart), over one window.
 */
async function dataPathTogether(impl: ImplementationName, load: () => string): Promise<Together> {
  const script = fileURLToPath(import.meta.url);
  const children = Array.from({ length: PROCS }, (_, k) =>
    spawn(
      process.execPath,
      [
        ...process.execArgv,
        script,
        '--data-path-process',
        String(1 + k * 1_000_000),
        '--impl',
        impl,
        '--seconds',
        String(SECONDS),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    ),
  );
  const lines = children.map((c) => {
    const got: string[] = [];
    let buf = '';
    c.stdout.setEncoding('utf8');
    const ready = new Promise<void>((resolve, reject) => {
      c.stdout.on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          got.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (got[got.length - 1] === 'ready') resolve();
        }
      });
      c.on('error', reject);
      c.on('exit', (code) =>
        reject(new Error(`a data-path process exited (${String(code)}) before it was ready`)),
      );
    });
    const done = new Promise<void>((resolve, reject) => {
      c.on('exit', (code) =>
        code === 0 ? resolve() : reject(new Error(`a data-path process exited with ${String(code)}`)),
      );
    });
    return { got, ready, done };
  });
  await Promise.all(lines.map((l) => l.ready));
  const before = load();
  const go = Date.now();
  for (const c of children) c.stdin.end('go\n');
  await Promise.all(lines.map((l) => l.done));
  const procs = lines.map((l) => JSON.parse(l.got[l.got.length - 1]) as ProcessFigures);
  return {
    procs,
    wallMs: Math.max(...procs.map((p) => p.endedAt)) - go,
    load: { before, after: load() },
  };
}

interface Alone {
  ops: number;
  /** Wall time and qemu-io's CPU time, reading the stream from a file. */
  ms: number;
  cpuMs: number;
  /** Of `ms`, the time between each stream's operation-loop commands (timed from the prompts). */
  loopMs: number;
  /** Wall time through a command session (as the harness drives qemu-io). */
  sessionMs: number;
  /** The sequence that took longest through a session. */
  slowest: { seed: number; ops: number; ms: number } | undefined;
}

/**
 * qemu-io alone: each recorded stream replayed over a fresh image of its layout. From a file, the
 * streams that the harness sent to processes of the same command line (its session pool reuses a
 * process image after image) go to one qemu-io in a row, as the harness's did; through a session,
 * one per stream (which times each).
 */
async function qemuIoAlone(streams: readonly Stream[]): Promise<Alone> {
  const a: Alone = { ops: 0, ms: 0, cpuMs: 0, loopMs: 0, sessionMs: 0, slowest: undefined };
  const scratch = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(); // (where the runs' images are)
  const dirs: { file: string; session: string }[] = [];
  try {
    for (const st of streams) {
      // one fresh image per stream, copied for the other replay (a LUKS create takes seconds)
      const d = {
        file: fs.mkdtempSync(path.join(scratch, 'bench-qemu-io-')),
        session: fs.mkdtempSync(path.join(scratch, 'bench-qemu-io-')),
      };
      dirs.push(d);
      if (st.layout.backing) await qemuCreateBacking(path.join(d.file, BACKING_NAME), st.layout.backing);
      await qemuImgCreate(path.join(d.file, 'disk.qcow2'), st.layout);
      for (const name of fs.readdirSync(d.file))
        fs.copyFileSync(path.join(d.file, name), path.join(d.session, name));
      for (const dir of [d.file, d.session])
        for (const [file, bytes] of st.files) fs.writeFileSync(file.split(st.dir).join(dir), bytes);
    }
    // from a file: runs of streams with one command line, one qemu-io each
    for (let i = 0; i < streams.length;) {
      const argv = streams[i].argv;
      let text = '';
      // prompt k+1 follows command k (prompt 0 comes before the first): where each loop starts and ends
      const spans: [number, number][] = [];
      let lines = 0;
      for (; i < streams.length && JSON.stringify(streams[i].argv) === JSON.stringify(argv); i++) {
        const st = streams[i];
        spans.push([lines + st.loopFrom, lines + st.loopTo]);
        lines += st.commands.length;
        text += st.commands.map((c) => `${c.split(st.dir).join(dirs[i].file)}\n`).join('');
        a.ops += st.operations;
        // (a session not closed cleanly was not reused: the next stream had a process of its own)
        if (st.commands[st.commands.length - 1] !== 'close') {
          i++;
          break;
        }
      }
      const commands = path.join(dirs[i - 1].file, 'commands.txt');
      fs.writeFileSync(commands, `${text}quit\n`);
      const input = fs.openSync(commands, 'r');
      const cpu0 = cpuSample();
      const t0 = performance.now();
      const promptAt: number[] = [];
      try {
        // stdout read only to time the prompts: qemu-io never waits for this process
        const child = spawn(argv[0], argv.slice(1), { stdio: [input, 'pipe', 'ignore'] });
        const prompt = Buffer.from('qemu-io> ');
        let tail = Buffer.alloc(0);
        child.stdout!.on('data', (chunk: Buffer) => {
          const now = performance.now();
          const b = Buffer.concat([tail, chunk]);
          for (let at = b.indexOf(prompt); at >= 0; at = b.indexOf(prompt, at + prompt.length))
            promptAt.push(now);
          tail = b.subarray(Math.max(0, b.length - prompt.length + 1));
        });
        await new Promise<void>((resolve, reject) => {
          child.on('error', reject);
          child.on('close', () => resolve());
        });
      } finally {
        fs.closeSync(input);
      }
      a.ms += performance.now() - t0;
      for (const [from, to] of spans)
        if (promptAt[to] !== undefined && promptAt[from] !== undefined)
          a.loopMs += promptAt[to] - promptAt[from];
      a.cpuMs += cpuSince(cpu0).toolsMs;
    }
    // through a session, stream by stream
    for (const [i, st] of streams.entries()) {
      const t0 = performance.now();
      const session = await CommandSession.start({ argv: st.argv });
      await Promise.all(st.commands.map((c) => session.run(c.split(st.dir).join(dirs[i].session))));
      const ms = performance.now() - t0;
      a.sessionMs += ms;
      if (!a.slowest || ms > a.slowest.ms) a.slowest = { seed: st.seed, ops: st.operations, ms };
      await session.quit();
    }
  } finally {
    for (const d of dirs)
      for (const dir of [d.file, d.session]) fs.rmSync(dir, { recursive: true, force: true });
  }
  return a;
}

function rate(n: number, ms: number): string {
  const r = n / Math.max(ms / 1000, 1e-9);
  return r.toFixed(r >= 100 ? 0 : 2);
}

async function main(): Promise<void> {
  const load = (): string =>
    os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
  // The workers' bundle built (when out of date) before anything is timed, not in the campaign's window.
  await workerModule(process.env, (why) => process.stderr.write(`(${why})\n`));
  const loadBefore = load();
  const rows: string[][] = [];
  const toolLines: string[] = [];
  for (const impl of ['engine', 'qemu-io'] as const) {
    if (ONLY !== undefined && impl !== ONLY) continue;
    const bare = await measure(impl, false, 1);
    const together = PROCS > 0 ? await dataPathTogether(impl, load) : undefined;
    const full = await campaign(impl, 1000);
    const rates = campaignRates(full);
    const failed = full.failures.reduce((n, f) => n + f.count, 0);
    const known = full.failures
      .filter((f) => f.signature.knownBug)
      .map((f) => `${f.count} known bug ${f.signature.knownBug}`);
    const kib = (m: Measure): string => (m.bytes / Math.max(m.ops, 1) / 1024).toFixed(0);
    toolLines.push(
      `${impl}, campaign: ${rates.toolRunsPerSequence?.toFixed(2) ?? '?'} tool runs a sequence — ` +
        (rates.toolRuns ?? []).map(([k, c]) => `${k} ${c.toFixed(2)}`).join(', ') +
        `; ${full.volume.operations} ops; ${(full.volume.shrinkMs / 1000).toFixed(1)} s of worker time spent shrinking` +
        (full.problems.length ? `; harness problems: ${full.problems.join(' | ').slice(0, 300)}` : ''),
    );
    rows.push([
      impl,
      `${rate(bare.ops, bare.loopMs)} wall, ${rate(bare.ops, bare.loopCpuMs + bare.loopToolsCpuMs)} per CPU-s (${bare.ops} ops of ${kib(bare)} KiB on average, ${bare.sequences} seq; harness ${(bare.loopCpuMs / Math.max(bare.ops, 1)).toFixed(2)} + tools ${(bare.loopToolsCpuMs / Math.max(bare.ops, 1)).toFixed(2)} CPU-ms/op; ${rate(bare.ops, bare.ms)} wall with set-up)`,
      `${rateText(rates.sequencesPerSecond)} wall, ${rateText(rates.sequencesPerCpuSecond ?? 0)} per CPU-s (${rates.sequences} seq in ${rates.wallSeconds.toFixed(1)} s, ${failed} failed${known.length ? ` (${known.join(', ')})` : ''}; workers ${rates.cpuMsPerSequence?.toFixed(0)} + tools ${rates.toolsCpuMsPerSequence?.toFixed(0)} CPU-ms/seq; the whole campaign, start-up and runner included: ${(full.treeCpuMs / 1000).toFixed(1)} CPU-s, ${rate(rates.sequences, full.treeCpuMs)} seq per CPU-s)`,
      impl === 'engine' ? '≥ 5000 ops/s; ≥ 10 seq/s' : '≥ 1000 ops/s',
    ]);
    if (together) {
      const t = together;
      const rates = t.procs.map((p) => p.ops / Math.max(p.loopMs / 1000, 1e-9));
      const ops = t.procs.reduce((n, p) => n + p.ops, 0);
      const cpu = t.procs.reduce((n, p) => n + p.loopCpuMs + p.loopToolsCpuMs, 0);
      const sum = rates.reduce((a, b) => a + b, 0);
      const bytes = t.procs.reduce((n, p) => n + p.bytes, 0);
      rows.push([
        `${impl}, ${t.procs.length} processes at once`,
        `per process ${rate(sum / t.procs.length, 1000)} wall in the op loop (each: ${rates.map((r) => rate(r, 1000)).join(', ')}); machine-wide ${rate(sum, 1000)} (the processes' op-loop rates summed) and ${rate(ops, t.wallMs)} over the shared ${(t.wallMs / 1000).toFixed(1)} s wall, set-up included (${ops} ops of ${(bytes / Math.max(ops, 1) / 1024).toFixed(0)} KiB on average, ${t.procs.reduce((n, p) => n + p.sequences, 0)} seq); ${rate(ops, cpu)} per CPU-s; load ${t.load.before} → ${t.load.after}`,
        '(campaign above)',
        'the op loop as a campaign runs it: one process per job',
      ]);
    }
    if (impl === 'qemu-io') {
      const alone = await qemuIoAlone(bare.streams);
      const ratio = bare.ops / bare.loopMs / (alone.ops / Math.max(alone.loopMs, 1e-9));
      const slow = alone.slowest;
      rows.push([
        'qemu-io alone',
        `${rate(alone.ops, alone.loopMs)} wall, reading the same stream from a file (${alone.ops} ops; ${rate(alone.ops, alone.ms)} wall and ${rate(alone.ops, alone.cpuMs)} per CPU-s counting its start, opens and closes: ${(alone.cpuMs / Math.max(alone.ops, 1)).toFixed(2)} CPU-ms/op); ${rate(alone.ops, alone.sessionMs)} wall through a command session, one process per sequence` +
          (slow
            ? `; its slowest sequence: seed ${slow.seed}, ${slow.ops} ops in ${slow.ms.toFixed(0)} ms (${((100 * slow.ms) / Math.max(alone.sessionMs, 1e-9)).toFixed(0)}% of its time)`
            : ''),
        '',
        `harness/alone = ${ratio.toFixed(3)}`,
      ]);
    }
  }
  const header = [
    'implementation',
    'model-checked ops/s, data path, no oracles',
    'sequences/s with every qemu-img oracle',
    'target',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write(
    [
      `bench:harness — ${SECONDS}s per measurement; nproc ${os.cpus().length}; load ${loadBefore} before, ${load()} after; data path: sequences of up to 50 commands, one at a time in this process, then in ${PROCS} processes at once (each its own seeds); with every oracle: a campaign as \`npm run fuzz\` runs it — ${JOBS} worker process(es) × 1 sequence at a time, up to ${MAX_STEPS} steps a sequence, coverage ${COVERAGE ? 'on' : 'off'}, failures shrunk (the figures its summary prints); per CPU-s = over the harness's (or workers') CPU time plus that of the tools run (qemu-img, qemu-io, qemu-nbd, launcher)`,
      fmt(header),
      `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
      ...rows.map(fmt),
      ...toolLines,
    ].join('\n') + '\n',
  );
}

if (childArg > 0) {
  await dataPathProcess(ONLY === 'qemu-io' ? 'qemu-io' : 'engine', Number(process.argv[childArg + 1]));
} else await main();
