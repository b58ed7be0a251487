#!/bin/sh
# check.sh - install and uninstall test (CTest: install_pkgconfig).
#
#   check.sh <build dir> <dir of hello.c> <cmake/ray_uninstall.cmake>
#
# 1. Installs the build into a fresh temporary prefix, then builds hello.c
#    against it and runs each program; each prints the ray_version() of the
#    library it loaded, which must be pkg-config's version of the package:
#    a. pkg-config --cflags --libs ray          libray.so: ldd shows the
#       installed libray.so.0 (strict C11 + -pedantic: ray.h is plain C11)
#    b. pkg-config [--static] --cflags --libs ray-static
#                                               libray.a: ldd shows no libray
#    c. find_package(ray): ray::ray (libray.so) and ray::ray_static (no libray)
# 2. Uninstalls as `make uninstall` does (ray_uninstall.cmake) and checks that
#    the prefix, which the install created, is gone.
# 3. Installs twice into a prefix whose include/ already holds a file of
#    someone else's, uninstalls, and checks that exactly that file and its
#    directory are left.
# 4. Installs with DESTDIR, uninstalls without it, checks DESTDIR is gone.
# 5. Uninstalling again fails and says that nothing was installed.
# The build directory's install_manifest.txt and install_dirs.txt (the record
# of a real `make install`) are moved aside first and put back at the end.
# RAY_CHECK_CC and RAY_CHECK_CFLAGS (set by CTest) give the compiler and, in
# sanitizer builds, the -fsanitize flags that a sanitized libray needs.
set -eu

usage="usage: check.sh <build dir> <dir of hello.c> <ray_uninstall.cmake>"
build=${1:?$usage}
here=${2:?$usage}
uninstall=${3:?$usage}
cc=${RAY_CHECK_CC:-cc}
extra=${RAY_CHECK_CFLAGS:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rayc-install.XXXXXX")
saved=$tmp/saved
mkdir "$saved"
for f in install_manifest.txt install_dirs.txt; do
  if [ -e "$build/$f" ]; then mv "$build/$f" "$saved/$f"; fi
done
restore() {
  for f in install_manifest.txt install_dirs.txt; do
    if [ -e "$saved/$f" ]; then mv -f "$saved/$f" "$build/$f"; else rm -f "$build/$f"; fi
  done
  rm -rf "$tmp"
}
trap restore EXIT
trap 'exit 1' INT TERM

die() { echo "check.sh: $*" >&2; exit 1; }

install_to() { # install_to <prefix>
  cmake --install "$build" --prefix "$1" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log"; die "cmake --install --prefix $1 failed"; }
}
uninstall_all() { # the command `make uninstall` runs
  cmake -DRAY_BUILD_DIR="$build" -P "$uninstall" >"$tmp/uninstall.log" 2>&1 || {
    cat "$tmp/uninstall.log"; die "ray_uninstall.cmake failed"; }
}

# --- 1. install, build against it, run --------------------------------------
prefix=$tmp/prefix
install_to "$prefix"

# GNUInstallDirs may pick lib, lib64 or lib/<multiarch>: use the real one.
pc=$(find "$prefix" -name ray.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || die "no ray.pc under $prefix"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
for f in "$prefix/include/ray.h" "$libdir/libray.a" "$libdir/libray.so" \
         "$libdir/libray.so.0" "$pcdir/ray-static.pc" "$libdir/cmake/ray/rayConfig.cmake" \
         "$libdir/cmake/ray/rayConfigVersion.cmake"; do
  [ -e "$f" ] || die "missing $f"
done

pc_path() { PKG_CONFIG_PATH="$pcdir" pkg-config "$@"; }
version=$(pc_path --modversion ray)
[ "$(pc_path --modversion ray-static)" = "$version" ] || die "ray.pc and ray-static.pc differ in version"

expect() { # expect <what> <program>: runs it, wants exactly "install ok (rayc <version>)"
  out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$2") || {
    die "$1: $2 exited with $?: $out"; }
  [ "$out" = "install ok (rayc $version)" ] || die "$1: unexpected output: $out"
  echo "check.sh: $1: $out"
}
have_ldd=false
if command -v ldd >/dev/null 2>&1; then have_ldd=true; fi
loads_installed_so() { # the installed libray.so.0, not another one
  if $have_ldd; then
    LD_LIBRARY_PATH="$libdir" ldd "$1" | grep -q "$libdir/libray.so.0" ||
      die "$1 does not load $libdir/libray.so.0"
  fi
}
loads_no_libray() {
  if $have_ldd; then
    if LD_LIBRARY_PATH="$libdir" ldd "$1" | grep libray; then die "$1 loads a libray.so"; fi
  fi
}

# a. The documented way: cc hello.c $(pkg-config --cflags --libs ray).
flags=$(pc_path --cflags --libs ray)
echo "check.sh: pkg-config --cflags --libs ray: $flags"
# shellcheck disable=SC2086 # the flags are meant to split into words
$cc -std=c11 -pedantic -Wall -Wextra -Werror $extra "$here/hello.c" -o "$tmp/hello" $flags
expect "pkg-config ray (libray.so)" "$tmp/hello"
loads_installed_so "$tmp/hello"

# b. Static: ray-static.pc names the archive itself, so libray.so installed
#    next to it cannot be picked instead; --static must not change that.
for opt in "" --static; do
  sflags=$(pc_path $opt --cflags --libs ray-static)
  echo "check.sh: pkg-config${opt:+ $opt} --cflags --libs ray-static: $sflags"
  case " $sflags " in *" $libdir/libray.a "*) ;; *) die "ray-static.pc does not name $libdir/libray.a" ;; esac
  # shellcheck disable=SC2086
  $cc -std=c11 -pedantic -Wall -Wextra -Werror $extra "$here/hello.c" -o "$tmp/hello_static" $sflags
  expect "pkg-config${opt:+ $opt} ray-static (libray.a)" "$tmp/hello_static"
  loads_no_libray "$tmp/hello_static"
