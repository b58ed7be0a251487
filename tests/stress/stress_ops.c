/*
 * stress_ops.c - the client threads of ray_stress and the sequential model
 * they check every result against.
 *
 * Each client owns NSLOTS slots; a slot holds one ray_ref and the model node
 * of its object. A node says what the object must turn out to be: its kind
 * and value (the payload's stream segments, an i64, a Counter reply, the
 * nodes a refs object holds) and which outcomes are allowed: a value, and
 * the errors its producer may give itself (own) or that may reach it through
 * its arguments (prop, the error chains). Nodes are numbered in creation
 * order, so a node's arguments always have smaller numbers: a cancel marks
 * the cancelled task's nodes and one forward pass over the later nodes
 * carries the mark to every dependent.
 *
 * Every op draws all of its random numbers first, from the thread's own
 * PRNG, and never draws depending on an outcome: what a thread asks for is
 * a function of (seed, round, epoch, thread, op); --verbose prints a digest
 * of it per thread to compare runs by. Outcomes decide what is checked, and
 * in two cases whether a slot is left empty (so that a later op that picks
 * it does nothing): a put refused with RAY_ESTOREFULL (memory-limited
 * rounds only), and a call to an actor after a kill, which may be refused
 * at once or accepted and fail at its get.
 *
 * Actors: a Counter is created and called by one client only, so its calls
 * have one submitter and run in order; the model predicts each reply {inc,
 * n} exactly until a kill or crash. After one, the reply of a call must
 * come from a consistent incarnation: inc between 1 and 1 + the restarts
 * asked for, n exactly the no-restart value when inc is 1, else init plus
 * the sum of a run of consecutive adds ending at this call (a fresh state
 * that saw only the calls after some point). A sync op (a get, waited for)
 * makes the model exact again. Calls made after kill(true) must fail.
 */
#define _GNU_SOURCE
#include "stress.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  NSLOTS = 48,        /* refs a client holds at most */
  NACT = 3,           /* actors a client holds at most */
  MAXPAR = 8,         /* ref arguments of a task */
  MAXSEG = 8,         /* stream segments of a bytes object (concat) */
  MAXKIDS = 4,        /* refs in a refs object */
  INBOX = 16,         /* views queued for a client to release */
  OPS_PER_EPOCH = 300 /* ops per client per epoch */
};

enum kind { K_BYTES, K_I64, K_PAIR, K_REFS };
/* Outcomes, as bits of a mask. */
enum { A_VALUE = 1, A_CANCELLED = 2, A_ETASK = 4, A_EACTOR = 8 };
#define A_ERRORS (A_CANCELLED | A_ETASK | A_EACTOR)

typedef struct seg {
  uint64_t key;
  uint32_t size; /* bytes [0, size) of the stream of key */
} seg;

typedef struct node {
  uint8_t kind;
  uint8_t own;   /* errors the producer itself may give */
  uint8_t prop;  /* errors that may come through its arguments */
  bool value_ok; /* a value is possible */
  bool fwd;      /* made by forward: an error of par[0] is its own RAY_ETASK */
  bool put;      /* sealed when made */
  bool ready;    /* known ready: gets must not time out */
  int seen;      /* -1, or the status the first complete get gave */
  uint8_t npar, nseg, nkids;
  const char *name; /* the producing task, as error chains name it */
  uint32_t task;    /* producing task (returns of one task share it); 0: none */
  uint32_t par[MAXPAR];
  int64_t ival; /* K_I64 */
  seg segs[MAXSEG];
  uint32_t kids[MAXKIDS];
  char msg[40]; /* text an own RAY_ETASK must contain */
  int pins;
  /* K_PAIR: a Counter call */
  int32_t actor;
  uint32_t call;
  bool exact;
  int64_t exp_inc, exp_n, nr_n;
  char id[33];
} node;

typedef struct slot {
  ray_ref *ref; /* NULL: empty */
  uint32_t node;
} slot;

typedef struct actor {
  ray_actor *h; /* NULL once released */
  char name[64];
  int64_t init;
  uint32_t idx; /* into st_incarn */
  int max_restarts;
  int restarts;   /* restarts asked for (kill(false), crash) while some were left */
  bool end_sure;  /* kill(true) asked for: later calls must fail */
  bool end_maybe; /* a kill(false) or crash with no restart left was asked for */
  bool known;     /* known_inc/known_n are the state after the last call */
  int64_t known_inc, known_n;
  int64_t nr_n; /* the state if no restart ever happened */
  int64_t *ks;  /* per accepted call or send: what it adds */
  uint32_t *calls;
  uint32_t ncalls, cap;
  char hist[1536]; /* what was asked of it, for failure reports */
  size_t hlen;
} actor;

typedef struct view_item {
  ray_view view;
  uint64_t hash;
  int from;
  uint64_t op;
  _Atomic uint64_t *taken; /* set to op + 1 just before the release */
} view_item;

/* Views handed to a client for release: the only state clients share. */
typedef struct inbox {
  pthread_mutex_t mu;
  view_item items[INBOX];
  int n;
} inbox;

struct st_client {
  int t;
  const st_round *r;
  uint64_t rng[4];
  uint32_t op;     /* in this epoch */
  uint64_t op_run; /* over the run: st_where.op */
  uint64_t digest; /* of the op sequence: see client_main */
  slot slots[NSLOTS];
  node *nodes;
  uint32_t nnodes, ncap;
  actor *acts;
  uint32_t nacts, acap;
  int32_t act_slot[NACT];
  uint32_t ntasks, nflaky;
  int64_t last_pair[2];
  /* Relaxed: only tells the sender when to drop its ref (to line the two
   * releases up); no data is handed over through it. */
  _Atomic uint64_t handoff_taken;
  const actor *checking; /* the actor of the reply being checked, for reports */
  st_counts n;
};

static int g_threads;
static inbox g_inbox[ST_MAX_THREADS];
static st_where g_where[ST_MAX_THREADS];
/* Per thread over the run, carried from epoch to epoch by the main thread. */
static uint64_t g_op_run[ST_MAX_THREADS];
static uint64_t g_digest[ST_MAX_THREADS];

#define FAIL(c, ...) fail_op((c), __VA_ARGS__)

