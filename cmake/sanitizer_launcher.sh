#!/bin/sh
# sanitizer_launcher.sh <probe> - how to start sanitized programs here.
#
# Prints "setarch <arch> -R" when that starts sanitized programs (ASLR off),
# nothing when only a plain start works; exits 1 when neither works.
# Used by `make asan` / `make tsan` to prefix ctest (personality flags are
# inherited, so every test ctest starts runs with ASLR off too).
#
# Why: gcc 12's sanitizer runtimes assume at most 28 bits of mmap ASLR
# entropy. With vm.mmap_rnd_bits above that (the default on some recent
# kernels) TSan dies at start-up with "FATAL: ThreadSanitizer: unexpected
# memory mapping", and ASan sometimes spins forever printing
# "AddressSanitizer:DEADLYSIGNAL". The failure is random per run, so one
# lucky probe run proves little: we look at the entropy setting as well as
# run the probe (cmake/sanitizer_probe.c) several times, each with a timeout.
# RAY_SETARCH=1 forces setarch; RAY_SETARCH=0 forbids it.
set -u
probe=${1:?usage: sanitizer_launcher.sh <probe>}
arch=$(uname -m)
setarch_cmd="setarch $arch -R"

probe_ok() { # probe_ok [launcher words...]: 3 clean runs in a row
  for _ in 1 2 3; do
    timeout 20 "$@" "$probe" >/dev/null 2>&1 || return 1
  done
}

case ${RAY_SETARCH:-} in
  1) echo "$setarch_cmd"; exit 0 ;;
  0) exit 0 ;;
esac

bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
# ASLR off whenever setarch works: it costs the tests nothing and takes the
# layout lottery out of every sanitized run, even where the entropy setting
# looks safe today (it can change under a running CI job).
# shellcheck disable=SC2086 # setarch_cmd is meant to split into words
if probe_ok $setarch_cmd; then
  echo "$setarch_cmd"
  exit 0
fi
if [ "$bits" -le 28 ] && probe_ok; then
  exit 0 # setarch unavailable, and the plain start-up is safe here
fi
echo "sanitizer_launcher: sanitized programs do not start here (vm.mmap_rnd_bits=$bits)," \
     "with or without ASLR:" >&2
timeout 20 "$probe" >&2
exit 1
