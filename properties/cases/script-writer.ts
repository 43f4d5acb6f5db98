/**
 * Turns a case into a self-contained bash reproduction using only qemu-img and qemu-io (and
 * `npx qcow2 io` / `npx qcow2 snapshot` for the engine's side). The model's expectations become
 * `read -P pattern offset length` checks: on the image through the implementation, and with
 * `qemu-io -f raw` on `qemu-img convert` outputs of the disk and of every snapshot. The script exits
 * 1 as soon as something differs (the failure reproduces), 0 when everything matches.
 */
import { checkParityLines, mapParityLines } from '../parity/parity-script.ts';
import { exposedShadowCommands, vmStateCommands } from './vm-state-script.ts';
import { DiskModel, NO_QUIRKS } from '../model/disk-model.ts';
import { bitmapOptions, formatStep, parseStep, type DataStep, type Step } from '../steps.ts';
import { stampFileName, stampScriptFunction } from '../model/stamp.ts';
import { expectedPieces } from '../model/compare-bytes.ts';
import { applyToModel, expectedRefusal } from '../runner/execute-step.ts';
import type { CaseFile } from './case-file.ts';
import { BACKING_NAME, cacheOptions, qemuObjectArgs, SECRET_ID, type ImageLayout } from '../layout.ts';
import { backingWriteCommands } from '../qemu/qemu-img.ts';
import { groupCandidates, overlapGroups } from '../model/aio-orders.ts';
import type { AioBatchStep } from '../steps.ts';
import { dropBackingFormatScript } from '../runner/backing-format.ts';

type Side = 'engine' | 'qemu-io';

/**
 * How the tools name the image: `-f qcow2 "$img"`, or for an encrypted image the secret object and
 * `--image-opts "$target"` (the script's `$target` is the image operand either way).
 */
function namingFlags(layout: ImageLayout): string {
  return layout.encrypt || layout.cache
    ? `${qemuObjectArgs(layout).join(' ')} --image-opts`.trim()
    : '-f qcow2';
}

function toolsFor(layout: ImageLayout, cacheMode?: string): Record<Side, { io: string; snapshot: string }> {
  const n = namingFlags(layout);
  const engineFlags = layout.encrypt || layout.cache ? ` ${n}` : '';
  // the cache mode the steps ran under in the campaign (`-t unsafe`: write-back, no sync per write)
  const t = cacheModeFlag(cacheMode);
  return {
    engine: { io: `npx qcow2 io${t}${engineFlags}`, snapshot: `npx qcow2 snapshot${engineFlags}` },
    'qemu-io': { io: `qemu-io${t} ${n}`, snapshot: `qemu-img snapshot${engineFlags}` },
  };
}

/** ` -t MODE` for the case's cache mode; nothing for cases saved before it was recorded (write-through). */
function cacheModeFlag(cacheMode: string | undefined): string {
  return cacheMode ? ` -t ${cacheMode}` : '';
}

/** The shell expression of the image operand for the file in shell variable `v`. */
function operand(layout: ImageLayout, v: string): string {
  if (!layout.encrypt && !layout.cache) return `"$${v}"`;
  const key = layout.encrypt ? `,encrypt.key-secret=${SECRET_ID}` : '';
  const cache = layout.cache ? `,${cacheOptions(layout)}` : '';
  return `"driver=qcow2,file.filename=$${v}${key}${cache}"`;
}

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Reads through the implementation after reopening: exact comparisons (`read_exact`, a dump of
 * the image against a dump of the expected raw file) where the model holds mixed bytes, `read -P`
 * where it holds one byte value.
 */
function readBackLines(model: DiskModel, tool: string, exact = false): string[] {
  const lines: string[] = [];
  const PIECE = 16 << 20;
  for (let base = 0; base < model.size; base += PIECE) {
    const len = Math.min(PIECE, model.size - base);
    for (const piece of expectedPieces(model.read(base, len))) {
      const off = base + piece.from;
      const n = piece.to - piece.from;
      if (piece.uniform !== undefined && !exact)
        lines.push(
          `run ${tool} -c ${quote(`read -P 0x${piece.uniform.toString(16).padStart(2, '0')} ${off} ${n}`)} || fail "reading ${off}+${n} back after reopen"`,
        );
      else lines.push(`read_exact ${off} ${n} ${tool} || fail "reading ${off}+${n} back after reopen"`);
    }
  }
  return lines;
}

