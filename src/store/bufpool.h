/*
 * bufpool.h - buffers for large objects, kept for reuse after free.
 *
 * Fresh pages cost a fault each on first touch (~0.3 GB/s here), which would
 * cap large puts far below memcpy speed. Large buffers therefore come from
 * 2 MiB-aligned, pre-faulted huge-page mappings, and a freed buffer is kept
 * (up to a byte budget) to serve the next put of a similar size: in steady
 * state a put is one memcpy into warm pages.
 *
 * The kept buffers are not payload and are not counted against the memory
 * limit; the budget bounds them (min(limit / 4, 1 GiB)), and the store trims
 * the pool whenever a put has to wait for memory.
 */
#ifndef RT_BUFPOOL_H
#define RT_BUFPOOL_H

#include <pthread.h>
#include <stddef.h>

#define RT_BUFPOOL_MIN ((size_t)256 << 10) /* smaller buffers come from malloc */
#define RT_BUFPOOL_KEEP 32                 /* buffers kept at most */

typedef struct rt_bufpool {
  pthread_mutex_t lock;
  size_t budget, kept_bytes; /* kept_bytes under lock */
  int nkept;
  struct {
    void *p;
    size_t cap;
  } kept[RT_BUFPOOL_KEEP];
} rt_bufpool;

int rt_bufpool_init(rt_bufpool *bp, size_t budget);
void rt_bufpool_destroy(rt_bufpool *bp);
/* A buffer of at least size bytes (size >= RT_BUFPOOL_MIN); *cap gets its
 * real capacity, to pass back to rt_bufpool_put. NULL when mmap fails. */
void *rt_bufpool_get(rt_bufpool *bp, size_t size, size_t *cap);
void rt_bufpool_put(rt_bufpool *bp, void *p, size_t cap);
/* Unmaps every kept buffer. */
void rt_bufpool_trim(rt_bufpool *bp);

#endif
