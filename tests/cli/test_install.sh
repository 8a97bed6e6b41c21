#!/usr/bin/env bash
# duet as a library: `make install` into a temporary PREFIX and a DESTDIR
# staged one (every file where it belongs, duet.pc's prefix, the soname,
# `make uninstall`), then examples/search.c built with `pkg-config --cflags
# --libs duet` against the installed copy (shared, and static with --static)
# and run on a small index (tests/lib/search_gallery.sh): its results must
# be `duet search`'s. Installs the objects of TEST_BUILD (rebuilds nothing);
# TEST_LDFLAGS is what a program linked against them needs besides
# pkg-config's flags (the sanitizers under `make asan`; unset: read from the
# library). Needs pkg-config; the search part also python3 and the
# MobileNetV2 weights (../shared/data); skips with a message otherwise.
# Prints "install: N passed, N failed, N skipped" last.
set -u
SUITE=install
. tests/lib/harness.sh

B=${TEST_BUILD:-build}
command -v pkg-config >/dev/null || { echo "SKIP install: pkg-config is not installed (scripts/deps.sh build)" >&2; skip=1; summary; }
[ -f "$B/libduet.a" ] || { bad "$B/libduet.a is absent: build first (make BUILD=$B)"; summary; }
V=$(sed -n 's/.*DUET_VERSION_STRING *"\([^"]*\)".*/\1/p' include/duet.h)
M=${V%%.*}
if [ -z "${TEST_LDFLAGS+set}" ]; then
  san=
  nm -u "$B/libduet.a" 2>/dev/null | grep -q '__asan_' && san=address
  nm -u "$B/libduet.a" 2>/dev/null | grep -q '__ubsan_' && san=${san:+$san,}undefined
  TEST_LDFLAGS=${san:+-fsanitize=$san}
fi
# install ARGS...: make install (or uninstall) of this test run's build dir
install_duet() { make -s --no-print-directory -C "$ROOT" BUILD="$B" LDFLAGS="$TEST_LDFLAGS" "$@" >"$T/make.log" 2>&1; }
# has_files DIR PREFIX: the installed set, each in its place, the links right
has_files() {
  local d=$1 p=$2 f
  for f in bin/duet lib/libduet.a "lib/libduet.so.$V" include/duet.h lib/pkgconfig/duet.pc; do
    [ -f "$d$p/$f" ] && ok || bad "no $p/$f under '${d:-/}'"
  done
  [ -x "$d$p/bin/duet" ] && ok || bad "$p/bin/duet is not executable"
  [ "$(readlink "$d$p/lib/libduet.so.$M")" = "libduet.so.$V" ] && ok || bad "lib/libduet.so.$M does not link to libduet.so.$V"
  [ "$(readlink "$d$p/lib/libduet.so")" = "libduet.so.$M" ] && ok || bad "lib/libduet.so does not link to libduet.so.$M"
  grep -qx "prefix=$p" "$d$p/lib/pkgconfig/duet.pc" && ok || bad "duet.pc: prefix is not $p: $(grep ^prefix= "$d$p/lib/pkgconfig/duet.pc")"
  cmp -s include/duet.h "$d$p/include/duet.h" && ok || bad "the installed duet.h differs from include/duet.h"
}

# --- a PREFIX install: nothing rebuilt, files, pkg-config, soname ----------
P=$T/prefix
make -q --no-print-directory -C "$ROOT" BUILD="$B" "$B/libduet.a" "$B/duet" >/dev/null 2>&1
fresh=$?
touch "$T/before"
install_duet install PREFIX="$P" && ok || { bad "make install PREFIX=$P: $(tail -5 "$T/make.log")"; summary; }
rebuilt=$(find "$B" -name '*.o' -newer "$T/before" | wc -l)
if [ $fresh -ne 0 ]; then
  echo "SKIP install: $B was out of date (sources changed since it was built): not checking that make install recompiles nothing" >&2
  skip=$((skip + 1))
else
  [ "$rebuilt" -eq 0 ] && ok || bad "make install recompiled $rebuilt objects of an up-to-date $B"
fi
has_files "" "$P"
export PKG_CONFIG_PATH=$P/lib/pkgconfig
[ "$(pkg-config --modversion duet)" = "$V" ] && ok || bad "pkg-config --modversion duet: '$(pkg-config --modversion duet)', want $V"
[ "$(pkg-config --cflags --libs duet | xargs)" = "-I$P/include -L$P/lib -lduet" ] && ok \
  || bad "pkg-config --cflags --libs duet: '$(pkg-config --cflags --libs duet)'"
