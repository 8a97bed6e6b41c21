#!/usr/bin/env bash
# A bounded load test of `duet serve` with wrk (Debian) on loopback, run by
# hand (not part of make test / make bench): 16 connections for 30 s against
# an 8K-image gallery, GET /api/search with a rotating set of text queries
# (k=10). Prints wrk's report (requests/s, latency percentiles, errors) and
# writes bench/out/load_serve.txt.
#   INDEX=gallery.index bench/load_serve.sh     an existing index
#   bench/load_serve.sh                          builds an 8,000-image gallery
#       from RANDOM 1280-D image features (noted in the output), one caption
#       per image from a small vocabulary, a tf-idf text model and a model
#       with 512-D embeddings trained for one epoch.
# LOAD_CONNECTIONS (16), LOAD_SECONDS (30), LOAD_THREADS (server, 2).
set -euo pipefail
cd "$(dirname "$0")/.."
DUET=${DUET:-$PWD/build/duet}
C=${LOAD_CONNECTIONS:-16}; S=${LOAD_SECONDS:-30}; TH=${LOAD_THREADS:-2}
command -v wrk >/dev/null || { echo "load_serve: wrk is not installed (scripts/deps.sh bench)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/duet-load.XXXXXX)
SPID=""
trap '[ -n "$SPID" ] && kill $SPID 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p bench/out
note="index: ${INDEX:-}"
if [ -z "${INDEX:-}" ]; then
  note="index: 8,000 images with RANDOM 1280-D features (not real photos), 512-D embeddings"
  echo "load_serve: building an 8K gallery from random features ..." >&2
  /usr/bin/python3 - "$tmp" <<'PY'
import numpy as np, sys, random
d = sys.argv[1]; rng = np.random.default_rng(5); r = random.Random(5)
words = ("dog cat man woman child boy girl runs jumps sits plays beach grass snow water street park ball "
         "red blue green white black brown two three a the on in with near over").split()
n = 8000
np.save(d + "/img.npy", np.abs(rng.standard_normal((n, 1280))).astype(np.float32))
with open(d + "/names.txt", "w") as f, open(d + "/caps.tsv", "w") as c:
    for i in range(n):
        f.write("img_%05d.jpg\n" % i)
        c.write("img_%05d.jpg\t%s\t%s\n" % (i, " ".join(r.choice(words) for _ in range(8)), "train"))
PY
  ( cd "$tmp"
    "$DUET" textmodel fit --dataset tsv:caps.tsv --encoder tfidf -o tm.model >/dev/null
    "$DUET" features text --textmodel tm.model --dataset tsv:caps.tsv -o txt.npy >/dev/null
    "$DUET" train --dataset tsv:caps.tsv --image-features img.npy --text-features txt.npy --text-model tm.model \
      --image-model "mobilenetv2 crops=1" --hidden 512 --embed-dim 512 --batch-images 200 --epochs 1 -o m.duet >/dev/null 2>&1
    "$DUET" index build --model m.duet --textmodel tm.model --image-features img.npy --names names.txt -o g.index >&2 )
  INDEX=$tmp/g.index
fi
"$DUET" serve --index "$INDEX" --port 0 --threads "$TH" --no-image-queries >"$tmp/serve.out" 2>"$tmp/serve.err" &
SPID=$!
URL=""
for _ in $(seq 1 300); do
  URL=$(sed -n 's|^duet serve: \(http://[0-9.:]*\)/ .*|\1|p' "$tmp/serve.out"); [ -n "$URL" ] && break; sleep 0.1
done
[ -n "$URL" ] || { echo "load_serve: server did not start: $(cat "$tmp/serve.err")" >&2; exit 1; }
cat > "$tmp/q.lua" <<'LUA'
local qs = {"a%20dog%20runs%20on%20the%20beach", "two%20children%20play%20in%20the%20snow",
            "a%20man%20in%20a%20red%20shirt", "a%20black%20cat%20sits%20near%20the%20water",
            "a%20girl%20jumps%20over%20a%20ball", "people%20walking%20down%20a%20street"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/search?k=10&q=" .. qs[(i % #qs) + 1])
end
LUA
echo "load_serve: wrk -t2 -c$C -d${S}s on $URL (server threads $TH) ..." >&2
{
  echo "== duet serve load test, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores (shared with the client)"
  echo "== $note; $(head -1 "$tmp/serve.out")"
  wrk -t2 -c"$C" -d"${S}s" --timeout 10s --latency -s "$tmp/q.lua" "$URL"
  echo "== after the run: $(curl -s -o /dev/null -w 'health HTTP %{http_code}' "$URL/api/health")"
} | tee bench/out/load_serve.txt
