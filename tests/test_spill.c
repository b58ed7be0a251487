/*
 * test_spill.c - spilling (issue 11), through the public API only: objects
 * that do not fit in object_store_memory move to disk in LRU order and come
 * back on access, byte-identical; the limit holds at every sampled moment;
 * pinned, viewed, put_owned and refs objects never move; a corrupt or
 * truncated spill file loses only its own objects (RAY_ELOST naming the file
 * and offset); a full disk loses nothing (RAY_ESTOREFULL naming the error);
 * the spill directory's lifetime; counters; the timeline's I/O track.
 *
 * Contents are seeded pseudo-random bytes (pattern_fill in test_util.h), so a
 * test recomputes what an object must hold instead of keeping a copy.
 *
 * Sizes are in MiB throughout. Most tests pass a spill_dir of their own (a
 * fresh empty directory, g_dir) so they can look at the files; the teardown
 * shuts the runtime down and removes that directory with whatever is left.
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

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ray.h"
#include "test_util.h"

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

#define GET_TIMEOUT_MS 60000 /* only a hang reaches it */

/* ------------------------------------------------------------------------ */
/* Harness: a spill directory per test, and state the teardown restores     */
/* ------------------------------------------------------------------------ */

static char g_dir[64]; /* this test's spill_dir (or TMPDIR), empty at start */
static struct rlimit g_saved_fsize;
static bool g_fsize_changed; /* RLIMIT_FSIZE lowered by the disk-full test */
static void (*g_saved_xfsz)(int);

static int setup_dir(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/spilltest-XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

/* Removes path and everything under it (no symlinks are followed). */
static void remove_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      struct stat st;
      if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
        remove_tree(sub);
      else
        unlink(sub);
    }
    closedir(d);
  }
  rmdir(path);
}

/* Puts back the file size limit and SIGXFSZ (the disk-full test lowers
 * them; a failed assertion must not leave them lowered). */
static void restore_fsize(void) {
  if (!g_fsize_changed) return;
  setrlimit(RLIMIT_FSIZE, &g_saved_fsize);
  signal(SIGXFSZ, g_saved_xfsz);
  g_fsize_changed = false;
}

/* Environment variables a test changed, put back by the teardown. */
enum { MAX_ENV = 4 };
static struct {
  const char *name;
  char *old; /* NULL: it was unset */
} g_env[MAX_ENV];
static int g_nenv;

/* Sets (value NULL: unsets) an environment variable until the test ends. */
static void test_setenv(const char *name, const char *value) {
  assert_true(g_nenv < MAX_ENV);
  const char *old = getenv(name);
  g_env[g_nenv].name = name;
  g_env[g_nenv].old = old ? strdup(old) : NULL;
  g_nenv++;
  assert_int_equal(value ? setenv(name, value, 1) : unsetenv(name), 0);
}

static void restore_env(void) {
  while (g_nenv > 0) {
    g_nenv--;
    if (g_env[g_nenv].old)
      setenv(g_env[g_nenv].name, g_env[g_nenv].old, 1);
    else
      unsetenv(g_env[g_nenv].name);
    free(g_env[g_nenv].old);
  }
}

/* Buffers a test allocates, freed by the teardown after ray_shutdown (so
 * also after a failed assertion, and only once no object can use them). */
enum { MAX_BUFS = 8 };
static void *g_bufs[MAX_BUFS];
static int g_nbufs;

static void *test_alloc(size_t n) {
  assert_true(g_nbufs < MAX_BUFS);
  void *p = malloc(n);
  assert_non_null(p);
  g_bufs[g_nbufs++] = p;
  return p;
}

static void stop_sampler(void);

static int teardown_dir(void **state) {
  (void)state;
  restore_fsize();
  stop_sampler();
  int rc = ray_shutdown() == RAY_OK ? 0 : -1;
  while (g_nbufs > 0) free(g_bufs[--g_nbufs]);
  restore_env();
  remove_tree(g_dir);
  return rc;
}

/* Starts the runtime with a memory limit, a put timeout and a spill
 * directory (NULL: the default one). RAY_* variables are not consulted for
 * these fields. */
static void spill_init(int workers, size_t limit, int64_t put_timeout_ms, const char *dir) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = workers;
  cfg.object_store_memory = limit;
  cfg.put_timeout_ms = put_timeout_ms;
  cfg.spill_dir = dir;
  CHECK_OK(ray_init(&cfg));
}

/* Number of spill files (spill-*.bin) in dir; -1 if dir cannot be read. */
static int count_spill_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    n += len > 10 && !strncmp(e->d_name, "spill-", 6) && !strcmp(e->d_name + len - 4, ".bin");
  }
  closedir(d);
  return n;
}

/* Reads a whole file; NULL if it cannot. *n gets the size. */
static unsigned char *slurp(const char *path, size_t *n) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return NULL;
  struct stat st;
  unsigned char *buf = NULL;
  if (fstat(fd, &st) == 0 && (buf = malloc((size_t)st.st_size + 1)) != NULL) {
    size_t got = 0;
    while (got < (size_t)st.st_size) {
      ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
      if (r <= 0) break;
      got += (size_t)r;
    }
    *n = got;
  }
  close(fd);
  return buf;
}

/* Finds the spill file in dir that holds the first `probe` bytes of the
 * object with content seed `seed` (its payload is stored as is), and the
 * payload's offset in it. The test does not assume the record format: it
 * looks for the bytes. False if no file holds them. */
static bool find_payload(const char *dir, uint64_t seed, size_t probe, char *path, size_t cap,
                         size_t *offset) {
  unsigned char *needle = malloc(probe);
  assert_non_null(needle);
  pattern_fill(needle, probe, seed);
  bool found = false;
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "spill-", 6) != 0) continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    size_t n = 0;
    unsigned char *text = slurp(p, &n);
    if (!text) continue;
    unsigned char *at = memmem(text, n, needle, probe);
    if (at) {
      found = true;
      *offset = (size_t)(at - text);
      snprintf(path, cap, "%s", p);
    }
    free(text);
  }
  closedir(d);
  free(needle);
  return found;
}

/* The object's bytes are the stream `seed`, size bytes long, of type t.
 * Fails the test naming what differs. */
static void expect_content(ray_ref *r, const ray_type *t, size_t size, uint64_t seed,
                           const char *what) {
  ray_view v;
  ray_status s = ray_get(r, t, GET_TIMEOUT_MS, &v);
  if (s != RAY_OK) fail_msg("get of %s: %s: %s", what, ray_status_name(s), ray_last_error());
  size_t at = v.size == size ? pattern_mismatch(v.data, size, seed) : 0;
  const ray_type *vt = v.type;
  size_t vsize = v.size;
  ray_view_release(&v);
  if (vsize != size) fail_msg("%s: size %zu, expected %zu", what, vsize, size);
  bool same = vt == t || (vt && !strcmp(vt->name, t->name) && vt->elem_size == t->elem_size);
  if (!same) fail_msg("%s: type '%s', expected '%s'", what, vt ? vt->name : "?", t->name);
  if (at != SIZE_MAX) fail_msg("%s: byte %zu differs from what was put", what, at);
}

/* A put of size bytes of stream seed; fails the test on an error. */
static ray_ref *put_seeded(size_t size, uint64_t seed, const ray_type *t, void *scratch) {
  pattern_fill(scratch, size, seed);
  ray_ref *r = NULL;
  ray_status s = ray_put(scratch, size, t, &r);
  if (s != RAY_OK)
    fail_msg("put of %zu bytes (seed %llu): %s: %s", size, (unsigned long long)seed,
             ray_status_name(s), ray_last_error());
  return r;
}

