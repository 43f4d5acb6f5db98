#!/usr/bin/env bash
# Found by `qcow2 fuzz --impl qemu-io --seed 7` (sequence 126, 512 KiB clusters, zstd, bitmaps, stamped write) on 2026-11-26; reduced by hand to 64 KiB clusters, zlib, a pattern write and no bitmaps (same failure).
# impl: qemu-io; seed: null; path: null
# failure: operation-failed at step 1 (truncate 237056): expected success, observed truncate 237056: qemu-io: Failed to zero out new clusters: Operation not supported
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
set -u
# qemu-img and qemu-io under a time limit (timeout runs the programs, not these functions)
qemu-img() { timeout 300 qemu-img "$@"; local s=$?; [ $s -eq 124 ] && echo "qemu-img $1: no answer within 300 s" >&2; return $s; }
qemu-io() { timeout 300 qemu-io "$@"; local s=$?; [ $s -eq 124 ] && echo "qemu-io $1: no answer within 300 s" >&2; return $s; }
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
qemu-img create -q -f qcow2 "$base" 236544 || exit 2
qemu-io -f qcow2 -c 'write -q -P 103 0 236544' "$base" || exit 2
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=16,extended_l2=on,compression_type=zlib,lazy_refcounts=off,backing_file=base.img,backing_fmt=qcow2 "$img" 138240 || exit 2
truncate -s 138240 "$exp" || exit 2
shadow -c 'write -P 0x67 0 138240'
shadow -c 'write -P 0x11 0 138240'
truncate -s 237056 "$exp"
run qemu-io -t unsafe -f qcow2 -c 'write -c -P 0x11 0 138240' -c 'truncate 237056' || fail "steps 0-1 (qemu-io)"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 237056 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run qemu-io -t unsafe -f qcow2 -c 'read -P 0x11 0 131072' || fail "reading 0+131072 back after reopen"
read_exact 131072 65536 qemu-io -t unsafe -f qcow2 || fail "reading 131072+65536 back after reopen"
run qemu-io -t unsafe -f qcow2 -c 'read -P 0x00 196608 40448' || fail "reading 196608+40448 back after reopen"
echo "no failure reproduced"
exit 0
