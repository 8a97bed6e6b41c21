#!/usr/bin/env bash
# Search tests over the CLI and real HTTP: `duet index build`, `duet search`
# (text, --image, captions, --json), then `duet serve` on a free loopback
# port with curl: the API, the page, gallery images, and bad requests (no q,
# k=-1, k=1000000000, a 20 MB body, path traversal in plain and
# percent-encoded forms, invalid UTF-8, slow and idle clients), each a 4xx
# or a closed connection while the server keeps answering.
# Needs curl, python3 and the MobileNetV2 weights (../shared/data); skips
# with a message otherwise. Prints "serve: N passed, N failed, N skipped".
set -u
SUITE=serve
EXPECT_STDOUT=1
. tests/lib/serve_lib.sh


for tool in curl python3; do
  command -v $tool >/dev/null || { echo "SKIP serve: $tool is not installed (scripts/deps.sh search)" >&2; skip=1; summary; }
done
export DUET_MOBILENET=$MOB
DUET=$DUET tests/lib/search_gallery.sh "$T/g" 24
rc=$?
if [ $rc -eq 3 ]; then echo "SKIP serve: MobileNetV2 weights absent ($MOB)" >&2; skip=1; summary; fi
[ $rc -eq 0 ] || { bad "gallery build failed: $(tail -5 "$T/g/log.txt")"; summary; }
cd "$T/g" || exit 1

# --- index and CLI search ----------------------------------------------
expect 0 "" "$DUET" index --help
expect 0 "default:" "$DUET" index build --help
expect 0 "default:" "$DUET" search --help
expect 0 "default:" "$DUET" serve --help
expect 2 "--index is required" "$DUET" search "x"
expect 2 "exactly one of --images and --image-features" "$DUET" index build --model m.duet --textmodel tm.model -o x.index
expect 0 "24 images" "$DUET" search --index g.index -k 5 "a red square"
[ "$(grep -c '\.bmp$' "$T/out")" -eq 5 ] && ok || bad "search -k 5 printed $(grep -c '\.bmp$' "$T/out") images"
expect 0 "" "$DUET" search --index g.index -k 100 --json "blue circle" "green stripes"
n1=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(len(r), len(r[0]["results"]), r[0]["results"][0]["rank"])' "$T/out")
[ "$n1" = "2 24 1" ] && ok || bad "search --json of 2 queries, k 100 > 24 images: got '$n1'"
expect 0 "48 captions" "$DUET" search --index g.index --to captions -k 3 "yellow cross"
expect 0 '"image":"img/img_007.bmp"' "$DUET" search --index g.index --image img/img_007.bmp -k 4 --json
python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read()); assert r["to"]=="captions" and len(r["results"])==4 and "text" in r["results"][0]' "$T/out" \
  && ok || bad "--image gives 4 captions: $(head -c 300 "$T/out")"
# the same queries by features: index from --image-features + --names gives the same rows
expect 0 "24 images" "$DUET" index build --model m.duet --textmodel tm.model --image-features img.npy --names img.names.txt --image-root img -o f.index
"$DUET" search --index g.index -k 24 --json "white square" > a.json 2>/dev/null
"$DUET" search --index f.index -k 24 --json "white square" > b.json 2>/dev/null
python3 -c 'import json,sys; a,b=[[r["name"] for r in json.loads(open(f).read())["results"]] for f in sys.argv[1:]]; assert a==b, (a,b)' a.json b.json \
  && ok || bad "index from --images and from --image-features disagree"
# the text model must be the one the model was trained with
sed 's/background/backdrop/' caps.tsv > other.tsv
"$DUET" textmodel fit --dataset tsv:other.tsv --encoder tfidf -o other.model >/dev/null 2>&1
expect 1 "the model was trained with" "$DUET" search --index g.index --textmodel other.model "red"
expect 1 "was trained on captions encoded by" "$DUET" index build --model m.duet --textmodel other.model --images img -o o.index
[ -f o.index ] && bad "a refused index build left o.index" || ok
head -c 3000 g.index > trunc.index
expect 1 "trunc.index: truncated" "$DUET" search --index trunc.index "red"
printf 'NOTANIDX0000000000000000' > junk.index
expect 1 "bad magic" "$DUET" search --index junk.index "red"

