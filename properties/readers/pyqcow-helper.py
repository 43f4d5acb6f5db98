#!/usr/bin/python3
"""Long-lived libqcow reader for the fuzz harness (properties/readers/libqcow.ts).

Debian's python3-libqcow (`import pyqcow`) reads a qcow2 image through libqcow.so.1. One JSON
request per line on stdin, one JSON answer per line on stdout:

  {"op": "version"}
    -> {"version": "20201213"}
  {"op": "check", "image": PATH, "parents": [PATH, ...], "password": STR|null,
   "size": N, "chunk": C, "expected": ["z" | SHA1-HEX, ...]}
    -> {"ok": true, "mediaSize": N}
     | {"mismatch": I, "mediaSize": N, "data": BASE64}      (chunk I differs; its bytes as read)
     | {"error": MESSAGE}                                     (libqcow refused or failed)

The whole guest disk is read in chunks of C bytes; a chunk the model holds as zeros is compared
with a zero buffer (memcmp), any other by its SHA-1, so only a differing chunk travels back.
`parents` is the backing chain, nearest first (libqcow_file_set_parent_file). A hang or a crash
inside libqcow is seen by the caller as a timeout or an exit: this process holds no other state.
"""
import base64
import hashlib
import json
import sys

import pyqcow


def open_chain(image, parents, password):
    files = []
    parent = None
    # Open the farthest backing file first so each file can take its parent.
    for path in reversed([image] + list(parents)):
        f = pyqcow.file()
        if password is not None and path == image:
            f.set_password(password)
        f.open(path)
        if parent is not None:
            f.set_parent(parent)
        files.append(f)
        parent = f
    return files


def check(req):
    files = open_chain(req["image"], req.get("parents", []), req.get("password"))
    top = files[-1]
    try:
        media = top.get_media_size()
        size = req["size"]
        chunk = req["chunk"]
        expected = req["expected"]
        zeros = bytes(chunk)
        for i, want in enumerate(expected):
            at = i * chunk
            n = min(chunk, size - at)
            data = top.read_buffer_at_offset(n, at) if at < media else b""
            if len(data) == n:
                if want == "z":
                    # (slicing would copy: only the last chunk is shorter)
                    if data == (zeros if n == chunk else bytes(n)):
                        continue
                elif hashlib.sha1(data).hexdigest() == want:
                    continue
            return {"mismatch": i, "mediaSize": media, "data": base64.b64encode(data).decode("ascii")}
        return {"ok": True, "mediaSize": media}
    finally:
        for f in reversed(files):
            try:
                f.close()
            except Exception:  # closing never hides the answer
                pass


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("op") == "version":
                answer = {"version": pyqcow.get_version()}
            else:
                answer = check(req)
        except Exception as e:  # libqcow's refusals and errors arrive as IOError/OSError
            answer = {"error": str(e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
