/*
 * prim.h - every OS-specific call rayc makes, behind one narrow header
 * (mimalloc's prim.h habit): futex wait/wake, the monotonic clock, condition
 * variables on it, yielding, page mappings, hole punching in files, and the
 * CPU/RAM counts. Only prim_linux.c includes system headers beyond libc's
 * portable ones and pthread.h (threads, mutexes and condition variables are
 * POSIX and used directly elsewhere; what needs a clock or a scheduler call
 * goes through here).
 */
#ifndef RT_PRIM_H
#define RT_PRIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic clock in nanoseconds. */
uint64_t rt_prim_now_ns(void);

/* The absolute monotonic deadline for a ray timeout_ms: UINT64_MAX (none)
 * for a negative one and for one so long that now + ms does not fit in 64
 * bits of nanoseconds (about 584 years: INT64_MAX, INT64_MAX / 2), now for
 * 0, now + ms otherwise. */
uint64_t rt_prim_deadline(int64_t timeout_ms);

/*
 * Futex on a 32-bit atomic word. wait sleeps while *word == expect, until a
 * wake, a spurious wake-up, or the absolute monotonic deadline_ns
 * (UINT64_MAX: none). Returns false only when the deadline has passed.
 * Callers always re-check their condition in a loop.
 */
bool rt_prim_futex_wait(_Atomic uint32_t *word, uint32_t expect, uint64_t deadline_ns);
void rt_prim_futex_wake(_Atomic uint32_t *word, int count); /* count INT32_MAX: all */

/* Initialises a condition variable whose timed waits measure deadlines on
 * the monotonic clock, as rt_prim_deadline's are (the wall clock may jump).
 * Returns 0 or an errno value, as pthread_cond_init does. */
int rt_prim_cond_init_monotonic(pthread_cond_t *cond);

/* Waits on cond (initialised by rt_prim_cond_init_monotonic), with mutex
 * held, until a signal, a spurious wake-up, or the absolute monotonic
 * deadline_ns (UINT64_MAX: none). Returns false only when a timed wait
 * ended without a wake-up (the deadline passed, or the wait failed).
 * Callers re-check their condition in a loop. */
bool rt_prim_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns);

/* Gives the CPU to another runnable thread (sched_yield). */
void rt_prim_yield(void);

/* Number of online CPUs (>= 1) and bytes of physical RAM. */
int rt_prim_cpu_count(void);
uint64_t rt_prim_ram_bytes(void);

/* Gives the C heap's free pages back to the OS (glibc: malloc_trim, which
 * also releases free pages inside the per-thread arenas; elsewhere a
 * no-op). For ray_shutdown, after it freed everything. */
void rt_prim_heap_trim(void);

/* Unmaps pages from rt_prim_map_large. */
void rt_prim_unmap(void *p, size_t size);
size_t rt_prim_page_size(void);
/* Pages for a large buffer, 2 MiB aligned, advised for transparent huge pages
 * and pre-faulted in one call (MADV_POPULATE_WRITE where the kernel has it):
 * first-touch page faults run at ~0.3 GB/s on this class of machine, a
 * populated huge-page mapping at ~6 GB/s. Only the first `populate` bytes are
 * pre-faulted. Release with rt_prim_unmap(p, size). */
void *rt_prim_map_large(size_t size, size_t populate);

/* Releases the disk blocks of [off, off + len) of the file fd, keeping its
 * size (Linux: fallocate PUNCH_HOLE | KEEP_SIZE); the range reads back as
 * zeros. False where the OS or the filesystem cannot (the caller then just
 * keeps the space until the file goes). */
bool rt_prim_punch_hole(int fd, uint64_t off, uint64_t len);

/* Random bytes from the OS, falling back to clock/pid mixing. */
void rt_prim_random(void *buf, size_t n);
uint32_t rt_prim_pid(void);
/* The calling thread's id (Linux: gettid); equal to rt_prim_pid() on the
 * process's main thread. */
uint32_t rt_prim_tid(void);

/* Polite spin-wait hint for the CPU. */
static inline void rt_prim_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
