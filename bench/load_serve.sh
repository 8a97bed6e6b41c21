#!/usr/bin/env bash
# Load tests of `duet serve` with wrk (Debian) on loopback, run by hand (not
# part of make test / make bench). One server, then, 30 s each:
#   text   GET /api/search, rotating text queries (k=10), 16 connections
#   image  POST /api/search-image, rotating gallery photos (k=10), 16 connections
#   image  the same with 256 connections (the queue fills: 503s expected)
#   text   256 connections
# For each: wrk's report, the answers by status, the server-side latency of
# the answered (200) requests from the access log (p50/p99/max), and the
# server's resident memory: idle (after a warm-up) and the most while
# loaded (sampled every 0.2 s). Before the load, 16 text and 8 image
# queries sent together are checked against the same sent one at a time
# (ids and scores). Writes bench/out/load_serve.txt.
#   INDEX=gallery.index bench/load_serve.sh     an existing index (docs/SEARCH.md
#                                                 builds the Flickr8K one)
#   bench/load_serve.sh                          builds an 8,000-image gallery
#       from RANDOM 1280-D image features (noted in the output; text only).
# PEER=path/to/older/duet: the 16-connection runs again against that binary's
# server (one request at a time before issue 16), in the same run, and the
# ratios. LOAD_SECONDS (30), LOAD_SCENARIOS ("text:16 image:16 image:256 text:256"),
# LOAD_IMAGES (photos to post, the first 64: ../shared/data/flickr8k/images), LOAD_FLAGS
# (extra `duet serve` flags).
set -euo pipefail
cd "$(dirname "$0")/.."
DUET=${DUET:-$PWD/build/duet}
S=${LOAD_SECONDS:-30}
SCEN=${LOAD_SCENARIOS:-text:16 image:16 image:256 text:256}
command -v wrk >/dev/null || { echo "load_serve: wrk is not installed (scripts/deps.sh bench)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/duet-load.XXXXXX)
SPID="" MPID=""
trap '[ -n "$MPID" ] && kill $MPID 2>/dev/null; [ -n "$SPID" ] && kill $SPID 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p bench/out
note="index: ${INDEX:-}"
if [ -z "${INDEX:-}" ]; then
  note="index: 8,000 images with RANDOM 1280-D features (not real photos), 512-D embeddings; text only"
  SCEN=$(echo "$SCEN" | tr ' ' '\n' | grep '^text' | tr '\n' ' ')
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
# shellcheck disable=SC2086
"$DUET" serve --index "$INDEX" --port 0 --access-log "$tmp/access.log" ${LOAD_FLAGS:-} >"$tmp/serve.out" 2>"$tmp/serve.err" &
SPID=$!
URL=""
for _ in $(seq 1 300); do
  URL=$(sed -n 's|^duet serve: \(http://[0-9.:]*\)/ .*|\1|p' "$tmp/serve.out"); [ -n "$URL" ] && break; sleep 0.1
done
[ -n "$URL" ] || { echo "load_serve: server did not start: $(cat "$tmp/serve.err")" >&2; exit 1; }
if echo "$SCEN" | grep -q image; then
  for _ in $(seq 1 600); do grep -q "image queries on" "$tmp/serve.err" && break; sleep 0.1; done
fi
IMG_DIR=${LOAD_IMAGES:-$PWD/../shared/data/flickr8k/images}
{ ls "$IMG_DIR" | grep -iE '\.(jpe?g|png|bmp)$' | head -64 | sed "s|^|$IMG_DIR/|" > "$tmp/photos.txt"; } || true

cat > "$tmp/text.lua" <<'LUA'
local qs = {"a%20dog%20runs%20on%20the%20beach", "two%20children%20play%20in%20the%20snow",
            "a%20man%20in%20a%20red%20shirt", "a%20black%20cat%20sits%20near%20the%20water",
            "a%20girl%20jumps%20over%20a%20ball", "people%20walking%20down%20a%20street",
            "a%20brown%20dog%20with%20a%20stick", "a%20boy%20on%20a%20skateboard"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/search?k=10&q=" .. qs[(i % #qs) + 1])
end
LUA
cat > "$tmp/image.lua" <<LUA
local bodies, i = {}, 0
init = function(args)
  for path in io.lines("$tmp/photos.txt") do
    local f = io.open(path, "rb"); bodies[#bodies + 1] = f:read("*a"); f:close()
  end
end
request = function()
  i = i + 1
  return wrk.format("POST", "/api/search-image?k=10", {["Content-Type"] = "application/octet-stream"},
                    bodies[(i % #bodies) + 1])
end
LUA

rss() { awk '/^VmRSS/ {print $2}' "/proc/$SPID/status"; }
warm() { # a few requests of each kind, one at a time and together
  for q in dog "two children" "a red car"; do curl -s -o /dev/null -G --data-urlencode "q=$q" "$URL/api/search"; done
  if echo "$SCEN" | grep -q image; then
    head -8 "$tmp/photos.txt" | { while read -r f; do curl -s -o /dev/null --data-binary @"$f" "$URL/api/search-image" & done; wait; }
  fi
}
# same: batched answers equal single ones on this index (ids and scores)
same() {
  /usr/bin/python3 - "$URL" "$tmp/photos.txt" "$1" <<'PY'
import json, sys, threading, urllib.parse, urllib.request
url, photos, kind = sys.argv[1:]
if kind == "text":
    qs = ["a dog runs on the beach", "two children play in the snow", "a man in a red shirt", "a black cat",
          "a girl jumps over a ball", "people walking down a street", "a brown dog with a stick", "a boy on a skateboard",
          "a woman in a blue dress", "a surfer rides a wave", "climbers on a rock", "a white dog in the snow",
          "children in a fountain", "a cyclist on a dirt road", "two dogs play with a ball", "a crowd at a concert"]
    reqs = [(url + "/api/search?k=10&q=" + urllib.parse.quote(q), None) for q in qs]
else:
    reqs = [(url + "/api/search-image?k=10", open(p, "rb").read()) for p in open(photos).read().split()[8:16]]
def get(r): return json.loads(urllib.request.urlopen(urllib.request.Request(r[0], data=r[1]), timeout=120).read())
alone = [get(r) for r in reqs]
tog = [None] * len(reqs); bar = threading.Barrier(len(reqs))
def run(i): bar.wait(); tog[i] = get(reqs[i])
ts = [threading.Thread(target=run, args=(i,)) for i in range(len(reqs))]; [t.start() for t in ts]; [t.join() for t in ts]
key = lambda a: [(r["index"], r["score"]) for r in a["results"]]
print("%s: %d queries sent together (batches of up to %d) give the ids and scores of the same sent one at a time: %s"
      % (kind, len(reqs), max(a["batch"] for a in tog), "yes" if all(key(a) == key(b) for a, b in zip(alone, tog)) else "NO"))
PY
}
# statuses and answered latency of the access log lines from line $1 on
logstats() {
  tail -n +"$1" "$tmp/access.log" | /usr/bin/python3 -c '
import json, sys
L = [json.loads(l) for l in sys.stdin if l.startswith("{")]
L = [d for d in L if d["endpoint"] in ("/api/search", "/api/search-image")]
st = {}
for d in L: st[d["status"]] = st.get(d["status"], 0) + 1
ok = sorted(d["ms"] for d in L if d["status"] == 200)
b = [d.get("batch", 0) for d in L if d["status"] == 200]
pc = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")
gone = st.pop(0, 0)  # suspended when wrk stopped: its connection closed before the answer
print("answers by status: %s%s" % (", ".join("%s: %d" % kv for kv in sorted(st.items())),
                                   "; %d cut off by the end of the run" % gone if gone else ""))
print("answered (200), server side: p50 %.1f ms, p99 %.1f ms, max %.1f ms; mean batch %.1f"
      % (pc(0.5), pc(0.99), ok[-1] if ok else float("nan"), sum(b) / len(b) if b else 0))'
}

# idle_server: waits (up to 60 s) until the last run's requests are all
# answered and its connections closed (suspended ones are noticed only then)
idle_server() {
  for _ in $(seq 1 300); do
    curl -s "$URL/metrics" | awk '$1 == "duet_requests_in_flight" { f = $2 } $1 == "duet_open_connections" { c = $2 }
                                  END { exit !(f <= 1 && c <= 1) }' && return 0
    sleep 0.2
  done
}
warm
idle_server
{
  echo "== duet serve load test, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores (shared with the client); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "== $(lscpu | sed -n 's/^Model name: *//p'); $("$DUET" info 2>/dev/null | grep -E '^(instruction set|precision)' | tr '\n' ' ')"
  echo "== $note; $(head -1 "$tmp/serve.out"); flags: ${LOAD_FLAGS:-(defaults)}"
  for k in text image; do echo "$SCEN" | grep -q $k && same $k; done
  for sc in $SCEN; do
    kind=${sc%%:*} conns=${sc##*:}
    idle=$(rss)
    ( while kill -0 $SPID 2>/dev/null; do rss; sleep 0.2; done ) > "$tmp/rss.txt" & MPID=$!
    from=$(($(wc -l < "$tmp/access.log") + 1))
    echo
    echo "== $kind search, $conns connections, ${S} s (wrk -t2 -c$conns --timeout 10s)"
    wrk -t2 -c"$conns" -d"${S}s" --timeout 10s --latency -s "$tmp/$kind.lua" "$URL" | sed -n '/Latency Distribution/,$p'
    kill $MPID; wait $MPID 2>/dev/null || true; MPID=""
    sleep 0.5
    logstats "$from"
    peak=$(sort -n "$tmp/rss.txt" | tail -1)
    echo "server resident memory: idle $((idle / 1024)) MB, most under load $((peak / 1024)) MB ($(awk -v a="$peak" -v b="$idle" 'BEGIN { printf "%.2f", a / b }')x)"
    idle_server
  done
  echo
  echo "== after the runs: $(curl -s -o /dev/null -w 'health HTTP %{http_code}' "$URL/api/health"); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  curl -s "$URL/metrics" | grep -E '^duet_(queue_rejected|deadline_expired)_total|^duet_batch_size_(sum|count)'
  kill -TERM $SPID  # (a child of the outer shell: wait for it by polling)
  for _ in $(seq 1 600); do kill -0 $SPID 2>/dev/null || break; sleep 0.1; done
  if [ -n "${PEER:-}" ]; then
    echo
    "$PEER" serve --index "$INDEX" --port 0 >"$tmp/peer.out" 2>"$tmp/peer.err" &
    SPID=$!
    URL=""
    for _ in $(seq 1 300); do
      URL=$(sed -n 's|^duet serve: \(http://[0-9.:]*\)/ .*|\1|p' "$tmp/peer.out"); [ -n "$URL" ] && break; sleep 0.1
    done
    for _ in $(seq 1 600); do grep -q "image queries on" "$tmp/peer.err" && break; sleep 0.1; done
    warm
    echo "== peer: $PEER ($("$PEER" --version 2>/dev/null | head -1)), the same runs"
    for sc in $SCEN; do
      kind=${sc%%:*} conns=${sc##*:}
      [ "$conns" -le 16 ] || continue
      echo "== peer: $kind search, $conns connections, ${S} s"
      wrk -t2 -c"$conns" -d"${S}s" --timeout 10s --latency -s "$tmp/$kind.lua" "$URL" | grep -E '^ +(50|99)%|Requests/sec|Non-2xx|Socket'
      sleep 2
    done
    kill -TERM $SPID; wait $SPID || true
  fi
} | tee bench/out/load_serve.txt
SPID=""
