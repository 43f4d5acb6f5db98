#!/usr/bin/env bash
# Engine regression (its block status, `qcow2 map`), found by the map-parity oracle in exact mode in `qcow2 fuzz --impl qemu-io --seed 12 --seconds 90` with the old rule, shrunk to 0 steps: the qcow2 base holds 1 MiB + 1 byte, so its cluster at 1 MiB has one byte written and the rest zeroed by QEMU without writing (a host-file hole). QEMU 7.2 asks the file below about a data cluster only when the image looks metadata preallocated (qcow2_detect_metadata_preallocation sets BDRV_BLOCK_RECURSE; bdrv_co_block_status recurses only then), so qemu-img map reports that cluster as data throughout; the engine asked the host file always and split it at the hole ('zero': true, 'data': true). Found `qcow2 fuzz --impl qemu-io --seed 12` on 2026-11-26T08:29:13.796Z; shrunk to 0 steps; replay: `qcow2 fuzz --impl qemu-io --seed 12 --path 7:21:3:4:2:2:2:2:2:2:2:2:3:5:2:2:2:3:3:3:2:2:4:4:4:3:0:0:0`.
# impl: qemu-io; seed: 12; path: 7:21:3:4:2:2:2:2:2:2:2:2:3:5:2:2:2:3:3:3:2:2:4:4:4:3:0:0:0
# failure: map-parity at step -1 (end of sequence: qemu-img map and qcow2 map): expected qcow2 map lists the extents qemu-img map --output=json lists, observed length: extent 0: qemu-img map [0, +1114112) depth 1 present data at host 0x50000, qcow2 map [0, +1052672) depth 1 present data at host 0x50000
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
set -u
# qemu-img and qemu-io under a time limit (timeout runs the programs, not these functions)
qemu-img() { timeout 300 qemu-img "$@"; local s=$?; [ $s -eq 124 ] && echo "qemu-img $1: no answer within 300 s" >&2; return $s; }
qemu-io() { timeout 300 qemu-io "$@"; local s=$?; [ $s -eq 124 ] && echo "qemu-io $1: no answer within 300 s" >&2; return $s; }
# the run directory as the harness picks it: $QCOW2_FUZZ_TMPDIR, else /dev/shm with 4 GiB free, else the system one
root=${QCOW2_FUZZ_TMPDIR:-}; if [ -z "$root" ]; then root=${TMPDIR:-/tmp}; [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(df -P -B1 /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -ge 4294967296 ] 2>/dev/null && root=/dev/shm; fi
dir=$(mktemp -d -p "$root") || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
target="driver=qcow2,file.filename=$img,l2-cache-size=4096,refcount-cache-size=8192"
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
  qemu-img check --image-opts "$target" || fail "qemu-img check ($1) exit $?"
}
base="$dir/base.img"
qemu-img create -q -f qcow2 "$base" 12946432 || exit 2
qemu-io -f qcow2 -c 'write -q -P 1 0 1048576' -c 'write -q -P 1 0 1048577' "$base" || exit 2
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=2048,refcount_bits=64,extended_l2=off,compression_type=zstd,lazy_refcounts=on,backing_file=base.img,backing_fmt=qcow2 "$img" 12945920 || exit 2
# the image names no backing format (its format is probed): the extension gets an unknown type
line=$(od -An -v -tx1 -w8 -N 65536 "$img" | tr -d ' ' | grep -n '^e2792aca' | head -1 | cut -d: -f1)
[ -n "$line" ] || exit 2
printf '\x7a\x7a\x7a\x7a' | dd of="$img" bs=1 seek=$(( (line - 1) * 8 )) conv=notrunc status=none || exit 2
qemu-img bitmap --add -g 512 --image-opts "$target" b0 || exit 2
truncate -s 12945920 "$exp" || exit 2
shadow -c 'write -P 0x1 0 1048576' -c 'write -P 0x1 0 1048577'
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot --image-opts -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert --image-opts -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 12945920 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run qemu-io -t unsafe --image-opts -c 'read -P 0x01 0 1048576' || fail "reading 0+1048576 back after reopen"
read_exact 1048576 65536 qemu-io -t unsafe --image-opts || fail "reading 1048576+65536 back after reopen"
run qemu-io -t unsafe --image-opts -c 'read -P 0x00 1114112 11831808' || fail "reading 1114112+11831808 back after reopen"
bits() { local sock="$dir/nbd.sock" pidf="$dir/nbd.pid" pid out; rm -f "$pidf"; qemu-nbd -r -k "$sock" --pid-file "$pidf" --image-opts -B "$1" "$target" & pid=$!;
  for _ in $(seq 200); do [ -s "$pidf" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done;
  out=$(qemu-img map --output=json --image-opts "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:$1" | sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\),.*"data": false.*/\1+\2/p' | paste -sd" ");
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$sock" "$pidf"; echo "$out"; }
got=$(bits b0); [ "$got" = '' ] || fail "bitmap b0: dirty $got, expected "
# the engine's map beside qemu-img map, extent by extent
diff <(qemu-img map --output=json --image-opts "$target") <(npx qcow2 map --output=json --image-opts "$target") || fail "qcow2 map differs from qemu-img map"
echo "no failure reproduced"
exit 0