static _Noreturn void fail_op(st_client *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ------------------------------------------------------------------------ */
/* PRNG: xoshiro256** seeded through splitmix64                              */
/* ------------------------------------------------------------------------ */

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t rnd(st_client *c) {
  uint64_t *s = c->rng;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
  return out;
}

static uint32_t below(st_client *c, uint32_t n) {
  return (uint32_t)(((rnd(c) >> 32) * n) >> 32);
}
static bool chance(st_client *c, unsigned pct) {
  return below(c, 100) < pct;
}

static void seed_client(st_client *c) {
  uint64_t x = st_set.seed ^ st_mix64(((uint64_t)c->r->round << 40) ^
                                      ((uint64_t)c->r->epoch << 20) ^ (uint64_t)c->t);
  for (int i = 0; i < 4; i++) c->rng[i] = st_mix64(x += UINT64_C(0x9e3779b97f4a7c15));
}

/* A payload key unique to (seed, round, epoch, thread, op, sub). */
static uint64_t key_of(st_client *c, unsigned sub) {
  uint64_t x = ((uint64_t)c->r->round << 52) ^ ((uint64_t)c->r->epoch << 44) ^
               ((uint64_t)c->t << 36) ^ ((uint64_t)c->op << 8) ^ sub;
  return st_mix64(st_set.seed ^ st_mix64(x));
}

static size_t draw_size(st_client *c) {
  uint32_t p = below(c, 100), x = (uint32_t)rnd(c);
  /* The memory-limited rounds lean to large objects so that the limit bites. */
  if (c->r->mem) return p < 20 ? 8 + x % 57 : p < 30 ? 65 + x % 4032 : 131072 + x % (384 * 1024);
  if (p < 40) return 8 + x % 57; /* inline (<= 64 bytes) */
  if (p < 75) return 65 + x % 4032;
  if (p < 96) return 4096 + x % 61440;
  return 65536 + x % (320 * 1024);
}

/* ------------------------------------------------------------------------ */
/* Model nodes                                                               */
/* ------------------------------------------------------------------------ */

static node *N(st_client *c, uint32_t id) {
  return &c->nodes[id];
}

/* A new node; pointers into c->nodes are invalid afterwards. */
static uint32_t node_new(st_client *c, uint8_t kind) {
  if (c->nnodes == c->ncap) {
    c->ncap = c->ncap ? 2 * c->ncap : 1024;
    c->nodes = realloc(c->nodes, c->ncap * sizeof *c->nodes);
    if (!c->nodes) FAIL(c, "out of memory for the model");
  }
  uint32_t id = c->nnodes++;
  node *n = N(c, id);
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->seen = -1;
  n->actor = -1;
  return id;
}

static uint8_t allow_of(const node *n) {
  return (n->value_ok ? A_VALUE : 0) | n->own | n->prop;
}

static uint8_t status_bit(ray_status s) {
  switch (s) {
  case RAY_OK:
    return A_VALUE;
  case RAY_ECANCELLED:
    return A_CANCELLED;
  case RAY_ETASK:
    return A_ETASK;
  case RAY_EACTOR:
    return A_EACTOR;
  default:
    return 0;
  }
}

static const char *allow_str(uint8_t a, char *buf, size_t len) {
  snprintf(buf, len, "%s%s%s%s", a & A_VALUE ? " value" : "", a & A_CANCELLED ? " ECANCELLED" : "",
           a & A_ETASK ? " ETASK" : "", a & A_EACTOR ? " EACTOR" : "");
  return buf;
}

/* What may reach node i through its arguments, from their allowances. */
static void node_inherit(st_client *c, uint32_t i) {
  node *n = N(c, i);
  for (int p = 0; p < n->npar; p++) {
    const node *q = N(c, n->par[p]);
    uint8_t e = allow_of(q) & A_ERRORS;
    if (n->fwd) {
      if (e) n->own |= A_ETASK; /* ray_ctx_return_ref hands the status back: the task fails */
    } else {
      n->prop |= e & (A_CANCELLED | A_ETASK);
    }
  }
}

/* After nodes up to `from` changed: carry the change to every later node. */
static void propagate(st_client *c, uint32_t from) {
  for (uint32_t i = from + 1; i < c->nnodes; i++) node_inherit(c, i);
}

/* A node for a return of task `task` (named `name`) whose ref arguments are
 * the nodes par[0 .. npar). */
static uint32_t task_node(st_client *c, uint8_t kind, const char *name, uint32_t task,
                          const uint32_t *par, int npar) {
  uint32_t id = node_new(c, kind);
  node *n = N(c, id);
  n->name = name;
  n->task = task;
  n->value_ok = true;
  n->npar = (uint8_t)npar;
  for (int p = 0; p < npar; p++) {
    n->par[p] = par[p];
    if (!N(c, par[p])->value_ok) n->value_ok = false;
  }
  /* In the memory-limited rounds a return may not fit: the task fails. */
  if (c->r->mem) n->own |= A_ETASK;
  node_inherit(c, id);
  return id;
}

static void mark_cancelled(st_client *c, uint32_t task, uint32_t first) {
  for (uint32_t i = first; i < c->nnodes; i++)
    if (N(c, i)->task == task) N(c, i)->own |= A_CANCELLED;
  propagate(c, first);
}

static void set_id(st_client *c, uint32_t id, const ray_ref *ref) {
  ray_ref_id(ref, N(c, id)->id);
}

/* ------------------------------------------------------------------------ */
/* Checking objects against the model                                        */
/* ------------------------------------------------------------------------ */

static const ray_type *type_of(const node *n) {
  switch (n->kind) {
  case K_BYTES:
    return &ray_type_bytes;
  case K_REFS:
    return &ray_type_refs;
  default:
    return &ray_type_i64;
  }
}

static ray_status cget(st_client *c, ray_ref *ref, const ray_type *t, int64_t ms, ray_view *v) {
  ray_status s = ray_get(ref, t, ms, v);
  if (s == RAY_OK) c->n.gets_ok++;
  return s;
}

/* A get that could not restore a spilled object for want of room: allowed
 * in memory-limited rounds when the message says so (then the caller skips
 * its op); anything else is left to the caller to fail. */
static bool get_found_no_room(st_client *c, ray_status s) {
  if (s != RAY_ESTOREFULL || !c->r->mem || !strstr(ray_last_error(), "no room")) return false;
  c->n.storefull++;
  return true;
}

static size_t node_size(const node *n) {
  size_t size = 0;
  for (int i = 0; i < n->nseg; i++) size += n->segs[i].size;
  return size;
}

static void check_ref(st_client *c, ray_ref *ref, uint32_t id, int64_t ms, int depth, bool *done);
static void check_ref_(st_client *c, ray_ref *ref, uint32_t id, int64_t ms, int depth, bool *done);

static void check_pair(st_client *c, uint32_t id, const int64_t pair[2]) {
  const node *n = N(c, id);
  const actor *a = &c->acts[n->actor];
  int64_t inc = pair[0], val = pair[1];
  int restarts = a->restarts; /* counted only while restarts are left */
  c->last_pair[0] = inc, c->last_pair[1] = val;
  if (inc < 1 || inc > 1 + restarts)
    FAIL(c, "Counter call %u replied incarnation %" PRId64 ", but only %d restarts were asked for",
         n->call, inc, restarts);
  if (n->exact) {
    if (inc != n->exp_inc || val != n->exp_n)
      FAIL(c,
           "Counter call %u replied {%" PRId64 ", %" PRId64 "}, model {%" PRId64 ", %" PRId64 "}",
           n->call, inc, val, n->exp_inc, n->exp_n);
  } else if (inc == 1) {
    if (val != n->nr_n)
      FAIL(c, "Counter call %u in the first incarnation replied %" PRId64 ", model %" PRId64,
           n->call, val, n->nr_n);
  } else {
    /* A fresh state that saw a run of consecutive calls ending at this one. */
    uint64_t want = (uint64_t)val - (uint64_t)a->init, sum = 0;
    bool found = false;
    for (uint32_t j = n->call + 1; j-- > 0 && !found;) {
      sum += (uint64_t)a->ks[j];
      found = sum == want;
    }
    if (!found)
      FAIL(c,
           "Counter call %u in incarnation %" PRId64 " replied %" PRId64
           ", which no run of consecutive calls from a fresh state gives",
           n->call, inc, val);
  }
}

static void check_value(st_client *c, uint32_t id, const ray_view *v, int depth) {
  const node *n = N(c, id);
  switch (n->kind) {
  case K_BYTES: {
    size_t want = node_size(n), off = 0;
    if (v->size != want) FAIL(c, "object %s has %zu bytes, model %zu", n->id, v->size, want);
    for (int i = 0; i < n->nseg; i++) {
      if (!st_equal(n->segs[i].key, 0, (const char *)v->data + off, n->segs[i].size))
        FAIL(c, "object %s: bytes [%zu, %zu) differ from the model", n->id, off,
             off + n->segs[i].size);
      off += n->segs[i].size;
    }
    break;
  }
  case K_I64: {
    int64_t x;
    if (v->size != sizeof x) FAIL(c, "i64 object %s has %zu bytes", n->id, v->size);
    memcpy(&x, v->data, sizeof x);
    if (x != n->ival)
      FAIL(c, "object %s (%s) is %" PRId64 ", model %" PRId64, n->id, n->name ? n->name : "put", x,
           n->ival);
    break;
  }
  case K_PAIR: {
    int64_t pair[2];
    if (v->size != sizeof pair) FAIL(c, "Counter reply %s has %zu bytes", n->id, v->size);
    memcpy(pair, v->data, sizeof pair);
    check_pair(c, id, pair);
    break;
  }
  case K_REFS: {
    uint8_t nk = n->nkids;
    uint32_t kids[MAXKIDS];
    memcpy(kids, n->kids, sizeof kids);
    if (v->size != nk * sizeof(ray_ref *))
      FAIL(c, "refs object %s has %zu bytes, model %u refs", n->id, v->size, (unsigned)nk);
    ray_ref *const *inner = v->data; /* borrowed while the view is held */
    for (uint8_t i = 0; i < nk; i++) {
      char hex[33];
      ray_ref_id(inner[i], hex);
      if (strcmp(hex, N(c, kids[i])->id) != 0)
        FAIL(c, "refs object %s holds %s at %u, model %s", N(c, id)->id, hex, (unsigned)i,
             N(c, kids[i])->id);
      if (depth < 3) check_ref(c, inner[i], kids[i], -1, depth + 1, NULL);
    }
    break;
  }
  }
}

static void check_error(st_client *c, uint32_t id, ray_status s) {
  const char *msg = ray_last_error();
  const node *n = N(c, id);
  char buf[64];
  uint8_t bit = status_bit(s);
  if (!bit || !(allow_of(n) & bit))
    FAIL(c, "get of %s (%s) gave %s, the model allows%s", n->id, n->name ? n->name : "put",
         ray_status_name(s), allow_str(allow_of(n), buf, sizeof buf));
  static const char chain[] = "comes from task '";
  const char *from = strstr(msg, chain);
  if (from && !n->fwd) {
    if (!(n->prop & bit))
      FAIL(c, "%s (%s) failed %s through an argument, but none may", n->id, n->name,
           ray_status_name(s));
    from += sizeof chain - 1;
    bool named = false;
    for (int p = 0; p < n->npar && !named; p++) {
      const char *pn = N(c, n->par[p])->name;
      size_t len = pn ? strlen(pn) : 0;
      named = len && strncmp(from, pn, len) == 0 && from[len] == '\'';
    }
    if (!named) FAIL(c, "%s (%s): the error names no argument's task", n->id, n->name);
    return;
  }
  if (!(n->own & bit))
    FAIL(c, "%s (%s) failed %s itself, the model allows that only through arguments", n->id,
         n->name ? n->name : "put", ray_status_name(s));
  if (s == RAY_ECANCELLED && !strstr(msg, "cancel"))
    FAIL(c, "%s: RAY_ECANCELLED without 'cancel' in the message", n->id);
  if (s == RAY_EACTOR && !strstr(msg, "actor '"))
    FAIL(c, "%s: RAY_EACTOR without the actor in the message", n->id);
  if (s == RAY_ETASK && n->msg[0] && !c->r->mem && !strstr(msg, n->msg))
    FAIL(c, "%s: RAY_ETASK without \"%s\" in the message", n->id, n->msg);
}

/*
 * Gets ref (node id) with timeout ms and checks the outcome. *done (if not
 * NULL) tells whether the get completed; a timeout is a failure for ms < 0
 * and for objects known to be ready. The first complete outcome is kept:
 * objects are immutable, so every later get must give the same status.
 */
static void check_ref(st_client *c, ray_ref *ref, uint32_t id, int64_t ms, int depth, bool *done) {
  const actor *outer = c->checking;
  if (N(c, id)->actor >= 0) c->checking = &c->acts[N(c, id)->actor];
  check_ref_(c, ref, id, ms, depth, done);
  c->checking = outer;
}

static void check_ref_(st_client *c, ray_ref *ref, uint32_t id, int64_t ms, int depth, bool *done) {
  ray_view v;
  ray_status s = cget(c, ref, type_of(N(c, id)), ms, &v);
  if (done) *done = s != RAY_ETIMEOUT;
  if (s == RAY_ETIMEOUT) {
    if (ms < 0) FAIL(c, "ray_get(-1) of %s timed out", N(c, id)->id);
    if (N(c, id)->ready)
      FAIL(c, "%s is ready, but ray_get(%" PRId64 " ms) timed out", N(c, id)->id, ms);
    if (!strstr(ray_last_error(), "not ready") && !strstr(ray_last_error(), "within"))
      FAIL(c, "RAY_ETIMEOUT message does not say why");
    return;
  }
  /* Reading a spilled object needs room to restore it: in a memory-limited
   * round a get may find none, and a later one may succeed. Nothing is
   * recorded: the object's own outcome is unknown. */
  if (N(c, id)->seen != (int)s && get_found_no_room(c, s)) return;
  if (N(c, id)->seen >= 0 && N(c, id)->seen != (int)s)
    FAIL(c, "%s gave %s before and %s now", N(c, id)->id,
         ray_status_name((ray_status)N(c, id)->seen), ray_status_name(s));
  N(c, id)->ready = true;
  N(c, id)->seen = (int)s;
  if (s == RAY_OK) {
    if (!N(c, id)->value_ok) {
      char buf[64], val[64] = "";
      if (N(c, id)->kind == K_PAIR && v.size == 16)
        snprintf(val, sizeof val, " {%" PRId64 ", %" PRId64 "}", ((const int64_t *)v.data)[0],
                 ((const int64_t *)v.data)[1]);
      FAIL(c, "%s (%s) has a value%s, the model allows%s", N(c, id)->id,
           N(c, id)->name ? N(c, id)->name : "put", val,
           allow_str(allow_of(N(c, id)), buf, sizeof buf));
    }
    if (v.type != type_of(N(c, id)) && strcmp(v.type->name, type_of(N(c, id))->name) != 0)
      FAIL(c, "%s has type '%s'", N(c, id)->id, v.type->name);
    check_value(c, id, &v, depth);
    ray_view_release(&v);
    c->n.values++;
    return;
  }
  check_error(c, id, s);
  c->n.errors++;
}

/* ------------------------------------------------------------------------ */
/* Slots                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct dest {
  int i;
  bool verify; /* check what the slot holds before dropping it */
} dest;

