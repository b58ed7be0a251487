/*
 * test_timeline.c - the timeline: the Chrome trace (valid JSON, one slice
 * per run with its outcome, thread ids from 1), the HTML page (self-
 * contained, with its lanes, slices and marks), ray_timeline_write while
 * tasks run, the summary (counts and failures of a known workload), the
 * RAY_TIMELINE_SUMMARY switch, the write at exit when ray_shutdown was not
 * called (a child process), and every error path.
 * The page as a browser draws it: test_timeline_browser.c.
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
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "ray.h"
#include "test_util.h"

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

/* Every "tid" of a Chrome trace is an integer >= 1; returns how many. */
static size_t check_tids(const char *text) {
  size_t n = 0;
  for (const char *p = text; (p = strstr(p, "\"tid\":")) != NULL; p++) {
    char *end;
    long tid = strtol(p + 6, &end, 10);
    if (end == p + 6 || tid < 1) fail_msg("a thread id below 1: %.60s", p);
    n++;
  }
  return n;
}

/* A fresh path /tmp/rayc-tl-XXXXXX<suffix> (the file exists, empty). */
static void tmp_path(char *path, size_t cap, const char *suffix) {
  snprintf(path, cap, "/tmp/rayc-tl-XXXXXX%s", suffix);
  int fd = mkstemps(path, (int)strlen(suffix));
  assert_true(fd >= 0);
  close(fd);
}

/* The JSON inside the page's data script, copied (free it). */
static char *page_data(const char *html) {
  const char *open = "<script id='rayc-data' type='application/json'>";
  const char *p = strstr(html, open);
  if (!p) fail_msg("the page has no data script");
  p += strlen(open);
  const char *end = strstr(p, "</script>");
  assert_non_null(end);
  char *data = strndup(p, (size_t)(end - p));
  assert_non_null(data);
  return data;
}

/* One slice of the page's data: [lane, group, start, dur, status,
 * cancelled, id, attempt, "name", "object", results]. */
typedef struct page_slice {
  unsigned lane, group;
  double start, dur;
  int status, cancelled;
  unsigned long long id;
  int attempt;
} page_slice;

/* The page's slices whose group is named name (any when NULL). */
static size_t page_slices(const char *data, const char *name, page_slice *out, size_t cap) {
  /* group index of name: the groups are ["name","kind",...] in order */
  long want = -1;
  if (name) {
    const char *g = strstr(data, "\"groups\":[");
    assert_non_null(g);
    char key[80];
    snprintf(key, sizeof key, "[\"%s\",", name);
    long idx = 0;
    for (const char *q = strchr(g, '\n'); q && q < strstr(data, "\"slices\":");
         q = strchr(q + 1, '\n'), idx++)
      if (!strncmp(q + 1, key, strlen(key))) want = idx;
    if (want < 0) return 0;
  }
  size_t n = 0;
  const char *sl = strstr(data, "\"slices\":[");
  assert_non_null(sl);
  for (const char *q = strchr(sl, '\n'); q; q = strchr(q + 1, '\n')) {
    page_slice x;
    if (sscanf(q + 1, "[%u,%u,%lf,%lf,%d,%d,%llu,%d,", &x.lane, &x.group, &x.start, &x.dur,
               &x.status, &x.cancelled, &x.id, &x.attempt) != 8)
      continue;
    if (name && (long)x.group != want) continue;
    if (n < cap) out[n] = x;
    n++;
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Tasks and actors of the workloads                                        */
/* ------------------------------------------------------------------------ */

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
static const ray_actor_class plain_pinger = {"Pinger", 0, NULL, NULL, methods, 1};

/* Held tasks: each counts itself in, then runs until the test lets go. */
static _Atomic int g_held_in;
static _Atomic bool g_release;
static ray_status held(ray_ctx *ctx) {
  atomic_fetch_add(&g_held_in, 1);
  while (!atomic_load(&g_release)) usleep(100);
  return work(ctx);
}

/* Runs until it is cancelled (counted in g_held_in once running). */
static ray_status stubborn(ray_ctx *ctx) {
  atomic_fetch_add(&g_held_in, 1);
  while (!ray_ctx_cancelled(ctx)) usleep(100);
  return work(ctx);
}

/* Fails its first two runs, then succeeds (max_retries 2). */
static _Atomic int g_flaky_runs;
static ray_status flaky(ray_ctx *ctx) {
  if (atomic_fetch_add(&g_flaky_runs, 1) < 2) return ray_ctx_fail(ctx, "flaky, run %d", 1);
  return work(ctx);
}

static ray_ref *submit_named(ray_task_fn fn, const char *name, int retries) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = name;
  o.max_retries = retries;
  ray_ref *r = NULL;
  CHECK_OK(ray_submit(fn, NULL, 0, &o, &r));
  return r;
}

static void wait_all(ray_ref **r, size_t n) {
  bool *ready = calloc(n, sizeof *ready);
  assert_non_null(ready);
  CHECK_OK(ray_wait(r, n, n, -1, ready));
  free(ready);
}

static void release_all(ray_ref **r, size_t n) {
  for (size_t i = 0; i < n; i++) ray_ref_release(r[i]);
}

static void init_with(const char *path, int workers) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = workers;
  cfg.timeline_path = path;
  CHECK_OK(ray_init(&cfg));
}

