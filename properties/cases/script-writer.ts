/**
 * Turns a case into a self-contained bash reproduction using only qemu-img and qemu-io (and
 * `npx qcow2 io` / `npx qcow2 snapshot` for the engine's side). The model's expectations become
 * `read -P pattern offset length` checks: on the image through the implementation, and with
 * `qemu-io -f raw` on `qemu-img convert` outputs of the disk and of every snapshot. The script exits
 * 1 as soon as something differs (the failure reproduces), 0 when everything matches.
 */
import { DiskModel } from '../model/disk-model.ts';
import type { ReferenceDisk } from '../model/reference-disk.ts';
import { bitmapOptions, formatStep, parseStep, type Step } from '../steps.ts';
import { applyToModel, expectedRefusal } from '../runner/execute-step.ts';
import type { CaseFile } from './case-file.ts';
import { BACKING_NAME, qemuObjectArgs, SECRET_ID, type ImageLayout } from '../layout.ts';
import { backingWriteCommands } from '../qemu/qemu-img.ts';

type Side = 'engine' | 'qemu-io';

/**
 * How the tools name the image: `-f qcow2 "$img"`, or for an encrypted image the secret object and
 * `--image-opts "$target"` (the script's `$target` is the image operand either way).
 */
function namingFlags(layout: ImageLayout): string {
  return layout.encrypt ? `${qemuObjectArgs(layout).join(' ')} --image-opts` : '-f qcow2';
}

function toolsFor(layout: ImageLayout): Record<Side, { io: string; snapshot: string }> {
  const n = namingFlags(layout);
  const engineFlags = layout.encrypt ? ` ${n}` : '';
  return {
    engine: { io: `npx qcow2 io${engineFlags}`, snapshot: `npx qcow2 snapshot${engineFlags}` },
    'qemu-io': { io: `qemu-io ${n}`, snapshot: `qemu-img snapshot${engineFlags}` },
  };
}

/** The shell expression of the image operand for the file in shell variable `v`. */
function operand(layout: ImageLayout, v: string): string {
  return layout.encrypt ? `"driver=qcow2,file.filename=$${v},encrypt.key-secret=${SECRET_ID}"` : `"$${v}"`;
}

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function readChecks(disk: ReferenceDisk, length: number): string[] {
  const lines: string[] = [];
  for (const run of disk.runs(0, Math.min(length, disk.size))) {
    for (let at = run.offset; at < run.offset + run.length; at += 16 << 20) {
      const len = Math.min(16 << 20, run.offset + run.length - at);
      lines.push(`read -P 0x${run.pattern.toString(16).padStart(2, '0')} ${at} ${len}`);
    }
  }
  return lines;
}

function dashC(commands: readonly string[]): string {
  return commands.map((c) => `-c ${quote(c)}`).join(' ');
}