/* The counters a test pins down, all at once, so a failure shows them all. */
typedef struct counts {
  uint64_t spills, restores;
  size_t bytes_spilled, bytes_in_memory;
  uint64_t spilled_total, restored_total;
} counts;

static void expect_counts(const char *when, counts want) {
  ray_stats s = stats();
  if (s.spills != want.spills || s.restores != want.restores ||
      s.bytes_spilled != want.bytes_spilled || s.bytes_in_memory != want.bytes_in_memory ||
      s.bytes_spilled_total != want.spilled_total || s.bytes_restored_total != want.restored_total)
    fail_msg("%s:\n  spills %llu (want %llu), restores %llu (want %llu),\n"
             "  bytes_spilled %zu (want %zu), bytes_in_memory %zu (want %zu),\n"
             "  bytes_spilled_total %llu (want %llu), bytes_restored_total %llu (want %llu)",
             when, (unsigned long long)s.spills, (unsigned long long)want.spills,
             (unsigned long long)s.restores, (unsigned long long)want.restores, s.bytes_spilled,
             want.bytes_spilled, s.bytes_in_memory, want.bytes_in_memory,
             (unsigned long long)s.bytes_spilled_total, (unsigned long long)want.spilled_total,
             (unsigned long long)s.bytes_restored_total, (unsigned long long)want.restored_total);
}

/* A 64-bit digest of an object's words, the same in a task, an actor
 * method and the test. */
static uint64_t digest(const void *data, size_t size, uint64_t h) {
  const unsigned char *p = data;
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3u;
  }
  return h;
}

/* ------------------------------------------------------------------------ */
/* 1. Many times the limit through the store, read back in random order     */
/* ------------------------------------------------------------------------ */

#if defined(RT_TEST_SANITIZED)
enum { BIG_N = 20 };
#define BIG_LIMIT (15 * MIB) /* 160 MiB through 15 */
#else
enum { BIG_N = 100 };
#define BIG_LIMIT (75 * MIB) /* 800 MiB through 75 */
#endif
#define BIG_OBJ (8 * MIB)

/* A thread that samples ray_stats in a loop and records every moment the
 * limit was exceeded. It never calls a cmocka assert: the test checks what
 * it recorded after joining it. */
typedef struct sampler {
  pthread_t thread;
  _Atomic int stop;
  bool running;
  uint64_t samples, over;
  size_t worst, limit;
  ray_status error;
} sampler;
static sampler g_sampler;

static void *sample_loop(void *arg) {
  sampler *sm = arg;
  while (!atomic_load(&sm->stop)) {
    ray_stats s;
    ray_status st = ray_stats_get(&s);
    if (st != RAY_OK) {
      sm->error = st;
      break;
    }
    sm->samples++;
    sm->limit = s.memory_limit;
    if (s.bytes_in_memory > s.memory_limit) {
      sm->over++;
      if (s.bytes_in_memory > sm->worst) sm->worst = s.bytes_in_memory;
    }
  }
  return NULL;
}

static void start_sampler(void) {
  memset(&g_sampler, 0, sizeof g_sampler);
  assert_int_equal(pthread_create(&g_sampler.thread, NULL, sample_loop, &g_sampler), 0);
  g_sampler.running = true;
}

/* Joins the sampler if it runs (also from the teardown, after a failure). */
static void stop_sampler(void) {
  if (!g_sampler.running) return;
  atomic_store(&g_sampler.stop, 1);
  pthread_join(g_sampler.thread, NULL);
  g_sampler.running = false;
}

