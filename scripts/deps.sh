#!/usr/bin/env bash
# Installs the Debian packages duet needs, only those missing (idempotent).
#   scripts/deps.sh build   compiler, oneDNN, Open MPI, OpenBLAS/LAPACK, jansson, yajl, image codecs,
#                           libmicrohttpd, expat
#   scripts/deps.sh ref     + numpy/PyTorch/scikit-learn (tools/ref scripts)
#   scripts/deps.sh bench   + the same peers for `make bench` (+ FAISS, wrk)
#   scripts/deps.sh test    + curl, python3, numpy, prometheus_client, chromium (the CLI, HTTP and
#                           browser tests; `search` is the same set)
set -euo pipefail
what=${1:-build}
pkgs=(gcc make pkg-config libdnnl-dev libopenmpi-dev openmpi-bin libopenblas-dev liblapacke-dev libjansson-dev libyajl-dev libjpeg62-turbo-dev libpng-dev libstb-dev libmicrohttpd-dev libexpat1-dev)
case "$what" in
  build) ;;
  ref) pkgs+=(python3-numpy python3-torch python3-sklearn python3-torchvision python3-pil) ;;
  bench) pkgs+=(python3-numpy python3-torch python3-sklearn python3-torchvision python3-pil python3-faiss wrk curl) ;;
  test|search) pkgs+=(curl python3 python3-numpy python3-prometheus-client chromium) ;;
  *) echo "deps.sh: unknown set '$what' (build, ref, bench, test)" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps.sh: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