# --- server --------------------------------------------------------------
cp img/img_000.bmp img/secret.bmp   # in the directory, not in the index
start_server g.index --threads 2 --timeout 2 --request-timeout 3 --max-body 2000000
[ -n "$URL" ] && ok || { bad "serve did not start: $(cat "$T/serve.err")"; summary; }
# text queries are answered at once; image queries once the CNN has loaded
for _ in $(seq 1 300); do grep -q "image queries on" "$T/serve.err" && break; sleep 0.1; done
grep -q "image queries on" "$T/serve.err" && ok || bad "the CNN did not load: $(cat "$T/serve.err")"
case "$URL" in http://127.0.0.1:*) ok ;; *) bad "serve is not on loopback by default: $URL" ;; esac

# status URL [curl args...] -> prints the HTTP status, body in $T/body
status() { local u=$1; shift; curl -s -m 20 -o "$T/body" -w '%{http_code}' "$@" "$URL$u"; }
want() { # want CODE URL [curl args]
  local code=$1 u=$2; shift 2
  local got; got=$(status "$u" "$@")
  [ "$got" = "$code" ] && ok || bad "$u $* -> HTTP $got, want $code: $(head -c 200 "$T/body")"
}
json() { python3 -c "import json,sys; d=json.load(open('$T/body')); print($1)"; }

want 200 /api/health
[ "$(json 'd["status"], d["images"], d["captions"], d["image_queries"]')" = "ok 24 48 True" ] && ok || bad "health: $(cat "$T/body")"
# the page says which model it serves: this gallery's one model (not an ensemble)
[ "$(json 'd["model_members"], d["model_description"].startswith("one model (")')" = "1 True" ] && ok || bad "health: model: $(cat "$T/body")"
want 200 "/api/search?q=a%20red%20square&k=12"
[ "$(json 'len(d["results"]), d["results"][0]["rank"], "took_ms" in d')" = "12 1 True" ] && ok || bad "search: $(head -c 300 "$T/body")"
json '"\n".join(r["name"] for r in d["results"])' > api.txt
"$DUET" search --index g.index -k 12 --json "a red square" 2>/dev/null | python3 -c 'import json,sys; print("\n".join(r["name"] for r in json.load(sys.stdin)["results"]))' > cli.txt
cmp -s api.txt cli.txt && ok || bad "API and CLI answers differ"
want 200 "/api/search?q=blue&to=captions&k=3"
[ "$(json 'len(d["results"]), "text" in d["results"][0]')" = "3 True" ] && ok || bad "to=captions: $(head -c 300 "$T/body")"
want 200 /
grep -q '<title>duet search</title>' "$T/body" && ok || bad "/ is not the page"
want 200 /images/img_003.bmp
cmp -s "$T/body" img/img_003.bmp && ok || bad "/images/img_003.bmp differs from the file"
[ "$(curl -s -o /dev/null -w '%{content_type}' "$URL/images/img_003.bmp")" = "image/bmp" ] && ok || bad "image content type"
want 200 "/api/search-image?k=5" --data-binary @img/img_010.bmp -H 'Content-Type: application/octet-stream'
[ "$(json 'len(d["results"]), d["to"]')" = "5 captions" ] && ok || bad "search-image: $(head -c 300 "$T/body")"
# localize: the best boxes of a gallery image for a phrase (issue 7)
want 200 "/api/localize?name=img_000.bmp&q=a%20red%20square&k=3"
[ "$(json 'len(d["boxes"]), d["boxes"][0]["rank"], d["width"], d["proposals"] > 10, d["boxes"][0]["score"] >= d["boxes"][2]["score"]')" = "3 1 96 True True" ] \
  && ok || bad "localize: $(head -c 300 "$T/body")"
want 400 "/api/localize?name=img_000.bmp"
want 400 "/api/localize?q=red"
want 404 "/api/localize?name=secret.bmp&q=red"
want 400 "/api/localize?name=../g.index&q=red"
want 400 "/api/localize?name=img_000.bmp&q=zebra%20xylophone"
grep -q "no word of" "$T/body" && ok || bad "localize, unknown words: $(cat "$T/body")"
want 400 "/api/localize?name=img_000.bmp&q=red&k=0"

# --- bad requests ---------------------------------------------------------
want 400 "/api/search"
want 400 "/api/search?q="
want 400 "/api/search?q=dog&k=-1"
want 400 "/api/search?q=dog&k=1000000000"
want 400 "/api/search?q=dog&k=0"
want 400 "/api/search?q=dog&k=abc"
want 400 "/api/search?q=dog&k=2000"      # over --max-k (default 1000)
want 400 "/api/search?q=dog&to=sideways"
want 400 "/api/search?q=%FF%FE"           # invalid UTF-8
want 400 "/api/search?q=%C0%AF"           # overlong encoding
want 400 "/api/search?q=%ED%A0%80"        # surrogate
want 400 "/api/search?q=a%00b"            # NUL
want 400 "/api/search?q=$(head -c 3000 /dev/zero | tr '\0' 'a')"
head -c 20000000 /dev/urandom > big.bin
want 413 "/api/search-image" --data-binary @big.bin -H 'Content-Type: application/octet-stream'
want 413 "/api/search-image" --data-binary @big.bin -H 'Transfer-Encoding: chunked'
want 400 "/api/search-image" --data-binary @caps.tsv
want 400 "/api/search-image" -X POST -H 'Content-Length: 0'
for p in "/images/../../etc/passwd" "/images/..%2F..%2Fetc%2Fpasswd" "/images/%2e%2e/%2e%2e/etc/passwd" \
         "/images/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd" "/images/..%252F..%252Fetc%252Fpasswd" "/images//etc/passwd" \
         "/images/img_000.bmp%00.txt" "/images/secret.bmp" "/images/" "/images/%FF"; do
  got=$(status "$p" --path-as-is)
  case "$got" in 4??) ok ;; *) bad "$p -> HTTP $got, want 4xx" ;; esac
  grep -q "root:" "$T/body" && bad "$p leaked /etc/passwd"
