/*
 * store.c - the store's life (init, destroy), how calls find it, the hooks
 * to the layers above, and object IDs. See store.h for the layout of the
 * store's sources and what each file does.
 */
#include <stdlib.h>
#include <string.h>

#include "core/prim.h"
#include "store/store_int.h"

_Atomic(rt_store *) rt_g_store;

#ifndef NDEBUG
_Thread_local char rt_t_stripe_tag;
#endif

rt_store *rt_store_not_running(const char *fn) {
  (void)rt_not_running(fn);
  return NULL;
}

int rt_store_stripe_of(const ray_ref *ref) {
  rt_store *st = rt_store_current();
  uint32_t slot;
  if (!st || !rt_handle_resolve(&st->slots, ref, &slot)) return -1;
  return (int)(slot & (RT_STRIPES - 1));
}

void rt_store_id_hex(const rt_store *st, uint32_t slot, uint32_t gen, char hex[33]) {
  static const char digits[] = "0123456789abcdef";
  uint64_t part[2] = {st->owner, ((uint64_t)gen << 32) | slot};
  for (int p = 0; p < 2; p++)
    for (int i = 0; i < 16; i++) hex[p * 16 + i] = digits[(part[p] >> (60 - 4 * i)) & 15];
  hex[32] = '\0';
}

ray_status rt_store_bad_handle(const char *fn, const void *h) {
  if (!h) return rt_fail(RAY_EINVAL, "%s: ref is NULL", fn);
  return rt_fail(RAY_EINVAL, "%s: ref %p is released or invalid", fn, h);
}

/* ------------------------------------------------------------------------ */
/* Hooks to the layers above                                                */
/* ------------------------------------------------------------------------ */

/* Until the runtime installs its hooks: no helping, no running producers,
 * and blocking tells nobody (as for a thread outside the pool). */
static bool no_help(void *arg) {
  (void)arg;
  return false;
}
static void no_block(void *arg) {
  (void)arg;
}
static bool no_producer(void *arg, ray_ref *ref) {
  (void)arg;
  (void)ref;
  return false;
}
static void no_slice(void *arg, const char *kind, const char *name, uint64_t id, ray_status status,
                     bool io_thread, uint64_t start_ns, uint64_t end_ns) {
  (void)arg, (void)kind, (void)name, (void)id, (void)status, (void)io_thread, (void)start_ns,
      (void)end_ns;
}

static ray_status no_pull(void *arg, const rt_remote_loc *loc, void *buf, size_t size) {
  (void)arg, (void)buf, (void)size;
  return rt_fail(RAY_ELOST, "object of rank %d: no cluster to fetch it from", (int)loc->holder);
}
static void no_remote_freed(void *arg, const rt_remote_loc *loc) {
  (void)arg, (void)loc;
}

void rt_store_set_ops(rt_store *st, const rt_store_ops *ops) {
  st->ops = *ops;
  if (!st->ops.pull) st->ops.pull = no_pull;
  if (!st->ops.remote_freed) st->ops.remote_freed = no_remote_freed;
}

/* ------------------------------------------------------------------------ */
/* Store life                                                               */
/* ------------------------------------------------------------------------ */

