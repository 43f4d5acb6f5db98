/**
 * Side-by-side benchmark: `qcow2 bench` against `qemu-img bench` on fresh images.
 *
 * Both tools are spawned the same way (a child process per run, interleaved: ours, qemu, ours at
 * depth 1, then again), and both report their own "Run completed in N seconds." timer, which
 * covers only the request loop: process start-up is excluded, so the numbers compare the engines,
 * while each still runs its whole command path. Settings, identical for both: qemu-img bench's
 * defaults (cache=writeback, no flush inside the loop, queue depth 64), fresh images from
 * `qemu-img create` for each run. Medians of N runs (default 5). Also printed: each tool's CPU
 * time (user + system of the whole process, GNU time), since the wall time of a loaded machine
 * says little, and the load average.
 *
 *   npx tsx scripts/bench.ts [--runs=N]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argOf = (name: string, dflt: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : dflt;
};
const runs = argOf('runs', 5);

interface Case {
  name: string;
  size: string;
  /** Prepare the image (e.g. write it first so reads hit data). */
  prepare?: string[];
  args: string[];
}

const CASES: Case[] = [
  { name: 'seq write 64k x4096 (256 MiB)', size: '256M', args: ['-w', '-s', '64k', '-c', '4096'] },
  {
    name: 'seq read 64k x4096 (256 MiB)',
    size: '256M',
    prepare: ['-w', '-s', '64k', '-c', '4096'],
    args: ['-s', '64k', '-c', '4096'],
  },
  // 53248 = 13 x 4 KiB: 20,000 steps spread over ~1 GiB without wrapping, two writes per 64 KiB cluster at most.
  {
    name: 'scattered alloc write 4k x20000 (1 GiB)',
    size: '1G',
    args: ['-w', '-s', '4k', '-S', '53248', '-c', '20000'],
  },
];

/** Runs under GNU time: the output, and the whole process's CPU seconds (user + system). */
function sh(cmd: string, args: string[]): { out: string; cpu: number } {
  const r = spawnSync('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args], { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  const m = /CPU ([0-9.]+) ([0-9.]+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`no CPU times from GNU time: ${r.stderr}`);
  return { out: r.stdout, cpu: Number(m[1]) + Number(m[2]) };
}

function seconds(out: string): number {
  const m = /Run completed in ([0-9.]+) seconds\./.exec(out);
  if (!m) throw new Error(`no timing in output: ${out}`);
  return Number(m[1]);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-bench-'));
const oursAt =
  (depth: number) =>
  (args: string[]): { out: string; cpu: number } =>
    // The executable, as users run it (bin/qcow2.js starts node itself).
    sh(path.join(root, 'bin/qcow2.js'), ['bench', '-t', 'writeback', '-d', String(depth), ...args]);
const qemuAt =
  (depth: number) =>
  (args: string[]): { out: string; cpu: number } =>
    sh('qemu-img', ['bench', '-t', 'writeback', '-d', String(depth), ...args]);
const TOOLS = { ours: oursAt(64), qemu: qemuAt(64), 'ours d1': oursAt(1) } as const;
type Tool = keyof typeof TOOLS;
const load = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

try {
  const loadBefore = load();
  const rows: Array<{ name: string; s: Record<Tool, number>; cpu: Record<Tool, number> }> = [];
  for (const c of CASES) {
    const t: Record<Tool, number[]> = { ours: [], qemu: [], 'ours d1': [] };
    const cpu: Record<Tool, number[]> = { ours: [], qemu: [], 'ours d1': [] };
    for (let i = 0; i < runs; i++) {
      for (const tool of Object.keys(TOOLS) as Tool[]) {
        const img = path.join(dir, `${tool.replace(' ', '-')}.qcow2`);
        sh('qemu-img', ['create', '-q', '-f', 'qcow2', img, c.size]);
        const run = TOOLS[tool];
        if (c.prepare) run([...c.prepare, '-q', img]);
        const r = run([...c.args, '-f', 'qcow2', img]);
        t[tool].push(seconds(r.out));
        cpu[tool].push(r.cpu);
        // Each run as it ends (stderr), so that a run cut short on a loaded machine still shows.
        process.stderr.write(
          `${c.name} run ${i + 1} ${tool}: ${seconds(r.out)} s, cpu ${r.cpu.toFixed(2)} s, load ${load()}\n`,
        );
        fs.rmSync(img);
      }
    }
    const med = (x: Record<Tool, number[]>) =>
      Object.fromEntries(Object.entries(x).map(([k, v]) => [k, median(v)])) as Record<Tool, number>;
    rows.push({ name: c.name, s: med(t), cpu: med(cpu) });
  }
  const w = Math.max(...rows.map((r) => r.name.length));
  const col = (x: string): string => x.padStart(10);
  const ratio = (o: number, q: number): string => (q > 0 ? (o / q).toFixed(2) : 'n/a');
  console.log(
    `medians of ${runs} runs, interleaved; cache=writeback; depth 64 (qemu-img bench's default) for both; ` +
      `nproc ${os.cpus().length}, load ${loadBefore} before, ${load()} after`,
  );
  console.log(
    `${'case'.padEnd(w)}${col('qcow2 s')}${col('qemu s')}${col('ours/qemu')}${col('cpu ours')}${col('cpu qemu')}` +
      `${col('d1 s')}${col('d1/qemu')}`,
  );
  for (const { name, s, cpu } of rows) {
    console.log(
      `${name.padEnd(w)}${col(s.ours.toFixed(3))}${col(s.qemu.toFixed(3))}${col(ratio(s.ours, s.qemu))}` +
        `${col(cpu.ours.toFixed(2))}${col(cpu.qemu.toFixed(2))}${col(s['ours d1'].toFixed(3))}${col(ratio(s['ours d1'], s.qemu))}`,
    );
  }
  console.log(
    "(s: the tools' own loop timers; cpu: user + system seconds of the whole process, start and close included)",
  );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