export function writeScript(file: CaseFile): string {
  const layout = file.image.layout;
  const TOOLS = toolsFor(layout);
  const N = namingFlags(layout);
  // (`qemu-img snapshot` takes no -f)
  const NS = layout.encrypt ? ` ${N}` : '';
  const obj = layout.encrypt ? `${qemuObjectArgs(layout).join(' ')} ` : '';
  const model = new DiskModel(layout, {
    staleTailAfterUnalignedShrink: false,
    leakOnRefusedSnapshot: false,
    applyRaisesFirst: false,
    compressedAfterFree: false,
    v2GrowOverBacking: false,
  });
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
    say(
      '# Engine steps run through `npx qcow2 …` from the repository root (QCOW2_ENGINE selects another engine module).',
    );
  say('set -u');
  say('dir=$(mktemp -d) || exit 2');
  say(`trap 'rm -rf "$dir"' EXIT`);
  say('img="$dir/disk.qcow2"');
  say(`target=${operand(layout, 'img')}`);
  say('fail() { echo "REPRODUCED: $*" >&2; exit 1; }');
  say('# run TOOL… ARGS…: the tool on the image; fails on a non-zero exit or a reported failure');
  say(
    'run() { local out status; out=$("$@" "$target" 2>&1); status=$?; [ -n "$out" ] && printf \'%s\\n\' "$out"; [ $status -eq 0 ] && ! grep -qE \'failed|not found|^qemu-io: \' <<<"$out"; }',
  );
  say(
    'raw_reads() { local f=$1; shift; local out; out=$(qemu-io -f raw "$@" "$f" 2>&1); [ $? -eq 0 ] && ! grep -q failed <<<"$out" || { printf \'%s\\n\' "$out" | grep -B1 -A1 failed | head -20; return 1; }; }',
  );
  say('check_image() {');
  say(`  qemu-img check ${N} "$target" || fail "qemu-img check ($1) exit $?"`);
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

  // The layout's bitmaps, added by qemu-img whatever the implementation (as the harness does).
  for (const b of layout.bitmaps ?? []) {
    const add = `--add -g ${2 ** b.granularityBits}${b.disabled ? ' --disable' : ''}`;
    say(`qemu-img bitmap ${add} ${N} "$target" ${b.name} || exit 2`);
  }

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
    say(
      `raw_reads "$dir/active.raw" ${dashC(readChecks(model.disk, model.size))} || fail "converted disk differs from the model at ${label}"`,
    );
    for (const snap of model.snapshots.values()) {
      const exported = Math.min(model.size, snap.disk.size);
      say(
        `qemu-img convert ${N} -O raw -l snapshot.name=${snap.name} "$target" "$dir/snap.raw" || fail "convert snapshot ${snap.name}"`,
      );
      const checks = readChecks(snap.disk, exported);
      // (beyond the snapshot's own size, QEMU 7.2's export reads through to a backing file)
      if (model.size > snap.disk.size && !backing)
        checks.push(`read -P 0 ${snap.disk.size} ${model.size - snap.disk.size}`);
      say(`raw_reads "$dir/snap.raw" ${dashC(checks)} || fail "snapshot ${snap.name} differs at ${label}"`);
      if (snap.disk.size > model.size && layout.compat === '1.1') {
        say(
          `copy="$dir/copy.qcow2"; cp "$img" "$copy" && qemu-img snapshot${NS} -a ${snap.name} ${copyTarget} && qemu-img convert ${N} -O raw ${copyTarget} "$dir/snap.raw" || fail "apply ${snap.name} to a copy"`,
        );
        say(
          `raw_reads "$dir/snap.raw" ${dashC(readChecks(snap.disk, snap.disk.size))} || fail "snapshot ${snap.name} (applied to a copy) differs at ${label}"`,
        );
      }
    }
  };

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
      case 'read':
      case 'flush':
      case 'resize':
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
        break;
      }
      case 'qemu-turn':
        flushGroup();
        say(`run qemu-io ${N} ${dashC(step.ops.map(formatStep))} || fail "step ${index}: qemu turn"`);
        break;
      case 'check':
        flushGroup();
        oracleLines(`step ${index}`);
        break;
      case 'bitmap':
        flushGroup();
        say(
          `qemu-img bitmap ${bitmapOptions(step)} ${N} "$target" ${step.name} || fail "step ${index}: ${text}"`,
        );
        break;
    }
    applyToModel(model, step);
  });
  flushGroup();
  oracleLines('end of sequence');
  say('# reopen through the implementation and read everything back');
  say(
    `run ${TOOLS[side].io} ${dashC(readChecks(model.disk, model.size))} || fail "reading the image back after reopen"`,
  );
  if (model.bitmaps.size > 0 || (layout.bitmaps?.length ?? 0) > 0) {
    // The bitmaps' bits as QEMU reads them (qemu-nbd export + qemu-img map; "data": false = dirty).
    say(
      'bits() { local sock="$dir/nbd.sock" pid out; qemu-nbd -r -k "$sock" ' +
        N +
        ' -B "$1" "$target" & pid=$!;',
    );
    say('  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done;');
    say(
      '  out=$(qemu-img map --output=json --image-opts "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:$1" | sed -n \'s/.*"start": \\([0-9]*\\), "length": \\([0-9]*\\),.*"data": false.*/\\1+\\2/p\' | paste -sd" ");',
    );
    say('  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$sock"; echo "$out"; }');
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
  say('echo "no failure reproduced"');
  say('exit 0');
  return `${out.join('\n')}\n`;
}
