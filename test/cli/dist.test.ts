/**
 * The published entry point: bin/qcow2.js runs the esbuild bundle in dist/ (scripts/build.mjs)
 * through V8's code cache, and the zstd wasm runtime is instantiated only when a zstd image needs
 * it (issue 12).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStale } from '../../scripts/build.mjs';
import { main } from '../../src/cli/main.ts';

const root = path.resolve(__dirname, '../..');
const bin = path.join(root, 'bin/qcow2.js');
let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-dist-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function node(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('node', args, { encoding: 'utf8', env: { ...process.env, ...env }, cwd: root });
  if (r.error) throw r.error;
  return r;
}

function qemu(tool: string, ...args: string[]): void {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  if (r.error) throw r.error; // qemu missing: a failure, never a skip
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')}: ${r.stderr}`);
}

describe('dist/', () => {
  it('bin/qcow2.js runs the bundle, current after the run, and says what main() says', async () => {
    const r = node([bin, '--version']);
    expect(r.status).toBe(0);
    expect(isStale()).toBe(false);
    expect(fs.existsSync(path.join(root, 'dist/qcow2.cjs'))).toBe(true);
    let out = '';
    await main(['--version'], { out: (s) => void (out += s), err: () => {} });
    expect(r.stdout).toBe(out);
  });

  it('loads the zstd wasm only for a zstd image', () => {
    const zlib = path.join(dir, 'zlib.qcow2');
    const zstd = path.join(dir, 'zstd.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compression_type=zlib', zlib, '1M');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', zstd, '1M');
    for (const f of [zlib, zstd]) qemu('qemu-io', '-c', 'write -c -P 7 0 64k', f);
    // Runs the bundle in-process and reports whether zstd.js was ever required.
    const probe = `
      import { createRequire } from 'node:module';
      const { loadBundle } = createRequire(import.meta.url)(${JSON.stringify(path.join(root, 'bin/load-cli.js'))});
      const { main } = loadBundle('qcow2').exports;
      const code = await main(process.argv.slice(2), { out: () => {}, err: (s) => process.stderr.write(s) });
      const cache = createRequire(import.meta.url).cache;
      console.log(JSON.stringify({ code, zstd: Object.keys(cache).some((k) => k.includes('zstd-wasm')) }));`;
    const script = path.join(dir, 'probe.mjs');
    fs.writeFileSync(script, probe);
    const probeRun = (...argv: string[]) =>
      JSON.parse(node([script, ...argv]).stdout) as { code: number; zstd: boolean };
    expect(probeRun('--version')).toEqual({ code: 0, zstd: false });
    expect(probeRun('info', zstd)).toEqual({ code: 0, zstd: false });
    expect(probeRun('io', '-c', 'read -P 7 0 64k', zlib)).toEqual({ code: 0, zstd: false });
    expect(probeRun('io', '-c', 'read -P 7 0 64k', zstd)).toEqual({ code: 0, zstd: true });
  });

  it('starts from the code cache the build made, and a cache of another bundle is not used', () => {
    // Run once so that any cache write of a first run is done; then the cache must be accepted.
    node([bin, '--version']);
    const probe = `
      const { loadBundle } = require(${JSON.stringify(path.join(root, 'bin/load-cli.js'))});
      console.log(JSON.stringify(loadBundle('qcow2').cache));`;
    const accepted = (): string => node(['-e', probe]).stdout.trim();
    expect(accepted()).toBe('"accepted"');
    // A cache whose key names another build of the bundle (same bytes after the key) is ignored.
    const cacheFile = path.join(root, 'dist/qcow2.cjs.v8cache');
    const saved = fs.readFileSync(cacheFile);
    try {
      const nl = saved.indexOf(10);
      fs.writeFileSync(
        cacheFile,
        Buffer.concat([Buffer.from('qcow2-v8cache 1 2 3\n'), saved.subarray(nl + 1)]),
      );
      expect(accepted()).toBe('"none"');
    } finally {
      fs.writeFileSync(cacheFile, saved);
    }
  });
});
