/**
 * Side-by-side benchmark: `qcow2 bench` against `qemu-img bench` on fresh images.
 *
 * Both tools are spawned the same way (a child process per run) and both report their own
 * "Run completed in N seconds." timer, which covers only the request loop: process start-up (tsx
 * compiling TypeScript, for us) is excluded, so the numbers compare the engines, while each still
 * runs its whole command path. Settings, identical for both: cache=writeback (qemu-img bench's
 * default; no flush inside the loop), queue depth 1 (our engine is synchronous, so qemu gets no
 * parallelism advantage; pass --qemu-depth=64 to see qemu's default), fresh images from
 * `qemu-img create` for each run. Medians of N runs (default 5).
 *
 *   npx tsx scripts/bench.ts [--runs=N] [--qemu-depth=D]
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

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
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
const ours = (args: string[]): string =>
  sh('node', [path.join(root, 'bin/qcow2.js'), 'bench', '-t', 'writeback', '-d', '1', ...args]);
const qemuAt =
  (depth: number) =>
  (args: string[]): string =>
    sh('qemu-img', ['bench', '-t', 'writeback', '-d', String(depth), ...args]);
const TOOLS = { ours, 'qemu d64': qemuAt(64), 'qemu d1': qemuAt(1) } as const;
type Tool = keyof typeof TOOLS;

try {
  const rows: Array<[string, number, number, number]> = [];
  for (const c of CASES) {
    const t: Record<Tool, number[]> = { ours: [], 'qemu d64': [], 'qemu d1': [] };
    for (let i = 0; i < runs; i++) {
      for (const tool of Object.keys(TOOLS) as Tool[]) {
        const img = path.join(dir, `${tool.replace(' ', '-')}.qcow2`);
        sh('qemu-img', ['create', '-q', '-f', 'qcow2', img, c.size]);
        const run = TOOLS[tool];
        if (c.prepare) run([...c.prepare, '-q', img]);
        t[tool].push(seconds(run([...c.args, '-f', 'qcow2', img])));
        fs.rmSync(img);
      }
    }
    rows.push([c.name, median(t.ours), median(t['qemu d64']), median(t['qemu d1'])]);
  }
  const w = Math.max(...rows.map((r) => r[0].length));
  const col = (x: string): string => x.padStart(11);
  const ratio = (o: number, q: number): string => (q > 0 ? (o / q).toFixed(2) : 'n/a');
  console.log(
    `medians of ${runs} runs; cache=writeback; ours depth 1; qemu-img at depth 64 (its default) and 1`,
  );
  console.log(
    `${'case'.padEnd(w)}${col('qcow2 s')}${col('qemu d64 s')}${col('qemu d1 s')}${col('ours/d64')}${col('ours/d1')}`,
  );
  for (const [name, o, q64, q1] of rows) {
    console.log(
      `${name.padEnd(w)}${col(o.toFixed(3))}${col(q64.toFixed(3))}${col(q1.toFixed(3))}${col(ratio(o, q64))}${col(ratio(o, q1))}`,
    );
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
