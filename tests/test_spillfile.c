/*
 * test_spillfile.c - the disk side of spilling (store/spillfile.h): records
 * come back byte-identical, small ones share files, damage is reported as
 * RAY_ELOST naming the file and offset without harming the neighbours,
 * write failures leave nothing behind, space is reclaimed, and the
 * directory's lifetime (creation, adoption, dead processes' leftovers).
 *
 * Every test works in its own mkdtemp directory under $TMPDIR (or /tmp) and
 * removes it.
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
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/prim.h"
#include "store/spillfile.h"
#include "test_util.h"

#if defined(RT_TEST_TSAN)
#define SCALE(n) ((n) / 8)
#elif defined(RT_TEST_ASAN)
#define SCALE(n) ((n) / 4)
#else
#define SCALE(n) (n)
#endif

#define MiB ((size_t)1 << 20)

/* ---- helpers ---------------------------------------------------------------- */

/* A fresh directory for one test; *root gets it (free it with rm_tree). */
static char *make_root(void) {
  const char *tmp = getenv("TMPDIR");
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s/rayc-spilltest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(buf));
  return strdup(buf);
}

/* rm -r of what the tests make: files, symlinks, directories. */
static void rm_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        rm_tree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

static bool exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "x", 1), 1);
  close(fd);
}

/* spill-*.bin files in dir. */
static int count_spill_files(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += !strncmp(e->d_name, "spill-", 6);
  closedir(d);
  return n;
}

/* Deterministic content: byte i of object `seed`, recomputable. */
static unsigned char byte_at(uint64_t seed, size_t i) {
  uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull + (uint64_t)(i / 8) * 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 32;
  return (unsigned char)(x >> (8 * (i % 8)));
}

static unsigned char *make_data(uint64_t seed, size_t size) {
  unsigned char *p = malloc(size ? size : 1);
  assert_non_null(p);
  for (size_t i = 0; i < size; i++) p[i] = byte_at(seed, i);
  return p;
}

static rt_spill_item item_of(const void *data, size_t size, uint64_t seed) {
  rt_spill_item it = {data, size, {0}};
  memcpy(it.id, &seed, sizeof seed);
  return it;
}

/* Reads loc back and checks every byte against seed's content. */
static void expect_readback(rt_spilldir *d, const rt_spill_loc *loc, uint64_t seed) {
  unsigned char *buf = malloc(loc->size ? loc->size : 1);
  assert_non_null(buf);
  ray_status s = rt_spill_read(d, loc, buf);
  if (s != RAY_OK) fail_msg("read of %zu bytes: %s", (size_t)loc->size, ray_last_error());
  for (size_t i = 0; i < loc->size; i++)
    if (buf[i] != byte_at(seed, i)) fail_msg("byte %zu of %zu differs", i, (size_t)loc->size);
  free(buf);
}

static void flip_byte(const char *path, uint64_t off) {
  int fd = open(path, O_RDWR);
  assert_true(fd >= 0);
  unsigned char c;
  assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
  c ^= 0x10;
  assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
  close(fd);
}

static void expect_error_has(const char *what) {
  const char *e = ray_last_error();
  if (!strstr(e, what)) fail_msg("last error \"%s\" does not contain \"%s\"", e, what);
}

/* An opened spill directory inside a fresh root. */
typedef struct fixture {
  char *root;
  char dir[PATH_MAX];
  rt_spilldir d;
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  fx->root = make_root();
  snprintf(fx->dir, sizeof fx->dir, "%s/spill", fx->root);
  if (rt_spilldir_open(&fx->d, fx->dir, false) != RAY_OK) return -1;
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  rt_spilldir_close(&fx->d);
  rm_tree(fx->root);
  free(fx->root);
  free(fx);
  return 0;
}

/* ---- the checksum ----------------------------------------------------------- */

static void test_checksum_vector_and_portable_versions_agree(void **state) {
  (void)state;
  unsigned char *p = make_data(7, 3 * 4096);
  for (size_t size = 0; size < 1200; size += (size < 300 ? 1 : 37))
    for (size_t at = 0; at < 9; at += 4)
      assert_true(rt_spill_checksum(p + at, size) == rt_spill_checksum_portable(p + at, size));
  assert_true(rt_spill_checksum(p, 3 * 4096) == rt_spill_checksum_portable(p, 3 * 4096));
  free(p);
}

