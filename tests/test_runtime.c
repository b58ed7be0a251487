/*
 * test_runtime.c - the runtime's life through the public header: status names
 * and texts, the thread-local last error, calls while not running, ray_init /
 * ray_shutdown, ray_config defaults and RAY_* environment overrides (valid and
 * malformed), config validation, the memory limit in force, init/shutdown
 * cycles without leaks, the shutdown warning about unreleased handles, and
 * handles that outlive their runtime.
 *
 * Every test leaves the runtime shut down and the RAY_* variables unset (the
 * teardown makes sure of it even when an assertion fails).
 */
#define _GNU_SOURCE
/* cmocka needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include <ray.h>

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

static const char *const k_env_vars[] = {
    "RAY_NUM_WORKERS", "RAY_OBJECT_STORE_MEMORY", "RAY_SPILL_DIR",
    "RAY_TIMELINE",    "RAY_PUT_TIMEOUT_MS",
};

static void unset_ray_env(void) {
  for (size_t i = 0; i < sizeof k_env_vars / sizeof k_env_vars[0]; i++) unsetenv(k_env_vars[i]);
}

static int setup(void **state) {
  (void)state;
  unset_ray_env();
  return ray_is_initialized() ? -1 : 0;
}

static int teardown(void **state) {
  (void)state;
  ray_status s = ray_shutdown();
  unset_ray_env();
  return s == RAY_OK ? 0 : -1;
}

#define assert_contains(hay, needle)                                                               \
  do {                                                                                             \
    const char *h_ = (hay), *n_ = (needle);                                                        \
    if (!h_ || !strstr(h_, n_)) fail_msg("\"%s\" lacks \"%s\"", h_ ? h_ : "(null)", n_);           \
  } while (0)

/* ray_shutdown with stderr captured into buf. */
static ray_status shutdown_captured(char *buf, size_t cap) {
  capture c;
  capture_begin(&c);
  ray_status s = ray_shutdown();
  capture_end(&c, buf, cap);
  return s;
}

static int g_frees;
static void counting_free(void *p) {
  g_frees++;
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Status names and texts                                                   */
/* ------------------------------------------------------------------------ */

static void test_status_name_and_strerror_cover_every_status(void **state) {
  (void)state;
  static const struct {
    ray_status s;
    const char *name;
  } k[] = {
      {RAY_OK, "RAY_OK"},
      {RAY_EINVAL, "RAY_EINVAL"},
      {RAY_ETIMEOUT, "RAY_ETIMEOUT"},
      {RAY_ETYPE, "RAY_ETYPE"},
      {RAY_ETASK, "RAY_ETASK"},
      {RAY_ECANCELLED, "RAY_ECANCELLED"},
      {RAY_EACTOR, "RAY_EACTOR"},
      {RAY_ESTOREFULL, "RAY_ESTOREFULL"},
      {RAY_ELOST, "RAY_ELOST"},
      {RAY_ENOMEM, "RAY_ENOMEM"},
      {RAY_ENOTFOUND, "RAY_ENOTFOUND"},
      {RAY_EEXIST, "RAY_EEXIST"},
      {RAY_ESHUTDOWN, "RAY_ESHUTDOWN"},
      {RAY_EIO, "RAY_EIO"},
  };
  size_t n = sizeof k / sizeof k[0];
  assert_int_equal(n, (size_t)RAY_EIO + 1);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(k[i].s, (ray_status)i); /* the enum values are 0..13 in this order */
    assert_string_equal(ray_status_name(k[i].s), k[i].name);
    const char *text = ray_strerror(k[i].s);
    assert_non_null(text);
    assert_true(text[0] != '\0');
    /* Each status has its own description. */
    for (size_t j = 0; j < i; j++) assert_string_not_equal(text, ray_strerror(k[j].s));
  }
  assert_string_equal(ray_strerror(RAY_ETIMEOUT), "timed out"); /* the header's example */
}

static void test_unknown_status_gives_placeholder_name_and_text(void **state) {
  (void)state;
  const ray_status bad[] = {(ray_status)(RAY_EIO + 1), (ray_status)99, (ray_status)-1,
                            (ray_status)0x7fffffff};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_string_equal(ray_status_name(bad[i]), "RAY_E?");
    const char *text = ray_strerror(bad[i]);
    assert_non_null(text);
    assert_true(text[0] != '\0');
  }
}

/* ------------------------------------------------------------------------ */
/* ray_last_error is thread-local                                           */
/* ------------------------------------------------------------------------ */

typedef struct thread_report {
  char initial[256];    /* ray_last_error() as the thread started */
  ray_status status;    /* of a failing call made by the thread */
  char after_fail[256]; /* ray_last_error() after it */
} thread_report;

static void *fresh_thread_fails_once(void *arg) {
  thread_report *r = arg;
  snprintf(r->initial, sizeof r->initial, "%s", ray_last_error());
  ray_ref *ref = NULL;
  r->status = ray_put(NULL, 8, NULL, &ref); /* data NULL: RAY_EINVAL */
  snprintf(r->after_fail, sizeof r->after_fail, "%s", ray_last_error());
  return NULL;
}