ray_status rt_store_init(rt_store *st, const rt_config *cfg, uint64_t epoch) {
  memset(st, 0, sizeof *st);
  st->ops = (rt_store_ops){NULL,        no_help,  no_block, no_block,
                           no_producer, no_slice, no_pull,  no_remote_freed};
  uint32_t rnd[3];
  rt_prim_random(rnd, sizeof rnd);
  st->owner = ((uint64_t)rnd[0] << 32) | (rnd[1] ^ rt_prim_pid());
  st->limit = cfg->memory_limit;
  st->put_timeout_ms = cfg->put_timeout_ms;
  if (rt_slots_init(&st->slots, epoch, rnd[2]) != 0)
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory for the object table");
  if (rt_viewtab_init(&st->views, epoch, rnd[2] ^ rnd[0]) != 0) {
    rt_slots_destroy(&st->slots);
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory for the view table");
  }
  size_t budget = st->limit / 4 < ((size_t)1 << 30) ? st->limit / 4 : ((size_t)1 << 30);
  rt_bufpool_init(&st->pool, budget);
  for (int i = 0; i < RT_STRIPES; i++) {
    pthread_mutex_init(&st->stripes[i].lock, NULL);
    pthread_cond_init(&st->stripes[i].restored, NULL);
    rt_lru_init(&st->stripes[i].lru);
  }
  pthread_mutex_init(&st->mem_lock, NULL);
  pthread_mutex_init(&st->accounts_lock, NULL);
  rt_credits_init(&st->credits, epoch);
  rt_counts_init(&st->counts, epoch);
  rt_prim_cond_init_monotonic(&st->mem_cond); /* deadlines are monotonic */
  ray_status s = rt_report_start(st);
  if (s == RAY_OK) s = rt_spill_start(st, cfg);
  if (s != RAY_OK) {
    rt_store_destroy(st);
    return s;
  }
  st->reporter.ready = true; /* shutdown may print the report from now on */
  return RAY_OK;
}

void rt_store_destroy(rt_store *st) {
  rt_report_stop(st); /* first: the reporter thread and the spiller walk the entries */
  rt_spill_stop(st);
  /* Before anything is freed: the report asked for with RAY_MEMORY_REPORT,
   * and who made what leaked, for the warning below. relaxed: a counter,
   * exact now that no other thread uses the store. */
  rt_report_at_shutdown(st);
  rt_leaks leaks = {0};
  if (atomic_load_explicit(&st->objects, memory_order_relaxed)) rt_report_leaks(st, &leaks);
  /* relaxed loads below: ray_shutdown stopped every other thread that
   * used the store (runtime.c), and their work happens before this. */
  uint64_t live = 0, refs = 0, views = 0;
  uint32_t nchunks = st->slots.tab.nchunks;
  for (uint32_t c = 0; c < nchunks; c++) {
    rt_entry *chunk = atomic_load_explicit(&st->slots.tab.chunks[c], memory_order_relaxed);
    for (uint32_t i = 0; i < RT_CHUNK_SLOTS; i++) {
      rt_entry *e = &chunk[i];
      if ((atomic_load_explicit(&e->state, memory_order_relaxed) & RT_ST_MASK) == RT_ST_FREE)
        continue;
      uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
      live++;
      refs += RT_HOLD_REFS(h);
      views += RT_HOLD_VIEWS(h);
      /* Release the buffer only: contained refs of a refs object belong to
       * entries that this same sweep frees, and so does an alias's target. */
      bool out = (e->flags & RT_EF_SPILLABLE) && (e->locked_flags & RT_LF_OUT);
      bool mapped = (e->flags & RT_EF_SPILLABLE) && (e->locked_flags & RT_LF_MAPPED);
      if (!out) rt_store_free_in_memory(st, e->flags, e->size, e->data, e->aux, mapped);
    }
  }
  if (live) {
    rt_warn("ray_shutdown: %llu objects were still alive: %llu refs and %llu views never "
            "released; they are freed now; made by:",
            (unsigned long long)live, (unsigned long long)refs, (unsigned long long)views);
    rt_report_leaks_warn(&leaks);
  }
  rt_bufpool_destroy(&st->pool); /* after the sweep: unmaps what it gave back */
  for (int i = 0; i < RT_STRIPES; i++) {
    pthread_mutex_destroy(&st->stripes[i].lock);
    pthread_cond_destroy(&st->stripes[i].restored);
  }
  if (st->disk.path) rt_spilldir_close(&st->disk); /* every spill file, and the directory */
  pthread_mutex_destroy(&st->mem_lock);
  rt_credits_destroy(&st->credits);
  rt_counts_destroy(&st->counts);
  for (uint32_t i = 1; st->accounts && i <= st->naccounts; i++) free(st->accounts[i]);
  free(st->accounts);
  pthread_mutex_destroy(&st->accounts_lock);
  pthread_cond_destroy(&st->mem_cond);
  rt_viewtab_destroy(&st->views);
  rt_slots_destroy(&st->slots);
}
