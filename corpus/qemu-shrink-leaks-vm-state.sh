#!/usr/bin/env bash
# QEMU 7.2: shrinking an image leaks the clusters that hold VM state (qemu-io write -b, then truncate)
# impl: qemu-io; seed: null; path: null
# failure: qemu-img-check at step 1 (end of sequence): expected qemu-img check exit 0, no corruptions, no leaks, observed exit 3; Leaked cluster 5 refcount=1 reference=0
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
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
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off "$img" 1048576 || exit 2
truncate -s 1048576 "$exp" || exit 2
truncate -s 512 "$exp"
run qemu-io -f qcow2 -c 'write -b -P 0x01 0 65536' -c 'truncate 512' || fail "steps 0-1 (qemu-io)"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 512 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run qemu-io -f qcow2 -c 'read -P 0x00 0 512' || fail "reading 0+512 back after reopen"
echo "no failure reproduced"
exit 0
