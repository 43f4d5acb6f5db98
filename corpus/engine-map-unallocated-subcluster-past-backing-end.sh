#!/usr/bin/env bash
# Engine regression (its block status, `qcow2 map`), found by the map-parity oracle in `qcow2 fuzz --impl qemu-io --seed 12 --seconds 60` (4 steps, as shrunk). An extended-L2 image over a raw base shorter than one cluster: cluster 3 is allocated from subcluster 18 on, its subclusters 0-17 stay unallocated and lie past the base's end. QEMU 7.2 (bdrv_co_block_status) reports them zero with qcow2's host offset, as it does without a backing file; the engine dropped the offset whenever a backing file existed and merged them into the unallocated run before. The script compares `npx qcow2 map` with `qemu-img map` on the image qemu-io made. Found by `qcow2 fuzz --impl qemu-io --seed 12` (sequence 39) on 2026-11-26T07:42:16.244Z; shrinking stopped at the deadline at 4 steps (best so far); replay: `qcow2 fuzz --impl qemu-io --seed 12 --path 39`.
# impl: qemu-io; seed: 12; path: 39
# failure: map-parity at step 3 (end of sequence: qemu-img map and qcow2 map): expected qcow2 map lists the extents qemu-img map --output=json lists, observed length: extent 1: qemu-img map [16384, +32768) depth 0 zero, qcow2 map [16384, +41984) depth 0 zero
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
base="$dir/base.img"
qemu-img create -q -f raw "$base" 6656 || exit 2
qemu-io -f raw -c 'write -q -P 145 0 1372' "$base" || exit 2
qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=16384,refcount_bits=64,extended_l2=on,compression_type=zstd,lazy_refcounts=on,backing_file=base.img,backing_fmt=raw "$img" 130560 || exit 2
# the image names no backing format (its format is probed): the extension gets an unknown type
line=$(od -An -v -tx1 -w8 -N 65536 "$img" | tr -d ' ' | grep -n '^e2792aca' | head -1 | cut -d: -f1)
[ -n "$line" ] || exit 2
printf '\x7a\x7a\x7a\x7a' | dd of="$img" bs=1 seek=$(( (line - 1) * 8 )) conv=notrunc status=none || exit 2
qemu-img bitmap --add -g 262144 -f qcow2 "$target" b0 || exit 2
qemu-img bitmap --add -g 524288 --disable -f qcow2 "$target" b1 || exit 2
truncate -s 130560 "$exp" || exit 2
shadow -c 'write -P 0x91 0 1372'
run qemu-img snapshot -c s1 || fail "step 0: snapshot -c s1"
cp "$exp" "$dir/snap-s1.raw"
stamp 1 58724 16384 "$dir/w1.bin"
run qemu-io -t unsafe -f qcow2 -c "write -s $dir/w1.bin 58724 16384" || fail "steps 1-1 (qemu-io)"
shadow -c "write -s $dir/w1.bin 58724 16384"
read_exact 49152 16384 qemu-io -t unsafe -f qcow2 || fail "step 2: read 49152 16384"
run qemu-io -t unsafe -f qcow2 -c 'write -z 0 16384' || fail "steps 3-3 (qemu-io)"
shadow -c 'write -z 0 16384'
# oracles: end of sequence
check_image 'end of sequence'
names=$(qemu-img snapshot -l "$target" | awk 'NR>2 {print $2}' | paste -sd' ')
[ "$names" = 's1' ] || fail "snapshot list ($names) at end of sequence"
qemu-img convert -f qcow2 -O raw "$target" "$dir/active.raw" || fail "convert"
[ "$(stat -c %s "$dir/active.raw")" -eq 130560 ] || fail "virtual size at end of sequence"
cmp "$dir/active.raw" "$exp" || fail "converted disk differs from the model at end of sequence"
qemu-img convert -f qcow2 -O raw -l snapshot.name=s1 "$target" "$dir/snap.raw" || fail "convert snapshot s1"
cmp -n 130560 "$dir/snap.raw" "$dir/snap-s1.raw" || fail "snapshot s1 differs at end of sequence"
# reopen through the implementation and read everything back
read_exact 0 130560 qemu-io -t unsafe -f qcow2 || fail "reading 0+130560 back after reopen"
bits() { local sock="$dir/nbd.sock" pidf="$dir/nbd.pid" pid out; rm -f "$pidf"; qemu-nbd -r -k "$sock" --pid-file "$pidf" -f qcow2 -B "$1" "$target" & pid=$!;
  for _ in $(seq 200); do [ -s "$pidf" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done;
  out=$(qemu-img map --output=json --image-opts "driver=nbd,server.type=unix,server.path=$sock,x-dirty-bitmap=qemu:dirty-bitmap:$1" | sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\),.*"data": false.*/\1+\2/p' | paste -sd" ");
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$sock" "$pidf"; echo "$out"; }
got=$(bits b0); [ "$got" = '0+130560' ] || fail "bitmap b0: dirty $got, expected 0+130560"
got=$(bits b1); [ "$got" = '' ] || fail "bitmap b1: dirty $got, expected "
# the engine's map beside qemu-img map (a data extent's zero flag from host-file holes dropped, neighbours merged)
mapnorm() { node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{const o=[];for(const e of JSON.parse(s)){const x={start:e.start,length:e.length,depth:e.depth,present:e.present,zero:e.data?false:e.zero,data:e.data,offset:e.offset};const p=o[o.length-1];if(p&&(p.offset===undefined?x.offset===undefined:p.offset+p.length===x.offset)&&["depth","present","zero","data"].every((k)=>p[k]===x[k]))p.length+=x.length;else o.push(x);}for(const e of o)console.log(JSON.stringify(e));})'; }
diff <(qemu-img map --output=json -f qcow2 "$target" | mapnorm) <(npx qcow2 map --output=json -f qcow2 "$target" | mapnorm) || fail "qcow2 map differs from qemu-img map"
echo "no failure reproduced"
exit 0
