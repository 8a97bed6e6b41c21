#!/usr/bin/env bash
# Sharded indexes and checksums over the CLI (docs/SCALE.md, docs/SEARCH.md):
# `duet index build --shards 3` writes three shard files and a manifest;
# `duet search` and `duet serve` on the manifest (one process, every shard)
# answer exactly as the unsharded index (rows, names, scores), also where
# scores tie across shards; a flipped bit in a shard, the manifest or the
# model, a shard of another build and a missing shard are refused with a
# message naming the file; a version-1 index (no checksum) still opens,
# with a warning. The main job's manifests record the CRC-32C of each .npy
# output: a flipped byte in a cached stage's features rebuilds that stage
# (the same file again), and a manifest written before checksums is still
# reused. (mpirun runs: tests/cli/test_mpi.sh.)
# Needs python3, curl and the MobileNetV2 weights (../shared/data); skips
# otherwise. Prints "shard: N passed, N failed, N skipped" last.
set -u
SUITE=shard
EXPECT_STDOUT=1
. tests/lib/serve_lib.sh

command -v curl >/dev/null && command -v python3 >/dev/null ||
  { echo "SKIP shard: needs curl and python3 (scripts/deps.sh search)" >&2; skip=1; summary; }
export DUET_MOBILENET=${DUET_MOBILENET:-$ROOT/../shared/data/mobilenet/mobilenet_v2_1.0_224_quant.tflite}
DUET=$DUET tests/lib/search_gallery.sh "$T/g" 24
case $? in
  0) cd "$T/g" || exit 1 ;;
  3) echo "SKIP shard: MobileNetV2 weights absent ($DUET_MOBILENET)" >&2; skip=1; summary ;;
  *) bad "gallery build failed: $(tail -5 "$T/g/log.txt")"; summary ;;
esac

# 700 gallery rows from 97 distinct feature rows: equal scores in every shard
python3 "$ROOT/tests/lib/shard_gallery.py" || { bad "shard_gallery.py failed"; summary; }
BUILD=(index build --model m.duet --textmodel tm.model --image-features big.npy --names big.names --captions big.caps)
expect 0 "" "$DUET" "${BUILD[@]}" -o whole.index
expect 0 "3 shards" "$DUET" "${BUILD[@]}" --shards 3 -o sh.index
for i in 1 2 3; do [ -s sh.index.$i-of-3 ] && ok || bad "no shard file sh.index.$i-of-3"; done
expect 2 "--shards must be >= 1" "$DUET" "${BUILD[@]}" --shards 0 -o x.index
expect 1 "shards for 700 images" "$DUET" "${BUILD[@]}" --shards 701 -o x.index
[ -e x.index ] && bad "a refused sharded build left its manifest" || ok

# --- one process, every shard: the same answers --------------------------------
results() { python3 -c 'import json,sys; print(json.dumps([json.loads(l)["results"] for l in open(sys.argv[1])]))' "$1"; }
for to in images captions; do
  "$DUET" search --index whole.index --queries queries.txt -k 40 --to $to --json >w.$to.json 2>w.err &&
    "$DUET" search --index sh.index --queries queries.txt -k 40 --to $to --json >s.$to.json 2>s.err && ok ||
    bad "search --to $to: $(tail -2 w.err s.err)"
  [ -n "$(results w.$to.json)" ] && [ "$(results w.$to.json)" = "$(results s.$to.json)" ] && ok ||
    bad "search --to $to: the sharded index answers differently"
