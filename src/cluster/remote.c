/*
 * remote.c - tasks and objects across ranks (remote.h).
 */
#ifdef RAY_HAVE_MPI /* the whole file: built only with MPI */
#include "cluster/remote.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/transport.h"
#include "cluster/wire.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/prim.h"

/* ------------------------------------------------------------------------ */
/* A small hash map: (u64, u32) keys to pointer-sized values, under the      */
/* caller's lock.                                                            */
/* ------------------------------------------------------------------------ */

typedef struct rnode {
  struct rnode *next;
  uint64_t k1;
  uint32_t k2;
  uint64_t v;
  void *p;
} rnode;

typedef struct rmap {
  rnode **b;
  size_t nb, n;
} rmap;

static size_t rhash(uint64_t k1, uint32_t k2) {
  uint64_t h = (k1 ^ ((uint64_t)k2 << 32) ^ k2) * 0x9E3779B97F4A7C15ull;
  return (size_t)(h ^ (h >> 29));
}

static rnode **rmap_slot(rmap *m, uint64_t k1, uint32_t k2) {
  if (!m->nb) return NULL;
  rnode **pp = &m->b[rhash(k1, k2) & (m->nb - 1)];
  while (*pp && ((*pp)->k1 != k1 || (*pp)->k2 != k2)) pp = &(*pp)->next;
  return pp;
}

static rnode *rmap_get(rmap *m, uint64_t k1, uint32_t k2) {
  rnode **pp = rmap_slot(m, k1, k2);
  return pp ? *pp : NULL;
}

/* The node for the key, added (zeroed) if absent; NULL when out of memory. */
static rnode *rmap_put(rmap *m, uint64_t k1, uint32_t k2) {
  rnode *n = rmap_get(m, k1, k2);
  if (n) return n;
  if (m->n + 1 > m->nb) { /* grow to keep chains short */
    size_t nb = m->nb ? m->nb * 2 : 64;
    rnode **b = rt_calloc(nb, sizeof *b);
    if (!b) return NULL;
    for (size_t i = 0; i < m->nb; i++)
      for (rnode *x = m->b[i], *next; x; x = next) {
        next = x->next;
        rnode **to = &b[rhash(x->k1, x->k2) & (nb - 1)];
        x->next = *to;
        *to = x;
      }
    free(m->b);
    m->b = b;
    m->nb = nb;
  }
  n = rt_calloc(1, sizeof *n);
  if (!n) return NULL;
  n->k1 = k1;
  n->k2 = k2;
  rnode **to = &m->b[rhash(k1, k2) & (m->nb - 1)];
  n->next = *to;
  *to = n;
  m->n++;
  return n;
}

static void rmap_del(rmap *m, uint64_t k1, uint32_t k2) {
  rnode **pp = rmap_slot(m, k1, k2);
  if (!pp || !*pp) return;
  rnode *n = *pp;
  *pp = n->next;
  free(n);
  m->n--;
}

