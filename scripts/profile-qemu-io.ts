/**
 * Where qemu-io's own time goes on the harness's command stream: the data-path sequences of
 * `bench:harness` (same seeds, same kinds) are run once through the harness to record every command
 * line sent to qemu-io (stamp files included), then each stream is replayed into a fresh qemu-io
 * ONE COMMAND AT A TIME (send, wait for the prompt), timing each reply (wall) and qemu-io's CPU
 * across it (every thread's /proc/PID/task/TID/schedstat, in nanoseconds), summed
 * per command kind (the command's verb and flags, e.g. `read -v`, `write -q -s`, `open`).
 *
 * Usage: tsx scripts/profile-qemu-io.ts [--seconds N] (recording time, default 10) [--seeds N]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { implementation } from '../properties/adapters/registry.ts';
import { imageLayoutArbitrary } from '../properties/arbitraries/image-layout.ts';
import { commandSequenceArbitrary } from '../properties/arbitraries/command-sequence.ts';
import { DATA_PATH_KINDS, supportedKinds } from '../properties/arbitraries/command-kinds.ts';
import { RunContext } from '../properties/runner/run-context.ts';
import { recordCommands, type RecordedStream } from '../properties/adapters/stream-recording.ts';
import { BACKING_NAME, type ImageLayout } from '../properties/layout.ts';
import { qemuCreateBacking, qemuImgCreate } from '../properties/qemu/qemu-img.ts';

const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 10;
/** `--seeds N`: record exactly seeds 1..N instead (the same streams, whatever the load). */
const seedsArg = process.argv.indexOf('--seeds');
const SEEDS = seedsArg > 0 ? Number(process.argv[seedsArg + 1]) : undefined;

interface Stream extends RecordedStream {
  layout: ImageLayout;
  dir: string;
}

async function record(): Promise<Stream[]> {
  const im = implementation('qemu-io');
  const caps = await im.capabilities();
  const kinds = supportedKinds(caps).filter((k) => DATA_PATH_KINDS.includes(k));
  const arb = fc.tuple(imageLayoutArbitrary(caps), commandSequenceArbitrary(kinds, { maxCommands: 50 }));
  const streams: Stream[] = [];
  let stream: Stream | undefined;
  const stopRecording = recordCommands(() => stream);
  const deadline = Date.now() + SECONDS * 1000;
  let s = 1;
  try {
    while (SEEDS !== undefined ? s <= SEEDS : Date.now() < deadline) {
      const [[layout, commands]] = fc.sample(arb, { seed: s++, numRuns: 1 });
      const ctx = await RunContext.start(im, layout);
      ctx.pipeline = true;
      stream = { layout, dir: ctx.dir, argv: [], commands: [], files: new Map() };
      try {
        await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
        await ctx.settle();
      } catch (e) {
        process.stderr.write(`(seed ${s - 1} failed: ${String(e).slice(0, 120)})\n`);
      } finally {
        await ctx.dispose();
      }
      if (stream.commands.length > 0) streams.push(stream);
      stream = undefined;
    }
  } finally {
    stopRecording();
    await im.shutdown?.();
  }
  return streams;
}

/** `read -v 123 456` → `read -v`; `open -t unsafe -o …` → `open`. */
function kindOf(command: string): string {
  const words = command.trim().split(/\s+/);
  if (words[0] === 'open') return command.includes('blkdebug') ? 'open (blkdebug)' : 'open';
  return words.filter((w, i) => i === 0 || /^-[a-zA-Z]+$/.test(w)).join(' ');
}

/** CPU time of every thread of `pid` so far, ms (/proc/PID/task/TID/schedstat: ns on a CPU). */
function cpuMsOf(pid: number): number {
  let ns = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // the thread ended (its time is lost to this count)
    }
  }
  return ns / 1e6;
}

interface Tally {
  n: number;
  wallMs: number;
  cpuMs: number;
  bytes: number;
  outBytes: number;
}

/** The slowest single commands seen, for the report. */
const slowest: { wallMs: number; cpuMs: number; command: string }[] = [];