static dest dest_draw(st_client *c) {
  dest d = {(int)below(c, NSLOTS), false};
  d.verify = chance(c, 30);
  return d;
}

static void slot_drop(st_client *c, int i, bool verify) {
  slot *s = &c->slots[i];
  if (!s->ref) return;
  if (verify) check_ref(c, s->ref, s->node, -1, 0, NULL);
  ray_ref_release(s->ref);
  s->ref = NULL;
}

/* Drops what d held and stores ref there (ref NULL: leaves it empty). */
static void dest_store(st_client *c, dest d, ray_ref *ref, uint32_t id) {
  slot_drop(c, d.i, d.verify);
  c->slots[d.i].ref = ref;
  c->slots[d.i].node = id;
}

static bool slot_is(st_client *c, int i, int kind) {
  return c->slots[i].ref && (kind < 0 || N(c, c->slots[i].node)->kind == kind);
}

/* A put failed: RAY_ESTOREFULL is allowed only in the memory-limited rounds. */
static void put_failed(st_client *c, ray_status s, const char *call) {
  if (s != RAY_ESTOREFULL || !c->r->mem) FAIL(c, "%s: %s", call, ray_status_name(s));
  const char *m = ray_last_error();
  if (!strstr(m, "no room") && !strstr(m, "larger than"))
    FAIL(c, "%s: RAY_ESTOREFULL message gives no reason", call);
  c->n.storefull++;
}

/* A submit must succeed: values are copied into the task, not the store. */
static uint32_t submit(st_client *c, ray_task_fn fn, const ray_arg *args, size_t nargs,
                       const char *name, int nret, int retries, ray_ref **out) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = name;
  o.num_returns = nret;
  o.max_retries = retries;
  ray_status s = ray_submit(fn, args, nargs, &o, out);
  if (s != RAY_OK) FAIL(c, "ray_submit('%s'): %s", name, ray_status_name(s));
  c->n.submits_ok++;
  c->n.tasks++;
  return ++c->ntasks;
}

static void cancel(st_client *c, ray_ref *ref, uint32_t id, bool recursive) {
  ray_status s = ray_cancel(ref, recursive);
  if (s != RAY_OK) FAIL(c, "ray_cancel: %s", ray_status_name(s));
  c->n.cancels++;
  /* The returns of one task are at most 5 nodes apart (split). */
  if (N(c, id)->task) mark_cancelled(c, N(c, id)->task, id > 8 ? id - 8 : 0);
}

/* ------------------------------------------------------------------------ */
/* Views released by another client                                          */
/* ------------------------------------------------------------------------ */

static void release_item(st_client *c, view_item *it) {
  if (st_hash_add(ST_HASH_INIT, it->view.data, it->view.size) != it->hash)
    FAIL(c, "a view from thread %d op %" PRIu64 " changed before its release", it->from, it->op);
  if (it->taken) atomic_store_explicit(it->taken, it->op + 1, memory_order_relaxed);
  ray_view_release(&it->view);
}

static void drain_inbox(st_client *c, int t) {
  view_item items[INBOX];
  inbox *b = &g_inbox[t];
  pthread_mutex_lock(&b->mu);
  int n = b->n;
  memcpy(items, b->items, (size_t)n * sizeof items[0]);
  b->n = 0;
  pthread_mutex_unlock(&b->mu);
  for (int i = 0; i < n; i++) release_item(c, &items[i]);
}

/* ------------------------------------------------------------------------ */
/* Ops on objects                                                            */
/* ------------------------------------------------------------------------ */

static uint32_t put_node(st_client *c, uint8_t kind, ray_ref *ref) {
  uint32_t id = node_new(c, kind);
  N(c, id)->put = N(c, id)->ready = N(c, id)->value_ok = true;
  set_id(c, id, ref);
  c->n.puts++;
  return id;
}

static void op_put(st_client *c) {
  dest d = dest_draw(c);
  unsigned variant = below(c, 6);
  size_t size = draw_size(c);
  int64_t ival = (int64_t)rnd(c);
  bool check_now = chance(c, 20);
  uint64_t key = key_of(c, 0);

  ray_ref *ref = NULL;
  ray_status s;
  uint8_t kind = K_BYTES;
  const char *call = "ray_put";
  if (variant == 1 || variant == 5) {
    kind = K_I64;
    if (variant == 1) {
      s = ray_put(&ival, sizeof ival, &ray_type_i64, &ref);
    } else {
      void *data;
      call = "ray_create";
      s = ray_create(sizeof ival, &ray_type_i64, &data, &ref);
      if (s == RAY_OK) {
        memcpy(data, &ival, sizeof ival);
        if ((s = ray_seal(ref)) != RAY_OK) FAIL(c, "ray_seal: %s", ray_status_name(s));
      }
    }
  } else if (variant == 0) {
    unsigned char *buf = malloc(size);
    if (!buf) FAIL(c, "out of memory");
    st_fill(key, 0, buf, size);
    s = ray_put(buf, size, NULL, &ref);
    free(buf);
  } else if (variant == 2) {
    unsigned char *buf = malloc(size);
    if (!buf) FAIL(c, "out of memory");
    st_fill(key, 0, buf, size);
    call = "ray_put_owned";
    s = ray_put_owned(buf, size, &ray_type_bytes, st_owned_free, &ref);
    if (s == RAY_OK)
      atomic_fetch_add_explicit(&st_owned_given, 1, memory_order_relaxed);
    else
      free(buf); /* on failure the buffer is still ours */
  } else if (variant == 3) {
    key = ST_PATTERN_KEY; /* free_fn NULL: the buffer is static and never written */
    call = "ray_put_owned(NULL free_fn)";
    s = ray_put_owned(st_pattern, size, NULL, NULL, &ref);
  } else {
    void *data;
    call = "ray_create";
    s = ray_create(size, NULL, &data, &ref);
    if (s == RAY_OK) {
      st_fill(key, 0, data, size);
      if ((s = ray_seal(ref)) != RAY_OK) FAIL(c, "ray_seal: %s", ray_status_name(s));
    }
  }
  if (s != RAY_OK) {
    put_failed(c, s, call);
    dest_store(c, d, NULL, 0);
    return;
  }
  uint32_t id = put_node(c, kind, ref);
  if (kind == K_I64) {
    N(c, id)->ival = ival;
  } else {
    N(c, id)->nseg = 1;
    N(c, id)->segs[0] = (seg){key, (uint32_t)size};
  }
  if (check_now) check_ref(c, ref, id, 0, 0, NULL);
  dest_store(c, d, ref, id);
}