static void test_many_times_the_limit_reads_back_byte_identical_in_random_order(void **state) {
  (void)state;
  spill_init(2, BIG_LIMIT, 2000, g_dir);
  start_sampler();
  unsigned char *scratch = test_alloc(BIG_OBJ);
  ray_ref *refs[BIG_N];
  for (int i = 0; i < BIG_N; i++) {
    if (i % 2 == 0) { /* even objects by copy, odd ones written in place */
      refs[i] = put_seeded(BIG_OBJ, 1000 + (uint64_t)i, &ray_type_bytes, scratch);
    } else {
      void *data;
      ray_status s = ray_create(BIG_OBJ, &ray_type_bytes, &data, &refs[i]);
      if (s != RAY_OK)
        fail_msg("ray_create of object %d (%zu MiB already put, limit %zu MiB): %s: %s", i,
                 (size_t)i * BIG_OBJ / MIB, BIG_LIMIT / MIB, ray_status_name(s), ray_last_error());
      pattern_fill(data, BIG_OBJ, 1000 + (uint64_t)i);
      CHECK_OK(ray_seal(refs[i]));
    }
    ray_stats s = stats();
    if (s.bytes_in_memory > BIG_LIMIT)
      fail_msg("after put %d: %zu bytes in memory, limit %zu", i, s.bytes_in_memory, BIG_LIMIT);
  }

  /* Before any read, every object is in exactly one place, and what is on
   * disk was written exactly once. */
  ray_stats s0 = stats();
  const size_t fit = BIG_LIMIT / BIG_OBJ;
  assert_int_equal(s0.bytes_in_memory + s0.bytes_spilled, (size_t)BIG_N * BIG_OBJ);
  assert_true(s0.bytes_in_memory <= fit * BIG_OBJ);
  assert_int_equal(s0.bytes_spilled_total, s0.bytes_spilled);
  assert_int_equal(s0.spills * BIG_OBJ, s0.bytes_spilled_total);
  assert_int_equal(s0.restores, 0);
  assert_true(s0.spills >= BIG_N - fit);
  assert_int_equal(s0.objects, BIG_N);

  /* Read back in a random (seeded) order. */
  int order[BIG_N];
  for (int i = 0; i < BIG_N; i++) order[i] = i;
  uint64_t rng = 42;
  for (int i = BIG_N - 1; i > 0; i--) {
    rng = pattern_word(rng, 7);
    int j = (int)(rng % (uint64_t)(i + 1));
    int t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (int k = 0; k < BIG_N; k++) {
    int i = order[k];
    char what[64];
    snprintf(what, sizeof what, "object %d (read %d of %d)", i, k + 1, BIG_N);
    expect_content(refs[i], &ray_type_bytes, BIG_OBJ, 1000 + (uint64_t)i, what);
  }
  stop_sampler();
  if (g_sampler.error != RAY_OK)
    fail_msg("the sampler's ray_stats_get failed: %s", ray_status_name(g_sampler.error));
  if (g_sampler.over)
    fail_msg("the limit of %zu bytes was exceeded at %llu of %llu samples (worst %zu)",
             g_sampler.limit, (unsigned long long)g_sampler.over,
             (unsigned long long)g_sampler.samples, g_sampler.worst);
  assert_true(g_sampler.samples > 0);

  /* Each object that was on disk when the reads began was restored (at
   * least) once; every restore read one whole object. */
  ray_stats s1 = stats();
  assert_true(s1.restores >= s0.bytes_spilled / BIG_OBJ);
  assert_int_equal(s1.bytes_restored_total, s1.restores * BIG_OBJ);
  assert_true(s1.bytes_spilled_total <= s1.spills * BIG_OBJ); /* a re-spill writes nothing */
  assert_true(s1.bytes_in_memory <= BIG_LIMIT);

  for (int i = 0; i < BIG_N; i++) ray_ref_release(refs[i]);
  ray_stats s2 = stats();
  assert_int_equal(s2.objects, 0);
  assert_int_equal(s2.bytes_in_memory, 0);
  assert_int_equal(s2.bytes_spilled, 0);
  /* Files whose objects are all freed are deleted; the one being appended
   * to may stay until shutdown. */
  int files = count_spill_files(g_dir);
  if (files > 1) fail_msg("%d spill files left in %s after every object was freed", files, g_dir);
}

/* ------------------------------------------------------------------------ */
/* 2. What never moves                                                      */
/* ------------------------------------------------------------------------ */

#if defined(RT_TEST_SANITIZED)
#define FIXED_LIMIT (16 * MIB)
#else
#define FIXED_LIMIT (32 * MIB)
#endif

static void test_viewed_pinned_owned_and_refs_objects_never_move(void **state) {
  (void)state;
  spill_init(2, FIXED_LIMIT, 2000, g_dir);
  unsigned char *scratch = test_alloc(4 * MIB);

  ray_ref *a = put_seeded(4 * MIB, 1, &ray_type_bytes, scratch); /* viewed */
  ray_view va;
  CHECK_OK(ray_get(a, NULL, 0, &va));
  const void *pa = va.data;

  ray_ref *b = put_seeded(4 * MIB, 2, &ray_type_bytes, scratch); /* pinned */
  CHECK_OK(ray_pin(b));
  ray_view vb;
  CHECK_OK(ray_get(b, NULL, 0, &vb));
  const void *pb = vb.data;
  ray_view_release(&vb);

  unsigned char *owned = test_alloc(2 * MIB); /* adopted, the caller keeps it (free_fn NULL) */
  pattern_fill(owned, 2 * MIB, 3);
  ray_ref *c;
  CHECK_OK(ray_put_owned(owned, 2 * MIB, &ray_type_bytes, NULL, &c));

  ray_ref *kids[16]; /* a refs object of 128 bytes: out of line, never spilled */
  for (int i = 0; i < 16; i++) kids[i] = a;
  ray_ref *list;
  CHECK_OK(ray_put_refs(kids, 16, &list));
  ray_view vl;
  CHECK_OK(ray_get(list, &ray_type_refs, 0, &vl));
  const void *pl = vl.data;
  ray_view_release(&vl);

  /* Ten times the limit in 2 MiB objects, all kept: only these can move. */
  enum { JUNK = (int)(10 * FIXED_LIMIT / (2 * MIB)) };
  ray_ref *junk[JUNK];
  for (int i = 0; i < JUNK; i++) {
    pattern_fill(scratch, 2 * MIB, 100 + (uint64_t)i);
    ray_status s = ray_put(scratch, 2 * MIB, NULL, &junk[i]);
    if (s != RAY_OK)
      fail_msg("junk put %d of %d: %s: %s", i, JUNK, ray_status_name(s), ray_last_error());
  }
  ray_stats s = stats();
  assert_true(s.spills >= (uint64_t)JUNK - FIXED_LIMIT / (2 * MIB));
  assert_int_equal(s.bytes_pinned, 4 * MIB);

  /* A's view: same pointer, same bytes. */
  assert_ptr_equal(va.data, pa);
  assert_int_equal(pattern_mismatch(va.data, 4 * MIB, 1), SIZE_MAX);
  /* B, pinned: a get gives the very same buffer. */
  CHECK_OK(ray_get(b, NULL, 0, &vb));
  assert_ptr_equal(vb.data, pb);
  assert_int_equal(pattern_mismatch(vb.data, 4 * MIB, 2), SIZE_MAX);
  ray_view_release(&vb);
  /* C: still the caller's buffer, never copied out and back. */
  ray_view vc;
  CHECK_OK(ray_get(c, NULL, 0, &vc));
  assert_ptr_equal(vc.data, owned);
  ray_view_release(&vc);
  /* The refs object: same buffer. */
  CHECK_OK(ray_get(list, &ray_type_refs, 0, &vl));
  assert_ptr_equal(vl.data, pl);
  assert_ptr_equal(((ray_ref *const *)vl.data)[15], a);
  ray_view_release(&vl);

  /* Once free to move, A and B spill and come back intact. */
  ray_view_release(&va);
  CHECK_OK(ray_unpin(b));
  ray_ref *more[JUNK];
  for (int i = 0; i < JUNK; i++) more[i] = put_seeded(2 * MIB, 500 + (uint64_t)i, NULL, scratch);
  expect_content(a, &ray_type_bytes, 4 * MIB, 1, "A after its view was released");
  expect_content(b, &ray_type_bytes, 4 * MIB, 2, "B after it was unpinned");
  expect_content(junk[0], &ray_type_bytes, 2 * MIB, 100, "the first junk object");

  for (int i = 0; i < JUNK; i++) {
    ray_ref_release(junk[i]);
    ray_ref_release(more[i]);
  }
  ray_ref_release(list);
  ray_ref_release(a);
  ray_ref_release(b);
  ray_ref_release(c);
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */
/* 3. Exact counts                                                          */
/* ------------------------------------------------------------------------ */

#if defined(RT_TEST_SANITIZED)
#define C_OBJ (5 * MIB)
#else
#define C_OBJ (50 * MIB)
#endif
#define C_LIMIT (2 * C_OBJ) /* exactly two objects */

static void test_exact_spill_and_restore_counts_of_four_objects_in_room_for_two(void **state) {
  (void)state;
  spill_init(2, C_LIMIT, 2000, g_dir);
  unsigned char *scratch = test_alloc(C_OBJ);
  ray_ref *o[5]; /* o[1] .. o[4], as the comments number them */

  /* Objects 1 and 2 fit: nothing moves. */
  o[1] = put_seeded(C_OBJ, 1, &ray_type_bytes, scratch);
  o[2] = put_seeded(C_OBJ, 2, &ray_type_bytes, scratch);
  expect_counts("after puts 1 and 2", (counts){0, 0, 0, 2 * C_OBJ, 0, 0});

  /* Put 3 needs room: the least recently used object, 1, goes to disk. */
  o[3] = put_seeded(C_OBJ, 3, &ray_type_bytes, scratch);
  expect_counts("after put 3", (counts){1, 0, C_OBJ, 2 * C_OBJ, C_OBJ, 0});

  /* Put 4: then 2 is the least recently used; it goes. */
  o[4] = put_seeded(C_OBJ, 4, &ray_type_bytes, scratch);
  expect_counts("after put 4", (counts){2, 0, 2 * C_OBJ, 2 * C_OBJ, 2 * C_OBJ, 0});

  /* Get 1: restoring it needs room, so 3 (least recently used of 3 and 4)
   * is spilled first. 1 keeps its disk copy: on disk now 1, 2, 3. */
  ray_view v;
  CHECK_OK(ray_get(o[1], &ray_type_bytes, GET_TIMEOUT_MS, &v));
  assert_int_equal(v.size, C_OBJ);
  assert_int_equal(pattern_mismatch(v.data, C_OBJ, 1), SIZE_MAX);
  expect_counts("after get 1", (counts){3, 1, 3 * C_OBJ, 2 * C_OBJ, 3 * C_OBJ, C_OBJ});
  ray_view_release(&v);

  /* Get 3: in memory are 4 (used at its put) and 1 (used since, by the
   * get): 4 is spilled (written: it never was), 3 restored. */
  expect_content(o[3], &ray_type_bytes, C_OBJ, 3, "object 3");
  expect_counts("after get 3", (counts){4, 2, 4 * C_OBJ, 2 * C_OBJ, 4 * C_OBJ, 2 * C_OBJ});

  /* Get 2: in memory are 1 and 3; 1 is the older. It still has its disk
   * copy, so spilling it again writes nothing: spills grows, the bytes
   * written do not. */
  expect_content(o[2], &ray_type_bytes, C_OBJ, 2, "object 2");
  expect_counts("after get 2", (counts){5, 3, 4 * C_OBJ, 2 * C_OBJ, 4 * C_OBJ, 3 * C_OBJ});

  /* Releasing gives back what each held: 1 is only on disk; 2 is in memory
   * and on disk; 3 too; 4 only on disk. */
  ray_ref_release(o[1]);
  expect_counts("after release 1", (counts){5, 3, 3 * C_OBJ, 2 * C_OBJ, 4 * C_OBJ, 3 * C_OBJ});
  ray_ref_release(o[2]);
  expect_counts("after release 2", (counts){5, 3, 2 * C_OBJ, C_OBJ, 4 * C_OBJ, 3 * C_OBJ});
  ray_ref_release(o[3]);
  expect_counts("after release 3", (counts){5, 3, C_OBJ, 0, 4 * C_OBJ, 3 * C_OBJ});
  ray_ref_release(o[4]);
  expect_counts("after release 4", (counts){5, 3, 0, 0, 4 * C_OBJ, 3 * C_OBJ});
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */
/* 4. Integrity                                                             */
/* ------------------------------------------------------------------------ */

enum { FUSED_N = 8 };
#define FUSED_OBJ (100 * KIB)
#define FUSED_LIMIT (1 * MIB)

/* Puts FUSED_N objects of 100 KiB (seeds 1..FUSED_N) into a 1 MiB store,
 * then pushes them all to disk with a put of the whole limit, which is then
 * released: memory is empty and every object is on disk, in one batch of
 * small records (so in one file). */
static void put_fused(ray_ref **refs) {
  spill_init(2, FUSED_LIMIT, 2000, g_dir);
  unsigned char *scratch = test_alloc(FUSED_LIMIT);
  for (int i = 0; i < FUSED_N; i++)
    refs[i] = put_seeded(FUSED_OBJ, 1 + (uint64_t)i, &ray_type_bytes, scratch);
  ray_ref *filler = put_seeded(FUSED_LIMIT, 99, &ray_type_bytes, scratch);
  ray_ref_release(filler);
  ray_stats s = stats();
  assert_int_equal(s.bytes_in_memory, 0);
  assert_int_equal(s.bytes_spilled, FUSED_N * FUSED_OBJ);
  assert_int_equal(s.spills, FUSED_N);
}

static void test_a_flipped_byte_loses_that_object_only(void **state) {
  (void)state;
  ray_ref *refs[FUSED_N];
  put_fused(refs);
  char path2[4096], path5[4096];
  size_t off2, off5;
  assert_true(find_payload(g_dir, 3, 256, path2, sizeof path2, &off2)); /* object 2 */
  assert_true(find_payload(g_dir, 6, 256, path5, sizeof path5, &off5)); /* object 5 */
  assert_string_equal(path2, path5);                                    /* fused: one file */

  /* Flip one byte in the middle of object 2's payload. */
  int fd = open(path2, O_RDWR);
  assert_true(fd >= 0);
  unsigned char byte;
  assert_int_equal(pread(fd, &byte, 1, (off_t)(off2 + FUSED_OBJ / 2)), 1);
  byte ^= 0x20;
  assert_int_equal(pwrite(fd, &byte, 1, (off_t)(off2 + FUSED_OBJ / 2)), 1);
  close(fd);

  ray_view v = {0};
  assert_int_equal(ray_get(refs[2], NULL, GET_TIMEOUT_MS, &v), RAY_ELOST);
  assert_null(v.data);
  assert_error_contains(g_dir);    /* the spill file's path ... */
  assert_error_contains("offset"); /* ... and where in it */
  /* Still lost on a second try (no half-restored object). */
  assert_int_equal(ray_get(refs[2], NULL, GET_TIMEOUT_MS, &v), RAY_ELOST);

  /* Every other object of the same file restores intact. */
  for (int i = 0; i < FUSED_N; i++) {
    if (i == 2) continue;
    char what[32];
    snprintf(what, sizeof what, "object %d", i);
    expect_content(refs[i], &ray_type_bytes, FUSED_OBJ, 1 + (uint64_t)i, what);
  }
  /* A failed restore is not a restore. */
  assert_int_equal(stats().restores, FUSED_N - 1);
  for (int i = 0; i < FUSED_N; i++) ray_ref_release(refs[i]);
  ray_stats s = stats();
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.bytes_spilled, 0);
  assert_int_equal(s.bytes_in_memory, 0);
}

static void test_a_truncated_spill_file_loses_only_what_was_cut(void **state) {
  (void)state;
  ray_ref *refs[FUSED_N];
  put_fused(refs);
  /* Find the object stored last in the file and cut the file in the middle
   * of its payload. */
  char path[4096], p[4096];
  size_t off, last_off = 0;
  int last = -1;
  for (int i = 0; i < FUSED_N; i++) {
    assert_true(find_payload(g_dir, 1 + (uint64_t)i, 256, p, sizeof p, &off));
    if (last < 0 || off > last_off) {
      last = i;
      last_off = off;
      snprintf(path, sizeof path, "%s", p);
    }
  }
  assert_int_equal(truncate(path, (off_t)(last_off + FUSED_OBJ / 2)), 0);

  ray_view v;
  assert_int_equal(ray_get(refs[last], NULL, GET_TIMEOUT_MS, &v), RAY_ELOST);
  assert_error_contains(g_dir);
  assert_error_contains("offset");
  for (int i = 0; i < FUSED_N; i++) {
    if (i == last) continue;
    char what[32];
    snprintf(what, sizeof what, "object %d", i);
    expect_content(refs[i], &ray_type_bytes, FUSED_OBJ, 1 + (uint64_t)i, what);
  }
  for (int i = 0; i < FUSED_N; i++) ray_ref_release(refs[i]);
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */
/* 5. A full disk loses nothing                                             */
/* ------------------------------------------------------------------------ */

#define FULL_LIMIT (8 * MIB)
#define FULL_OBJ (1 * MIB)
#define FULL_FSIZE (3 * MIB) /* room for about two spilled objects */
enum { FULL_MAX = 64 };

static void test_a_full_disk_fails_the_put_and_loses_nothing(void **state) {
  (void)state;
  spill_init(2, FULL_LIMIT, 500, g_dir);
  unsigned char *scratch = test_alloc(FULL_OBJ);
  ray_ref *refs[FULL_MAX];
  int n = 0;
  for (; n < (int)(FULL_LIMIT / FULL_OBJ); n++)
    refs[n] = put_seeded(FULL_OBJ, 1 + (uint64_t)n, &ray_type_bytes, scratch);
  assert_int_equal(stats().spills, 0);

  /* From here spill files cannot grow past 3 MiB: writes past it fail with
   * EFBIG ("File too large"), as on a full disk. Nothing below asserts until
   * the limit is back (the teardown restores it too). */
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &g_saved_fsize), 0);
  g_saved_xfsz = signal(SIGXFSZ, SIG_IGN);
  g_fsize_changed = true;
  struct rlimit low = g_saved_fsize;
  low.rlim_cur = FULL_FSIZE;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
  ray_status failed = RAY_OK;
  char message[512] = "";
  for (; n < FULL_MAX; n++) {
    pattern_fill(scratch, FULL_OBJ, 1 + (uint64_t)n);
    failed = ray_put(scratch, FULL_OBJ, &ray_type_bytes, &refs[n]);
    if (failed != RAY_OK) {
      snprintf(message, sizeof message, "%s", ray_last_error());
      break;
    }
  }
  restore_fsize();

  if (failed == RAY_OK)
    fail_msg("%d puts of 1 MiB through an 8 MiB store with 3 MiB of disk all succeeded", n);
  if (failed != RAY_ESTOREFULL)
    fail_msg("the put with no room failed %s, not RAY_ESTOREFULL: %s", ray_status_name(failed),
             message);
  if (!strstr(message, strerror(EFBIG)))
    fail_msg("the RAY_ESTOREFULL message lacks the I/O error \"%s\": %s", strerror(EFBIG), message);
  ray_stats s = stats();
  assert_int_equal(s.objects, (uint64_t)n); /* the failed put left nothing */
  assert_true(s.bytes_in_memory <= FULL_LIMIT);
  assert_int_equal(s.bytes_in_memory + s.bytes_spilled, (size_t)n * FULL_OBJ);

  /* Everything put before reads back, byte-identical. */
  for (int i = 0; i < n; i++) {
    char what[32];
    snprintf(what, sizeof what, "object %d", i);
    expect_content(refs[i], &ray_type_bytes, FULL_OBJ, 1 + (uint64_t)i, what);
  }
  /* With the disk back, puts spill again. */
  ray_ref *after = put_seeded(FULL_OBJ, 777, &ray_type_bytes, scratch);
  expect_content(after, &ray_type_bytes, FULL_OBJ, 777, "the put after the disk came back");
  ray_ref_release(after);
  for (int i = 0; i < n; i++) ray_ref_release(refs[i]);
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */
/* 6. Gets from 8 threads while another thread puts                         */
/* ------------------------------------------------------------------------ */

#if defined(RT_TEST_SANITIZED)
enum { MT_BASE = 32, MT_PUTS = 32, MT_ROUNDS = 12 };
#define MT_LIMIT (16 * MIB)
#else
enum { MT_BASE = 64, MT_PUTS = 64, MT_ROUNDS = 48 };
#define MT_LIMIT (32 * MIB)
#endif
#define MT_OBJ (1 * MIB)
enum { MT_GETTERS = 8 };

typedef struct mt_thread {
  pthread_t thread;
  int index;
  ray_ref **base;
  ray_ref *puts[MT_PUTS];
  ray_status error;
  char message[256];
} mt_thread;
static _Atomic int g_mt_done;

static void *mt_getter(void *arg) {
  mt_thread *t = arg;
  uint64_t rng = 7 + (uint64_t)t->index;
  for (int r = 0; r < MT_ROUNDS && t->error == RAY_OK; r++) {
    rng = pattern_word(rng, 3);
    int i = (int)(rng % MT_BASE);
    ray_view v;
    ray_status s = ray_get(t->base[i], &ray_type_bytes, GET_TIMEOUT_MS, &v);
    if (s != RAY_OK) {
      t->error = s;
      snprintf(t->message, sizeof t->message, "get of object %d: %s", i, ray_last_error());
      break;
    }
    size_t at = v.size == MT_OBJ ? pattern_mismatch(v.data, MT_OBJ, 1 + (uint64_t)i) : 0;
    ray_view_release(&v);
    if (at != SIZE_MAX) {
      t->error = RAY_ELOST;
      snprintf(t->message, sizeof t->message, "object %d: byte %zu differs", i, at);
    }
  }
  atomic_fetch_add(&g_mt_done, 1);
  return NULL;
}

static void *mt_putter(void *arg) {
  mt_thread *t = arg;
  unsigned char *scratch = malloc(MT_OBJ);
  for (int i = 0; i < MT_PUTS && scratch; i++) {
    pattern_fill(scratch, MT_OBJ, 5000 + (uint64_t)i);
    ray_status s = ray_put(scratch, MT_OBJ, &ray_type_bytes, &t->puts[i]);
    if (s != RAY_OK) {
      t->error = s;
      snprintf(t->message, sizeof t->message, "put %d: %s", i, ray_last_error());
      break;
    }
  }
  if (!scratch) t->error = RAY_ENOMEM;
  free(scratch);
  atomic_fetch_add(&g_mt_done, 1);
  return NULL;
}

static void test_gets_from_eight_threads_while_another_puts_do_not_deadlock(void **state) {
  (void)state;
  spill_init(2, MT_LIMIT, 5000, g_dir);
  unsigned char *scratch = test_alloc(MT_OBJ);
  ray_ref *base[MT_BASE];
  for (int i = 0; i < MT_BASE; i++)
    base[i] = put_seeded(MT_OBJ, 1 + (uint64_t)i, &ray_type_bytes, scratch);
  assert_true(stats().bytes_spilled > 0);

  static mt_thread threads[MT_GETTERS + 1];
  memset(threads, 0, sizeof threads);
  atomic_store(&g_mt_done, 0);
  for (int i = 0; i <= MT_GETTERS; i++) {
    threads[i].index = i;
    threads[i].base = base;
    assert_int_equal(pthread_create(&threads[i].thread, NULL,
                                    i < MT_GETTERS ? mt_getter : mt_putter, &threads[i]),
                     0);
  }
  /* A deadlock would hang the join: bound the wait, and abort (the threads
   * cannot be joined then) with a message rather than hang ctest. */
  for (int ms = 0; atomic_load(&g_mt_done) < MT_GETTERS + 1; ms++) {
    if (ms >= 180000) {
      fprintf(stderr, "test_spill: %d of %d threads still blocked after 180 s: deadlock\n",
              MT_GETTERS + 1 - atomic_load(&g_mt_done), MT_GETTERS + 1);
      abort();
    }
    usleep(1000);
  }
  for (int i = 0; i <= MT_GETTERS; i++) pthread_join(threads[i].thread, NULL);
  for (int i = 0; i <= MT_GETTERS; i++)
    if (threads[i].error != RAY_OK)
      fail_msg("thread %d: %s: %s", i, ray_status_name(threads[i].error), threads[i].message);
  ray_stats s = stats();
  assert_true(s.restores > 0);
  assert_true(s.bytes_in_memory <= MT_LIMIT);
  for (int i = 0; i < MT_PUTS; i++) {
    char what[32];
    snprintf(what, sizeof what, "put object %d", i);
    expect_content(threads[MT_GETTERS].puts[i], &ray_type_bytes, MT_OBJ, 5000 + (uint64_t)i, what);
    ray_ref_release(threads[MT_GETTERS].puts[i]);
  }
  for (int i = 0; i < MT_BASE; i++) ray_ref_release(base[i]);
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */
/* 7. Tasks and actor methods on spilled arguments                          */
/* ------------------------------------------------------------------------ */

#define ARG_OBJ (5 * MIB)
#define ARG_LIMIT (16 * MIB)

/* A task: the digest of its i64 arguments, in order. */
static ray_status digest_args(ray_ctx *ctx) {
  uint64_t h = 0xcbf29ce484222325u;
  for (size_t i = 0; i < ray_ctx_nargs(ctx); i++) {
    ray_view v;
    ray_status s = ray_ctx_arg(ctx, i, &ray_type_i64, &v);
    if (s != RAY_OK) return s;
    h = digest(v.data, v.size, h);
  }
  int64_t out = (int64_t)h;
  return ray_ctx_return(ctx, 0, &out, sizeof out, &ray_type_i64);
}

static ray_status digest_method(void *state, ray_ctx *ctx) {
  ++*(int64_t *)state;
  return digest_args(ctx);
}
static const ray_method digest_methods[] = {{"digest", digest_method}};
static const ray_actor_class Digester = {"Digester", sizeof(int64_t), NULL,
                                         NULL,       digest_methods,  1};

/* A task: returns 6 MiB of stream 77 (needs room in a full store). */
static ray_status make_six(ray_ctx *ctx) {
  unsigned char *buf = malloc(6 * MIB);
  if (!buf) return RAY_ENOMEM;
  pattern_fill(buf, 6 * MIB, 77);
  ray_status s = ray_ctx_return(ctx, 0, buf, 6 * MIB, &ray_type_bytes);
  free(buf);
  return s;
}

/* Pushes everything spillable out with a put of the whole limit, released
 * at once: memory is empty afterwards. */
static void push_all_out(void) {
  void *data;
  ray_ref *filler;
  CHECK_OK(ray_create(ARG_LIMIT, NULL, &data, &filler));
  memset(data, 1, ARG_LIMIT);
  CHECK_OK(ray_seal(filler));
  ray_ref_release(filler);
  assert_int_equal(stats().bytes_in_memory, 0);
}

static void test_tasks_and_actor_methods_read_spilled_arguments(void **state) {
  (void)state;
  spill_init(2, ARG_LIMIT, 2000, g_dir);
  unsigned char *scratch = test_alloc(ARG_OBJ);
  ray_ref *x[3];
  uint64_t want = 0xcbf29ce484222325u;
  for (int i = 0; i < 3; i++) {
    x[i] = put_seeded(ARG_OBJ, 11 + (uint64_t)i, &ray_type_i64, scratch); /* i64: type kept */
    want = digest(scratch, ARG_OBJ, want);
  }
  push_all_out();
  assert_int_equal(stats().bytes_spilled, 3 * ARG_OBJ);
  uint64_t restores0 = stats().restores;

  /* A spilled object is ready: ray_wait says so. */
  bool ready[3];
  CHECK_OK(ray_wait(x, 3, 3, 0, ready));
  assert_true(ready[0] && ready[1] && ready[2]);

  /* A task on three spilled arguments. */
  ray_arg args[3] = {ray_arg_ref(x[0]), ray_arg_ref(x[1]), ray_arg_ref(x[2])};
  ray_ref *r = submit1(digest_args, args, 3, "digest");
  assert_int_equal((uint64_t)get_i64(r), want);
  ray_ref_release(r);
  assert_int_equal(stats().restores - restores0, 3);

  /* Out again (their disk copies stay, so this writes nothing) ... */
  uint64_t written = stats().bytes_spilled_total;
  push_all_out();
  assert_int_equal(stats().bytes_spilled_total, written);
  /* ... and an actor method on the same three. */
  ray_actor *a;
  CHECK_OK(ray_actor_create(&Digester, NULL, 0, NULL, &a));
  ray_ref *m;
  CHECK_OK(ray_actor_call(a, 0, args, 3, &m));
  assert_int_equal((uint64_t)get_i64(m), want);
  ray_ref_release(m);
  assert_int_equal(stats().restores - restores0, 6);

  /* A task return that needs room spills others: the store holds the three
   * (15 MiB of 16) and the 6 MiB return still lands. */
  ray_ref *six = submit1(make_six, NULL, 0, "make_six");
  expect_content(six, &ray_type_bytes, 6 * MIB, 77, "the 6 MiB task return");
  ray_ref_release(six);

  ray_actor_release(a);
  for (int i = 0; i < 3; i++) ray_ref_release(x[i]);
  assert_int_equal(settled_objects(0), 0);
}

static void test_pin_of_a_spilled_object_restores_it_with_its_id_and_type(void **state) {
  (void)state;
  spill_init(2, ARG_LIMIT, 200, g_dir);
  unsigned char *scratch = test_alloc(ARG_OBJ);
  ray_ref *x = put_seeded(ARG_OBJ, 21, &ray_type_i64, scratch);
  char id0[33], id1[33];
  ray_ref_id(x, id0);
  push_all_out();
  ray_stats s0 = stats();
  assert_int_equal(s0.bytes_spilled, ARG_OBJ);
  CHECK_OK(ray_pin(x));
  ray_stats s1 = stats();
  assert_int_equal(s1.restores, s0.restores + 1);
  assert_int_equal(s1.bytes_pinned, ARG_OBJ);
  assert_int_equal(s1.bytes_in_memory, ARG_OBJ);
  ray_ref_id(x, id1);
  assert_string_equal(id0, id1);
  expect_content(x, &ray_type_i64, ARG_OBJ, 21, "the pinned object");
  /* Pinned, it stays: a put of the rest of the limit cannot move it. */
  ray_ref *rest;
  void *data;
  assert_int_equal(ray_create(ARG_LIMIT - ARG_OBJ + 1, NULL, &data, &rest), RAY_ESTOREFULL);
  CHECK_OK(ray_unpin(x));
  ray_ref_release(x);
  assert_int_equal(stats().objects, 0);
}

/* ------------------------------------------------------------------------ */
/* 8. Files and directories                                                 */
/* ------------------------------------------------------------------------ */

static void test_spill_dir_that_cannot_be_created_fails_init_with_eio(void **state) {
  (void)state;
  char file[128], bad[160];
  snprintf(file, sizeof file, "%s/not-a-dir", g_dir);
  int fd = open(file, O_CREAT | O_WRONLY, 0600);
  assert_true(fd >= 0);
  close(fd);
  snprintf(bad, sizeof bad, "%s/spill", file); /* under a regular file */

  ray_config cfg;
  ray_config_init(&cfg);
  cfg.spill_dir = bad;
  assert_int_equal(ray_init(&cfg), RAY_EIO);
  assert_error_contains(bad);
  assert_false(ray_is_initialized());

  /* The same through RAY_SPILL_DIR. */
  test_setenv("RAY_SPILL_DIR", bad);
  assert_int_equal(ray_init(NULL), RAY_EIO);
  assert_error_contains(bad);
  assert_false(ray_is_initialized());

  /* Nothing is left half started: a good directory works at once. */
  char good[160];
  snprintf(good, sizeof good, "%s/good", g_dir);
  spill_init(1, 8 * MIB, RAY_PUT_NO_WAIT, good);
}

/* The default directory of this process under dir: "rayc-<pid>" (also
 * accepted: "rayc-<pid>-<suffix>"). Returns true and its path if present. */
static bool find_default_dir(const char *dir, char *path, size_t cap) {
  char want[32];
  snprintf(want, sizeof want, "rayc-%ld", (long)getpid());
  size_t wl = strlen(want);
  DIR *d = opendir(dir);
  assert_non_null(d);
  bool found = false;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL)
    if (!strncmp(e->d_name, want, wl) && (e->d_name[wl] == '\0' || e->d_name[wl] == '-')) {
      snprintf(path, cap, "%s/%s", dir, e->d_name);
      found = true;
    }
  closedir(d);
  return found;
}

/* TMPDIR points to g_dir and RAY_SPILL_DIR is unset, so that ray_init
 * uses the default name there. */
static void use_default_dir(void) {
  test_setenv("TMPDIR", g_dir);
  test_setenv("RAY_SPILL_DIR", NULL);
}

static void test_default_spill_dir_is_rayc_pid_under_tmpdir_and_removed_at_shutdown(void **state) {
  (void)state;
  use_default_dir();
  spill_init(2, 4 * MIB, 2000, NULL);
  unsigned char *scratch = test_alloc(2 * MIB);
  ray_ref *r[4];
  for (int i = 0; i < 4; i++) r[i] = put_seeded(2 * MIB, 1 + (uint64_t)i, NULL, scratch);
  assert_true(stats().spills >= 2);
  char path[4096];
  if (!find_default_dir(g_dir, path, sizeof path))
    fail_msg("no rayc-%ld directory under TMPDIR=%s while objects are spilled", (long)getpid(),
             g_dir);
  assert_true(count_spill_files(path) >= 1);
  for (int i = 0; i < 4; i++) {
    expect_content(r[i], &ray_type_bytes, 2 * MIB, 1 + (uint64_t)i, "an object");
    ray_ref_release(r[i]);
  }
  assert_int_equal(ray_shutdown(), RAY_OK);
  struct stat st;
  if (stat(path, &st) == 0) fail_msg("%s is still there after ray_shutdown", path);
}

/* A spill_dir of the program's: ray_init creates it (and missing parents)
 * when it does not exist; ray_shutdown deletes the spill files in it, and
 * the directory itself only if ray_init created it. */
static void test_given_spill_dir_is_created_and_removed_only_if_init_made_it(void **state) {
  (void)state;
  char parent[128], made[160], kept[128];
  snprintf(parent, sizeof parent, "%s/new-parent", g_dir);
  snprintf(made, sizeof made, "%s/spill", parent);
  snprintf(kept, sizeof kept, "%s/existing", g_dir);
  assert_int_equal(mkdir(kept, 0700), 0);
  unsigned char *scratch = test_alloc(2 * MIB);
  struct stat st;

  const char *dirs[] = {made, kept};
  for (int d = 0; d < 2; d++) {
    spill_init(1, 4 * MIB, 2000, dirs[d]);
    assert_int_equal(stat(dirs[d], &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    ray_ref *r[4];
    for (int i = 0; i < 4; i++) r[i] = put_seeded(2 * MIB, 1 + (uint64_t)i, NULL, scratch);
    assert_true(stats().spills >= 2);
    assert_true(count_spill_files(dirs[d]) >= 1);
    for (int i = 0; i < 4; i++) ray_ref_release(r[i]);
    assert_int_equal(ray_shutdown(), RAY_OK);
  }
  if (stat(made, &st) == 0) fail_msg("%s, made by ray_init, is still there after shutdown", made);
  assert_int_equal(stat(parent, &st), 0);       /* only the directory itself was made "by init" */
  assert_int_equal(stat(kept, &st), 0);         /* the program's own directory stays, */
  assert_int_equal(count_spill_files(kept), 0); /* without spill files */
}

/* A pid no process has now: downward from the kernel's largest. */
static long dead_pid(void) {
  for (long pid = 4194303; pid > 1; pid--)
    if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) return pid;
  return -1;
}

static void make_dir_with_file(const char *dir) {
  assert_int_equal(mkdir(dir, 0700), 0);
  char f[512];
  snprintf(f, sizeof f, "%s/spill-0.bin", dir);
  int fd = open(f, O_CREAT | O_WRONLY, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "rayc", 4), 4);
  close(fd);
}

static void test_spill_dirs_of_dead_processes_are_removed_at_init(void **state) {
  (void)state;
  long dead = dead_pid();
  assert_true(dead > 0);
  char gone[256], alive[256], other[256];
  snprintf(gone, sizeof gone, "%s/rayc-%ld", g_dir, dead);
  snprintf(alive, sizeof alive, "%s/rayc-%ld", g_dir, (long)getppid()); /* runs: kept */
  snprintf(other, sizeof other, "%s/not-rayc", g_dir);                  /* not ours: kept */
  make_dir_with_file(gone);
  make_dir_with_file(alive);
  make_dir_with_file(other);

  use_default_dir();
  spill_init(1, 8 * MIB, RAY_PUT_NO_WAIT, NULL);
  struct stat st;
  if (stat(gone, &st) == 0)
    fail_msg("%s (pid %ld is dead) was not removed at ray_init", gone, dead);
  assert_int_equal(stat(alive, &st), 0);
  assert_int_equal(stat(other, &st), 0);
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_int_equal(stat(alive, &st), 0); /* another process's files are left alone */
}

enum { SMALL_N = 1064 }; /* 64 fit in memory, 1000 are spilled */
#define SMALL_OBJ (1 * KIB)
#define SMALL_LIMIT (64 * KIB)

static void test_small_objects_are_fused_into_few_files_deleted_when_freed(void **state) {
  (void)state;
  spill_init(2, SMALL_LIMIT, 2000, g_dir);
  unsigned char scratch[SMALL_OBJ];
  static ray_ref *refs[SMALL_N];
  for (int i = 0; i < SMALL_N; i++)
    refs[i] = put_seeded(SMALL_OBJ, 1 + (uint64_t)i, &ray_type_bytes, scratch);
  ray_stats s = stats();
  /* At most 64 of them fit in memory: at least 1000 were spilled. */
  assert_true(s.spills >= SMALL_N - SMALL_LIMIT / SMALL_OBJ);
  assert_int_equal(s.bytes_spilled, s.spills * SMALL_OBJ);
  assert_int_equal(s.bytes_spilled_total, s.bytes_spilled);
  int files = count_spill_files(g_dir);
  if (files < 1 || files > 2)
    fail_msg("%llu spilled 1 KiB objects are in %d spill files (want 1 or 2)",
             (unsigned long long)s.spills, files);
  for (int i = 0; i < SMALL_N; i += 97) {
    char what[32];
    snprintf(what, sizeof what, "small object %d", i);
    expect_content(refs[i], &ray_type_bytes, SMALL_OBJ, 1 + (uint64_t)i, what);
  }
  for (int i = 0; i < SMALL_N; i++) ray_ref_release(refs[i]);
  s = stats();
  assert_int_equal(s.bytes_spilled, 0);
  assert_int_equal(s.objects, 0);
  assert_true(count_spill_files(g_dir) <= 1); /* at most the one still appended to */
  assert_int_equal(ray_shutdown(), RAY_OK);
  assert_int_equal(count_spill_files(g_dir), 0); /* every spill file is gone */
}

enum { ONCE_THREADS = 8 };
#define ONCE_OBJ (4 * MIB)

typedef struct once_thread {
  pthread_t thread;
  ray_ref *ref;
  pthread_barrier_t *barrier;
  ray_status status;
  size_t mismatch;
} once_thread;

static void *once_get(void *arg) {
  once_thread *t = arg;
  pthread_barrier_wait(t->barrier);
  ray_view v;
  t->status = ray_get(t->ref, &ray_type_bytes, GET_TIMEOUT_MS, &v);
  if (t->status == RAY_OK) {
    t->mismatch = v.size == ONCE_OBJ ? pattern_mismatch(v.data, ONCE_OBJ, 5) : 0;
    ray_view_release(&v);
  }
  return NULL;
}

static void test_concurrent_gets_of_one_spilled_object_restore_it_once(void **state) {
  (void)state;
  spill_init(2, ARG_LIMIT, 2000, g_dir);
  unsigned char *scratch = test_alloc(ONCE_OBJ);
  ray_ref *x = put_seeded(ONCE_OBJ, 5, &ray_type_bytes, scratch);
  push_all_out();
  ray_stats s0 = stats();
  assert_int_equal(s0.bytes_spilled, ONCE_OBJ);

  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, ONCE_THREADS);
  once_thread t[ONCE_THREADS];
  for (int i = 0; i < ONCE_THREADS; i++) {
    t[i] = (once_thread){.ref = x, .barrier = &barrier, .mismatch = SIZE_MAX};
    assert_int_equal(pthread_create(&t[i].thread, NULL, once_get, &t[i]), 0);
  }
  for (int i = 0; i < ONCE_THREADS; i++) pthread_join(t[i].thread, NULL);
  pthread_barrier_destroy(&barrier);
  for (int i = 0; i < ONCE_THREADS; i++) {
    if (t[i].status != RAY_OK) fail_msg("thread %d: %s", i, ray_status_name(t[i].status));
    if (t[i].mismatch != SIZE_MAX) fail_msg("thread %d: byte %zu differs", i, t[i].mismatch);
  }
  ray_stats s1 = stats();
  assert_int_equal(s1.restores, s0.restores + 1);
  assert_int_equal(s1.bytes_restored_total, s0.bytes_restored_total + ONCE_OBJ);
  assert_int_equal(s1.bytes_in_memory, ONCE_OBJ);
  ray_ref_release(x);
}

/* ------------------------------------------------------------------------ */
/* Timeline                                                                 */
/* ------------------------------------------------------------------------ */

/* The value of "key":"..." or "key":N on one line of the trace (one event
 * per line), copied into out; false if absent. */
static bool field(const char *line, const char *key, char *out, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(line, pat);
  if (!p) return false;
  p += strlen(pat);
  bool quoted = *p == '"';
  p += quoted;
  size_t n = 0;
  while (p[n] && (quoted ? p[n] != '"' : (p[n] != ',' && p[n] != '}'))) n++;
  if (n >= cap) n = cap - 1;
  memcpy(out, p, n);
  out[n] = '\0';
  return true;
}

static void test_spills_and_restores_appear_on_the_timeline_io_track(void **state) {
  (void)state;
  char trace[128];
  snprintf(trace, sizeof trace, "%s/trace.json", g_dir);
  char dir[128];
  snprintf(dir, sizeof dir, "%s/spill", g_dir);
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 2;
  cfg.object_store_memory = ARG_LIMIT;
  cfg.put_timeout_ms = 2000;
  cfg.spill_dir = dir;
  cfg.timeline_path = trace;
  CHECK_OK(ray_init(&cfg));
  unsigned char *scratch = test_alloc(ARG_OBJ);
  ray_ref *x = put_seeded(ARG_OBJ, 8, &ray_type_bytes, scratch);
  push_all_out();
  expect_content(x, &ray_type_bytes, ARG_OBJ, 8, "the restored object");
  ray_ref_release(x);
  assert_int_equal(ray_shutdown(), RAY_OK);

  size_t n = 0;
  unsigned char *text = slurp(trace, &n);
  assert_non_null(text);
  text[n] = '\0';
  /* The I/O thread's track: a thread_name event named rayc-io. */
  char io_tid[32] = "", spill_tid[32] = "";
  int spills = 0, restores = 0;
  for (char *line = strtok((char *)text, "\n"); line; line = strtok(NULL, "\n")) {
    char name[128], tid[32];
    if (!field(line, "name", name, sizeof name)) continue;
    if (!strcmp(name, "thread_name")) {
      const char *args = strstr(line, "\"args\":");
      char track[64];
      if (args && field(args, "name", track, sizeof track) && !strncmp(track, "rayc-io", 7) &&
          field(line, "tid", tid, sizeof tid))
        snprintf(io_tid, sizeof io_tid, "%s", tid);
      continue;
    }
    if (!strstr(line, "\"ph\":\"X\"")) continue;
    if (strstr(name, "spill") && !strstr(name, "restore") && field(line, "tid", tid, sizeof tid)) {
      spills++;
      snprintf(spill_tid, sizeof spill_tid, "%s", tid);
    }
    if (strstr(name, "restore")) restores++;
  }
  free(text);
  if (!io_tid[0]) fail_msg("no track named rayc-io in %s", trace);
  assert_true(spills >= 1);
  assert_true(restores >= 1);
  assert_string_equal(spill_tid, io_tid); /* spills run on the I/O thread */
}

/* ------------------------------------------------------------------------ */
/* 9. When nothing can be spilled                                           */
/* ------------------------------------------------------------------------ */

static void test_zero_timeout_put_with_everything_pinned_fails_at_once_naming_them(void **state) {
  (void)state;
  spill_init(2, 8 * MIB, RAY_PUT_NO_WAIT, g_dir);
  unsigned char *scratch = test_alloc(4 * MIB);
  ray_ref *a = put_seeded(4 * MIB, 1, NULL, scratch);
  ray_ref *b = put_seeded(4 * MIB, 2, NULL, scratch);
  CHECK_OK(ray_pin(a));
  CHECK_OK(ray_pin(b));
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ray_ref *c = NULL;
  assert_int_equal(ray_put(scratch, 1 * MIB, NULL, &c), RAY_ESTOREFULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_null(c);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  if (ms > 1000) fail_msg("a put with RAY_PUT_NO_WAIT took %.0f ms to fail", ms);
  char want[64];
  snprintf(want, sizeof want, "pinned %zu", 8 * MIB);
  assert_error_contains(want);
  assert_error_contains("viewed");
  assert_error_contains("spilled");
  snprintf(want, sizeof want, "limit %zu", 8 * MIB);
  assert_error_contains(want);
  assert_int_equal(stats().spills, 0);

  /* One pinned, one viewed: both named. */
  CHECK_OK(ray_unpin(b));
  ray_view vb;
  CHECK_OK(ray_get(b, NULL, 0, &vb));
  assert_int_equal(ray_put(scratch, 1 * MIB, NULL, &c), RAY_ESTOREFULL);
  snprintf(want, sizeof want, "pinned %zu", 4 * MIB);
  assert_error_contains(want);
  snprintf(want, sizeof want, "viewed %zu", 4 * MIB);
  assert_error_contains(want);
  ray_view_release(&vb);

  /* Once b may move, the same put spills it and succeeds. */
  CHECK_OK(ray_put(scratch, 1 * MIB, NULL, &c));
  assert_int_equal(stats().spills, 1);
  CHECK_OK(ray_unpin(a));
  ray_ref_release(a);
  ray_ref_release(b);
  ray_ref_release(c);
}

static void test_a_restore_with_no_room_fails_estorefull_and_loses_nothing(void **state) {
  (void)state;
  spill_init(2, 8 * MIB, 100, g_dir);
  unsigned char *scratch = test_alloc(4 * MIB);
  ray_ref *x = put_seeded(4 * MIB, 1, NULL, scratch);
  ray_ref *a = put_seeded(4 * MIB, 2, NULL, scratch);
  ray_ref *b = put_seeded(4 * MIB, 3, NULL, scratch); /* spills x */
  assert_int_equal(stats().bytes_spilled, 4 * MIB);
  CHECK_OK(ray_pin(a));
  ray_view vb;
  CHECK_OK(ray_get(b, NULL, 0, &vb));
  /* Restoring x needs 4 MiB; a is pinned and b viewed. */
  ray_view vx = {0};
  assert_int_equal(ray_get(x, NULL, GET_TIMEOUT_MS, &vx), RAY_ESTOREFULL);
  assert_null(vx.data);
  assert_error_contains("pinned");
  assert_error_contains("viewed");
  /* Nothing was lost: once b is free to move, x comes back. */
  ray_view_release(&vb);
  expect_content(x, &ray_type_bytes, 4 * MIB, 1, "x after the failed restore");
  CHECK_OK(ray_unpin(a));
  ray_ref_release(a);
  ray_ref_release(b);
  ray_ref_release(x);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_dir, teardown_dir)
  const struct CMUnitTest tests[] = {
      T(test_exact_spill_and_restore_counts_of_four_objects_in_room_for_two),
      T(test_zero_timeout_put_with_everything_pinned_fails_at_once_naming_them),
      T(test_a_restore_with_no_room_fails_estorefull_and_loses_nothing),
      T(test_viewed_pinned_owned_and_refs_objects_never_move),
      T(test_pin_of_a_spilled_object_restores_it_with_its_id_and_type),
      T(test_tasks_and_actor_methods_read_spilled_arguments),
      T(test_concurrent_gets_of_one_spilled_object_restore_it_once),
      T(test_a_flipped_byte_loses_that_object_only),
      T(test_a_truncated_spill_file_loses_only_what_was_cut),
      T(test_a_full_disk_fails_the_put_and_loses_nothing),
      T(test_small_objects_are_fused_into_few_files_deleted_when_freed),
      T(test_spill_dir_that_cannot_be_created_fails_init_with_eio),
      T(test_default_spill_dir_is_rayc_pid_under_tmpdir_and_removed_at_shutdown),
      T(test_given_spill_dir_is_created_and_removed_only_if_init_made_it),
      T(test_spill_dirs_of_dead_processes_are_removed_at_init),
      T(test_spills_and_restores_appear_on_the_timeline_io_track),
      T(test_gets_from_eight_threads_while_another_puts_do_not_deadlock),
      T(test_many_times_the_limit_reads_back_byte_identical_in_random_order),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
