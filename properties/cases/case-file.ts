/** The case file: everything needed to understand and replay one failure. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageLayout } from '../layout.ts';
import { qemuCreateOptions } from '../layout.ts';
import type { ImplementationName } from '../adapters/registry.ts';
import type { DivergenceDetails } from '../runner/divergence.ts';
import { writeScript } from './script-writer.ts';
import { writeReaderScript } from '../readers/reader-script.ts';

export interface CaseFile {
  /** How the case was found (corpus entries say why they are kept). */
  comment: string;
  impl: ImplementationName;
  image: { layout: ImageLayout; createOptions: string; size: number };
  /** The shrunk sequence, in order: qemu-io commands and qemu-img subcommands (`! ` = refusal expected). */
  steps: string[];
  seed: number | null;
  path: string | null;
  replayPath: string | null;
  enabledKinds?: string[];
  failure: DivergenceDetails & { message: string };
  /** A bash script using qemu-img / qemu-io (or `npx qcow2` for the engine) that exits 1 when it reproduces. */
  script: string;
  /** The failure is QEMU's: the case must keep reproducing and stays out of the engine's regression set. */
  qemuDefect?: boolean;
  /** A timing-dependent QEMU defect: how many replays the corpus test may take to see it once. */
  reproduceAttempts?: number;
  /** The id of the known bug (properties/known-bugs/) whose signature this failure matches. */
  knownBug?: string;
  explanation?: string;
  /**
   * The failure is a reader's (properties/readers/), e.g. `libqcow`: the implementation under test
   * is not blamed; the case must keep reproducing with the reader's Debian version, and its script
   * shows the wrong bytes with that reader's own tools.
   */
  readerDefect?: string;
  /**
   * The cache mode (qemu-io's `-t`) the implementation's steps ran under, which the script replays
   * them with: `unsafe` for cases from campaigns (qemu-io sessions open with `-t unsafe`, the engine
   * in process does not sync each write), so that what depends on dirty metadata-cache entries
   * (eviction, write-back, what a flush writes) happens again. Absent in cases saved before it was
   * recorded: their scripts run qemu-io's default, write-through. qemu turns run with the default in
   * campaigns and in scripts alike.
   */
  cacheMode?: 'unsafe';
  /** The engine module the case was found with, when not the repository's (QCOW2_ENGINE). */
  engineModule?: string;
  foundAt?: string;
}

export function buildCase(input: {
  comment: string;
  impl: ImplementationName;
  layout: ImageLayout;
  steps: string[];
  seed: number | null;
  path: string | null;
  replayPath: string | null;
  enabledKinds?: string[];
  failure: DivergenceDetails & { message: string };
}): CaseFile {
  const file: CaseFile = {
    comment: input.comment,
    impl: input.impl,
    image: { layout: input.layout, createOptions: qemuCreateOptions(input.layout), size: input.layout.size },
    steps: input.steps,
    seed: input.seed,
    path: input.path,
    replayPath: input.replayPath,
    enabledKinds: input.enabledKinds,
    failure: input.failure,
    // the adapters' sessions (adapters/stdin-protocol.ts defaultOpenCommand; engine: sync off)
    cacheMode: 'unsafe',
    script: '',
    foundAt: new Date().toISOString(),
  };
  if (process.env.QCOW2_ENGINE) file.engineModule = process.env.QCOW2_ENGINE;
  if (input.failure.reader) file.readerDefect = input.failure.reader.replace(/@.*/, '');
  file.script = file.readerDefect ? writeReaderScript(file) : writeScript(file);
  return file;
}

/** Write `NAME.json` and an executable `NAME.sh` into the directory; returns the JSON path. */
export function saveCase(dir: string, file: CaseFile): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const base = path.join(
    dir,
    `case-${file.readerDefect ?? file.impl}-${file.failure.kind}-${file.seed ?? 'replay'}-${stamp}`,
  );
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(file, null, 2)}\n`);
  fs.writeFileSync(`${base}.sh`, file.script, { mode: 0o755 });
  return `${base}.json`;
}

export function loadCase(file: string): CaseFile {
  const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as CaseFile;
  if (!Array.isArray(parsed.steps) || !parsed.image?.layout || !parsed.impl) {
    throw new Error(`${file}: not a case file (needs steps, image.layout, impl)`);
  }
  return parsed;
}