/* ------------------------------------------------------------------------ */
/* The Chrome trace                                                         */
/* ------------------------------------------------------------------------ */

static void test_json_checker_rejects_broken_json(void **state) {
  (void)state; /* the checker itself must be able to fail */
  assert_true(json_valid("{\"a\":[1,2.5e3,\"x\\n\",true,null],\"b\":{}}"));
  assert_false(json_valid("{\"a\":[1,2,]}"));
  assert_false(json_valid("{\"a\":1"));
  assert_false(json_valid("{\"a\":\"tab\there\"}"));
}

static void test_trace_parses_and_holds_every_slice(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".json");
  init_with(path, 2);
  ray_ref *all[15];
  for (int i = 0; i < 10; i++) all[i] = submit_named(work, "work", 0);
  all[10] = submit_named(broken, "broken", 0);
  /* 46 ASCII bytes and a 2-byte character that the 47-byte limit cuts */
  all[11] = submit_named(work, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9tail", 0);
  ray_actor *a;
  CHECK_OK(ray_actor_create(&pinger, NULL, 0, NULL, &a));
  for (int i = 0; i < 3; i++) CHECK_OK(ray_actor_call(a, 0, NULL, 0, &all[12 + i]));
  wait_all(all, 15);
  release_all(all, 15);
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
  /* cut before the character, not inside it */
  assert_non_null(strstr(text, "\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","));
  assert_non_null(strstr(text, "\"name\":\"thread_name\""));
  assert_non_null(strstr(text, "\"args\":{\"name\":\"worker 0\"}"));
  /* every slice and every lane's metadata has a thread id >= 1 */
  assert_true(check_tids(text) >= 15);
  /* a task's first result is named by its object ID */
  assert_int_equal(count(text, "\"object\":\""), 15); /* all but on_start's */
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

/* ------------------------------------------------------------------------ */
/* ray_timeline_write while the runtime runs                                */
/* ------------------------------------------------------------------------ */

static void test_write_on_demand_holds_what_finished_while_tasks_run(void **state) {
  (void)state;
  char at_end[64], now_json[64], now_html[64];
  tmp_path(at_end, sizeof at_end, ".json");
  tmp_path(now_json, sizeof now_json, ".json");
  tmp_path(now_html, sizeof now_html, ".html");
  init_with(at_end, 2);
  ray_ref *quick[8];
  for (int i = 0; i < 8; i++) quick[i] = submit_named(work, "quick", 0);
  wait_all(quick, 8);
  atomic_store(&g_held_in, 0);
  atomic_store(&g_release, false);
  ray_ref *h[2] = {submit_named(held, "held", 0), submit_named(held, "held", 0)};
  WAIT_UNTIL(atomic_load(&g_held_in) == 2, "both held tasks running");

  /* Both workers are inside a held task: the quick ones are all there,
   * the held ones not yet (a slice is recorded when its run ends). */
  CHECK_OK(ray_timeline_write(now_json));
  char *text = slurp(now_json);
  if (!json_valid(text)) fail_msg("not valid JSON:\n%.2000s", text);
  assert_int_equal(count(text, "\"name\":\"quick\""), 8);
  assert_int_equal(count(text, "\"name\":\"held\""), 0);
  check_tids(text);
  free(text);
  CHECK_OK(ray_timeline_write(now_html)); /* the extension picks the format */
  text = slurp(now_html);
  assert_non_null(strstr(text, "<!DOCTYPE html>"));
  char *data = page_data(text);
  assert_true(json_valid(data));
  assert_int_equal(page_slices(data, "quick", NULL, 0), 8);
  assert_non_null(strstr(data, "\"when\":\"on demand (ray_timeline_write)\""));
  free(data);
  free(text);

  atomic_store(&g_release, true);
  wait_all(h, 2);
  CHECK_OK(ray_timeline_write(now_json)); /* rewritten: now with the held ones */
  text = slurp(now_json);
  assert_true(json_valid(text));
  assert_int_equal(count(text, "\"name\":\"held\""), 2);
  free(text);
  release_all(quick, 8);
  release_all(h, 2);
  CHECK_OK(ray_shutdown());
  text = slurp(at_end); /* and the configured path at shutdown, as before */
  assert_int_equal(count(text, "\"name\":\"quick\""), 8);
  assert_int_equal(count(text, "\"name\":\"held\""), 2);
  free(text);
  unlink(at_end);
  unlink(now_json);
  unlink(now_html);
}

/* Writes the trace again and again while the main thread submits. */
typedef struct writer_arg {
  const char *path;
  _Atomic bool stop;
  int writes;
  ray_status status;
} writer_arg;

static void *writer(void *p) {
  writer_arg *w = p;
  while (!atomic_load(&w->stop) || w->writes == 0) {
    ray_status s = ray_timeline_write(w->path);
    if (s != RAY_OK) {
      w->status = s;
      break;
    }
    w->writes++;
  }
  return NULL;
}

static void test_writes_race_running_tasks_and_every_file_is_whole(void **state) {
  (void)state;
  char path[64], html[64];
  tmp_path(path, sizeof path, ".json");
  tmp_path(html, sizeof html, ".html");
  char at_end[64];
  tmp_path(at_end, sizeof at_end, ".json");
  init_with(at_end, 2);
  writer_arg w1 = {path, false, 0, RAY_OK}, w2 = {html, false, 0, RAY_OK};
  pthread_t t1, t2;
  assert_int_equal(pthread_create(&t1, NULL, writer, &w1), 0);
  assert_int_equal(pthread_create(&t2, NULL, writer, &w2), 0);
#if defined(RT_TEST_SANITIZED)
  enum { N = 3000 }; /* past the first chunks of each thread's buffer */
#else
  enum { N = 5000 };
#endif
  static ray_ref *r[N];
  for (int i = 0; i < N; i++) r[i] = submit_named(work, "raced", 0);
  wait_all(r, N);
  atomic_store(&w1.stop, true);
  atomic_store(&w2.stop, true);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  assert_int_equal(w1.status, RAY_OK);
  assert_int_equal(w2.status, RAY_OK);
  char *text = slurp(path);
  if (!json_valid(text)) fail_msg("a write raced with the tasks is not valid JSON");
  assert_true(count(text, "\"name\":\"raced\"") <= N);
  free(text);
  text = slurp(html);
  char *data = page_data(text);
  assert_true(json_valid(data));
  free(data);
  free(text);
  release_all(r, N);
  CHECK_OK(ray_shutdown());
  text = slurp(at_end);
  assert_int_equal(count(text, "\"name\":\"raced\""), N);
  free(text);
  unlink(path);
  unlink(html);
  unlink(at_end);
}

/* ------------------------------------------------------------------------ */
/* The HTML page                                                            */
/* ------------------------------------------------------------------------ */

/* A workload with every kind of lane and mark: tasks on the workers, a
 * failing one, one cancelled while it runs, an actor; and a put that makes
 * the store spill (rayc-io) and a get that restores on the main thread. */
static void mixed_workload(void) {
  enum { MIB = 1 << 20 };
  ray_ref *r[8];
  for (int i = 0; i < 4; i++) r[i] = submit_named(work, "work", 0);
  r[4] = submit_named(broken, "broken", 0);
  atomic_store(&g_held_in, 0);
  r[5] = submit_named(stubborn, "stubborn", 0);
  WAIT_UNTIL(atomic_load(&g_held_in) == 1, "the stubborn task running");
  CHECK_OK(ray_cancel(r[5], false));
  ray_actor *a;
  CHECK_OK(ray_actor_create(&plain_pinger, NULL, 0, NULL, &a));
  CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r[6]));
  CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r[7]));
  wait_all(r, 8);
  release_all(r, 8);
  ray_actor_release(a);
  /* 3 objects of 1 MiB in room for 2: the third put spills the first, the
   * get of the first restores it (and spills another) */
  char *buf = calloc(1, MIB);
  assert_non_null(buf);
  ray_ref *o[3];
  for (int i = 0; i < 3; i++) CHECK_OK(ray_put(buf, MIB, NULL, &o[i]));
  ray_view v;
  CHECK_OK(ray_get(o[0], NULL, -1, &v));
  ray_view_release(&v);
  release_all(o, 3);
  free(buf);
}

