/**
 * A crash-state failure as a case file (the harness's CaseFile, plus `crash`: the state, the
 * entries that landed and what each touched) and its script. The script needs bash, base64,
 * gunzip, dd and qemu-img/qemu-io alone: it rebuilds the crash state from the image as of the last
 * flush before the crash (embedded, gzip + base64) and the unflushed writes that reached the disk
 * (each embedded, torn ones only in their landed sectors), then shows the oracle failing on it.
 * It exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { CaseFile } from '../cases/case-file.ts';
import { qemuCreateOptions, type ImageLayout } from '../layout.ts';
import type { Divergence } from '../runner/divergence.ts';
import { Replayer, type CrashState } from './replay.ts';
import type { StateFailure } from './oracle.ts';
import type { SequenceRun } from './crashtest.ts';
import { blklogwritesOptions, type CrashImplName } from './record.ts';
import { classifyWrite, metadataMap, type Region } from './regions.ts';

export interface LandedWrite {
  entry: number;
  kind: 'write' | 'discard';
  offset: number;
  length: number;
  region: Region;
  sectors?: number[];
}

export interface CrashCase extends CaseFile {
  crash?: {
    state: CrashState;
    failure: StateFailure;
    /** The log entries that landed since the last flush, with the region each wrote. */
    landed?: LandedWrite[];
    /** Log entries in the run, and FLUSH entries among them. */
    logEntries?: number;
    run?: SequenceRun;
  };
}

function b64gz(bytes: Uint8Array): string {
  return (
    zlib
      .gzipSync(bytes, { level: 9 })
      .toString('base64')
      .match(/.{1,76}/g)
      ?.join('\n') ?? ''
  );
}

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function landedWrites(run: SequenceRun, state: CrashState): LandedWrite[] {
  const replayer = new Replayer(run.recording.start, run.log);
  const before = metadataMap((o, l) =>
    slice(replayer.build({ ...state, landed: [], torn: undefined }), o, l),
  );
  const after = metadataMap((o, l) => slice(run.final, o, l));
  return state.landed.map((at) => {
    const e = run.log.entries[at];
    const offset = e.kind === 'write' || e.kind === 'discard' ? e.offset : 0;
    const length = e.kind === 'write' ? e.data.length : e.kind === 'discard' ? e.length : 0;
    return {
      entry: at,
      kind: e.kind === 'discard' ? 'discard' : 'write',
      offset,
      length,
      region: classifyWrite(before, after, offset),
      ...(state.torn?.at === at ? { sectors: state.torn.sectors } : {}),
    };
  });
}

function slice(bytes: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  if (offset < bytes.length) out.set(bytes.subarray(offset, Math.min(bytes.length, offset + length)));
  return out;
}

