/*
 * spill.c - moving objects out of memory and back: the spiller thread,
 * asking it for room, and restoring on access.
 *
 * Algorithm and trade-offs:
 *  - When a reservation does not fit (memory.c), the reserving thread asks
 *    the spiller for room and sleeps until a round that began after its ask
 *    has ended. A round takes victims from the tails of the stripes' LRU
 *    lists, round robin from a moving cursor (each list holds exactly the
 *    entries that may go, entry.h), writes them to fused spill files in
 *    batches (spillfile.c), and gives their memory back, until it has freed
 *    what was asked (at least RT_SPILL_MIN_ROUND, so that a stream of small
 *    puts does not wake the thread per object) or nothing more can go.
 *  - No lock is held across I/O. A victim is taken off its LRU list and
 *    marked SPILLING under its stripe lock, with one ref held by the
 *    spiller so it cannot be freed; the write runs unlocked; the commit
 *    retakes the lock and drops the buffer only if the object still has no
 *    view and no pin (a get may have taken a view meanwhile: the bytes
 *    never change, so the copy stays valid as the object's disk copy).
 *  - Views of a spillable object are taken under its stripe lock
 *    (rt_store_view_spillable), which is where a view of an object that is
 *    out finds it out and restores it. The first thread restores (RESTORING,
 *    then reads unlocked into fresh memory that it reserved like a put);
 *    others wait on the stripe's condition variable, so one object is read
 *    once. The restorer takes its view in the same critical section that
 *    ends the restore, so a restored object is never a victim before the
 *    view it was restored for.
 *  - The spiller never waits for memory and never takes a stripe lock while
 *    holding its own; a restorer holds no lock while it waits for room. So
 *    a restore that needs room can always be served by spilling others.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/prim.h"
#include "store/store_int.h"

/* The most a round frees beyond what was asked (it frees at least a 16th of
 * the limit, up to this), and the most one batch writes. */
#define RT_SPILL_MIN_ROUND ((size_t)8 << 20)
#define RT_SPILL_BATCH_BYTES ((size_t)64 << 20)
#define RT_SPILL_BATCH_MAX 1024

static rt_spill_loc loc_of(const rt_entry *e) {
  rt_spill_loc loc;
  memcpy(&loc, e->inl, sizeof loc);
  return loc;
}

static void set_loc(rt_entry *e, const rt_spill_loc *loc) {
  memcpy(e->inl, loc, sizeof *loc);
}

_Static_assert(sizeof(rt_spill_loc) <= RT_ENTRY_LAST_USE_AT &&
                   RT_ENTRY_LAST_USE_AT + sizeof(uint64_t) <= RT_INLINE_MAX,
               "a spill location and a last-use stamp fit in an entry's inline area");

void rt_spill_forget_entry(rt_store *st, rt_entry *e) {
  if (!(e->locked_flags & RT_LF_DISK)) return;
  rt_spill_loc loc = loc_of(e);
  rt_spill_forget(&st->disk, &loc);
  e->locked_flags &= (uint16_t) ~(RT_LF_DISK | RT_LF_OUT);
}

/* ------------------------------------------------------------------------ */
/* Choosing and committing victims                                          */
/* ------------------------------------------------------------------------ */

typedef struct victim {
  uint32_t slot;
  rt_entry *e;
} victim;

/* What an entry's bytes in memory are, to free once unlocked. */
typedef struct mem_copy {
  void *data;
  rt_aux aux;
  uint16_t flags; /* the entry's, for the buffer's kind */
  bool mapped;    /* a map of its spill record (rt_spill_map), else its buffer */
} mem_copy;

/* Moves an entry out of memory under its stripe lock: its disk copy (loc
 * in inl) takes over. Returns what the caller frees once unlocked (taken
 * now: the entry may be freed as soon as the lock goes). */
static mem_copy commit_out(rt_entry *e) {
  mem_copy m = {e->data, e->aux, e->flags, (e->locked_flags & RT_LF_MAPPED) != 0};
  e->data = NULL;
  e->locked_flags = (uint16_t)((e->locked_flags & ~RT_LF_MAPPED) | RT_LF_DISK | RT_LF_OUT);
  return m;
}

