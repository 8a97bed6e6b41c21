#!/usr/bin/env bash
# Runs every test binary and CLI test script given as arguments, then prints
# the total as "N passed, N failed, N skipped" on the last line. Each program
# prints "<suite>: N passed, N failed, N skipped" as its last stdout line.
set -u
export LC_ALL=C
passed=0 failed=0 skipped=0 broken=()
# Which precision and instruction set the tests run with (duet info).
if [ -n "${DUET:-}" ] && [ -x "$DUET" ]; then
  echo "tests: precision ${DUET_PRECISION:-f32 (CLI tests; unit tests name theirs)}; $("$DUET" info | sed -n 's/^instruction set: /oneDNN ISA /p')"
fi
for t in "$@"; do
  [ -e "$t" ] || continue
  out=$(mktemp)
  if [[ "$t" == *.sh ]]; then bash "$t" >"$out"; rc=$?; else "$t" >"$out"; rc=$?; fi
  line=$(grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out" | tail -n 1)
  cat "$out"; rm -f "$out"
  if [ -z "$line" ]; then
    echo "$t: exited $rc without a summary line" >&2
    failed=$((failed + 1)); broken+=("$t"); continue
  fi
  read -r p f s <<<"$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped/\1 \2 \3/')"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); broken+=("$t"); fi
  [ "$f" -gt 0 ] && broken+=("$t")
done
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}" >&2
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" -eq 0 ]
