#!/usr/bin/env bash
# Micro-batching, bounded queues, metrics and graceful stop of `duet serve`
# (issue 16), over real HTTP on a free loopback port:
#   - answers of requests batched together (text and image, both galleries,
#     several k) equal, ids and scores, the answers of the same requests
#     sent one at a time; the answers say which batch size they ran in
#   - a full queue answers 503 with Retry-After at once (a request whose body
#     is still arriving holds a place); a request still queued at its
#     --deadline is answered 503
#   - GET /metrics parses as Prometheus text (prometheus_client's parser)
#     and its counters move by what was sent; the access log has a JSON
#     line per request
#   - SIGTERM with requests in flight: new connections refused, every
#     request received answered 200, exit 0
# Needs curl, python3 and the MobileNetV2 weights; skips otherwise.
# Prints "serve_batch: N passed, N failed, N skipped".
set -u
SUITE=serve_batch
. tests/lib/serve_lib.sh

PY=/usr/bin/python3
for tool in curl $PY; do
  command -v $tool >/dev/null || { echo "SKIP serve_batch: $tool is not installed (scripts/deps.sh test)" >&2; skip=1; summary; }
done
small_gallery "$T/g"
cd "$T/g" || exit 1

# The client: python3 client.py MODE URL ... (prints one line per check)
cat > client.py <<'PY'
import json, socket, sys, threading, time, urllib.request, urllib.error
mode, url = sys.argv[1], sys.argv[2]
host, port = url[len("http://"):].split(":"); port = int(port)
TEXTS = [("a red square", "images", 5), ("blue circle on a white background", "images", 24),
         ("green stripes", "captions", 7), ("yellow cross shape", "images", 3), ("black circle", "captions", 12),
         ("white square over red", "images", 10), ("a blue cross", "captions", 1), ("red stripes", "images", 16),
         ("green circle", "images", 9), ("zebra xylophone", "images", 4), ("yellow square", "captions", 30),
         ("a black stripes shape", "images", 24)]
IMAGES = [("img/img_%03d.bmp" % i, side, k) for i, side, k in
          [(1, "captions", 5), (4, "images", 24), (9, "captions", 12), (13, "images", 3), (17, "captions", 48),
           (20, "images", 10), (22, "captions", 2), (23, "images", 7)]]

def call(method, path, body=None, timeout=60):
    req = urllib.request.Request(url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

def text_req(t):
    q, side, k = t
    return ("GET", "/api/search?q=%s&to=%s&k=%d" % (urllib.request.quote(q), side, k), None)

def image_req(t):
    f, side, k = t
    return ("POST", "/api/search-image?to=%s&k=%d" % (side, k), open(f, "rb").read())

def answers(reqs, together):
    out = [None] * len(reqs)
    def one(i):
        code, _, body = call(*reqs[i])
        out[i] = (code, json.loads(body))
    if not together:
        for i in range(len(reqs)): one(i)
        return out
    bar = threading.Barrier(len(reqs))
    def run(i): bar.wait(); one(i)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(reqs))]
    [t.start() for t in ts]; [t.join() for t in ts]
    return out

def key(a):  # what must be equal: ids and scores, in order
    return [(r["index"], r["score"]) for r in a["results"]]

if mode in ("text", "image"):
    reqs = [text_req(t) for t in TEXTS] if mode == "text" else [image_req(t) for t in IMAGES]
    alone = answers(reqs, False)
    ok = all(c == 200 for c, _ in alone)
    print("alone_ok", ok, "batches", sorted(set(a["batch"] for _, a in alone)))
    most, same = 1, True
    for _ in range(3):  # a burst, until one was batched (the first usually is)
        tog = answers(reqs, True)
        same = same and all(c == 200 for c, _ in tog) and all(key(a) == key(b) for (_, a), (_, b) in zip(alone, tog))
        most = max(most, max(a["batch"] for _, a in tog))
        if most > 1: break
    print("batched", most > 1, "most", most)
    print("equal", same)
    scores = [r["score"] for _, a in alone for r in a["results"]]
    print("range", min(scores), max(scores))
    print("cosine", all(-1.0 <= s <= 1.0 for s in scores) and all(a["score"] == "cosine" for _, a in alone)
          and all(x["score"] >= y["score"] for _, a in alone for x, y in zip(a["results"], a["results"][1:])))
    if mode == "image":  # a gallery image finds itself first, at cosine 1
        r = alone[1][1]["results"][0]
        print("self", r["name"] == "img_004.bmp" and abs(r["score"] - 1.0) < 1e-5, r)