void rt_store_free_in_memory(rt_store *st, uint16_t flags, size_t size, void *data, rt_aux aux,
                             bool mapped) {
  if (mapped)
    rt_spill_unmap(data, size);
  else
    rt_store_buffer_free(st, flags, data, aux);
}

/* After commit_out, with no lock held: frees the bytes and gives back
 * their memory. */
static void release_out(rt_store *st, size_t size, mem_copy m) {
  rt_store_free_in_memory(st, m.flags, size, m.data, m.aux, m.mapped);
  mem_release(st, size);
  /* relaxed: counters (rt_store) */
  atomic_fetch_add_explicit(&st->spills, 1, memory_order_relaxed);
}

/* The last-use stamp of stripe i's LRU tail (UINT64_MAX: empty), read
 * under the stripe lock. */
static uint64_t tail_stamp(rt_store *st, rt_stripe *sp) {
  RT_ASSERT_STRIPE_HELD(sp);
  uint32_t slot = rt_lru_tail(&sp->lru);
  return slot == RT_NO_SLOT ? UINT64_MAX : entry_last_use(rt_slots_entry_live(&st->slots, slot));
}

/*
 * Collects up to one batch of victims, the globally least recently used
 * first: each stripe's list is in use order, so the oldest overall is the
 * oldest of the 64 tails (a snapshot of their stamps, refreshed for the
 * stripe a victim comes from; a tail that changed meanwhile is taken
 * anyway, which is as good). Entries that already have a disk copy go out
 * at once, no I/O: their bytes are added to *freed. The others are marked
 * SPILLING with a ref held for the spiller and returned in v. Returns how
 * many; 0 with nothing freed means nothing can be spilled.
 */