/** A data step as a qemu-io command on the expected raw file (compression is irrelevant there). */
function shadowCommands(model: DiskModel, step: DataStep): string[] {
  switch (step.kind) {
    case 'write':
    case 'write-compressed':
      return [formatStep({ ...step, kind: 'write' })];
    case 'write-zeroes':
      return [`write -z ${step.offset} ${step.length}`];
    case 'discard': {
      // the model's rule: whole clusters read as zeros (nothing on v2 with a backing file)
      if (model.discardIgnored()) return [];
      const [first, end] = model.wholeClusters(step.offset, step.length);
      if (end <= first) return [];
      const start = first * model.clusterSize;
      return [`write -z ${start} ${Math.min(end * model.clusterSize, model.size) - start}`];
    }
    case 'read':
      return [];
  }
}

/** Stamp files a step's writes need (`stamp ID OFF LEN "$dir/wID.bin"`). */
function stampLines(step: Step): string[] {
  if (step.kind === 'vmstate-write' && step.stamp !== undefined)
    return [`stamp ${step.stamp} ${step.offset} ${step.length} "$dir/${stampFileName(step.stamp)}"`];
  const ops: DataStep[] =
    step.kind === 'qemu-turn'
      ? step.ops
      : step.kind === 'write' || step.kind === 'write-compressed'
        ? [step]
        : [];
  const lines: string[] = [];
  for (const op of ops)
    if ((op.kind === 'write' || op.kind === 'write-compressed') && op.stamp !== undefined)
      lines.push(`stamp ${op.stamp} ${op.offset} ${op.length} "$dir/${stampFileName(op.stamp)}"`);
  return lines;
}

/** `-c 'cmd'` arguments; a stamped write's file is named inside "$dir" (double quotes expand it). */
function dashC(commands: readonly string[]): string {
  return commands
    .map((c) => {
      const m = /^(.* -s )(w\d+\.bin)( .*)$/.exec(c);
      return m ? `-c "${m[1]}$dir/${m[2]}${m[3]}"` : `-c ${quote(c)}`;
    })
    .join(' ');
}

/**
 * A batch whose first request to reach blkdebug event `hold` waits there while the others are
 * submitted: the image opened through blkdebug, `break`, the requests, `sleep 1`, `remove_break` (which
 * releases the held request and, in QEMU 7.2, then says "Could not remove breakpoint" and exits
 * 1 — that line and blkdebug's own are left out when looking for failures), `aio_flush`.
 */
function heldAioBatch(
  layout: ImageLayout,
  hold: string,
  cmds: readonly string[],
  index: number,
  cacheMode?: string,
): string[] {
  const key = layout.encrypt ? `,encrypt.key-secret=${SECRET_ID}` : '';
  const cache = layout.cache ? `,${cacheOptions(layout)}` : '';
  const opts = `"driver=qcow2,file.driver=blkdebug,file.image.filename=$img${key}${cache}"`;
  const all = [`break ${hold} hold`, ...cmds.slice(0, -1), 'sleep 1', 'remove_break hold', 'aio_flush'];
  return [
    `# requests in flight together: the first to reach ${hold} is held there until all are submitted`,
    `out=$(qemu-io${cacheModeFlag(cacheMode)} ${qemuObjectArgs(layout).join(' ')} --image-opts ${opts} ${dashC(all)} 2>&1); printf '%s\\n' "$out"`,
    `grep -vE '^blkdebug: |^Could not remove breakpoint' <<<"$out" | grep -qE 'failed|not found|^qemu-io: ' && fail "step ${index}: aio_write batch"`,
  ];
}