pkg-config --static --libs duet | grep -q -- '-ljansson' && ok || bad "pkg-config --static --libs lacks the dependencies"
readelf -d "$P/lib/libduet.so.$V" | grep -qF "Library soname: [libduet.so.$M]" && ok || bad "libduet.so.$V has no soname libduet.so.$M"
"$P/bin/duet" --help 2>&1 | grep -qF "duet $V" && ok || bad "the installed duet does not run"
# the installed header stands alone
echo '#include <duet.h>' | ${CC:-cc} -std=c11 -Wall -Wextra -pedantic -Werror -fsyntax-only -I"$P/include" -x c - \
  && ok || bad "duet.h does not compile with -I$P/include alone"

# --- a DESTDIR staged install: files under DESTDIR, duet.pc says PREFIX ---
S=$T/stage
install_duet install PREFIX=/opt/duet DESTDIR="$S" && ok || bad "make install DESTDIR=$S: $(tail -5 "$T/make.log")"
has_files "$S" /opt/duet
[ "$(find "$S" ! -type d ! -path "$S/opt/duet/*" | wc -l)" -eq 0 ] && ok || bad "files outside DESTDIR/PREFIX: $(find "$S" ! -type d | head -3)"
grep -qF "$S" "$S/opt/duet/lib/pkgconfig/duet.pc" && bad "duet.pc names DESTDIR" || ok
install_duet uninstall PREFIX=/opt/duet DESTDIR="$S" && ok || bad "make uninstall: $(tail -5 "$T/make.log")"
[ "$(find "$S" ! -type d | wc -l)" -eq 0 ] && ok || bad "make uninstall left $(find "$S" ! -type d | head -3)"

# --- examples/search.c against the installed copy ------------------------
# shared (with an rpath to the prefix), and static: libduet.a with --static
# cc_search OUT FLAGS...: examples/search.c -> $T/OUT
cc_search() { local out=$1; shift; ${CC:-cc} -std=c11 -Wall -Wextra -Wshadow -Werror "$ROOT/examples/search.c" "$@" $TEST_LDFLAGS -o "$T/$out" 2>"$T/cc.log"; }
# shellcheck disable=SC2046
cc_search search $(pkg-config --cflags --libs duet) -Wl,-rpath,"$P/lib" && ok || bad "examples/search.c with pkg-config: $(head -5 "$T/cc.log")"
# shellcheck disable=SC2046
cc_search search-static $(pkg-config --cflags duet) $(pkg-config --static --libs duet | sed 's/-lduet\b/-l:libduet.a/') \
  && ok || bad "examples/search.c with pkg-config --static: $(head -5 "$T/cc.log")"
readelf -d "$T/search" | grep -q "Shared library: \[libduet.so.$M\]" && ok || bad "search does not load libduet.so.$M"
readelf -d "$T/search-static" | grep -q "libduet" && bad "search-static loads libduet.so" || ok
expect 2 "usage: search MODEL TEXTMODEL INDEX QUERY [K]" "$T/search"
expect 2 "K must be a number" "$T/search" m t i "a dog" 0

command -v python3 >/dev/null || { echo "SKIP install: python3 is not installed: the example is not run (scripts/deps.sh test)" >&2; skip=$((skip + 1)); summary; }
DUET=$DUET tests/lib/search_gallery.sh "$T/g" 16
rc=$?
if [ $rc -eq 3 ]; then echo "SKIP install: MobileNetV2 weights absent: the example is not run" >&2; skip=$((skip + 1)); summary; fi
[ $rc -eq 0 ] || { bad "gallery build failed: $(tail -5 "$T/g/log.txt")"; summary; }
cd "$T/g" || exit 1
for q in "a red square" "blue circle on a white background"; do
  "$DUET" search --index g.index -k 16 "$q" 2>/dev/null | tail -n +2 | awk '{print $1, $2, $3}' > want.txt
  [ "$(wc -l < want.txt)" -eq 16 ] || bad "duet search '$q' printed $(wc -l < want.txt) results"
  for bin in search search-static; do
    "$T/$bin" m.duet tm.model g.index "$q" 16 > got.txt 2>"$T/err" || bad "$bin '$q' failed: $(head -3 "$T/err")"
    awk '{print $1, $2, $3}' got.txt | cmp -s - want.txt && ok || bad "$bin '$q' disagrees with duet search: $(head -3 got.txt)"
  done
done
expect 0 "" "$T/search" m.duet tm.model g.index "yellow cross" 3
[ "$(wc -l < "$T/out")" -eq 3 ] && ok || bad "search ... 3 printed $(wc -l < "$T/out") lines"
expect 1 "nothing.index" "$T/search" m.duet tm.model nothing.index "red"
sed 's/background/backdrop/' caps.tsv > other.tsv
"$DUET" textmodel fit --dataset tsv:other.tsv --encoder tfidf -o other.model >/dev/null 2>&1
expect 1 "the model was trained with" "$T/search" m.duet other.model g.index "red"
summary