static void rmap_free(rmap *m) {
  for (size_t i = 0; i < m->nb; i++)
    for (rnode *x = m->b[i], *next; x; x = next) {
      next = x->next;
      free(x);
    }
  free(m->b);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------ */
/* State                                                                    */
/* ------------------------------------------------------------------------ */

#define MAX_RANKS 4096

/* A task this rank runs for another: its returns, and a waiter on each. */
typedef struct exec {
  int src;
  uint64_t id;
  uint32_t nrets;
  _Atomic uint32_t pending; /* returns not ready yet, +1 while registering */
  ray_ref **rets;
  struct exec_waiter *w;
} exec;

typedef struct exec_waiter {
  rt_waiter base;
  exec *x;
} exec_waiter;

static struct {
  rt_store *st;
  rt_tasks *ts;
  int rank, size, workers;
  _Atomic bool on; /* the comm thread runs: the hooks may send */
  pthread_mutex_t lock;
  rmap shipped;         /* task id -> rt_task * (the reference ship owns) */
  rmap execs;           /* (id, src) -> exec * */
  rmap exports;         /* (handle, 0) -> count, p: the ref held */
  rmap proxies;         /* (holder key, holder) -> handle (weak) */
  rmap subs;            /* (handle, 0) -> struct sub *: ranks to tell when it ends */
  rmap pending;         /* (lender key, lender) -> struct pend *: copies waiting for RM_READY */
  int64_t *load;        /* per rank: inflight tasks it last reported; under lock */
  int64_t *outstanding; /* per rank: tasks shipped there and not done; under lock */
  _Atomic uint64_t received; /* tasks run for others */
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static rt_task_remote_ops g_task_ops;

/* ------------------------------------------------------------------------ */
/* Types and functions on the wire                                          */
/* ------------------------------------------------------------------------ */

/* Types seen only by name (not in a module every rank has): one
 * descriptor per name and size, kept until the process ends. */
typedef struct interned_type {
  struct interned_type *next;
  ray_type t;
} interned_type;
static interned_type *g_types;
static pthread_mutex_t g_types_lock = PTHREAD_MUTEX_INITIALIZER;

static void put_type(rt_wbuf *w, const ray_type *t) {
  uint32_t mod = UINT32_MAX;
  uint64_t off = 0;
  if (!t) t = &ray_type_bytes;
  if (!rt_cluster_encode_addr(t, &mod, &off)) mod = UINT32_MAX;
  RT_WPUT(w, mod);
  RT_WPUT(w, off);
  RT_WPUT(w, (uint64_t)t->elem_size);
  rt_wbuf_str(w, t->name);
}

static const ray_type *get_type(rt_rbuf *r) {
  uint32_t mod = 0;
  uint64_t off = 0, elem = 0;
  RT_RGET(r, mod);
  RT_RGET(r, off);
  RT_RGET(r, elem);
  const char *name = rt_rbuf_str(r);
  if (r->bad) return NULL;
  if (mod != UINT32_MAX) {
    const ray_type *t = rt_cluster_decode_addr(mod, off);
    if (t) return t;
  }
  pthread_mutex_lock(&g_types_lock);
  interned_type *it = g_types;
  while (it && !(it->t.elem_size == elem &&
                 ((!it->t.name && !name) || (it->t.name && name && !strcmp(it->t.name, name)))))
    it = it->next;
  if (!it && (it = rt_calloc(1, sizeof *it)) != NULL) {
    it->t.name = name ? rt_strdup(name) : NULL;
    it->t.elem_size = (size_t)elem;
    it->next = g_types;
    g_types = it;
  }
  pthread_mutex_unlock(&g_types_lock);
  return it ? &it->t : NULL;
}

/* ------------------------------------------------------------------------ */
/* Sending and dropping refs                                                */
/* ------------------------------------------------------------------------ */

static void send_rec(int dest, rt_wbuf *w) {
  if (w->oom || rt_cluster_send(dest, w->p, w->len) != RAY_OK) {
    /* Fail-stop: a lost control record would leave some rank waiting. */
    rt_warn("rayc: rank %d: cannot send a %zu-byte record to rank %d: %s; aborting the job", R.rank,
            w->len, dest, w->oom ? "out of memory" : ray_last_error());
    rt_cluster_abort();
  }
  free(w->p);
  *w = (rt_wbuf){0};
}

/* Counts one more lend of the object of h (held by the caller). */
static bool export_ref(ray_ref *h) {
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_put(&R.exports, (uint64_t)(uintptr_t)h, 0);
  if (n && n->v++ == 0) n->p = ray_ref_retain(h);
  pthread_mutex_unlock(&R.lock);
  return n != NULL;
}

static void send_drop(int lender, uint64_t key, uint32_t count) {
  if (lender < 0 || lender == R.rank) return;
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_DROP);
  RT_WPUT(&w, key);
  RT_WPUT(&w, count);
  send_rec(lender, &w);
}

/*
 * Describes the object of ref h for another rank. Failed: its error.
 * Sealed: size, type, and either its bytes (small, and in memory or on
 * disk here) or where they are, lent by this rank (export_ref). The object
 * must be ready (sealed or failed).
 */
/* Pending objects described in the record being built on this thread
 * (kind 5): their subscriptions are made once the record is queued
 * (subs_commit), so that the RM_READY that ends them cannot overtake it. */
#define MAX_PENDING_SUBS 1024
static _Thread_local struct {
  ray_ref *h[MAX_PENDING_SUBS];
  size_t n;
} t_subs;

static void put_ref(rt_wbuf *w, ray_ref *h);

static void put_refs_object(rt_wbuf *w, ray_ref *h) {
  ray_view v;
  if (rt_store_view(R.st, h, &ray_type_refs, "ray_put_refs", &v) != RAY_OK) {
    w->oom = true; /* cannot happen: a sealed refs object is in memory */
    return;
  }
  ray_ref *const *refs = v.data;
  uint32_t n = (uint32_t)(v.size / sizeof(ray_ref *));
  RT_WPUT(w, (uint8_t)4); /* refs: n descriptions follow */
  RT_WPUT(w, n);
  for (uint32_t i = 0; i < n; i++) put_ref(w, refs[i]);
  rt_store_view_drop(R.st, &v);
}

static void put_ref(rt_wbuf *w, ray_ref *h) {
  rt_store *st = R.st;
  uint32_t state = rt_store_state(st, h);
  if (state != RT_ST_FAILED && state != RT_ST_SEALED) { /* pending (in a refs object) */
    if (t_subs.n == MAX_PENDING_SUBS || !export_ref(h)) {
      w->oom = true;
      return;
    }
    t_subs.h[t_subs.n++] = h;
    RT_WPUT(w, (uint8_t)5); /* pending, lent: RM_READY will say how it ended */
    RT_WPUT(w, (int32_t)R.rank);
    RT_WPUT(w, (uint64_t)(uintptr_t)h);
    return;
  }
  if (state == RT_ST_FAILED) {
    const rt_error *e = rt_store_error(st, h);
    RT_WPUT(w, (uint8_t)1);
    RT_WPUT(w, (uint32_t)e->status);
    rt_wbuf_str(w, e->msg);
    rt_wbuf_str(w, e->task);
    rt_wbuf_str(w, e->reason);
    return;
  }
  size_t size = 0;
  const ray_type *type = NULL;
  (void)rt_store_info(st, h, &size, &type);
  if (type == &ray_type_refs) { /* its payload is handles of this rank: describe each */
    put_refs_object(w, h);
    return;
  }
  rt_remote_loc loc;
  bool local = true;
  bool remote = rt_store_remote_loc(st, h, &loc, &local);
  ray_view v = {0};
  if (size <= RT_REMOTE_INLINE && (!remote || local) &&
      rt_store_view(st, h, NULL, "ray_submit", &v) == RAY_OK) {
    RT_WPUT(w, (uint8_t)2); /* inline */
    RT_WPUT(w, (uint64_t)size);
    put_type(w, type);
    rt_wbuf_put(w, v.data, size);
    rt_store_view_drop(st, &v);
    return;
  }
  if (!export_ref(h)) {
    rt_warn("rayc: rank %d: out of memory lending an object; aborting the job", R.rank);
    rt_cluster_abort();
  }
  RT_WPUT(w, (uint8_t)3); /* lent */
  RT_WPUT(w, (uint64_t)size);
  put_type(w, type);
  RT_WPUT(w, (int32_t)R.rank);
  RT_WPUT(w, (uint64_t)(uintptr_t)h); /* lender key */
  if (remote && !local) {
    RT_WPUT(w, (int32_t)loc.holder);
    RT_WPUT(w, loc.holder_key);
  } else {
    RT_WPUT(w, (int32_t)R.rank);
    RT_WPUT(w, (uint64_t)(uintptr_t)h);
  }
}

/* A wire ref's fields. */
typedef struct wref {
  uint8_t kind; /* 1 failed, 2 inline, 3 lent, 4 refs (n follow in `refs`), 5 pending */
  uint32_t n;
  rt_rbuf refs; /* kind 4: a reader at the first of the n descriptions */
  ray_status status;
  const char *msg, *task, *reason;
  uint64_t size;
  const ray_type *type;
  const void *bytes;
  rt_remote_loc loc;
} wref;

static bool get_ref(rt_rbuf *r, wref *x) {
  memset(x, 0, sizeof *x);
  RT_RGET(r, x->kind);
  if (x->kind == 1) {
    uint32_t s = 0;
    RT_RGET(r, s);
    x->status = (ray_status)s;
    x->msg = rt_rbuf_str(r);
    x->task = rt_rbuf_str(r);
    x->reason = rt_rbuf_str(r);
  } else if (x->kind == 2 || x->kind == 3) {
    RT_RGET(r, x->size);
    x->type = get_type(r);
    if (x->kind == 2) {
      x->bytes = rt_rbuf_take(r, x->size);
    } else {
      int32_t lender = 0, holder = 0;
      RT_RGET(r, lender);
      RT_RGET(r, x->loc.lender_key);
      RT_RGET(r, holder);
      RT_RGET(r, x->loc.holder_key);
      x->loc.lender = lender;
      x->loc.holder = holder;
    }
  } else if (x->kind == 4) {
    RT_RGET(r, x->n);
    x->refs = *r;
    x->type = &ray_type_refs;
    for (uint32_t i = 0; i < x->n && !r->bad; i++) { /* skip them: read again when used */
      wref sub;
      if (!get_ref(r, &sub)) r->bad = true;
    }
  } else if (x->kind == 5) {
    int32_t lender = 0;
    RT_RGET(r, lender);
    RT_RGET(r, x->loc.lender_key);
    x->loc.lender = lender;
    x->loc.holder = -1;
    x->type = &ray_type_bytes; /* not known yet */
  } else {
    r->bad = true;
  }
  return !r->bad && (x->kind == 1 || x->type);
}

/* Ends the PENDING object of ref with what x describes, from rank src.
 * Errors name src. */
static ray_ref *take_ref(const wref *x, int src);

/* A new refs object here holding a copy of each ref x describes (kind 4);
 * NULL when out of memory. */
static ray_ref *take_refs_object(const wref *x, int src) {
  rt_rbuf r = x->refs;
  ray_ref **refs = rt_calloc(x->n ? x->n : 1, sizeof *refs);
  if (!refs) return NULL;
  uint32_t got = 0;
  bool ok = true;
  for (; got < x->n; got++) {
    wref sub;
    if (!get_ref(&r, &sub) || !(refs[got] = take_ref(&sub, src))) {
      ok = false;
      break;
    }
  }
  ray_ref *obj = NULL;
  if (ok && ray_put_refs(refs, x->n, &obj) != RAY_OK) obj = NULL;
  for (uint32_t i = 0; i < got; i++) ray_ref_release(refs[i]); /* the object holds them */
  free(refs);
  return obj;
}

static void end_with(ray_ref *ref, const wref *x, int src) {
  rt_store *st = R.st;
  char msg[700], reason[500];
  if (x->kind == 1) {
    snprintf(msg, sizeof msg, "rank %d: %s", src, x->msg ? x->msg : "failed");
    snprintf(reason, sizeof reason, "%s (on rank %d)", x->reason ? x->reason : "failed", src);
    rt_store_fail_pending(st, ref, x->status, msg, x->task, reason);
    return;
  }
  ray_status s = RAY_OK;
  if (x->kind == 2) {
    rt_payload p;
    if ((s = rt_store_payload_copy(st, "ray_get", x->bytes, x->size, x->type, &p)) == RAY_OK) {
      rt_store_seal_pending(st, ref, &p);
      return;
    }
  } else if (x->kind == 4) { /* a refs object of ours, then this one an alias of it */
    ray_ref *obj = take_refs_object(x, src);
    rt_payload p;
    s = obj ? rt_store_payload_alias(st, "ray_get", obj, &p) : RAY_ENOMEM;
    if (obj) ray_ref_release(obj); /* the alias holds it */
    if (s == RAY_OK) {
      rt_store_seal_pending(st, ref, &p);
      return;
    }
  } else if (x->kind == 5) { /* cannot happen: what ends a copy is never pending */
    s = rt_fail(RAY_EIO, "a malformed result");
  } else if (x->loc.holder == R.rank) { /* our own object came back: an alias of it */
    rt_payload p;
    s = rt_store_payload_alias(st, "ray_get", (ray_ref *)(uintptr_t)x->loc.holder_key, &p);
    send_drop(x->loc.lender, x->loc.lender_key, 1);
    if (s == RAY_OK) {
      rt_store_seal_pending(st, ref, &p);
      return;
    }
  } else {
    if (rt_store_seal_remote(st, ref, x->size, x->type, &x->loc, NULL, &s)) return;
    /* Not stored (cancelled meanwhile, or no memory): give the lend back. */
    send_drop(x->loc.lender, x->loc.lender_key, 1);
    if (s == RAY_OK) return;
  }
  snprintf(msg, sizeof msg, "an object from rank %d could not be stored: %s", src,
           ray_last_error());
  rt_store_fail_pending(st, ref, s, msg, NULL, msg);
}

/* A new ref here for what x describes (a task's argument). NULL only when
 * out of memory. */
typedef struct pend {
  struct pend *next;
  ray_ref *h; /* the producer's ref on the PENDING copy */
} pend;

static ray_ref *take_ref(const wref *x, int src) {
  rt_store *st = R.st;
  if (x->kind == 4) return take_refs_object(x, src);
  if (x->kind == 5) { /* pending: a copy that RM_READY ends */
    ray_ref *u = NULL;
    pend *pd = rt_calloc(1, sizeof *pd);
    if (!pd || rt_store_new_pending(st, "ray_get", NULL, RT_CREATOR_REMOTE, &u) != RAY_OK) {
      free(pd);
      send_drop(x->loc.lender, x->loc.lender_key, 1);
      return NULL;
    }
    pd->h = u; /* the entry's second ref, the producer's */
    pthread_mutex_lock(&R.lock);
    rnode *n = rmap_put(&R.pending, x->loc.lender_key, (uint32_t)x->loc.lender);
    if (n) {
      pd->next = n->p;
      n->p = pd;
    }
    pthread_mutex_unlock(&R.lock);
    if (!n) {
      free(pd);
      rt_store_fail_pending(st, u, RAY_ENOMEM, "out of memory for an object of another rank", NULL,
                            "out of memory");
      ray_ref_release(u);
      send_drop(x->loc.lender, x->loc.lender_key, 1);
    }
    return u;
  }
  if (x->kind == 3 && x->loc.holder == R.rank) { /* ours, lent back to us */
    ray_ref *h = ray_ref_retain((ray_ref *)(uintptr_t)x->loc.holder_key);
    send_drop(x->loc.lender, x->loc.lender_key, 1);
    return h;
  }
  if (x->kind == 3) { /* one copy per object per rank */
    pthread_mutex_lock(&R.lock);
    rnode *n = rmap_get(&R.proxies, x->loc.holder_key, (uint32_t)x->loc.holder);
    ray_ref *weak = n ? n->p : NULL;
    pthread_mutex_unlock(&R.lock);
    ray_ref *h = weak ? rt_store_try_retain(st, weak) : NULL; /* unlocked: see rt_remote_freed */
    if (h) {
      send_drop(x->loc.lender, x->loc.lender_key, 1); /* our copy has a lender already */
      return h;
    }
  }
  ray_ref *u = NULL;
  if (rt_store_new_pending(st, "ray_submit", NULL, RT_CREATOR_REMOTE, &u) != RAY_OK) {
    if (x->kind == 3) send_drop(x->loc.lender, x->loc.lender_key, 1);
    return NULL;
  }
  end_with(u, x, src);
  ray_ref_release(u); /* the producer's ref: the entry is ended */
  if (x->kind == 3 && rt_store_state(st, u) == RT_ST_SEALED) {
    pthread_mutex_lock(&R.lock);
    rnode *n = rmap_put(&R.proxies, x->loc.holder_key, (uint32_t)x->loc.holder);
    if (n) n->p = u;
    pthread_mutex_unlock(&R.lock);
  }
  return u;
}

/* ------------------------------------------------------------------------ */
/* Pending objects lent inside refs objects                                 */
/* ------------------------------------------------------------------------ */

typedef struct sub {
  rt_waiter base;
  ray_ref *h; /* held by its export while a copy waits for RM_READY */
  int *dests; /* one per copy made from a kind-5 description */
  size_t n, cap;
} sub;

static void subs_commit(int dest);

/* A subscribed object ended: one RM_READY per copy waiting for it. */
static void sub_fire(rt_waiter *w) {
  sub *sb = (sub *)w;
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_get(&R.subs, (uint64_t)(uintptr_t)sb->h, 0);
  if (n && n->p == sb) rmap_del(&R.subs, (uint64_t)(uintptr_t)sb->h, 0);
  pthread_mutex_unlock(&R.lock);
  size_t saved = t_subs.n; /* (a record may be in the making further up) */
  ray_ref **saved_h = saved ? rt_malloc(saved * sizeof *saved_h) : NULL;
  if (saved && !saved_h) rt_cluster_abort();
  if (saved) memcpy(saved_h, t_subs.h, saved * sizeof *saved_h);
  for (size_t i = 0; i < sb->n; i++) {
    t_subs.n = 0;
    rt_wbuf wb = {0};
    RT_WPUT(&wb, (uint8_t)RM_READY);
    RT_WPUT(&wb, (uint64_t)(uintptr_t)sb->h);
    put_ref(&wb, sb->h);
    send_rec(sb->dests[i], &wb);
    subs_commit(sb->dests[i]);
  }
  if (saved) memcpy(t_subs.h, saved_h, saved * sizeof *saved_h);
  free(saved_h);
  t_subs.n = saved;
  free(sb->dests);
  free(sb);
}

/* The record just queued for dest described pending objects: tell dest
 * when each ends (after the record, so the news cannot overtake it). */
static void subs_commit(int dest) {
  size_t count = t_subs.n;
  t_subs.n = 0;
  for (size_t i = 0; i < count; i++) {
    ray_ref *h = t_subs.h[i];
    bool first = false;
    pthread_mutex_lock(&R.lock);
    rnode *n = rmap_put(&R.subs, (uint64_t)(uintptr_t)h, 0);
    sub *sb = n ? n->p : NULL;
    if (n && !sb && (sb = rt_calloc(1, sizeof *sb)) != NULL) {
      sb->h = h;
      sb->base.fire = sub_fire;
      n->p = sb;
      first = true;
    }
    if (sb && sb->n == sb->cap) {
      size_t cap = sb->cap ? sb->cap * 2 : 4;
      int *d = rt_realloc(sb->dests, cap * sizeof *d);
      if (d) {
        sb->dests = d;
        sb->cap = cap;
      }
    }
    bool ok = sb && sb->n < sb->cap;
    if (ok) sb->dests[sb->n++] = dest;
    pthread_mutex_unlock(&R.lock);
    if (!ok) { /* fail-stop: a copy would wait forever */
      rt_warn("rayc: rank %d: out of memory tracking a lent object; aborting the job", R.rank);
      rt_cluster_abort();
    }
    /* The first copy registers the waiter, which fires at once if the
     * object ended meanwhile. Later copies join the list under the lock;
     * sub_fire takes the list out of the table under it first, so a copy
     * that comes after that makes a new list and a new waiter. */
    if (first && !rt_store_add_waiter(R.st, h, &sb->base)) sub_fire(&sb->base);
  }
}

/* RM_READY: a pending object lent to us has ended; one waiting copy ends
 * with it, and the lend of the pending description goes back. */
static void on_ready(int src, rt_rbuf *r) {
  uint64_t key = 0;
  RT_RGET(r, key);
  wref x;
  if (!get_ref(r, &x))
    x = (wref){.kind = 1, .status = RAY_EIO, .msg = "a malformed message", .reason = "malformed"};
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_get(&R.pending, key, (uint32_t)src);
  pend *pd = n ? n->p : NULL;
  if (pd) {
    n->p = pd->next;
    if (!n->p) rmap_del(&R.pending, key, (uint32_t)src);
  }
  pthread_mutex_unlock(&R.lock);
  if (pd) {
    end_with(pd->h, &x, src);
    ray_ref_release(pd->h); /* the producer's ref */
    free(pd);
  } else if (x.kind == 3) {
    send_drop(x.loc.lender, x.loc.lender_key, 1); /* nobody waits: give the new lend back */
  }
  send_drop(src, key, 1); /* the pending description's lend */
}

/* ------------------------------------------------------------------------ */
/* Shipping tasks                                                           */
/* ------------------------------------------------------------------------ */

static int task_count(void *arg) {
  (void)arg;
  return R.size;
}

static bool task_can_ship(void *arg, ray_task_fn fn) {
  (void)arg;
  uint32_t mod;
  uint64_t off;
  return rt_cluster_encode_addr((const void *)fn, &mod, &off);
}

static int64_t local_inflight(void) {
  rt_tasks *ts = R.ts;
  /* relaxed: counters for an estimate */
  uint64_t in = atomic_load_explicit(&ts->submitted, memory_order_relaxed);
  uint64_t out = atomic_load_explicit(&ts->finished, memory_order_relaxed) +
                 atomic_load_explicit(&ts->failed, memory_order_relaxed) +
                 atomic_load_explicit(&ts->cancelled, memory_order_relaxed);
  return in > out ? (int64_t)(in - out) : 0;
}

/*
 * The default policy: here while the local workers keep up (fewer than two
 * tasks in flight per worker), else the rank with the least work we know
 * of (what it last reported plus what we sent it since), preferring the
 * rank whose memory holds most of the task's argument bytes when it is
 * not busier than we are.
 */
static int task_place(void *arg, rt_task *t, int want) {
  (void)arg;
  if (want >= 0) return want == R.rank ? -1 : want;
  if (R.size <= 1) return -1;
  rt_task *cur = rt_task_current();
  if (cur && cur->actor) return -1; /* an actor's work stays on its rank */
  for (uint32_t i = 0; i < t->nargs; i++)
    if (t->args[i].kind == RT_ARG_ACTOR) return -1;
  int64_t here = local_inflight();
  if (here <= 2 * (int64_t)R.workers) return -1;
  if (!task_can_ship(NULL, t->fn)) return -1; /* runs here, where its code is */
  /* Argument bytes by rank, for the objects that are ready. */
  int data_rank = -1;
  size_t data_max = 0;
  for (uint32_t i = 0; i < t->nargs; i++) {
    if (t->args[i].kind != RT_ARG_REF) continue;
    size_t size;
    const ray_type *type;
    if (!rt_store_info(R.st, t->args[i].ref, &size, &type)) continue;
    rt_remote_loc loc;
    bool local;
    int r = rt_store_remote_loc(R.st, t->args[i].ref, &loc, &local) && !local ? loc.holder : R.rank;
    if (size > data_max) data_max = size, data_rank = r;
  }
  pthread_mutex_lock(&R.lock);
  int best = -1;
  int64_t best_load = here;
  for (int r = 0; r < R.size; r++) {
    if (r == R.rank) continue;
    int64_t l = R.load[r] + R.outstanding[r];
    if (l < best_load) best_load = l, best = r;
  }
  if (data_rank >= 0 && data_max >= RT_REMOTE_INLINE) {
    if (data_rank == R.rank)
      best = -1;
    else if (R.load[data_rank] + R.outstanding[data_rank] < here)
      best = data_rank;
  }
  pthread_mutex_unlock(&R.lock);
  return best;
}

/* Fails the returns of a shipped task that could not be sent. */
static void ship_failed(rt_task *t, ray_status s, const char *why) {
  char msg[600];
  snprintf(msg, sizeof msg, "task '%s' could not be sent to rank %d: %s", t->name, t->node, why);
  rt_task_fail_returns(R.ts, t, s, msg, why);
  rt_task_end_shipped(R.ts, t, RT_SHIPPED_FAILED);
}

static void task_ship(void *arg, rt_task *t) {
  (void)arg;
  uint32_t mod = 0;
  uint64_t off = 0;
  if (!rt_cluster_encode_addr((const void *)t->fn, &mod, &off)) {
    ship_failed(t, RAY_EINVAL, "its function is in no module every rank loaded at ray_init");
    return;
  }
  for (uint32_t i = 0; i < t->nargs; i++)
    if (t->args[i].kind == RT_ARG_ACTOR) {
      ship_failed(t, RAY_EINVAL, "it takes an actor handle, and actors stay on their rank");
      return;
    }
  rt_wbuf w = {0};
  t_subs.n = 0;
  RT_WPUT(&w, (uint8_t)RM_TASK);
  RT_WPUT(&w, t->id);
  RT_WPUT(&w, mod);
  RT_WPUT(&w, off);
  rt_wbuf_str(&w, t->name);
  RT_WPUT(&w, (int32_t)t->max_retries);
  RT_WPUT(&w, t->nrets);
  RT_WPUT(&w, t->nargs);
  for (uint32_t i = 0; i < t->nargs; i++) {
    rt_task_arg *a = &t->args[i];
    if (a->kind == RT_ARG_REF) {
      RT_WPUT(&w, (uint8_t)RT_ARG_REF);
      put_ref(&w, a->ref);
    } else {
      RT_WPUT(&w, (uint8_t)RT_ARG_VALUE);
      put_type(&w, a->type);
      RT_WPUT(&w, (uint64_t)a->size);
      rt_wbuf_put(&w, a->data, a->size);
    }
  }
  if (w.oom || w.len > RT_TP_RECORD_MAX) {
    free(w.p);
    ship_failed(t, w.oom ? RAY_ENOMEM : RAY_EINVAL,
                w.oom ? "out of memory" : "its value arguments are too large to send (put them)");
    return;
  }
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_put(&R.shipped, t->id, 0);
  if (n) {
    n->p = t;
    R.outstanding[t->node]++;
  }
  pthread_mutex_unlock(&R.lock);
  if (!n) {
    free(w.p);
    ship_failed(t, RAY_ENOMEM, "out of memory");
    return;
  }
  send_rec(t->node, &w);
  subs_commit(t->node);
  /* A cancel that came before the send went nowhere: say it now (see
   * task.c, cancel_task). acquire: pairs with the canceller's release. */
  if (atomic_load_explicit(&t->cancel, memory_order_acquire)) {
    RT_WPUT(&w, (uint8_t)RM_CANCEL);
    RT_WPUT(&w, t->id);
    RT_WPUT(&w, (uint8_t)0);
    send_rec(t->node, &w);
  }
}

static void task_cancel(void *arg, rt_task *t, bool recursive) {
  (void)arg;
  if (!t->shipped) return; /* ship sends the cancel itself once it has sent the task */
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_CANCEL);
  RT_WPUT(&w, t->id);
  RT_WPUT(&w, (uint8_t)recursive);
  send_rec(t->node, &w);
}