static void op_get(st_client *c) {
  int i = (int)below(c, NSLOTS);
  unsigned t = below(c, 10);
  bool wrong_type = chance(c, 10);
  int64_t ms = t < 6 ? -1 : t < 8 ? 0 : 2;
  if (!slot_is(c, i, -1)) return;
  slot *sl = &c->slots[i];
  const node *n = N(c, sl->node);
  if (wrong_type && n->put && (n->kind == K_BYTES || n->kind == K_I64)) {
    ray_view v;
    const ray_type *bad = n->kind == K_BYTES ? &ray_type_f64 : &ray_type_str;
    ray_status s = cget(c, sl->ref, bad, 0, &v);
    if (s != RAY_ETYPE) FAIL(c, "ray_get with the wrong type gave %s", ray_status_name(s));
    if (!strstr(ray_last_error(), bad->name))
      FAIL(c, "RAY_ETYPE message does not name the expected type");
  }
  c->n.gets++;
  check_ref(c, sl->ref, sl->node, ms, 0, NULL);
}

static void op_wait(st_client *c) {
  uint32_t m = 1 + below(c, 8);
  int idx[8];
  for (uint32_t k = 0; k < m; k++) idx[k] = (int)below(c, NSLOTS);
  uint32_t want = below(c, m + 1);
  static const int64_t timeouts[] = {0, 1, 5, -1};
  int64_t ms = timeouts[below(c, 4)];

  ray_ref *refs[8];
  uint32_t ids[8];
  size_t n = 0;
  for (uint32_t k = 0; k < m; k++) {
    if (!slot_is(c, idx[k], -1)) continue;
    bool dup = false; /* retained slots share a handle value: ray_wait refuses duplicates */
    for (size_t j = 0; j < n; j++) dup |= refs[j] == c->slots[idx[k]].ref;
    if (dup) continue;
    refs[n] = c->slots[idx[k]].ref;
    ids[n++] = c->slots[idx[k]].node;
  }
  size_t nr = want < n ? want : n;
  bool ready[8];
  c->n.waits++;
  ray_status s = ray_wait(refs, n, nr, ms, ready);
  if (s != RAY_OK && !(s == RAY_ETIMEOUT && ms >= 0))
    FAIL(c, "ray_wait(%zu refs, %zu, %" PRId64 " ms): %s", n, nr, ms, ray_status_name(s));
  size_t count = 0;
  for (size_t j = 0; j < n; j++) {
    if (N(c, ids[j])->ready && !ready[j])
      FAIL(c, "ray_wait: %s is ready but ready[%zu] is false", N(c, ids[j])->id, j);
    count += ready[j];
  }
  if (s == RAY_OK && count < nr) FAIL(c, "ray_wait: RAY_OK with %zu of %zu ready", count, nr);
  if (s == RAY_ETIMEOUT && count >= nr)
    FAIL(c, "ray_wait: RAY_ETIMEOUT with %zu ready, %zu wanted", count, nr);
  for (size_t j = 0; j < n; j++) {
    if (!ready[j]) continue;
    N(c, ids[j])->ready = true; /* so a get must not time out */
    check_ref(c, refs[j], ids[j], 0, 0, NULL);
  }
}

static void op_release(st_client *c) {
  int i = (int)below(c, NSLOTS);
  slot_drop(c, i, false);
}

static void op_retain(st_client *c) {
  int src = (int)below(c, NSLOTS);
  dest d = dest_draw(c);
  if (!slot_is(c, src, -1) || src == d.i) return;
  ray_ref *r = ray_ref_retain(c->slots[src].ref);
  uint32_t id = c->slots[src].node;
  if (!r) FAIL(c, "ray_ref_retain of a live ref gave NULL");
  char hex[33];
  ray_ref_id(r, hex);
  if (strcmp(hex, N(c, id)->id) != 0) FAIL(c, "ray_ref_retain: id %s, model %s", hex, N(c, id)->id);
  dest_store(c, d, r, id);
}

static void op_pin(st_client *c) {
  int i = (int)below(c, NSLOTS);
  unsigned action = below(c, 3);
  if (!slot_is(c, i, -1) || !N(c, c->slots[i].node)->put) return;
  ray_ref *r = c->slots[i].ref;
  node *n = N(c, c->slots[i].node);
  c->n.pins++;
  if (action != 1 && n->pins < 100) {
    ray_status s = ray_pin(r);
    /* Pinning a spilled object restores it, which needs room: in a
     * memory-limited round there may be none (and the message says so). */
    bool no_room = s == RAY_ESTOREFULL && c->r->mem && strstr(ray_last_error(), "no room");
    if (s != RAY_OK && !no_room) FAIL(c, "ray_pin of a sealed object: %s", ray_status_name(s));
    if (s == RAY_OK) n->pins++;
  }
  if (action >= 1) {
    ray_status s = ray_unpin(r);
    if (n->pins > 0 && s != RAY_OK) FAIL(c, "ray_unpin of a pinned object: %s", ray_status_name(s));
    if (n->pins == 0 && s != RAY_EINVAL)
      FAIL(c, "ray_unpin of an unpinned object gave %s", ray_status_name(s));
    if (n->pins > 0) n->pins--;
  }
}

/* Gets a view of a bytes object and hands it to the next client, which
 * releases it, while this one drops its ref at the same moment: it waits
 * (briefly) for the receiver to take the view, so that the last view and
 * the last ref of the object go at once, on two threads. */
static void op_handoff(st_client *c) {
  int i = (int)below(c, NSLOTS);
  bool drop_ref = chance(c, 60);
  if (!slot_is(c, i, K_BYTES) || !N(c, c->slots[i].node)->put) return;
  int to = (c->t + 1) % g_threads;
  view_item it = {.from = c->t, .op = c->op_run, .taken = &c->handoff_taken};
  ray_status s = cget(c, c->slots[i].ref, &ray_type_bytes, -1, &it.view);
  if (get_found_no_room(c, s)) return;
  if (s != RAY_OK) FAIL(c, "ray_get of a put object: %s", ray_status_name(s));
  check_value(c, c->slots[i].node, &it.view, 0);
  it.hash = st_hash_add(ST_HASH_INIT, it.view.data, it.view.size);
  inbox *b = &g_inbox[to];
  pthread_mutex_lock(&b->mu);
  bool queued = b->n < INBOX;
  if (queued) b->items[b->n++] = it;
  pthread_mutex_unlock(&b->mu);
  if (!queued) release_item(c, &it);
  c->n.handoffs++;
  if (!drop_ref) return;
  /* At most 1 ms: the receiver takes its inbox before each of its ops.
   * Yielding lets it run where threads outnumber cores. */
  for (double until = st_now() + 1e-3; queued && to != c->t && st_now() < until; sched_yield()) {
    if (atomic_load_explicit(&c->handoff_taken, memory_order_relaxed) == it.op + 1) {
      c->n.handoffs_in_step++;
      break;
    }
  }
  slot_drop(c, i, false);
}

/* ray_view_release twice, and on a struct copy of a released view: both
 * are to be ignored ("an already released view is ignored"). */
static void op_view_twice(st_client *c) {
  int i = (int)below(c, NSLOTS);
  if (!slot_is(c, i, -1) || !N(c, c->slots[i].node)->put) return;
  ray_view v;
  ray_status s = cget(c, c->slots[i].ref, NULL, -1, &v);
  if (get_found_no_room(c, s)) return;
  if (s != RAY_OK) FAIL(c, "ray_get of a put object: %s", ray_status_name(s));
  ray_view copy = v;
  ray_view_release(&v);
  ray_view_release(&v);
  ray_view_release(&copy);
  check_ref(c, c->slots[i].ref, c->slots[i].node, 0, 0, NULL);
}

static void op_create(st_client *c) {
  dest d = dest_draw(c);
  bool seal = chance(c, 60);
  size_t size = draw_size(c);
  uint64_t key = key_of(c, 0);
  void *data;
  ray_ref *ref;
  ray_status s = ray_create(size, NULL, &data, &ref);
  if (s != RAY_OK) {
    put_failed(c, s, "ray_create");
    return;
  }
  ray_view v;
  if ((s = cget(c, ref, NULL, 0, &v)) != RAY_ETIMEOUT)
    FAIL(c, "ray_get(0) of an unsealed object gave %s", ray_status_name(s));
  bool ready = true;
  if ((s = ray_wait(&ref, 1, 1, 1, &ready)) != RAY_ETIMEOUT || ready)
    FAIL(c, "ray_wait(1 ms) on an unsealed object gave %s, ready %d", ray_status_name(s), ready);
  st_fill(key, 0, data, size);
  if (!seal) {
    ray_ref_release(ref); /* the last ref of an unsealed object frees it */
    return;
  }
  if ((s = ray_seal(ref)) != RAY_OK) FAIL(c, "ray_seal: %s", ray_status_name(s));
  if ((s = ray_seal(ref)) != RAY_EINVAL) FAIL(c, "a second ray_seal gave %s", ray_status_name(s));
  uint32_t id = put_node(c, K_BYTES, ref);
  N(c, id)->nseg = 1;
  N(c, id)->segs[0] = (seg){key, (uint32_t)size};
  check_ref(c, ref, id, 0, 0, NULL); /* sealed: ready at once */
  dest_store(c, d, ref, id);
}

