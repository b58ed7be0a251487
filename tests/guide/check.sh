#!/bin/sh
# check.sh - the C in docs/GUIDE.md compiles and runs (CTest: guide_programs).
#
#   check.sh <GUIDE.md> <libray.a> <include dir>
#
# The guide marks its C blocks with an HTML comment on the line before the
# ```c fence (invisible when rendered):
#
#   <!-- complete program -->            a whole program: compiled alone,
#                                        run, and it must exit 0
#   <!-- complete program, not run -->   compiled alone only (for a program
#                                        that does not end by itself)
#   <!-- output of the complete program above -->
#                                        before a plain ``` block: the exact
#                                        stdout of the last complete program
#   <!-- program prelude -->             the head of every program below
#   <!-- program NAME: file scope -->    a part of program NAME: declarations
#   <!-- program NAME: in main -->       a part of program NAME: statements
#
# Program NAME is the prelude, its file-scope parts, then
#   int main(void) { CHECK(ray_init(NULL)); <its in-main parts> CHECK(ray_shutdown()); return 0; }
# each part in the order it appears; it is compiled, run, and must exit 0.
# Everything is compiled with -std=c11 -pedantic -Wall -Wextra -Werror against
# libray.a, with #line directives, so an error names the guide's line. A marker this
# script does not know, or one not followed by its fence, is an error; so is a
# guide with no complete program. RAY_CHECK_CC and RAY_CHECK_CFLAGS (set by
# CTest) give the compiler and, in sanitizer builds, the -fsanitize flags.
set -eu

usage="usage: check.sh <GUIDE.md> <libray.a> <include dir>"
guide=${1:?$usage}
lib=${2:?$usage}
inc=${3:?$usage}
cc=${RAY_CHECK_CC:-cc}
extra=${RAY_CHECK_CFLAGS:-}
libs=${RAY_CHECK_LIBS:-} # what libray.a needs besides pthreads (MPI, in a cluster build)
for f in "$guide" "$lib" "$inc/ray.h"; do
  [ -e "$f" ] || { echo "check.sh: $f does not exist" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rayc-guide.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# Split the guide into files under $tmp:
#   complete_<k>.c, complete_<k>.mode (run | norun), complete_<k>.out
#   prelude.c, program_<name>.top.c, program_<name>.main.c, programs (names)
awk -v dir="$tmp" '
function fail(msg) {
  printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
  err = 1
}
function expect_fence(file, fence, line_mark) {
  want = fence; target = file; mark = line_mark; marker_line = FNR
}
BEGIN { k = 0; err = 0; inblock = 0; target = ""; nprelude = 0 }
inblock {
  if ($0 ~ /^```[ \t]*$/) { inblock = 0; close(target); target = ""; next }
  print >> target
  next
}
target != "" {
  if ($0 != want) {
    fail("the marker on line " marker_line " is not followed by " want)
    target = ""
    next
  }
  if (mark) printf "#line %d \"%s\"\n", FNR + 1, FILENAME >> target
  inblock = 1
  next
}
/^<!--[ \t]*(complete program|program |output of)/ {
  m = $0
  sub(/^<!--[ \t]*/, "", m); sub(/[ \t]*-->[ \t]*$/, "", m)
  if (m == "complete program" || m == "complete program, not run") {
    k++
    print (m == "complete program" ? "run" : "norun") > (dir "/complete_" k ".mode")
    close(dir "/complete_" k ".mode")
    expect_fence(dir "/complete_" k ".c", "```c", 1)
  } else if (m == "output of the complete program above") {
    if (k == 0) { fail("an output marker before any complete program"); next }
    expect_fence(dir "/complete_" k ".out", "```", 0)
  } else if (m == "program prelude") {
    if (nprelude++) { fail("a second program prelude"); next }
    expect_fence(dir "/prelude.c", "```c", 1)
  } else if (m ~ /^program [a-z0-9_]+: (file scope|in main)$/) {
    name = m; sub(/^program /, "", name); sub(/:.*/, "", name)
    part = (m ~ /file scope$/) ? "top" : "main"
    if (!(name in seen)) { seen[name] = 1; print name >> (dir "/programs") }
    expect_fence(dir "/program_" name "." part ".c", "```c", 1)
  } else {
    fail("unknown marker: " $0)
  }
  next
}
END {
  if (inblock) fail("a marked block is not closed")
  if (target != "" && !inblock) fail("the last marker is not followed by its block")
  exit err
}
' "$guide" || { echo "check.sh: $guide: bad markers (above)" >&2; exit 1; }

ncomplete=$(find "$tmp" -name 'complete_*.c' | wc -l)
[ "$ncomplete" -gt 0 ] || { echo "check.sh: $guide marks no complete program" >&2; exit 1; }

compile() { # compile <source> <binary> <what>
  # shellcheck disable=SC2086 # $extra and $libs are lists of flags
  $cc -std=c11 -pedantic -Wall -Wextra -Werror $extra -I"$inc" "$1" "$lib" $libs -pthread -o "$2" \
    2>"$tmp/cc.log" || { cat "$tmp/cc.log" >&2; echo "check.sh: $3 does not compile" >&2; exit 1; }
}
run() { # run <binary> <what> <expected stdout or "">
  status=0
  timeout 120 "$1" >"$tmp/run.out" 2>"$tmp/run.err" || status=$?
  if [ "$status" -ne 0 ]; then
    cat "$tmp/run.out" "$tmp/run.err" >&2
    echo "check.sh: $2 exited with $status" >&2
    exit 1
  fi
  if [ -n "$3" ]; then
    diff -u "$3" "$tmp/run.out" >&2 || { echo "check.sh: $2: stdout differs from the guide's" >&2; exit 1; }
  fi
}

i=1
while [ "$i" -le "$ncomplete" ]; do
  what="complete program $i of $guide (line $(sed -n 's/^#line \([0-9]*\).*/\1/p;q' "$tmp/complete_$i.c"))"
  compile "$tmp/complete_$i.c" "$tmp/complete_$i" "$what"
  if [ "$(cat "$tmp/complete_$i.mode")" = run ]; then
    expected=""
    [ -e "$tmp/complete_$i.out" ] && expected="$tmp/complete_$i.out"
    run "$tmp/complete_$i" "$what" "$expected"
    echo "check.sh: $what compiles and runs${expected:+, output as shown}"
  else
    echo "check.sh: $what compiles (not run)"
  fi
  i=$((i + 1))
done

if [ -e "$tmp/programs" ]; then
  [ -e "$tmp/prelude.c" ] || { echo "check.sh: program parts but no program prelude" >&2; exit 1; }
  while IFS= read -r name; do
    src=$tmp/program_$name.c
    {
      cat "$tmp/prelude.c"
      [ -e "$tmp/program_$name.top.c" ] && cat "$tmp/program_$name.top.c"
      printf '#line 1 "main() around program %s"\nint main(void) {\n  CHECK(ray_init(NULL));\n' "$name"
      [ -e "$tmp/program_$name.main.c" ] && cat "$tmp/program_$name.main.c"
      printf '#line 4 "main() around program %s"\n  CHECK(ray_shutdown());\n  return 0;\n}\n' "$name"
    } >"$src"
    compile "$src" "$tmp/program_$name" "program '$name' of $guide"
    run "$tmp/program_$name" "program '$name' of $guide" ""
    echo "check.sh: program '$name' ($(grep -c '^#line' "$src") blocks) compiles and runs"
  done <"$tmp/programs"
fi
