/**
 * Scale benchmark (issue 12): commands on a 2 TiB qcow2 image with a few allocated clusters,
 * `qcow2` against `qemu-img` side by side, interleaved, wall time and peak memory (max RSS from
 * GNU time) per command. Goal: each within 2× qemu-img's time and under 100 MiB.
 * Cost must follow what is allocated, not the virtual size. Every command runs under a timeout
 * (default 120 s) and a time-out is reported as such.
 *
 * qemu-img does most of these in less time than Node takes to start, so three ratios are printed:
 * - `whole`: the whole process, ours against qemu-img's;
 * - `-node`: ours less `node -e 0` (measured in the same run, interleaved), against qemu-img's
 *   whole process: what our code costs on top of the runtime;
 * - `work`: the command itself, timed inside the process (the bundle loaded, main() from call to
 *   return), against qemu-img's whole process.
 * CPU time (user + system) is printed next to wall time: on a loaded machine it says more.
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
  cpu: number;
  maxRssMiB: number;
  timedOut: boolean;
  /** Ours only: the command's own time inside the process (seconds), wall and CPU. */
  work?: number;
  workCpu?: number;
}

/**
 * Runs `cmd` under GNU time: elapsed seconds (measured here, to the millisecond), CPU seconds and
 * peak resident memory.
 */
