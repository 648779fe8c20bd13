#!/usr/bin/env bash
# Installs what `make bench` needs beyond the Rust toolchain: wrk, the HTTP
# load generator, from Debian's packages. Idempotent: prints one line.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  echo "bench-deps: wrk present ($(command -v wrk))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: wrk is missing and there is no apt-get here; install wrk with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "bench-deps: wrk is missing; installing it needs root (apt-get install wrk)" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "bench-deps: installing wrk (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
echo "bench-deps: wrk installed ($(command -v wrk))"
