#!/usr/bin/env bash
# The vendored whisper-rs-sys is the published crate plus earshot's patches, nothing else:
# unpack the pristine package (downloaded once from crates.io into ~/.cache/earshot, its
# SHA-256 pinned), drop what vendor/whisper-rs-sys/EARSHOT.md lists as removed, apply
# vendor/whisper-rs-sys/patches/*.patch in order, and compare the result with the tree.
# Fails, naming the files, when they differ. scripts/test.sh runs it.
#
# Updating whisper-rs-sys: set the version and checksum below, run this with --keep DIR to
# get the pristine tree with the patches applied (fix any that no longer apply, and make
# them again with `git format-patch`), then copy DIR over vendor/whisper-rs-sys.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=0.15.0
sha256=6986c0fe081241d391f09b9a071fbcbb59720c3563628c3c829057cf69f2a56f
# The ggml backends earshot never builds (EARSHOT.md, "Removed").
removed=(cann hexagon metal musa opencl rpc sycl vulkan webgpu zdnn zendnn)
keep=""
[ "${1:-}" = "--keep" ] && keep="${2:?--keep DIR}"

vendor=vendor/whisper-rs-sys
crate="$HOME/.cache/earshot/whisper-rs-sys-$version.crate"
if [ ! -f "$crate" ] || ! echo "$sha256  $crate" | sha256sum -c --status; then
  mkdir -p "$(dirname "$crate")"
  curl -sSfL --retry 3 -o "$crate.part" \
    "https://static.crates.io/crates/whisper-rs-sys/whisper-rs-sys-$version.crate"
  echo "$sha256  $crate.part" | sha256sum -c --status \
    || { echo "check-vendor: whisper-rs-sys $version from crates.io does not match its pinned SHA-256" >&2; exit 1; }
  mv "$crate.part" "$crate"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar xzf "$crate" -C "$work"
tree="$work/whisper-rs-sys-$version"
for b in "${removed[@]}"; do rm -rf "$tree/whisper.cpp/ggml/src/ggml-$b"; done
for p in "$vendor"/patches/*.patch; do
  # `patch`, not `git apply`: a user's copy may be a tarball, on a machine without git.
  patch -d "$tree" -p1 --batch --forward --quiet <"$p" \
    || { echo "check-vendor: $p does not apply to the pristine package" >&2; exit 1; }
done
if ! diff -r -q -x EARSHOT.md -x patches "$tree" "$vendor" >"$work/diff"; then
  echo "check-vendor: $vendor is not the pristine package plus its patches:" >&2
  cat "$work/diff" >&2
  exit 1
fi
if [ -n "$keep" ]; then
  rm -rf "$keep" && cp -a "$tree" "$keep"
fi
echo "check-vendor: $vendor is whisper-rs-sys $version plus $(ls "$vendor"/patches/*.patch | wc -l) patches" >&2
