#!/usr/bin/env bash
# Engine regression, found by the fuzzer (qcow2 fuzz --impl mixed --seed 4242, shrunk to 4 steps). With refcount_bits=2, reverting to s1 while s2 shares its clusters (refcount 3 = the maximum) was refused with REFCOUNT_OVERFLOW, as qemu-img refuses it: the snapshot tree was raised before the old active tree was lowered. The engine now applies only the net change, so the shared clusters keep refcount 3 and the revert succeeds.
# impl: engine; seed: 4245; path: 2:1:1:8:1:2:7:10:9:9:5:5:5:5:5:5
# failure: operation-failed at step 3 (snapshot -a s1): expected success, observed snapshot -a s1: Qcow2Error REFCOUNT_OVERFLOW: Refcount of cluster 4 would exceed 3 (refcount width too small)
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
timeout 300 npx qcow2 create -q -f qcow2 -o compat=1.1,cluster_size=512,refcount_bits=2,extended_l2=off,compression_type=zlib,lazy_refcounts=off "$img" 131584 || fail "image creation (engine)"
run npx qcow2 io -c 'write -z 0 512' || fail "steps 0-0 (engine)"
run npx qcow2 snapshot -c s1 || fail "step 1: snapshot -c s1"
run npx qcow2 snapshot -c s2 || fail "step 2: snapshot -c s2"
run npx qcow2 snapshot -a s1 || fail "step 3: snapshot -a s1"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$img" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = 's1 s2' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$img" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 131584 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x00 0 131584' || fail "converted disk differs from the model at end of sequence"
qemu-img convert -f qcow2 -O raw -l snapshot.name=s1 "$img" "$dir/snap.raw" || fail "convert snapshot s1"
raw_reads "$dir/snap.raw" -c 'read -P 0x00 0 131584' || fail "snapshot s1 differs at end of sequence"
qemu-img convert -f qcow2 -O raw -l snapshot.name=s2 "$img" "$dir/snap.raw" || fail "convert snapshot s2"
raw_reads "$dir/snap.raw" -c 'read -P 0x00 0 131584' || fail "snapshot s2 differs at end of sequence"
# reopen through the implementation and read everything back
run npx qcow2 io -c 'read -P 0x00 0 131584' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
