/**
 * CPU cost of reading a whole guest disk through the engine (what the harness's reopen oracle,
 * convert and compare do): a sparse 1 GiB image with 1 KiB clusters and a few allocated clusters,
 * a 1 GiB image over a 500 MiB raw backing file, and one whose every cluster is a zero cluster
 * (`write -z 0 1G`) over it, all made by qemu-img/qemu-io. Prints the
 * CPU milliseconds of each full read (median of `--runs`, 3 by default); `node --cpu-prof` on it
 * for a profile:
 *
 *   npx tsx scripts/profile-reads.ts [--runs N] [--chunk BYTES]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { openImage } from '../src/open.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const runs = opt('--runs', 3);
const chunk = opt('--chunk', 4 << 20);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'profile-reads-'));
const run = (cmd: string, ...a: string[]): void => void execFileSync(cmd, a, { stdio: 'ignore' });

try {
  const sparse = path.join(dir, 'sparse.qcow2');
  run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=1024', sparse, '1G');
  run(
    'qemu-io',
    '-f',
    'qcow2',
    '-c',
    'write -P 0x5a 100M 4k',
    '-c',
    'write -P 0x33 700M 64k',
    '-c',
    'write -z 800M 8k',
    '-c',
    'write -P 7 1073740800 1024',
    sparse,
  );
  const back = path.join(dir, 'back.raw');
  run('truncate', '-s', '500M', back);
  /** A 1 GiB qcow2 with 1 KiB clusters over that raw file. */
  const overRaw = (file: string): void =>
    run(
      'qemu-img',
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      'cluster_size=1024',
      '-b',
      back,
      '-F',
      'raw',
      file,
      '1G',
    );
  run('qemu-io', '-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 499M 1M', back);
  const over = path.join(dir, 'over.qcow2');
  overRaw(over);
  run(
    'qemu-io',
    '-f',
    'qcow2',
    '-c',
    'write -P 0x5a 100M 4k',
    '-c',
    'write -P 0x66 499M 2M',
    '-c',
    'write -z 10M 8k',
    over,
  );

  const zeros = path.join(dir, 'zeros.qcow2');
  overRaw(zeros);
  run('qemu-io', '-f', 'qcow2', '-c', 'write -z 0 1G', zeros);

  for (const [name, file] of [
    ['1 GiB of zero clusters over 500 MiB raw', zeros],
    ['sparse 1 GiB, 1 KiB clusters', sparse],
    ['1 GiB over 500 MiB raw', over],
  ] as const) {
    const cpu: number[] = [];
    for (let r = 0; r < runs; r++) {
      const img = openImage(file, { readOnly: true });
      const buf = new Uint8Array(chunk);
      const t0 = process.cpuUsage();
      for (let off = 0; off < img.size; off += chunk) {
        img.readInto(off + chunk > img.size ? buf.subarray(0, img.size - off) : buf, off);
      }
      const t = process.cpuUsage(t0);
      cpu.push((t.user + t.system) / 1000);
      img.close();
    }
    cpu.sort((a, b) => a - b);
    console.log(
      `${name}: ${cpu[Math.floor(cpu.length / 2)]!.toFixed(1)} CPU-ms (runs: ${cpu.map((c) => c.toFixed(1)).join(', ')})`,
    );
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
