#!/usr/bin/env bash
# make bench: runs every part bench/bench_*.sh in turn (BENCH_ONLY=train runs
# one part). Each part measures duet beside its peer (PyTorch, numpy,
# scikit-learn, FAISS) in the same run with the same threads, prints a table
# and writes bench/out/<part>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
for part in bench/bench_*.sh; do
  name=$(basename "$part" .sh); name=${name#bench_}
  if [ -n "${BENCH_ONLY:-}" ] && [ "$BENCH_ONLY" != "$name" ]; then continue; fi
  echo "== bench: $name" >&2
  bash "$part"
done
