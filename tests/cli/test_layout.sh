#!/usr/bin/env bash
# The shape of the tree (docs/ARCHITECTURE.md): no source file over 600
# lines; each folder of src/ uses only the folders below it in the pipeline,
# by #include and by the symbols its objects call; tools/ use the public
# header (and core's helpers) only. Each rule is also shown to catch a
# planted violation, so the checks cannot pass vacuously.
# Prints "layout: N passed, N failed, N skipped" last.
set -u
SUITE=layout
. tests/lib/harness.sh
BUILD_DIR=${TEST_BUILD:-build}

# The folders each folder of src/ may use (besides itself).
declare -A may=(
  [core]=""
  [data]="core"
  [image]="core"
  [text]="core data"
  [embed]="core data"
  [search]="core data image text embed"
  [region]="core data image text embed search"
  [serve]="core data image text embed search region"
  [run]="core data image text embed search region"
)
allowed() { [ "$1" = "$2" ] && return 0; case " ${may[$1]-} " in *" $2 "*) return 0 ;; esac; return 1; }

# long_files DIR: prints the source files of DIR/src over 600 lines.
long_files() { find "$1/src" -name '*.[ch]' -exec awk 'END { if (NR > 600) print FILENAME ": " NR " lines" }' {} \; ; }

# bad_includes DIR: prints the #includes of DIR/src and DIR/tools that point
# up or across the pipeline.
bad_includes() {
  local f from to
  for f in "$1"/src/*/*.[ch]; do
    from=$(basename "$(dirname "$f")")
    [ -n "${may[$from]+x}" ] || { echo "$f: folder $from is not in the layout"; continue; }
    for to in $(sed -nE 's@^#include "([a-z]+)/[^"]*".*@\1@p' "$f"); do
      allowed "$from" "$to" || echo "$f includes $to/ (a $from file may use: ${may[$from]:-nothing})"
    done
  done
  for f in "$1"/tools/*.[ch]; do
    sed -nE 's@^#include "([^"]*)".*@\1@p' "$f" | while read -r h; do
      case "$h" in duet.h|cli.h|core/core.h) ;; *) echo "$f includes $h (tools use duet.h)";; esac
    done
  done
}

# bad_calls DIR: the calls between folders that point up or across, read
# from the objects' symbol tables (defined: T/D/R/B, used: U).
bad_calls() {
  local o
  for o in "$1"/src/*/*.o; do
    nm "$o" | awk -v f="$(basename "$(dirname "$o")")" '
      NF == 3 && $2 ~ /[TDRB]/ { print "def", f, $3 } NF == 2 && $1 == "U" && $2 ~ /^duet_/ { print "use", f, $2 }'
  done | awk '$1 == "def" { d[$3] = $2; next } { u[$2 " " $3] = 1 }
              END { for (k in u) { split(k, a, " "); if ((a[2] in d) && d[a[2]] != a[1]) print a[1], d[a[2]], a[2] } }' |
  sort -u | while read -r from to sym; do
    allowed "$from" "$to" || echo "src/$from calls $sym of src/$to"
  done
}

# --- the tree as it is ----------------------------------------------------
out=$(long_files "$ROOT")
[ -z "$out" ] && ok || bad "files over 600 lines: $out"
out=$(bad_includes "$ROOT")
[ -z "$out" ] && ok || bad "includes against the pipeline: $out"
if ! command -v nm >/dev/null; then
  echo "SKIP: symbol check: needs nm (binutils)" >&2; skip=$((skip + 1))
elif ! ls "$ROOT/$BUILD_DIR"/src/*/*.o >/dev/null 2>&1; then
  echo "SKIP: symbol check: no objects in $BUILD_DIR (build first)" >&2; skip=$((skip + 1))
else
  mkdir -p "$T/objs/src"
  cp -r "$ROOT/$BUILD_DIR/src/." "$T/objs/src/"
  out=$(bad_calls "$T/objs")
  [ -z "$out" ] && ok || bad "calls against the pipeline: $out"
  # planted: core calling into run must be caught
  printf 'int duet_planted_up(void);\nint duet_core_planted(void) { return duet_planted_up(); }\n' > "$T/up.c"
  printf 'int duet_planted_up(void) { return 1; }\n' > "$T/run.c"
  cc -c "$T/up.c" -o "$T/objs/src/core/planted.o" && cc -c "$T/run.c" -o "$T/objs/src/run/planted.o" &&
    bad_calls "$T/objs" | grep -q "src/core calls duet_planted_up of src/run" && ok || bad "a planted upward call was not caught"
fi

# --- planted violations are caught ------------------------------------------
mkdir -p "$T/tree/src/core" "$T/tree/src/embed" "$T/tree/tools"
printf '#include "run/run.h"\n' > "$T/tree/src/core/x.c"
printf '#include "serve/serve.h"\n' > "$T/tree/src/embed/y.c"
printf '#include "embed/embed.h"\n' > "$T/tree/tools/z.c"
out=$(bad_includes "$T/tree")
echo "$out" | grep -q "src/core/x.c includes run/" && ok || bad "core including run/ was not caught: $out"
echo "$out" | grep -q "src/embed/y.c includes serve/" && ok || bad "embed including serve/ was not caught"
echo "$out" | grep -q "tools/z.c includes embed/embed.h" && ok || bad "a tool including a private header was not caught"
seq 601 > "$T/tree/src/core/long.c"
long_files "$T/tree" | grep -q "long.c: 601 lines" && ok || bad "a 601-line file was not caught"

summary
