# Sourced by the search tests (tests/cli/test_serve.sh, test_browser.sh) and
# bench/load_serve.sh: tests/lib/harness.sh (suite name $SUITE) whose
# cleanup also stops the server, and start_server.
. tests/lib/harness.sh
SPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }

# start_server INDEX [serve flags...]: `duet serve` on a free loopback port;
# sets SPID and URL (http://127.0.0.1:PORT); returns 1 if it did not start
# within 30 s. Its stdout/stderr go to $T/serve.out and $T/serve.err.
start_server() {
  local idx=$1; shift
  "$DUET" serve --index "$idx" --port 0 "$@" >"$T/serve.out" 2>"$T/serve.err" &
  SPID=$!
  URL=""
  for _ in $(seq 1 300); do
    URL=$(sed -n 's|^duet serve: \(http://[0-9.:]*\)/ .*|\1|p' "$T/serve.out")
    [ -n "$URL" ] && return 0
    kill -0 $SPID 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# small_gallery DIR: the 24-image test gallery (tests/lib/search_gallery.sh)
# in DIR; skips the suite without the MobileNetV2 weights, fails it when the
# build fails.
small_gallery() {
  export DUET_MOBILENET=${DUET_MOBILENET:-$ROOT/../shared/data/mobilenet/mobilenet_v2_1.0_224_quant.tflite}
  DUET=$DUET tests/lib/search_gallery.sh "$1" 24
  local rc=$?
  if [ $rc -eq 3 ]; then echo "SKIP $SUITE: MobileNetV2 weights absent ($DUET_MOBILENET)" >&2; skip=1; summary; fi
  [ $rc -eq 0 ] || { bad "gallery build failed: $(tail -5 "$1/log.txt")"; summary; }
}
