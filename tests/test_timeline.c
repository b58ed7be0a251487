/*
 * test_timeline.c - the Chrome trace written at shutdown: it parses as JSON
 * and holds one slice per task run and actor method, with their outcome.
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

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ray.h"

/* A small strict JSON syntax checker (RFC 8259 grammar, no semantics). */
static const char *ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}
static const char *value(const char *p);
static const char *string(const char *p) {
  if (*p != '"') return NULL;
  for (p++; *p != '"'; p++) {
    if (!*p || (unsigned char)*p < 0x20) return NULL;
    if (*p == '\\') {
      p++;
      if (*p == 'u') {
        for (int i = 1; i <= 4; i++)
          if (!isxdigit((unsigned char)p[i])) return NULL;
        p += 4;
      } else if (!strchr("\"\\/bfnrt", *p) || !*p) {
        return NULL;
      }
    }
  }
  return p + 1;
}
static const char *number(const char *p) {
  char *end;
  strtod(p, &end);
  return end == p ? NULL : end;
}
static const char *container(const char *p, char close, bool object) {
  p = ws(p + 1);
  if (*p == close) return p + 1;
  for (;;) {
    if (object) {
      if (!(p = string(ws(p)))) return NULL;
      p = ws(p);
      if (*p++ != ':') return NULL;
    }
    if (!(p = value(p))) return NULL;
    p = ws(p);
    if (*p == close) return p + 1;
    if (*p++ != ',') return NULL;
  }
}
static const char *value(const char *p) {
  p = ws(p);
  switch (*p) {
  case '{':
    return container(p, '}', true);
  case '[':
    return container(p, ']', false);
  case '"':
    return string(p);
  case 't':
    return strncmp(p, "true", 4) ? NULL : p + 4;
  case 'f':
    return strncmp(p, "false", 5) ? NULL : p + 5;
  case 'n':
    return strncmp(p, "null", 4) ? NULL : p + 4;
  default:
    return number(p);
  }
}
static bool json_valid(const char *text) {
  const char *end = value(text);
  return end && *ws(end) == '\0';
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (buf) buf[n] = '\0';
  fclose(f);
  return buf;
}

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
  return n;
}

static void test_json_checker_rejects_broken_json(void **state) {
  (void)state; /* the checker itself must be able to fail */
  assert_true(json_valid("{\"a\":[1,2.5e3,\"x\\n\",true,null],\"b\":{}}"));
  assert_false(json_valid("{\"a\":[1,2,]}"));
  assert_false(json_valid("{\"a\":1"));
  assert_false(json_valid("{\"a\":\"tab\there\"}"));
}

static ray_status work(ray_ctx *ctx) {
  int64_t x = 1;
  return ray_ctx_return(ctx, 0, &x, sizeof x, &ray_type_i64);
}
static ray_status broken(ray_ctx *ctx) {
  return ray_ctx_fail(ctx, "on purpose");
}
static ray_status ping(void *state, ray_ctx *ctx) {
  (void)state;
  return work(ctx);
}
static const ray_method methods[] = {{"ping", ping}};
static const ray_actor_class pinger = {"Pinger \"quoted\"", 0, NULL, NULL, methods, 1};

static void test_trace_parses_and_holds_every_slice(void **state) {
  (void)state;
  char path[] = "/tmp/rayc-timeline-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  cfg.timeline_path = path;
  assert_int_equal(ray_init(&cfg), RAY_OK);
  ray_ref *r[10];
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "work";
  for (int i = 0; i < 10; i++) assert_int_equal(ray_submit(work, NULL, 0, &o, &r[i]), RAY_OK);
  o.name = "broken";
  ray_ref *bad;
  assert_int_equal(ray_submit(broken, NULL, 0, &o, &bad), RAY_OK);
  ray_actor *a;
  assert_int_equal(ray_actor_create(&pinger, NULL, 0, NULL, &a), RAY_OK);
  ray_ref *p[3];
  for (int i = 0; i < 3; i++) assert_int_equal(ray_actor_call(a, 0, NULL, 0, &p[i]), RAY_OK);
  ray_ref *all[14];
  memcpy(all, r, sizeof r);
  all[10] = bad;
  memcpy(all + 11, p, sizeof p);
  bool ready[14];
  assert_int_equal(ray_wait(all, 14, 14, -1, ready), RAY_OK);
  for (int i = 0; i < 14; i++) ray_ref_release(all[i]);
  ray_actor_release(a);
  assert_int_equal(ray_shutdown(), RAY_OK);

  char *text = slurp(path);
  assert_non_null(text);
  if (!json_valid(text)) fail_msg("the timeline is not valid JSON:\n%.2000s", text);
  assert_int_equal(count(text, "\"name\":\"work\",\"cat\":\"task\",\"ph\":\"X\""), 10);
  assert_int_equal(count(text, "\"name\":\"broken\",\"cat\":\"task\""), 1);
  assert_int_equal(count(text, "\"status\":\"RAY_ETASK\""), 1);
  assert_int_equal(count(text, "\"cat\":\"actor.method\""), 3);
  assert_int_equal(count(text, "\"cat\":\"actor.on_start\""), 1);
  assert_non_null(strstr(text, "Pinger \\\"quoted\\\".ping")); /* names are escaped */
  assert_non_null(strstr(text, "\"name\":\"thread_name\""));
  assert_non_null(strstr(text, "\"args\":{\"name\":\"worker 0\"}"));
  free(text);
  unlink(path);
}

static void test_unwritable_timeline_path_is_reported_at_shutdown(void **state) {
  (void)state;
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.timeline_path = "/nonexistent-dir/trace.json";
  assert_int_equal(ray_init(&cfg), RAY_OK);
  assert_int_equal(ray_shutdown(), RAY_EIO);
  assert_non_null(
      strstr(ray_last_error(), "cannot write the timeline to '/nonexistent-dir/trace.json'"));
  assert_false(ray_is_initialized()); /* shut down all the same */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_checker_rejects_broken_json),
      cmocka_unit_test(test_trace_parses_and_holds_every_slice),
      cmocka_unit_test(test_unwritable_timeline_path_is_reported_at_shutdown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