static void init_mixed(const char *path) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  cfg.object_store_memory = 2 << 20;
  cfg.timeline_path = path;
  CHECK_OK(ray_init(&cfg));
}

static void test_html_page_is_self_contained_with_lanes_slices_and_marks(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".HTML"); /* any case */
  init_mixed(path);
  mixed_workload();
  CHECK_OK(ray_shutdown());
  char *html = slurp(path);
  assert_non_null(html);
  /* self-contained: nothing fetched from anywhere */
  const char *outside[] = {"http://", "https://", "<script src", "<link",
                           "@import", "url(",     "<iframe",     "<img"};
  for (size_t i = 0; i < sizeof outside / sizeof *outside; i++)
    if (strstr(html, outside[i])) fail_msg("the page refers outside: \"%s\"", outside[i]);
  assert_non_null(strstr(html, "<!DOCTYPE html>"));
  assert_non_null(strstr(html, "</html>"));
  assert_int_equal(count(html, "<script"), 2); /* the data and the code, both inline */
  /* the legend names both marks */
  assert_non_null(strstr(html, "<i class='sw failed'></i>failed"));
  assert_non_null(strstr(html, "<i class='sw cancelled'></i>cancelled"));

  char *data = page_data(html);
  if (!json_valid(data)) fail_msg("the page's data is not valid JSON:\n%.2000s", data);
  /* the lanes, by name, in order: workers (those that ran something), the
   * main thread, rayc-io */
  const char *w0 = strstr(data, "\"worker "), *m = strstr(data, "\"main thread\""),
             *io = strstr(data, "\"rayc-io\"");
  assert_non_null(w0);
  assert_non_null(m);
  assert_non_null(io);
  assert_true(w0 < m && m < io);
  assert_non_null(strstr(data, "\"layout\":{\"hdr\":"));
  /* the slices, with their outcome */
  page_slice x[8];
  assert_int_equal(page_slices(data, "work", x, 8), 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(x[i].status, RAY_OK);
    assert_int_equal(x[i].cancelled, 0);
    assert_true(x[i].start >= 0 && x[i].dur >= 0);
  }
  assert_int_equal(page_slices(data, "broken", x, 8), 1);
  assert_int_equal(x[0].status, RAY_ETASK);
  assert_int_equal(page_slices(data, "stubborn", x, 8), 1);
  assert_int_equal(x[0].cancelled, 1);
  assert_int_equal(page_slices(data, "Pinger.ping", x, 8), 2);
  assert_true(page_slices(data, "spill", NULL, 0) >= 1);
  assert_true(page_slices(data, "restore", x, 8) >= 1);
  assert_true(page_slices(data, NULL, NULL, 0) >= 11);
  assert_non_null(strstr(data, "\"failed\":1,\"cancelled\":1,"));
  /* object IDs for the hover: 32 hex digits after the slice's name */
  size_t ids = 0;
  for (const char *q = data; (q = strstr(q, "\",\"")) != NULL; q++)
    ids += strspn(q + 3, "0123456789abcdef") == 32 && q[35] == '"';
  assert_true(ids >= 8); /* the tasks' and the methods' */
  free(data);
  free(html);
  unlink(path);
}

