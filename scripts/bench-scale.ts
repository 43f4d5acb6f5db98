/**
 * Scale benchmark (issue 12): commands on a 2 TiB qcow2 image with a few allocated clusters,
 * `qcow2` against `qemu-img` side by side, interleaved, wall time and peak memory (max RSS from
 * GNU time) per command. Goal: each within 2× qemu-img's time and under 100 MiB.
 * Cost must follow what is allocated, not the virtual size. Every command runs under a timeout
 * (default 120 s) and a time-out is reported as such.
 *
 *   npx tsx scripts/bench-scale.ts [--runs=N] [--timeout=SECONDS]
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
const runs = argOf('runs', 3);
const timeoutSec = argOf('timeout', 120);
const bin = path.join(root, 'bin/qcow2.js');
const TIME = '/usr/bin/time';

interface Measure {
  seconds: number;
  maxRssMiB: number;
  timedOut: boolean;
}

/** Runs `cmd` under GNU time: elapsed seconds and peak resident memory. */
function measure(cmd: string, args: string[], okCodes = [0]): Measure {
  const r = spawnSync(TIME, ['-f', '%e %M', 'timeout', String(timeoutSec), cmd, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  if (r.error) throw r.error;
  const last = r.stderr.trim().split('\n').pop() ?? '';
  const m = /^([0-9.]+) ([0-9]+)$/.exec(last);
  if (!m) throw new Error(`${cmd} ${args.join(' ')}: no timing (exit ${r.status}): ${r.stderr}`);
  // GNU time prints "Command exited with non-zero status N" for failures; timeout exits 124.
  const code = /Command exited with non-zero status (\d+)/.exec(r.stderr);
  const status = code ? Number(code[1]) : 0;
  if (status === 124) return { seconds: Number(m[1]), maxRssMiB: Number(m[2]) / 1024, timedOut: true };
  if (!okCodes.includes(status)) throw new Error(`${cmd} ${args.join(' ')} exited ${status}: ${r.stderr}`);
  return { seconds: Number(m[1]), maxRssMiB: Number(m[2]) / 1024, timedOut: false };
}

function must(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-scale-'));
const img = path.join(dir, 'big.qcow2');
const copy = path.join(dir, 'copy.qcow2');
try {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '2T']);
  // A few clusters: the start, an L2 table's worth apart, the middle, the last cluster.
  const writes = [
    'write -P 1 0 64k',
    'write -P 2 512M 4k',
    'write -P 3 1T 128k',
    'write -z 1536G 1M',
    'write -P 4 2047G 64k',
    'write -P 5 2199023190016 64k', // the last cluster (2 TiB - 64 KiB)
  ];
  must('qemu-io', [...writes.flatMap((c) => ['-c', c]), img]);
  must('qemu-img', ['convert', '-O', 'qcow2', img, copy]);

  type Tool = 'qcow2' | 'qemu-img';
  const cases: Array<{ name: string; args: (out: string) => string[]; ok?: number[] }> = [
    { name: 'map --output=json', args: () => ['map', '--output=json', img] },
    { name: 'map (human)', args: () => ['map', img] },
    { name: 'convert -O qcow2', args: (out) => ['convert', '-O', 'qcow2', img, out] },
    { name: 'compare', args: () => ['compare', img, copy] },
    { name: 'check', args: () => ['check', img] },
  ];
  console.log(
    `2 TiB image, 6 small extents; medians of ${runs} runs (nproc ${os.cpus().length}, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')})`,
  );
  console.log(
    `${'case'.padEnd(20)}${'qcow2 s'.padStart(10)}${'qemu s'.padStart(10)}${'ratio'.padStart(9)}${'qcow2 MiB'.padStart(12)}${'qemu MiB'.padStart(12)}`,
  );
  // The floor for any Node program, for reading the qcow2 column (qemu-img starts in ~10 ms).
  const floor = Array.from({ length: runs }, () => measure('node', ['-e', '0']));
  console.log(
    `${'node -e 0'.padEnd(20)}${median(floor.map((m) => m.seconds))
      .toFixed(3)
      .padStart(10)}${''.padStart(19)}${Math.max(...floor.map((m) => m.maxRssMiB))
      .toFixed(1)
      .padStart(12)}`,
  );
  for (const c of cases) {
    const t: Record<Tool, Measure[]> = { qcow2: [], 'qemu-img': [] };
    for (let i = 0; i < runs; i++) {
      for (const tool of ['qcow2', 'qemu-img'] as Tool[]) {
        const out = path.join(dir, `out-${tool}.qcow2`);
        fs.rmSync(out, { force: true });
        const argv = c.args(out);
        t[tool].push(
          tool === 'qcow2' ? measure('node', [bin, ...argv], c.ok) : measure('qemu-img', argv, c.ok),
        );
        fs.rmSync(out, { force: true });
      }
    }
    const sec = (tool: Tool) =>
      t[tool].some((m) => m.timedOut) ? Infinity : median(t[tool].map((m) => m.seconds));
    const rss = (tool: Tool) => Math.max(...t[tool].map((m) => m.maxRssMiB));
    const fmt = (s: number) => (s === Infinity ? `>${timeoutSec}` : s.toFixed(3));
    console.log(
      `${c.name.padEnd(20)}${fmt(sec('qcow2')).padStart(10)}${fmt(sec('qemu-img')).padStart(10)}` +
        `${(sec('qcow2') / Math.max(sec('qemu-img'), 0.001)).toFixed(2).padStart(9)}` +
        `${rss('qcow2').toFixed(1).padStart(12)}${rss('qemu-img').toFixed(1).padStart(12)}`,
    );
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
