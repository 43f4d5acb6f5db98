/**
 * Start-up benchmark: how long `qcow2 --version` and `qcow2 info` on a small image take, end to
 * end (process spawn to exit), against `node -e 0` (the floor for any Node program) and qemu-img,
 * run interleaved in one loop so that the machine's load hits every command alike. Prints the
 * median of N runs per command and the ratio to `node -e 0` (issue 12: ≤ 80 ms, ≤ 2×).
 *
 *   npx tsx scripts/bench-startup.ts [--runs=N]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runsArg = process.argv.find((a) => a.startsWith('--runs='));
const runs = runsArg ? Number(runsArg.split('=')[1]) : 21;
const bin = path.join(root, 'bin/qcow2.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-startup-'));
const image = path.join(dir, 'small.qcow2');

/** Wall-clock ms (spawn to exit) and CPU ms (user + system, from GNU time: less sensitive to load). */
function run(cmd: string, args: string[]): { wall: number; cpu: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', 'CPU %U %S', cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const m = /CPU ([0-9.]+) ([0-9.]+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`no CPU times from GNU time: ${r.stderr}`);
  return { wall, cpu: (Number(m[1]) + Number(m[2])) * 1000 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
  run('qemu-io', ['-c', 'write -P 1 0 1M', image]);
  // The first run builds dist/ if it is stale: not part of the figures.
  run('node', [bin, '--version']);
  // The CLI runs as users start it: the executable itself (its first lines start node without
  // NODE_EXTRA_CA_CERTS, see bin/qcow2.js). `node -e 0` is shown both ways when that is set.
  const commands: Array<[string, string, string[]]> = [
    ['node -e 0', 'node', ['-e', '0']],
    ...(process.env.NODE_EXTRA_CA_CERTS
      ? [
          ['node -e 0, no extra CA certs', 'env', ['-u', 'NODE_EXTRA_CA_CERTS', 'node', '-e', '0']] as [
            string,
            string,
            string[],
          ],
        ]
      : []),
    ['qcow2 --version', bin, ['--version']],
    ['qcow2 info small.qcow2', bin, ['info', image]],
    ['qemu-img --version', 'qemu-img', ['--version']],
    ['qemu-img info small.qcow2', 'qemu-img', ['info', image]],
  ];
  const times = new Map<string, Array<{ wall: number; cpu: number }>>(commands.map(([name]) => [name, []]));
  for (let i = 0; i < runs; i++)
    for (const [name, cmd, args] of commands) times.get(name)!.push(run(cmd, args));
  const wall = (name: string) => median(times.get(name)!.map((x) => x.wall));
  const cpu = (name: string) => median(times.get(name)!.map((x) => x.cpu));
  console.log(
    `start-up, median of ${runs} runs (nproc ${os.cpus().length}, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')})`,
  );
  console.log(
    `${'command'.padEnd(30)} ${'wall ms'.padStart(9)} ${'× node'.padStart(8)} ${'cpu ms'.padStart(9)} ${'× node'.padStart(8)}`,
  );
  const [w0, c0] = [wall('node -e 0'), cpu('node -e 0')];
  for (const [name] of commands) {
    const [w, c] = [wall(name), cpu(name)];
    console.log(
      `${name.padEnd(30)} ${w.toFixed(1).padStart(9)} ${(w / w0).toFixed(2).padStart(8)} ${c.toFixed(0).padStart(9)} ${(c / Math.max(c0, 1)).toFixed(2).padStart(8)}`,
    );
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
