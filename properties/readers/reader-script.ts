/**
 * The script of a reader's case (`readerDefect: 'libqcow'`): QEMU's tools alone make the image
 * (qemu-img create, the steps through qemu-io and qemu-img snapshot), then Debian's libqcow reads
 * the whole guest disk at the same checkpoints as the harness (after each flush, at the end), in
 * the same 4 MiB reads from offset 0, through `/usr/bin/python3 -c '… import pyqcow …'`, and prints
 * what it read and what it should have read. Exit 1: libqcow still reads wrong bytes (or hangs,
 * or crashes); 0: it reads the model's bytes; 2: set-up failed.
 */
import { DiskModel, NO_QUIRKS } from '../model/disk-model.ts';
import { formatStep, parseStep, type Step } from '../steps.ts';
import { applyToModel, expectedRefusal } from '../runner/execute-step.ts';
import type { CaseFile } from '../cases/case-file.ts';
import { BACKING_NAME, FUZZ_SECRET, qemuObjectArgs, SECRET_ID, type ImageLayout } from '../layout.ts';
import { backingWriteCommands } from '../qemu/qemu-img.ts';
import { CHUNK } from './libqcow.ts';

/** Reads like the harness: chunks of CHUNK bytes from 0; each compared with the runs it should hold. */
const READ_PY = `import json, sys, pyqcow
img, parent, password, runs_file = sys.argv[1:5]
runs = json.load(open(runs_file))
size = sum(r[1] for r in runs)
files = []
if parent:
    p = pyqcow.file(); p.open(parent); files.append(p)
f = pyqcow.file()
if password:
    f.set_password(password)
f.open(img)
if parent:
    f.set_parent(files[0])
print("libqcow %s reads %s: media size %d (expected %d)" % (pyqcow.get_version(), img, f.get_media_size(), size))
if f.get_media_size() != size:
    print("WRONG SIZE"); sys.exit(1)
CHUNK = ${CHUNK}
at = 0
while at < size:
    n = min(CHUNK, size - at)
    want = bytearray(n)
    for off, length, byte in runs:
        lo, hi = max(off, at), min(off + length, at + n)
        if lo < hi and byte:
            want[lo - at:hi - at] = bytes([byte]) * (hi - lo)
    got = f.read_buffer_at_offset(n, at)
    if got != want:
        i = 0
        while i < min(len(got), n) and got[i] == want[i]:
            i += 1
        print("WRONG BYTES at guest offset %d (0x%x)" % (at + i, at + i))
        print("  libqcow read:   %s" % got[i:i + 16].hex(" ") if i < len(got) else "  libqcow read:   only %d of %d bytes" % (len(got), n))
        print("  should be read: %s" % bytes(want[i:i + 16]).hex(" "))
        sys.exit(1)
    at += n
print("libqcow read the whole disk as expected")
`;

function quote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function dashC(commands: readonly string[]): string {
  return commands.map((c) => `-c ${quote(c)}`).join(' ');
}

/** `qemu-io`/`qemu-img snapshot` naming the image (`$img`), encrypted images through --image-opts. */
function naming(layout: ImageLayout): { io: string; snapshot: string; target: string } {
  if (!layout.encrypt) return { io: 'qemu-io -f qcow2', snapshot: 'qemu-img snapshot', target: '"$img"' };
  const obj = qemuObjectArgs(layout).join(' ');
  return {
    io: `qemu-io ${obj} --image-opts`,
    snapshot: `qemu-img snapshot ${obj} --image-opts`,
    target: `"driver=qcow2,file.filename=$img,encrypt.key-secret=${SECRET_ID}"`,
  };
}