static void test_checksum_sees_every_flipped_bit_and_the_length(void **state) {
  (void)state;
  size_t n = 1000;
  unsigned char *p = make_data(8, n);
  uint64_t base = rt_spill_checksum(p, n);
  for (size_t bit = 0; bit < n * 8; bit++) {
    p[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    assert_true(rt_spill_checksum(p, n) != base);
    p[bit / 8] ^= (unsigned char)(1u << (bit % 8));
  }
  /* Zeros of different lengths (what a punched or extended region reads
   * as), and two blocks swapped. */
  unsigned char z[1024] = {0};
  for (size_t a = 0; a < 600; a++)
    assert_true(rt_spill_checksum(z, a) != rt_spill_checksum(z, a + 1));
  unsigned char *q = make_data(9, 1024), *r = malloc(1024);
  memcpy(r, q + 256, 256), memcpy(r + 256, q, 256), memcpy(r + 512, q + 512, 512);
  assert_true(rt_spill_checksum(q, 1024) != rt_spill_checksum(r, 1024));
  free(p), free(q), free(r);
}

/* ---- writing and reading ------------------------------------------------------ */

static void test_round_trip_of_many_sizes_is_byte_identical(void **state) {
  fixture *fx = *state;
  const size_t sizes[] = {0,    1,     63,    64,    65,      255, 256,     257,          4095,
                          4096, 65535, 65536, 65537, MiB - 1, MiB, MiB + 1, 3 * MiB + 77, 64 * MiB};
  enum { N = sizeof sizes / sizeof sizes[0] };
  unsigned char *data[N];
  rt_spill_item items[N];
  rt_spill_loc locs[N], one[N];
  uint64_t total = 0;
  for (size_t i = 0; i < N; i++) {
    data[i] = make_data(i, sizes[i]);
    items[i] = item_of(data[i], sizes[i], i);
    total += sizes[i];
  }
  /* One batch of all, then each alone. */
  assert_int_equal(rt_spill_write(&fx->d, items, N, locs), RAY_OK);
  for (size_t i = 0; i < N; i++)
    assert_int_equal(rt_spill_write(&fx->d, &items[i], 1, &one[i]), RAY_OK);
  assert_int_equal(rt_spill_bytes(&fx->d), 2 * total);
  for (size_t i = 0; i < N; i++) {
    assert_int_equal(locs[i].size, sizes[i]);
    assert_true(locs[i].sum == rt_spill_checksum(data[i], sizes[i]));
    assert_int_equal(locs[i].offset % (sizes[i] >= RT_SPILL_ALIGN_MIN ? 4096 : 64), 0);
    expect_readback(&fx->d, &locs[i], i);
    expect_readback(&fx->d, &one[i], i);
  }
  for (size_t i = 0; i < N; i++) {
    rt_spill_forget(&fx->d, &locs[i]);
    rt_spill_forget(&fx->d, &one[i]);
    free(data[i]);
  }
  assert_int_equal(rt_spill_bytes(&fx->d), 0);
}

static void test_small_objects_fuse_into_one_or_two_files(void **state) {
  fixture *fx = *state;
  enum { N = 1000, B = 100 };
  static rt_spill_loc locs[N];
  unsigned char *data[N];
  for (int i = 0; i < N; i += B) {
    rt_spill_item items[B];
    for (int j = 0; j < B; j++) {
      data[i + j] = make_data((uint64_t)(i + j), 1024);
      items[j] = item_of(data[i + j], 1024, (uint64_t)(i + j));
    }
    assert_int_equal(rt_spill_write(&fx->d, items, B, &locs[i]), RAY_OK);
  }
  int files = count_spill_files(fx->dir);
  assert_true(files >= 1 && files <= 2);
  for (int i = 0; i < N; i++) {
    expect_readback(&fx->d, &locs[i], (uint64_t)i);
    free(data[i]);
  }
  for (int i = 0; i < N; i++) rt_spill_forget(&fx->d, &locs[i]);
}

static void test_files_roll_over_at_the_target_size(void **state) {
  fixture *fx = *state;
  /* 20 MiB records: three fit in 64 MiB, a fourth starts a new file. */
  size_t big = 20 * MiB;
  unsigned char *p = make_data(1, 70 * MiB);
  rt_spill_item items[5];
  rt_spill_loc locs[5], huge, after;
  for (int i = 0; i < 5; i++) items[i] = item_of(p, big, 1);
  assert_int_equal(rt_spill_write(&fx->d, items, 5, locs), RAY_OK);
  assert_true(locs[0].file == locs[2].file);
  assert_true(locs[3].file != locs[2].file && locs[3].file == locs[4].file);
  assert_int_equal(locs[3].offset, 0);
  assert_int_equal(count_spill_files(fx->dir), 2);
  struct stat st;
  assert_int_equal(stat(rt_spill_path(&locs[0]), &st), 0);
  assert_true((uint64_t)st.st_size <= RT_SPILL_FILE_TARGET);

  /* One object over the target: a file of its own; the next goes on. */
  rt_spill_item h = item_of(p, 70 * MiB, 1), s = item_of(p, 100, 1);
  assert_int_equal(rt_spill_write(&fx->d, &h, 1, &huge), RAY_OK);
  assert_int_equal(rt_spill_write(&fx->d, &s, 1, &after), RAY_OK);
  assert_true(huge.file != locs[4].file && huge.offset == 0);
  assert_true(after.file != huge.file && after.offset == 0);
  assert_int_equal(count_spill_files(fx->dir), 4);
  expect_readback(&fx->d, &huge, 1);
  expect_readback(&fx->d, &locs[4], 1);
  expect_readback(&fx->d, &after, 1);
  free(p);
}

/* ---- damage ------------------------------------------------------------------- */

static void test_flipped_payload_byte_is_lost_and_neighbours_still_read(void **state) {
  fixture *fx = *state;
  enum { N = 3 };
  size_t sizes[N] = {1000, 300 * 1000, 2000};
  unsigned char *data[N];
  rt_spill_item items[N];
  rt_spill_loc locs[N];
  for (int i = 0; i < N; i++) {
    data[i] = make_data((uint64_t)i, sizes[i]);
    items[i] = item_of(data[i], sizes[i], (uint64_t)i);
  }
  assert_int_equal(rt_spill_write(&fx->d, items, N, locs), RAY_OK);
  assert_true(locs[0].file == locs[1].file && locs[1].file == locs[2].file);
  const char *path = rt_spill_path(&locs[1]);
  flip_byte(path, locs[1].offset + 64 + sizes[1] / 2);

  unsigned char *buf = malloc(sizes[1]);
  assert_int_equal(rt_spill_read(&fx->d, &locs[1], buf), RAY_ELOST);
  char off[64];
  snprintf(off, sizeof off, "offset %llu", (unsigned long long)locs[1].offset);
  expect_error_has(path);
  expect_error_has(off);
  expect_error_has("checksum mismatch");
  expect_readback(&fx->d, &locs[0], 0);
  expect_readback(&fx->d, &locs[2], 2);
  for (int i = 0; i < N; i++) free(data[i]);
  free(buf);
}

/* A big record maps read-only, byte-identical and 64-byte aligned; a
 * flipped byte or a truncated file is lost, as with a read; small records
 * are not mappable. */
static void test_big_records_map_verified_in_place(void **state) {
  fixture *fx = *state;
  enum { N = 3 };
  size_t sizes[N] = {1000, 3 * 1000 * 1000, 200 * 1000};
  unsigned char *data[N];
  rt_spill_item items[N];
  rt_spill_loc locs[N];
  for (int i = 0; i < N; i++) {
    data[i] = make_data((uint64_t)i, sizes[i]);
    items[i] = item_of(data[i], sizes[i], (uint64_t)i);
  }
  assert_int_equal(rt_spill_write(&fx->d, items, N, locs), RAY_OK);
  assert_false(rt_spill_mappable(&locs[0]));
  assert_true(rt_spill_mappable(&locs[1]) && rt_spill_mappable(&locs[2]));
  const void *m = NULL;
  assert_int_equal(rt_spill_map(&fx->d, &locs[1], &m), RAY_OK);
  assert_int_equal((uintptr_t)m % 64, 0);
  assert_memory_equal(m, data[1], sizes[1]);
  rt_spill_unmap(m, sizes[1]);

  const char *path = rt_spill_path(&locs[1]);
  flip_byte(path, locs[1].offset + 64 + sizes[1] / 3);
  assert_int_equal(rt_spill_map(&fx->d, &locs[1], &m), RAY_ELOST);
  expect_error_has(path);
  expect_error_has("checksum mismatch");
  /* Cut the file inside the last record: a map must fail, not fault later. */
  assert_int_equal(truncate(path, (off_t)(locs[2].offset + 64 + sizes[2] / 2)), 0);
  assert_int_equal(rt_spill_map(&fx->d, &locs[2], &m), RAY_ELOST);
  expect_error_has("short read");
  for (int i = 0; i < N; i++) free(data[i]);
}

static void test_flipped_header_byte_is_lost(void **state) {
  fixture *fx = *state;
  unsigned char *a = make_data(1, 500), *b = make_data(2, 500);
  rt_spill_item items[2] = {item_of(a, 500, 1), item_of(b, 500, 2)};
  rt_spill_loc locs[2];
  assert_int_equal(rt_spill_write(&fx->d, items, 2, locs), RAY_OK);
  flip_byte(rt_spill_path(&locs[0]), locs[0].offset + 20); /* in the object id */
  unsigned char buf[500];
  assert_int_equal(rt_spill_read(&fx->d, &locs[0], buf), RAY_ELOST);
  expect_error_has(rt_spill_path(&locs[0]));
  expect_error_has("header");
  flip_byte(rt_spill_path(&locs[1]), locs[1].offset + 1); /* in the magic */
  assert_int_equal(rt_spill_read(&fx->d, &locs[1], buf), RAY_ELOST);
  expect_error_has("magic");
  free(a), free(b);
}

static void test_truncated_file_is_a_short_read(void **state) {
  fixture *fx = *state;
  unsigned char *a = make_data(1, 100000), *b = make_data(2, 3 * MiB);
  rt_spill_item items[2] = {item_of(a, 100000, 1), item_of(b, 3 * MiB, 2)};
  rt_spill_loc locs[2];
  assert_int_equal(rt_spill_write(&fx->d, items, 2, locs), RAY_OK);
  /* Cut the big one in its second chunk, then inside its header. */
  assert_int_equal(truncate(rt_spill_path(&locs[1]), (off_t)(locs[1].offset + 64 + MiB + 5)), 0);
  unsigned char *buf = malloc(3 * MiB);
  assert_int_equal(rt_spill_read(&fx->d, &locs[1], buf), RAY_ELOST);
  expect_error_has(rt_spill_path(&locs[1]));
  expect_error_has("short read");
  expect_error_has("truncated");
  assert_int_equal(truncate(rt_spill_path(&locs[1]), (off_t)(locs[1].offset + 10)), 0);
  assert_int_equal(rt_spill_read(&fx->d, &locs[1], buf), RAY_ELOST);
  expect_error_has("truncated");
  expect_readback(&fx->d, &locs[0], 1);
  free(a), free(b), free(buf);
}

/* ---- space -------------------------------------------------------------------- */

static void test_forgetting_every_record_deletes_files_and_empties_the_current(void **state) {
  fixture *fx = *state;
  size_t big = 20 * MiB;
  unsigned char *p = make_data(3, big);
  enum { N = 10 };
  rt_spill_item items[N];
  rt_spill_loc locs[N];
  for (int i = 0; i < N; i++) items[i] = item_of(p, big, 3);
  assert_int_equal(rt_spill_write(&fx->d, items, N, locs), RAY_OK);
  assert_int_equal(count_spill_files(fx->dir), 4); /* 3 + 3 + 3 + 1 */
  char cur[PATH_MAX];
  snprintf(cur, sizeof cur, "%s", rt_spill_path(&locs[N - 1]));
  for (int i = 0; i < N; i++) rt_spill_forget(&fx->d, &locs[i]);
  assert_int_equal(rt_spill_bytes(&fx->d), 0);
  /* Only the current file is left, and it holds nothing. */
  assert_int_equal(count_spill_files(fx->dir), 1);
  struct stat st;
  assert_int_equal(stat(cur, &st), 0);
  assert_int_equal(st.st_size, 0);
  assert_int_equal(st.st_blocks, 0);
  /* ... and it is reused from offset 0. */
  rt_spill_loc again;
  assert_int_equal(rt_spill_write(&fx->d, items, 1, &again), RAY_OK);
  assert_string_equal(rt_spill_path(&again), cur);
  assert_int_equal(again.offset, 0);
  expect_readback(&fx->d, &again, 3);
  free(p);
}

static void test_forgetting_a_large_record_punches_its_pages(void **state) {
  fixture *fx = *state;
  /* Does this filesystem punch holes at all? */
  char probe[PATH_MAX];
  snprintf(probe, sizeof probe, "%s/probe", fx->root);
  int fd = open(probe, O_RDWR | O_CREAT, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, 1 << 20), 0);
  bool can_punch = rt_prim_punch_hole(fd, 0, 4096);
  close(fd);
  if (!can_punch) {
    skip(); /* e.g. a filesystem without fallocate: space comes back with the file */
  }
  size_t big = 4 * MiB;
  unsigned char *p = make_data(4, big);
  rt_spill_item items[3] = {item_of(p, big, 4), item_of(p, big, 4), item_of(p, big, 4)};
  rt_spill_loc locs[3];
  assert_int_equal(rt_spill_write(&fx->d, items, 3, locs), RAY_OK);
  struct stat before, after;
  assert_int_equal(stat(rt_spill_path(&locs[0]), &before), 0);
  rt_spill_forget(&fx->d, &locs[1]);
  assert_int_equal(stat(rt_spill_path(&locs[0]), &after), 0);
  assert_int_equal(after.st_size, before.st_size);
  /* st_blocks counts 512-byte units: nearly all of 4 MiB came back. */
  assert_true((before.st_blocks - after.st_blocks) * 512 >= (long long)(big - 8192));
  expect_readback(&fx->d, &locs[0], 4);
  expect_readback(&fx->d, &locs[2], 4);
  free(p);
}