static void test_page_escapes_what_could_end_its_script_and_bad_utf8(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".html");
  init_with(path, 1);
  ray_ref *r[2] = {submit_named(work, "</script><b>&", 0), submit_named(work, "bad\xff\xc3", 0)};
  wait_all(r, 2);
  release_all(r, 2);
  CHECK_OK(ray_shutdown());
  char *html = slurp(path);
  assert_int_equal(count(html, "</script>"), 2);
  assert_non_null(strstr(html, "\\u003c/script\\u003e\\u003cb\\u003e\\u0026"));
  /* bytes that are not UTF-8 become U+FFFD, so the page stays valid text */
  assert_non_null(strstr(html, "[\"bad\\ufffd\\ufffd\","));
  free(html);
  unlink(path);
}

/* ------------------------------------------------------------------------ */
/* The summary                                                              */
/* ------------------------------------------------------------------------ */

typedef struct summary_row {
  char name[64], kind[32];
  unsigned long long count, failed, cancelled;
  double total, mean, p50, p99; /* ns */
} summary_row;

static double to_ns(double v, const char *unit) {
  if (!strcmp(unit, "ns")) return v;
  if (!strcmp(unit, "us")) return v * 1e3;
  if (!strcmp(unit, "ms")) return v * 1e6;
  if (!strcmp(unit, "s")) return v * 1e9;
  fail_msg("unknown unit '%s'", unit);
  return 0;
}