/* ------------------------------------------------------------------------ */
/* Running tasks for other ranks                                            */
/* ------------------------------------------------------------------------ */

/* Every return of x is ready: tell its submitter, and forget it. */
static void exec_done(exec *x) {
  pthread_mutex_lock(&R.lock);
  rmap_del(&R.execs, x->id, (uint32_t)x->src);
  pthread_mutex_unlock(&R.lock);
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_DONE);
  RT_WPUT(&w, x->id);
  RT_WPUT(&w, (int64_t)local_inflight());
  RT_WPUT(&w, x->nrets);
  t_subs.n = 0; /* (nothing else describes objects on this thread meanwhile) */
  for (uint32_t i = 0; i < x->nrets; i++) put_ref(&w, x->rets[i]);
  send_rec(x->src, &w);
  subs_commit(x->src);
  for (uint32_t i = 0; i < x->nrets; i++) ray_ref_release(x->rets[i]);
  free(x->rets);
  free(x->w);
  free(x);
}

static void exec_ret_ready(rt_waiter *wt) {
  exec *x = ((exec_waiter *)wt)->x;
  /* acq_rel: the last one sees every other return ended. */
  if (atomic_fetch_sub_explicit(&x->pending, 1, memory_order_acq_rel) == 1) exec_done(x);
}