static size_t take_victims(rt_store *st, victim *v, size_t budget, size_t *freed) {
  uint64_t tails[RT_STRIPES];
  for (int i = 0; i < RT_STRIPES; i++) {
    stripe_lock(&st->stripes[i]);
    tails[i] = tail_stamp(st, &st->stripes[i]);
    stripe_unlock(&st->stripes[i]);
  }
  size_t n = 0, bytes = 0;
  while (n < RT_SPILL_BATCH_MAX && bytes < RT_SPILL_BATCH_BYTES && *freed + bytes < budget) {
    int i = 0;
    for (int k = 1; k < RT_STRIPES; k++)
      if (tails[k] < tails[i]) i = k;
    if (tails[i] == UINT64_MAX) break; /* every list is empty */
    rt_stripe *sp = &st->stripes[i];
    stripe_lock(sp);
    uint32_t slot = rt_lru_tail(&sp->lru);
    if (slot == RT_NO_SLOT) {
      tails[i] = UINT64_MAX;
      stripe_unlock(sp);
      continue;
    }
    rt_entry *e = rt_slots_entry_live(&st->slots, slot);
    rt_lru_remove(&sp->lru, &st->slots, slot);
    tails[i] = tail_stamp(st, sp);
    /* A last ref may have gone already: its holder frees the entry once it
     * gets this lock (hold_drop), and finds it off the list. Then it is not
     * ours to spill. Otherwise take a ref, so it stays alive through the
     * write; a CAS, since refs drop without the lock. relaxed: the lock
     * orders what we read of the entry; the count only has to be exact. */
    uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
    while (h != 0 &&
           !atomic_compare_exchange_weak_explicit(&e->holds, &h, h + RT_HOLD_REF,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
    if (h == 0) {
      stripe_unlock(sp);
      continue;
    }
    if (e->locked_flags & RT_LF_DISK) { /* restored before: its copy is still good */
      size_t size = e->size;
      mem_copy m = commit_out(e);
      stripe_unlock(sp);
      release_out(st, size, m);
      *freed += size;
      rt_store_drop_ref(st, slot, e); /* may free it: then its disk copy goes too */
      continue;
    }
    e->locked_flags |= RT_LF_SPILLING;
    stripe_unlock(sp);
    v[n++] = (victim){slot, e};
    bytes += e->size;
  }
  return n;
}

/* Writes a batch and commits what can go; returns the bytes given back.
 * On a write error, records it in the spiller and keeps every victim in
 * memory. */
static size_t spill_batch(rt_store *st, victim *v, size_t n, rt_spill_item *items,
                          rt_spill_loc *locs) {
  /* Unlocked reads of data and size: the entry is SPILLING (not on the LRU
   * list, so no other spiller), sealed and held by our ref; sealed bytes
   * never change and only a spiller frees them while the object lives. */
  for (size_t i = 0; i < n; i++) {
    items[i].data = v[i].e->data;
    items[i].size = v[i].e->size;
    /* The object ID, as ray_ref_id spells it: owner, then gen << 32 | slot. */
    uint64_t part[2] = {st->owner,
                        (uint64_t)atomic_load_explicit(&v[i].e->gen, memory_order_relaxed) << 32 |
                            v[i].slot};
    for (int k = 0; k < 16; k++)
      items[i].id[k] = (unsigned char)(part[k / 8] >> (56 - 8 * (k % 8)));
  }
  uint64_t t0 = rt_prim_now_ns();
  ray_status ws = rt_spill_write(&st->disk, items, n, locs);
  size_t freed = 0, written = 0;
  for (size_t i = 0; i < n; i++) {
    rt_entry *e = v[i].e;
    rt_stripe *sp = stripe_of(st, v[i].slot);
    mem_copy m = {NULL, {0}, 0, false};
    size_t size = e->size;
    stripe_lock(sp);
    e->locked_flags &= (uint16_t)~RT_LF_SPILLING;
    if (ws == RAY_OK) {
      set_loc(e, &locs[i]);
      e->locked_flags |= RT_LF_DISK;
      written += size;
      /* relaxed: views and pins change only under this lock (views of a
       * spillable entry: view_spillable and hold_drop). */
      if (e->pins == 0 && RT_HOLD_VIEWS(atomic_load_explicit(&e->holds, memory_order_relaxed)) == 0)
        m = commit_out(e);
    }
    if (!m.data) lru_update(st, sp, v[i].slot, e); /* stays in memory */
    stripe_unlock(sp);
    if (m.data) {
      release_out(st, size, m);
      freed += size;
    }
    rt_store_drop_ref(st, v[i].slot, e); /* may free it: then its disk copy goes too */
  }
  if (ws == RAY_OK) {
    /* relaxed: counters */
    atomic_fetch_add_explicit(&st->bytes_spilled_total, written, memory_order_relaxed);
    char what[48];
    snprintf(what, sizeof what, "spill %zu objects", n);
    st->ops.slice(st->ops.arg, "spill", what, n, RAY_OK, true, t0, rt_prim_now_ns());
  } else {
    pthread_mutex_lock(&st->spiller.lock);
    snprintf(st->spiller.round_error, sizeof st->spiller.round_error, "%s", ray_last_error());
    pthread_mutex_unlock(&st->spiller.lock);
  }
  return freed;
}

/* One round: frees at least `want` bytes (and RT_SPILL_MIN_ROUND) if it
 * can. Returns the bytes freed. */
static size_t spill_round(rt_store *st, size_t want, victim *v, rt_spill_item *items,
                          rt_spill_loc *locs) {
  /* At least a 16th of the limit (up to RT_SPILL_MIN_ROUND): a small store
   * does not lose more than it needs to. */
  size_t least = st->limit / 16 < RT_SPILL_MIN_ROUND ? st->limit / 16 : RT_SPILL_MIN_ROUND;
  size_t budget = want > least ? want : least;
  size_t freed = 0;
  for (;;) {
    size_t before = freed;
    size_t n = take_victims(st, v, budget, &freed);
    if (n) freed += spill_batch(st, v, n, items, locs);
    if (freed >= budget) break;
    if (n == 0 && freed == before) break; /* nothing more can go */
    pthread_mutex_lock(&st->spiller.lock);
    bool failed = st->spiller.round_error[0] != '\0';
    pthread_mutex_unlock(&st->spiller.lock);
    if (failed) break;
  }
  return freed;
}

_Thread_local bool rt_t_spiller;

static void *spiller_main(void *arg) {
  rt_store *st = arg;
  rt_t_spiller = true;
  rt_spiller *s = &st->spiller;
  victim *v = rt_malloc(RT_SPILL_BATCH_MAX * sizeof *v);
  rt_spill_item *items = rt_malloc(RT_SPILL_BATCH_MAX * sizeof *items);
  rt_spill_loc *locs = rt_malloc(RT_SPILL_BATCH_MAX * sizeof *locs);
  pthread_mutex_lock(&s->lock);
  for (;;) {
    while (!s->stop && s->served == s->asked) pthread_cond_wait(&s->work, &s->lock);
    if (s->stop) break;
    uint64_t upto = s->asked;
    size_t want = s->want;
    s->want = 0;
    s->round_error[0] = '\0';
    pthread_mutex_unlock(&s->lock);
    size_t freed = 0;
    if (v && items && locs) {
      freed = spill_round(st, want, v, items, locs);
    } else {
      pthread_mutex_lock(&s->lock);
      snprintf(s->round_error, sizeof s->round_error, "out of memory for the spiller's batch");
      pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    s->round_freed = freed;
    s->served = upto;
    pthread_cond_broadcast(&s->done);
  }
  pthread_mutex_unlock(&s->lock);
  free(v);
  free(items);
  free(locs);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Asking for room                                                          */
/* ------------------------------------------------------------------------ */

bool rt_spill_room(rt_store *st, size_t size, char *why, size_t whylen) {
  rt_spiller *s = &st->spiller;
  if (why && whylen) why[0] = '\0';
  if (!s->started) return false;
  st->ops.block_begin(st->ops.arg);
  pthread_mutex_lock(&s->lock);
  uint64_t ticket = ++s->asked;
  s->want += size;
  pthread_cond_signal(&s->work);
  while (!s->stop && s->served < ticket) pthread_cond_wait(&s->done, &s->lock);
  bool freed = s->round_freed > 0;
  if (why && whylen && s->round_error[0]) snprintf(why, whylen, "%s", s->round_error);
  pthread_mutex_unlock(&s->lock);
  st->ops.block_end(st->ops.arg);
  return freed;
}

ray_status rt_spill_start(rt_store *st, const rt_config *cfg) {
  rt_spiller *s = &st->spiller;
  ray_status rs = rt_spilldir_open(&st->disk, cfg->spill_dir, cfg->spill_dir_is_default);
  if (rs != RAY_OK) return rs;
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->work, NULL);
  pthread_cond_init(&s->done, NULL);
  int err = pthread_create(&s->thread, NULL, spiller_main, st);
  if (err) {
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    return rt_fail(RAY_EIO, "ray_init: cannot start the spill thread: %s", strerror(err));
  }
  s->started = true;
  return RAY_OK;
}

void rt_spill_stop(rt_store *st) {
  rt_spiller *s = &st->spiller;
  if (!s->started) return;
  pthread_mutex_lock(&s->lock);
  s->stop = true;
  pthread_cond_broadcast(&s->work);
  pthread_cond_broadcast(&s->done);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  pthread_cond_destroy(&s->done);
  pthread_cond_destroy(&s->work);
  pthread_mutex_destroy(&s->lock);
  s->started = false;
}

/* ------------------------------------------------------------------------ */
/* Restoring                                                                */
/* ------------------------------------------------------------------------ */

/* Waits on the stripe's condition variable; the Debug holder tag follows
 * the lock, which the wait gives up and takes back. */
static void stripe_wait_restored(rt_store *st, rt_stripe *sp) {
#ifndef NDEBUG
  atomic_store_explicit(&sp->holder, 0, memory_order_relaxed); /* see rt_stripe.holder */
#endif
  st->ops.block_begin(st->ops.arg);
  pthread_cond_wait(&sp->restored, &sp->lock);
  st->ops.block_end(st->ops.arg);
#ifndef NDEBUG
  atomic_store_explicit(&sp->holder, RT_STRIPE_TAG, memory_order_relaxed);
#endif
}

/* Reads an OUT entry back into fresh memory. Called and returns with the
 * stripe lock held; unlocks it around the reservation and the read. */
static ray_status restore_locked(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e,
                                 const char *fn) {
  RT_ASSERT_STRIPE_HELD(sp);
  e->locked_flags |= RT_LF_RESTORING;
  bool remote = e->locked_flags & RT_LF_REMOTE; /* bytes on another rank, not on disk */
  rt_remote_loc rloc;
  memcpy(&rloc, e->inl + RT_ENTRY_REMOTE_AT, sizeof rloc);
  rt_spill_loc loc = {0};
  if (!remote) loc = loc_of(e);
  size_t size = e->size;
  stripe_unlock(sp);

  uint64_t t0 = rt_prim_now_ns();
  void *data = NULL;
  uint16_t flags = 0;
  rt_aux aux = {0};
  /* Big records are mapped from the page cache and verified in place (no
   * copy: a restore then runs at the speed of the checksum); smaller ones
   * are read into a buffer of the kind a put of their size gets. */
  bool mapped = !remote && rt_spill_mappable(&loc);
  ray_status s = mem_reserve(st, fn, size);
  if (s == RAY_OK && remote) {
    if ((s = rt_store_alloc_apart(st, fn, size, &data, &flags, &aux.cap)) == RAY_OK) {
      st->ops.block_begin(st->ops.arg); /* waits on the network */
      s = st->ops.pull(st->ops.arg, &rloc, data, size);
      st->ops.block_end(st->ops.arg);
    }
    if (s != RAY_OK) {
      if (data) rt_store_buffer_free(st, flags, data, aux);
      data = NULL;
      mem_release(st, size);
    }
  } else if (s == RAY_OK) {
    if (mapped) {
      const void *m = NULL;
      s = rt_spill_map(&st->disk, &loc, &m);
      data = (void *)m;
    } else if ((s = rt_store_alloc_buffer(st, fn, size, NULL, &data, &flags, &aux.cap)) == RAY_OK) {
      s = rt_spill_read(&st->disk, &loc, data);
    }
    if (s == RAY_ELOST) {
      char id[33], why[400]; /* a copy: the message is rewritten below */
      snprintf(why, sizeof why, "%s", ray_last_error());
      s = rt_fail(RAY_ELOST, "%s: object %s is lost: %s", fn, ENTRY_ID(st, slot, e, id), why);
    }
    if (s != RAY_OK) {
      if (data && !mapped) rt_store_buffer_free(st, flags, data, aux);
      data = NULL;
      mem_release(st, size);
    }
  }
  char id[33], what[48];
  snprintf(what, sizeof what, "%s %s", remote ? "pull" : "restore", ENTRY_ID(st, slot, e, id));
  st->ops.slice(st->ops.arg, remote ? "pull" : "restore", what, slot, s, false, t0,
                rt_prim_now_ns());

  stripe_lock(sp);
  e->locked_flags &= (uint16_t)~RT_LF_RESTORING;
  if (s == RAY_OK) {
    e->data = data;
    if (mapped)
      e->locked_flags |= RT_LF_MAPPED;
    else
      e->aux = aux; /* a pool buffer's capacity; flags are the same kind as before */
    e->locked_flags &= (uint16_t) ~(RT_LF_OUT | RT_LF_REMOTE);
    lru_update(st, sp, slot, e); /* the caller's view or pin takes it off again */
    if (!remote) {               /* relaxed: counters */
      atomic_fetch_add_explicit(&st->restores, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&st->bytes_restored_total, size, memory_order_relaxed);
    }
  }
  pthread_cond_broadcast(&sp->restored);
  return s;
}

ray_status rt_store_bring_in(rt_store *st, rt_stripe *sp, uint32_t slot, rt_entry *e,
                             const char *fn) {
  RT_ASSERT_STRIPE_HELD(sp);
  while (e->locked_flags & RT_LF_OUT) {
    if (e->locked_flags & RT_LF_RESTORING) {
      stripe_wait_restored(st, sp);
      continue;
    }
    ray_status s = restore_locked(st, sp, slot, e, fn);
    if (s != RAY_OK) return s;
  }
  return RAY_OK;
}
