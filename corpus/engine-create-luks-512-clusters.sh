#!/usr/bin/env bash
# Engine regression, found by the fuzzer (encrypted layouts, qcow2 fuzz --impl engine --seed 5). With 512-byte clusters, the v3 header with the crypto header extension and the feature name table did not fit in cluster 0 and the engine refused to create a LUKS image (HEADER_TOO_LARGE); QEMU leaves the optional feature name table out, and so does the engine now.
# impl: engine; seed: 5; path: 6:19:19
# failure: operation-failed at step 0 (create): expected success, observed create: HeaderError HEADER_TOO_LARGE: Header, extensions and backing file name (536 bytes) exceed one cluster
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
# Engine steps run through `npx qcow2 …` from the repository root (QCOW2_ENGINE selects another engine module).
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
target="driver=qcow2,file.filename=$img,encrypt.key-secret=s0"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
# run TOOL… ARGS…: the tool on the image; fails on a non-zero exit or a reported failure
run() { local out status; out=$("$@" "$target" 2>&1); status=$?; [ -n "$out" ] && printf '%s\n' "$out"; [ $status -eq 0 ] && ! grep -qE 'failed|not found|^qemu-io: ' <<<"$out"; }
raw_reads() { local f=$1; shift; local out; out=$(qemu-io -f raw "$@" "$f" 2>&1); [ $? -eq 0 ] && ! grep -q failed <<<"$out" || { printf '%s\n' "$out" | grep -B1 -A1 failed | head -20; return 1; }; }
check_image() {
  qemu-img check --object secret,id=s0,data=fuzz --image-opts "$target" || fail "qemu-img check ($1) exit $?"
}
timeout 300 npx qcow2 create -q --object secret,id=s0,data=fuzz -f qcow2 -o compat=1.1,cluster_size=512,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off,encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$img" 9418752 || fail "image creation (engine)"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot --object secret,id=s0,data=fuzz --image-opts -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert --object secret,id=s0,data=fuzz --image-opts -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 9418752 ] || fail "virtual size at end of sequence"
raw_reads "$dir/active.raw" -c 'read -P 0x00 0 9418752' || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run npx qcow2 io --object secret,id=s0,data=fuzz --image-opts -c 'read -P 0x00 0 9418752' || fail "reading the image back after reopen"
echo "no failure reproduced"
exit 0