elif mode == "full":  # --image-queue 2: one place held by a body still arriving
    img = open("img/img_002.bmp", "rb").read()
    hold = socket.create_connection((host, port))
    hold.sendall(b"POST /api/search-image?k=3 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(img) + img[:100])
    time.sleep(0.5)
    res = {}
    def second(): res["second"] = call("POST", "/api/search-image?k=3", img)
    t = threading.Thread(target=second); t.start()
    time.sleep(0.5)
    t0 = time.time(); code, hdr, body = call("POST", "/api/search-image?k=3", img); dt = time.time() - t0
    print("full", code, "retry_after", hdr.get("Retry-After"), "fast", dt < 1.0, json.loads(body).get("error"))
    code, hdr, body = call("GET", "/api/search?q=red&k=3")  # the text queue is another queue
    print("text_meanwhile", code)
    hold.sendall(img[100:]); hold.settimeout(20)
    resp = hold.recv(65536)
    t.join()
    c2, _, b2 = res["second"]
    print("held", resp.split(b"\r\n")[0].decode(), "second", c2, "batch", json.loads(b2).get("batch"),
          resp.split(b"\r\n\r\n")[-1][:200], b2[:200])
    hold.close()
    # a request made to wait for company past --deadline (6 s; --batch-wait is
    # above it here) is answered 503 when the deadline comes
    hold = socket.create_connection((host, port))
    hold.sendall(b"POST /api/search-image?k=3 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(img) + img[:100])
    time.sleep(0.3)
    t0 = time.time(); code, hdr, body = call("POST", "/api/search-image?k=3", img); dt = time.time() - t0
    print("deadline", code, "retry_after", hdr.get("Retry-After"), "waited", 5.5 < dt < 10, json.loads(body).get("error"))
    hold.close()

elif mode == "metrics":  # prints the samples: name{labels} value
    from prometheus_client.parser import text_string_to_metric_families
    code, hdr, body = call("GET", "/metrics")
    fams = list(text_string_to_metric_families(body.decode()))
    print("content_type", hdr.get("Content-Type"))
    for f in fams:
        print("family", f.name, f.type)
        for s in f.samples:
            print("sample", s.name, json.dumps(s.labels, sort_keys=True, separators=(",", ":")), s.value)

elif mode == "stop":  # requests in flight while the server is told to stop
    img = open("img/img_005.bmp", "rb").read()
    hold = socket.create_connection((host, port))
    hold.sendall(b"POST /api/search-image?k=3 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(img) + img[:100])
    time.sleep(0.3)
    res = [None] * 3
    def go(i): res[i] = call("POST", "/api/search-image?k=%d" % (i + 2), img)
    ts = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    [t.start() for t in ts]
    time.sleep(0.5)
    print("ready", flush=True)
    sys.stdin.readline()  # the test has sent SIGTERM
    time.sleep(0.3)
    try:
        socket.create_connection((host, port), timeout=2).close(); print("new_connection accepted")
    except OSError:
        print("new_connection refused")
    hold.sendall(img[100:]); hold.settimeout(20)
    head = hold.recv(65536).split(b"\r\n")[0].decode()
    [t.join() for t in ts]
    print("held", head)
    print("in_flight", [r[0] for r in res], [len(json.loads(r[2])["results"]) for r in res])
PY

status() { local u=$1; shift; curl -s -m 20 -o "$T/body" -w '%{http_code}' "$@" "$URL$u"; }
# wait_cnn: the CNN loaded, and one image query answered (the image worker
# makes the CNN's plans first; timed scenarios must not wait behind that)
wait_cnn() {
  for _ in $(seq 1 300); do grep -q "image queries on" "$T/serve.err" && break; sleep 0.1; done
  [ "$(curl -s -m 120 -o /dev/null -w '%{http_code}' --data-binary @img/img_000.bmp "$URL/api/search-image?k=1")" = 200 ]
}

# --- batched answers equal single answers ---------------------------------
start_server g.index --threads 2 --batch 8 --image-batch 4 --batch-wait 300 --access-log "$T/access.log"
[ -n "$URL" ] && ok || { bad "serve did not start: $(cat "$T/serve.err")"; summary; }
wait_cnn && ok || bad "the CNN did not load: $(cat "$T/serve.err")"
$PY client.py metrics "$URL" > m0.txt 2>&1
# equal KIND: the sequential and burst answers of client.py KIND compared
equal() {
  local kind=$1
  $PY client.py "$kind" "$URL" > "$kind.txt" 2>&1
  cat "$kind.txt" >&2
  grep -q "^alone_ok True batches \[1\]$" "$kind.txt" && ok || bad "$kind queries one at a time: $(cat "$kind.txt")"
  grep -q "^batched True" "$kind.txt" && ok || bad "$kind queries sent together were never batched: $(cat "$kind.txt")"
  grep -q "^equal True$" "$kind.txt" && ok || bad "batched $kind answers differ from single ones: $(cat "$kind.txt")"
  grep -q "^cosine True$" "$kind.txt" && ok || bad "$kind scores are not cosines, best first: $(cat "$kind.txt")"
}
equal text
equal image
grep -q "^self True" image.txt && ok || bad "a gallery image does not find itself at cosine 1: $(cat image.txt)"

# --- /metrics and the access log -----------------------------------------
want_status() { local code=$1 u=$2; shift 2; local got; got=$(status "$u" "$@"); [ "$got" = "$code" ] && ok || bad "$u -> $got, want $code"; }
want_status 400 "/api/search?q=dog&k=0"
want_status 404 /nope
if $PY -c 'import prometheus_client' 2>/dev/null; then
  $PY client.py metrics "$URL" > m1.txt 2>&1
  grep -q "^content_type text/plain; version=0.0.4" m1.txt && ok || bad "/metrics content type: $(head -3 m1.txt)"
  $PY - m0.txt m1.txt <<'PY' > mcheck.txt 2>&1
import json, sys
def load(f):
    fam, smp = {}, {}
    for l in open(f):
        p = l.split(" ", 3)
        if p[0] == "family": fam[p[1]] = p[2].strip()
        elif p[0] == "sample": smp[(p[1], p[2])] = float(p[3])
    return fam, smp
(f0, s0), (f1, s1) = load(sys.argv[1]), load(sys.argv[2])
def v(s, name, **lab): return s.get((name, json.dumps(lab, sort_keys=True, separators=(",", ":"))), 0.0)
want = {"duet_http_requests": "counter", "duet_http_errors": "counter", "duet_http_request_duration_seconds": "histogram",
        "duet_batch_size": "histogram", "duet_batch_duration_seconds": "histogram", "duet_queue_depth": "gauge",
        "duet_queue_capacity": "gauge", "duet_queue_rejected": "counter", "duet_index_rows": "gauge",
        "process_resident_memory_bytes": "gauge"}
print("types", all(f1.get(k) == t for k, t in want.items()), {k: f1.get(k) for k in want})
# 12 alone and 12 per burst answered 200 (the histogram also has the 400)
d_search = v(s1, "duet_http_requests_total", endpoint="/api/search", code="200") - v(s0, "duet_http_requests_total", endpoint="/api/search", code="200")
d_hist = v(s1, "duet_http_request_duration_seconds_count", endpoint="/api/search") - v(s0, "duet_http_request_duration_seconds_count", endpoint="/api/search")
d_batch = v(s1, "duet_batch_size_sum", kind="text") - v(s0, "duet_batch_size_sum", kind="text")
print("search_counted", d_search >= 24 and d_search % 12 == 0 and d_hist == d_search + 1 and d_batch == d_search, d_search, d_hist, d_batch)
d_img = v(s1, "duet_http_requests_total", endpoint="/api/search-image", code="200") - v(s0, "duet_http_requests_total", endpoint="/api/search-image", code="200")
print("image_counted", d_img >= 16 and d_img % 8 == 0, d_img)
print("errors_counted", v(s1, "duet_http_requests_total", endpoint="/api/search", code="400") == 1
      and v(s1, "duet_http_requests_total", endpoint="other", code="404") == 1
      and v(s1, "duet_http_errors_total", endpoint="/api/search") == 1)
b1 = v(s1, "duet_batch_size_bucket", kind="text", le="1"); bc = v(s1, "duet_batch_size_count", kind="text")
print("batch_hist", 0 < b1 < bc, b1, bc)
print("gauges", v(s1, "duet_index_rows", side="images") == 24 and v(s1, "duet_index_rows", side="captions") == 48
      and v(s1, "duet_queue_capacity", kind="text") == 128 and v(s1, "duet_queue_depth", kind="text") == 0
      and v(s1, "process_resident_memory_bytes") > 1e6)
PY
  cat mcheck.txt >&2
  for w in types search_counted image_counted errors_counted batch_hist gauges; do
    grep -q "^$w True" mcheck.txt && ok || bad "/metrics $w: $(grep "^$w" mcheck.txt) $(tail -3 mcheck.txt)"
  done
else
  echo "SKIP: /metrics parse: needs python3-prometheus-client (scripts/deps.sh test)" >&2; skip=$((skip + 1))
fi
sleep 0.3
$PY - "$T/access.log" <<'PY' > log.txt 2>&1
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])]
keys = {"time", "client", "method", "path", "endpoint", "status", "ms", "completed"}
print("lines", len(L), all(keys <= set(d) for d in L))
print("search_lines", sum(1 for d in L if d["endpoint"] == "/api/search" and d["status"] == 200 and d["batch"] >= 1) >= 24)
print("statuses", sorted(set(d["status"] for d in L)))
PY
cat log.txt >&2
grep -q "^lines [0-9]* True" log.txt && ok || bad "access log lines: $(cat log.txt)"
grep -q "^search_lines True" log.txt && ok || bad "access log search lines: $(cat log.txt)"
grep -q "^statuses \[200, 400, 404\]" log.txt && ok || bad "access log statuses: $(cat log.txt)"
kill $SPID; wait $SPID; src=$?; SPID=""
[ $src -eq 0 ] && ok || bad "serve exited $src on SIGTERM"