/* Answers a task that could not even start, failing each return. */
static void exec_refuse(int src, uint64_t id, uint32_t nrets, ray_status s, const char *why) {
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_DONE);
  RT_WPUT(&w, id);
  RT_WPUT(&w, (int64_t)local_inflight());
  RT_WPUT(&w, nrets);
  for (uint32_t i = 0; i < nrets; i++) {
    RT_WPUT(&w, (uint8_t)1);
    RT_WPUT(&w, (uint32_t)s);
    rt_wbuf_str(&w, why);
    rt_wbuf_str(&w, NULL);
    rt_wbuf_str(&w, why);
  }
  send_rec(src, &w);
}

static void on_task(int src, rt_rbuf *r) {
  uint64_t id = 0, off = 0;
  uint32_t mod = 0, nrets = 0, nargs = 0;
  int32_t max_retries = 0;
  RT_RGET(r, id);
  RT_RGET(r, mod);
  RT_RGET(r, off);
  const char *name = rt_rbuf_str(r);
  RT_RGET(r, max_retries);
  RT_RGET(r, nrets);
  RT_RGET(r, nargs);
  atomic_fetch_add_explicit(&R.received, 1, memory_order_relaxed); /* a counter */
  char why[400];
  ray_task_fn fn = (ray_task_fn)(uintptr_t)rt_cluster_decode_addr(mod, off);
  if (!fn) {
    snprintf(why, sizeof why, "task '%s': its function's module is not loaded on rank %d",
             name ? name : "?", R.rank);
    exec_refuse(src, id, nrets, RAY_EINVAL, why);
    return;
  }
  ray_arg *args = rt_calloc(nargs ? nargs : 1, sizeof *args);
  exec *x = rt_calloc(1, sizeof *x);
  ray_ref **rets = rt_calloc(nrets ? nrets : 1, sizeof *rets);
  exec_waiter *ws = rt_calloc(nrets ? nrets : 1, sizeof *ws);
  bool ok = args && x && rets && ws;
  uint32_t made = 0;
  for (uint32_t i = 0; ok && i < nargs; i++, made++) {
    uint8_t kind = 0;
    RT_RGET(r, kind);
    if (kind == RT_ARG_REF) {
      wref wr;
      if (!get_ref(r, &wr)) break;
      ray_ref *h = take_ref(&wr, src);
      if (!h) {
        ok = false;
        break;
      }
      args[i] = ray_arg_ref(h);
    } else {
      const ray_type *t = get_type(r);
      uint64_t size = 0;
      RT_RGET(r, size);
      const void *b = rt_rbuf_take(r, size);
      if (!t || !b) break;
      args[i] = ray_arg_value(b, size, t);
    }
  }
  rt_task *t = NULL;
  ray_status s = RAY_ENOMEM;
  if (r->bad || made != nargs)
    snprintf(why, sizeof why, "task '%s': a malformed or unreadable task message on rank %d",
             name ? name : "?", R.rank);
  else if (!ok)
    snprintf(why, sizeof why, "task '%s': out of memory on rank %d", name ? name : "?", R.rank);
  else if ((s = rt_task_build(R.ts, "ray_submit", fn, args, nargs, name, (int)nrets, max_retries,
                              &t, rets)) != RAY_OK)
    snprintf(why, sizeof why, "rank %d: %s", R.rank, ray_last_error());
  for (uint32_t i = 0; i < made; i++)
    if (args[i].kind_ == RT_ARG_REF) ray_ref_release((ray_ref *)args[i].p_);
  free(args);
  if (!t) {
    free(x);
    free(rets);
    free(ws);
    exec_refuse(src, id, nrets, s == RAY_OK ? RAY_EINVAL : s, why);
    return;
  }
  x->src = src;
  x->id = id;
  x->nrets = nrets;
  x->rets = rets;
  x->w = ws;
  /* relaxed: published with the record by the map's lock and the store's
   * waiter registration. */
  atomic_store_explicit(&x->pending, nrets + 1, memory_order_relaxed);
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_put(&R.execs, id, (uint32_t)src);
  if (n) n->p = x;
  pthread_mutex_unlock(&R.lock);
  rt_task_start(R.ts, t);
  for (uint32_t i = 0; i < nrets; i++) {
    ws[i].x = x;
    ws[i].base.fire = exec_ret_ready;
    if (!rt_store_add_waiter(R.st, rets[i], &ws[i].base)) exec_ret_ready(&ws[i].base);
  }
  /* The registration guard (acq_rel, as in exec_ret_ready). */
  if (atomic_fetch_sub_explicit(&x->pending, 1, memory_order_acq_rel) == 1) exec_done(x);
}