static void op_put_refs(st_client *c) {
  dest d = dest_draw(c);
  uint32_t m = below(c, MAXKIDS + 1);
  int src[MAXKIDS];
  for (uint32_t k = 0; k < m; k++) src[k] = (int)below(c, NSLOTS);
  bool drop_src = chance(c, 30);

  ray_ref *refs[MAXKIDS];
  uint32_t kids[MAXKIDS];
  uint32_t n = 0;
  for (uint32_t k = 0; k < m; k++) {
    if (!slot_is(c, src[k], -1)) continue;
    refs[n] = c->slots[src[k]].ref;
    kids[n++] = c->slots[src[k]].node;
  }
  ray_ref *out;
  ray_status s = ray_put_refs(n ? refs : NULL, n, &out);
  if (s != RAY_OK) {
    put_failed(c, s, "ray_put_refs");
    return;
  }
  c->n.put_refs++;
  uint32_t id = put_node(c, K_REFS, out);
  N(c, id)->nkids = (uint8_t)n;
  memcpy(N(c, id)->kids, kids, n * sizeof kids[0]);
  if (drop_src) /* the refs object keeps them alive */
    for (uint32_t k = 0; k < m; k++) slot_drop(c, src[k], false);
  dest_store(c, d, out, id);
}

/* ------------------------------------------------------------------------ */
/* Ops on tasks                                                              */
/* ------------------------------------------------------------------------ */

static void op_sum(st_client *c) {
  dest d = dest_draw(c);
  uint32_t m = 2 + below(c, 5);
  int src[6];
  int64_t vals[6];
  for (uint32_t k = 0; k < m; k++) src[k] = (int)below(c, NSLOTS), vals[k] = (int64_t)rnd(c);
  bool drop_src = chance(c, 30);

  ray_arg args[6];
  uint32_t par[6];
  int npar = 0;
  uint64_t sum = 0;
  for (uint32_t k = 0; k < m; k++) {
    if (slot_is(c, src[k], K_I64)) {
      args[k] = ray_arg_ref(c->slots[src[k]].ref);
      par[npar++] = c->slots[src[k]].node;
      sum += (uint64_t)N(c, c->slots[src[k]].node)->ival;
    } else {
      args[k] = ray_arg_value(&vals[k], sizeof vals[k], &ray_type_i64);
      sum += (uint64_t)vals[k];
    }
  }
  ray_ref *out;
  uint32_t task = submit(c, st_fn_sum, args, m, "sum", 1, 0, &out);
  uint32_t id = task_node(c, K_I64, "sum", task, par, npar);
  N(c, id)->ival = (int64_t)sum;
  set_id(c, id, out);
  if (drop_src) /* the task holds its own references */
    for (uint32_t k = 0; k < m; k++) slot_drop(c, src[k], false);
  dest_store(c, d, out, id);
}

/* A chain head -> sum -> sum -> ...; the head is a put, a task, a failing
 * task or a slow task cancelled at once; a link may be cancelled as soon as
 * it is submitted (most likely still waiting for its argument). */
static void op_chain(st_client *c) {
  dest d = dest_draw(c);
  bool long_chain = chance(c, 12);
  uint32_t len = long_chain ? 16 + below(c, 49) : 2 + below(c, 5);
  unsigned head = below(c, 4);
  int64_t hv = (int64_t)rnd(c);
  uint32_t cancel_at = chance(c, 20) ? below(c, len) : UINT32_MAX;
  bool keep_mid = chance(c, 30);
  uint32_t mid = below(c, len);
  dest dm = dest_draw(c);
  int64_t steps[64];
  for (uint32_t k = 0; k < len; k++) steps[k] = (int64_t)rnd(c);

  ray_ref *prev;
  uint32_t pn;
  if (head == 0) {
    ray_status s = ray_put(&hv, sizeof hv, &ray_type_i64, &prev);
    if (s != RAY_OK) {
      put_failed(c, s, "ray_put");
      return;
    }
    pn = put_node(c, K_I64, prev);
    N(c, pn)->ival = hv;
  } else if (head == 1 || head == 3) {
    int64_t us = 500 + (hv & 1023);
    ray_arg a[2] = {ray_arg_value(&hv, sizeof hv, &ray_type_i64),
                    ray_arg_value(&us, sizeof us, &ray_type_i64)};
    const char *name = head == 1 ? "sum" : "slow";
    uint32_t task =
        submit(c, head == 1 ? st_fn_sum : st_fn_slow, a, head == 1 ? 1 : 2, name, 1, 0, &prev);
    pn = task_node(c, K_I64, name, task, NULL, 0);
    N(c, pn)->ival = hv;
  } else {
    ray_arg a = ray_arg_value(&hv, sizeof hv, &ray_type_i64);
    uint32_t task = submit(c, st_fn_fail, &a, 1, "fail", 1, 0, &prev);
    pn = task_node(c, K_I64, "fail", task, NULL, 0);
    N(c, pn)->value_ok = false;
    N(c, pn)->own |= A_ETASK;
    snprintf(N(c, pn)->msg, sizeof N(c, pn)->msg, "stress failure %lld", (long long)hv);
  }
  set_id(c, pn, prev);
  ray_ref *head_ref = ray_ref_retain(prev);
  uint32_t head_node = pn;
  for (uint32_t k = 0; k < len; k++) {
    ray_arg a[2] = {ray_arg_ref(prev), ray_arg_value(&steps[k], sizeof steps[k], &ray_type_i64)};
    ray_ref *next;
    uint32_t task = submit(c, st_fn_sum, a, 2, "sum", 1, 0, &next);
    uint32_t id = task_node(c, K_I64, "sum", task, &pn, 1);
    N(c, id)->ival = (int64_t)((uint64_t)N(c, pn)->ival + (uint64_t)steps[k]);
    set_id(c, id, next);
    if (k == cancel_at) cancel(c, next, id, false);
    if (keep_mid && k == mid && k + 1 < len)
      dest_store(c, dm, prev, pn); /* the slot takes over this ref */
    else
      ray_ref_release(prev);
    prev = next;
    pn = id;
  }
  if (head == 3) cancel(c, head_ref, head_node, false);
  ray_ref_release(head_ref);
  dest_store(c, d, prev, pn);
}

/* The bytes of a K_BYTES node, materialised (free it). */
static unsigned char *node_bytes(st_client *c, uint32_t id, size_t *size) {
  const node *n = N(c, id);
  *size = node_size(n);
  unsigned char *buf = malloc(*size ? *size : 1);
  if (!buf) FAIL(c, "out of memory");
  size_t off = 0;
  for (int i = 0; i < n->nseg; i++) {
    st_fill(n->segs[i].key, 0, buf + off, n->segs[i].size);
    off += n->segs[i].size;
  }
  return buf;
}

/* Sources for checksum and concat: bytes slots, else small value arguments. */
typedef struct bytes_args {
  uint32_t m;
  int src[4];
  uint64_t key[4];
  uint32_t vsize[4];
  unsigned char *vbuf[4];
  ray_arg args[4];
  uint32_t par[4];
  int npar;
} bytes_args;

static void bytes_args_draw(st_client *c, bytes_args *b) {
  memset(b, 0, sizeof *b);
  b->m = 1 + below(c, 4);
  for (uint32_t k = 0; k < b->m; k++) {
    b->src[k] = (int)below(c, NSLOTS);
    b->vsize[k] = 1 + below(c, 200);
    b->key[k] = key_of(c, 1 + k);
  }
}

static void bytes_args_free(bytes_args *b) {
  for (uint32_t k = 0; k < b->m; k++) free(b->vbuf[k]);
}

static void value_arg(st_client *c, bytes_args *b, uint32_t k) {
  b->vbuf[k] = malloc(b->vsize[k]);
  if (!b->vbuf[k]) FAIL(c, "out of memory");
  st_fill(b->key[k], 0, b->vbuf[k], b->vsize[k]);
  b->args[k] = ray_arg_value(b->vbuf[k], b->vsize[k], &ray_type_bytes);
}

static void op_checksum(st_client *c) {
  dest d = dest_draw(c);
  bytes_args b;
  bytes_args_draw(c, &b);
  uint64_t h = ST_HASH_INIT;
  for (uint32_t k = 0; k < b.m; k++) {
    if (slot_is(c, b.src[k], K_BYTES)) {
      uint32_t id = c->slots[b.src[k]].node;
      size_t size;
      unsigned char *bytes = node_bytes(c, id, &size);
      h = st_hash_add(h, bytes, size);
      free(bytes);
      b.args[k] = ray_arg_ref(c->slots[b.src[k]].ref);
      b.par[b.npar++] = id;
    } else {
      value_arg(c, &b, k);
      h = st_hash_add(h, b.vbuf[k], b.vsize[k]);
    }
  }
  ray_ref *out;
  uint32_t task = submit(c, st_fn_checksum, b.args, b.m, "checksum", 1, 0, &out);
  bytes_args_free(&b);
  uint32_t id = task_node(c, K_I64, "checksum", task, b.par, b.npar);
  N(c, id)->ival = (int64_t)h;
  set_id(c, id, out);
  dest_store(c, d, out, id);
}

static void op_concat(st_client *c) {
  dest d = dest_draw(c);
  bytes_args b;
  bytes_args_draw(c, &b);
  seg segs[MAXSEG];
  int nseg = 0;
  for (uint32_t k = 0; k < b.m; k++) {
    const node *n = slot_is(c, b.src[k], K_BYTES) ? N(c, c->slots[b.src[k]].node) : NULL;
    if (n && nseg + n->nseg <= MAXSEG - (int)(b.m - 1 - k)) {
      memcpy(&segs[nseg], n->segs, n->nseg * sizeof segs[0]);
      nseg += n->nseg;
      b.args[k] = ray_arg_ref(c->slots[b.src[k]].ref);
      b.par[b.npar++] = c->slots[b.src[k]].node;
    } else {
      value_arg(c, &b, k);
      segs[nseg++] = (seg){b.key[k], b.vsize[k]};
    }
  }
  ray_ref *out;
  uint32_t task = submit(c, st_fn_concat, b.args, b.m, "concat", 1, 0, &out);
  bytes_args_free(&b);
  uint32_t id = task_node(c, K_BYTES, "concat", task, b.par, b.npar);
  N(c, id)->nseg = (uint8_t)nseg;
  memcpy(N(c, id)->segs, segs, (size_t)nseg * sizeof segs[0]);
  set_id(c, id, out);
  dest_store(c, d, out, id);
}