async function replay(st: Stream, tallies: Map<string, Tally>): Promise<void> {
  const dir = fs.mkdtempSync(
    path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'prof-qemu-io-'),
  );
  try {
    if (st.layout.backing) await qemuCreateBacking(path.join(dir, BACKING_NAME), st.layout.backing);
    await qemuImgCreate(path.join(dir, 'disk.qcow2'), st.layout);
    const moved = (text: string): string => text.split(st.dir).join(dir);
    for (const [file, bytes] of st.files) fs.writeFileSync(moved(file), bytes);
    const child = spawn(st.argv[0], st.argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const prompt = Buffer.from('qemu-io> ');
    let buf = Buffer.alloc(0);
    let wake: (() => void) | undefined;
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      wake?.();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const untilPrompt = async (): Promise<number> => {
      for (;;) {
        const at = buf.indexOf(prompt);
        if (at >= 0) {
          buf = buf.subarray(at + prompt.length);
          return at;
        }
        await new Promise<void>((r) => (wake = r));
      }
    };
    await untilPrompt();
    for (const raw of st.commands) {
      const c = moved(raw);
      const k = kindOf(c);
      const t = tallies.get(k) ?? { n: 0, wallMs: 0, cpuMs: 0, bytes: 0, outBytes: 0 };
      const cpu0 = cpuMsOf(child.pid!);
      const t0 = performance.now();
      child.stdin.write(`${c}\n`);
      const out = await untilPrompt();
      const wallMs = performance.now() - t0;
      const cpuMs = cpuMsOf(child.pid!) - cpu0;
      t.wallMs += wallMs;
      t.cpuMs += cpuMs;
      slowest.push({
        wallMs,
        cpuMs,
        command: `${c.replace(dir, '$dir')} (${st.layout.clusterBits !== undefined ? `cluster_bits ${st.layout.clusterBits}, ` : ''}size ${st.layout.size})`,
      });
      slowest.sort((a, b) => b.wallMs - a.wallMs);
      slowest.length = Math.min(slowest.length, 8);
      t.n++;
      t.outBytes += out;
      const m = /(\d+) (\d+)\s*$/.exec(c);
      if (m && /^(a?io_)?(read|write|aio_write|discard)/.test(c.trim())) t.bytes += Number(m[2]);
      tallies.set(k, t);
    }
    child.stdin.end('quit\n');
    await new Promise((r) => child.on('exit', r));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const load0 = os.loadavg()[0].toFixed(2);
  const streams = await record();
  const tallies = new Map<string, Tally>();
  for (const st of streams) await replay(st, tallies);
  const all = [...tallies.values()].reduce(
    (a, t) => ({ n: a.n + t.n, wallMs: a.wallMs + t.wallMs, cpuMs: a.cpuMs + t.cpuMs }),
    { n: 0, wallMs: 0, cpuMs: 0 },
  );
  const lines = [
    `profile-qemu-io — ${streams.length} streams, ${all.n} commands, replayed one at a time; load ${load0} before, ${os.loadavg()[0].toFixed(2)} after; nproc ${os.cpus().length}`,
    `${'kind'.padEnd(22)} ${'n'.padStart(5)} ${'wall ms'.padStart(9)} ${'cpu ms'.padStart(9)} ${'cpu %'.padStart(6)} ${'ms/cmd'.padStart(7)} ${'KiB/cmd'.padStart(8)} ${'out KiB/cmd'.padStart(11)}`,
  ];
  for (const [k, t] of [...tallies].sort((a, b) => b[1].cpuMs - a[1].cpuMs))
    lines.push(
      `${k.padEnd(22)} ${String(t.n).padStart(5)} ${t.wallMs.toFixed(0).padStart(9)} ${t.cpuMs.toFixed(0).padStart(9)} ${((100 * t.cpuMs) / Math.max(all.cpuMs, 1)).toFixed(1).padStart(6)} ${(t.wallMs / t.n).toFixed(2).padStart(7)} ${(t.bytes / t.n / 1024).toFixed(1).padStart(8)} ${(t.outBytes / t.n / 1024).toFixed(1).padStart(11)}`,
    );
  lines.push(
    `${'total'.padEnd(22)} ${String(all.n).padStart(5)} ${all.wallMs.toFixed(0).padStart(9)} ${all.cpuMs.toFixed(0).padStart(9)}`,
  );
  lines.push('slowest commands (wall ms, qemu-io CPU ms):');
  for (const x of slowest) lines.push(`  ${x.wallMs.toFixed(1)} ${x.cpuMs.toFixed(1)}  ${x.command}`);
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
