#!/usr/bin/env bash
# Idempotent set-up: node_modules matching package-lock.json, and qemu-img/qemu-io (Debian's
# qemu-utils). Quiet when everything is already present.
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

# qemu-iotests (npm run iotests, test/iotests): `check` is python3; the suite is unpacked from
# Debian's source package with dpkg-source (dpkg-dev). scripts/iotests/source.ts fetches it.
if ! command -v dpkg-source >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
  echo "setup: installing dpkg-dev and python3 (qemu-iotests)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dpkg-dev python3 >/dev/null
fi
