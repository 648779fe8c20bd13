#!/usr/bin/env bash
# Installs what `make bench` needs beyond the Rust toolchain, from Debian's
# packages: wrk, the HTTP load generator, and prometheus-blackbox-exporter,
# the program the side-by-side column measures. Idempotent: one line each.
set -euo pipefail

# command:package, one per tool.
NEEDED=(wrk:wrk prometheus-blackbox-exporter:prometheus-blackbox-exporter)

missing=()
for entry in "${NEEDED[@]}"; do
  tool=${entry%%:*} package=${entry#*:}
  if command -v "$tool" >/dev/null 2>&1; then
    echo "bench-deps: $tool present ($(command -v "$tool"))"
  else
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: missing ${missing[*]} and there is no apt-get here; install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "bench-deps: missing ${missing[*]}; installing needs root (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "bench-deps: installing ${missing[*]} (apt-get)"
# Other apt-get runs on this machine (the test scripts') hold the lock for a
# while: wait for it rather than fail.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# --no-install-recommends: the exporter's package recommends nothing the
# benchmark uses, and the driver starts it itself (not as a service).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
  --no-install-recommends "${missing[@]}" >/dev/null
for entry in "${NEEDED[@]}"; do
  tool=${entry%%:*}
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench-deps: $tool is still missing after apt-get install" >&2
    exit 1
  fi
done
echo "bench-deps: installed ${missing[*]}"
