#!/usr/bin/env bash
# Regression of the engine's io CLI, not of the engine: found by `qcow2 fuzz --impl engine --seed 1` (sequence 0, 13 steps, not shrunk) on 2026-11-25 while a planted-bug copy of the engine was selected (QCOW2_ENGINE; the bug is WRITE_FIRST_CLUSTER_ONLY of properties/campaign/planted-bug.ts, whose in-process replay of these steps gives the very same divergence), and its script then reproduced on main too: `qcow2 io -c 'write -s FILE off len'` ignored FILE and wrote qemu-io's default 0xcd, so the stamped writes read back wrong at step 12. The engine itself keeps every write (this in-process replay and the script both pass since `write -s` reads its source file, test/cli/io-write-source-file.test.ts).
# impl: engine; seed: 1; path: 0
# failure: read-mismatch at step 12 (read 1834222 543189): expected the model's bytes over 1834222+543189, observed guest 0x240000 holds bytes never written anywhere (02 02 02 02 02 02 02 02 02 02 02 02 02 02 02 02) where write #4's data is expected (512 of the 512 bytes from there differ)
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
# Engine steps run through `npx qcow2 …` from the repository root (the built engine, dist/).
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
base="$dir/base.img"
qemu-img create -q -f qcow2 "$base" 5082112 || exit 2
qemu-io -f qcow2 -c 'write -q -P 40 0 1048576' -c 'write -q -P 6 0 4194303' -c 'write -q -P 2 0 3262976' "$base" || exit 2
timeout 300 npx qcow2 create -q -f qcow2 -o compat=1.1,cluster_size=262144,refcount_bits=1,extended_l2=off,compression_type=zstd,lazy_refcounts=off,backing_file=base.img,backing_fmt=qcow2 "$img" 5079040 || fail "image creation (engine)"
qemu-img bitmap --add -g 2048 -f qcow2 "$target" b0 || exit 2
qemu-img bitmap --add -g 524288 -f qcow2 "$target" b1 || exit 2
truncate -s 5079040 "$exp" || exit 2
shadow -c 'write -P 0x28 0 1048576' -c 'write -P 0x6 0 4194303' -c 'write -P 0x2 0 3262976'
stamp 1 2358298 262144 "$dir/w1.bin"
run npx qcow2 io -c "write -s $dir/w1.bin 2358298 262144" || fail "steps 0-0 (engine)"
# step 1: close and reopen
stamp 2 784483 262144 "$dir/w2.bin"
run npx qcow2 io -c "write -s $dir/w2.bin 784483 262144" || fail "steps 2-2 (engine)"
shadow -c "write -s $dir/w1.bin 2358298 262144" -c "write -s $dir/w2.bin 784483 262144"
read_exact 1307988 893901 npx qcow2 io || fail "step 3: read 1307988 893901"
# step 4: close and reopen
stamp 3 784483 9 "$dir/w3.bin"
stamp 4 2357662 262144 "$dir/w4.bin"
run npx qcow2 io -c "write -s $dir/w3.bin 784483 9" -c "write -s $dir/w4.bin 2357662 262144" || fail "steps 5-6 (engine)"
shadow -c "write -s $dir/w3.bin 784483 9" -c "write -s $dir/w4.bin 2357662 262144"
read_exact 2883584 53432 npx qcow2 io || fail "step 7: read 2883584 53432"
stamp 5 5079029 11 "$dir/w5.bin"
run npx qcow2 io -c "write -s $dir/w5.bin 5079029 11" || fail "steps 8-8 (engine)"
shadow -c "write -s $dir/w5.bin 5079029 11"
read_exact 0 262144 npx qcow2 io || fail "step 9: read 0 262144"
stamp 6 0 262144 "$dir/w6.bin"
run npx qcow2 io -c "write -s $dir/w6.bin 0 262144" || fail "steps 10-10 (engine)"
shadow -c "write -s $dir/w6.bin 0 262144"
read_exact 4628837 262144 npx qcow2 io || fail "step 11: read 4628837 262144"
read_exact 1834222 543189 npx qcow2 io || fail "step 12: read 1834222 543189"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 5079040 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
read_exact 0 262144 npx qcow2 io || fail "reading 0+262144 back after reopen"
run npx qcow2 io -c 'read -P 0x02 262144 458752' || fail "reading 262144+458752 back after reopen"
read_exact 720896 327680 npx qcow2 io || fail "reading 720896+327680 back after reopen"
run npx qcow2 io -c 'read -P 0x02 1048576 1245184' || fail "reading 1048576+1245184 back after reopen"
read_exact 2293760 327680 npx qcow2 io || fail "reading 2293760+327680 back after reopen"
run npx qcow2 io -c 'read -P 0x02 2621440 589824' || fail "reading 2621440+589824 back after reopen"
read_exact 3211264 65536 npx qcow2 io || fail "reading 3211264+65536 back after reopen"
run npx qcow2 io -c 'read -P 0x06 3276800 851968' || fail "reading 3276800+851968 back after reopen"
read_exact 4128768 65536 npx qcow2 io || fail "reading 4128768+65536 back after reopen"
run npx qcow2 io -c 'read -P 0x00 4194304 851968' || fail "reading 4194304+851968 back after reopen"
read_exact 5046272 32768 npx qcow2 io || fail "reading 5046272+32768 back after reopen"
bits() { local sock="$dir/nbd.sock" pid out; qemu-nbd -r -k "$sock" -f qcow2 -B "$1" "$target" & pid=$!;
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done;
  out=$(qemu-img map --output=json --image-opts "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:$1" | sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\),.*"data": false.*/\1+\2/p' | paste -sd" ");
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$sock"; echo "$out"; }
got=$(bits b0); [ "$got" = '0+262144 784384+264192 2357248+264192 5076992+2048' ] || fail "bitmap b0: dirty $got, expected 0+262144 784384+264192 2357248+264192 5076992+2048"
got=$(bits b1); [ "$got" = '0+1048576 2097152+524288 4718592+360448' ] || fail "bitmap b1: dirty $got, expected 0+1048576 2097152+524288 4718592+360448"
echo "no failure reproduced"
exit 0