static void on_done(int src, rt_rbuf *r) {
  uint64_t id = 0;
  int64_t load = 0;
  uint32_t nrets = 0;
  RT_RGET(r, id);
  RT_RGET(r, load);
  RT_RGET(r, nrets);
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_get(&R.shipped, id, 0);
  rt_task *t = n ? n->p : NULL;
  if (n) rmap_del(&R.shipped, id, 0);
  R.load[src] = load;
  if (t) R.outstanding[src]--;
  pthread_mutex_unlock(&R.lock);
  if (!t) return;
  bool failed = false, cancelled = false;
  for (uint32_t i = 0; i < nrets && i < t->nrets; i++) {
    wref x;
    if (!get_ref(r, &x)) {
      x = (wref){.kind = 1, .status = RAY_EIO, .msg = "a malformed result", .reason = "malformed"};
    }
    if (x.kind == 1) {
      failed = true;
      cancelled |= x.status == RAY_ECANCELLED;
    }
    end_with(t->rets[i], &x, src);
  }
  rt_task_end_shipped(R.ts, t,
                      cancelled ? RT_SHIPPED_CANCELLED
                      : failed  ? RT_SHIPPED_FAILED
                                : RT_SHIPPED_FINISHED);
}

static void on_cancel(int src, rt_rbuf *r) {
  uint64_t id = 0;
  uint8_t recursive = 0;
  RT_RGET(r, id);
  RT_RGET(r, recursive);
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_get(&R.execs, id, (uint32_t)src);
  exec *x = n ? n->p : NULL;
  /* Cancel by its first return, held while the exec lives; the ref is
   * retained under the lock so that exec_done cannot drop it first. */
  ray_ref *h = x && x->nrets ? ray_ref_retain(x->rets[0]) : NULL;
  pthread_mutex_unlock(&R.lock);
  if (!h) return;
  (void)ray_cancel(h, recursive);
  ray_ref_release(h);
}

