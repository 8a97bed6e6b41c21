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
# a 4x4 24-bit BMP: smaller than any box
printf 'BM\x66\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x04\0\0\0\x04\0\0\0\x01\0\x18\0\0\0\0\0\x30\0\0\0\x13\x0b\0\0\x13\x0b\0\0\0\0\0\0\0\0\0\0' > tiny.bmp
head -c 48 /dev/zero >> tiny.bmp
expect 1 "the image is 4x4; at least 8x8 pixels are needed" "$DUET" proposals tiny.bmp

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

# --- localize and eval-phrases on the small search gallery -------------
expect 2 "give --work DIR" "$DUET" localize x.jpg "a dog"
expect 2 "give an image and at least one phrase" "$DUET" localize --model m.duet x.jpg
expect 2 "--score: 'best' is not contrast or cosine" "$DUET" localize --model m.duet --score best x.jpg "a dog"
expect 1 "nowhere/run.json" "$DUET" localize --work nowhere x.jpg "a dog"
expect 2 "--entities is required" "$DUET" eval-phrases --model m.duet --images .
if ! command -v python3 >/dev/null; then
  echo "SKIP: localize: needs python3 (scripts/deps.sh test)" >&2; skip=$((skip + 1))
elif DUET="$DUET" bash "$ROOT/tests/lib/search_gallery.sh" "$T/g" 24; then
  G=$T/g
  L=("$DUET" localize --model "$G/m.duet" --textmodel "$G/tm.model" --weights "$MOB")
  expect 0 "proposals embedded" "${L[@]}" -k 4 "$G/img/img_000.bmp" "a red square" "blue circle"
  [ "$(grep -c '^# ' "$T/out")" -eq 2 ] && [ "$(grep -vc '^# ' "$T/out")" -eq 8 ] && ok || bad "localize: $(cat "$T/out")"
  awk '!/^#/ { if (NR > 1 && prev_phrase == ph && $2 > last + 1e-6) bad = 1; last = $2; prev_phrase = ph } /^#/ { ph = $0 }
       END { exit bad }' "$T/out" && ok || bad "localize: scores not best first: $(cat "$T/out")"
  expect 0 "" "${L[@]}" --json -k 3 --draw drawn.png "$G/img/img_000.bmp" "a red square"
  npcheck "localize --json" "import json; o=json.loads(open('$T/out').read()); b=o['boxes']; \
sys.exit(0 if len(b)==3 and o['width']==96 and b[0]['rank']==1 and b[0]['score']>=b[2]['score'] and len(b[0]['box'])==4 else 1)"
  [ "$(head -c 4 drawn.png | tail -c 3)" = "PNG" ] && ok || bad "localize --draw wrote no PNG"
  expect 1 "no word of \"zebra xylophone\" is in the text model's vocabulary" "${L[@]}" "$G/img/img_000.bmp" "zebra xylophone"
  expect 1 "at least 8x8 pixels" "${L[@]}" tiny.bmp "a red square"
  # eval-phrases: a two-image sample in the Flickr30K Entities format; one
  # phrase's box is the whole image (the largest box must find it)
  mkdir -p ent/Sentences ent/Annotations
  printf '[/EN#1/other a red square] on [/EN#2/scene a white background]\n' > ent/Sentences/img_000.txt
  printf '[/EN#5/other a green square] shape\n' > ent/Sentences/img_001.txt
  for n in 000 001; do
    printf '<annotation><filename>img_%s.bmp</filename><size><width>96</width><height>96</height><depth>3</depth></size>\n' $n > ent/Annotations/img_$n.xml
  done
  printf '<object><name>1</name><bndbox><xmin>20</xmin><ymin>20</ymin><xmax>75</xmax><ymax>75</ymax></bndbox></object>\n<object><name>2</name><nobndbox>1</nobndbox></object></annotation>\n' >> ent/Annotations/img_000.xml
  printf '<object><name>5</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>95</xmax><ymax>95</ymax></bndbox></object></annotation>\n' >> ent/Annotations/img_001.xml
  E=("$DUET" eval-phrases --model "$G/m.duet" --textmodel "$G/tm.model" --weights "$MOB" --entities ent --images "$G/img")
  expect 0 "" "${E[@]}"
  grep -q "2 images, 2 phrases with a box" "$T/out" && grep -q "largest proposal .* 50.0%\|largest proposal .*100.0%" "$T/out" \
    && grep -q "^duet (the model's best box)" "$T/out" && grep -q "^proposal recall (.* of 2): 10: " "$T/out" \
    && ok || bad "eval-phrases table: $(cat "$T/out")"
  expect 0 "" "${E[@]}" --json --score cosine
  npcheck "eval-phrases --json" "import json; o=json.load(open('$T/out')); a=o['accuracy']; \
sys.exit(0 if o['phrases']==2 and o['proposal_recall']['boxes']==2 and a['largest_box']>=50 and all(0<=v<=100 for v in a.values()) and a['upper_bound']>=a['model'] else 1)"
  # region/phrase data from the same sample, a model trained on it, used by localize
  expect 0 "2 regions" "$DUET" phrase-data --model "$G/m.duet" --textmodel "$G/tm.model" --weights "$MOB" \
    --entities ent --images "$G/img" -o pd
  [ "$(wc -l < pd/regions.tsv)" -eq 2 ] && grep -q "^img_000.bmp#1	a red square	" pd/regions.tsv && ok \
    || bad "regions.tsv: $(cat pd/regions.tsv)"
  npcheck "phrase-data img.npy: 2 x (1280 + 5 geometry)" "a=n.load('pd/img.npy'); t=n.load('pd/txt.npy'); \
sys.exit(0 if a.shape==(2,1285) and t.shape[0]==2 and abs(a[1,-1]-1.0)<1e-6 else 1)"
  grep -q "^duet train --dataset tsv:pd/regions.tsv" "$T/out" && ok || bad "phrase-data: no train line: $(cat "$T/out")"
  # the splits from the dataset's own lists when they exist (an id in no list is left out)
  printf 'img_009\nimg_001\n' > ent/val.txt; printf 'img_000\n' > ent/train.txt
  expect 0 "" "$DUET" phrase-data --model "$G/m.duet" --textmodel "$G/tm.model" --weights "$MOB" \
    --entities ent --images "$G/img" -o pd2
  [ "$(cut -f1,3 pd2/regions.tsv | tr '\t\n' ' ;')" = "img_000.bmp#1 train;img_001.bmp#5 val;" ] && ok \
    || bad "phrase-data splits from lists: $(cat pd2/regions.tsv)"
  printf 'img_000\n' > ent/val.txt; rm ent/train.txt
  expect 0 "1 regions (train 0, val 1, test 0)" "$DUET" phrase-data --model "$G/m.duet" --textmodel "$G/tm.model" \
    --weights "$MOB" --entities ent --images "$G/img" -o pd3
  rm ent/val.txt
  expect 0 "" "$DUET" train --dataset tsv:pd/regions.tsv --image-features pd/img.npy --text-features pd/txt.npy \
    --text-model "$G/tm.model" --image-model "mobilenetv2 crops=1" --hidden 16 --embed-dim 8 --batch-images 2 --epochs 2 -o pd/phrase.duet
  expect 0 "" "${L[@]/$G\/m.duet/pd/phrase.duet}" --score cosine -k 2 "$G/img/img_000.bmp" "a red square"
  [ "$(grep -vc '^# ' "$T/out")" -eq 2 ] && ok || bad "localize with the region model: $(cat "$T/out")"
  printf '<annotation><size><width>96</width></size>' > ent/Annotations/img_001.xml
  expect 1 "img_001.xml:1: " "${E[@]}"
else
  echo "SKIP: localize: the MobileNetV2 weights are absent" >&2; skip=$((skip + 1))
fi
summary