done
python3 -c '
import json, sys
r = [json.loads(l)["results"] for l in open("w.images.json")]
ties = sum(1 for q in r for a, b in zip(q, q[1:]) if a["score"] == b["score"])
sys.exit(0 if ties >= 20 else 1)' && ok || bad "the gallery should give tied scores (rows repeat)"
if start_server sh.index --no-image-queries; then
  a=$(curl -s "$URL/api/search?q=red+square&k=30" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"])')
  kill $SPID; wait $SPID 2>/dev/null; SPID=""
  if start_server whole.index --no-image-queries; then
    b=$(curl -s "$URL/api/search?q=red+square&k=30" | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"])')
    kill $SPID; wait $SPID 2>/dev/null; SPID=""
    [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "serve: the sharded index answers differently"
  else bad "serve whole.index did not start: $(cat "$T/serve.err")"; fi
else bad "serve on a sharded index did not start: $(cat "$T/serve.err")"; fi

# --- damage is refused, naming the file ------------------------------------------
flip() { python3 -c 'import sys; p,o=sys.argv[1],int(sys.argv[2]); b=bytearray(open(p,"rb").read()); o%=len(b); b[o]^=16; open(p,"wb").write(b)' "$1" "$2"; }
cp sh.index.2-of-3 keep
flip sh.index.2-of-3 5000
expect 1 "sh.index.2-of-3: truncated or corrupt: checksum mismatch" "$DUET" search --index sh.index "red"
expect 1 "sh.index.2-of-3: truncated or corrupt: checksum mismatch" "$DUET" serve --index sh.index --port 0
"$DUET" "${BUILD[@]:0:10}" --shards 3 -o other.index >/dev/null 2>&1   # without the captions
cp other.index.2-of-3 sh.index.2-of-3
expect 1 "another build" "$DUET" search --index sh.index "red"
rm sh.index.2-of-3
expect 1 "sh.index.2-of-3: cannot open" "$DUET" search --index sh.index "red"
cp keep sh.index.2-of-3
cp sh.index keep.man
flip sh.index 30
expect 1 "sh.index: truncated or corrupt: checksum mismatch" "$DUET" search --index sh.index "red"
cp keep.man sh.index
expect 0 "" "$DUET" search --index sh.index "red"
for off in 0 100 3000 -1; do
  cp m.duet m.bad
  flip m.bad $off
  expect 1 "m.bad" "$DUET" search --index whole.index --model m.bad "red"
done
grep -q "checksum mismatch\|bad magic\|version" "$T/err" && ok || bad "model flip: $(cat "$T/err")"
cp tm.model tm.bad
flip tm.bad 200
expect 1 "tm.bad: truncated or corrupt: checksum mismatch" "$DUET" search --index whole.index --textmodel tm.bad "red"

# --- an index of version 1 (before checksums) opens, with a warning -------------------
python3 - <<'PY'
import struct
b = bytearray(open("whole.index", "rb").read())
b[8:12] = struct.pack("<I", 1); b[12:16] = b"\0\0\0\0"
open("v1.index", "wb").write(b[:-4])
PY
expect 0 "without a checksum" "$DUET" search --index v1.index -k 40 --queries queries.txt --json
python3 -c 'import json,sys; a,b=[[json.loads(l)["results"] for l in open(f)] for f in sys.argv[1:]]; sys.exit(a!=b)' \
  "$T/out" w.images.json && ok || bad "the version-1 index answers differently"

# --- the main job: stage manifests carry the CRC-32C of the .npy outputs ----------------
RUN=("$DUET" run tsv:caps.tsv --images img --model mobilenetv2 --weights "$DUET_MOBILENET" --encoder tfidf --pca 0
     --crops 1 --ensemble 1      --hidden 16 --embed-dim 8 --batch-images 8 --epochs 2 --threads 1 --examples 1 --no-report --work w)
expect 0 "index   built" "${RUN[@]}"
# the recorded CRC is the file's CRC-32C (computed here independently): the
# image stage's, computed while writing, and the text stage's, read back
for st in image text; do
  python3 - "$st" <<'PY' && ok || bad "the $st stage's manifest records a wrong checksum"
import glob, json, sys
d = glob.glob("w/%s-*/" % sys.argv[1])[0]
tab = []
for i in range(256):
    c = i
    for _ in range(8): c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    tab.append(c)
c = 0xFFFFFFFF
for b in open(d + "features.npy", "rb").read(): c = tab[(c ^ b) & 0xFF] ^ (c >> 8)
want = "crc32c:%08x" % (c ^ 0xFFFFFFFF)
got = json.load(open(d + "stage.json"))["checksums"]["features.npy"]
sys.exit(0 if got == want else "recorded %s, the file's is %s" % (got, want))
PY
done
cp w/image-*/features.npy img.keep
flip "$(ls w/image-*/features.npy)" 1000
expect 0 "checksum mismatch" "${RUN[@]}"
grep -q "features.npy: checksum mismatch" "$T/err" && grep -q "image   built" "$T/err" && grep -q "train   cached" "$T/err" &&
  ok || bad "a corrupt features.npy: the image stage alone should be rebuilt: $(grep -E 'image|train' "$T/err" | head -4)"
cmp -s img.keep w/image-*/features.npy && ok || bad "the rebuilt features differ"
# a manifest of an older duet (no checksums) is still reused
python3 -c 'import json,glob; p=glob.glob("w/text-*/stage.json")[0]; m=json.load(open(p)); del m["checksums"]; json.dump(m, open(p, "w"))'
expect 0 "text    cached" "${RUN[@]}"
grep -q " built   in" "$T/err" && bad "a manifest without checksums was rebuilt: $(grep " built   in" "$T/err")" || ok

# --- the image stage's key: int8 decided without loading the CNN ------------------------
# at bf16, "int8=1" in the key where duet runs the uint8 MobileNetV2 in int8
# (duet info), and a cached run does not open the weights to compute it
if "$DUET" info | grep -q "native bf16: yes"; then
  want=0; "$DUET" info | grep -q "MobileNetV2: int8" && want=1
  expect 0 "image   built" "${RUN[@]}" --precision bf16 --work w16
  keytext() { python3 -c 'import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1] + "/image-*/stage.json")[0]))["inputs"])' "$1"; }
  [ "$(keytext w16 | grep -c '^int8=1$')" = "$want" ] && ok || bad "the bf16 image stage's key does not say int8=$want: $(keytext w16)"
  keytext w | grep -q "^int8=" && bad "the f32 image stage's key names int8: $(keytext w)" || ok
  if command -v strace >/dev/null; then
    # (LeakSanitizer does not run under ptrace: off for this run under make asan)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
      strace -f -qq -e trace=open,openat -o "$T/strace" "${RUN[@]}" --precision bf16 --work w16 >/dev/null 2>"$T/err" &&
      grep -q "image   cached" "$T/err" && ok || bad "cached bf16 rerun under strace: $(tail -c 300 "$T/err")"
    grep -qF "$(basename "$DUET_MOBILENET")" "$T/strace" && bad "a cached image stage opened the CNN weights" || ok
  else
    echo "SKIP: strace absent: whether a cached stage opens the weights" >&2; skip=$((skip + 1))
  fi
else
  echo "SKIP: the bf16 image stage's key: no native bf16 on this CPU" >&2; skip=$((skip + 1))
fi

# --- the image stage's key follows the images' bytes, not their times -------------------
first=$(ls img | head -1); second=$(ls img | sed -n 2p)
grep -q "^[0-9a-f]\{8\} [0-9]* [0-9]* [0-9]* [0-9]* $first\$" w/image-ident.tsv && ok \
  || bad "w/image-ident.tsv lacks $first: $(head -3 w/image-ident.tsv)"
touch -d "2001-02-03 04:05:06" "img/$first"          # re-provisioned: same bytes, another time
expect 0 "image   cached" "${RUN[@]}"
grep -q "read 1 image file for the stage's key" "$T/err" && ok || bad "the touched image was not read again: $(grep image "$T/err")"
expect 0 "image   cached" "${RUN[@]}"                # and remembered: nothing read
grep -q "image file" "$T/err" && bad "an unchanged image was read again: $(grep image "$T/err")" || ok
cp "img/$second" "img/$first"                        # other bytes
expect 0 "image   built" "${RUN[@]}"
printf 'not a cache\n' > w/image-ident.tsv          # a foreign cache is rebuilt, not an error
expect 0 "image   cached" "${RUN[@]}"
head -1 w/image-ident.tsv | grep -q "^duet-image-ident 1$" && ok || bad "the cache was not rebuilt: $(head -1 w/image-ident.tsv)"

summary