/* ---- write failures ----------------------------------------------------------- */

static void test_injected_write_failure_leaves_nothing_and_the_next_write_works(void **state) {
  fixture *fx = *state;
  unsigned char *p = make_data(5, 200000);
  rt_spill_item items[3] = {item_of(p, 1000, 5), item_of(p, 200000, 5), item_of(p, 10, 5)};
  rt_spill_loc first, locs[3];
  assert_int_equal(rt_spill_write(&fx->d, items, 1, &first), RAY_OK);
  struct stat st0, st1;
  assert_int_equal(stat(rt_spill_path(&first), &st0), 0);

  rt_spill_test_fail_writes(&fx->d, 1, ENOSPC);
  assert_int_equal(rt_spill_write(&fx->d, items, 3, locs), RAY_EIO);
  expect_error_has(fx->dir);
  expect_error_has("spill-");
  expect_error_has("No space left");
  assert_int_equal(rt_spill_bytes(&fx->d), 1000);
  assert_int_equal(stat(rt_spill_path(&first), &st1), 0);
  /* The batch's space went back (up to the 64-byte alignment of its start). */
  assert_true(st1.st_size >= st0.st_size && st1.st_size < st0.st_size + 64);

  assert_int_equal(rt_spill_write(&fx->d, items, 3, locs), RAY_OK);
  for (int i = 0; i < 3; i++) expect_readback(&fx->d, &locs[i], 5);
  expect_readback(&fx->d, &first, 5);
  assert_int_equal(rt_spill_bytes(&fx->d), 1000 + 200000 + 1000 + 10);
  free(p);
}

