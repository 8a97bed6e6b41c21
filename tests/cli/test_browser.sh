#!/usr/bin/env bash
# Browser test of the search page in headless Chromium (Debian `chromium`):
# `duet serve` on a small gallery built here, the page opened with
# ?type=QUERY, which types QUERY into the search box key by key (keydown,
# input, keyup events) and submits the form through its own handler, as a
# user does. Chromium runs the page for a bounded virtual time and dumps the
# DOM; the test checks that at least 10 result images loaded and that their
# names, in order, are the API's answer for the same query.
# SHOT=FILE also saves a screenshot (used for docs/search.png).
# Skips with a message when chromium, curl, python3 or MobileNetV2 is absent.
# Prints "browser: N passed, N failed, N skipped".
set -u
SUITE=browser
. tests/lib/serve_lib.sh

CHROME=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROME" ] || { echo "SKIP browser: chromium is not installed (scripts/deps.sh search)" >&2; skip=1; summary; }
for tool in curl python3; do
  command -v $tool >/dev/null || { echo "SKIP browser: $tool is not installed" >&2; skip=1; summary; }
done
if [ -n "${INDEX:-}" ]; then    # an index given (e.g. a Flickr8K gallery for the screenshot)
  IDX=$INDEX
else
  small_gallery "$T/g"
  IDX=$T/g/g.index
fi
QUERY=${QUERY:-a red square on a white background}
K=${K:-12}
start_server "$IDX" --threads 2
[ -n "$URL" ] && ok || { bad "serve did not start: $(cat "$T/serve.err")"; summary; }

enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$QUERY")
curl -s -m 20 "$URL/api/search?q=$enc&k=$K" > "$T/api.json" && ok || bad "API search failed"
python3 -c 'import json,sys; print("\n".join(r["name"] for r in json.load(open(sys.argv[1]))["results"]))' "$T/api.json" > "$T/api.txt"

# headless Chromium: no sandbox as root, a private profile, bounded time
chrome() {
  timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --user-data-dir="$T/profile" --virtual-time-budget=20000 --window-size=1280,900 --hide-scrollbars "$@" \
    2>>"$T/chrome.err"
}
page="$URL/?type=$enc&k=$K"
chrome --dump-dom "$page" > "$T/dom.html"
[ -s "$T/dom.html" ] && ok || { bad "chromium dumped no DOM: $(tail -3 "$T/chrome.err")"; summary; }
python3 - "$T/dom.html" "$T/api.txt" "$QUERY" > "$T/check.txt" <<'PY'
import sys
from html.parser import HTMLParser
dom, api, query = open(sys.argv[1]).read(), open(sys.argv[2]).read().split(), sys.argv[3]
class P(HTMLParser):
    def __init__(s): super().__init__(); s.imgs = []; s.loaded = None; s.state = None; s.value = None
    def handle_starttag(s, tag, a):
        a = dict(a)
        if tag == "section" and a.get("id") == "grid": s.loaded = a.get("data-loaded")
        if tag == "body": s.state = a.get("data-state")
        if tag == "img" and "data-name" in a: s.imgs.append((a["data-name"], "ok" in (a.get("class") or "").split()))
        if tag == "input" and a.get("id") == "q": s.value = a.get("value")
p = P(); p.feed(dom)
names = [n for n, _ in p.imgs]
print("state", p.state)
print("loaded", p.loaded)
print("images", len(p.imgs), "ok", sum(1 for _, k in p.imgs if k))
print("names_match", names == api)
print("first", names[:3])
PY
cat "$T/check.txt" >&2
grep -q "^state loaded" "$T/check.txt" && ok || bad "the page never finished loading its results"
n=$(sed -n 's/^loaded \([0-9]*\)$/\1/p' "$T/check.txt")
[ -n "$n" ] && [ "$n" -ge 10 ] && ok || bad "fewer than 10 result images loaded ($n)"
grep -q "^images $K ok $K" "$T/check.txt" && ok || bad "not all $K images loaded: $(grep '^images' "$T/check.txt")"
grep -q "^names_match True" "$T/check.txt" && ok || bad "the page's images differ from the API's answer"
# the first result opened in the viewer shows the boxes /api/localize gives
# (once the CNN is on: before, localize answers 503)
for _ in $(seq 1 600); do grep -q "image queries on" "$T/serve.err" && break; sleep 0.1; done
first=$(head -n 1 "$T/api.txt")
nenc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$first")
curl -s -m 30 "$URL/api/localize?name=$nenc&q=$enc&k=3" > "$T/loc.json" && ok || bad "API localize failed"
chrome --dump-dom "$page&open=1" > "$T/dom2.html"
python3 - "$T/dom2.html" "$T/loc.json" > "$T/check2.txt" <<'PY'
import json, sys
from html.parser import HTMLParser
dom, loc = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
class P(HTMLParser):
    def __init__(s): super().__init__(); s.boxes = []; s.state = None
    def handle_starttag(s, tag, a):
        a = dict(a)
        if tag == "div" and a.get("id") == "viewer": s.state = a.get("data-state")
        if tag == "div" and "bbox" in (a.get("class") or "").split(): s.boxes.append([float(v) for v in a["data-box"].split(",")])
p = P(); p.feed(dom)
want = [b["box"] for b in loc["boxes"]]
print("viewer", p.state)
print("boxes_match", len(p.boxes) == len(want) and all(abs(x - y) < 1e-3 for b, w in zip(p.boxes, want) for x, y in zip(b, w)))
PY
cat "$T/check2.txt" >&2
grep -q "^viewer boxed" "$T/check2.txt" && grep -q "^boxes_match True" "$T/check2.txt" && ok \
  || bad "the viewer does not show the localize boxes: $(cat "$T/check2.txt")"
# the server logged no failure and still answers
curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/api/health" | grep -q 200 && ok || bad "health after the browser"
if [ -n "${SHOT:-}" ]; then
  chrome --screenshot="$SHOT" "$page" >/dev/null && [ -s "$SHOT" ] && ok || bad "no screenshot"
fi
summary
