#!/usr/bin/env bash
# libqcow defect. Found by `qcow2 fuzz --impl qemu-io --readers libqcow --seed 11` (chunk seed 12, 28 steps with a 1 KiB backing file), reduced by hand to no step: a fresh image over a shorter backing file.
# A defect of the reader libqcow, not of the implementation under test (found with --impl qemu-io).
# failure: reader-failed at step -1 (libqcow reads the whole disk (end of sequence)): expected the whole disk read, observed hang: no answer in 9000 ms reading 1048576 bytes
# QEMU's tools make the image; Debian's python3-libqcow (pyqcow) reads it back.
# Exits 1 when libqcow still reads wrong bytes, hangs or crashes; 0 when it reads the expected bytes; 2 on set-up errors.
set -u
dir=$(mktemp -d) || exit 2
trap 'rm -rf "$dir"' EXIT
img="$dir/disk.qcow2"
read_py='import json, sys, pyqcow
img, parent, password, runs_file = sys.argv[1:5]
runs = json.load(open(runs_file))
size = sum(r[1] for r in runs)
files = []
if parent:
    p = pyqcow.file(); p.open(parent); files.append(p)
f = pyqcow.file()
if password:
    f.set_password(password)
f.open(img)
if parent:
    f.set_parent(files[0])
print("libqcow %s reads %s: media size %d (expected %d)" % (pyqcow.get_version(), img, f.get_media_size(), size))
if f.get_media_size() != size:
    print("WRONG SIZE"); sys.exit(1)
CHUNK = 4194304
at = 0
while at < size:
    n = min(CHUNK, size - at)
    want = bytearray(n)
    for off, length, byte in runs:
        lo, hi = max(off, at), min(off + length, at + n)
        if lo < hi and byte:
            want[lo - at:hi - at] = bytes([byte]) * (hi - lo)
    got = f.read_buffer_at_offset(n, at)
    if got != want:
        i = 0
        while i < min(len(got), n) and got[i] == want[i]:
            i += 1
        print("WRONG BYTES at guest offset %d (0x%x)" % (at + i, at + i))
        print("  libqcow read:   %s" % got[i:i + 16].hex(" ") if i < len(got) else "  libqcow read:   only %d of %d bytes" % (len(got), n))
        print("  should be read: %s" % bytes(want[i:i + 16]).hex(" "))
        sys.exit(1)
    at += n
print("libqcow read the whole disk as expected")
'
# libqcow_reads N: libqcow reads the whole disk; $dir/expected.N.json holds the runs [offset, length, byte] it should read
libqcow_reads() {
  timeout 10 /usr/bin/python3 -c "$read_py" "$img" "$dir/base.img" '' "$dir/expected.$1.json"
  local status=$?
  [ $status -eq 124 ] && echo "libqcow HANGS (no answer in 10 s)"
  [ $status -gt 128 ] && [ $status -ne 124 ] && echo "libqcow CRASHED (status $status)"
  [ $status -eq 0 ] || { echo "REPRODUCED: libqcow at checkpoint $1" >&2; exit 1; }
}
base="$dir/base.img"
qemu-img create -q -f qcow2 "$base" 524288 || exit 2
for try in 1 2 3 4 5; do (cd "$dir" && qemu-img create -q -f qcow2 -o compat=1.1,cluster_size=65536,refcount_bits=16,extended_l2=off,compression_type=zlib,lazy_refcounts=off,backing_file=base.img,backing_fmt=qcow2 "$img" 1048576) && break; [ $try = 5 ] && exit 2; done
# checkpoint 1: end of sequence
cat > "$dir/expected.1.json" <<'EOF'
[[0,1048576,0]]
EOF
libqcow_reads 1
echo "no failure reproduced"
exit 0
