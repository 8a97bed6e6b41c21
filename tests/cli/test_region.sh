#!/usr/bin/env bash
# CLI tests of the region commands (issue 7): duet proposals. Run from the
# repository root (tests/run.sh does). Prints "cli_region: N passed, N
# failed, N skipped" last.
set -u
SUITE=cli_region
. tests/lib/harness.sh
IMG=$ROOT/../shared/data/flickr8k/images/2511019188_ca71775f2d.jpg
cd "$T" || exit 1

expect 2 "give at least one image" "$DUET" proposals
expect 0 "" "$DUET" proposals --help
grep -q -- "--max" "$T/out" && ok || bad "proposals --help lacks --max"
expect 1 "nothing.jpg" "$DUET" proposals nothing.jpg
printf 'P6\n4 4\n255\n' > tiny.ppm
head -c 48 /dev/zero >> tiny.ppm
"$DUET" proposals tiny.ppm >/dev/null 2>"$T/err"; [ $? -eq 1 ] && ok || bad "tiny.ppm: $(cat "$T/err")"

if [ -f "$IMG" ]; then
  expect 2 "--draw takes exactly one image" "$DUET" proposals --draw x.png "$IMG" "$IMG"
  expect 0 "300 boxes" "$DUET" proposals "$IMG"
  [ "$(wc -l < "$T/out")" -eq 300 ] && ok || bad "300 lines expected: $(wc -l < "$T/out")"
  awk 'NF != 4 || $1 < 0 || $2 < 0 || $3 > 224 || $4 > 224 || $1 >= $3 || $2 >= $4 { bad = 1 } END { exit bad }' "$T/out" \
    && ok || bad "boxes out of the 224x224 image: $(head -3 "$T/out")"
  cp "$T/out" a.txt
  expect 0 "" "$DUET" proposals --max 10 --json --draw drawn.png "$IMG"
  npcheck "--json: 10 boxes, the first 10 of the full list" \
    "import json; o=json.loads(open('$T/out').read()); b=o['boxes']; \
a=[[float(v) for v in l.split()] for l in open('a.txt')][:10]; \
sys.exit(0 if len(b)==10 and o['width']==224 and all(abs(x-y)<0.06 for p,q in zip(a,b) for x,y in zip(p,q)) else 1)"
  [ "$(head -c 4 drawn.png | tail -c 3)" = "PNG" ] && ok || bad "drawn.png is not a PNG"
  expect 0 "224x224" "$DUET" proposals drawn.png
else
  echo "SKIP: ../shared/data/flickr8k absent" >&2; skip=$((skip + 1))
fi
summary
