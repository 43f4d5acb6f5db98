#!/usr/bin/env bash
# Found by `qcow2 fuzz --impl qemu-io --seed 1 --runs 20 --max-steps 100` (shrunk from a 100-step sequence to 3 steps; trimmed by hand to 2).
# impl: qemu-io; seed: null; path: null
# failure: qemu-img-check at step 1 (end of sequence): expected qemu-img check exit 0, no corruptions, no leaks, observed exit 3; Leaked cluster 7 refcount=1 reference=0
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
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=512,refcount_bits=1,extended_l2=off,compression_type=zlib,lazy_refcounts=off "$img" 131584 || exit 2
run qemu-io -f qcow2 -c 'write -P 0x01 0 1024' || fail "steps 0-0 (qemu-io)"
if run qemu-img snapshot -c s1; then fail "step 1: 'snapshot -c s1' was accepted; QEMU refuses it"; fi
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$img" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$img" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 131584 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x01 0 1024' -c 'read -P 0x00 1024 130560' || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run qemu-io -f qcow2 -c 'read -P 0x01 0 1024' -c 'read -P 0x00 1024 130560' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
