#!/usr/bin/env bash
# Engine regression, found by the new commit step (a fixed-seed sequence of properties/backing-aio-kinds.test.ts; hand-minimised to 2 steps). Image.commit() on an open image failed with IMAGE_LOCKED: the image holds its backing file open read-only (and locked) in the same process, and the commit's read-write handle on that file tested the lock against its own first handle. QEMU reopens the same node read-write; `qcow2 commit` already opened it with locking off. Fixed: Image.commit does the same.
# impl: engine; seed: null; path: null
# failure: operation-failed at step 1 (commit): expected success, observed commit: IoError IMAGE_LOCKED: Could not open backing file: Failed to get "write" lock. Is another process using the image [/tmp/qcow2-fuzz-Hr69nm/base.img]?
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
# Engine steps run through `npx qcow2 …` from the repository root (QCOW2_ENGINE selects another engine module).
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
target="$img"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
# run TOOL… ARGS…: the tool on the image; fails on a non-zero exit or a reported failure
run() { local out status; out=$("$@" "$target" 2>&1); status=$?; [ -n "$out" ] && printf '%s\n' "$out"; [ $status -eq 0 ] && ! grep -qE 'failed|not found|^qemu-io: ' <<<"$out"; }
# stamp ID OFFSET LENGTH FILE: the data of stamped write number ID (each 512-byte sector says who wrote it for where)
FILL=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
stamp() { local id=$1 off=$2 len=$3 f=$4 s n c pad
  c=${FILL:$((id % 52)):1}; printf -v pad "%488s" ""; pad=${pad// /$c}
  n=$(( (len + 511) / 512 ))
  for ((s = 0; s < n; s++)); do printf "#w%08x@%012x:%s" "$id" $((off + s * 512)) "$pad"; done | head -c "$len" > "$f"
}
# exp: the expected disk as a raw file, kept by replaying every step on it with qemu-io -f raw
exp="$dir/expected.raw"
shadow() { qemu-io -f raw "$@" "$exp" >/dev/null || exit 2; }
dumpbytes() { grep -E '^[0-9a-f]{8,}:  ' | cut -d: -f2- | sed -E 's/^  //; s/  .*$//'; }
# read_exact OFF LEN TOOL…: the image through TOOL reads exactly what the expected file holds
read_exact() { local off=$1 len=$2; shift 2; cmp -s <("$@" -c "read -v $off $len" "$target" 2>&1 | dumpbytes) <(qemu-io -f raw -c "read -v $off $len" "$exp" | dumpbytes); }
check_image() {
  qemu-img check -f qcow2 "$target" || fail "qemu-img check ($1) exit $?"
}
base="$dir/base.img"
qemu-img create -q -f qcow2 "$base" 1048576 || exit 2
qemu-io -f qcow2 -c 'write -q -P 66 0 1048576' "$base" || exit 2
timeout 300 npx qcow2 create -q -f qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off,backing_file=base.img,backing_fmt=qcow2 "$img" 1048576 || fail "image creation (engine)"
truncate -s 1048576 "$exp" || exit 2
shadow -c 'write -P 0x42 0 1048576'
run npx qcow2 io -c 'write -P 0x61 1000 3000' || fail "steps 0-0 (engine)"
shadow -c 'write -P 0x61 1000 3000'
qemu-img convert -f qcow2 -O raw "$dir/base.img" "$dir/want-base.raw" || exit 2
dd if="$exp" of="$dir/want-base.raw" conv=notrunc status=none || exit 2
npx qcow2 commit -f qcow2 "$target" || fail "step 1: commit"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" && cmp "$dir/active.raw" "$exp" || fail "step 1: the guest reads differently after commit"
qemu-img check -q -f qcow2 "$dir/base.img" || fail "step 1: qemu-img check of the committed base.img"
qemu-img convert -f qcow2 -O raw "$dir/base.img" "$dir/got-base.raw" && cmp "$dir/got-base.raw" "$dir/want-base.raw" || fail "step 1: the committed base.img differs from the guest's data"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 1048576 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
read_exact 0 65536 npx qcow2 io || fail "reading 0+65536 back after reopen"
run npx qcow2 io -c 'read -P 0x42 65536 983040' || fail "reading 65536+983040 back after reopen"
echo "no failure reproduced"
exit 0