static void test_last_error_is_empty_on_a_fresh_thread_and_thread_local(void **state) {
  (void)state;
  assert_int_equal(ray_init(NULL), RAY_OK);
  /* A failure on the main thread first. */
  assert_int_equal(ray_init(NULL), RAY_EEXIST);
  char main_msg[256];
  snprintf(main_msg, sizeof main_msg, "%s", ray_last_error());
  assert_contains(main_msg, "already running");

  thread_report r;
  memset(&r, 0, sizeof r);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fresh_thread_fails_once, &r), 0);
  assert_int_equal(pthread_join(t, NULL), 0);

  /* The new thread saw "" although the main thread had failed before. */
  assert_string_equal(r.initial, "");
  assert_int_equal(r.status, RAY_EINVAL);
  assert_contains(r.after_fail, "ray_put");
  assert_contains(r.after_fail, "NULL");
  /* Its failure did not touch the main thread's message. */
  assert_string_equal(ray_last_error(), main_msg);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static void test_last_error_survives_successful_calls(void **state) {
  (void)state;
  assert_int_equal(ray_init(NULL), RAY_OK);
  assert_int_equal(ray_init(NULL), RAY_EEXIST);
  assert_error_contains("already running");
  ray_ref *ref = NULL;
  int64_t v = 7;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &ref), RAY_OK);
  ray_view view;
  assert_int_equal(ray_get(ref, &ray_type_i64, 0, &view), RAY_OK);
  ray_view_release(&view);
  ray_ref_release(ref);
  assert_error_contains("already running");
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* ------------------------------------------------------------------------ */
/* Calls while the runtime is not running                                   */
/* ------------------------------------------------------------------------ */

#define assert_not_running(call, fn)                                                               \
  do {                                                                                             \
    assert_int_equal((call), RAY_ESHUTDOWN);                                                       \
    assert_error_contains("not running");                                                          \
    assert_error_contains(fn);                                                                     \
  } while (0)

/*
 * Every object call with otherwise valid arguments gives RAY_ESHUTDOWN, says
 * "not running" and names itself; outputs stay untouched; handle releases
 * are harmless. `ref` is a handle the caller holds, or NULL.
 */
static void check_every_call_is_refused(ray_ref *ref) {
  ray_ref *const sentinel = (ray_ref *)(uintptr_t)0x5a5a5a5a5a5a5a5aull;
  ray_ref *out = sentinel;
  int64_t v = 42;
  /* A stand-in handle when the caller has none: handles are opaque values
   * and a refused call must not look at them. */
  ray_ref *some = ref ? ref : (ray_ref *)(uintptr_t)0x100000001ull;

  assert_false(ray_is_initialized());

  assert_not_running(ray_put(&v, sizeof v, &ray_type_i64, &out), "ray_put");
  assert_ptr_equal(out, sentinel);

  g_frees = 0;
  int64_t *owned = malloc(sizeof *owned);
  assert_non_null(owned);
  *owned = 9;
  assert_not_running(ray_put_owned(owned, sizeof *owned, &ray_type_i64, counting_free, &out),
                     "ray_put_owned");
  assert_ptr_equal(out, sentinel);
  assert_int_equal(g_frees, 0); /* on failure the caller still owns the buffer */
  free(owned);

  void *data = (void *)(uintptr_t)0x77;
  assert_not_running(ray_create(64, NULL, &data, &out), "ray_create");
  assert_ptr_equal(out, sentinel);
  assert_ptr_equal(data, (void *)(uintptr_t)0x77);

  assert_not_running(ray_seal(some), "ray_seal");

  ray_ref *refs[1] = {some};
  assert_not_running(ray_put_refs(refs, 1, &out), "ray_put_refs");
  assert_ptr_equal(out, sentinel);
  assert_not_running(ray_put_refs(NULL, 0, &out), "ray_put_refs");
  assert_ptr_equal(out, sentinel);

  ray_view view;
  memset(&view, 0xab, sizeof view);
  ray_view untouched = view;
  assert_not_running(ray_get(some, NULL, 0, &view), "ray_get");
  assert_memory_equal(&view, &untouched, sizeof view);
  assert_not_running(ray_get(some, NULL, -1, &view), "ray_get"); /* must not block */

  bool ready[1] = {true};
  assert_not_running(ray_wait(refs, 1, 1, 0, ready), "ray_wait");
  assert_not_running(ray_wait(refs, 1, 1, -1, ready), "ray_wait"); /* must not block */

  assert_not_running(ray_pin(some), "ray_pin");
  assert_not_running(ray_unpin(some), "ray_unpin");

  ray_stats st;
  memset(&st, 0xcd, sizeof st);
  ray_stats st_untouched = st;
  assert_not_running(ray_stats_get(&st), "ray_stats_get");
  assert_memory_equal(&st, &st_untouched, sizeof st);

  /* Handle functions: no crash, nothing returned. */
  assert_null(ray_ref_retain(NULL));
  assert_null(ray_ref_retain(some));
  ray_ref_release(NULL);
  ray_view_release(NULL);
  ray_view empty = {0};
  ray_view_release(&empty);
  char hex[33];
  ray_ref_id(some, hex);
  assert_string_equal(hex, "00000000000000000000000000000000");

  /* ray_shutdown while not running is fine. */
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_false(ray_is_initialized());
}

