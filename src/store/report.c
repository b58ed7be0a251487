/*
 * report.c - ray_memory_report: the live objects grouped by creator, with
 * what holds them; the same report at shutdown (RAY_MEMORY_REPORT) or on a
 * signal (RAY_MEMORY_SIGNAL); and the creators named in the shutdown leak
 * warning.
 *
 * Algorithm and trade-offs:
 *  - A report walks every slot of the entry table while other threads put,
 *    get and free. It reads an entry only while holding it: it adds a ref
 *    with a CAS from a nonzero `holds` (the spiller's way of keeping a
 *    victim), so the entry cannot be freed under it, then acquires the
 *    state, which publishes the fields it reads. A slot's holds leave 0
 *    only in entry_publish (entries.c), just before the state's release
 *    store, so the CAS never lands on an entry that is still being made;
 *    one taken in that instant finds the state FREE and is dropped at once.
 *    Pins and where the bytes are (locked_flags) are read under the stripe
 *    lock, as their writers write them. The report's own ref is left out of
 *    the counts, and dropping it may free the object (if the program
 *    released it meanwhile): then the reporting thread frees it, as any
 *    last holder does.
 *  - The result is a snapshot of no single instant: objects made or freed
 *    during the walk may or may not appear. Each object is counted whole.
 *  - Groups are per creator id (creator.h), an array indexed by id, so a
 *    walk costs O(slots) and memory O(creators); labels are made (and a
 *    put site symbolised) only for groups that are printed.
 *  - With RAY_MEMORY_ALL a second walk prints one line per object, in slot
 *    order, rather than keeping every object in memory to sort it.
 *  - The signal handler only writes a byte to a pipe (write(2) is
 *    async-signal-safe); a thread of ours reads it and writes the report.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "store/creator.h"
#include "store/store_int.h"

/* ------------------------------------------------------------------------ */
/* Looking at one entry                                                     */
/* ------------------------------------------------------------------------ */

typedef struct obj_look {
  uint32_t state; /* RT_ST_* (ENDING reads as PENDING) */
  uint32_t gen;
  rt_creator_id creator;
  size_t size;          /* payload bytes; 0 while pending, failed, or an alias */
  const char *type;     /* the type's name; NULL while pending or failed */
  uint32_t refs, views; /* without the report's own ref */
  uint16_t pins;
  bool spilled; /* on disk and not in memory */
  bool alias;   /* a task returned another object: its bytes are counted there */
} obj_look;

/* Takes a hold on the entry of slot if it is alive and fills *o, or returns
 * false. On true the caller drops the hold (rt_store_drop_ref). */
static bool look_hold(rt_store *st, uint32_t slot, rt_entry *e, obj_look *o) {
  /* relaxed: the CAS only has to keep the count exact and never revive a
   * 0; what we then read is published by the state, acquired below. */
  uint64_t h = atomic_load_explicit(&e->holds, memory_order_relaxed);
  do {
    if (h == 0) return false;
  } while (!atomic_compare_exchange_weak_explicit(&e->holds, &h, h + RT_HOLD_REF,
                                                  memory_order_relaxed, memory_order_relaxed));
  /* acquire: pairs with entry_publish's release store (and a seal's or a
   * task end's release), so size, type, flags and the creator are whole. */
  uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire) & RT_ST_MASK;
  if (state == RT_ST_FREE) { /* held in entry_publish's instant: not ours to show yet */
    rt_store_drop_ref(st, slot, e);
    return false;
  }
  memset(o, 0, sizeof *o);
  o->state = state == RT_ST_ENDING ? RT_ST_PENDING : state;
  /* relaxed: the generation changes only when the entry is freed, which
   * our hold prevents. */
  o->gen = atomic_load_explicit(&e->gen, memory_order_relaxed);
  o->creator = rt_slots_creator(&st->slots, slot);
  /* relaxed: a count that may change the next instant anyway. */
  uint64_t now = atomic_load_explicit(&e->holds, memory_order_relaxed);
  o->refs = RT_HOLD_REFS(now) - 1;
  o->views = RT_HOLD_VIEWS(now);
  /* A PENDING or ENDING entry's fields belong to the task that ends it
   * (entry.h): nothing more to read. */
  if (o->state != RT_ST_SEALED && o->state != RT_ST_CREATING && o->state != RT_ST_FAILED)
    return true;
  if (o->state == RT_ST_FAILED) return true; /* an error has no bytes */
  uint16_t flags = e->flags;
  o->alias = flags & RT_EF_ALIAS;
  o->size = o->alias ? 0 : e->size;
  o->type = e->type ? e->type->name : NULL;
  if (o->state == RT_ST_SEALED) { /* pins and spilling only concern sealed objects */
    rt_stripe *sp = stripe_of(st, slot);
    stripe_lock(sp);
    o->pins = e->pins;
    o->spilled = (flags & RT_EF_SPILLABLE) && (e->locked_flags & RT_LF_OUT);
    stripe_unlock(sp);
  }
  return true;
}