/* ------------------------------------------------------------------------ */
/* Pulling bytes, dropping lends                                            */
/* ------------------------------------------------------------------------ */

ray_status rt_remote_pull(void *arg, const rt_remote_loc *loc, void *buf, size_t size) {
  (void)arg;
  if (!atomic_load_explicit(&R.on, memory_order_acquire))
    return rt_fail(RAY_ELOST, "the object's bytes are on rank %d, and the cluster has stopped",
                   (int)loc->holder);
  rt_tp_wait pw = RT_TP_WAIT_INIT;
  int tag = rt_cluster_new_tag();
  ray_status s = rt_cluster_bulk(false, loc->holder, tag, buf, size, rt_tp_wake, &pw);
  if (s != RAY_OK) return s;
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_PULL);
  RT_WPUT(&w, loc->holder_key);
  RT_WPUT(&w, (uint64_t)size);
  RT_WPUT(&w, (int32_t)tag);
  send_rec(loc->holder, &w);
  if (!rt_tp_await(&pw))
    return rt_fail(RAY_ELOST, "the transfer of %zu bytes from rank %d failed", size,
                   (int)loc->holder);
  return RAY_OK;
}

typedef struct serving {
  ray_view v;
} serving;

static void served(void *arg, bool ok) {
  (void)ok;
  serving *sv = arg;
  rt_store_view_drop(R.st, &sv->v);
  free(sv);
}

