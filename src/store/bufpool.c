/*
 * bufpool.c - large-buffer reuse. See bufpool.h.
 *
 * Capacities are rounded up to 1/8 of the size's power of two, so buffers of
 * nearby sizes share a capacity and can be reused for each other; the
 * rounding costs address space, not memory: only the bytes asked for are
 * pre-faulted, and pages past them are touched only if a later, larger
 * object reuses the buffer.
 * A get takes the smallest kept buffer that fits and wastes at most 25%.
 */
#include <string.h>

#include "core/prim.h"
#include "store/bufpool.h"

static size_t round_cap(size_t size) {
  size_t pow = (size_t)1 << (63 - __builtin_clzll(size)); /* highest bit */
  size_t step = pow / 8;
  if (step < rt_prim_page_size()) step = rt_prim_page_size();
  return (size + step - 1) / step * step;
}

int rt_bufpool_init(rt_bufpool *bp, size_t budget) {
  memset(bp, 0, sizeof *bp);
  bp->budget = budget;
  return pthread_mutex_init(&bp->lock, NULL) ? -1 : 0;
}

void rt_bufpool_destroy(rt_bufpool *bp) {
  rt_bufpool_trim(bp);
  pthread_mutex_destroy(&bp->lock);
}

void *rt_bufpool_get(rt_bufpool *bp, size_t size, size_t *cap) {
  size_t want = round_cap(size);
  pthread_mutex_lock(&bp->lock);
  int best = -1;
  for (int i = 0; i < bp->nkept; i++) {
    size_t c = bp->kept[i].cap;
    if (c >= want && c - want <= want / 4 && (best < 0 || c < bp->kept[best].cap)) best = i;
  }
  if (best >= 0) {
    void *p = bp->kept[best].p;
    *cap = bp->kept[best].cap;
    bp->kept_bytes -= *cap;
    bp->kept[best] = bp->kept[--bp->nkept];
    pthread_mutex_unlock(&bp->lock);
    return p;
  }
  pthread_mutex_unlock(&bp->lock);
  void *p = rt_prim_map_large(want, size);
  if (p) *cap = want;
  return p;
}

void rt_bufpool_put(rt_bufpool *bp, void *p, size_t cap) {
  pthread_mutex_lock(&bp->lock);
  if (bp->nkept < RT_BUFPOOL_KEEP && bp->kept_bytes + cap <= bp->budget) {
    bp->kept[bp->nkept].p = p;
    bp->kept[bp->nkept].cap = cap;
    bp->nkept++;
    bp->kept_bytes += cap;
    p = NULL;
  }
  pthread_mutex_unlock(&bp->lock);
  if (p) rt_prim_unmap(p, cap);
}

void rt_bufpool_trim(rt_bufpool *bp) {
  pthread_mutex_lock(&bp->lock);
  for (int i = 0; i < bp->nkept; i++) rt_prim_unmap(bp->kept[i].p, bp->kept[i].cap);
  bp->nkept = 0;
  bp->kept_bytes = 0;
  pthread_mutex_unlock(&bp->lock);
}
