/**
 * QEMU's qemu-iotests, from Debian's source package of the installed qemu-utils and nowhere else:
 * a deb-src twin of the archive entries apt already uses, `apt-get source --download-only
 * qemu=<version>`, `dpkg-source -x` into a cache directory. The directory name drops the epoch's
 * colon, which would otherwise split `check`'s PYTHONPATH.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

export const CACHE_DIR = process.env.QCOW2_IOTESTS_CACHE ?? path.join(os.homedir(), '.cache', 'qcow2-ts');

export interface Suite {
  /** Debian source version, e.g. "1:7.2+dfsg-7+deb12u18" */
  version: string;
  /** the unpacked tests/qemu-iotests directory */
  dir: string;
}

/** The source version of the installed qemu-utils ("Source: qemu (1:7.2+dfsg-7+deb12u18)"). */
export async function qemuSourceVersion(): Promise<string> {
  const r = await execa('dpkg-query', ['-W', '-f', '${Version}\t${Source}', 'qemu-utils'], { reject: false });
  if (r.exitCode !== 0) throw new Error('qemu-utils is not installed (run scripts/setup.sh)');
  const [version, source] = r.stdout.split('\t');
  const m = /\(([^)]+)\)/.exec(source ?? '');
  // Without "(version)" the source version equals the binary version.
  return m?.[1] ?? version ?? '';
}

const SUDO = process.getuid?.() === 0 ? [] : ['sudo'];

async function root(cmd: string, args: string[], cwd?: string): Promise<void> {
  const [bin, ...rest] = [...SUDO, cmd, ...args];
  await execa(bin ?? cmd, rest, { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Add deb-src lines mirroring the deb entries apt uses (deb822 and one-line styles). */
async function ensureDebSrc(): Promise<void> {
  const dir = '/etc/apt/sources.list.d';
  const ours = path.join(dir, 'qcow2-ts-deb-src.sources');
  if (fs.existsSync(ours)) return;
  const deb822 = fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.sources'))
    .map((n) => fs.readFileSync(path.join(dir, n), 'utf8'))
    .join('\n\n');
  let text = deb822
    .split(/\n\s*\n/)
    .filter((stanza) => /^Types:.*\bdeb\b/m.test(stanza) && !/^Enabled:\s*no/im.test(stanza))
    .map((stanza) => stanza.replace(/^Types:.*$/m, 'Types: deb-src'))
    .join('\n\n');
  const lists = [
    '/etc/apt/sources.list',
    ...fs
      .readdirSync(dir)
      .filter((n) => n.endsWith('.list'))
      .map((n) => path.join(dir, n)),
  ];
  const oneLine = lists
    .filter((f) => fs.existsSync(f))
    .flatMap((f) => fs.readFileSync(f, 'utf8').split('\n'))
    .filter((l) => /^deb\s/.test(l))
    .map((l) => l.replace(/^deb\s/, 'deb-src '));
  if (!text.trim() && oneLine.length === 0) throw new Error('no apt archive entries to mirror as deb-src');
  if (oneLine.length > 0) {
    const listFile = path.join(os.tmpdir(), 'qcow2-ts-deb-src.list');
    fs.writeFileSync(listFile, `${oneLine.join('\n')}\n`);
    await root('cp', [listFile, path.join(dir, 'qcow2-ts-deb-src.list')]);
  }
  if (text.trim()) {
    text = `# deb-src twin of the archive entries apt uses (qcow2-ts: npm run iotests)\n${text}\n`;
    const tmp = path.join(os.tmpdir(), 'qcow2-ts-deb-src.sources');
    fs.writeFileSync(tmp, text);
    await root('cp', [tmp, ours]);
  }
  await root('apt-get', ['update', '-qq']);
}

/** The unpacked suite, fetched and unpacked on first use; throws (loudly) when it cannot be had. */
export async function ensureSuite(log: (s: string) => void = () => {}): Promise<Suite> {
  const version = await qemuSourceVersion();
  const noEpoch = version.replace(/^\d+:/, '');
  const srcDir = path.join(CACHE_DIR, 'src');
  const unpacked = path.join(srcDir, `qemu-${noEpoch}`);
  const dir = path.join(unpacked, 'tests', 'qemu-iotests');
  if (fs.existsSync(path.join(dir, 'check'))) return { version, dir };
  fs.mkdirSync(srcDir, { recursive: true });
  const dsc = path.join(srcDir, `qemu_${noEpoch}.dsc`);
  if (!fs.existsSync(dsc)) {
    log(`iotests: fetching Debian source package qemu=${version}\n`);
    await ensureDebSrc();
    const r = await execa('apt-get', ['source', '--download-only', `qemu=${version}`], {
      cwd: srcDir,
      reject: false,
      all: true,
    });
    if (r.exitCode !== 0 || !fs.existsSync(dsc)) {
      throw new Error(`apt-get source qemu=${version} failed:\n${r.all ?? ''}`);
    }
  }
  log(`iotests: unpacking ${path.basename(dsc)}\n`);
  fs.rmSync(unpacked, { recursive: true, force: true });
  await execa('dpkg-source', ['-x', dsc, unpacked], { cwd: srcDir });
  if (!fs.existsSync(path.join(dir, 'check'))) throw new Error(`${dir}/check missing after dpkg-source -x`);
  return { version, dir };
}