/* Parses the table; returns the rows (names without spaces). */
static size_t parse_summary(const char *text, summary_row *rows, size_t cap) {
  assert_true(!strncmp(text, "rayc timeline summary: ", 23));
  const char *line = strchr(text, '\n');
  assert_non_null(line);
  assert_true(!strncmp(line + 1, "name ", 5));
  size_t n = 0;
  for (line = strchr(line + 1, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    summary_row r;
    char u[4][8];
    if (sscanf(line + 1, "%63s %31s %llu %lf %7s %lf %7s %lf %7s %lf %7s %llu %llu", r.name, r.kind,
               &r.count, &r.total, u[0], &r.mean, u[1], &r.p50, u[2], &r.p99, u[3], &r.failed,
               &r.cancelled) != 13)
      fail_msg("a summary line that does not parse: %.120s", line + 1);
    r.total = to_ns(r.total, u[0]);
    r.mean = to_ns(r.mean, u[1]);
    r.p50 = to_ns(r.p50, u[2]);
    r.p99 = to_ns(r.p99, u[3]);
    assert_true(n < cap);
    rows[n++] = r;
  }
  return n;
}

static const summary_row *row_named(const summary_row *rows, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(rows[i].name, name)) return &rows[i];
  fail_msg("no summary row named %s", name);
  return NULL;
}

static char *summary_text(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  CHECK_OK(ray_timeline_summary(f));
  fclose(f);
  return buf;
}

static void test_summary_counts_a_known_workload_exactly(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".json");
  init_with(path, 2);
  atomic_store(&g_flaky_runs, 0);
  ray_ref *r[24];
  size_t n = 0;
  for (int i = 0; i < 12; i++) r[n++] = submit_named(work, "alpha", 0);
  for (int i = 0; i < 3; i++) r[n++] = submit_named(broken, "beta", 0);
  r[n++] = submit_named(flaky, "flaky", 2); /* fails twice, then succeeds */
  atomic_store(&g_held_in, 0);
  r[n++] = submit_named(stubborn, "gamma", 0);
  WAIT_UNTIL(atomic_load(&g_held_in) == 1, "gamma running");
  CHECK_OK(ray_cancel(r[n - 1], false));
  ray_actor *a;
  CHECK_OK(ray_actor_create(&plain_pinger, NULL, 0, NULL, &a));
  for (int i = 0; i < 5; i++) CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r[n++]));
  wait_all(r, n);

  char *text = summary_text();
  summary_row rows[16];
  size_t nrows = parse_summary(text, rows, 16);
  assert_int_equal(nrows, 6);
  struct {
    const char *name, *kind;
    unsigned long long count, failed, cancelled;
  } want[] = {{"alpha", "task", 12, 0, 0},
              {"beta", "task", 3, 3, 0},
              {"flaky", "task", 3, 2, 0},
              {"gamma", "task", 1, 0, 1},
              {"Pinger.ping", "actor.method", 5, 0, 0},
              {"Pinger", "actor.on_start", 1, 0, 0}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const summary_row *w = row_named(rows, nrows, want[i].name);
    assert_string_equal(w->kind, want[i].kind);
    assert_int_equal(w->count, want[i].count);
    assert_int_equal(w->failed, want[i].failed);
    assert_int_equal(w->cancelled, want[i].cancelled);
  }
  /* durations: only their consistency (values are printed to 3 digits) */
  for (size_t i = 0; i < nrows; i++) {
    const summary_row *w = &rows[i];
    assert_true(w->p50 <= w->p99 * 1.001 + 1);
    assert_true(w->p99 <= w->total * 1.001 + 1);
    assert_true(w->mean <= w->total * 1.001 + 1);
    double err = w->mean * (double)w->count - w->total;
    if (err < 0) err = -err;
    assert_true(err <= w->total * 0.01 + (double)w->count * 1e3);      /* mean = total / count */
    if (i > 0) assert_true(rows[i - 1].total * 1.001 + 1 >= w->total); /* by total */
  }
  /* the header line counts them all */
  assert_non_null(strstr(text, "25 slices"));
  assert_non_null(strstr(text, "5 failed, 1 cancelled, 0 events dropped"));
  free(text);
  release_all(r, n);
  ray_actor_release(a);
  CHECK_OK(ray_shutdown());
  unlink(path);
}