function measure(cmd: string, args: string[], okCodes = [0]): Measure {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(TIME, ['-f', '%U %S %M', 'timeout', String(timeoutSec), cmd, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw r.error;
  const last = r.stderr.trim().split('\n').pop() ?? '';
  const m = /^([0-9.]+) ([0-9.]+) ([0-9]+)$/.exec(last);
  if (!m) throw new Error(`${cmd} ${args.join(' ')}: no timing (exit ${r.status}): ${r.stderr}`);
  const base = { seconds, cpu: Number(m[1]) + Number(m[2]), maxRssMiB: Number(m[3]) / 1024 };
  // GNU time prints "Command exited with non-zero status N" for failures; timeout exits 124.
  const code = /Command exited with non-zero status (\d+)/.exec(r.stderr);
  const status = code ? Number(code[1]) : 0;
  if (status === 124) return { ...base, timedOut: true };
  if (!okCodes.includes(status)) throw new Error(`${cmd} ${args.join(' ')} exited ${status}: ${r.stderr}`);
  const work = /^QCOW2_WORK_SECONDS ([0-9.]+) ([0-9.]+)$/m.exec(r.stdout);
  return {
    ...base,
    timedOut: false,
    work: work ? Number(work[1]) : undefined,
    workCpu: work ? Number(work[2]) : undefined,
  };
}

/**
 * Ours, with the command's own time: the bundle (bin/load-cli.js) loaded, then main() timed from
 * call to return; its output is counted, not printed. The process is otherwise bin/qcow2.js's.
 */
const TIMED = `
const { loadBundle } = require(${JSON.stringify(path.join(root, 'bin/load-cli.js'))});
const cli = loadBundle('qcow2').exports;
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
cli.main(process.argv.slice(1), { out() {}, err: (s) => process.stderr.write(s) }).then((code) => {
  const c = process.cpuUsage(c0);
  process.stdout.write('QCOW2_WORK_SECONDS ' + Number(process.hrtime.bigint() - t0) / 1e9 + ' ' + (c.user + c.system) / 1e6 + '\\n');
  process.exitCode = code;
});`;

/**
 * node as bin/qcow2.js starts it (the executable, as users run it): without NODE_EXTRA_CA_CERTS,
 * whose certificates Node would parse first (see bin/qcow2.js), so that the floor is the same.
 */
const node = (args: string[]): [string, string[]] =>
  process.env.NODE_EXTRA_CA_CERTS ? ['env', ['-u', 'NODE_EXTRA_CA_CERTS', 'node', ...args]] : ['node', args];

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
  const cols: Array<[string, number]> = [
    ['case', 20],
    ['qcow2 s', 9],
    ['qemu s', 9],
    ['whole', 7],
    ['-node', 7],
    ['work s', 8],
    ['work', 7],
    ['work cpu', 9],
    ['cpu ours', 9],
    ['cpu qemu', 9],
    ['MiB ours', 9],
    ['MiB qemu', 9],
  ];
  const row = (cells: string[]) =>
    console.log(cells.map((x, i) => (i === 0 ? x.padEnd(cols[i]![1]) : x.padStart(cols[i]![1]))).join(''));
  row(cols.map(([name]) => name));
  const fmt = (s: number | undefined) =>
    s === undefined ? '-' : s === Infinity ? `>${timeoutSec}` : s.toFixed(3);
  const ratio = (a: number, b: number) => (a / Math.max(b, 0.001)).toFixed(2);
  // The floor for any Node program (qemu-img starts in a few ms), measured between the cases.
  const floor: Measure[] = [];
  /** Cases whose goal (2x qemu-img's whole process) lies below Node's own start and exit. */
  const beyondNode: string[] = [];
  for (const c of cases) {
    const t: Record<Tool | 'timed', Measure[]> = { qcow2: [], 'qemu-img': [], timed: [] };
    for (let i = 0; i < runs; i++) {
      floor.push(measure(...node(['-e', '0'])));
      for (const tool of ['qcow2', 'timed', 'qemu-img'] as const) {
        const out = path.join(dir, `out-${tool}.qcow2`);
        fs.rmSync(out, { force: true });
        const argv = c.args(out);
        t[tool].push(
          tool === 'qcow2'
            ? measure(bin, argv, c.ok)
            : tool === 'timed'
              ? measure(...node(['-e', TIMED, ...argv]), c.ok)
              : measure('qemu-img', argv, c.ok),
        );
        fs.rmSync(out, { force: true });
      }
    }
    const sec = (tool: Tool) =>
      t[tool].some((m) => m.timedOut) ? Infinity : median(t[tool].map((m) => m.seconds));
    const cpu = (tool: Tool) => median(t[tool].map((m) => m.cpu));
    const rss = (tool: Tool) => Math.max(...t[tool].map((m) => m.maxRssMiB));
    const node0 = median(floor.map((m) => m.seconds));
    const works = t.timed.map((m) => m.work).filter((w): w is number => w !== undefined);
    const work = works.length === runs ? median(works) : undefined;
    const [ours, qemu] = [sec('qcow2'), sec('qemu-img')];
    if (2 * qemu < node0) {
      beyondNode.push(
        `${c.name}: 2x qemu-img is ${fmt(2 * qemu)} s, but \`node -e 0\` alone takes ${fmt(node0)} s: ` +
          `no Node process can be within 2x. Ours takes ${fmt(ours)} s, of which the command itself ` +
          `${fmt(work)} s (${work === undefined ? '-' : ratio(work, qemu)}x qemu-img's whole process).`,
      );
    }
    row([
      c.name,
      fmt(ours),
      fmt(qemu),
      ratio(ours, qemu),
      ratio(Math.max(ours - node0, 0), qemu),
      fmt(work),
      work === undefined ? '-' : ratio(work, qemu),
      fmt(median(t.timed.map((m) => m.workCpu ?? NaN))),
      cpu('qcow2').toFixed(2),
      cpu('qemu-img').toFixed(2),
      rss('qcow2').toFixed(1),
      rss('qemu-img').toFixed(1),
    ]);
  }
  row([
    'node -e 0',
    fmt(median(floor.map((m) => m.seconds))),
    '',
    '',
    '',
    '',
    '',
    '',
    median(floor.map((m) => m.cpu)).toFixed(2),
    '',
    Math.max(...floor.map((m) => m.maxRssMiB)).toFixed(1),
    '',
  ]);
  console.log(
    `(whole: ours / qemu-img, whole processes; -node: (ours - node -e 0) / qemu-img; work: the command ` +
      `inside our process / qemu-img's whole process; work cpu: its CPU seconds; cpu: whole processes' user + system; load after: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')})`,
  );
  for (const line of beyondNode) console.log(line);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