# --- a full queue, a deadline ----------------------------------------------
start_server g.index --threads 2 --image-queue 2 --image-batch 4 --batch-wait 10000 --deadline 6
[ -n "$URL" ] && wait_cnn && ok || { bad "serve did not start: $(cat "$T/serve.err")"; summary; }
$PY client.py full "$URL" > full.txt 2>&1
cat full.txt >&2
grep -q "^full 503 retry_after 1 fast True .*queue is full" full.txt && ok || bad "a full queue: $(cat full.txt)"
grep -q "^text_meanwhile 200" full.txt && ok || bad "text while the image queue is full: $(cat full.txt)"
grep -q "^held HTTP/1.1 200 OK second 200 batch 2" full.txt && ok || bad "the queued requests, batched: $(cat full.txt)"
grep -q "^deadline 503 retry_after 1 waited True .*deadline" full.txt && ok || bad "past the deadline: $(cat full.txt)"
kill $SPID; wait $SPID; SPID=""

# --- SIGTERM with requests in flight --------------------------------------
start_server g.index --threads 2 --image-batch 4 --batch-wait 3000 --deadline 8
[ -n "$URL" ] && wait_cnn && ok || { bad "serve did not start: $(cat "$T/serve.err")"; summary; }
mkfifo go
$PY client.py stop "$URL" < go > stop.txt 2>&1 &
CPID=$!
exec 7>go
for _ in $(seq 1 100); do grep -q "^ready" stop.txt && break; sleep 0.1; done
kill -TERM $SPID
echo >&7
wait $CPID
exec 7>&-
wait $SPID; src=$?; SPID=""
cat stop.txt >&2
grep -q "^new_connection refused" stop.txt && ok || bad "a new connection was accepted while stopping: $(cat stop.txt)"
grep -q "^held HTTP/1.1 200 OK" stop.txt && ok || bad "the request whose body came after SIGTERM: $(cat stop.txt)"
grep -q "^in_flight \[200, 200, 200\] \[2, 3, 4\]" stop.txt && ok || bad "requests in flight at SIGTERM: $(cat stop.txt)"
[ $src -eq 0 ] && grep -q "stopped in" "$T/serve.err" && ok || bad "serve exited $src after SIGTERM: $(tail -c 400 "$T/serve.err")"
grep -Eq "AddressSanitizer|runtime error|LeakSanitizer" "$T/serve.err" && bad "sanitizer report: $(grep -m3 -E 'Sanitizer|runtime error' "$T/serve.err")" || ok
summary