/* Calls fn for every live object (holding it meanwhile); stops early when
 * fn returns false. */
static void walk(rt_store *st, bool (*fn)(void *arg, uint32_t slot, const obj_look *o), void *arg) {
  for (uint32_t c = 0; c < RT_MAX_CHUNKS; c++) {
    /* acquire: pairs with the release store that publishes a chunk
     * (idtable.c); chunks are published in order, so the first NULL ends
     * the table. */
    rt_entry *chunk = atomic_load_explicit(&st->slots.tab.chunks[c], memory_order_acquire);
    if (!chunk) return;
    for (uint32_t i = 0; i < RT_CHUNK_SLOTS; i++) {
      uint32_t slot = (c << RT_CHUNK_SHIFT) | i;
      obj_look o;
      if (!look_hold(st, slot, &chunk[i], &o)) continue;
      bool more = fn(arg, slot, &o);
      rt_store_drop_ref(st, slot, &chunk[i]);
      if (!more) return;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Groups                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct group {
  rt_creator_id id;
  const char *label; /* rt_creator_label(id), set once the walk is done */
  uint64_t objects, bytes, refs, views, pins, spilled, spilled_bytes;
} group;

typedef struct tally {
  group *by_id; /* cap entries, indexed by creator id */
  rt_creator_id cap;
  group total;
  bool nomem;
} tally;

static void group_add(group *g, const obj_look *o) {
  g->objects++;
  g->bytes += o->size;
  g->refs += o->refs;
  g->views += o->views;
  g->pins += o->pins;
  if (o->spilled) {
    g->spilled++;
    g->spilled_bytes += o->size;
  }
}

static bool tally_one(void *arg, uint32_t slot, const obj_look *o) {
  (void)slot;
  tally *t = arg;
  if (o->creator >= t->cap) {
    /* A creator newer than the walk: its id is below the count now (it was
     * made before the object was published, which our hold acquired). */
    rt_creator_id cap = rt_creator_count();
    if (cap <= o->creator) cap = o->creator + 1; /* not an id the table gave: keep it anyway */
    group *g = rt_realloc(t->by_id, (size_t)cap * sizeof *g);
    if (!g) {
      t->nomem = true;
      return false;
    }
    memset(g + t->cap, 0, (size_t)(cap - t->cap) * sizeof *g);
    t->by_id = g;
    t->cap = cap;
  }
  group_add(&t->by_id[o->creator], o);
  group_add(&t->total, o);
  return true;
}

/* Most bytes first; then most objects; then the older creator. */
static int group_cmp(const void *a, const void *b) {
  const group *x = a, *y = b;
  if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
  if (x->objects != y->objects) return x->objects > y->objects ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int label_cmp(const void *a, const void *b) {
  const group *x = a, *y = b;
  int c = strcmp(x->label, y->label);
  return c ? c : (x->id < y->id ? -1 : x->id > y->id);
}

/* Merges the groups of g[0 .. n-1] that have the same label; returns how
 * many are left. One line of source can be several call instructions (a
 * loop the compiler unrolled, a call in both arms of an inlined helper):
 * several sites, one line for the person reading. (Without line
 * information the labels are offsets, and stay apart.) */
static size_t merge_by_label(group *g, size_t n) {
  for (size_t i = 0; i < n; i++) g[i].label = rt_creator_label(g[i].id);
  qsort(g, n, sizeof *g, label_cmp);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (k && strcmp(g[k - 1].label, g[i].label) == 0) {
      group *m = &g[k - 1]; /* the older id: the first of its run */
      m->objects += g[i].objects;
      m->bytes += g[i].bytes;
      m->refs += g[i].refs;
      m->views += g[i].views;
      m->pins += g[i].pins;
      m->spilled += g[i].spilled;
      m->spilled_bytes += g[i].spilled_bytes;
    } else {
      g[k++] = g[i];
    }
  }
  return k;
}

/* Walks the store into t and sorts its groups: t->by_id then holds the
 * n groups that have objects, labelled, merged by label and sorted. False
 * when memory ran out. */
static bool tally_groups(rt_store *st, tally *t, size_t *n) {
  memset(t, 0, sizeof *t);
  t->cap = rt_creator_count();
  if (!(t->by_id = rt_calloc(t->cap, sizeof *t->by_id))) return false;
  walk(st, tally_one, t);
  if (t->nomem) {
    free(t->by_id);
    t->by_id = NULL;
    return false;
  }
  size_t k = 0;
  for (rt_creator_id id = 0; id < t->cap; id++)
    if (t->by_id[id].objects) {
      t->by_id[k] = t->by_id[id];
      t->by_id[k++].id = id;
    }
  k = merge_by_label(t->by_id, k);
  qsort(t->by_id, k, sizeof *t->by_id, group_cmp);
  *n = k;
  return true;
}

/* ------------------------------------------------------------------------ */
/* The report                                                               */
/* ------------------------------------------------------------------------ */

static const char *state_name(uint32_t state) {
  switch (state) {
  case RT_ST_CREATING:
    return "CREATING";
  case RT_ST_SEALED:
    return "SEALED";
  case RT_ST_PENDING:
    return "PENDING";
  case RT_ST_FAILED:
    return "FAILED";
  default:
    return "?";
  }
}

typedef struct line_ctx {
  rt_store *st;
  FILE *out;
  bool failed; /* a write failed: stop */
} line_ctx;

static bool print_object(void *arg, uint32_t slot, const obj_look *o) {
  line_ctx *l = arg;
  char id[33];
  rt_store_id_hex(l->st, slot, o->gen, id);
  const char *where = o->state == RT_ST_PENDING || o->state == RT_ST_FAILED ? "-"
                      : o->alias                                            ? "alias"
                      : o->spilled                                          ? "disk"
                                                                            : "memory";
  if (fprintf(l->out, "  %s %-8s %13zu %5" PRIu32 " %5" PRIu32 " %4u  %-6s  %-12s %s\n", id,
              state_name(o->state), o->size, o->refs, o->views, (unsigned)o->pins, where,
              o->type ? o->type : "-", rt_creator_label(o->creator)) < 0) {
    l->failed = true;
    return false;
  }
  return true;
}

static void print_group(FILE *out, const group *g, const char *label) {
  fprintf(out,
          "%9" PRIu64 " %14" PRIu64 " %8" PRIu64 " %6" PRIu64 " %6" PRIu64 " %8" PRIu64
          " %14" PRIu64 "  %s\n",
          g->objects, g->bytes, g->refs, g->views, g->pins, g->spilled, g->spilled_bytes, label);
}

ray_status rt_store_report(rt_store *st, FILE *out, unsigned flags) {
  tally t;
  size_t n = 0;
  if (!tally_groups(st, &t, &n))
    return rt_fail(RAY_ENOMEM, "ray_memory_report: out of memory for the creator groups");
  errno = 0;
  fprintf(out,
          "rayc memory report: %" PRIu64 " live objects, %" PRIu64 " bytes (%" PRIu64
          " spilled to disk), from %zu creators, most bytes first\n",
          t.total.objects, t.total.bytes, t.total.spilled_bytes, n);
  fprintf(out, "%9s %14s %8s %6s %6s %8s %14s  %s\n", "objects", "bytes", "refs", "views", "pins",
          "spilled", "spilled_bytes", "creator");
  for (size_t i = 0; i < n; i++) print_group(out, &t.by_id[i], t.by_id[i].label);
  print_group(out, &t.total, "total");
  free(t.by_id);
  line_ctx l = {st, out, false};
  if (flags & RAY_MEMORY_ALL) {
    fprintf(out, "  %-32s %-8s %13s %5s %5s %4s  %-6s  %-12s %s\n", "object", "state", "bytes",
            "refs", "views", "pins", "where", "type", "creator");
    walk(st, print_object, &l);
  }
  if (fflush(out) != 0 || ferror(out) || l.failed)
    return rt_fail(RAY_EIO, "ray_memory_report: cannot write the report: %s",
                   strerror(errno ? errno : EIO));
  return RAY_OK;
}

ray_status ray_memory_report(FILE *out, unsigned flags) {
  rt_store *st = rt_store_running("ray_memory_report");
  if (!st) return RAY_ESHUTDOWN;
  if (!out) return rt_fail(RAY_EINVAL, "ray_memory_report: out is NULL");
  if (flags & ~(unsigned)RAY_MEMORY_ALL)
    return rt_fail(RAY_EINVAL, "ray_memory_report: unknown flags 0x%x (RAY_MEMORY_ALL is 0x%x)",
                   flags & ~(unsigned)RAY_MEMORY_ALL, (unsigned)RAY_MEMORY_ALL);
  clearerr(out); /* an error flag from before is not this report's failure */
  return rt_store_report(st, out, flags);
}

/* ------------------------------------------------------------------------ */
/* The creators of what leaked (shutdown)                                   */
/* ------------------------------------------------------------------------ */

void rt_report_leaks(rt_store *st, rt_leaks *out) {
  memset(out, 0, sizeof *out);
  tally t;
  size_t n = 0;
  if (!tally_groups(st, &t, &n)) {
    out->nomem = true;
    return;
  }
  out->n = n < RT_LEAK_TOP ? n : RT_LEAK_TOP;
  out->more = n - out->n;
  for (size_t i = 0; i < out->n; i++)
    out->top[i] = (rt_leak){t.by_id[i].label, t.by_id[i].objects, t.by_id[i].bytes};
  free(t.by_id);
}

void rt_report_leaks_warn(const rt_leaks *l) {
  if (l->nomem) {
    rt_warn("  (their creators are not named: out of memory)");
    return;
  }
  for (size_t i = 0; i < l->n; i++)
    rt_warn("  %" PRIu64 " object%s, %" PRIu64 " bytes: %s", l->top[i].objects,
            l->top[i].objects == 1 ? "" : "s", l->top[i].bytes, l->top[i].label);
  if (l->more)
    rt_warn("  and %zu more creator%s (RAY_MEMORY_REPORT=1 lists them all)", l->more,
            l->more == 1 ? "" : "s");
}

/* ------------------------------------------------------------------------ */
/* RAY_MEMORY_REPORT and RAY_MEMORY_SIGNAL                                  */
/* ------------------------------------------------------------------------ */

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler's atomics are lock-free");

/* The write end of the running reporter's pipe, -1 when none, and how many
 * handlers are between their load of it and their write. seq_cst, both,
 * for rt_report_stop's Dekker pattern (see there). Lock-free atomics are
 * what a signal handler may touch (C11 7.14.1.1). */
static _Atomic int g_sig_fd = -1;
static _Atomic int g_sig_inside;

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  atomic_fetch_add(&g_sig_inside, 1);
  int fd = atomic_load(&g_sig_fd);
  if (fd >= 0) {
    char c = 'r';
    /* Non-blocking: a full pipe already has reports coming. */
    ssize_t w = write(fd, &c, 1);
    (void)w;
  }
  atomic_fetch_sub(&g_sig_inside, 1);
  errno = saved;
}

static void *reporter_main(void *arg) {
  rt_store *st = arg;
  char buf[64];
  for (;;) {
    /* One report per read: signals that came meanwhile share it. */
    ssize_t n = read(st->reporter.rfd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* end of file: rt_report_stop closed the write end */
    /* Nowhere to say that stderr cannot be written: the status is dropped. */
    (void)rt_store_report(st, stderr, st->reporter.flags);
  }
  return NULL;
}

static const struct {
  const char *name;
  int signo;
} k_signals[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP},    {"INT", SIGINT},
                 {"QUIT", SIGQUIT}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH}};

/* The signal RAY_MEMORY_SIGNAL names ("USR2", "SIGUSR2", "12"), or 0. */
static int parse_signal(const char *v) {
  const char *name = strncmp(v, "SIG", 3) == 0 ? v + 3 : v;
  for (size_t i = 0; i < sizeof k_signals / sizeof k_signals[0]; i++)
    if (strcmp(name, k_signals[i].name) == 0) return k_signals[i].signo;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < 1 || n > SIGRTMAX) return 0;
  return (int)n;
}