export function writeScript(file: CaseFile): string {
  const layout = file.image.layout;
  const TOOLS = toolsFor(layout, file.cacheMode);
  const N = namingFlags(layout);
  // (`qemu-img snapshot` takes no -f)
  const NS = layout.encrypt || layout.cache ? ` ${N}` : '';
  const obj = layout.encrypt ? `${qemuObjectArgs(layout).join(' ')} ` : '';
  const model = new DiskModel(
    layout,
    file.impl === 'engine' ? NO_QUIRKS : { ...NO_QUIRKS, v2GrowOverLongerBackingRefused: true },
  );
  let side: Side = file.impl === 'qemu-io' ? 'qemu-io' : 'engine';
  const out: string[] = [];
  const say = (line: string): void => {
    out.push(line);
  };

  say('#!/usr/bin/env bash');
  say(`# ${file.comment.replace(/\n/g, '\n# ')}`);
  say(`# impl: ${file.impl}; seed: ${String(file.seed)}; path: ${String(file.path)}`);
  say(`# failure: ${file.failure.message.replace(/\n/g, ' ').slice(0, 500)}`);
  say(
    '# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.',
  );
  if (file.impl !== 'qemu-io')
    say('# Engine steps run through `npx qcow2 …` from the repository root (the built engine, dist/).');
  // `npx qcow2` runs the built engine (dist/); QCOW2_ENGINE reaches only the harness's adapter, so a
  // case found against a planted copy must say so, or its script passes/fails for other reasons.
  if (file.engineModule)
    say(
      `# Found with QCOW2_ENGINE=${file.engineModule}: \`npx qcow2\` below runs the built engine (dist/), not that module; replay in-process with that variable set.`,
    );
  say('set -u');
  // a known spin (qemu-img amend -o refcount_bits=N with large clusters) fails its step, not hangs
  say('# qemu-img and qemu-io under a time limit (timeout runs the programs, not these functions)');
  for (const tool of ['qemu-img', 'qemu-io'])
    say(
      `${tool}() { timeout 300 ${tool} "$@"; local s=$?; [ $s -eq 124 ] && echo "${tool} $1: no answer within 300 s" >&2; return $s; }`,
    );
  // The run directory where the harness makes its runs (runner/scratch-root.ts): which file system
  // holds the images decides their host-file holes (tmpfs keeps a hole QEMU's write-zeroes punched;
  // ext4 makes it an unwritten extent that reads as data once cached), and `qemu-img map` and
  // `qcow2 map` can see those holes.
  say(
    '# the run directory as the harness picks it: $QCOW2_FUZZ_TMPDIR, else /dev/shm with 4 GiB free, else the system one',
  );
  say(
    'root=${QCOW2_FUZZ_TMPDIR:-}; if [ -z "$root" ]; then root=${TMPDIR:-/tmp}; [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(df -P -B1 /dev/shm 2>/dev/null | awk \'NR==2 {print $4}\')" -ge 4294967296 ] 2>/dev/null && root=/dev/shm; fi',
  );
  say('dir=$(mktemp -d -p "$root") || exit 2');
  say(`trap 'rm -rf "$dir"' EXIT`);
  say('img="$dir/disk.qcow2"');
  say(`target=${operand(layout, 'img')}`);
  say('fail() { echo "REPRODUCED: $*" >&2; exit 1; }');
  say('# run TOOL… ARGS…: the tool on the image; fails on a non-zero exit or a reported failure');
  say(
    'run() { local out status; out=$("$@" "$target" 2>&1); status=$?; [ -n "$out" ] && printf \'%s\\n\' "$out"; [ $status -eq 0 ] && ! grep -qE \'failed|not found|^qemu-io: \' <<<"$out"; }',
  );
  say(
    '# stamp ID OFFSET LENGTH FILE: the data of stamped write number ID (each 512-byte sector says who wrote it for where)',
  );
  say(stampScriptFunction());
  say('# exp: the expected disk as a raw file, kept by replaying every step on it with qemu-io -f raw');
  say('exp="$dir/expected.raw"');
  say('shadow() { qemu-io -f raw "$@" "$exp" >/dev/null || exit 2; }');
  say("dumpbytes() { grep -E '^[0-9a-f]{8,}:  ' | cut -d: -f2- | sed -E 's/^  //; s/  .*$//'; }");
  say('# read_exact OFF LEN TOOL…: the image through TOOL reads exactly what the expected file holds');
  say(
    'read_exact() { local off=$1 len=$2; shift 2; cmp -s <("$@" -c "read -v $off $len" "$target" 2>&1 | dumpbytes) <(qemu-io -f raw -c "read -v $off $len" "$exp" | dumpbytes); }',
  );
  say('check_image() {');
  say(`  qemu-img check ${N} "$target" || fail "qemu-img check ($1) exit $?"`);
  for (const line of checkParityLines(file.failure.kind, N)) say(line);
  say('}');
  const backing = layout.backing;
  if (backing) {
    // The backing file, made by QEMU's tools whatever the implementation (as the harness does).
    say(`base="$dir/${BACKING_NAME}"`);
    say(`qemu-img create -q -f ${backing.format} "$base" ${backing.size} || exit 2`);
    const writes = backingWriteCommands(backing);
    if (writes.length > 0) say(`qemu-io -f ${backing.format} ${dashC(writes)} "$base" || exit 2`);
  }
  if (file.impl === 'qemu-io') {
    say(`qemu-img create -q ${obj}-f qcow2 -o ${file.image.createOptions} "$img" ${layout.size} || exit 2`);
  } else {
    // The engine creates the image (as the adapters do): a failing or hanging create reproduces.
    say(
      `timeout 300 npx qcow2 create -q ${obj}-f qcow2 -o ${file.image.createOptions} "$img" ${layout.size} || fail "image creation (engine)"`,
    );
  }

  if (backing?.probed) for (const line of dropBackingFormatScript('img')) say(line);
  // The layout's bitmaps, added by qemu-img whatever the implementation (as the harness does).
  for (const b of layout.bitmaps ?? []) {
    const add = `--add -g ${2 ** b.granularityBits}${b.disabled ? ' --disable' : ''}`;
    say(`qemu-img bitmap ${add} ${N} "$target" ${b.name} || exit 2`);
  }
  // The expected disk starts as the backing file's content cut at the image's size.
  say(`truncate -s ${layout.size} "$exp" || exit 2`);
  const initial = (backing?.writes ?? []).flatMap((w) => {
    const end = Math.min(w.offset + w.length, backing!.size, layout.size);
    return end > w.offset ? [`write -P 0x${w.pattern.toString(16)} ${w.offset} ${end - w.offset}`] : [];
  });
  if (initial.length > 0) say(`shadow ${dashC(initial)}`);
  let shadowQueue: string[] = [];
  const flushShadow = (): void => {
    if (shadowQueue.length > 0) say(`shadow ${dashC(shadowQueue)}`);
    shadowQueue = [];
  };

  const copyTarget = operand(layout, 'copy');
  const oracleLines = (label: string): void => {
    say(`# oracles: ${label}`);
    say(`check_image ${quote(label)}`);
    say(`names=$(qemu-img snapshot${NS} -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')`);
    say(
      `[ "$names" = ${quote([...model.snapshots.keys()].join(' '))} ] || fail "snapshot list ($names) at ${label}"`,
    );
    say(`qemu-img convert ${N} -O raw "$target" "$dir/active.raw" || fail "convert"`);
    say(`[ "$(stat -c %s "$dir/active.raw")" -eq ${model.size} ] || fail "virtual size at ${label}"`);
    say(`cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at ${label}"`);
    for (const snap of model.snapshots.values()) {
      const exported = Math.min(model.size, snap.disk.size);
      const copyOf = `"$dir/snap-${snap.name}.raw"`;
      say(
        `qemu-img convert ${N} -O raw -l snapshot.name=${snap.name} "$target" "$dir/snap.raw" || fail "convert snapshot ${snap.name}"`,
      );
      say(`cmp -n ${exported} "$dir/snap.raw" ${copyOf} || fail "snapshot ${snap.name} differs at ${label}"`);
      // (beyond the snapshot's own size, QEMU 7.2's export reads through to a backing file, and
      // shows the VM state the snapshot's L1 copy maps there: that part is left to the oracle)
      if (
        model.size > snap.disk.size &&
        !backing &&
        model.vmState.savedIn(snap.name, snap.disk.size, model.size).length === 0
      )
        say(
          `cmp -i ${snap.disk.size}:0 -n ${model.size - snap.disk.size} "$dir/snap.raw" /dev/zero || fail "snapshot ${snap.name} export beyond its size is not zero at ${label}"`,
        );
      if (snap.disk.size > model.size && layout.compat === '1.1') {
        say(
          `copy="$dir/copy.qcow2"; cp "$img" "$copy" && qemu-img snapshot${NS} -a ${snap.name} ${copyTarget} && qemu-img convert ${N} -O raw ${copyTarget} "$dir/snap.raw" || fail "apply ${snap.name} to a copy"`,
        );
        say(
          `cmp "$dir/snap.raw" ${copyOf} || fail "snapshot ${snap.name} (applied to a copy) differs at ${label}"`,
        );
      }
    }
  };

  // after overlapping aio_write requests the expected file follows the order the image shows
  let exactReadBack = false;
  const aioLines = (step: AioBatchStep, index: number): void => {
    const io = TOOLS[side].io;
    const cmds = [
      ...step.writes.map((w) => `aio_write -P 0x${w.pattern.toString(16)} ${w.offset} ${w.length}`),
      'aio_flush',
    ];
    if (step.hold && side === 'qemu-io')
      for (const l of heldAioBatch(layout, step.hold, cmds, index, file.cacheMode)) say(l);
    else say(`run ${io} ${dashC(cmds)} || fail "step ${index}: aio_write batch"`);
    const groups = overlapGroups(step.writes);
    for (const g of groups) {
      const candidates = groupCandidates(step.writes, g, model.read(g.offset, g.length));
      const writesOf = (order: number[]): string[] =>
        order.map(
          (i) =>
            `write -P 0x${step.writes[i].pattern.toString(16)} ${step.writes[i].offset} ${step.writes[i].length}`,
        );
      if (candidates.length === 1) {
        shadowQueue.push(...writesOf(candidates[0].order));
        continue;
      }
      flushShadow();
      exactReadBack = true;
      say(
        `# requests ${g.members.join(', ')} overlap: the image must hold the result of one serial order of them`,
      );
      say('ok=0');
      for (const c of candidates) {
        say(
          `if [ $ok = 0 ]; then cp "$exp" "$dir/cand.raw"; qemu-io -f raw ${dashC(writesOf(c.order))} "$dir/cand.raw" >/dev/null || exit 2; ` +
            `cmp -s <(${io} -c "read -v ${g.offset} ${g.length}" "$target" 2>&1 | dumpbytes) <(qemu-io -f raw -c "read -v ${g.offset} ${g.length}" "$dir/cand.raw" | dumpbytes) && { cp "$dir/cand.raw" "$exp"; ok=1; }; fi`,
        );
      }
      say(
        `[ $ok = 1 ] || fail "step ${index}: ${g.offset}+${g.length} holds no serial order of the overlapping aio_write requests"`,
      );
    }
  };
  const guestUnchanged = (index: number, text: string): void => {
    flushShadow();
    say(
      `qemu-img convert ${N} -O raw "$target" "$dir/active.raw" && cmp "$dir/active.raw" "$exp" || fail "step ${index}: the guest reads differently after ${text}"`,
    );
  };
  const backingTool = (verb: 'rebase' | 'commit' | 'amend'): string =>
    side === 'engine'
      ? `npx qcow2 ${verb}${layout.encrypt || layout.cache ? ` ${N}` : ' -f qcow2'}`
      : `qemu-img ${verb} ${N}`;

  let group: { first: number; commands: string[] } | undefined;
  const flushGroup = (): void => {
    if (!group || group.commands.length === 0) return;
    const last = group.first + group.commands.length - 1;
    say(`run ${TOOLS[side].io} ${dashC(group.commands)} || fail "steps ${group.first}-${last} (${side})"`);
    group = undefined;
  };

  file.steps.forEach((line, index) => {
    const step: Step = parseStep(line);
    const refused = expectedRefusal(model, step);
    const text = formatStep(step);
    for (const line of stampLines(step)) say(line);
    if (refused) {
      flushGroup();
      const cmd =
        step.kind === 'snapshot-create' || step.kind === 'snapshot-apply'
          ? `run ${TOOLS[side].snapshot} ${step.kind === 'snapshot-create' ? '-c' : '-a'} ${step.name}`
          : `run ${TOOLS[side].io} -c ${quote(text)}`;
      say(`if ${cmd}; then fail "step ${index}: '${text}' was accepted; QEMU refuses it"; fi`);
      return;
    }
    switch (step.kind) {
      case 'write':
      case 'write-zeroes':
      case 'write-compressed':
      case 'discard':
        shadowQueue.push(...shadowCommands(model, step));
        group ??= { first: index, commands: [] };
        group.commands.push(text);
        break;
      case 'read':
        if (step.pattern === undefined) {
          flushGroup();
          flushShadow();
          say(`read_exact ${step.offset} ${step.length} ${TOOLS[side].io} || fail "step ${index}: ${text}"`);
          break;
        }
        group ??= { first: index, commands: [] };
        group.commands.push(text);
        break;
      case 'resize':
        flushShadow();
        say(`truncate -s ${step.size} "$exp"`);
        shadowQueue.push(...exposedShadowCommands(model, step));
        group ??= { first: index, commands: [] };
        group.commands.push(text);
        break;
      case 'flush':
        group ??= { first: index, commands: [] };
        group.commands.push(text);
        break;
      case 'reopen':
        flushGroup();
        if (file.impl === 'mixed') {
          side = side === 'engine' ? 'qemu-io' : 'engine';
          say(`# step ${index}: close; the image goes to ${side}`);
        } else say(`# step ${index}: close and reopen`);
        break;
      case 'snapshot-create':
      case 'snapshot-apply':
      case 'snapshot-delete': {
        flushGroup();
        const flag = step.kind === 'snapshot-create' ? '-c' : step.kind === 'snapshot-apply' ? '-a' : '-d';
        say(`run ${TOOLS[side].snapshot} ${flag} ${step.name} || fail "step ${index}: ${text}"`);
        flushShadow();
        const copyOf = `"$dir/snap-${step.name}.raw"`;
        if (step.kind === 'snapshot-create') say(`cp "$exp" ${copyOf}`);
        else if (step.kind === 'snapshot-apply') say(`cp ${copyOf} "$exp"`);
        else say(`rm -f ${copyOf}`);
        break;
      }
      case 'qemu-turn': {
        flushGroup();
        say(`run qemu-io ${N} ${dashC(step.ops.map(formatStep))} || fail "step ${index}: qemu turn"`);
        const scratch = model.clone();
        for (const op of step.ops) {
          shadowQueue.push(...shadowCommands(scratch, op));
          applyToModel(scratch, op);
        }
        break;
      }
      case 'convert':
        flushGroup();
        say(
          `qemu-img convert -f qcow2 -O qcow2 -o ${file.image.createOptions}${step.compressed ? ' -c' : ''} "$img" "$img.new" && mv "$img.new" "$img" || fail "step ${index}: ${text}"`,
        );
        break;
      case 'check-repair':
        flushGroup();
        say(
          `out=$(qemu-img check -r ${step.mode} ${N} "$target" 2>&1); [ $? -eq 0 ] && ! grep -qE 'Repairing|Leaked|ERROR|corrupt' <<<"$out" || fail "step ${index}: ${text}: $out"`,
        );
        break;
      case 'check':
        flushGroup();
        flushShadow();
        oracleLines(`step ${index}`);
        break;
      case 'bitmap':
        flushGroup();
        say(
          `qemu-img bitmap ${bitmapOptions(step)} ${N} "$target" ${step.name} || fail "step ${index}: ${text}"`,
        );
        break;
      case 'aio-batch':
        flushGroup();
        flushShadow();
        aioLines(step, index);
        break;
      case 'base-create': {
        flushGroup();
        say(`qemu-img create -q -f ${step.format} "$dir/${step.name}" ${step.size} || exit 2`);
        const writes = backingWriteCommands(step);
        if (writes.length > 0)
          say(`qemu-io -f ${step.format} ${dashC(writes)} "$dir/${step.name}" || exit 2`);
        break;
      }
      case 'base-copy': {
        flushGroup();
        const base = model.requireBase();
        say(
          `qemu-img convert -f ${base.format} -O ${step.format} "$dir/${base.name}" "$dir/${step.name}" || exit 2`,
        );
        break;
      }
      case 'rebase': {
        flushGroup();
        const target = step.name === null ? `-b ''` : `-b ${step.name} -F ${step.format ?? 'qcow2'}`;
        say(
          `${backingTool('rebase')}${step.unsafe ? ' -u' : ''} ${target} "$target" || fail "step ${index}: ${text}"`,
        );
        guestUnchanged(index, text);
        break;
      }
      case 'commit': {
        flushGroup();
        flushShadow();
        const base = model.requireBase();
        // the backing file afterwards: the guest's view over the disk, its old bytes beyond
        say(`qemu-img convert -f ${base.format} -O raw "$dir/${base.name}" "$dir/want-base.raw" || exit 2`);
        if (base.disk.size < model.size) say(`truncate -s ${model.size} "$dir/want-base.raw"`);
        say(`dd if="$exp" of="$dir/want-base.raw" conv=notrunc status=none || exit 2`);
        say(`${backingTool('commit')} "$target" || fail "step ${index}: ${text}"`);
        guestUnchanged(index, text);
        if (base.format === 'qcow2')
          say(
            `qemu-img check -q -f qcow2 "$dir/${base.name}" || fail "step ${index}: qemu-img check of the committed ${base.name}"`,
          );
        say(
          `qemu-img convert -f ${base.format} -O raw "$dir/${base.name}" "$dir/got-base.raw" && cmp "$dir/got-base.raw" "$dir/want-base.raw" || fail "step ${index}: the committed ${base.name} differs from the guest's data"`,
        );
        break;
      }
      case 'vmstate-write':
      case 'vmstate-read':
        group ??= { first: index, commands: [] };
        group.commands.push(...vmStateCommands(model, step));
        break;
      case 'amend':
        flushGroup();
        // the side that amended in the run: the engine's amend (engine/amend.ts) or qemu-img's
        say(
          `${side === 'engine' ? `${backingTool('amend')} -o ${step.option}` : `qemu-img amend -o ${step.option} ${N}`} "$target" || fail "step ${index}: ${text}"`,
        );
        break;
    }
    applyToModel(model, step);
  });
  flushGroup();
  flushShadow();
  oracleLines('end of sequence');
  say('# reopen through the implementation and read everything back');
  for (const line of readBackLines(model, TOOLS[side].io, exactReadBack)) say(line);
  if (model.bitmaps.size > 0 || (layout.bitmaps?.length ?? 0) > 0) {
    // The bitmaps' bits as QEMU reads them (qemu-nbd export + qemu-img map; "data": false = dirty).
    say(
      'bits() { local sock="$dir/nbd.sock" pidf="$dir/nbd.pid" pid out; rm -f "$pidf"; qemu-nbd -r -k "$sock" --pid-file "$pidf" ' +
        N +
        ' -B "$1" "$target" & pid=$!;',
    );
    // ready once its pid file is written (after the export is up); the socket file exists earlier,
    // before qemu-nbd listens, and a client then is refused (qemu-bitmaps.ts)
    say(
      '  for _ in $(seq 200); do [ -s "$pidf" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done;',
    );
    say(
      '  out=$(qemu-img map --output=json --image-opts "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:$1" | sed -n \'s/.*"start": \\([0-9]*\\), "length": \\([0-9]*\\),.*"data": false.*/\\1+\\2/p\' | paste -sd" ");',
    );
    say('  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$sock" "$pidf"; echo "$out"; }');
    for (const b of model.bitmaps.list) {
      const want = b
        .dirtyRanges(model.size)
        .map((r) => `${r.offset}+${r.length}`)
        .join(' ');
      say(
        `got=$(bits ${b.name}); [ "$got" = ${quote(want)} ] || fail "bitmap ${b.name}: dirty $got, expected ${want}"`,
      );
    }
  }
  for (const line of mapParityLines(file.failure.kind, N)) say(line);
  say('echo "no failure reproduced"');
  say('exit 0');
  return `${out.join('\n')}\n`;
}