export function crashScript(
  file: Pick<CaseFile, 'comment' | 'steps' | 'impl'> & { layout: ImageLayout },
  run: SequenceRun,
  state: CrashState,
  failure: StateFailure,
  landed: LandedWrite[],
): string {
  const replayer = new Replayer(run.recording.start, run.log);
  const durable = replayer.build({ ...state, landed: [], torn: undefined }).slice();
  const layout = file.layout;
  const out: string[] = [];
  const say = (l: string): void => {
    out.push(l);
  };
  say('#!/usr/bin/env bash');
  say(`# ${file.comment.replace(/\n/g, '\n# ')}`);
  say(
    `# Crash state (${file.impl}): ${failure.category}: ${failure.observed.replace(/\n/g, ' ').slice(0, 400)}`,
  );
  say(`# Expected: ${failure.expected.replace(/\n/g, ' ').slice(0, 300)}`);
  say('#');
  say('# How the run was recorded:');
  if (file.impl === 'qemu-io') {
    say(
      `#   qemu-img create -f qcow2 -o ${qemuCreateOptions(layout)} disk.qcow2 ${layout.size}; : > disk.log`,
    );
    say(
      `#   the steps: qemu-io commands in one qemu-io (\`open -o ${blklogwritesOptions('disk.qcow2', 'disk.log', file.layout)}\`,`,
    );
    say(
      '#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>',
    );
  } else {
    say(`#   npx qcow2 create -f qcow2 -o ${qemuCreateOptions(layout)} disk.qcow2 ${layout.size}`);
    say(
      '#   then these steps through the engine on src/io/recording-device.ts (`qcow2 crashtest --impl engine`):',
    );
  }
  for (const [i, s] of file.steps.entries()) say(`#     ${i}: ${s}`);
  say(`# The log has ${run.log.entries.length} entries; the crash comes after entry ${state.crashAt - 1}.`);
  say(
    `# Durable: entries 0..${state.durableTo - 1} (up to the last FLUSH); landed since: ${landed.length} of the writes issued after it.`,
  );
  say('# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.');
  say('set -u');
  say('dir=$(mktemp -d) || exit 2');
  say(`trap 'rm -rf "$dir"' EXIT`);
  say('img="$dir/disk.qcow2"');
  say('fail() { echo "REPRODUCED: $*" >&2; exit 1; }');
  say(
    'put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }',
  );
  say(`# The image as of the last flush before the crash (${durable.length} bytes)`);
  say(`base64 -d <<'B64' | gunzip > "$img" || exit 2`);
  say(b64gz(durable));
  say('B64');
  for (const w of landed) {
    const e = run.log.entries[w.entry];
    if (e.kind === 'discard') {
      say(`# entry ${w.entry}: discard ${w.offset}+${w.length} (${w.region})`);
      say(
        `dd if=/dev/zero of="$img" bs=512 seek=$(( ${w.offset} / 512 )) count=$(( ${w.length} / 512 )) conv=notrunc status=none || exit 2`,
      );
      continue;
    }
    if (e.kind !== 'write') continue;
    const ss = run.log.sectorSize;
    const groups: { first: number; count: number }[] = [];
    for (const s of w.sectors ?? Array.from({ length: e.data.length / ss }, (_, i) => i)) {
      const g = groups[groups.length - 1];
      if (g && g.first + g.count === s) g.count += 1;
      else groups.push({ first: s, count: 1 });
    }
    for (const g of groups) {
      const torn = w.sectors
        ? ` — torn: sectors ${g.first}..${g.first + g.count - 1} of ${e.data.length / ss} landed`
        : '';
      say(`# entry ${w.entry}: write ${e.offset + g.first * ss}+${g.count * ss} (${w.region})${torn}`);
      say(`put ${e.offset + g.first * ss} <<'B64'`);
      say(b64gz(e.data.subarray(g.first * ss, (g.first + g.count) * ss)));
      say('B64');
    }
  }
  const dirty = (() => {
    const b = replayer.build(state);
    return b.length >= 80 && new DataView(b.buffer, b.byteOffset).getUint32(4) >= 3
      ? (new DataView(b.buffer, b.byteOffset).getBigUint64(72) & 1n) !== 0n
      : false;
  })();
  say('# The oracle');
  if (
    failure.category === 'crash-corruption' ||
    failure.category === 'crash-copied-clear' ||
    failure.category === 'crash-check-error' ||
    failure.category === 'crash-repair-incomplete'
  ) {
    if (dirty) {
      say('# (the dirty bit is set: `check -r all` must end clean)');
      say('qemu-img check -r all -f qcow2 "$img"; st=$?');
      say('[ $st -eq 0 ] || fail "qemu-img check -r all exit $st"');
    } else {
      say('qemu-img check -f qcow2 "$img"; st=$?');
      say('[ $st -eq 0 ] || [ $st -eq 3 ] || fail "qemu-img check exit $st (2: corruption)"');
    }
  } else if (failure.byte) {
    const { offset, acceptable, seen } = failure.byte;
    say(
      `# byte ${offset} must read ${acceptable.map((v) => `0x${v.toString(16)}`).join(' or ')}; it reads 0x${seen.toString(16)}`,
    );
    say('ok=0');
    for (const v of acceptable)
      say(
        `qemu-io -f qcow2 -r -c ${quote(`read -P 0x${v.toString(16)} ${offset} 1`)} "$img" | grep -q failed || ok=1`,
      );
    say(
      `[ $ok -eq 1 ] || { qemu-io -f qcow2 -r -c ${quote(`read -v ${offset} 16`)} "$img"; fail ${quote(`${failure.category} at byte ${offset}`)}; }`,
    );
  } else if (failure.category === 'crash-virtual-size') {
    say(
      `size=$(qemu-img info --output=json -f qcow2 "$img" | sed -n 's/.*"virtual-size": \\([0-9]*\\).*/\\1/p')`,
    );
    say(
      `case " ${failure.expected.replace(/[^0-9 ]/g, ' ').trim()} " in *" $size "*) ;; *) fail "virtual size $size" ;; esac`,
    );
  } else {
    say('qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"');
  }
  say('echo "no failure reproduced"');
  say('exit 0');
  return `${out.join('\n')}\n`;
}

export function buildCrashCase(input: {
  comment: string;
  impl: CrashImplName;
  layout: ImageLayout;
  steps: string[];
  seed: number | null;
  path: string | null;
  enabledKinds?: string[];
  divergence: Divergence;
  crash?: { state: CrashState; failure: StateFailure; run: SequenceRun };
}): CrashCase {
  const d = input.divergence.details;
  const file: CrashCase = {
    comment: input.comment,
    impl: input.impl,
    image: { layout: input.layout, createOptions: qemuCreateOptions(input.layout), size: input.layout.size },
    steps: input.steps,
    seed: input.seed,
    path: input.path,
    replayPath: null,
    enabledKinds: input.enabledKinds,
    failure: { ...d, message: input.divergence.message },
    script: '',
    foundAt: new Date().toISOString(),
  };
  if (process.env.QCOW2_ENGINE) file.engineModule = process.env.QCOW2_ENGINE;
  if (input.crash) {
    const { state, failure, run } = input.crash;
    const landed = landedWrites(run, state);
    file.crash = { state, failure, landed, logEntries: run.log.entries.length };
    file.script = crashScript({ ...file, layout: input.layout }, run, state, failure, landed);
  } else {
    file.script = `#!/usr/bin/env bash\n# ${input.comment}\n# The sequence itself failed before any crash state: replay it with \`qcow2 repro\`.\n# ${input.divergence.message.replace(/\n/g, ' ')}\nexit 1\n`;
  }
  return file;
}

/** Write `NAME.json` and an executable `NAME.sh`; returns the JSON path. */
export function saveCrashCase(dir: string, file: CrashCase): string {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const category = file.failure.category ?? file.failure.kind;
  const base = path.join(dir, `crash-${file.impl}-${category}-${file.seed ?? 'replay'}-${stamp}`);
  const { run: _run, ...crash } = file.crash ?? {};
  void _run;
  const json = { ...file, crash: file.crash ? crash : undefined };
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  fs.writeFileSync(`${base}.sh`, file.script, { mode: 0o755 });
  return `${base}.json`;
}