done

# c. The CMake package.
if ! { cmake -S "$here" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
          -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" \
          >"$tmp/cmake.log" 2>&1 &&
        cmake --build "$tmp/cmake-build" >>"$tmp/cmake.log" 2>&1; }; then
  cat "$tmp/cmake.log"; die "find_package(ray) build failed"
fi
expect "find_package ray::ray" "$tmp/cmake-build/hello_shared"
loads_installed_so "$tmp/cmake-build/hello_shared"
expect "find_package ray::ray_static" "$tmp/cmake-build/hello_static"
loads_no_libray "$tmp/cmake-build/hello_static"

# --- 2. uninstall: the prefix the install created is gone -------------------
uninstall_all
if [ -e "$prefix" ]; then find "$prefix" >&2; die "uninstall left the above in $prefix"; fi
[ ! -e "$build/install_manifest.txt" ] || die "uninstall kept install_manifest.txt"
echo "check.sh: uninstall removed $prefix and everything in it"

# --- 3. what was there before stays, also after two installs ---------------
prefix2=$tmp/prefix2
mkdir -p "$prefix2/include"
echo "/* not rayc's */" >"$prefix2/include/other.h"
install_to "$prefix2"
install_to "$prefix2" # the second install finds the directories made
uninstall_all
left=$(cd "$prefix2" && find . | LC_ALL=C sort | tr '\n' ' ')
[ "$left" = ". ./include ./include/other.h " ] || die "after uninstall $prefix2 holds: $left"
echo "check.sh: uninstall kept what was there before: $left"

# --- 4. DESTDIR: CMake's manifest leaves it out; uninstall still uses it ----
stage=$tmp/stage
DESTDIR=$stage install_to /opt/rayc-check
[ -f "$stage/opt/rayc-check/include/ray.h" ] || die "DESTDIR install: no $stage/opt/rayc-check/include/ray.h"
uninstall_all # with no DESTDIR set: the install's own is used
if [ -e "$stage" ]; then find "$stage" >&2; die "uninstall left the above in DESTDIR $stage"; fi
echo "check.sh: uninstall removed the DESTDIR install"

# --- 5. nothing installed: uninstall says so and fails ----------------------
if cmake -DRAY_BUILD_DIR="$build" -P "$uninstall" >"$tmp/again.log" 2>&1; then
  die "a second uninstall succeeded"
fi
grep -q "nothing was installed" "$tmp/again.log" || {
  cat "$tmp/again.log"; die "a second uninstall does not say that nothing was installed"; }
echo "check.sh: a second uninstall fails: nothing was installed"
