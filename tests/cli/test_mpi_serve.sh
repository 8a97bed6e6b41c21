#!/usr/bin/env bash
# `mpirun -np S duet serve` on a sharded index (issue 15, docs/SCALE.md):
# rank 0 serves HTTP, every rank searches its shards. Over real HTTP on a
# free loopback port, with `mpirun --oversubscribe -np 2` and `-np 3` on the
# 24-image test gallery in 3 shards:
#   - the answers (ids, names/texts, scores) of text->images, text->captions,
#     image->captions and image->images queries, of /api/localize and of
#     /images/NAME equal one process's on the unsharded index
#   - /api/health and /metrics say how many ranks and shards serve
#   - SIGTERM to rank 0 stops every rank (exit 0); so does SIGUSR1 to mpirun
#   - a worker rank killed (SIGKILL) ends the job within 30 s, with Open
#     MPI's message naming the rank
#   - ranks holding shards of different builds are refused, naming them
# Needs mpirun, curl, python3 and the MobileNetV2 weights; skips otherwise.
# Prints "mpi_serve: N passed, N failed, N skipped" last.
set -u
SUITE=mpi_serve
. tests/lib/serve_lib.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# (as tests/cli/test_mpi.sh: Open MPI's own leaks are not duet's)
MPIRUN=(mpirun --oversubscribe --bind-to none -x "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
for tool in mpirun curl python3; do
  command -v $tool >/dev/null || { echo "SKIP mpi_serve: $tool is not installed (scripts/deps.sh)" >&2; skip=1; summary; }
done
small_gallery "$T/g"
cd "$T/g" || exit 1
MPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; [ -n "$MPID" ] && kill "$MPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }

B=(index build --model m.duet --textmodel tm.model --image-features img.npy --names img.names.txt --image-root img
   --captions captions.txt)
"$DUET" "${B[@]}" -o whole.index >/dev/null 2>&1 && "$DUET" "${B[@]}" --shards 3 -o sh.index >/dev/null 2>&1 && ok ||
  { bad "index build (whole and --shards 3) failed"; summary; }

# mpi_server NP: `mpirun -np NP duet serve` on sh.index; sets MPID, URL and
# PID0 (rank 0's pid, from the line it prints); 1 if it did not start in 60 s.
mpi_server() {
  "${MPIRUN[@]}" -np "$1" "$DUET" serve --index sh.index --port 0 >"$T/mserve.out" 2>"$T/mserve.err" &
  MPID=$!
  URL=""
  for _ in $(seq 1 600); do
    URL=$(sed -n 's|^duet serve: \(http://[0-9.:]*\)/ .*|\1|p' "$T/mserve.out")
    PID0=$(sed -n 's|^duet serve: http.* rank 0 is pid \([0-9]*\);.*|\1|p' "$T/mserve.out")
    [ -n "$URL" ] && [ -n "$PID0" ] && break
    kill -0 $MPID 2>/dev/null || return 1
    sleep 0.1
  done
  [ -n "$URL" ] || return 1
  # image queries once rank 0 has loaded the CNN
  for _ in $(seq 1 600); do grep -q "image queries on" "$T/mserve.err" && return 0; sleep 0.1; done
  return 1
}
# ends_within SECS PID: 0 when PID has exited within SECS seconds
ends_within() { for _ in $(seq 1 $(($1 * 10))); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.1; done; return 1; }

# answers OUT: the answers that must not depend on the sharding, one a line
# (timings dropped), from the server at $URL
answers() {
  {
    for q in "a+red+square" "blue+circle" "green+stripes+on+yellow" "zzz+unknown"; do
      for a in "to=images&k=24" "to=captions&k=48" "to=captions&k=5"; do curl -s -m 30 "$URL/api/search?q=$q&$a"; echo; done
    done
    for i in 003 010 017; do
      for a in "k=48" "to=images&k=24"; do
        curl -s -m 30 --data-binary @img/img_$i.bmp -H 'Content-Type: application/octet-stream' "$URL/api/search-image?$a"
        echo
      done
    done
    curl -s -m 30 "$URL/api/localize?name=img_020.bmp&q=a+yellow+cross&k=3"; echo
    for n in img_000.bmp img_023.bmp secret.bmp ../caps.tsv; do
      curl -s -m 30 -o img.got -w "%{http_code} " "$URL/images/$n"; cksum <img.got
    done
  } | python3 -c '
import json, sys
for line in sys.stdin:
    try: d = json.loads(line)
    except ValueError: print(line.strip()); continue
    for k in ("took_ms", "queue_ms", "batch"): d.pop(k, None)
    print(json.dumps(d, sort_keys=True))' >"$1"
}

cp img/img_000.bmp img/secret.bmp   # in the directory, not in the index
start_server whole.index || { bad "serve whole.index did not start: $(cat "$T/serve.err")"; summary; }
for _ in $(seq 1 600); do grep -q "image queries on" "$T/serve.err" && break; sleep 0.1; done
answers ref.txt
kill -TERM $SPID; wait $SPID 2>/dev/null; SPID=""
python3 -c '
import json, sys
L = open("ref.txt").read().split("\n")
d = [json.loads(l) for l in L if l.startswith("{")]
ok = sum(len(x.get("results", [])) for x in d) > 500 and len(d[-1]["boxes"]) == 3
ok = ok and [l[:4] for l in L[-5:-1]] == ["200 ", "200 ", "404 ", "404 "]
sys.exit(0 if ok else 1)' && ok || bad "the one-process answers are not what this test needs: $(head -c 400 ref.txt)"

for np in 2 3; do
  if ! mpi_server $np; then bad "serve -np $np did not start: $(tail -5 "$T/mserve.err")"; kill $MPID 2>/dev/null; continue; fi
  grep -q "(24 images, 48 captions in 3 shards on $np ranks" "$T/mserve.out" && ok || bad "-np $np: $(cat "$T/mserve.out")"
  answers np$np.txt
  cmp -s ref.txt np$np.txt && ok || bad "serve -np $np answers differ from one process: $(diff ref.txt np$np.txt | head -c 600)"
  h=$(curl -s "$URL/api/health" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ranks"], d["shards"], d["images"], d["captions"])')
  [ "$h" = "$np 3 24 48" ] && ok || bad "-np $np health: $h"
  m=$(curl -s "$URL/metrics" | grep -E '^duet_(ranks|index_shards) ' | tr '\n' ' ')
  [ "$m" = "duet_index_shards 3 duet_ranks $np " ] && ok || bad "-np $np metrics: $m"
  if [ $np = 2 ]; then kill -USR1 $MPID; else kill -TERM "$PID0"; fi   # graceful, both ways
  if ends_within 30 $MPID; then
    wait $MPID; rc=$?
    [ $rc = 0 ] && ok || bad "-np $np: mpirun exited $rc after the stop: $(tail -5 "$T/mserve.err")"
    grep -q "signal $([ $np = 2 ] && echo 10 || echo 15), stopping" "$T/mserve.err" && ok || bad "-np $np: no stop: $(tail -3 "$T/mserve.err")"
  else
    bad "-np $np: the job runs 30 s after rank 0 was told to stop"; kill -9 $MPID
  fi
  MPID=""
done

# --- a worker rank dies: mpirun ends the job ---------------------------------------------
if mpi_server 3; then
  pid1=$(pgrep -f -- "serve --index sh.index" | while read -r p; do
    [ "$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')" = 1 ] && echo "$p"
  done | head -1)
  curl -s "$URL/api/search?q=red" >/dev/null
  if [ -n "$pid1" ] && kill -9 "$pid1"; then
    if ends_within 30 $MPID; then
      wait $MPID && bad "mpirun exited 0 after rank 1 was killed" || ok
      grep -qiE "process rank 1|rank 1 " "$T/mserve.err" && ok || bad "no message names rank 1: $(tail -5 "$T/mserve.err")"
    else
      bad "the job still runs 30 s after rank 1 was killed"; kill -9 $MPID "$PID0" 2>/dev/null
    fi
  else
    bad "rank 1's process was not found"
  fi
  MPID=""
else
  bad "serve -np 3 did not start: $(tail -5 "$T/mserve.err")"
fi

# --- ranks holding shards of different builds ------------------------------------------------
"$DUET" "${B[@]}" --shards 2 -o other.index >/dev/null 2>&1
expect 1 "rank 1: shards 2-2 of 2 (other.index.2-of-2)" "${MPIRUN[@]}" -np 1 "$DUET" serve --index sh.index --port 0 \
  --no-image-queries : -np 1 "$DUET" serve --index other.index --port 0
grep -q "rank 0: shards 1-1 of 3 (sh.index.1-of-3)" "$T/err" && ok || bad "the refusal does not name rank 0's shard: $(tail -3 "$T/err")"
expect 1 "are not the parts of one gallery" "${MPIRUN[@]}" -np 1 "$DUET" search --index sh.index red : -np 1 "$DUET" \
  search --index other.index red
summary
