/*
 * prim_linux.c - the Linux implementation of prim.h.
 */
#define _GNU_SOURCE
#include "core/alloc.h"
#include "core/prim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t rt_prim_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t rt_prim_deadline(int64_t timeout_ms) {
  if (timeout_ms < 0) return UINT64_MAX;
  /* Saturating: INT64_MAX ms in nanoseconds, or added to now, does not fit
   * in 64 bits, and a wrapped deadline would lie in the past. A deadline
   * past UINT64_MAX - 1 ns (584 years of uptime) is as good as none. */
  uint64_t now = rt_prim_now_ns(), ms = (uint64_t)timeout_ms;
  if (ms > (UINT64_MAX - 1 - now) / 1000000ull) return UINT64_MAX;
  return now + ms * 1000000ull;
}

bool rt_prim_futex_wait(_Atomic uint32_t *word, uint32_t expect, uint64_t deadline_ns) {
  struct timespec ts, *tsp = NULL;
  if (deadline_ns != UINT64_MAX) {
    if (rt_prim_now_ns() >= deadline_ns) return false;
    ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
    ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
    tsp = &ts;
  }
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a
   * spurious wake-up does not stretch the total wait. */
  long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expect, tsp,
                   NULL, FUTEX_BITSET_MATCH_ANY);
  if (r == -1 && errno == ETIMEDOUT) return false;
  return true;
}

void rt_prim_futex_wake(_Atomic uint32_t *word, int count) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, NULL, NULL, 0);
}

int rt_prim_cond_init_monotonic(pthread_cond_t *cond) {
  pthread_condattr_t ca;
  int err = pthread_condattr_init(&ca);
  if (err) return err;
  err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (!err) err = pthread_cond_init(cond, &ca);
  pthread_condattr_destroy(&ca);
  return err;
}

bool rt_prim_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns) {
  if (deadline_ns == UINT64_MAX) {
    (void)pthread_cond_wait(cond, mutex); /* fails only on misuse (EINVAL, EPERM) */
    return true;
  }
  struct timespec ts = {(time_t)(deadline_ns / 1000000000ull), (long)(deadline_ns % 1000000000ull)};
  return pthread_cond_timedwait(cond, mutex, &ts) == 0;
}

void rt_prim_yield(void) {
  sched_yield();
}

int rt_prim_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 1024 ? 1024 : (int)n);
}

uint64_t rt_prim_ram_bytes(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || psz <= 0) return 1ull << 30;
  return (uint64_t)pages * (uint64_t)psz;
}

void rt_prim_heap_trim(void) {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void rt_prim_unmap(void *p, size_t size) {
  if (p) munmap(p, size);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void *rt_prim_map_large(size_t size, size_t populate) {
  const size_t huge = (size_t)2 << 20;
  if (rt_alloc_inject()) return NULL; /* a test's injected failure (alloc.h) */
  /* Over-map by 2 MiB, then trim both ends to a 2 MiB boundary. */
  char *raw = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  char *p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
  if (p > raw) munmap(raw, (size_t)(p - raw));
  size_t tail = (size_t)(raw + size + huge - (p + size));
  if (tail) munmap(p + size, tail);
  (void)madvise(p, size, MADV_HUGEPAGE); /* advice only: fine if refused */
  if (populate > size) populate = size;
  (void)madvise(p, populate, MADV_POPULATE_WRITE); /* EINVAL before Linux 5.14: faults later */
  return p;
}

size_t rt_prim_page_size(void) {
  long psz = sysconf(_SC_PAGESIZE);
  return psz > 0 ? (size_t)psz : 4096;
}

bool rt_prim_punch_hole(int fd, uint64_t off, uint64_t len) {
#if defined(FALLOC_FL_PUNCH_HOLE) && defined(FALLOC_FL_KEEP_SIZE)
  if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off) return false;
  return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0;
#else
  (void)fd, (void)off, (void)len;
  return false;
#endif
}

void rt_prim_random(void *buf, size_t n) {
  unsigned char *b = buf;
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(b + got, n - got, GRND_NONBLOCK);
    if (r <= 0) break;
    got += (size_t)r;
  }
  if (got < n) { /* no entropy yet: mix clock, pid and address bits */
    uint64_t x = rt_prim_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)buf;
    for (; got < n; got++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b[got] = (unsigned char)x;
    }
  }
}

uint32_t rt_prim_pid(void) {
  return (uint32_t)getpid();
}

uint32_t rt_prim_tid(void) {
  return (uint32_t)syscall(SYS_gettid);
}
