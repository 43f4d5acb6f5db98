#!/usr/bin/env bash
# QEMU 7.2 defect (crash window), found while shrinking a `qcow2 crashtest --impl qemu-io --seconds 300 --seed 2024` case by hand (3 steps): the window of qemu-discard-before-l2-update met by a guest discard. qemu-io opens with discard=unmap: discarding compressed clusters frees their host cluster and punches it in the file (qcow2_process_discards right after discard_in_l2_slice) before the L2 table that still points at it is written, with no flush between; a crash after the punch and before the L2 write leaves L2 entries pointing at a hole: the clusters no longer inflate and reads fail with EIO. Known finding qemu-discard-compressed-before-l2-update.
# Crash state (qemu-io): crash-unreadable: engine: zlib: compressed cluster does not inflate (zlib -3: invalid stored block lengths) (at host offset 0x50e4); qemu-img convert: exit 1: qemu-img: error while reading at byte 24576: Input/output error qemu-img: error while reading at byte 28672: Input/output error qemu-img: error while reading at byte 32768: Input/output error qemu-img: error while reading at byte 36864: Input/output error qem
# Expected: the image opens and reads
#
# How the run was recorded:
#   qemu-img create -f qcow2 -o compat=0.10,cluster_size=4096,refcount_bits=16 disk.qcow2 65536; : > disk.log
#   the steps: qemu-io commands in one qemu-io (`open -o driver=qcow2,file.driver=blklogwrites,file.file.filename=disk.qcow2,file.log.filename=disk.log,file.log-append=on`,
#   `close` closes and opens again); snapshots: qemu-img snapshot -c|-a|-d NAME --image-opts <the same options>
#     0: write -c -s w1.bin 8192 32768
#     1: flush
#     2: discard 8192 32768
# The log has 23 entries; the crash comes after entry 18.
# Durable: entries 0..17 (up to the last FLUSH); landed since: 1 of the writes issued after it.
# Exits 1 when the failure reproduces, 0 when the state passes, 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
fail() { echo "REPRODUCED: $*" >&2; exit 1; }
put() { base64 -d | gunzip | dd of="$img" bs=512 seek=$(( $1 / 512 )) conv=notrunc status=none || exit 2; }
# The image as of the last flush before the crash (21504 bytes)
base64 -d <<'B64' | gunzip > "$img" || exit 2
H4sIAAAAAAACA+3YT0iacRzH8ceNkY4IYU+M2EXXv0EdOqzDIHAuC4wNMw8SyMLjYuvQpUPBs4Ew
dspDgxEDD2vrJsjANjwkrIP9ARHpohEGT0fX6DAm2R9+jw+h5ZRuzb1fwvP1xwMfvnwensvjHnYe
SZJ0Q6rUrF0N52f9X59+NFfeBQAAAAAA/wALFQAAAAAA0MgM5z8jZQAAAAAA0Jhea9fHFAEAAAAA
wH+k9CVgVNXnB30+1ad+f0x2aNOdKJ3dc/rso0EAAAAAAK6ffMp+WzLLgb0f3+LtHT3f36nNYVfk
472tYn//UfLVbOH3/OdYpnWo5U9TIR0ofiq+eHIyfvLQenpfWQyeBm3PEspGqEtdVV1pQz4VMUkW
82DK78stDK6N7DjW2nwT9s2XwTnjkuLP9kSVrYNJr3wrF1Jddw5nROBXETgkAq0icEEEroe+3Myn
YibJImtZBXt5ls+4ZJvKbq4ovbvb4QfTcVsi1KVqgcnDZVPhrkh9K1I9IrVTWWwp32vAUWuvA5HQ
XXuvsr5MVft6f7Evp4jprdXX1BvPpb2ix60Z2/Ofk1657df81fayVt1rv+pedZ6j/Kjuc9Rqj/1l
L96w6+0MzxDxYQBUAAA=
B64
# entry 18: discard 20480+4096 (data)
dd if=/dev/zero of="$img" bs=512 seek=$(( 20480 / 512 )) count=$(( 4096 / 512 )) conv=notrunc status=none || exit 2
# The oracle
qemu-img convert -f qcow2 -O raw "$img" "$dir/disk.raw" || fail "the image does not read"
echo "no failure reproduced"
exit 0
