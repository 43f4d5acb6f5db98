/**
 * The campaign workers' bundle: worker-entry.ts and everything it imports (the harness and the
 * repository's engine), bundled by esbuild into one ES module, dist/fuzz-worker.mjs, with its
 * source map (V8 coverage of the engine is mapped back to src/ through it, coverage.ts).
 *
 * Why: a worker started through tsx compiles and resolves some 250 TypeScript files on a loader
 * thread before its first sequence: measured (load ~15), 820-1060 CPU-ms until it answered `init`
 * and 1.5-2.4 s of wall time, against 290-440 CPU-ms and 0.5-1.0 s from the bundle; its first
 * sequence, which loads the engine under tsx, cost 0.1-0.2 CPU-s more too. A campaign pays that
 * per worker and per respawn.
 *
 * Built on a campaign's first run and again whenever one of its inputs changed (the input list
 * esbuild reports is kept beside the bundle, with each input's size and mtime), so that a worker
 * always runs the sources as they are; written to temporary files and renamed into place (the map,
 * the bundle, the inputs list last), so that campaigns starting together never read half a
 * bundle. Tests and `--jobs 0` that run the task in process keep tsx; QCOW2_WORKER_TSX=1 starts
 * the workers through tsx too.
 *
 * Each file's `import.meta.url` is its own source URL in the bundle, so that paths relative to a
 * source (the CLI, the tool launcher, the corpus, the known-bugs list) stay what they are under tsx.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = fileURLToPath(new URL('./worker-entry.ts', import.meta.url));
export const WORKER_BUNDLE = path.join(ROOT, 'dist', 'fuzz-worker.mjs');
const INPUTS = `${WORKER_BUNDLE}.inputs.json`;

/** An input's identity as the staleness check compares it. */
type Stamp = [file: string, size: number, mtimeMs: number];

function stampOf(file: string): Stamp | undefined {
  try {
    const st = fs.statSync(file);
    return [file, st.size, st.mtimeMs];
  } catch {
    return undefined;
  }
}

/** True when the bundle is there and every input it was built from is unchanged. */
export function workerBundleCurrent(): boolean {
  let recorded: Stamp[];
  try {
    if (!fs.existsSync(WORKER_BUNDLE)) return false;
    recorded = JSON.parse(fs.readFileSync(INPUTS, 'utf8')) as Stamp[];
  } catch {
    return false;
  }
  // (a new file is only reached through an import in one of these: that file changed too)
  return recorded.every(([file, size, mtime]) => {
    const now = stampOf(file);
    return now !== undefined && now[1] === size && now[2] === mtime;
  });
}

export async function buildWorkerBundle(): Promise<void> {
  const esbuild = await import('esbuild');
  const sourceUrls: import('esbuild').Plugin = {
    name: 'source-import-meta-url',
    setup(b) {
      b.onLoad({ filter: /\.(ts|mts)$/ }, (args) => {
        if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
        const text = fs.readFileSync(args.path, 'utf8');
        return {
          contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)),
          loader: 'ts',
        };
      });
    },
  };
  const result = await esbuild.build({
    entryPoints: [ENTRY],
    outfile: WORKER_BUNDLE,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // npm packages stay packages (resolved from dist/ up to node_modules/, as from the sources)
    packages: 'external',
    // (linked: the bundle names its map, for stack traces under --enable-source-maps and for c8)
    sourcemap: 'linked',
    sourcesContent: false,
    metafile: true,
    write: false,
    plugins: [sourceUrls],
    logLevel: 'error',
  });
  const stamps: Stamp[] = [];
  for (const input of Object.keys(result.metafile.inputs)) {
    const s = stampOf(path.resolve(ROOT, input));
    if (s) stamps.push(s);
  }
  fs.mkdirSync(path.dirname(WORKER_BUNDLE), { recursive: true });
  const tag = `${process.pid}.${Date.now()}`;
  const outputs = [...result.outputFiles].sort(
    (a, b) => Number(a.path === WORKER_BUNDLE) - Number(b.path === WORKER_BUNDLE),
  );
  // map, bundle, then the inputs list: a campaign that reads the list as current finds the bundle
  // built from those inputs (one reading an older list rebuilds, at worst)
  const writes: [string, Uint8Array | string][] = [
    ...outputs.map((o): [string, Uint8Array] => [o.path, o.contents]),
    [INPUTS, JSON.stringify(stamps)],
  ];
  for (const [file, contents] of writes) {
    const tmp = `${file}.${tag}.tmp`;
    fs.writeFileSync(tmp, contents);
    fs.renameSync(tmp, file);
  }
}

/**
 * The module a campaign's worker processes run: the bundle (built or rebuilt first when needed),
 * or undefined — start them through the CLI and tsx — when an engine copy is selected
 * (QCOW2_ENGINE: a planted copy is TypeScript loaded at run time), when QCOW2_WORKER_TSX=1, or when
 * the bundle cannot be built (`onProblem` is told why).
 */
export async function workerModule(
  env: NodeJS.ProcessEnv,
  onProblem: (why: string) => void,
): Promise<string | undefined> {
  if (env.QCOW2_ENGINE || env.QCOW2_WORKER_TSX === '1') return undefined;
  try {
    if (!workerBundleCurrent()) await buildWorkerBundle();
    return WORKER_BUNDLE;
  } catch (e) {
    onProblem(
      `the workers' bundle could not be built (${e instanceof Error ? e.message : String(e)}); workers run through tsx`,
    );
    return undefined;
  }
}
