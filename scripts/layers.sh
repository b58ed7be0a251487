#!/usr/bin/env bash
# scripts/layers.sh - checks the include graph of src/ (run by make lint).
#
#   scripts/layers.sh          check; exit 1 on a violation
#   scripts/layers.sh --dot    print the layer graph in Graphviz dot
#
# A layer is a directory of src/ (core, sched, store, task, actor, trace);
# runtime.c, the one file at the top, is the layer "runtime". The checks:
#  1. the graph of layers (an edge A -> B when a file of A includes a header
#     of B) has no cycle, and neither has the graph of files;
#  2. only src/runtime.c includes runtime.h.
# Cycles are found with tsort(1), which reports any loop in its input.
set -euo pipefail
cd "$(dirname "$0")/.."

layer() { # src/store/wait.c -> store ; src/runtime.c -> runtime
  local p=${1#src/}
  case $p in */*) echo "${p%%/*}" ;; *) echo "${p%.*}" ;; esac
}

files=$(find src -name '*.[ch]' | sort)
file_edges=()
layer_edges=()
for f in $files; do
  while IFS= read -r inc; do
    [ -f "src/$inc" ] || continue # ray.h and system headers
    file_edges+=("$f src/$inc")
    a=$(layer "$f")
    b=$(layer "src/$inc")
    [ "$a" = "$b" ] || layer_edges+=("$a $b")
  done < <(sed -n 's/^#include "\(.*\)".*/\1/p' "$f")
done

if [ "${1:-}" = "--dot" ]; then
  echo "digraph layers {"
  echo "  rankdir=TB; node [shape=box];"
  printf '%s\n' "${layer_edges[@]}" | sort -u | awk '{printf "  %s -> %s;\n", $1, $2}'
  echo "}"
  exit 0
fi

rc=0
check_acyclic() { # name, then edges "a b" on stdin
  local out
  if ! out=$(tsort 2>&1 >/dev/null) || [ -n "$out" ]; then
    echo "layers.sh: the $1 graph has a cycle:" >&2
    echo "$out" >&2
    rc=1
  fi
}
printf '%s\n' "${layer_edges[@]}" | sort -u | check_acyclic layer
printf '%s\n' "${file_edges[@]}" | sort -u | check_acyclic file

others=$(grep -rl '#include "runtime.h"' src | grep -v '^src/runtime.c$' || true)
if [ -n "$others" ]; then
  echo "layers.sh: only src/runtime.c may include runtime.h; also:" $others >&2
  rc=1
fi

[ $rc = 0 ] && echo "layers.sh: $(printf '%s\n' "${layer_edges[@]}" | sort -u | wc -l) layer edges, no cycle; runtime.h only in runtime.c"
exit $rc
