#!/bin/sh
# Writes vendor/tiny_http.patch: our changes to tiny_http, as a unified diff
# against the crates.io release (pristine copy from cargo's registry; run
# `scripts/test-deps.sh` first, which fetches it). Only the files we keep
# in vendor/tiny_http are compared: upstream's tests, examples and benches
# are left out of the vendored copy, not changed.
set -eu
cd "$(dirname "$0")/.."
version=0.12.0
pristine=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tiny_http-$version 2>/dev/null | head -n1)
[ -n "$pristine" ] || { echo "no tiny_http-$version in cargo's registry: run scripts/test-deps.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/a" "$work/b"
(cd vendor/tiny_http && find . -type f | sort) | while read -r f; do
    mkdir -p "$work/a/$(dirname "$f")" "$work/b/$(dirname "$f")"
    [ -f "$pristine/$f" ] && cp "$pristine/$f" "$work/a/$f"
    cp "vendor/tiny_http/$f" "$work/b/$f"
done
(cd "$work" && diff -ruN a b) | sed -E "s/^((---|\+\+\+) [^\t]+)\t.*/\1/" > vendor/tiny_http.patch || true
echo "wrote vendor/tiny_http.patch ($(grep -c '^+++ ' vendor/tiny_http.patch) files)"
