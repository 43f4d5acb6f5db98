#!/usr/bin/env bash
# Engine regression, found by the fuzzer (backing-file layouts, qcow2 fuzz --impl engine --seed 1). With 512-byte clusters, the v3 header, its extensions and a backing file name did not fit in cluster 0 with the feature name table, and the engine refused to create the image (HEADER_TOO_LARGE); QEMU leaves the optional feature name table out, and so does the engine now.
# impl: engine; seed: null; path: null
# failure: operation-failed at step 0 (create): expected success, observed create: HeaderError HEADER_TOO_LARGE: Header, extensions and backing file name (536 bytes) exceed one cluster
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
raw_reads() { local f=$1; shift; local out; out=$(qemu-io -f raw "$@" "$f" 2>&1); [ $? -eq 0 ] && ! grep -q failed <<<"$out" || { printf '%s\n' "$out" | grep -B1 -A1 failed | head -20; return 1; }; }
check_image() {
  qemu-img check -f qcow2 "$target" || fail "qemu-img check ($1) exit $?"
}
base="$dir/base.img"
qemu-img create -q -f raw "$base" 1048576 || exit 2
timeout 300 npx qcow2 create -q -f qcow2 -o compat=1.1,cluster_size=512,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off,backing_file=base.img,backing_fmt=raw "$img" 1048576 || fail "image creation (engine)"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 1048576 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x00 0 1048576' || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run npx qcow2 io -c 'read -P 0x00 0 1048576' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