/* Starts the pipe, the thread and the handler for signo. */
static ray_status hook_start(rt_store *st) {
  rt_reporter *r = &st->reporter;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return rt_fail(RAY_EIO, "ray_init: RAY_MEMORY_SIGNAL: cannot make a pipe: %s", strerror(errno));
  /* Cannot fail on the pipe we just made. The reader blocks; the handler
   * must not. */
  (void)fcntl(fds[1], F_SETFL, O_NONBLOCK);
  r->rfd = fds[0];
  r->wfd = fds[1];
  /* The thread starts with every signal blocked (it inherits this mask),
   * so that none of the program's signals is delivered to it. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  /* A thread's stack is an allocation: an armed test injection fails it. */
  int err = rt_alloc_inject() ? EAGAIN : pthread_create(&r->thread, NULL, reporter_main, st);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err) {
    close(fds[0]);
    close(fds[1]);
    return rt_fail(RAY_EIO, "ray_init: cannot start the memory report thread: %s", strerror(err));
  }
  atomic_store(&g_sig_fd, r->wfd); /* seq_cst: see g_sig_fd */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART; /* the program's system calls go on after it */
  sigemptyset(&sa.sa_mask);
  if (sigaction(r->signo, &sa, &r->old) != 0) {
    int e = errno;
    atomic_store(&g_sig_fd, -1);
    close(r->wfd); /* the thread reads end of file and returns */
    pthread_join(r->thread, NULL);
    close(r->rfd);
    return rt_fail(RAY_EINVAL, "ray_init: RAY_MEMORY_SIGNAL: cannot handle signal %d: %s", r->signo,
                   strerror(e));
  }
  r->started = true;
  return RAY_OK;
}

