#!/usr/bin/env bash
# QEMU 7.2 defect (crash window) met by the engine's crashtest in a qemu turn: found by `qcow2 crashtest --impl engine --seconds 300 --seed 31337` (24 steps after shrinking), shrunk by hand to 1 step. The turn's compressed write crosses into an L2 table not yet allocated: QEMU writes the clusters of one request as parallel tasks; each sets its compressed L2 entry in the cache before its data is written, and the task that allocates the next L2 table flushes the whole L2 cache (l2_allocate), so the table holding another task's new entry can reach the disk before that task's compressed bytes. A crash between leaves an L2 entry pointing at bytes that do not inflate. The engine's own compressed write passes (corpus/crash/qemu-compressed-l2-before-data.json). Known finding qemu-turn-crash-window.
# Crash state (engine): crash-unreadable: engine: zlib: compressed cluster does not inflate (zlib -3: invalid stored block lengths) (at host offset 0x29e6); qemu-img convert: exit 1: qemu-img: error while reading at byte 516096: Input/output error qemu-img: error while reading at byte 514048: Input/output error
# Expected: the image opens and reads
#
# How the run was recorded:
#   npx qcow2 create -f qcow2 -o compat=1.1,cluster_size=2048,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off disk.qcow2 1048576
#   then these steps through the engine on src/io/recording-device.ts (`qcow2 crashtest --impl engine`):
#     0: qemu-io -c 'write -c -P 0xce 458752 131072'
# The log has 83 entries; the crash comes after entry 41.
# Durable: entries 0..35 (up to the last FLUSH); landed since: 5 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (11264 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3XMUsDMRQH8Hd3FUQROjh0fODiKK7uBaFLJ+f07hUD11xIXqnXqXT2S/mtBBdt
1UKXa8ZW/7/ACy8kIXlkyXj4+EFEBe273Mb+Ls+/u8FPer4JGaXpEZH/TZ6L96evpSuiygZteWI1
bZesbEKYe01dkcuLSnCm5sqo4amtpXN+UTYzHyRG2zjW1suhW232d5VUPLpncRqsxK7jU22WLQeZ
ls3caTx4fJpYnRkfE4ucZ8EseO/OBAAA0K2PEgAAAPwn2a5x8o8eAAAATtpqGxmFAAAAAAAAAPjD
Hhbu+nU9vrsYvt0Ozm6uMHLcI8f2EuC0fQJ//oRKACwAAA==
B64
# entry 36: write 8192+2048 (l2-table)
put 8192 <<'B64'
H4sIAAAAAAACA2NgGAWjYBSMglEwCkYecACTGipQWghKw8TNoHQdlM6B0lFQ2gNKT4DSi6D0Fih9
DErfgNKvoPQfCK3JB6UVoLQRlHaB0mFQOgNKV0HpHii9AUrPg9KHoPQVKP3MA0L/gPC1uKC0DJTW
AwBOjkV/AAgAAA==
B64
# entry 37: write 10240+512 (data)
put 10240 <<'B64'
H4sIAAAAAAACA7MuzxPpaQo04HI7qCHBqszLwGA9KjKkRCgDAFcL998AAgAA
B64
# entry 38: write 12288+2048 (l2-table)
put 12288 <<'B64'
H4sIAAAAAAACA2NgGAWjYBSMglEwCkbBSAMAnrro8QAIAAA=
B64
# entry 39: write 10240+512 (data)
put 10240 <<'B64'
H4sIAAAAAAACA7MuzxPpaQo04HI7qCHBqszLwGA9KjLERUgBANM1INYAAgAA
B64
# entry 40: write 10240+512 (data)
put 10240 <<'B64'
H4sIAAAAAAACA7MuzxPpaQo04HI7qCHBqszLwGA9KjLsRHADAKQYe5oAAgAA
B64
# The oracle
qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"
echo "no failure reproduced"
exit 0
