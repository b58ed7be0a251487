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
#  2. no file includes runtime.h: the runtime struct that holds every layer
#     is private to src/runtime.c, so no layer can reach around the others.
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
# (input by redirection, not a pipe: check_acyclic must run in this shell to set rc)
check_acyclic layer < <(printf '%s\n' "${layer_edges[@]}" | sort -u)
check_acyclic file < <(printf '%s\n' "${file_edges[@]}" | sort -u)

others=$(grep -rl "#include \"runtime.h\"" src || true)
if [ -n "$others" ]; then
  echo "layers.sh: the runtime struct is private to runtime.c; these include runtime.h:" $others >&2
  rc=1
fi

[ $rc = 0 ] && echo "layers.sh: $(printf '%s\n' "${layer_edges[@]}" | sort -u | wc -l) layer edges, no cycle; nothing includes runtime.h"
exit $rc
