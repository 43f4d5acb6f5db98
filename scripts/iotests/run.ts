/**
 * `npm run iotests [-- [-j N] [--timeout S] [--rebaseline] [TEST...]]`: QEMU 7.2's qemu-iotests with
 * our CLI standing in for qemu-img and qemu-io. The suite comes from Debian's source package of the
 * installed qemu-utils; the tests that need only qemu-img/qemu-io are selected from their own
 * declarations; each runs with the real tools (the baseline, cached per qemu version) and with ours.
 * Prints `ours P/N, qemu P/N` (N: selected tests) and, per test that the real tools pass and ours
 * fail, the first differing output line and a category. A JSON report goes to out/iotests/.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bundleEntry, REPO_DIR, runTests, type TestResult } from './runner.ts';
import { selectTests } from './select.ts';
import { CACHE_DIR, ensureSuite } from './source.ts';

interface Args {
  jobs: number;
  timeout: number;
  rebaseline: boolean;
  baselineOnly: boolean;
  bundle: boolean;
  tests: string[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    jobs: os.availableParallelism(),
    timeout: 600,
    rebaseline: false,
    baselineOnly: false,
    // bin/qcow2.js (dist/'s CommonJS bundle with V8's code cache) starts with about half the CPU of
    // an ES module bundle of src/cli/entry.ts (0.096 s against 0.177 s per qemu-io start, measured
    // at load average 30); `--bundle` still runs the latter.
    bundle: false,
    tests: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i]!;
    if (w === '-j') a.jobs = Number(argv[++i]);
    else if (w === '--timeout') a.timeout = Number(argv[++i]);
    else if (w === '--rebaseline') a.rebaseline = true;
    else if (w === '--baseline-only') a.baselineOnly = true;
    else if (w === '--no-bundle') a.bundle = false;
    else if (w === '--bundle') a.bundle = true;
    else if (w === '-h' || w === '--help') {
      process.stdout.write(
        'usage: npm run iotests -- [-j N] [--timeout SECONDS] [--rebaseline] [--baseline-only] [--bundle] [TEST...]\n',
      );
      process.exit(0);
    } else a.tests.push(w);
  }
  if (!Number.isInteger(a.jobs) || a.jobs < 1) throw new Error('-j wants a positive integer');
  return a;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (s: string): boolean => process.stderr.write(s);
  const suite = await ensureSuite(log);
  const sel = selectTests(suite.dir);
  const unknown = args.tests.filter((t) => !sel.selected.includes(t));
  if (unknown.length) {
    for (const t of unknown)
      log(`iotests: ${t} is not selected (${sel.excluded.get(t) ?? 'no such test'})\n`);
    return 2;
  }
  const tests = args.tests.length ? args.tests : sel.selected;
  const workDir = path.join(REPO_DIR, 'out', 'iotests');
  fs.mkdirSync(workDir, { recursive: true });
  log(
    `iotests: qemu ${suite.version}, ${sel.selected.length} of ${sel.selected.length + sel.excluded.size} tests need only qemu-img/qemu-io; running ${tests.length}, ${args.jobs} at a time\n`,
  );

  // The baseline: the real tools' result per test, cached per qemu source version.
  const baselineFile = path.join(CACHE_DIR, `iotests-baseline-${suite.version.replace(/:/g, '_')}.json`);
  const baseline: Record<string, TestResult> =
    !args.rebaseline && fs.existsSync(baselineFile)
      ? (JSON.parse(fs.readFileSync(baselineFile, 'utf8')) as Record<string, TestResult>)
      : {};
  const missing = tests.filter((t) => baseline[t] === undefined);
  if (missing.length) {
    log(`iotests: baseline (real qemu-img/qemu-io) for ${missing.length} tests\n`);
    const rs = await runTests({
      iotestsDir: suite.dir,
      side: 'qemu',
      tests: missing,
      jobs: args.jobs,
      workDir,
      timeoutSeconds: args.timeout,
      onResult: (r) => log(`  qemu ${r.test} ${r.status} ${r.seconds.toFixed(1)}s\n`),
    });
    for (const r of rs) baseline[r.test] = r;
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    fs.writeFileSync(baselineFile, `${JSON.stringify(baseline, null, 1)}\n`);
  }

  if (args.baselineOnly) {
    const p = tests.filter((t) => baseline[t]!.status === 'pass').length;
    process.stdout.write(`qemu ${p}/${tests.length}\n`);
    return 0;
  }
  const bundle = args.bundle ? await bundleEntry(workDir) : undefined;
  if (!bundle) {
    // Built (and its code cache warmed) once here, not by the first of many parallel starts.
    const { build, isStale } = (await import('../build.mjs')) as {
      build(): Promise<void>;
      isStale(name: string): boolean;
    };
    if (isStale('qcow2')) await build();
  }
  const progressFile = path.join(workDir, 'ours.jsonl');
  fs.writeFileSync(progressFile, '');
  const byTime = [...tests].sort((a, b) => baseline[a]!.seconds - baseline[b]!.seconds);
  log(
    `iotests: ours (${bundle ? 'a bundle of src/cli/entry.ts' : 'bin/qcow2.js'} as qemu-img and qemu-io)\n`,
  );
  const ours = await runTests({
    bundle,
    iotestsDir: suite.dir,
    side: 'ours',
    tests: byTime,
    jobs: args.jobs,
    workDir,
    timeoutSeconds: args.timeout,
    // Tests the real tools run fastest go first; every result is also appended to a JSONL file
    // as it comes, so an interrupted run still leaves its figures.
    onResult: (r) => {
      fs.appendFileSync(progressFile, `${JSON.stringify(r)}\n`);
      log(`  ours ${r.test} ${r.status} ${r.seconds.toFixed(1)}s${r.reason ? ` — ${r.reason}` : ''}\n`);
    },
  });
  ours.sort((a, b) => tests.indexOf(a.test) - tests.indexOf(b.test));

  const n = tests.length;
  const qemuPass = tests.filter((t) => baseline[t]!.status === 'pass');
  const oursPass = ours.filter((r) => r.status === 'pass');
  const oursOfQemu = oursPass.filter((r) => baseline[r.test]!.status === 'pass').length;
  const failing = ours.filter((r) => r.status !== 'pass' && baseline[r.test]!.status === 'pass');
  const out: string[] = [];
  out.push(
    `ours ${oursPass.length}/${n}, qemu ${qemuPass.length}/${n}  (ours passes ${oursOfQemu} of the ${qemuPass.length} qemu passes)`,
  );
  const byCat = new Map<string, number>();
  for (const r of failing) byCat.set(r.category ?? r.status, (byCat.get(r.category ?? r.status) ?? 0) + 1);
  if (failing.length)
    out.push(`failing (qemu passes): ${[...byCat].map(([k, v]) => `${v} ${k}`).join(', ')}`);
  for (const r of failing) out.push(`  ${r.test}: [${r.category ?? r.status}] ${r.reason ?? ''}`);
  const qemuFails = tests.filter((t) => baseline[t]!.status !== 'pass');
  for (const t of qemuFails)
    out.push(
      `  (qemu ${baseline[t]!.status}: ${t}${baseline[t]!.reason ? ` — ${baseline[t]!.reason}` : ''}; ours: ${ours.find((r) => r.test === t)?.status})`,
    );
  process.stdout.write(`${out.join('\n')}\n`);
  fs.writeFileSync(
    path.join(workDir, 'report.json'),
    `${JSON.stringify({ version: suite.version, n, ours, baseline: tests.map((t) => baseline[t]) }, null, 1)}\n`,
  );
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`iotests: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