export function writeReaderScript(file: CaseFile): string {
  const layout = file.image.layout;
  const reader = file.readerDefect ?? 'libqcow';
  const tools = naming(layout);
  const model = new DiskModel(layout, NO_QUIRKS);
  const out: string[] = [];
  const say = (line: string): void => {
    out.push(line);
  };
  say('#!/usr/bin/env bash');
  say(`# ${file.comment.replace(/\n/g, '\n# ')}`);
  say(
    `# A defect of the reader ${reader}, not of the implementation under test (found with --impl ${file.impl}).`,
  );
  say(`# failure: ${file.failure.message.replace(/\n/g, ' ').slice(0, 500)}`);
  say("# QEMU's tools make the image; Debian's python3-libqcow (pyqcow) reads it back.");
  say(
    '# Exits 1 when libqcow still reads wrong bytes, hangs or crashes; 0 when it reads the expected bytes; 2 on set-up errors.',
  );
  say('set -u');
  say('dir=$(mktemp -d) || exit 2');
  say(`trap 'rm -rf "$dir"' EXIT`);
  say('img="$dir/disk.qcow2"');
  say(`read_py=${quote(READ_PY)}`);
  const backing = layout.backing;
  const parent = backing ? `"$dir/${BACKING_NAME}"` : "''";
  const password = layout.encrypt ? quote(FUZZ_SECRET) : "''";
  say(
    '# libqcow_reads N: libqcow reads the whole disk; $dir/expected.N.json holds the runs [offset, length, byte] it should read',
  );
  say('libqcow_reads() {');
  say(`  timeout 10 /usr/bin/python3 -c "$read_py" "$img" ${parent} ${password} "$dir/expected.$1.json"`);
  say('  local status=$?');
  say('  [ $status -eq 124 ] && echo "libqcow HANGS (no answer in 10 s)"');
  say('  [ $status -gt 128 ] && [ $status -ne 124 ] && echo "libqcow CRASHED (status $status)"');
  say('  [ $status -eq 0 ] || { echo "REPRODUCED: libqcow at checkpoint $1" >&2; exit 1; }');
  say('}');
  if (backing) {
    say(`base="$dir/${BACKING_NAME}"`);
    say(`qemu-img create -q -f ${backing.format} "$base" ${backing.size} || exit 2`);
    const writes = backingWriteCommands(backing);
    if (writes.length > 0) say(`qemu-io -f ${backing.format} ${dashC(writes)} "$base" >/dev/null || exit 2`);
  }
  const obj = layout.encrypt ? `${qemuObjectArgs(layout).join(' ')} ` : '';
  // (qemu-img's LUKS key derivation times itself and sometimes gives up on a busy machine: retried)
  say(
    `for try in 1 2 3 4 5; do (cd "$dir" && qemu-img create -q ${obj}-f qcow2 -o ${file.image.createOptions} "$img" ${layout.size}) && break; [ $try = 5 ] && exit 2; done`,
  );

  let group: string[] = [];
  const flushGroup = (): void => {
    if (group.length === 0) return;
    say(`${tools.io} ${dashC(group)} ${tools.target} >/dev/null || exit 2`);
    group = [];
  };
  let checkpoint = 0;
  const readerCheck = (label: string): void => {
    flushGroup();
    checkpoint += 1;
    const runs = model.runs(0, model.size).map((r) => [r.offset, r.length, r.pattern]);
    say(`# checkpoint ${checkpoint}: ${label}`);
    say(`cat > "$dir/expected.${checkpoint}.json" <<'EOF'`);
    say(JSON.stringify(runs));
    say('EOF');
    say(`libqcow_reads ${checkpoint}`);
  };

  file.steps.forEach((line, index) => {
    const step: Step = parseStep(line);
    // A refused step changes nothing the reader sees (QEMU refuses it too).
    if (expectedRefusal(model, step)) return;
    switch (step.kind) {
      case 'snapshot-create':
      case 'snapshot-apply':
      case 'snapshot-delete': {
        flushGroup();
        const flag = step.kind === 'snapshot-create' ? '-c' : step.kind === 'snapshot-apply' ? '-a' : '-d';
        say(`${tools.snapshot} ${flag} ${step.name} ${tools.target} || exit 2`);
        break;
      }
      case 'qemu-turn':
        group.push(...step.ops.map(formatStep));
        break;
      case 'reopen':
      case 'check':
        flushGroup();
        break;
      default:
        group.push(formatStep(step));
    }
    applyToModel(model, step);
    if (step.kind === 'flush') readerCheck(`after step ${index}: flush`);
  });
  readerCheck('end of sequence');
  say('echo "no failure reproduced"');
  say('exit 0');
  return `${out.join('\n')}\n`;
}
