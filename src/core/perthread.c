/*
 * perthread.c - per-thread blocks on a list. See perthread.h.
 */
#include "core/perthread.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

int rt_perthread_init(rt_perthread_list *l, uint64_t epoch) {
  l->all = NULL;
  l->epoch = epoch;
  return pthread_mutex_init(&l->lock, NULL);
}

void rt_perthread_destroy(rt_perthread_list *l) {
  for (rt_perthread_node *n = l->all, *next; n; n = next) {
    next = n->next;
    free(n);
  }
  l->all = NULL;
  pthread_mutex_destroy(&l->lock);
}

void *rt_perthread_make(rt_perthread_list *l, rt_perthread_slot *slot, size_t size) {
  rt_perthread_node *n = rt_aligned_alloc(64, (size + 63) & ~(size_t)63);
  if (!n) return NULL;
  memset(n, 0, size);
  pthread_mutex_lock(&l->lock);
  n->next = l->all;
  l->all = n;
  pthread_mutex_unlock(&l->lock);
  slot->epoch = l->epoch;
  slot->mine = n;
  return n;
}