static void test_calls_before_init_give_eshutdown(void **state) {
  (void)state;
  check_every_call_is_refused(NULL);
}

static void test_calls_after_shutdown_give_eshutdown(void **state) {
  (void)state;
  assert_int_equal(ray_init(NULL), RAY_OK);
  ray_ref *ref = NULL, *unsealed = NULL;
  int64_t v = 5;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &ref), RAY_OK);
  void *data = NULL;
  assert_int_equal(ray_create(128, NULL, &data, &unsealed), RAY_OK);
  ray_view view;
  assert_int_equal(ray_get(ref, NULL, 0, &view), RAY_OK);

  char err[1024];
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK); /* warns: handles left */
  assert_contains(err, "ray_shutdown");

  check_every_call_is_refused(ref);
  assert_int_equal(ray_seal(unsealed), RAY_ESHUTDOWN);
  assert_error_contains("not running");

  /* Handles of the dead runtime can be released without effect or crash. */
  ray_view_release(&view);
  ray_ref_release(ref);
  ray_ref_release(unsealed);
  assert_false(ray_is_initialized());
}

/* ------------------------------------------------------------------------ */
/* ray_init / ray_shutdown                                                  */
/* ------------------------------------------------------------------------ */

static void test_init_null_starts_and_shutdown_stops(void **state) {
  (void)state;
  assert_false(ray_is_initialized());
  assert_int_equal(ray_init(NULL), RAY_OK);
  assert_true(ray_is_initialized());
  ray_stats s = stats();
  assert_true(s.memory_limit > 0);
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.puts, 0);
  assert_int_equal(s.gets, 0);
  assert_int_equal(s.bytes_in_memory, 0);
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_false(ray_is_initialized());
}

