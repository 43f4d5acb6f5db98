#!/usr/bin/env bash
# Idempotent set-up: node_modules matching package-lock.json, qemu-img/qemu-io (Debian's
# qemu-utils), and the libqcow reader (Debian's libqcow1, libqcow-utils, python3-libqcow: `qcow2 fuzz
# --readers libqcow` and the libqcow corpus cases). Quiet when everything is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

# node_modules is stale when package-lock.json is newer than npm's own record of the install.
if [ ! -d node_modules ] || { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  echo "setup: installing npm dependencies" >&2
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi

if ! command -v qemu-img >/dev/null 2>&1 || ! command -v qemu-io >/dev/null 2>&1; then
  echo "setup: installing qemu-utils (qemu-img, qemu-io)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-utils >/dev/null
fi

# The tests open the HTML reports (campaign report, qcow2 diagnose) in Debian's headless chromium (`--with-browser`:
# `npm test` asks for it; fuzz campaigns do not need it).
if [ "${1:-}" = "--with-browser" ] && ! [ -x /usr/bin/chromium ]; then
  echo "setup: installing chromium (headless checks of the HTML reports)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

# The libqcow reader: /usr/bin/python3 with pyqcow (properties/readers/pyqcow-helper.py).
if ! /usr/bin/python3 -c 'import pyqcow' >/dev/null 2>&1 || ! command -v qcowinfo >/dev/null 2>&1; then
  echo "setup: installing libqcow (libqcow1, libqcow-utils, python3-libqcow)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libqcow1 libqcow-utils python3-libqcow >/dev/null
fi

# qemu-iotests (npm run iotests, test/iotests): `check` is python3; the suite is unpacked from
# Debian's source package with dpkg-source (dpkg-dev). scripts/iotests/source.ts fetches it.
if ! command -v dpkg-source >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
  echo "setup: installing dpkg-dev and python3 (qemu-iotests)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dpkg-dev python3 >/dev/null
fi
