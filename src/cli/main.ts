/**
 * `qcow2 <verb> ...`: qemu-img's verbs and options (plus `io`, qemu-io's language, and the fuzz
 * harness's `fuzz`/`repro`). Every error becomes one stderr line and exit code 1; stacks only
 * with QCOW2_DEBUG=1.
 */
import pkg from '../../package.json' with { type: 'json' };
import { isQcow2Error } from '../errors.ts';
import { UsageError } from './args.ts';
import { stdio, type Io } from './stdio.ts';
import { asQemu, program } from './program.ts';
import { setRepairReporter } from '../engine/lazy-refcounts.ts';

/** For bin/qcow2.js: which program the CLI speaks as (qcow2, qemu-img or qemu-io). */
export { programFromPath, setProgram } from './program.ts';

type Verb = (argv: string[], io: Io) => Promise<number>;

const VERBS: Record<string, () => Promise<Verb>> = {
  create: async () => (await import('./create.ts')).cmdCreate,
  info: async () => (await import('./info.ts')).cmdInfo,
  map: async () => (await import('./map.ts')).cmdMap,
  check: async () => (await import('./check.ts')).cmdCheck,
  convert: async () => (await import('./convert.ts')).cmdConvert,
  compare: async () => (await import('./compare.ts')).cmdCompare,
  resize: async () => (await import('./resize.ts')).cmdResize,
  snapshot: async () => (await import('./snapshot.ts')).cmdSnapshot,
  bitmap: async () => (await import('./bitmap.ts')).cmdBitmap,
  bench: async () => (await import('./bench.ts')).cmdBench,
  rebase: async () => (await import('./rebase.ts')).cmdRebase,
  commit: async () => (await import('./commit.ts')).cmdCommit,
  io: async () => (await import('./io.ts')).cmdIo,
  diagnose: async () => (await import('./diagnose.ts')).cmdDiagnose,
  dd: async () => (await import('./dd.ts')).cmdDd,
  measure: async () => (await import('./measure.ts')).cmdMeasure,
  amend: async () => (await import('./amend.ts')).cmdAmend,
};

const USAGE = `usage: qcow2 <command> [options]
Commands (arguments as qemu-img's):
  create [-f fmt] [-o options] [-b backing_file -F backing_fmt] [-u] [-q] filename [size]
  info [--output=human|json] [-f fmt] [--backing-chain] filename
  map [--output=human|json] [-f fmt] [--start-offset=N] [--max-length=N] filename
  check [--output=human|json] [-r leaks|all] [-f fmt] [-q] filename
  convert [-f fmt] [-O fmt] [-c] [-o options] [-l snapshot] [-n] [-p] [-q] src dst
  compare [-f fmt] [-F fmt] [-s] [-q] filename1 filename2
  resize [--shrink] [-f fmt] [-q] filename [+|-]size
  snapshot [-l | -c name | -a name | -d name] [-q] filename
  bitmap (--merge src | --add | --remove | --clear | --enable | --disable)... [-b file [-F fmt]] [-g granularity] filename bitmap
  bench [-c count] [-d depth] [-f fmt] [-n] [-o offset] [-s size] [-S step] [-t cache] [-w] [--pattern=N] [-q] filename
  rebase [-u] -b backing_file [-F backing_fmt] [-f fmt] filename
  commit [-f fmt] [-q] filename
  measure [--output=human|json] [-O fmt] [-o options] [--size N | [-f fmt] filename]
  dd [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output
  amend [-p] [-q] [-f fmt] [--force] [--image-opts] -o options filename
  io [-f fmt] [-r] [-c command]... [--object ...] [--image-opts] filename   (qemu-io commands)
  diagnose [--output=human|json] [--html PATH] filename   what is wrong with an image, in words and a picture
  fuzz [...]    the fuzz harness (properties/)
  repro [...]   replay a fuzz case
  crashtest [...]  crash states of recorded sequences (properties/crash/)
Common: --object secret,id=ID,data=...|file=...  --image-opts driver=qcow2,file.filename=F,encrypt.key-secret=ID
Sizes take k, M, G, T, P, E suffixes (binary multiples) as qemu does.
`;

async function harness(which: 'fuzz' | 'repro', argv: string[]): Promise<number> {
  const modPath = '../../properties/cli.ts';
  const mod = (await import(modPath)) as {
    runFuzzCli(argv: string[]): Promise<number>;
    runReproCli(argv: string[]): Promise<number>;
  };
  return which === 'fuzz' ? mod.runFuzzCli(argv) : mod.runReproCli(argv);
}

async function crashtest(argv: string[]): Promise<number> {
  const modPath = '../../properties/crash/cli.ts';
  const mod = (await import(modPath)) as { runCrashtestCli(argv: string[]): Promise<number> };
  return mod.runCrashtestCli(argv);
}

export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const [verb, ...rest] = argv;
  try {
    if (verb === undefined) throw new UsageError('Not enough arguments');
    if (verb === '-h' || verb === '--help' || verb === 'help') {
      io.out(USAGE);
      return 0;
    }
    if (verb === '-V' || verb === '--version') {
      // qemu-img's layout: the tool, its version, and what it implements.
      io.out(
        `qcow2 version ${pkg.version} (qcow2-ts: qemu-img and qemu-io compatible, QEMU 7.2 behaviour)\n`,
      );
      return 0;
    }
    if (verb === 'fuzz' || verb === 'repro') return await harness(verb, rest);
    if (verb === 'crashtest') return await crashtest(rest);
    const load = VERBS[verb];
    if (!load) throw new UsageError(`Command not found: ${verb}`);
    if (rest.includes('-h') || rest.includes('--help')) {
      io.out(USAGE);
      return 0;
    }
    // A dirty image's repair at open prints what its check finds, as QEMU's open does (stderr).
    setRepairReporter((lines) => {
      for (const l of lines) io.err(`${l}\n`);
    });
    return await (
      await load()
    )(rest, io);
  } catch (e) {
    return reportError(e, io);
  } finally {
    setRepairReporter(undefined);
  }
}

/** One line on stderr (two for usage errors, as qemu-img adds its "Try" hint); exit code 1. */
export function reportError(e: unknown, io: Io): number {
  if (e instanceof UsageError) {
    io.err(`${program()}: ${e.message}\n`);
    if (e.hint) io.err(`Try '${program()} --help' for more information\n`);
  } else if (isQcow2Error(e)) {
    // QEMU's tools print the message alone; our own CLI adds the stable code and the field at fault.
    io.err(
      `${program()}: ${oneLine(e.message)}${asQemu() ? '' : ` [${[e.code, ...detailsOf(e.data)].join(' ')}]`}\n`,
    );
    // QEMU's error hints (error_append_hint) follow the message as they are.
    if (typeof e.data.hint === 'string') io.err(e.data.hint);
  } else {
    const msg = e instanceof Error ? e.message : String(e);
    io.err(`${program()}: internal error: ${oneLine(msg)}\n`);
  }
  if (process.env.QCOW2_DEBUG === '1' && e instanceof Error && e.stack) io.err(`${e.stack}\n`);
  return 1;
}

/** The offending field and value of a header error, as `field=value` (offsets in hex). */
function detailsOf(data: Record<string, unknown>): string[] {
  const { field, value } = data;
  if (typeof field !== 'string' || value === undefined) return [];
  const shown = typeof value === 'number' && value >= 0x1000 ? `0x${value.toString(16)}` : String(value);
  return [`${field}=${shown}`];
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}