static void test_init_twice_gives_eexist_and_keeps_the_first_runtime(void **state) {
  (void)state;
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 4 * MIB;
  assert_int_equal(ray_init(&cfg), RAY_OK);
  ray_ref *ref = NULL;
  const char msg[] = "still here";
  assert_int_equal(ray_put(msg, sizeof msg, &ray_type_str, &ref), RAY_OK);

  ray_config other;
  ray_config_init(&other);
  other.object_store_memory = 8 * MIB;
  assert_int_equal(ray_init(&other), RAY_EEXIST);
  assert_error_contains("ray_init");
  assert_error_contains("already running");
  assert_int_equal(ray_init(NULL), RAY_EEXIST);
  assert_error_contains("already running");

  /* The running runtime is unchanged: same limit, same object. */
  assert_true(ray_is_initialized());
  assert_int_equal(stats().memory_limit, 4 * MIB);
  ray_view view;
  assert_int_equal(ray_get(ref, &ray_type_str, 0, &view), RAY_OK);
  assert_string_equal(view.data, msg);
  ray_view_release(&view);
  ray_ref_release(ref);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static void test_shutdown_is_idempotent(void **state) {
  (void)state;
  assert_int_equal(ray_shutdown(), RAY_OK); /* never started */
  assert_int_equal(ray_init(NULL), RAY_OK);
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_false(ray_is_initialized());
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_false(ray_is_initialized());
  /* and a new runtime may follow */
  assert_int_equal(ray_init(NULL), RAY_OK);
  assert_true(ray_is_initialized());
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* ------------------------------------------------------------------------ */
/* ray_config defaults and memory limit                                     */
/* ------------------------------------------------------------------------ */

static void test_config_init_defaults_without_environment(void **state) {
  (void)state;
  ray_config cfg;
  memset(&cfg, 0x5c, sizeof cfg); /* garbage: config_init must set every field */
  ray_config_init(&cfg);
  assert_int_equal(cfg.num_workers, 0);
  assert_int_equal(cfg.object_store_memory, 0);
  assert_null(cfg.spill_dir);
  assert_int_equal(cfg.put_timeout_ms, 10000);
  assert_null(cfg.timeline_path);
  assert_string_equal(cfg.env_error, "");
}

static void test_default_memory_limit_is_30_percent_of_ram(void **state) {
  (void)state;
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  assert_true(pages > 0 && psz > 0);
  double want = (double)pages * (double)psz * 3.0 / 10.0;

  assert_int_equal(ray_init(NULL), RAY_OK);
  double got = (double)stats().memory_limit;
  assert_int_equal(ray_shutdown(), RAY_OK);
  if (got < want * 0.99 || got > want * 1.01)
    fail_msg("memory_limit %.0f is not 30%% of RAM (%.0f)", got, want);

  /* The same through an explicit config with object_store_memory 0. */
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 0;
  assert_int_equal(ray_init(&cfg), RAY_OK);
  got = (double)stats().memory_limit;
  assert_int_equal(ray_shutdown(), RAY_OK);
  if (got < want * 0.99 || got > want * 1.01)
    fail_msg("memory_limit %.0f is not 30%% of RAM (%.0f)", got, want);
}

/* ------------------------------------------------------------------------ */
/* Environment overrides                                                    */
/* ------------------------------------------------------------------------ */

static void test_env_object_store_memory_accepts_sizes_and_suffixes(void **state) {
  (void)state;
  static const struct {
    const char *text;
    size_t bytes;
  } k[] = {
      {"64M", 64 * MIB},
      {"512K", 512 * KIB},
      {"2G", 2 * GIB},
      {"1000000", 1000000},
      {"64MB", 64 * MIB},
      {"1", 1},
      {"16m", 16 * MIB},
      {"8k", 8 * KIB},
      {"3kB", 3 * KIB},
      {"1T", (size_t)1 << 40},
      {"2tb", (size_t)2 << 40},
      {"5b", 5},
      {"007", 7}, /* decimal, not octal */
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    assert_int_equal(setenv("RAY_OBJECT_STORE_MEMORY", k[i].text, 1), 0);
    ray_config cfg;
    ray_config_init(&cfg);
    if (cfg.object_store_memory != k[i].bytes || cfg.env_error[0])
      fail_msg("RAY_OBJECT_STORE_MEMORY=%s gave %zu bytes (want %zu), env_error \"%s\"", k[i].text,
               cfg.object_store_memory, k[i].bytes, cfg.env_error);
  }
}

static void test_env_overrides_every_field(void **state) {
  (void)state;
  assert_int_equal(setenv("RAY_NUM_WORKERS", "3", 1), 0);
  assert_int_equal(setenv("RAY_SPILL_DIR", "/x", 1), 0);
  assert_int_equal(setenv("RAY_TIMELINE", "/t.json", 1), 0);
  assert_int_equal(setenv("RAY_PUT_TIMEOUT_MS", "-1", 1), 0);
  assert_int_equal(setenv("RAY_OBJECT_STORE_MEMORY", "64M", 1), 0);
  ray_config cfg;
  ray_config_init(&cfg);
  assert_string_equal(cfg.env_error, "");
  assert_int_equal(cfg.num_workers, 3);
  assert_non_null(cfg.spill_dir);
  assert_string_equal(cfg.spill_dir, "/x");
  assert_non_null(cfg.timeline_path);
  assert_string_equal(cfg.timeline_path, "/t.json");
  assert_int_equal(cfg.put_timeout_ms, -1);
  assert_int_equal(cfg.object_store_memory, 64 * MIB);

  /* Other accepted edge values. */
  assert_int_equal(setenv("RAY_NUM_WORKERS", "0", 1), 0);
  assert_int_equal(setenv("RAY_PUT_TIMEOUT_MS", "0", 1), 0);
  ray_config_init(&cfg);
  assert_string_equal(cfg.env_error, "");
  assert_int_equal(cfg.num_workers, 0);
  assert_int_equal(cfg.put_timeout_ms, RAY_PUT_NO_WAIT); /* 0 in the environment: do not wait */
  assert_int_equal(setenv("RAY_PUT_TIMEOUT_MS", "250", 1), 0);
  ray_config_init(&cfg);
  assert_int_equal(cfg.put_timeout_ms, 250);

  /* The integers are read by strtoll, as ray.h says: up to 4096 workers,
   * leading blanks and a sign allowed. */
  static const struct {
    const char *text;
    int workers;
  } w[] = {{"4096", 4096}, {" 2", 2}, {"+2", 2}, {"010", 10}};
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    assert_int_equal(setenv("RAY_NUM_WORKERS", w[i].text, 1), 0);
    ray_config_init(&cfg);
    if (cfg.num_workers != w[i].workers || cfg.env_error[0])
      fail_msg("RAY_NUM_WORKERS='%s' gave %d (want %d), env_error \"%s\"", w[i].text,
               cfg.num_workers, w[i].workers, cfg.env_error);
  }
  assert_int_equal(setenv("RAY_PUT_TIMEOUT_MS", " +9", 1), 0);
  ray_config_init(&cfg);
  assert_string_equal(cfg.env_error, "");
  assert_int_equal(cfg.put_timeout_ms, 9);
}

static void test_env_object_store_memory_is_the_limit_in_force(void **state) {
  (void)state;
  assert_int_equal(setenv("RAY_OBJECT_STORE_MEMORY", "64M", 1), 0);
  assert_int_equal(ray_init(NULL), RAY_OK);
  assert_int_equal(stats().memory_limit, 64 * MIB);
  assert_int_equal(ray_shutdown(), RAY_OK);

  ray_config cfg;
  ray_config_init(&cfg);
  assert_int_equal(ray_init(&cfg), RAY_OK);
  assert_int_equal(stats().memory_limit, 64 * MIB);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static void test_malformed_env_value_is_refused_by_init(void **state) {
  (void)state;
  static const struct {
    const char *var, *value;
  } k[] = {
      {"RAY_OBJECT_STORE_MEMORY", "12Q"},
      {"RAY_OBJECT_STORE_MEMORY", "abc"},
      {"RAY_OBJECT_STORE_MEMORY", "0"},
      {"RAY_OBJECT_STORE_MEMORY", "-5"},
      {"RAY_OBJECT_STORE_MEMORY", ""},
      {"RAY_OBJECT_STORE_MEMORY", " 64M"}, /* a byte count starts with a digit */
      {"RAY_OBJECT_STORE_MEMORY", "+64M"},
      {"RAY_OBJECT_STORE_MEMORY", "64 M"},
      {"RAY_OBJECT_STORE_MEMORY", "64MiB"}, /* nothing after the optional B */
      {"RAY_OBJECT_STORE_MEMORY", "1KK"},
      {"RAY_OBJECT_STORE_MEMORY", "0x40"},
      {"RAY_OBJECT_STORE_MEMORY", "18446744073709551616"}, /* past 64 bits */
      {"RAY_OBJECT_STORE_MEMORY", "17179869184G"},         /* 2^64 bytes */
      {"RAY_NUM_WORKERS", "abc"},
      {"RAY_NUM_WORKERS", "-1"},
      {"RAY_NUM_WORKERS", "2x"},
      {"RAY_NUM_WORKERS", ""},
      {"RAY_NUM_WORKERS", "4097"},
      {"RAY_NUM_WORKERS", "2.0"},
      {"RAY_NUM_WORKERS", "0x10"},
      {"RAY_PUT_TIMEOUT_MS", "-2"},
      {"RAY_PUT_TIMEOUT_MS", "soon"},
      {"RAY_PUT_TIMEOUT_MS", "1.5"},
      {"RAY_PUT_TIMEOUT_MS", "9223372036854775808"}, /* past INT64_MAX */
      {"RAY_SPILL_DIR", ""},
      {"RAY_TIMELINE", ""},
  };
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
    const char *var = k[i].var, *value = k[i].value;
    unset_ray_env();
    assert_int_equal(setenv(var, value, 1), 0);
    /* The value as quoted in messages; "" shows as '' so the empty case is
     * checked too. */
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", value);

    ray_config cfg;
    ray_config_init(&cfg);
    if (!strstr(cfg.env_error, var) || !strstr(cfg.env_error, value[0] ? value : ""))
      fail_msg("%s=\"%s\": env_error \"%s\" does not name it", var, value, cfg.env_error);

    assert_int_equal(ray_init(&cfg), RAY_EINVAL);
    if (!strstr(ray_last_error(), var) || !strstr(ray_last_error(), value))
      fail_msg("%s=\"%s\": ray_init(&cfg) said \"%s\"", var, value, ray_last_error());
    assert_false(ray_is_initialized());
    assert_int_equal(ray_stats_get(&(ray_stats){0}), RAY_ESHUTDOWN);

    /* No silent default through ray_init(NULL) either. */
    assert_int_equal(ray_init(NULL), RAY_EINVAL);
    if (!strstr(ray_last_error(), var) || !strstr(ray_last_error(), value))
      fail_msg("%s=\"%s\": ray_init(NULL) said \"%s\"", var, value, ray_last_error());
    assert_false(ray_is_initialized());

    /* The failed init left nothing behind: a good one works at once. */
    unsetenv(var);
    assert_int_equal(ray_init(NULL), RAY_OK);
    assert_int_equal(ray_shutdown(), RAY_OK);
  }
}

static void test_malformed_empty_value_is_quoted_in_the_message(void **state) {
  (void)state;
  assert_int_equal(setenv("RAY_SPILL_DIR", "", 1), 0);
  assert_int_equal(ray_init(NULL), RAY_EINVAL);
  assert_error_contains("RAY_SPILL_DIR");
  assert_error_contains("''"); /* the empty value is visible, not just missing */
  assert_false(ray_is_initialized());
}

/* ------------------------------------------------------------------------ */
/* Config fields                                                            */
/* ------------------------------------------------------------------------ */

static void test_bad_config_fields_give_einval_naming_the_field(void **state) {
  (void)state;
  ray_config cfg;

  ray_config_init(&cfg);
  cfg.num_workers = -1;
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("num_workers");
  assert_error_contains("-1");
  assert_false(ray_is_initialized());

  ray_config_init(&cfg);
  cfg.put_timeout_ms = -3;
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("put_timeout_ms");
  assert_error_contains("-3 is below RAY_PUT_NO_WAIT");
  assert_false(ray_is_initialized());

  ray_config_init(&cfg);
  cfg.spill_dir = "";
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("spill_dir");
  assert_false(ray_is_initialized());

  ray_config_init(&cfg);
  cfg.timeline_path = "";
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("timeline_path");
  assert_false(ray_is_initialized());

  /* A field set directly by the program beats nothing: the config as a whole
   * is rejected, so a later good config still starts. */
  ray_config_init(&cfg);
  assert_int_equal(ray_init(&cfg), RAY_OK);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

static void test_small_memory_limit_holds_a_put_that_fits(void **state) {
  (void)state;
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 1 * MIB;
  cfg.put_timeout_ms = RAY_PUT_NO_WAIT;
  assert_int_equal(ray_init(&cfg), RAY_OK);
  assert_int_equal(stats().memory_limit, 1 * MIB);

  size_t n = 512 * KIB;
  unsigned char *buf = malloc(n);
  assert_non_null(buf);
  for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 31 + 7);
  ray_ref *ref = NULL;
  assert_int_equal(ray_put(buf, n, NULL, &ref), RAY_OK);
  ray_stats s = stats();
  assert_int_equal(s.bytes_in_memory, n);
  assert_int_equal(s.objects, 1);

  ray_view view;
  assert_int_equal(ray_get(ref, NULL, 0, &view), RAY_OK);
  assert_int_equal(view.size, n);
  assert_memory_equal(view.data, buf, n);
  ray_view_release(&view);

  /* An object larger than the whole limit is refused at once, store unchanged. */
  size_t big = 2 * MIB;
  unsigned char *bigbuf = calloc(1, big);
  assert_non_null(bigbuf);
  ray_ref *bigref = (ray_ref *)(uintptr_t)0x1;
  assert_int_equal(ray_put(bigbuf, big, NULL, &bigref), RAY_ESTOREFULL);
  assert_ptr_equal(bigref, (ray_ref *)(uintptr_t)0x1);
  assert_error_contains("2097152");
  assert_error_contains("1048576");
  free(bigbuf);
  s = stats();
  assert_int_equal(s.bytes_in_memory, n);
  assert_int_equal(s.objects, 1);

  ray_ref_release(ref);
  s = stats();
  assert_int_equal(s.bytes_in_memory, 0);
  assert_int_equal(s.objects, 0);
  free(buf);
  assert_int_equal(ray_shutdown(), RAY_OK);
}

/* ------------------------------------------------------------------------ */
/* Init/shutdown cycles                                                     */
/* ------------------------------------------------------------------------ */

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 13);
}

