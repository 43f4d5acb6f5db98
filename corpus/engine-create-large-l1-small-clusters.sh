#!/usr/bin/env bash
# Engine regression, found by the fuzzer (impl engine: the hang watchdog fired while creating the image). Qcow2Image.create never returned for a 512 MiB v2 image with 512-byte clusters: its 128 KiB L1 table needs a run of 256 clusters, as long as a refcount block range, and the allocator kept placing self-describing refcount blocks inside every candidate run. Fixed by allocating such runs past the end of the image with their refcount blocks after them.
# impl: engine; seed: null; path: null
# failure: hang while creating the image
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
# Engine steps run through `npx qcow2 …` from the repository root (QCOW2_ENGINE selects another engine module).
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
# run TOOL… ARGS…: the tool on the image; fails on a non-zero exit or a reported failure
run() { local out status; out=$("$@" "$img" 2>&1); status=$?; [ -n "$out" ] && printf '%s\n' "$out"; [ $status -eq 0 ] && ! grep -qE 'failed|not found|^qemu-io: ' <<<"$out"; }
raw_reads() { local f=$1; shift; local out; out=$(qemu-io -f raw "$@" "$f" 2>&1); [ $? -eq 0 ] && ! grep -q failed <<<"$out" || { printf '%s\n' "$out" | grep -B1 -A1 failed | head -20; return 1; }; }
check_image() {
  qemu-img check -f qcow2 "$img" || fail "qemu-img check ($1) exit $?"
}
timeout 300 npx qcow2 create -q -f qcow2 -o compat=0.10,cluster_size=512,refcount_bits=16 "$img" 536870912 || fail "image creation (engine)"
run npx qcow2 io -c 'write -P 0x5a 536866816 4096' -c 'write -P 0x11 0 70000' -c 'read -P 0x5a 536866816 4096' || fail "steps 0-2 (engine)"
# oracles: step 3
check_image 'step 3'
names=$(qemu-img snapshot -l "$img" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at step 3"
qemu-img convert -f qcow2 -O raw "$img" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 536870912 ] || fail "virtual size at step 3"
raw_reads "$dir/active.raw" -c 'read -P 0x11 0 70000' -c 'read -P 0x00 70000 16777216' -c 'read -P 0x00 16847216 16777216' -c 'read -P 0x00 33624432 16777216' -c 'read -P 0x00 50401648 16777216' -c 'read -P 0x00 67178864 16777216' -c 'read -P 0x00 83956080 16777216' -c 'read -P 0x00 100733296 16777216' -c 'read -P 0x00 117510512 16777216' -c 'read -P 0x00 134287728 16777216' -c 'read -P 0x00 151064944 16777216' -c 'read -P 0x00 167842160 16777216' -c 'read -P 0x00 184619376 16777216' -c 'read -P 0x00 201396592 16777216' -c 'read -P 0x00 218173808 16777216' -c 'read -P 0x00 234951024 16777216' -c 'read -P 0x00 251728240 16777216' -c 'read -P 0x00 268505456 16777216' -c 'read -P 0x00 285282672 16777216' -c 'read -P 0x00 302059888 16777216' -c 'read -P 0x00 318837104 16777216' -c 'read -P 0x00 335614320 16777216' -c 'read -P 0x00 352391536 16777216' -c 'read -P 0x00 369168752 16777216' -c 'read -P 0x00 385945968 16777216' -c 'read -P 0x00 402723184 16777216' -c 'read -P 0x00 419500400 16777216' -c 'read -P 0x00 436277616 16777216' -c 'read -P 0x00 453054832 16777216' -c 'read -P 0x00 469832048 16777216' -c 'read -P 0x00 486609264 16777216' -c 'read -P 0x00 503386480 16777216' -c 'read -P 0x00 520163696 16703120' -c 'read -P 0x5a 536866816 4096' || fail "converted disk differs from the model at step 3"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$img" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$img" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 536870912 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x11 0 70000' -c 'read -P 0x00 70000 16777216' -c 'read -P 0x00 16847216 16777216' -c 'read -P 0x00 33624432 16777216' -c 'read -P 0x00 50401648 16777216' -c 'read -P 0x00 67178864 16777216' -c 'read -P 0x00 83956080 16777216' -c 'read -P 0x00 100733296 16777216' -c 'read -P 0x00 117510512 16777216' -c 'read -P 0x00 134287728 16777216' -c 'read -P 0x00 151064944 16777216' -c 'read -P 0x00 167842160 16777216' -c 'read -P 0x00 184619376 16777216' -c 'read -P 0x00 201396592 16777216' -c 'read -P 0x00 218173808 16777216' -c 'read -P 0x00 234951024 16777216' -c 'read -P 0x00 251728240 16777216' -c 'read -P 0x00 268505456 16777216' -c 'read -P 0x00 285282672 16777216' -c 'read -P 0x00 302059888 16777216' -c 'read -P 0x00 318837104 16777216' -c 'read -P 0x00 335614320 16777216' -c 'read -P 0x00 352391536 16777216' -c 'read -P 0x00 369168752 16777216' -c 'read -P 0x00 385945968 16777216' -c 'read -P 0x00 402723184 16777216' -c 'read -P 0x00 419500400 16777216' -c 'read -P 0x00 436277616 16777216' -c 'read -P 0x00 453054832 16777216' -c 'read -P 0x00 469832048 16777216' -c 'read -P 0x00 486609264 16777216' -c 'read -P 0x00 503386480 16777216' -c 'read -P 0x00 520163696 16703120' -c 'read -P 0x5a 536866816 4096' || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run npx qcow2 io -c 'read -P 0x11 0 70000' -c 'read -P 0x00 70000 16777216' -c 'read -P 0x00 16847216 16777216' -c 'read -P 0x00 33624432 16777216' -c 'read -P 0x00 50401648 16777216' -c 'read -P 0x00 67178864 16777216' -c 'read -P 0x00 83956080 16777216' -c 'read -P 0x00 100733296 16777216' -c 'read -P 0x00 117510512 16777216' -c 'read -P 0x00 134287728 16777216' -c 'read -P 0x00 151064944 16777216' -c 'read -P 0x00 167842160 16777216' -c 'read -P 0x00 184619376 16777216' -c 'read -P 0x00 201396592 16777216' -c 'read -P 0x00 218173808 16777216' -c 'read -P 0x00 234951024 16777216' -c 'read -P 0x00 251728240 16777216' -c 'read -P 0x00 268505456 16777216' -c 'read -P 0x00 285282672 16777216' -c 'read -P 0x00 302059888 16777216' -c 'read -P 0x00 318837104 16777216' -c 'read -P 0x00 335614320 16777216' -c 'read -P 0x00 352391536 16777216' -c 'read -P 0x00 369168752 16777216' -c 'read -P 0x00 385945968 16777216' -c 'read -P 0x00 402723184 16777216' -c 'read -P 0x00 419500400 16777216' -c 'read -P 0x00 436277616 16777216' -c 'read -P 0x00 453054832 16777216' -c 'read -P 0x00 469832048 16777216' -c 'read -P 0x00 486609264 16777216' -c 'read -P 0x00 503386480 16777216' -c 'read -P 0x00 520163696 16703120' -c 'read -P 0x5a 536866816 4096' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
