/*
 * viewtab.c - the view table on core/idtable.c. See viewtab.h.
 */
#include "store/viewtab.h"

_Thread_local rt_idcache rt_t_view_cache;

int rt_viewtab_init(rt_viewtab *t, uint64_t epoch, uint32_t salt) {
  t->salt = salt;
  return rt_idtable_init(&t->tab, sizeof(rt_viewrec), RT_VIEW_CHUNK_SHIFT, RT_VIEW_MAX_CHUNKS,
                         epoch);
}

void rt_viewtab_destroy(rt_viewtab *t) {
  rt_idtable_destroy(&t->tab);
}
