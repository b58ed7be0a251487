#!/bin/sh
# compile_errors.sh - the one-line macros of ray.h (RAY_SUBMIT, RAY_CALL, ...)
# refuse what they cannot pass, at compile time, with a message that names it
# (CTest: ergonomics_compile_errors).
#
#   compile_errors.sh <C compiler> <include dir>
#
# Each case is a small program compiled as a user would, strict C11
# (-std=c11 -pedantic -Wall -Wextra -Werror): the good one must compile, each
# bad one must fail with the expected words in the compiler's output.
set -eu

cc=${1:?usage: compile_errors.sh <cc> <include dir>}
inc=${2:?usage: compile_errors.sh <cc> <include dir>}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rayc-macros.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

prog() { # prog <name> <body of main>
  cat >"$tmp/$1.c" <<PROG
#include <ray.h>
#include <stdint.h>
static ray_status f(ray_ctx *ctx) { (void)ctx; return RAY_OK; }
int main(void) {
  ray_ref *r = NULL;
  ray_actor *a = NULL;
  (void)r;
  (void)a;
  $2
}
PROG
}

compiles() { # compiles <name> <body>
  prog "$1" "$2"
  if ! $cc -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/$1.c" -o "$tmp/$1.o" \
    >"$tmp/$1.log" 2>&1; then
    cat "$tmp/$1.log"
    echo "compile_errors.sh: $1 does not compile" >&2
    exit 1
  fi
  echo "compile_errors.sh: $1 compiles"
}

refused() { # refused <name> <words the compiler must print> <body>
  prog "$1" "$3"
  if $cc -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" -c "$tmp/$1.c" -o "$tmp/$1.o" \
    >"$tmp/$1.log" 2>&1; then
    echo "compile_errors.sh: $1 compiled, but it must not" >&2
    exit 1
  fi
  if ! grep -q -- "$2" "$tmp/$1.log"; then
    cat "$tmp/$1.log"
    echo "compile_errors.sh: $1 failed without saying '$2'" >&2
    exit 1
  fi
  echo "compile_errors.sh: $1 refused: $(grep -m1 -- "$2" "$tmp/$1.log" | sed 's/^.*error: //')"
}

compiles every_kind 'short s = 1; unsigned u = 2; float fl = 1; const char *c = "x";
  return RAY_SUBMIT(&r, f, r, a, ray_arg_str("s"), "lit", c, s, u, 3L, 4LL, (_Bool)1, (char)5,
                    fl, 2.5, (signed char)1, (unsigned char)2, (unsigned short)3) +
         RAY_SUBMIT(&r, f) + RAY_CALL(&r, a, 0) + RAY_SEND(a, 0, 1) +
         RAY_ACTOR_CREATE(&a, (const ray_actor_class *)0);'
refused size_t 'association' 'size_t n = 1; return RAY_SUBMIT(&r, f, n);'
refused uint64_t 'association' 'uint64_t n = 1; return RAY_CALL(&r, a, 0, n);'
refused long_double 'association' 'return RAY_SEND(a, 0, 1.0L);'
refused other_pointer 'association' 'int x = 0; return RAY_SUBMIT(&r, f, &x);'
refused a_struct 'association' 'struct { int x; } s = {1}; return RAY_SUBMIT(&r, f, s);'
refused seventeen 'RAY_TOO_MANY_ARGUMENTS_MAX_16' \
  'return RAY_SUBMIT(&r, f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17);'
refused seventeen_call 'RAY_TOO_MANY_ARGUMENTS_MAX_16' \
  'return RAY_CALL(&r, a, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17);'
refused wrong_fn 'incompatible' 'return RAY_SUBMIT(&r, main);'
