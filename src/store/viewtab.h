/*
 * viewtab.h - one record per live ray_view, so a view is released once.
 *
 * A ray_view is a plain struct the user may copy. If its release only named
 * the object, releasing a copy of a view that was already released would
 * drop a hold that belongs to another, live view of the same object, which
 * could then be freed under its reader. So every view from ray_get owns a
 * record here, and the view's priv_ names the record and the record's
 * sequence number at the time: a release claims the record if it still holds
 * that number (see rt_viewtab_close for why a load and a store do), and
 * moves it on. A copy released late finds another number (the record was
 * released, and maybe reused by another get) and is reported instead.
 *
 * Records and free-record caches are a core/idtable.h table, as entries
 * are: a lookup is two loads with no lock, and a get + release on one
 * thread touches no shared line but the record's own.
 *
 * Encoding of priv_: ((seq ^ salt) << 32) | (index + 1). seq is odd while a
 * view holds the record and even while it is free. The salt is new per
 * runtime, so a view kept across ray_shutdown + ray_init does not name a
 * record of the new runtime (but for a 2^-32 chance).
 */
#ifndef RT_VIEWTAB_H
#define RT_VIEWTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/handle.h"
#include "core/idtable.h"
#include "ray.h"

#define RT_VIEW_CHUNK_SHIFT 12
#define RT_VIEW_CHUNK (1u << RT_VIEW_CHUNK_SHIFT)
#define RT_VIEW_MAX_CHUNKS (1u << 16) /* 268 M live views */

typedef struct rt_viewrec {
  /* Odd: held by the view whose priv_ carries this number. Only the release
   * that claims the record and the get that owns it change it. */
  _Atomic uint32_t seq;
  uint32_t unused_;
  ray_ref *ref; /* the object the view holds; written by the get that owns the record */
} rt_viewrec;

typedef struct rt_viewtab {
  rt_idtable tab; /* of rt_viewrec */
  uint32_t salt;
} rt_viewtab;

int rt_viewtab_init(rt_viewtab *t, uint64_t epoch, uint32_t salt);
void rt_viewtab_destroy(rt_viewtab *t);

/* The calling thread's free records (idtable.h). */
extern _Thread_local rt_idcache rt_t_view_cache;

static inline rt_viewrec *rt_viewtab_rec(rt_viewtab *t, uint32_t idx) {
  rt_viewrec *c = rt_idtable_chunk(&t->tab, idx);
  return c ? &c[idx & (RT_VIEW_CHUNK - 1)] : NULL;
}

/* A record for a new view of ref; its priv_ value goes to *priv. false when
 * memory ran out. */
static inline bool rt_viewtab_open(rt_viewtab *t, ray_ref *ref, void **priv) {
  uint32_t idx = rt_idtable_alloc(&t->tab, &rt_t_view_cache);
  if (__builtin_expect(idx == RT_IDTABLE_NONE, 0)) return false;
  rt_viewrec *r = rt_viewtab_rec(t, idx);
  if (!r) __builtin_unreachable(); /* a cached index's chunk exists */
  /* relaxed: the record is this thread's until a release claims it, and a
   * release learns of the view (and so of ref and seq) only through the
   * program's own hand-off of the view, which orders these stores first. A
   * stale copy's check only has to fail, which any other value makes it do. */
  uint32_t seq = atomic_load_explicit(&r->seq, memory_order_relaxed) + 1; /* odd: held */
  r->ref = ref;
  atomic_store_explicit(&r->seq, seq, memory_order_relaxed);
  *priv = rt_handle_pack(idx, seq, t->salt);
  return true;
}

/* Claims the record that priv names: returns the view's ref exactly once
 * per rt_viewtab_open, and NULL for a priv that names no held record
 * (released already, through this copy of the view or another, or not a
 * view of this runtime). */
static inline ray_ref *rt_viewtab_close(rt_viewtab *t, void *priv) {
  uint32_t idx = rt_handle_index(priv);
  rt_viewrec *r = rt_viewtab_rec(t, idx); /* NULL when out of range */
  uint32_t seq = rt_handle_gen(priv, t->salt);
  if (!r || !(seq & 1)) return NULL;
  /* A load and a store, not a CAS: a release in program order after another
   * release of the same view (the bug this catches: a struct copy released
   * later) sees the new number. Two releases of one view at the same
   * instant on two threads would be a data race in the program, like a
   * double free from two threads; a locked instruction here to catch that
   * too would cost a third of a small get. relaxed: what we read next (ref)
   * was written before the view reached this thread. */
  if (atomic_load_explicit(&r->seq, memory_order_relaxed) != seq) return NULL;
  atomic_store_explicit(&r->seq, seq + 1, memory_order_relaxed);
  ray_ref *ref = r->ref;
  rt_idtable_free(&t->tab, &rt_t_view_cache, idx);
  return ref;
}

#endif