static void test_file_size_limit_fails_the_write_with_eio(void **state) {
  fixture *fx = *state;
  unsigned char *p = make_data(6, 3 * MiB);
  rt_spill_item small = item_of(p, 5000, 6), big = item_of(p, 3 * MiB, 6);
  rt_spill_loc a, b, c;
  assert_int_equal(rt_spill_write(&fx->d, &small, 1, &a), RAY_OK);

  struct rlimit old, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old;
  lim.rlim_cur = 2 * MiB;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  ray_status s = rt_spill_write(&fx->d, &big, 1, &b);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", ray_last_error());
  /* Restore before any assertion can leave the test. */
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);

  assert_int_equal(s, RAY_EIO);
  if (!strstr(msg, "File too large") || !strstr(msg, fx->dir)) fail_msg("message: %s", msg);
  assert_int_equal(rt_spill_bytes(&fx->d), 5000);
  expect_readback(&fx->d, &a, 6);
  assert_int_equal(rt_spill_write(&fx->d, &big, 1, &c), RAY_OK);
  expect_readback(&fx->d, &c, 6);
  free(p);
}

/* ---- the directory ------------------------------------------------------------ */

static void test_open_fails_naming_a_path_that_cannot_be_created(void **state) {
  (void)state;
  char *root = make_root(), file[PATH_MAX], dir[2 * PATH_MAX];
  snprintf(file, sizeof file, "%s/plain", root);
  touch(file);
  snprintf(dir, sizeof dir, "%s/sub/spill", file);
  rt_spilldir d;
  assert_int_equal(rt_spilldir_open(&d, dir, false), RAY_EIO);
  expect_error_has(dir);
  expect_error_has("Not a directory");
  assert_int_equal(rt_spilldir_open(&d, file, false), RAY_EIO); /* a file, not a directory */
  expect_error_has(file);
  rm_tree(root);
  free(root);
}