static void check_bytes(ray_ref *ref, size_t n, unsigned seed, ray_view *keep) {
  ray_view view;
  assert_int_equal(ray_get(ref, NULL, 1000, &view), RAY_OK);
  assert_int_equal(view.size, n);
  const unsigned char *p = view.data;
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed + i * 13)) fail_msg("byte %zu of %zu differs", i, n);
  if (keep)
    *keep = view;
  else
    ray_view_release(&view);
}

static void test_ten_init_put_get_shutdown_cycles_each_work_and_free_everything(void **state) {
  (void)state;
  static const size_t sizes[] = {8, 200, 4 * KIB, 300 * KIB, 2 * MIB};
  enum { NSIZES = sizeof sizes / sizeof sizes[0] };
  unsigned char *buf = malloc(2 * MIB);
  assert_non_null(buf);
  g_frees = 0;
  int owned_puts = 0;

  for (int cycle = 0; cycle < 10; cycle++) {
    bool leak = cycle % 3 == 1; /* cycles 1, 4, 7 leave handles behind */
    ray_config cfg;
    ray_config_init(&cfg);
    cfg.object_store_memory = 64 * MIB;
    assert_int_equal(ray_init(&cfg), RAY_OK);
    ray_stats s = stats();
    if (s.objects != 0 || s.bytes_in_memory != 0 || s.puts != 0)
      fail_msg("cycle %d starts with %llu objects, %zu bytes, %llu puts", cycle,
               (unsigned long long)s.objects, s.bytes_in_memory, (unsigned long long)s.puts);

    ray_ref *refs[NSIZES];
    for (int k = 0; k < NSIZES; k++) {
      fill(buf, sizes[k], (unsigned)(cycle * 7 + k));
      assert_int_equal(ray_put(buf, sizes[k], NULL, &refs[k]), RAY_OK);
    }
    /* An adopted buffer, an object written in place, a refs object. */
    unsigned char *own = malloc(100 * KIB);
    assert_non_null(own);
    fill(own, 100 * KIB, 99);
    ray_ref *owned = NULL;
    assert_int_equal(ray_put_owned(own, 100 * KIB, NULL, counting_free, &owned), RAY_OK);
    owned_puts++;
    void *w = NULL;
    ray_ref *created = NULL;
    assert_int_equal(ray_create(64 * KIB, NULL, &w, &created), RAY_OK);
    fill(w, 64 * KIB, 5);
    assert_int_equal(ray_seal(created), RAY_OK);
    ray_ref *holder = NULL;
    assert_int_equal(ray_put_refs(refs, NSIZES, &holder), RAY_OK);
    void *w2 = NULL;
    ray_ref *unsealed = NULL;
    assert_int_equal(ray_create(300 * KIB, NULL, &w2, &unsealed), RAY_OK);

    ray_view views[NSIZES];
    for (int k = 0; k < NSIZES; k++)
      check_bytes(refs[k], sizes[k], (unsigned)(cycle * 7 + k), &views[k]);
    check_bytes(owned, 100 * KIB, 99, NULL);
    check_bytes(created, 64 * KIB, 5, NULL);
    assert_int_equal(stats().objects, NSIZES + 4);

    if (!leak) {
      for (int k = 0; k < NSIZES; k++) {
        ray_view_release(&views[k]);
        ray_ref_release(refs[k]);
      }
      ray_ref_release(owned);
      ray_ref_release(created);
      ray_ref_release(holder);
      ray_ref_release(unsealed);
      s = stats();
      assert_int_equal(s.objects, 0);
      assert_int_equal(s.bytes_in_memory, 0);
    } else {
      /* Leave every view, half the refs, the adopted buffer and the refs
       * object behind: shutdown frees them. */
      for (int k = 0; k < NSIZES; k += 2) ray_ref_release(refs[k]);
      ray_ref_release(created);
    }

    char err[1024];
    assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
    assert_false(ray_is_initialized());
    if (leak) {
      assert_contains(err, "ray_shutdown");
      assert_contains(err, "refs");
      assert_contains(err, "views");
    } else if (err[0]) {
      fail_msg("cycle %d released everything but shutdown printed \"%s\"", cycle, err);
    }
  }
  /* Every adopted buffer was handed back exactly once (ASan checks the rest). */
  assert_int_equal(g_frees, owned_puts);
  free(buf);
}

