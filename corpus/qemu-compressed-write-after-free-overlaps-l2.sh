#!/usr/bin/env bash
# QEMU 7.2 defect, found by the fuzzer (qcow2 fuzz --impl qemu-io --seed 31337, shrunk to 3 steps). A compressed cluster is written, then discarded (its host cluster is freed), then a compressed write elsewhere needs a new L2 table: the freed cluster is reused for that table, yet QEMU still appends the new compressed data at its remembered byte offset inside it. The overlap check catches the write, marks the image corrupt and fails it (EIO). Also at 64 KiB clusters: write -c -P 1 0 64k; discard 0 64k; write -c -P 1 512M 64k on a 1 GiB image.
# impl: qemu-io; seed: 31339; path: 16:0:1:0:0:8:3:5:5:7:1:1:1:4:5:4:5:4:4:4:4:5:5:3:3:3:3:4:4:4:4:4:3:11:4:5:4:6:5:10:4:3:3:4:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:4:5:3:5:3:4:5:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:4:5:4:4:5:5:5
# failure: operation-failed at step 2 (write -c -P 0x01 32768 512): expected success, observed write -q -c -P 1 32768 512: qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with active L2 table); further corruption events will be suppressed write failed: Input/output error
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
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
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512,refcount_bits=16 "$img" 16777728 || exit 2
run qemu-io -f qcow2 -c 'write -c -P 0x01 0 512' -c 'discard 0 512' -c 'write -c -P 0x01 32768 512' || fail "steps 0-2 (qemu-io)"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$img" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$img" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 16777728 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x00 0 32768' -c 'read -P 0x01 32768 512' -c 'read -P 0x00 33280 16744448' || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run qemu-io -f qcow2 -c 'read -P 0x00 0 32768' -c 'read -P 0x01 32768 512' -c 'read -P 0x00 33280 16744448' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