static void test_summary_of_an_empty_timeline_is_a_header_only(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".json");
  init_with(path, 1);
  char *text = summary_text();
  summary_row rows[2];
  assert_int_equal(parse_summary(text, rows, 2), 0);
  assert_non_null(strstr(text, "0 slices on 1 lanes")); /* the worker's, idle */
  free(text);
  CHECK_OK(ray_shutdown());
  char *json = slurp(path);
  assert_true(json_valid(json));
  free(json);
  unlink(path);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_calls_without_a_runtime_fail_eshutdown(void **state) {
  (void)state;
  assert_int_equal(ray_timeline_write("/tmp/x.json"), RAY_ESHUTDOWN);
  assert_error_contains("ray_timeline_write: the runtime is not running");
  assert_int_equal(ray_timeline_summary(stderr), RAY_ESHUTDOWN);
  assert_error_contains("ray_timeline_summary: the runtime is not running");
}

static void test_bad_paths_and_streams_fail_einval_or_eio(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".json");
  init_with(path, 1);
  assert_int_equal(ray_timeline_write(NULL), RAY_EINVAL);
  assert_error_contains("ray_timeline_write: path is NULL");
  assert_int_equal(ray_timeline_write(""), RAY_EINVAL);
  assert_error_contains("ray_timeline_write: path is empty");
  assert_int_equal(ray_timeline_write("/nonexistent-dir/t.html"), RAY_EIO);
  assert_error_contains("ray_timeline_write: cannot write the timeline to "
                        "'/nonexistent-dir/t.html': No such file or directory");
  /* a write error past the open: a full device */
  if (access("/dev/full", W_OK) == 0) {
    assert_int_equal(ray_timeline_write("/dev/full"), RAY_EIO);
    assert_error_contains("cannot write the timeline to '/dev/full': No space left on device");
  }
  assert_int_equal(ray_timeline_summary(NULL), RAY_EINVAL);
  assert_error_contains("ray_timeline_summary: out is NULL");
  FILE *full = fopen("/dev/full", "w");
  if (full) {
    assert_int_equal(ray_timeline_summary(full), RAY_EIO);
    assert_error_contains("ray_timeline_summary: cannot write the summary");
    fclose(full);
  }
  CHECK_OK(ray_shutdown());
  unlink(path);
}

static void test_calls_with_the_timeline_off_say_how_to_turn_it_on(void **state) {
  (void)state;
  unsetenv("RAY_TIMELINE");
  unsetenv("RAY_TIMELINE_SUMMARY");
  init_with(NULL, 1);
  assert_int_equal(ray_timeline_write("/tmp/never.json"), RAY_EINVAL);
  assert_error_contains("ray_timeline_write: the timeline is off; turn it on before ray_init with "
                        "ray_config.timeline_path, RAY_TIMELINE=PATH or RAY_TIMELINE_SUMMARY=1");
  assert_int_equal(access("/tmp/never.json", F_OK), -1);
  assert_int_equal(ray_timeline_summary(stdout), RAY_EINVAL);
  assert_error_contains("ray_timeline_summary: the timeline is off");
  CHECK_OK(ray_shutdown());
}

static void test_no_memory_for_the_snapshot_fails_enomem(void **state) {
  (void)state;
  char path[64], out[64];
  tmp_path(path, sizeof path, ".json");
  tmp_path(out, sizeof out, ".json");
  init_with(path, 1);
  ray_ref *r = submit_named(work, "work", 0);
  wait_all(&r, 1);
  ray_ref_release(r);
  /* each of the snapshot's allocations in turn */
  for (long k = 1; k <= 8; k++) {
    rt_alloc_fail_at(k, true);
    ray_status s = ray_timeline_write(out);
    long failed = rt_alloc_failed();
    rt_alloc_fail_at(0, false);
    if (!failed) {
      CHECK_OK(s); /* past the last allocation: it succeeds */
      break;
    }
    assert_int_equal(s, RAY_ENOMEM);
    assert_error_contains("ray_timeline_write: out of memory taking the timeline's snapshot");
  }
  rt_alloc_fail_at(1, true);
  assert_int_equal(ray_timeline_summary(stderr), RAY_ENOMEM);
  rt_alloc_fail_at(0, false);
  CHECK_OK(ray_shutdown());
  unlink(path);
  unlink(out);
}