/* ------------------------------------------------------------------------ */
/* Shutdown warning                                                         */
/* ------------------------------------------------------------------------ */

static void test_shutdown_warns_about_unreleased_refs_and_views(void **state) {
  (void)state;
  assert_int_equal(ray_init(NULL), RAY_OK);
  int64_t v[4] = {1, 2, 3, 4};
  g_frees = 0;

  /* a: only a view left (its ref was released). */
  ray_ref *a = NULL;
  ray_view va;
  assert_int_equal(ray_put(v, sizeof v, &ray_type_i64, &a), RAY_OK);
  assert_int_equal(ray_get(a, NULL, 0, &va), RAY_OK);
  ray_ref_release(a);
  /* b: one ref and two views left. */
  ray_ref *b = NULL;
  ray_view vb1, vb2;
  assert_int_equal(ray_put(v, sizeof v, &ray_type_i64, &b), RAY_OK);
  assert_int_equal(ray_get(b, NULL, 0, &vb1), RAY_OK);
  assert_int_equal(ray_get(b, NULL, 0, &vb2), RAY_OK);
  /* c: an unsealed ray_create, one ref left. */
  ray_ref *c = NULL;
  void *cdata = NULL;
  assert_int_equal(ray_create(1000, NULL, &cdata, &c), RAY_OK);
  /* d: an adopted buffer, three refs left. */
  ray_ref *d = NULL;
  int64_t *dbuf = malloc(sizeof v);
  assert_non_null(dbuf);
  memcpy(dbuf, v, sizeof v);
  assert_int_equal(ray_put_owned(dbuf, sizeof v, &ray_type_i64, counting_free, &d), RAY_OK);
  assert_ptr_equal(ray_ref_retain(d), d);
  assert_ptr_equal(ray_ref_retain(d), d);
  /* e: fully released, does not count. */
  ray_ref *e = NULL;
  ray_view ve;
  assert_int_equal(ray_put(v, sizeof v, &ray_type_i64, &e), RAY_OK);
  assert_int_equal(ray_get(e, NULL, 0, &ve), RAY_OK);
  ray_view_release(&ve);
  ray_ref_release(e);

  assert_int_equal(stats().objects, 4);
  char err[2048];
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_false(ray_is_initialized());
  /* "ray_shutdown: 4 objects were still alive: 5 refs and 3 views never released; ..." */
  assert_contains(err, "ray_shutdown");
  assert_contains(err, "4 objects");
  assert_contains(err, "5 refs");
  assert_contains(err, "3 views");
  assert_int_equal(g_frees, 1); /* the adopted buffer was handed back at shutdown */

  /* Releasing the stale handles now is harmless and silent. */
  capture cap;
  capture_begin(&cap);
  ray_view_release(&va);
  ray_view_release(&vb1);
  ray_view_release(&vb2);
  ray_ref_release(b);
  ray_ref_release(c);
  ray_ref_release(d);
  ray_ref_release(d);
  ray_ref_release(d);
  capture_end(&cap, err, sizeof err);
  assert_string_equal(err, "");
  assert_int_equal(g_frees, 1);
}

