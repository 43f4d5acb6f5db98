#!/usr/bin/env bash
# Fixed engine crash window (a regression case now): an allocating write with copy-on-write around it (extended L2: 62 bytes of subcluster 22 kept, the rest written, into a new cluster past the end of the file) set its L2 entry with no flush after the data when the dirty bit let refcounts lag, so the L2 table could reach the disk without the data write that extends the file: the state below leaves an L2 entry past the end of the file, which qemu-img check -r all cannot repair. QEMU flushes there (perform_cow → qcow2_cache_depends_on_flush); the engine's L2 cache now depends on a flush once an entry maps data written since the last one (src/engine/cluster-map.ts setEntry). Found by `qcow2 crashtest --impl engine --seed 1451266173` (chunk seed 1451266175) on 2026-11-26T04:34:29.706Z; shrunk to 8 steps.
# Crash state (engine): crash-corruption: exit 2: ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x28000 size 0x4000 | ERROR cluster 5 refcount=0 reference=1 | ERROR cluster 6 refcount=0 reference=1 | ERROR cluster 7 refcount=0 reference=1 | ERROR cluster 8 refcount=0 reference=1 | ERROR cluster 9 refcount=0 reference=1 | Rebuilding refcount structure | ERROR refcount block 0 refcount=2 |
# Expected: dirty image: qemu-img check -r all ends clean (exit 0)
#
# How the run was recorded:
#   npx qcow2 create -f qcow2 -o compat=1.1,cluster_size=16384,refcount_bits=32,extended_l2=on,compression_type=zlib,lazy_refcounts=on disk.qcow2 135168
#   then these steps through the engine on src/io/recording-device.ts (`qcow2 crashtest --impl engine`):
#     0: write -s w1.bin 8192 16384
#     1: write -s w2.bin 114688 2
#     2: write -s w3.bin 6144 4188
#     3: write -s w4.bin 74466 13878
#     4: read 78091 57077
#     5: read 81408 16384
#     6: truncate 270336
#     7: write -s w5.bin 109630 16384
# The log has 26 entries; the crash comes after entry 18.
# Durable: entries 0..15 (up to the last FLUSH); landed since: 1 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (154112 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3csU4TAQDG8SvgauITeAkvcJRCCFNj1MTExcm5lCM2gbZpjyBOPBqP5GhiYhXa
qiQEOhgRv98vAXpcW8r9p29o371+87UoivXipqfX3zfK5XFr/uNycdj97Xc3PLt5/2tPiqIYLw8+
rH95/+P0RVEcDibNeXkwaIqVtPqjyeR03Kz6iLX6Y1NPhr3j8rDX9MqjwXF95/3X+6OT8aSeTgej
Ydmcj+t7nn/j6vmHh/Vh+bZd1sNmMqind7384rj36byc1Ef90emwmd778ouDQXPSG09XuzrFWmvS
Oytv/M8FAAAAAAAAAAAAAAAAAAAAj82FSwAAAAAAAAAAAAAAAAAAAAAPq3XLFwAAAAAAAAAAAAAA
AAAAAPAXXRTe8Q8AAAAAAAAAAAAAAAAAAAAPbf7+/+717dns8+L4YnF2Nlvp8WuLe39bHncXZ5/P
bv97l8tDnzwAAAAAAAAAAAAAAAAAAAAAAAAAAADAf2nzrJrb7i5uVFt7VbX/kgi39e/pH92/r390
/1r/5P7tSv/o/m39o/t39I/uv6t/dP8/tf9f8M/72X/rV/+r/e/K5Pbv6x/dv9Y/uf92pX90/7b+
0f07+kf339U/uv+e/tH97f/s/vZ/dn/7P7p/x/7P7m//Z/e3/7P72//Z/e3/7P72f3Z/+z+7v/0f
3X/H/s/ub/9n97f/s/vb/9n97f/s/vZ/dn/7P7u//Z/DJyABAAAAAAAAwOO3eeYaAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAcJfNs2qu013c2Gq36/b+KyLc1r+jf3T/Xf2j++/pH92/p390/77+0f1r
/ZP7b1f6R/e3/7P72//Z/e3/7P72f3Z/+z+7v/2f3d/+j+7fsf+z+9v/2f3t/+z+9n92f/s/u7/9
n93f/s/ub/9H99+x/7P72//Z/e3/7P72f3b/+/d/yrvjvgMkeCilAFoCAA==
B64
# entry 18: write 65536+16384 (l2-table)
put 65536 <<'B64'
H4sIAAAAAAACA+3MwRGAIAwEwGAjtkJnWholWYE4BnxTgLuPzFwukzMiotR3Ru9XnJlz5iYW8nKb
1/eX62z3PvL419vsSxv1sf4PAAAAAAAAAAAAAAAAAAAAf/AAxU5HWwBAAAA=
B64
# The oracle
# (the dirty bit is set: `check -r all` must end clean)
qemu-img check -r all -f qcow2 "$img"; st=$?
[ $st -eq 0 ] || fail "qemu-img check -r all exit $st"
echo "no failure reproduced"
exit 0