done
want 404 /nope
want 405 /api/search -X DELETE
want 404 /api/search -X POST -d x

# slow and idle clients: a 4xx or a closed connection, others answered meanwhile
python3 - "${URL#http://}" > slow.txt 2>&1 <<'PY' &
import socket, sys, time, threading
host, port = sys.argv[1].split(":")
res = {}
def slow_headers():  # one byte a second past the request timeout, then the rest
    s = socket.create_connection((host, int(port))); req = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"
    t0 = time.time()
    for i in range(5): s.send(req[i:i+1]); time.sleep(1)
    s.send(req[5:]); s.settimeout(10)
    try: res["headers"] = s.recv(100).split(b"\r\n")[0].decode()
    except Exception as e: res["headers"] = "closed " + type(e).__name__
def slow_body():     # a body at one byte a second: cut off
    s = socket.create_connection((host, int(port)))
    s.send(b"POST /api/search-image HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    t0 = time.time(); out = "open"
    try:
        for i in range(20):
            s.send(b"x"); time.sleep(1)
            s.settimeout(0.01)
            try:
                d = s.recv(100)
                out = ("closed" if not d else d.split(b"\r\n")[0].decode()); break
            except socket.timeout: pass
    except OSError: out = "closed"
    res["body"] = "%s after %.0f s" % (out, time.time() - t0)
def idle():          # connects and says nothing
    s = socket.create_connection((host, int(port))); s.settimeout(15); t0 = time.time()
    try: d = s.recv(100); res["idle"] = "closed after %.0f s" % (time.time() - t0) if not d else d.decode()[:20]
    except Exception as e: res["idle"] = "open " + type(e).__name__
ts = [threading.Thread(target=f) for f in (slow_headers, slow_body, idle)]
[t.start() for t in ts]; [t.join() for t in ts]
for k in sorted(res): print(k, res[k])
PY
PYPID=$!
sleep 1
t0=$(date +%s.%N)
for i in 1 2 3 4 5; do want 200 "/api/search?q=green%20circle&k=10"; sleep 0.3; done
t1=$(date +%s.%N)
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 8 else 1)" && ok || bad "other requests were slow while slow clients ran"
wait $PYPID
grep -q "^headers HTTP/1.1 408" slow.txt && ok || bad "slow headers: $(cat slow.txt)"
grep -Eq "^body (closed|HTTP/1.1 4[0-9][0-9]) after [0-9] s" slow.txt && ok || bad "slow body not cut off: $(cat slow.txt)"
grep -Eq "^idle closed after [1-5] s" slow.txt && ok || bad "idle client not closed: $(cat slow.txt)"
want 200 /api/health
kill -0 $SPID 2>/dev/null && ok || bad "server died"
kill $SPID; wait $SPID; src=$?; SPID=""
[ $src -eq 0 ] && grep -q "stopping" "$T/serve.err" && ok || bad "serve did not stop cleanly on SIGTERM (exit $src): $(tail -c 600 "$T/serve.err")"
grep -Eq "AddressSanitizer|runtime error|LeakSanitizer" "$T/serve.err" && bad "sanitizer report: $(grep -m3 -E 'Sanitizer|runtime error' "$T/serve.err")" || ok
summary
