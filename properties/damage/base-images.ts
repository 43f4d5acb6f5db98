/**
 * The healthy images that damage starts from, made by qemu-img and qemu-io alone (so every damaged
 * image has a recipe anyone can rerun): plain data, compressed and zero clusters, snapshots, small
 * clusters (many L2 tables and refcount blocks), v2, lazy refcounts, a bitmap.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QEMU_IMG, QEMU_IO, runTool } from '../qemu/qemu-img.ts';

export interface BaseRecipe {
  name: string;
  /** `qemu-img create -f qcow2 -o …` options and size. */
  options: string;
  size: string;
  /** qemu-io commands run on the new image, in one session. */
  io: string[];
  /** qemu-img subcommands run afterwards; `IMG` stands for the image (`snapshot -c s1 IMG`). */
  img?: string[][];
  /** qemu-io commands run after `img`. */
  ioAfter?: string[];
}

const DATA = ['write -P 0x11 0 64k', 'write -P 0x22 1M 128k', 'write -c -P 0x33 4M 64k', 'write -z 8M 64k'];

export const BASE_RECIPES: readonly BaseRecipe[] = [
  { name: 'plain', options: 'compat=1.1', size: '64M', io: DATA },
  {
    name: 'snapshot',
    options: 'compat=1.1',
    size: '64M',
    io: DATA,
    img: [['snapshot', '-c', 's1', 'IMG']],
    ioAfter: ['write -P 0x44 0 32k', 'write -P 0x55 2M 64k'],
  },
  {
    name: 'small-clusters',
    options: 'compat=1.1,cluster_size=4096',
    size: '16M',
    io: ['write -P 0x11 0 64k', 'write -P 0x22 3M 16k', 'write -c -P 0x33 8M 8k', 'write -P 0x66 15M 4k'],
  },
  { name: 'v2', options: 'compat=0.10', size: '64M', io: DATA.slice(0, 3) },
  { name: 'lazy', options: 'compat=1.1,lazy_refcounts=on', size: '64M', io: DATA },
  {
    name: 'bitmap',
    options: 'compat=1.1',
    size: '64M',
    io: DATA,
    img: [['bitmap', '--add', 'IMG', 'b0']],
  },
];

export interface BaseImage {
  recipe: BaseRecipe;
  path: string;
  bytes: Buffer;
}

async function must(tool: string, args: string[]): Promise<void> {
  const r = await runTool(tool, args);
  if (r.exitCode !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
}

/** Build every base image in `dir` (qemu-img and qemu-io must be installed: it throws otherwise). */
export async function buildBaseImages(dir: string): Promise<BaseImage[]> {
  fs.mkdirSync(dir, { recursive: true });
  const out: BaseImage[] = [];
  for (const recipe of BASE_RECIPES) {
    const file = path.join(dir, `${recipe.name}.qcow2`);
    await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-o', recipe.options, file, recipe.size]);
    const session = (cmds: string[]): string[] => [...cmds.flatMap((c) => ['-c', c]), file];
    await must(QEMU_IO, session(recipe.io));
    for (const args of recipe.img ?? [])
      await must(
        QEMU_IMG,
        args.map((a) => (a === 'IMG' ? file : a)),
      );
    if (recipe.ioAfter) await must(QEMU_IO, session(recipe.ioAfter));
    out.push({ recipe, path: file, bytes: fs.readFileSync(file) });
  }
  return out;
}

/** The shell lines that rebuild a base image as `img` (for a damaged image's recipe). */
export function baseScript(recipe: BaseRecipe, img = 'img.qcow2'): string[] {
  const q = (c: string): string => `-c '${c}'`;
  const lines = [`qemu-img create -q -f qcow2 -o ${recipe.options} ${img} ${recipe.size}`];
  lines.push(`qemu-io ${recipe.io.map(q).join(' ')} ${img}`);
  for (const args of recipe.img ?? [])
    lines.push(`qemu-img ${args.map((a) => (a === 'IMG' ? img : a)).join(' ')}`);
  if (recipe.ioAfter) lines.push(`qemu-io ${recipe.ioAfter.map(q).join(' ')} ${img}`);
  return lines;
}