static void test_summary_variable_must_be_0_or_1(void **state) {
  (void)state;
  setenv("RAY_TIMELINE_SUMMARY", "yes", 1);
  ray_config cfg;
  ray_config_init(&cfg);
  assert_int_equal(ray_init(&cfg), RAY_EINVAL);
  assert_error_contains("ray_init: RAY_TIMELINE_SUMMARY='yes' is not 0 or 1");
  assert_false(ray_is_initialized());
  setenv("RAY_TIMELINE_SUMMARY", "0", 1); /* off, and no file: the timeline is off */
  CHECK_OK(ray_init(&cfg));
  assert_int_equal(ray_timeline_summary(stdout), RAY_EINVAL);
  CHECK_OK(ray_shutdown());
  unsetenv("RAY_TIMELINE_SUMMARY");
}

/* ------------------------------------------------------------------------ */
/* Child processes: the summary at shutdown, the write at exit              */
/* ------------------------------------------------------------------------ */

static const char *g_self; /* argv[0] */

/* The child's side: a small workload, then the end the mode names. */
static int child_main(const char *mode, const char *path) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  cfg.timeline_path = *path ? path : NULL;
  if (ray_init(&cfg) != RAY_OK) {
    fprintf(stderr, "child: ray_init: %s\n", ray_last_error());
    return 3;
  }
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = "child_work";
  ray_ref *r[6];
  for (int i = 0; i < 6; i++)
    if (ray_submit(work, NULL, 0, &o, &r[i]) != RAY_OK) return 4;
  o.name = "child_broken";
  ray_ref *b;
  if (ray_submit(broken, NULL, 0, &o, &b) != RAY_OK) return 4;
  bool ready[6];
  if (ray_wait(r, 6, 6, -1, ready) != RAY_OK || ray_wait(&b, 1, 1, -1, ready) != RAY_OK) return 5;
  if (!strcmp(mode, "shutdown")) {
    for (int i = 0; i < 6; i++) ray_ref_release(r[i]);
    ray_ref_release(b);
    return ray_shutdown() == RAY_OK ? 0 : 6;
  }
  return 0; /* "exit": returns from main, the runtime still running */
}

/* Runs this binary as a child in mode, with RAY_TIMELINE_SUMMARY=summary;
 * returns its exit status and what it wrote on stderr (free it). */
static int run_child(const char *mode, const char *path, const char *summary, char **err) {
  char errpath[64];
  tmp_path(errpath, sizeof errpath, ".err");
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(errpath, O_WRONLY | O_TRUNC);
    if (fd < 0 || dup2(fd, 2) != 2) _exit(100);
    setenv("RAY_TIMELINE_SUMMARY", summary, 1);
    /* The "exit" child leaves on purpose with its runtime running and its
     * refs held: LeakSanitizer would report those, and that is not what
     * this test looks at (the parent's ASan run checks the rest). */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    execl("/proc/self/exe", g_self, "--child", mode, path, (char *)NULL);
    _exit(101);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  *err = slurp(errpath);
  unlink(errpath);
  assert_non_null(*err);
  if (!WIFEXITED(status)) fail_msg("the child did not exit: status %d; stderr:\n%s", status, *err);
  return WEXITSTATUS(status);
}

static void test_exit_without_shutdown_still_writes_the_timeline_and_says_so(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".json");
  unlink(path); /* the child creates it */
  char *err;
  int rc = run_child("exit", path, "0", &err);
  if (rc != 0) fail_msg("child exit status %d; stderr:\n%s", rc, err);
  char want[160];
  snprintf(want, sizeof want,
           "rayc: the program exited without calling ray_shutdown; wrote the timeline so far to "
           "'%s'\n",
           path);
  if (!strstr(err, want)) fail_msg("stderr lacks \"%s\":\n%s", want, err);
  assert_int_equal(count(err, "\n"), 1); /* that one line, nothing else */
  free(err);
  char *text = slurp(path);
  assert_non_null(text);
  if (!json_valid(text)) fail_msg("the at-exit timeline is not valid JSON:\n%.2000s", text);
  assert_int_equal(count(text, "\"name\":\"child_work\""), 6);
  assert_int_equal(count(text, "\"name\":\"child_broken\""), 1);
  free(text);
  unlink(path);
}

