#!/usr/bin/env bash
# engine regression: safe rebase of a v2 image without a backing file onto a new one kept the zero write of QEMU 7.2, so the new backing data showed through (src/cli/rebase.ts writes those zeros as data on v2); found through the QEMU defect by qcow2 fuzz --impl qemu-io --seed 31
# impl: engine; seed: null; path: null
# failure: read-mismatch at step 2 (rebase -b b2.img -F qcow2 (guest read back)): expected the model's bytes over 0+3039744, observed guest 0x2d2600 holds bytes never written anywhere (b2 b2 b2 b2 b2 b2 b2 b2 b2 b2 b2 b2 b2 b2 b2 b2) where zeros is expected (512 of the 512 bytes from there differ)
# Exits 1 when the failure reproduces, 0 when the image matches the model throughout, 2 on setup errors.
# Engine steps run through `npx qcow2 …` from the repository root (the built engine, dist/).
set -u
dir=$(mktemp -d) || exit 2
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
qemu-img create -q -f qcow2 "$base" 3191808 || exit 2
qemu-io -f qcow2 -c 'write -q -P 66 0 1048576' "$base" || exit 2
timeout 300 npx qcow2 create -q -f qcow2 -o compat=0.10,cluster_size=2048,refcount_bits=16,backing_file=base.img,backing_fmt=qcow2 "$img" 3039744 || fail "image creation (engine)"
truncate -s 3039744 "$exp" || exit 2
shadow -c 'write -P 0x42 0 1048576'
npx qcow2 rebase --image-opts -b '' "$target" || fail "step 0: rebase -b ''"
qemu-img convert --image-opts -O raw "$target" "$dir/active.raw" && cmp "$dir/active.raw" "$exp" || fail "step 0: the guest reads differently after rebase -b ''"
qemu-img create -q -f qcow2 "$dir/b2.img" 3039744 || exit 2
qemu-io -f qcow2 -c 'write -q -P 178 2958848 6976' "$dir/b2.img" || exit 2
npx qcow2 rebase --image-opts -b b2.img -F qcow2 "$target" || fail "step 2: rebase -b b2.img -F qcow2"
qemu-img convert --image-opts -O raw "$target" "$dir/active.raw" && cmp "$dir/active.raw" "$exp" || fail "step 2: the guest reads differently after rebase -b b2.img -F qcow2"
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot --image-opts -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = '' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert --image-opts -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 3039744 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
# reopen through the implementation and read everything back
run npx qcow2 io -t unsafe --image-opts -c 'read -P 0x42 0 1048576' || fail "reading 0+1048576 back after reopen"
run npx qcow2 io -t unsafe --image-opts -c 'read -P 0x00 1048576 1991168' || fail "reading 1048576+1991168 back after reopen"
echo "no failure reproduced"
exit 0
