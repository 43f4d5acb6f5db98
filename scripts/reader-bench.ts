/**
 * How fast can libqcow be asked to read a whole guest disk? Three ways, side by side on the same
 * images (made by qemu-img/qemu-io), median of 3 each, in MiB of guest disk per second:
 *
 *   helper   the reader the harness uses (properties/readers/libqcow.ts): a long-lived
 *            /usr/bin/python3 + pyqcow process, 4 MiB reads compared with the model by SHA-1 /
 *            zero memcmp, the model's side computed in Node (all costs included)
 *   pyqcow   the same reads in Python alone, no comparison (the helper's floor)
 *   koffi    libqcow_file_read_buffer_at_offset called in this process through koffi (an FFI
 *            whose binaries ship in its npm package), no comparison; skipped when koffi is not
 *            installed (`npm install --no-save koffi` to include it)
 *
 *   tsx scripts/reader-bench.ts
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { LibqcowReader, PYTHON } from '../properties/readers/libqcow.ts';

interface Image {
  name: string;
  file: string;
  size: number;
  runs: [number, number, number][];
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reader-bench-'));
const MiB = 1 << 20;

async function make(
  name: string,
  options: string,
  size: number,
  runs: [number, number, number][],
): Promise<Image> {
  const file = path.join(dir, `${name}.qcow2`);
  await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', options, file, String(size)]);
  const cmds = runs.flatMap(([o, l, b]) => ['-c', `write -P ${b} ${o} ${l}`]);
  await execa('qemu-io', ['-f', 'qcow2', ...cmds, file]);
  return { name, file, size, runs };
}

function model(img: Image): (offset: number, length: number) => Uint8Array {
  return (offset, length) => {
    const out = new Uint8Array(length);
    for (const [o, l, b] of img.runs) {
      const lo = Math.max(o, offset);
      const hi = Math.min(o + l, offset + length);
      if (lo < hi) out.fill(b, lo - offset, hi - offset);
    }
    return out;
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(f: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = process.hrtime.bigint();
    await f();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return median(ms);
}

const PY_LOOP = `import sys, time, pyqcow
f = pyqcow.file(); f.open(sys.argv[1]); size = f.get_media_size(); best = []
for _ in range(3):
    t = time.perf_counter()
    for at in range(0, size, 4 << 20):
        f.read_buffer_at_offset(min(4 << 20, size - at), at)
    best.append((time.perf_counter() - t) * 1000)
print(sorted(best)[1])`;

interface KoffiLike {
  load(name: string): { func(sig: string): (...args: unknown[]) => unknown };
}

async function koffiReader(): Promise<((file: string, size: number) => number) | undefined> {
  let koffi: KoffiLike;
  try {
    const name = 'koffi';
    koffi = ((await import(name)) as { default: KoffiLike }).default;
  } catch {
    return undefined;
  }
  const lib = koffi.load('libqcow.so.1');
  const init = lib.func('int libqcow_file_initialize(_Out_ void **file, _Out_ void **error)');
  const open = lib.func('int libqcow_file_open(void *file, const char *name, int flags, _Out_ void **error)');
  const close = lib.func('int libqcow_file_close(void *file, _Out_ void **error)');
  const readAt = lib.func(
    'int64_t libqcow_file_read_buffer_at_offset(void *file, _Out_ uint8_t *buf, size_t size, int64_t off, _Out_ void **error)',
  );
  const buf = Buffer.alloc(4 * MiB);
  return (file, size) => {
    const fp: unknown[] = [null];
    const err: unknown[] = [null];
    init(fp, err);
    // LIBQCOW_OPEN_READ = 1
    if (open(fp[0], file, 1, err) !== 1) throw new Error(`koffi: libqcow_file_open failed on ${file}`);
    const t = process.hrtime.bigint();
    for (let at = 0; at < size; at += 4 * MiB) readAt(fp[0], buf, Math.min(4 * MiB, size - at), at, err);
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    close(fp[0], err);
    return ms;
  };
}

async function main(): Promise<void> {
  const images = [
    await make('sparse-1G-64k', 'cluster_size=65536', 1 << 30, [
      [0, 8 * MiB, 0x33],
      [500 * MiB, 8 * MiB, 0x44],
    ]),
    await make('sparse-256M-512', 'cluster_size=512', 256 * MiB, [[0, 8 * MiB, 0x33]]),
    await make('dense-256M-64k', 'cluster_size=65536', 256 * MiB, [[0, 256 * MiB, 0x33]]),
  ];
  const koffi = await koffiReader();
  const reader = new LibqcowReader();
  await reader.version();
  const { stdout: load } = await execa('uptime');
  console.log(`nproc ${os.cpus().length}; ${load.trim()}`);
  console.log('image              helper MiB/s  pyqcow MiB/s  koffi MiB/s');
  for (const img of images) {
    const helperMs = await time(async () => {
      const r = await reader.read({ image: img.file, parents: [], size: img.size, expected: model(img) });
      if (r.status !== 'ok') throw new Error(`${img.name}: ${JSON.stringify(r)}`);
    });
    const py = await execa(PYTHON, ['-c', PY_LOOP, img.file]);
    const pyMs = Number(py.stdout.trim());
    const koffiMs = koffi ? median([0, 1, 2].map(() => koffi(img.file, img.size))) : undefined;
    const rate = (ms: number | undefined): string =>
      ms === undefined ? 'n/a' : ((img.size / MiB / ms) * 1000).toFixed(0);
    console.log(
      `${img.name.padEnd(18)} ${rate(helperMs).padStart(12)}  ${rate(pyMs).padStart(12)}  ${rate(koffiMs).padStart(11)}`,
    );
  }
  if (!koffi)
    console.log(
      '(koffi not installed: `npm install --no-save koffi` to compare an FFI call in this process)',
    );
  await reader.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