ray_status rt_report_start(rt_store *st) {
  rt_reporter *r = &st->reporter;
  r->rfd = r->wfd = -1;
  const char *v = getenv("RAY_MEMORY_REPORT");
  if (v) {
    if (strcmp(v, "1") == 0) {
      r->at_shutdown = true;
    } else if (strcmp(v, "all") == 0) {
      r->at_shutdown = true;
      r->flags = RAY_MEMORY_ALL;
    } else if (strcmp(v, "0") != 0) {
      return rt_fail(RAY_EINVAL, "ray_init: RAY_MEMORY_REPORT='%s' is not 0, 1 or all", v);
    }
  }
  if ((v = getenv("RAY_MEMORY_SIGNAL")) != NULL) {
    if (!(r->signo = parse_signal(v)))
      return rt_fail(RAY_EINVAL,
                     "ray_init: RAY_MEMORY_SIGNAL='%s' is not a signal (USR1, USR2, HUP, INT, "
                     "QUIT, TERM, WINCH, with or without SIG, or a number 1..%d)",
                     v, (int)SIGRTMAX);
    return hook_start(st);
  }
  return RAY_OK;
}

void rt_report_stop(rt_store *st) {
  rt_reporter *r = &st->reporter;
  if (!r->started) return;
  sigaction(r->signo, &r->old, NULL); /* no new handler runs from here */
  /* A handler already running may still have the old fd: against its
   * increment of g_sig_inside and then its load of g_sig_fd (seq_cst, a
   * Dekker pattern), either it sees -1 or we see it inside and wait for it
   * to leave before closing the fd, whose number could be reused. */
  atomic_store(&g_sig_fd, -1);
  while (atomic_load(&g_sig_inside)) sched_yield();
  close(r->wfd); /* the thread writes the reports asked for, then reads end of file */
  pthread_join(r->thread, NULL);
  close(r->rfd);
  r->started = false;
}

void rt_report_at_shutdown(rt_store *st) {
  rt_reporter *r = &st->reporter;
  /* Nowhere to say that stderr cannot be written: the status is dropped. */
  if (r->ready && r->at_shutdown) (void)rt_store_report(st, stderr, r->flags);
}