static void on_pull(int src, rt_rbuf *r) {
  uint64_t key = 0, size = 0;
  int32_t tag = 0;
  RT_RGET(r, key);
  RT_RGET(r, size);
  RT_RGET(r, tag);
  serving *sv = rt_calloc(1, sizeof *sv);
  ray_status s =
      sv ? rt_store_view(R.st, (ray_ref *)(uintptr_t)key, NULL, "pull", &sv->v) : RAY_ENOMEM;
  if (s != RAY_OK || sv->v.size != size) {
    /* Fail-stop: the reader would wait forever for these bytes. */
    rt_warn("rayc: rank %d: cannot serve %llu bytes to rank %d: %s; aborting the job", R.rank,
            (unsigned long long)size, src, s != RAY_OK ? ray_last_error() : "size differs");
    rt_cluster_abort();
  }
  if (rt_cluster_bulk(true, src, tag, (void *)sv->v.data, size, served, sv) != RAY_OK) {
    rt_warn("rayc: rank %d: cannot send %llu bytes to rank %d; aborting the job", R.rank,
            (unsigned long long)size, src);
    rt_cluster_abort();
  }
}

static void on_drop(rt_rbuf *r) {
  uint64_t key = 0;
  uint32_t count = 0;
  RT_RGET(r, key);
  RT_RGET(r, count);
  ray_ref *release = NULL;
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_get(&R.exports, key, 0);
  if (n) {
    n->v = n->v > count ? n->v - count : 0;
    if (n->v == 0) {
      release = n->p;
      rmap_del(&R.exports, key, 0);
    }
  }
  pthread_mutex_unlock(&R.lock);
  if (release) ray_ref_release(release); /* may free the object, and tell its own lender */
}

