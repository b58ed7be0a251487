#!/bin/sh
# check.sh - install smoke test (CTest: install_pkgconfig).
#
#   check.sh <build dir> <dir of hello.c>
#
# Installs the build into a fresh temporary prefix, then builds hello.c
# against it three ways and runs each:
#   1. pkg-config --cflags --libs ray  (libray.so, strict C11 for the header)
#   2. pkg-config --static             (libray.a + Libs.private)
#   3. find_package(ray): ray::ray and ray::ray_static
# The prefix is removed afterwards. RAY_CHECK_CC and RAY_CHECK_CFLAGS (set by
# CTest) give the compiler and, in sanitizer builds, the -fsanitize flags that
# a sanitized libray needs at link time.
set -eu

build=${1:?usage: check.sh <build dir> <dir of hello.c>}
here=${2:?usage: check.sh <build dir> <dir of hello.c>}
cc=${RAY_CHECK_CC:-cc}
extra=${RAY_CHECK_CFLAGS:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rayc-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log"; echo "check.sh: cmake --install failed" >&2; exit 1; }

# GNUInstallDirs may pick lib, lib64 or lib/<multiarch>: use the real one.
pc=$(find "$prefix" -name ray.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || { echo "check.sh: no ray.pc under $prefix" >&2; exit 1; }
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
for f in "$prefix/include/ray.h" "$libdir/libray.a" "$libdir/libray.so" \
         "$libdir/libray.so.0" "$libdir/cmake/ray/rayConfig.cmake" \
         "$libdir/cmake/ray/rayConfigVersion.cmake"; do
  [ -e "$f" ] || { echo "check.sh: missing $f" >&2; exit 1; }
done

expect() { # expect <what> <program>: runs it, wants exactly "install ok"
  out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$2") || {
    echo "check.sh: $1: $2 exited with $?: $out" >&2; exit 1; }
  [ "$out" = "install ok" ] || { echo "check.sh: $1: unexpected output: $out" >&2; exit 1; }
  echo "check.sh: $1: install ok"
}

pc_path() { PKG_CONFIG_PATH="$pcdir" pkg-config "$@"; }

# 1. The documented way: cc hello.c $(pkg-config --cflags --libs ray).
#    Strict C11 + -pedantic -Werror also checks that ray.h is plain C11.
flags=$(pc_path --cflags --libs ray)
echo "check.sh: pkg-config --cflags --libs ray: $flags"
# shellcheck disable=SC2086 # the flags are meant to split into words
$cc -std=c11 -pedantic -Wall -Wextra -Werror $extra "$here/hello.c" -o "$tmp/hello" $flags
expect "pkg-config (libray.so)" "$tmp/hello"
if command -v ldd >/dev/null 2>&1; then # the installed libray.so.0, not another one
  LD_LIBRARY_PATH="$libdir" ldd "$tmp/hello" | grep -q "$libdir/libray.so.0" || {
    echo "check.sh: hello does not load $libdir/libray.so.0" >&2; exit 1; }
fi

# 2. Static: libray.a plus Libs.private from pkg-config --static.
sflags=$(pc_path --static --cflags --libs ray | sed 's/-lray\b/-Wl,-Bstatic -lray -Wl,-Bdynamic/')
# shellcheck disable=SC2086
$cc -std=c11 $extra "$here/hello.c" -o "$tmp/hello_static" $sflags
expect "pkg-config --static (libray.a)" "$tmp/hello_static"

# 3. The CMake package.
cmake -S "$here" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" \
  >"$tmp/cmake.log" 2>&1 && cmake --build "$tmp/cmake-build" >>"$tmp/cmake.log" 2>&1 || {
  cat "$tmp/cmake.log"; echo "check.sh: find_package(ray) build failed" >&2; exit 1; }
expect "find_package ray::ray" "$tmp/cmake-build/hello_shared"
expect "find_package ray::ray_static" "$tmp/cmake-build/hello_static"