static void op_split(st_client *c) {
  dest d1 = dest_draw(c), d2 = dest_draw(c);
  int64_t x = (int64_t)rnd(c), k = 2 + below(c, 4);
  ray_arg a[2] = {ray_arg_value(&x, sizeof x, &ray_type_i64),
                  ray_arg_value(&k, sizeof k, &ray_type_i64)};
  ray_ref *out[5];
  uint32_t task = submit(c, st_fn_split, a, 2, "split", (int)k, 0, out);
  uint32_t ids[5];
  for (int64_t i = 0; i < k; i++) {
    ids[i] = task_node(c, K_I64, "split", task, NULL, 0);
    N(c, ids[i])->ival = (int64_t)((uint64_t)x + (uint64_t)i * ST_SPLIT_STEP);
    set_id(c, ids[i], out[i]);
  }
  for (int64_t i = 1; i + 1 < k; i++) ray_ref_release(out[i]);
  dest_store(c, d1, out[0], ids[0]);
  dest_store(c, d2, out[k - 1], ids[k - 1]);
}

static void op_forward(st_client *c) {
  dest d = dest_draw(c);
  int src = (int)below(c, NSLOTS);
  if (!c->slots[src].ref || N(c, c->slots[src].node)->kind == K_PAIR) return;
  ray_ref *list;
  ray_status s = ray_put_refs(&c->slots[src].ref, 1, &list);
  if (s != RAY_OK) {
    put_failed(c, s, "ray_put_refs");
    return;
  }
  ray_arg a = ray_arg_ref(list);
  ray_ref *out;
  uint32_t task = submit(c, st_fn_forward, &a, 1, "forward", 1, 0, &out);
  ray_ref_release(list); /* the task holds its own reference */
  uint32_t sid = c->slots[src].node;
  uint32_t id = node_new(c, N(c, sid)->kind);
  node *n = N(c, id);
  const node *sn = N(c, sid);
  n->name = "forward";
  n->task = task;
  n->fwd = true;
  n->value_ok = sn->value_ok;
  n->npar = 1;
  n->par[0] = sid;
  n->ival = sn->ival;
  n->nseg = sn->nseg;
  memcpy(n->segs, sn->segs, sizeof n->segs);
  n->nkids = sn->nkids;
  memcpy(n->kids, sn->kids, sizeof n->kids);
  if (c->r->mem) n->own |= A_ETASK;
  node_inherit(c, id);
  set_id(c, id, out);
  dest_store(c, d, out, id);
}

static void op_flaky(st_client *c) {
  dest d = dest_draw(c);
  int64_t fail_times = below(c, 4);
  int retries = (int)below(c, 5);
  int64_t value = (int64_t)rnd(c);
  if (retries == 4) retries = -1;
  if (c->nflaky == ST_FLAKY_PER_THREAD) return;
  int64_t slot = (int64_t)c->t * ST_FLAKY_PER_THREAD + c->nflaky++;
  /* Before the submit, which orders it before the task's first attempt. */
  atomic_store_explicit(&st_flaky[slot], 0, memory_order_relaxed);
  ray_arg a[3] = {ray_arg_value(&slot, sizeof slot, &ray_type_i64),
                  ray_arg_value(&fail_times, sizeof fail_times, &ray_type_i64),
                  ray_arg_value(&value, sizeof value, &ray_type_i64)};
  ray_ref *out;
  uint32_t task = submit(c, st_fn_flaky, a, 3, "flaky", 1, retries, &out);
  uint32_t id = task_node(c, K_I64, "flaky", task, NULL, 0);
  N(c, id)->ival = value;
  if (retries >= 0 && fail_times > retries) {
    N(c, id)->value_ok = false;
    N(c, id)->own |= A_ETASK;
    snprintf(N(c, id)->msg, sizeof N(c, id)->msg, "flaky attempt %d of", retries + 1);
  }
  set_id(c, id, out);
  dest_store(c, d, out, id);
}

static void op_fail(st_client *c) {
  dest d = dest_draw(c);
  int64_t code = below(c, 1000000);
  ray_arg a = ray_arg_value(&code, sizeof code, &ray_type_i64);
  ray_ref *out;
  uint32_t task = submit(c, st_fn_fail, &a, 1, "fail", 1, 0, &out);
  uint32_t id = task_node(c, K_I64, "fail", task, NULL, 0);
  N(c, id)->value_ok = false;
  N(c, id)->own |= A_ETASK;
  snprintf(N(c, id)->msg, sizeof N(c, id)->msg, "stress failure %lld", (long long)code);
  set_id(c, id, out);
  dest_store(c, d, out, id);
}

/* A slow task: left alone, cancelled at once, or cancelled after a timed
 * get of it ran out. */
static void op_slow(st_client *c) {
  dest d = dest_draw(c);
  int64_t value = (int64_t)rnd(c), us = 100 + below(c, 2900);
  unsigned mode = below(c, 3);
  bool recursive = chance(c, 50);
  ray_arg a[2] = {ray_arg_value(&value, sizeof value, &ray_type_i64),
                  ray_arg_value(&us, sizeof us, &ray_type_i64)};
  ray_ref *out;
  uint32_t task = submit(c, st_fn_slow, a, 2, "slow", 1, 0, &out);
  uint32_t id = task_node(c, K_I64, "slow", task, NULL, 0);
  N(c, id)->ival = value;
  set_id(c, id, out);
  if (mode == 2) check_ref(c, out, id, 1, 0, NULL);
  if (mode >= 1) cancel(c, out, id, recursive);
  dest_store(c, d, out, id);
}

/*
 * A task that runs until it is cancelled (or 5 s): timed gets of it must
 * time out, and once it is cancelled, running or still queued, its result
 * must be RAY_ECANCELLED. A value means the cancel was lost (unless this
 * thread was held up for seconds between the task's start and the cancel).
 */
static void op_hold_cancel(st_client *c) {
  dest d = dest_draw(c);
  int64_t value = (int64_t)rnd(c), ms = 5000;
  uint32_t timed_gets = below(c, 4);
  bool recursive = chance(c, 50), wait_now = chance(c, 30), let_start = chance(c, 70);
  if (c->nflaky == ST_FLAKY_PER_THREAD) return;
  int64_t slot = (int64_t)c->t * ST_FLAKY_PER_THREAD + c->nflaky++;
  atomic_store_explicit(&st_hold[slot], 0, memory_order_relaxed); /* before the submit */
  ray_arg a[3] = {ray_arg_value(&slot, sizeof slot, &ray_type_i64),
                  ray_arg_value(&ms, sizeof ms, &ray_type_i64),
                  ray_arg_value(&value, sizeof value, &ray_type_i64)};
  ray_ref *out;
  uint32_t task = submit(c, st_fn_hold, a, 3, "hold", 1, 0, &out);
  uint32_t id = task_node(c, K_I64, "hold", task, NULL, 0);
  N(c, id)->ival = value;
  set_id(c, id, out);
  for (uint32_t k = 0; k < timed_gets; k++) {
    ray_view v;
    ray_status s = cget(c, out, &ray_type_i64, 1, &v);
    if (s != RAY_ETIMEOUT) FAIL(c, "a timed get of a held task gave %s", ray_status_name(s));
  }
  /* Up to 5 ms for a worker to start it, or cancel it most likely queued. */
  for (double until = st_now() + 5e-3; let_start && st_now() < until; sched_yield())
    if (atomic_load_explicit(&st_hold[slot], memory_order_relaxed)) break;
  cancel(c, out, id, recursive);
  int64_t started = atomic_load_explicit(&st_hold[slot], memory_order_relaxed);
  c->n.holds++;
  c->n.holds_running += started != 0;
  N(c, id)->value_ok = started && st_now() * 1000 - (double)started > 0.8 * (double)ms;
  if (wait_now) check_ref(c, out, id, -1, 0, NULL);
  dest_store(c, d, out, id);
}

static void op_nested(st_client *c) {
  dest d = dest_draw(c);
  int64_t in[2] = {(int64_t)rnd(c), (int64_t)rnd(c)};
  unsigned mode = below(c, 4);
  ray_arg a[2] = {ray_arg_value(&in[0], sizeof in[0], &ray_type_i64),
                  ray_arg_value(&in[1], sizeof in[1], &ray_type_i64)};
  ray_ref *out;
  uint32_t task = submit(c, st_fn_nested, a, 2, "nested", 1, 0, &out);
  uint32_t id = task_node(c, K_I64, "nested", task, NULL, 0);
  N(c, id)->ival = (int64_t)((uint64_t)in[0] + (uint64_t)in[1] + 3);
  set_id(c, id, out);
  if (mode >= 2) cancel(c, out, id, mode == 2);
  dest_store(c, d, out, id);
}

static void op_cancel(st_client *c) {
  int i = (int)below(c, NSLOTS);
  bool recursive = chance(c, 50);
  if (!slot_is(c, i, -1)) return;
  uint32_t id = c->slots[i].node;
  if (N(c, id)->kind == K_PAIR) return; /* actor calls: not modelled */
  cancel(c, c->slots[i].ref, id, recursive);
  if (N(c, id)->put) check_ref(c, c->slots[i].ref, id, 0, 0, NULL); /* no task: left alone */
}

