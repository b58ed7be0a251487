#!/bin/sh
# startup_check.sh MPIRUN A B - ranks running different executables must
# all fail ray_init, each naming a rank and the executable that differs;
# the same executable on every rank joins; and a rank that dies ends the
# whole job, which names it (fail-stop).
set -u
mpirun=$1 a=$2 b=$3
out=$("$mpirun" -n 1 "$a" : -n 2 "$b" 2>&1)
rc=$?
echo "$out"
[ "$rc" -ne 0 ] || { echo "FAIL: mpirun succeeded with different executables"; exit 1; }
n=$(printf '%s\n' "$out" | grep -c 'RAY_EINVAL: ray_init: rank [12] runs executable .*startup_check_b.* rank 0 runs .*startup_check_a.*every rank must run the same executable and libraries')
[ "$n" -eq 3 ] || { echo "FAIL: expected the startup error on all 3 ranks, saw it $n times"; exit 1; }
out=$("$mpirun" -n 3 "$a" 2>&1) || { echo "$out"; echo "FAIL: the same executable on every rank did not join"; exit 1; }
printf '%s\n' "$out" | grep -q '^joined 3$' || { echo "$out"; echo "FAIL: no 'joined 3'"; exit 1; }
out=$(RAY_TEST_CRASH=1 "$mpirun" -n 3 "$a" 2>&1)
rc=$?
[ "$rc" -ne 0 ] || { echo "$out"; echo "FAIL: the job survived a dead rank"; exit 1; }
printf '%s\n' "$out" | grep -q 'survived' && { echo "$out"; echo "FAIL: the driver went on"; exit 1; }
# "process rank 1 with PID ... exited on signal 6", or, where a sanitizer
# turns the abort into an exit code, "Process name: [[job,1],1]".
printf '%s\n' "$out" | grep -Eq 'process rank 1 with PID|Process name: \[\[[0-9]+,[0-9]+\],1\]' ||
  { echo "$out"; echo "FAIL: the job's end does not name rank 1"; exit 1; }
echo "startup check: ok (and a dead rank ends the job, named)"
