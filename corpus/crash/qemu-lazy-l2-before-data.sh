#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found by `qcow2 crashtest --impl qemu-io --seconds 120 --seed 7` (14 steps, shrunk by hand to 3): with lazy refcounts the L2 cache does not depend on the refcount cache, and an allocating write that needs no copy-on-write sets no flush dependency either (perform_cow returns before qcow2_cache_depends_on_flush), so the L2 table can reach the disk before the data of the cluster it now maps. A crash between leaves the dirty image with an L2 entry past the end of the file, which `qemu-img check -r all` does not repair (exit 2; QEMU's read-write open of a dirty image runs that repair). The engine passes these steps. Known finding qemu-lazy-l2-before-data.
# Crash state (qemu-io): crash-corruption: exit 2: ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x60000 size 0x10000 | ERROR cluster 5 refcount=0 reference=1 | Rebuilding refcount structure | ERROR refcount block 0 refcount=2 | Repairing cluster 1 refcount=1 reference=0 | Repairing cluster 2 refcount=1 reference=0 | ERROR cluster 6 refcount=1 reference=2 | ERROR rebuilt refcount structur
# Expected: dirty image: qemu-img check -r all ends clean (exit 0)
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=on disk.qcow2 1048576; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -P 0x01 0 65536
#     1: write -P 0x02 65536 65536
#     2: flush
# The log has 18 entries; the crash comes after entry 12.
# Durable: entries 0..10 (up to the last FLUSH); landed since: 1 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (393216 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3QwUrDQBAA0E1T735CvsGPEAQvnjynzRYDbRKSLVpP/WzBi42gWIW2nvPewizD
7g6z83B79x5CyMOx6x9xlH3G/CjLwl/Zr300DyF0X8lT/vZ4ON6HUNV92hWLOoWLZMu277dduvTF
LL6k2DfluqjKVBareh1P3s+X7abr4zDUbVOkXRfP1J+P9ZsqVsX9TRGb1NdxONV+WJevu6KPq2W7
bdJwtv2wqNOm7IbLphNmWV8+F0d/DgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP82MwIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIDJy74XAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE7Yfw9wcAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAApm4/hitzAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAmLoMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADj4AwrEj6gAABgA=
B64
# entry 12: write 262144+65536 (l2-table)
put 262144 <<'B64'
H4sIAAAAAAACA+3FsREAIAwAoW907oyecw6hYapOzfsGAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADApxZwYfIZAAABAA==
B64
# The oracle
# (the dirty bit is set: `check -r all` must end clean)
qemu-img check -r all -f qcow2 "$img"; st=$?
[ $st -eq 0 ] || fail "qemu-img check -r all exit $st"
echo "no failure reproduced"
exit 0
