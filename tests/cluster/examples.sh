#!/bin/sh
# examples.sh MPIRUN DIR - every example runs under `mpirun -n 3` and exits
# 0; those without actors (pipeline, store_tour) print what they print
# in-process. Addresses, times and the order in which results finish vary
# from run to run in-process too, so they are normalised before comparing.
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
exit $fail
