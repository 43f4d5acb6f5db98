#!/usr/bin/env bash
# Engine regression, found by the fuzzer (qcow2 fuzz --impl engine --seed 9001, shrunk to 4 steps). With refcount_bits=2, compressed clusters packed into a host cluster whose refcount had a deferred decrement pending: the overflow check subtracted the pending decrement, so the stored 2-bit refcount was raised to 4 and wrapped to 0; the next write freed the cluster again and failed with REFCOUNT_UNDERFLOW. The stored value must fit the width on its own.
# impl: engine; seed: 9005; path: 16:26:5:8:10:40:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:39:40:40:40:71:71:91:38:10:11:40:13:10:12:12:12:12:12:12:12:12:12:12:12:32:2:7:5:36:36:36:36:36:36:36:36:36:36:36:56:34:7:5:36:36:36:36:36:36:36:36:36:36:36
# failure: operation-failed at step 3 (write -P 0x2d 108544 9272): expected success, observed write 108544 9272: CorruptionError REFCOUNT_UNDERFLOW: Refcount of cluster 5 would drop below zero (at host offset 0x2800)
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
timeout 300 npx qcow2 create -q -f qcow2 -o compat=1.1,cluster_size=2048,refcount_bits=2,extended_l2=off,compression_type=zstd,lazy_refcounts=on "$img" 136192 || fail "image creation (engine)"
run npx qcow2 io -c 'write -c -P 0x01 51200 4096' -c 'write -P 0xc7 53248 2048' -c 'write -c -P 0xe4 106496 4096' -c 'write -P 0x2d 108544 9272' || fail "steps 0-3 (engine)"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$img" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$img" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 136192 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x00 0 51200' -c 'read -P 0x01 51200 2048' -c 'read -P 0xc7 53248 2048' -c 'read -P 0x00 55296 51200' -c 'read -P 0xe4 106496 2048' -c 'read -P 0x2d 108544 9272' -c 'read -P 0x00 117816 18376' || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run npx qcow2 io -c 'read -P 0x00 0 51200' -c 'read -P 0x01 51200 2048' -c 'read -P 0xc7 53248 2048' -c 'read -P 0x00 55296 51200' -c 'read -P 0xe4 106496 2048' -c 'read -P 0x2d 108544 9272' -c 'read -P 0x00 117816 18376' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
