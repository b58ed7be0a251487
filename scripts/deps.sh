#!/usr/bin/env bash
# deps.sh - make sure the tools rayc builds and tests with are present.
#
#   scripts/deps.sh          cmake, a C compiler, make, pkg-config, cmocka
#   scripts/deps.sh --lint   also clang-format, clang-tidy, cppcheck
#   scripts/deps.sh --browser  also chromium, fonts and zlib: what
#                            test_timeline_browser needs (else it is skipped)
#   scripts/deps.sh --mpi    also Open MPI (libopenmpi-dev, openmpi-bin): the
#                            build then has cluster mode and make test runs
#                            the cluster tests under mpirun
#
# Silent and fast (no package manager call) when everything is present.
# Missing pieces are installed with apt-get when running as root on a
# Debian/Ubuntu system; otherwise the exact command is printed and the script
# exits 1.
set -euo pipefail

lint=0
browser=0
mpi=0
for arg in "$@"; do
  case $arg in
    --lint) lint=1 ;;
    --browser) browser=1 ;;
    --mpi) mpi=1 ;;
    -h | --help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

missing=() # Debian packages to install

have() { command -v "$1" >/dev/null 2>&1; }

have cmake || missing+=(cmake)
if ! have cc && ! have gcc && ! have clang; then missing+=(gcc); fi
have make || missing+=(make)
have pkg-config || missing+=(pkg-config)
# libc headers: without them no compiler is of any use.
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
if ! { have pkg-config && pkg-config --exists cmocka; } && [ ! -e /usr/include/cmocka.h ]; then
  missing+=(libcmocka-dev)
fi
if [ "$lint" = 1 ]; then
  have clang-format || missing+=(clang-format)
  have clang-tidy || missing+=(clang-tidy)
  have cppcheck || missing+=(cppcheck)
fi
if [ "$browser" = 1 ]; then
  have chromium || have chromium-browser || missing+=(chromium)
  # a font for the page's text (the test checks that the lane names are drawn)
  [ -e /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || missing+=(fonts-liberation)
  [ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
fi

if [ "$mpi" = 1 ]; then
  { have mpicc && have mpirun; } || missing+=(libopenmpi-dev openmpi-bin)
fi

[ ${#missing[@]} -eq 0 ] && exit 0

# The full set, so one install leaves a consistent toolchain.
pkgs=(cmake gcc make pkg-config libcmocka-dev libc6-dev)
[ "$lint" = 1 ] && pkgs+=(clang-format clang-tidy cppcheck)
[ "$browser" = 1 ] && pkgs+=(chromium fonts-liberation zlib1g-dev)
[ "$mpi" = 1 ] && pkgs+=(libopenmpi-dev openmpi-bin)
cmd="apt-get update && apt-get install -y --no-install-recommends ${pkgs[*]}"

echo "deps.sh: missing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
  echo "deps.sh: install them with:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 1
fi

echo "deps.sh: $cmd" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "deps.sh: installed ${pkgs[*]}" >&2
