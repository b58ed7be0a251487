#!/bin/sh
# examples.sh MPIRUN DIR - every example runs under `mpirun -n 3` and exits
# 0; those without actors (pipeline, store_tour) print what they print
# in-process. Addresses, times and the order in which results finish vary
# from run to run in-process too, so they are normalised before comparing.
# And with RAY_TIMELINE set, the driver writes one trace of every rank.
set -u
mpirun=$1 dir=$2
norm() {
  sed -e 's/0x[0-9a-f]*/ADDR/g' -e 's/[0-9][0-9.]* ms/N ms/g' -e 's/[0-9][0-9.]* us/N us/g' |
    while IFS= read -r line; do
      case $line in
        *"finishing order:"*) # the same numbers, in any order
          printf '%s: %s\n' "${line%%:*}" "$(printf '%s\n' "${line#*:}" | tr ' ' '\n' | sort -n | tr '\n' ' ')" ;;
        *) printf '%s\n' "$line" ;;
      esac
    done
}
fail=0
for e in quickstart quickstart_plain pipeline param_server checkpoint store_tour shared_dataset; do
  [ -x "$dir/$e" ] || continue
  out=$("$mpirun" -n 3 "$dir/$e" 2>&1) || { echo "$out"; echo "FAIL: $e under mpirun -n 3"; fail=1; continue; }
  case $e in
    pipeline | store_tour)
      ref=$("$dir/$e" 2>&1) || { echo "FAIL: $e in-process"; fail=1; continue; }
      if [ "$(printf '%s\n' "$ref" | norm)" != "$(printf '%s\n' "$out" | norm)" ]; then
        printf '%s\n' "$ref" | norm >/tmp/rayc-examples-ref.$$
        printf '%s\n' "$out" | norm | diff /tmp/rayc-examples-ref.$$ - 
        rm -f /tmp/rayc-examples-ref.$$
        echo "FAIL: $e prints something else under mpirun -n 3"
        fail=1
        continue
      fi ;;
  esac
  echo "ok: $e"
done
# One timeline for the whole job, written by the driver: one process per rank.
tmp=$(mktemp -d) || exit 1
if RAY_TIMELINE="$tmp/t.json" "$mpirun" -n 3 "$dir/pipeline" >/dev/null 2>&1; then
  names=$(grep -o '"rayc rank [0-9]* (' "$tmp/t.json" | sort -u | wc -l)
  pids=$(grep -o '"ph":"X","ts":[0-9.]*,"dur":[0-9.]*,"pid":[0-9]*' "$tmp/t.json" |
    sed 's/.*"pid"://' | sort -u | wc -l)
  if [ "$names" -ne 3 ] || [ "$pids" -lt 2 ]; then
    echo "FAIL: the timeline of mpirun -n 3 names $names ranks, with slices from $pids processes"
    fail=1
  else
    echo "ok: one timeline, 3 ranks, slices from $pids processes"
  fi
  [ "$(find "$tmp" -type f | wc -l)" -eq 1 ] || { echo "FAIL: more than the driver wrote a timeline"; fail=1; }
else
  echo "FAIL: pipeline with RAY_TIMELINE under mpirun -n 3"
  fail=1
fi
rm -rf "$tmp"
exit $fail
