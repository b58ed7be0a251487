/*
 * test_symbol.c - function names for code addresses (core/symbol.h): static
 * and exported functions of the executable, a libc function, addresses in
 * no function, and lookups from many threads at once.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include "core/symbol.h"

static int __attribute__((noinline)) local_helper(int x) {
  return x * 3 + 1;
}

int test_symbol_exported(int x);
int __attribute__((noinline)) test_symbol_exported(int x) {
  return x - 7;
}

static void names_static_and_exported(void **state) {
  (void)state;
  assert_int_equal(local_helper(1), 4);
  const char *a = rt_symbol_name((const void *)local_helper);
  assert_non_null(a);
  assert_string_equal(a, "local_helper");
  /* An address inside the function names it too, and the string is kept. */
  assert_ptr_equal(rt_symbol_name((const char *)local_helper + 1), a);
  const char *b = rt_symbol_name((const void *)test_symbol_exported);
  assert_non_null(b);
  assert_string_equal(b, "test_symbol_exported");
  /* A function of libc, which is stripped: found in its .dynsym. */
  const char *c = rt_symbol_name((const void *)qsort);
  assert_non_null(c);
  assert_non_null(strstr(c, "qsort"));
}

static void data_is_no_function(void **state) {
  (void)state;
  int on_stack = 0;
  assert_null(rt_symbol_name(&on_stack));
  assert_null(rt_symbol_name(NULL));
  size_t off = 1;
  assert_null(rt_symbol_module(&on_stack, &off));
  assert_int_equal(off, 1); /* untouched */
  char buf[64];
  assert_true(rt_symbol_describe(&on_stack, buf, sizeof buf) > 0);
  assert_null(strstr(buf, "("));
}

static void module_and_offset(void **state) {
  (void)state;
  size_t off = 0;
  const char *path = rt_symbol_module((const void *)local_helper, &off);
  assert_non_null(path);
  assert_non_null(strstr(path, "test_symbol"));
  assert_true(off > 0);
  size_t off2 = 0;
  assert_ptr_equal(rt_symbol_module((const char *)local_helper + 2, &off2), path);
  assert_int_equal(off2, off + 2);
}

static void describe_names_function(void **state) {
  (void)state;
  char buf[256];
  size_t n = rt_symbol_describe((const char *)local_helper + 1, buf, sizeof buf);
  assert_int_equal(n, strlen(buf));
  assert_non_null(strstr(buf, "local_helper"));
  /* Either "local_helper (test_symbol.c:N)" with addr2line and debug info,
   * or "local_helper+0x1 (test_symbol)". */
  assert_true(strstr(buf, "test_symbol.c:") != NULL || strstr(buf, "+0x1 (") != NULL);
  char tiny[8];
  assert_int_equal(rt_symbol_describe((const void *)local_helper, tiny, sizeof tiny), 7);
  assert_int_equal(rt_symbol_describe((const void *)local_helper, tiny, 0), 0);
}

static void *lookup_loop(void *arg) {
  (void)arg;
  for (int i = 0; i < 2000; i++) {
    const char *a = rt_symbol_name((const void *)local_helper);
    const char *b = rt_symbol_name((const void *)test_symbol_exported);
    if (!a || !b || strcmp(a, "local_helper") || strcmp(b, "test_symbol_exported")) return "bad";
  }
  return NULL;
}

static void concurrent_lookups(void **state) {
  (void)state;
  pthread_t th[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, lookup_loop, NULL), 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    assert_int_equal(pthread_join(th[i], &r), 0);
    assert_null(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(names_static_and_exported), cmocka_unit_test(data_is_no_function),
      cmocka_unit_test(module_and_offset),         cmocka_unit_test(describe_names_function),
      cmocka_unit_test(concurrent_lookups),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