static void test_exit_without_shutdown_writes_a_page_and_the_summary(void **state) {
  (void)state;
  char path[64];
  tmp_path(path, sizeof path, ".html");
  char *err;
  int rc = run_child("exit", path, "1", &err);
  if (rc != 0) fail_msg("child exit status %d; stderr:\n%s", rc, err);
  assert_non_null(strstr(err, "without calling ray_shutdown; wrote the timeline so far"));
  summary_row rows[8];
  const char *table = strstr(err, "rayc timeline summary: ");
  assert_non_null(table);
  size_t n = parse_summary(table, rows, 8);
  assert_int_equal(n, 2);
  assert_int_equal(row_named(rows, n, "child_work")->count, 6);
  assert_int_equal(row_named(rows, n, "child_broken")->failed, 1);
  free(err);
  char *html = slurp(path);
  char *data = page_data(html);
  assert_int_equal(page_slices(data, "child_work", NULL, 0), 6);
  assert_non_null(strstr(data, "\"when\":\"at exit (ray_shutdown was not called)\""));
  free(data);
  free(html);
  unlink(path);
}

static void test_exit_without_shutdown_prints_the_summary_alone_and_says_so(void **state) {
  (void)state;
  char *err;
  int rc = run_child("exit", "", "1", &err); /* no file: the summary only */
  if (rc != 0) fail_msg("child exit status %d; stderr:\n%s", rc, err);
  const char *line = "rayc: the program exited without calling ray_shutdown; the timeline's "
                     "summary so far:\nrayc timeline summary: ";
  if (!strstr(err, line)) fail_msg("stderr lacks \"%s\":\n%s", line, err);
  summary_row rows[8];
  assert_int_equal(parse_summary(strstr(err, "rayc timeline summary: "), rows, 8), 2);
  free(err);
}

static void test_summary_variable_prints_the_table_at_shutdown(void **state) {
  (void)state;
  char *err;
  /* no file: RAY_TIMELINE_SUMMARY=1 alone turns the timeline on */
  int rc = run_child("shutdown", "", "1", &err);
  if (rc != 0) fail_msg("child exit status %d; stderr:\n%s", rc, err);
  const char *table = strstr(err, "rayc timeline summary: ");
  if (!table) fail_msg("no summary on stderr:\n%s", err);
  assert_null(strstr(err, "without calling ray_shutdown"));
  summary_row rows[8];
  size_t n = parse_summary(table, rows, 8);
  assert_int_equal(n, 2);
  assert_int_equal(row_named(rows, n, "child_work")->count, 6);
  assert_int_equal(row_named(rows, n, "child_broken")->count, 1);
  assert_int_equal(row_named(rows, n, "child_broken")->failed, 1);
  free(err);
  /* and without the variable, a clean shutdown prints nothing */
  rc = run_child("shutdown", "", "0", &err);
  assert_int_equal(rc, 0);
  assert_string_equal(err, "");
  free(err);
}

int main(int argc, char **argv) {
  g_self = argv[0];
  if (argc == 4 && !strcmp(argv[1], "--child")) return child_main(argv[2], argv[3]);
  /* The tests set what they need; the caller's switches would change it. */
  unsetenv("RAY_TIMELINE");
  unsetenv("RAY_TIMELINE_SUMMARY");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_checker_rejects_broken_json),
      cmocka_unit_test(test_trace_parses_and_holds_every_slice),
      cmocka_unit_test(test_unwritable_timeline_path_is_reported_at_shutdown),
      cmocka_unit_test(test_write_on_demand_holds_what_finished_while_tasks_run),
      cmocka_unit_test(test_writes_race_running_tasks_and_every_file_is_whole),
      cmocka_unit_test(test_html_page_is_self_contained_with_lanes_slices_and_marks),
      cmocka_unit_test(test_page_escapes_what_could_end_its_script_and_bad_utf8),
      cmocka_unit_test(test_summary_counts_a_known_workload_exactly),
      cmocka_unit_test(test_summary_of_an_empty_timeline_is_a_header_only),
      cmocka_unit_test(test_calls_without_a_runtime_fail_eshutdown),
      cmocka_unit_test(test_bad_paths_and_streams_fail_einval_or_eio),
      cmocka_unit_test(test_calls_with_the_timeline_off_say_how_to_turn_it_on),
      cmocka_unit_test(test_no_memory_for_the_snapshot_fails_enomem),
      cmocka_unit_test(test_summary_variable_must_be_0_or_1),
      cmocka_unit_test(test_exit_without_shutdown_still_writes_the_timeline_and_says_so),
      cmocka_unit_test(test_exit_without_shutdown_writes_a_page_and_the_summary),
      cmocka_unit_test(test_exit_without_shutdown_prints_the_summary_alone_and_says_so),
      cmocka_unit_test(test_summary_variable_prints_the_table_at_shutdown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