static void test_shutdown_with_everything_released_prints_nothing(void **state) {
  (void)state;
  assert_int_equal(ray_init(NULL), RAY_OK);
  int64_t v = 11;
  ray_ref *r = NULL, *big = NULL, *holder = NULL;
  assert_int_equal(ray_put(&v, sizeof v, &ray_type_i64, &r), RAY_OK);
  void *data = NULL;
  assert_int_equal(ray_create(400 * KIB, NULL, &data, &big), RAY_OK);
  memset(data, 1, 400 * KIB);
  assert_int_equal(ray_seal(big), RAY_OK);
  ray_ref *both[2] = {r, big};
  assert_int_equal(ray_put_refs(both, 2, &holder), RAY_OK);
  ray_view view;
  assert_int_equal(ray_get(holder, &ray_type_refs, 0, &view), RAY_OK);
  ray_view_release(&view);
  ray_ref_release(r);
  ray_ref_release(big);
  ray_ref_release(holder);
  assert_int_equal(stats().objects, 0);

  char err[1024];
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_string_equal(err, "");

  /* Not running: a second shutdown prints nothing either. */
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_string_equal(err, "");
}

/* ------------------------------------------------------------------------ */
/* Handles from an earlier runtime                                          */
/* ------------------------------------------------------------------------ */