/* ------------------------------------------------------------------------ */
/* Ops on actors                                                             */
/* ------------------------------------------------------------------------ */

static void act_hist(actor *a, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void act_hist(actor *a, const char *fmt, ...) {
  if (a->hlen + 64 >= sizeof a->hist) return; /* the start is what matters */
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(a->hist + a->hlen, sizeof a->hist - a->hlen, fmt, ap);
  va_end(ap);
  if (n > 0) a->hlen += (size_t)n;
}

static actor *act_of(st_client *c, unsigned ai) {
  int32_t k = c->act_slot[ai];
  return k < 0 ? NULL : &c->acts[k];
}

static void act_release(st_client *c, unsigned ai) {
  actor *a = act_of(c, ai);
  if (!a) return;
  act_hist(a, "release ");
  ray_actor_release(a->h); /* it ends after the calls already made */
  a->h = NULL;
  c->act_slot[ai] = -1;
}

static bool act_may_end(const actor *a) {
  return a->end_sure || a->end_maybe;
}

/* An end was asked for; a kill (out of band) may fail every call not yet
 * run, a crash (in order) only the later ones. */
static void act_ending(st_client *c, actor *a, bool sure, bool affects_queued) {
  if (sure)
    a->end_sure = true;
  else
    a->end_maybe = true;
  if (!affects_queued) return;
  for (uint32_t k = 0; k < a->ncalls; k++) N(c, a->calls[k])->own |= A_EACTOR | A_CANCELLED;
}

/*
 * A restart asked for by kill(false) or a crash. Kill requests are merged:
 * a kill(false) that reaches the actor before it has acted on the previous
 * one makes no restart of its own (they are bits in the actor's control
 * word, src/actor/actor.c), which ray.h does not say. So the restarts
 * counted here are an upper bound, and "no restart left" means the actor
 * may end, not that it does.
 */
static void act_restart(st_client *c, actor *a, bool kill) {
  if (a->max_restarts >= 0 && a->restarts >= a->max_restarts)
    act_ending(c, a, false, kill);
  else
    a->restarts++;
}

static void op_actor_create(st_client *c) {
  unsigned ai = below(c, NACT);
  static const int restarts[] = {0, 1, 2, -1};
  int max_restarts = restarts[below(c, 4)];
  bool named = chance(c, 50);
  int64_t init = below(c, 1000000);
  uint32_t made = c->nacts;
  if (made == ST_ACTORS_PER_THREAD) return;
  act_release(c, ai);
  if (c->nacts == c->acap) {
    c->acap = c->acap ? 2 * c->acap : 16;
    c->acts = realloc(c->acts, c->acap * sizeof *c->acts);
    if (!c->acts) FAIL(c, "out of memory");
  }
  actor *a = &c->acts[c->nacts];
  memset(a, 0, sizeof *a);
  a->init = init;
  a->idx = (uint32_t)c->t * ST_ACTORS_PER_THREAD + made;
  a->max_restarts = max_restarts;
  a->known = true;
  a->known_inc = 1;
  a->known_n = a->nr_n = init;
  if (named)
    snprintf(a->name, sizeof a->name, "stress-%d-%d-%d-%u", c->r->round, c->r->epoch, c->t, made);
  atomic_store_explicit(&st_incarn[a->idx], 0, memory_order_relaxed); /* before its on_start */
  int64_t idx = a->idx;
  ray_arg args[2] = {ray_arg_value(&init, sizeof init, &ray_type_i64),
                     ray_arg_value(&idx, sizeof idx, &ray_type_i64)};
  ray_actor_opts o = {0};
  o.name = named ? a->name : NULL;
  o.max_restarts = max_restarts;
  act_hist(a, "create(max_restarts %d) ", max_restarts);
  ray_status s = ray_actor_create(&st_counter_class, args, 2, &o, &a->h);
  if (s != RAY_OK) FAIL(c, "ray_actor_create: %s", ray_status_name(s));
  c->act_slot[ai] = (int32_t)c->nacts++;
}

/* Calls method on actor ai through handle h (a's own or one from lookup)
 * and models the call. arg_ref: an i64 put to pass by reference, or NULL. */
static void actor_call(st_client *c, unsigned ai, ray_actor *h, unsigned method, int64_t k,
                       ray_ref *arg_ref, dest d) {
  actor *a = act_of(c, ai);
  ray_arg arg = arg_ref ? ray_arg_ref(arg_ref) : ray_arg_value(&k, sizeof k, &ray_type_i64);
  ray_ref *out;
  ray_status s =
      ray_actor_call(h, method, &arg, method == ST_M_GET || method == ST_M_CRASH ? 0 : 1, &out);
  c->n.actor_calls++;
  if (s == RAY_EACTOR) {
    act_hist(a, "%s:refused ", st_counter_class.methods[method].name);
    if (!act_may_end(a)) FAIL(c, "ray_actor_call: RAY_EACTOR, but no end was asked for");
    if (!strstr(ray_last_error(), "actor '")) FAIL(c, "RAY_EACTOR message does not name the actor");
    c->n.errors++;
    dest_store(c, d, NULL, 0); /* as when the call is accepted: the sequence stays the same */
    return;
  }
  if (s != RAY_OK) FAIL(c, "ray_actor_call: %s", ray_status_name(s));
  c->n.actor_calls_ok++;
  int64_t add = method == ST_M_ADD || method == ST_M_SLOW_ADD ? k : 0;
  if (a->ncalls == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->ks = realloc(a->ks, a->cap * sizeof *a->ks);
    a->calls = realloc(a->calls, a->cap * sizeof *a->calls);
    if (!a->ks || !a->calls) FAIL(c, "out of memory");
  }
  act_hist(a, "%u:%s(%" PRId64 ") ", a->ncalls, st_counter_class.methods[method].name, k);
  uint32_t id = node_new(c, K_PAIR);
  node *n = N(c, id);
  n->name = st_counter_class.methods[method].name;
  n->actor = c->act_slot[ai];
  n->call = a->ncalls;
  a->ks[a->ncalls] = add;
  a->calls[a->ncalls++] = id;
  n->value_ok = method != ST_M_FAIL && method != ST_M_CRASH && !a->end_sure;
  if (act_may_end(a)) n->own |= A_EACTOR | A_CANCELLED;
  if (c->r->mem) n->own |= A_ETASK;
  a->nr_n = (int64_t)((uint64_t)a->nr_n + (uint64_t)add);
  n->nr_n = a->nr_n;
  if (a->known && !a->end_sure) {
    a->known_n = (int64_t)((uint64_t)a->known_n + (uint64_t)add);
    n->exact = true;
    n->exp_inc = a->known_inc;
    n->exp_n = a->known_n;
  }
  if (method == ST_M_FAIL) {
    n->own |= A_ETASK;
    snprintf(n->msg, sizeof n->msg, "refused %lld", (long long)k);
  } else if (method == ST_M_CRASH) {
    n->own |= A_EACTOR;
    a->known = false;
    act_restart(c, a, false); /* in order: only later calls see it */
  }
  set_id(c, id, out);
  dest_store(c, d, out, id);
}

static void op_actor_call(st_client *c) {
  unsigned ai = below(c, NACT);
  unsigned p = below(c, 100);
  int64_t k = 1 + below(c, 1000);
  int src = (int)below(c, NSLOTS);
  dest d = dest_draw(c);
  unsigned method = p < 55   ? ST_M_ADD
                    : p < 65 ? ST_M_GET
                    : p < 75 ? ST_M_SLOW_ADD
                    : p < 85 ? ST_M_FAIL
                    : p < 90 ? ST_M_CRASH
                             : ST_M_ADD;
  actor *a = act_of(c, ai);
  if (!a) return;
  ray_ref *arg_ref = NULL;
  if (p >= 90 && slot_is(c, src, K_I64) && N(c, c->slots[src].node)->put) {
    /* By reference: the call waits for nothing, but goes the ref path. */
    arg_ref = c->slots[src].ref;
    k = N(c, c->slots[src].node)->ival;
  }
  actor_call(c, ai, a->h, method, k, arg_ref, d);
}

static void op_actor_send(st_client *c) {
  unsigned ai = below(c, NACT);
  int64_t k = 1 + below(c, 1000);
  actor *a = act_of(c, ai);
  if (!a || act_may_end(a)) return; /* a send to an ended actor only prints */
  ray_arg arg = ray_arg_value(&k, sizeof k, &ray_type_i64);
  ray_status s = ray_actor_send(a->h, ST_M_ADD, &arg, 1);
  if (s != RAY_OK) FAIL(c, "ray_actor_send: %s", ray_status_name(s));
  c->n.actor_calls++;
  c->n.actor_calls_ok++;
  if (a->ncalls == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->ks = realloc(a->ks, a->cap * sizeof *a->ks);
    a->calls = realloc(a->calls, a->cap * sizeof *a->calls);
    if (!a->ks || !a->calls) FAIL(c, "out of memory");
  }
  act_hist(a, "%u:send add(%" PRId64 ") ", a->ncalls, k);
  /* A send is a call without a reply: in the log, with no node to check. */
  uint32_t id = node_new(c, K_PAIR);
  N(c, id)->actor = c->act_slot[ai];
  N(c, id)->call = a->ncalls;
  a->ks[a->ncalls] = k;
  a->calls[a->ncalls++] = id;
  a->nr_n = (int64_t)((uint64_t)a->nr_n + (uint64_t)k);
  a->known_n = (int64_t)((uint64_t)a->known_n + (uint64_t)k);
}

/* A get, waited for. A kill takes effect after the method running when it
 * was asked for, so a call made later runs after it: the reply is the state
 * that the calls made after this one start from. */
static void op_actor_sync(st_client *c) {
  unsigned ai = below(c, NACT);
  dest d = dest_draw(c);
  actor *a = act_of(c, ai);
  if (!a) return;
  actor_call(c, ai, a->h, ST_M_GET, 0, NULL, d);
  slot *sl = &c->slots[d.i];
  if (!sl->ref) return;
  c->last_pair[0] = 0;
  check_ref(c, sl->ref, sl->node, -1, 0, NULL);
  a = act_of(c, ai);
  if (N(c, sl->node)->seen == RAY_OK)
    act_hist(a, "=> {%" PRId64 ", %" PRId64 "} ", c->last_pair[0], c->last_pair[1]);
  if (N(c, sl->node)->seen == RAY_OK) {
    a->known = true;
    a->known_inc = c->last_pair[0];
    a->known_n = c->last_pair[1];
  }
}

static void op_actor_kill(st_client *c) {
  unsigned ai = below(c, NACT);
  bool no_restart = chance(c, 30);
  actor *a = act_of(c, ai);
  if (!a) return;
  act_hist(a, "kill(%s) ", no_restart ? "true" : "false");
  ray_status s = ray_actor_kill(a->h, no_restart);
  if (s != RAY_OK) FAIL(c, "ray_actor_kill: %s", ray_status_name(s));
  c->n.kills++;
  /* It takes effect after the method running now: calls queued before it
   * may run before or after the restart. */
  for (uint32_t k = 0; k < a->ncalls; k++) N(c, a->calls[k])->exact = false;
  a->known = false;
  if (no_restart)
    act_ending(c, a, true, true);
  else if (!a->end_sure)
    act_restart(c, a, true);
}

static void op_actor_lookup(st_client *c) {
  unsigned ai = below(c, NACT);
  int64_t k = 1 + below(c, 1000);
  dest d = dest_draw(c);
  actor *a = act_of(c, ai);
  if (!a || !a->name[0]) return;
  ray_actor *h = NULL;
  ray_status s = ray_actor_lookup(a->name, &h);
  if (s != RAY_OK && !(s == RAY_ENOTFOUND && act_may_end(a))) /* free once it has ended */
    FAIL(c, "ray_actor_lookup('%s') of a living actor: %s", a->name, ray_status_name(s));
  /* Same submitter (this thread), another handle: still in order. */
  if (h && !a->end_sure)
    actor_call(c, ai, h, ST_M_ADD, k, NULL, d);
  else
    dest_store(c, d, NULL, 0);
  ray_actor_release(h);
}

static void op_actor_release(st_client *c) {
  act_release(c, below(c, NACT));
}

/* ------------------------------------------------------------------------ */
/* The client thread                                                         */
/* ------------------------------------------------------------------------ */

typedef struct op_def {
  const char *name;
  void (*fn)(st_client *c);
  unsigned weight;
} op_def;

static const op_def g_ops[] = {
    {"put", op_put, 14},
    {"get", op_get, 12},
    {"wait", op_wait, 5},
    {"release", op_release, 7},
    {"retain", op_retain, 3},
    {"pin", op_pin, 3},
    {"handoff", op_handoff, 6},
    {"view_release_twice", op_view_twice, 1},
    {"create", op_create, 2},
    {"put_refs", op_put_refs, 3},
    {"sum", op_sum, 6},
    {"chain", op_chain, 4},
    {"checksum", op_checksum, 2},
    {"concat", op_concat, 3},
    {"split", op_split, 2},
    {"forward", op_forward, 2},
    {"flaky", op_flaky, 3},
    {"fail", op_fail, 1},
    {"slow", op_slow, 2},
    {"hold_cancel", op_hold_cancel, 2},
    {"nested", op_nested, 2},
    {"cancel", op_cancel, 3},
    {"actor_create", op_actor_create, 2},
    {"actor_call", op_actor_call, 8},
    {"actor_send", op_actor_send, 2},
    {"actor_sync", op_actor_sync, 2},
    {"actor_kill", op_actor_kill, 1},
    {"actor_lookup", op_actor_lookup, 1},
    {"actor_release", op_actor_release, 1},
};
enum { NOPS = sizeof g_ops / sizeof g_ops[0] };

static unsigned g_ops_total; /* sum of the weights, set before any client runs */

static const op_def *draw_op(st_client *c) {
  unsigned x = below(c, g_ops_total), acc = 0;
  for (int i = 0; i < NOPS; i++)
    if (x < (acc += g_ops[i].weight)) return &g_ops[i];
  return &g_ops[0];
}

static void set_where(st_client *c, const char *what) {
  st_where *w = &g_where[c->t];
  atomic_store(&w->op, c->op_run);
  atomic_store(&w->what, what);
  atomic_store(&w->since, st_now());
}

static _Noreturn void fail_op(st_client *c, const char *fmt, ...) {
  char what[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (c->checking) {
    const actor *a = c->checking;
    fprintf(stderr,
            "ray_stress: the Counter (init %" PRId64 ", max_restarts %d, %d restarts asked for%s) "
            "was asked, in order: %s\n",
            a->init, a->max_restarts, a->restarts,
            a->end_sure    ? ", killed"
            : a->end_maybe ? ", maybe ended"
                           : "",
            a->hist);
  }
  st_failf(c->t, c->op_run, "%s (round %d epoch %d, op %u of the epoch): %s",
           atomic_load(&g_where[c->t].what), c->r->round, c->r->epoch, c->op, what);
}

/* End of the epoch: check and drop everything the client holds. */
static void sweep(st_client *c) {
  drain_inbox(c, c->t);
  for (int i = 0; i < NSLOTS; i++) {
    set_where(c, "sweep");
    slot_drop(c, i, true); /* pins are left: a pin does not keep an object alive */
  }
  for (unsigned ai = 0; ai < NACT; ai++) act_release(c, ai);
  drain_inbox(c, c->t);
}

static void *client_main(void *arg) {
  st_client *c = arg;
  seed_client(c);
  for (unsigned ai = 0; ai < NACT; ai++) c->act_slot[ai] = -1;
  atomic_store(&g_where[c->t].active, true);
  for (c->op = 0; c->op < OPS_PER_EPOCH; c->op++) {
    if (st_budget_spent() || (st_set.ops && c->op_run >= st_set.ops)) break;
    const op_def *o = draw_op(c);
    set_where(c, o->name);
    drain_inbox(c, c->t);
    o->fn(c);
    /* The op and the PRNG's state after it: equal digests mean that no
     * draw depended on an outcome. */
    c->digest = st_mix64(c->digest ^ c->rng[0] ^ ((uint64_t)(o - g_ops) << 56));
    c->n.ops++;
    c->op_run++;
  }
  sweep(c);
  atomic_store(&g_where[c->t].active, false);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Epochs                                                                    */
/* ------------------------------------------------------------------------ */

void st_clients_init(int threads) {
  g_threads = threads;
  g_ops_total = 0;
  for (int i = 0; i < NOPS; i++) g_ops_total += g_ops[i].weight;
  for (int t = 0; t < threads; t++) pthread_mutex_init(&g_inbox[t].mu, NULL);
}

void st_clients_free(void) {
  for (int t = 0; t < g_threads; t++) pthread_mutex_destroy(&g_inbox[t].mu);
}

st_where *st_client_where(int thread) {
  return &g_where[thread];
}

uint64_t st_client_digest(int thread, uint64_t *ops) {
  *ops = g_op_run[thread];
  return g_digest[thread];
}

bool st_all_ops_done(void) {
  if (!st_set.ops) return false;
  for (int t = 0; t < g_threads; t++)
    if (g_op_run[t] < st_set.ops) return false;
  return true;
}

void st_counts_add(st_counts *to, const st_counts *n) {
  const uint64_t *src = (const uint64_t *)n;
  uint64_t *dst = (uint64_t *)to;
  for (size_t i = 0; i < sizeof *n / sizeof(uint64_t); i++) dst[i] += src[i];
}

void st_run_epoch(const st_round *r, st_counts *epoch_counts) {
  st_client *cs = calloc((size_t)g_threads, sizeof *cs);
  pthread_t *th = calloc((size_t)g_threads, sizeof *th);
  if (!cs || !th) st_failf(-1, 0, "out of memory");
  for (int t = 0; t < g_threads; t++) {
    cs[t].t = t;
    cs[t].r = r;
    cs[t].op_run = g_op_run[t];
    cs[t].digest = g_digest[t];
    if (pthread_create(&th[t], NULL, client_main, &cs[t]) != 0)
      st_failf(-1, 0, "pthread_create failed");
  }
  for (int t = 0; t < g_threads; t++) pthread_join(th[t], NULL);
  /* Views queued after their client's last drain: released here, by yet
   * another thread. */
  for (int t = 0; t < g_threads; t++) drain_inbox(&cs[t], t);
  memset(epoch_counts, 0, sizeof *epoch_counts);
  for (int t = 0; t < g_threads; t++) {
    g_op_run[t] = cs[t].op_run;
    g_digest[t] = cs[t].digest;
    st_counts_add(epoch_counts, &cs[t].n);
    for (uint32_t k = 0; k < cs[t].nacts; k++) {
      free(cs[t].acts[k].ks);
      free(cs[t].acts[k].calls);
    }
    free(cs[t].acts);
    free(cs[t].nodes);
  }
  free(cs);
  free(th);
}