void rt_remote_freed(void *arg, const rt_remote_loc *loc) {
  (void)arg;
  /* acquire: pairs with rt_remote_start/stop; after the stop nobody is
   * left to tell. */
  if (!atomic_load_explicit(&R.on, memory_order_acquire)) return;
  /* The copy that goes is the one the table names unless a newer copy
   * replaced it: a weak ref that no longer resolves is this one. (A try
   * is made outside the lock: a release it has to undo may free an entry,
   * which comes back here.) */
  pthread_mutex_lock(&R.lock);
  rnode *n = rmap_get(&R.proxies, loc->holder_key, (uint32_t)loc->holder);
  ray_ref *h = n ? n->p : NULL;
  pthread_mutex_unlock(&R.lock);
  ray_ref *alive = h ? rt_store_try_retain(R.st, h) : NULL;
  if (h && !alive) {
    pthread_mutex_lock(&R.lock);
    n = rmap_get(&R.proxies, loc->holder_key, (uint32_t)loc->holder);
    if (n && n->p == h) rmap_del(&R.proxies, loc->holder_key, (uint32_t)loc->holder);
    pthread_mutex_unlock(&R.lock);
  }
  if (alive) ray_ref_release(alive);
  send_drop(loc->lender, loc->lender_key, 1);
}

/* ------------------------------------------------------------------------ */
/* Stats of other ranks                                                     */
/* ------------------------------------------------------------------------ */

typedef struct stats_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done;
  ray_status status;
  ray_stats stats;
} stats_wait;

static void on_stats_req(int src, rt_rbuf *r) {
  uint64_t cookie = 0;
  RT_RGET(r, cookie);
  ray_stats s;
  ray_status st = ray_stats_get(&s);
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_STATS_REP);
  RT_WPUT(&w, cookie);
  RT_WPUT(&w, (uint32_t)st);
  rt_wbuf_put(&w, &s, sizeof s);
  send_rec(src, &w);
}

static void on_stats_rep(rt_rbuf *r) {
  uint64_t cookie = 0;
  uint32_t st = 0;
  RT_RGET(r, cookie);
  RT_RGET(r, st);
  stats_wait *sw = (stats_wait *)(uintptr_t)cookie;
  if (!sw) return;
  pthread_mutex_lock(&sw->lock);
  rt_rbuf_get(r, &sw->stats, sizeof sw->stats);
  sw->status = (ray_status)st;
  sw->done = true;
  pthread_cond_signal(&sw->cond);
  pthread_mutex_unlock(&sw->lock);
}

ray_status ray_stats_get_node(int rank, ray_stats *out) {
  if (!out) return rt_fail(RAY_EINVAL, "ray_stats_get_node: out is NULL");
  int count = ray_node_count();
  if (count == 0) return rt_not_running("ray_stats_get_node");
  if (rank < 0 || rank >= count)
    return rt_fail(RAY_EINVAL, "ray_stats_get_node: rank %d is not in 0..%d", rank, count - 1);
  if (rank == ray_node_rank()) return ray_stats_get(out);
  stats_wait sw = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
  rt_wbuf w = {0};
  RT_WPUT(&w, (uint8_t)RM_STATS_REQ);
  RT_WPUT(&w, (uint64_t)(uintptr_t)&sw);
  send_rec(rank, &w);
  pthread_mutex_lock(&sw.lock);
  while (!sw.done) pthread_cond_wait(&sw.cond, &sw.lock);
  pthread_mutex_unlock(&sw.lock);
  if (sw.status != RAY_OK)
    return rt_fail(sw.status, "ray_stats_get_node: rank %d: %s", rank, ray_status_name(sw.status));
  *out = sw.stats;
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* Life                                                                     */
/* ------------------------------------------------------------------------ */

void rt_remote_on_record(int src, const void *rec, size_t len) {
  rt_rbuf r = {rec, len, 1, false}; /* past the kind byte */
  switch (((const uint8_t *)rec)[0]) {
  case RM_TASK:
    on_task(src, &r);
    break;
  case RM_DONE:
    on_done(src, &r);
    break;
  case RM_CANCEL:
    on_cancel(src, &r);
    break;
  case RM_PULL:
    on_pull(src, &r);
    break;
  case RM_DROP:
    on_drop(&r);
    break;
  case RM_STATS_REQ:
    on_stats_req(src, &r);
    break;
  case RM_STATS_REP:
    on_stats_rep(&r);
    break;
  case RM_READY:
    on_ready(src, &r);
    break;
  default:
    break;
  }
}

void rt_remote_bind(rt_store *st, rt_tasks *ts, int workers) {
  R.st = st;
  R.ts = ts;
  R.workers = workers;
  R.rank = ray_node_rank();
  R.size = ray_node_count();
  R.received = 0;
  free(R.load);
  free(R.outstanding);
  R.load = R.outstanding = NULL;
  if (R.size <= 1) return;
  R.load = rt_calloc((size_t)R.size, sizeof *R.load);
  R.outstanding = rt_calloc((size_t)R.size, sizeof *R.outstanding);
  if (!R.load || !R.outstanding) return; /* without them: no cluster placement */
  g_task_ops =
      (rt_task_remote_ops){NULL, task_place, task_ship, task_cancel, task_count, task_can_ship};
  rt_tasks_set_remote(ts, &g_task_ops);
}

void rt_remote_start(void) {
  /* release: the tables and counters above are set before any hook or
   * handler that acquires `on` uses them. */
  atomic_store_explicit(&R.on, true, memory_order_release);
}

void rt_remote_stop(void) {
  atomic_store_explicit(&R.on, false, memory_order_release); /* see rt_remote_freed */
}

uint64_t rt_remote_received(void) {
  return atomic_load_explicit(&R.received, memory_order_relaxed); /* a counter */
}

size_t rt_remote_release_exports(void) {
  size_t lent = 0;
  for (;;) {
    ray_ref *release = NULL;
    pthread_mutex_lock(&R.lock);
    for (size_t i = 0; i < R.exports.nb && !release; i++)
      if (R.exports.b[i]) {
        release = R.exports.b[i]->p;
        rmap_del(&R.exports, R.exports.b[i]->k1, 0);
      }
    pthread_mutex_unlock(&R.lock);
    if (!release) break;
    lent++;
    ray_ref_release(release);
  }
  pthread_mutex_lock(&R.lock);
  rmap_free(&R.exports);
  rmap_free(&R.proxies);
  rmap_free(&R.subs); /* (every rank drained: no subscription is left) */
  rmap_free(&R.pending);
  rmap_free(&R.shipped);
  rmap_free(&R.execs);
  pthread_mutex_unlock(&R.lock);
  return lent;
}

#endif /* RAY_HAVE_MPI */