static void test_handles_from_a_previous_runtime_are_invalid_in_the_next(void **state) {
  (void)state;
  assert_int_equal(ray_init(NULL), RAY_OK);
  int64_t old_v = 111;
  ray_ref *old = NULL;
  ray_view old_view;
  assert_int_equal(ray_put(&old_v, sizeof old_v, &ray_type_i64, &old), RAY_OK);
  assert_int_equal(ray_get(old, NULL, 0, &old_view), RAY_OK);
  char err[1024];
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_contains(err, "ray_shutdown");

  assert_int_equal(ray_init(NULL), RAY_OK);
  /* A new object, probably in the same slot the old handle names. */
  int64_t new_v = 222;
  ray_ref *fresh = NULL;
  assert_int_equal(ray_put(&new_v, sizeof new_v, &ray_type_i64, &fresh), RAY_OK);

  ray_view view;
  memset(&view, 0, sizeof view);
  assert_int_equal(ray_get(old, NULL, 0, &view), RAY_EINVAL);
  assert_error_contains("ray_get");
  assert_error_contains("released or invalid");
  assert_null(view.priv_);
  assert_null(ray_ref_retain(old));
  assert_int_equal(ray_pin(old), RAY_EINVAL);
  assert_error_contains("released or invalid");
  assert_int_equal(ray_seal(old), RAY_EINVAL);
  assert_error_contains("released or invalid");
  char hex[33];
  ray_ref_id(old, hex);
  assert_string_equal(hex, "00000000000000000000000000000000");

  /* Releasing the old handle and view is reported, not applied. */
  capture cap;
  capture_begin(&cap);
  ray_ref_release(old);
  ray_view_release(&old_view);
  capture_end(&cap, err, sizeof err);
  assert_contains(err, "ray_ref_release");

  /* The new runtime's object is untouched. */
  assert_int_equal(stats().objects, 1);
  assert_int_equal(ray_get(fresh, &ray_type_i64, 0, &view), RAY_OK);
  assert_int_equal(*(const int64_t *)view.data, 222);
  ray_view_release(&view);
  ray_ref_release(fresh);
  assert_int_equal(stats().objects, 0);
  assert_int_equal(shutdown_captured(err, sizeof err), RAY_OK);
  assert_string_equal(err, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      /* first: nothing has started a runtime yet */
      T(test_calls_before_init_give_eshutdown),
      T(test_status_name_and_strerror_cover_every_status),
      T(test_unknown_status_gives_placeholder_name_and_text),
      T(test_last_error_is_empty_on_a_fresh_thread_and_thread_local),
      T(test_last_error_survives_successful_calls),
      T(test_calls_after_shutdown_give_eshutdown),
      T(test_init_null_starts_and_shutdown_stops),
      T(test_init_twice_gives_eexist_and_keeps_the_first_runtime),
      T(test_shutdown_is_idempotent),
      T(test_config_init_defaults_without_environment),
      T(test_default_memory_limit_is_30_percent_of_ram),
      T(test_env_object_store_memory_accepts_sizes_and_suffixes),
      T(test_env_overrides_every_field),
      T(test_env_object_store_memory_is_the_limit_in_force),
      T(test_malformed_env_value_is_refused_by_init),
      T(test_malformed_empty_value_is_quoted_in_the_message),
      T(test_bad_config_fields_give_einval_naming_the_field),
      T(test_small_memory_limit_holds_a_put_that_fits),
      T(test_ten_init_put_get_shutdown_cycles_each_work_and_free_everything),
      T(test_shutdown_warns_about_unreleased_refs_and_views),
      T(test_shutdown_with_everything_released_prints_nothing),
      T(test_handles_from_a_previous_runtime_are_invalid_in_the_next),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