static void test_open_creates_parents_and_close_removes_only_what_it_made(void **state) {
  (void)state;
  char *root = make_root(), dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/a/b/spill", root);
  rt_spilldir d;
  assert_int_equal(rt_spilldir_open(&d, dir, false), RAY_OK);
  assert_true(d.made);
  struct stat st;
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  unsigned char x[100] = {1};
  rt_spill_item it = item_of(x, sizeof x, 0);
  rt_spill_loc loc;
  assert_int_equal(rt_spill_write(&d, &it, 1, &loc), RAY_OK);
  assert_int_equal(stat(rt_spill_path(&loc), &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  rt_spilldir_close(&d);
  assert_false(exists(dir));

  /* An existing directory is used, and stays (with what else is in it). */
  char mine[PATH_MAX];
  snprintf(mine, sizeof mine, "%s/a/keep.txt", root);
  touch(mine);
  snprintf(dir, sizeof dir, "%s/a", root);
  assert_int_equal(rt_spilldir_open(&d, dir, false), RAY_OK);
  assert_false(d.made);
  assert_int_equal(rt_spill_write(&d, &it, 1, &loc), RAY_OK);
  rt_spilldir_close(&d);
  assert_true(exists(dir) && exists(mine));
  assert_int_equal(count_spill_files(dir), 0);
  rm_tree(root);
  free(root);
}

/* A pid no process has now (scanning up from a high number). */
static long dead_pid(long from) {
  for (long pid = from; pid < from + 100000; pid++)
    if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) return pid;
  fail_msg("no free pid found");
  return -1;
}

static void test_default_open_removes_dead_processes_dirs_only(void **state) {
  (void)state;
  char *root = make_root(), p[PATH_MAX], q[2 * PATH_MAX];
  long dead = dead_pid(4000000), dead2 = dead_pid(dead + 1), dead3 = dead_pid(dead2 + 1);
  long self = (long)getpid();
  /* Dead: removed, with its spill files. */
  snprintf(p, sizeof p, "%s/rayc-%ld", root, dead);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(q, sizeof q, "%s/spill-0.bin", p), touch(q);
  snprintf(q, sizeof q, "%s/spill-12.bin", p), touch(q);
  snprintf(p, sizeof p, "%s/rayc-%ld-x", root, dead);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(q, sizeof q, "%s/spill-3.bin", p), touch(q);
  /* Dead but holding something else: its spill files go, it and the rest stay. */
  snprintf(p, sizeof p, "%s/rayc-%ld", root, dead2);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(q, sizeof q, "%s/notes.txt", p), touch(q);
  snprintf(q, sizeof q, "%s/spill-1.bin", p), touch(q);
  /* A symbolic link with a dead pid's name, to a directory: not followed. */
  char target[PATH_MAX];
  snprintf(target, sizeof target, "%s/target", root);
  assert_int_equal(mkdir(target, 0700), 0);
  snprintf(q, sizeof q, "%s/spill-0.bin", target), touch(q);
  snprintf(p, sizeof p, "%s/rayc-%ld", root, dead3);
  assert_int_equal(symlink(target, p), 0);
  /* Alive (this process, another name): kept. */
  snprintf(p, sizeof p, "%s/rayc-%ld-other", root, self);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(q, sizeof q, "%s/spill-0.bin", p), touch(q);
  /* Not ours by name. */
  snprintf(p, sizeof p, "%s/rayc-x%ld", root, dead);
  assert_int_equal(mkdir(p, 0700), 0);

  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/rayc-%ld", root, self);
  rt_spilldir d;
  assert_int_equal(rt_spilldir_open(&d, dir, true), RAY_OK);
  assert_true(d.made);

  snprintf(p, sizeof p, "%s/rayc-%ld", root, dead), assert_false(exists(p));
  snprintf(p, sizeof p, "%s/rayc-%ld-x", root, dead), assert_false(exists(p));
  snprintf(p, sizeof p, "%s/rayc-%ld/notes.txt", root, dead2), assert_true(exists(p));
  snprintf(p, sizeof p, "%s/rayc-%ld/spill-1.bin", root, dead2), assert_false(exists(p));
  snprintf(p, sizeof p, "%s/rayc-%ld", root, dead3), assert_true(exists(p));
  snprintf(q, sizeof q, "%s/spill-0.bin", target), assert_true(exists(q));
  snprintf(p, sizeof p, "%s/rayc-%ld-other/spill-0.bin", root, self), assert_true(exists(p));
  snprintf(p, sizeof p, "%s/rayc-x%ld", root, dead), assert_true(exists(p));

  rt_spilldir_close(&d);
  assert_false(exists(dir));
  rm_tree(root);
  free(root);
}

/* The default name already exists (a previous runtime of this process): it
 * is still rayc's, and goes at close. */
static void test_default_dir_that_exists_is_removed_at_close(void **state) {
  (void)state;
  char *root = make_root(), dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/rayc-%ld", root, (long)getpid());
  assert_int_equal(mkdir(dir, 0700), 0);
  rt_spilldir d;
  assert_int_equal(rt_spilldir_open(&d, dir, true), RAY_OK);
  assert_true(d.made);
  rt_spilldir_close(&d);
  assert_false(exists(dir));
  rm_tree(root);
  free(root);
}

/* ---- threads ------------------------------------------------------------------ */

/* One writer appends records of random sizes and publishes them; four
 * threads take published records one at a time (never two on one record:
 * the store's guarantee), read and check them, and forget about half. */
enum { CONC_RECORDS = SCALE(4000), CONC_READERS = 4 };

typedef struct conc {
  rt_spilldir *d;
  pthread_mutex_t lock;
  rt_spill_loc locs[CONC_RECORDS];
  unsigned char state[CONC_RECORDS]; /* 0 unpublished, 1 free, 2 taken, 3 forgotten */
  int published;
  bool done;
  int errors;
  char error[512];
} conc;

static size_t conc_size(uint64_t i) {
  uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;
  x ^= x >> 31;
  switch (x % 8) {
  case 0:
    return (size_t)(x % 3); /* 0..2 bytes */
  case 1:
    return RT_SPILL_ALIGN_MIN + (size_t)(x % 100000);
  case 2:
    return (size_t)(x % (2 * MiB));
  default:
    return (size_t)(x % 5000);
  }
}

static void *conc_writer(void *arg) {
  conc *c = arg;
  enum { B = 16 };
  for (int i = 0; i < CONC_RECORDS; i += B) {
    rt_spill_item items[B];
    rt_spill_loc locs[B];
    unsigned char *data[B];
    int n = CONC_RECORDS - i < B ? CONC_RECORDS - i : B;
    for (int j = 0; j < n; j++) {
      size_t size = conc_size((uint64_t)(i + j));
      data[j] = malloc(size ? size : 1);
      for (size_t k = 0; k < size; k++) data[j][k] = byte_at((uint64_t)(i + j), k);
      items[j] = item_of(data[j], size, (uint64_t)(i + j));
    }
    ray_status s = rt_spill_write(c->d, items, (size_t)n, locs);
    pthread_mutex_lock(&c->lock);
    if (s != RAY_OK) {
      c->errors++;
      snprintf(c->error, sizeof c->error, "write: %s", ray_last_error());
    } else {
      for (int j = 0; j < n; j++) c->locs[i + j] = locs[j], c->state[i + j] = 1;
      c->published = i + n;
    }
    pthread_mutex_unlock(&c->lock);
    for (int j = 0; j < n; j++) free(data[j]);
    if (s != RAY_OK) break;
  }
  pthread_mutex_lock(&c->lock);
  c->done = true;
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

static void *conc_reader(void *arg) {
  conc *c = arg;
  unsigned seed = (unsigned)(uintptr_t)pthread_self();
  unsigned char *buf = malloc(2 * MiB);
  for (;;) {
    pthread_mutex_lock(&c->lock);
    int n = c->published, pick = -1;
    bool done = c->done;
    if (n > 0) {
      int start = (int)(rand_r(&seed) % (unsigned)n);
      for (int k = 0; k < n && pick < 0; k++) {
        int i = (start + k) % n;
        if (c->state[i] == 1) pick = i;
      }
    }
    if (pick >= 0) c->state[pick] = 2;
    rt_spill_loc loc = pick >= 0 ? c->locs[pick] : (rt_spill_loc){0};
    pthread_mutex_unlock(&c->lock);
    if (pick < 0) {
      if (done) break;
      sched_yield();
      continue;
    }
    ray_status s = rt_spill_read(c->d, &loc, buf);
    bool ok = s == RAY_OK;
    for (size_t k = 0; ok && k < loc.size; k++) ok = buf[k] == byte_at((uint64_t)pick, k);
    bool forget = rand_r(&seed) % 2 == 0;
    if (forget) rt_spill_forget(c->d, &loc);
    pthread_mutex_lock(&c->lock);
    if (!ok) {
      c->errors++;
      snprintf(c->error, sizeof c->error, "record %d (%zu bytes): %s", pick, (size_t)loc.size,
               s == RAY_OK ? "wrong bytes" : ray_last_error());
    }
    c->state[pick] = forget ? 3 : 1;
    pthread_mutex_unlock(&c->lock);
  }
  free(buf);
  return NULL;
}

static void test_concurrent_reads_and_forgets_while_one_thread_writes(void **state) {
  fixture *fx = *state;
  conc *c = calloc(1, sizeof *c);
  c->d = &fx->d;
  pthread_mutex_init(&c->lock, NULL);
  pthread_t w, r[CONC_READERS];
  assert_int_equal(pthread_create(&w, NULL, conc_writer, c), 0);
  for (int i = 0; i < CONC_READERS; i++)
    assert_int_equal(pthread_create(&r[i], NULL, conc_reader, c), 0);
  pthread_join(w, NULL);
  for (int i = 0; i < CONC_READERS; i++) pthread_join(r[i], NULL);
  if (c->errors) fail_msg("%d errors, last: %s", c->errors, c->error);
  /* The rest read back too, and forgetting them all leaves nothing. */
  unsigned char *buf = malloc(2 * MiB);
  uint64_t left = 0;
  for (int i = 0; i < CONC_RECORDS; i++) {
    if (c->state[i] != 1) continue;
    left += c->locs[i].size;
    assert_int_equal(rt_spill_read(&fx->d, &c->locs[i], buf), RAY_OK);
  }
  assert_int_equal(rt_spill_bytes(&fx->d), left);
  for (int i = 0; i < CONC_RECORDS; i++)
    if (c->state[i] == 1) rt_spill_forget(&fx->d, &c->locs[i]);
  assert_int_equal(rt_spill_bytes(&fx->d), 0);
  assert_int_equal(count_spill_files(fx->dir), 1);
  free(buf);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checksum_vector_and_portable_versions_agree),
      cmocka_unit_test(test_checksum_sees_every_flipped_bit_and_the_length),
      cmocka_unit_test_setup_teardown(test_round_trip_of_many_sizes_is_byte_identical, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_small_objects_fuse_into_one_or_two_files, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_files_roll_over_at_the_target_size, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flipped_payload_byte_is_lost_and_neighbours_still_read,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_big_records_map_verified_in_place, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flipped_header_byte_is_lost, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncated_file_is_a_short_read, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_forgetting_every_record_deletes_files_and_empties_the_current, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forgetting_a_large_record_punches_its_pages, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          test_injected_write_failure_leaves_nothing_and_the_next_write_works, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_size_limit_fails_the_write_with_eio, setup,
                                      teardown),
      cmocka_unit_test(test_open_fails_naming_a_path_that_cannot_be_created),
      cmocka_unit_test(test_open_creates_parents_and_close_removes_only_what_it_made),
      cmocka_unit_test(test_default_open_removes_dead_processes_dirs_only),
      cmocka_unit_test(test_default_dir_that_exists_is_removed_at_close),
      cmocka_unit_test_setup_teardown(test_concurrent_reads_and_forgets_while_one_thread_writes,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
