/*
 * creator.c - interning creators into 32-bit ids (see creator.h).
 *
 * Algorithm and trade-offs:
 *  - One table per process, not per runtime: creators are code addresses
 *    and names, which mean the same in every runtime, so an id stays valid
 *    across ray_shutdown/ray_init and the per-thread caches need no epoch.
 *    Records are never freed (they are reachable from the table until the
 *    process ends), which is what makes lock-free lookups safe.
 *  - Open addressing with linear probing over 2 * RT_CREATOR_MAX slots, so
 *    the load stays at most 1/2 and a probe ends at an empty slot soon.
 *    Lookups take no lock; an insert takes g_lock, probes again (another
 *    thread may have inserted it meanwhile), and publishes the record with
 *    release stores, first by id, then in its hash slot.
 *  - The hot paths (a put, a task's returns) first ask the thread's
 *    one-entry cache: a loop of puts from one call site, or of submissions
 *    of one task, does not hash at all.
 */
#define _GNU_SOURCE
#include "store/creator.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/symbol.h"

typedef struct creator {
  const void *site; /* a put site; NULL for a task */
  const char *api;  /* a put site: the public call's name */
  const char *name; /* a task: its name (in this allocation) */
  uint64_t hash;
  rt_creator_id id;
  /* "ray_put at fill (main.c:42)": made on first ask for a site (made with
   * the record for a task). acquire/release: the text is written before
   * the pointer is published, and read after it is loaded. */
  _Atomic(char *) label;
} creator;

#define HASH_SLOTS ((uint64_t)2 * RT_CREATOR_MAX)
_Static_assert((HASH_SLOTS & (HASH_SLOTS - 1)) == 0, "the hash table is a power of two");

/* Slots and ids hold records published with release stores (under
 * g_lock), read with acquire loads without it: a reader that sees the
 * pointer sees the record's fields, which never change afterwards (but
 * the label, which has its own publication). */
static _Atomic(creator *) g_hash[HASH_SLOTS];
static _Atomic(creator *) g_by_id[RT_CREATOR_MAX];
/* The next id; written under g_lock (release), read by rt_creator_count
 * (acquire) so that every id below it has its record in g_by_id. */
static _Atomic rt_creator_id g_next = RT_CREATOR_FIRST;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* The last site (creator.h) and the last task this thread interned. */
_Thread_local rt_creator_site_cache rt_t_creator_site;
_Thread_local rt_creator_task_cache rt_t_creator_task;

static uint64_t mix(uint64_t z) { /* splitmix64's finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s) { /* FNV-1a, then mixed */
  uint64_t h = 0xcbf29ce484222325u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3u;
  return mix(h);
}

static bool matches(const creator *c, const void *site, const char *api, const char *name) {
  if (site) return c->site == site && (c->api == api || strcmp(c->api, api) == 0);
  return !c->site && strcmp(c->name, name) == 0;
}

/* The record of a creator, or NULL; no lock. */
static creator *find(uint64_t h, const void *site, const char *api, const char *name) {
  for (uint64_t i = 0; i < HASH_SLOTS; i++) {
    creator *c = atomic_load_explicit(&g_hash[(h + i) & (HASH_SLOTS - 1)], memory_order_acquire);
    if (!c) return NULL;
    if (c->hash == h && matches(c, site, api, name)) return c;
  }
  return NULL;
}

/* A new record, with the name and label of a task in the same block. */
static creator *record_new(uint64_t h, const void *site, const char *api, const char *name) {
  static const char pre[] = "returned by '";
  size_t nlen = site ? 0 : strlen(name);
  size_t extra = site ? 0 : (nlen + 1) + (sizeof pre - 1 + nlen + 2);
  creator *c = rt_malloc(sizeof *c + extra);
  if (!c) return NULL;
  c->site = site;
  c->api = api;
  c->name = NULL;
  c->hash = h;
  atomic_init(&c->label, NULL);
  if (!site) {
    char *n = (char *)(c + 1), *l = n + nlen + 1;
    memcpy(n, name, nlen + 1);
    snprintf(l, sizeof pre - 1 + nlen + 2, "%s%s'", pre, name);
    c->name = n;
    atomic_init(&c->label, l);
  }
  return c;
}

static rt_creator_id intern(uint64_t h, const void *site, const char *api, const char *name,
                            const creator **rec) {
  creator *c = find(h, site, api, name);
  if (c) {
    *rec = c;
    return c->id;
  }
  pthread_mutex_lock(&g_lock);
  rt_creator_id id = RT_CREATOR_OTHER;
  if ((c = find(h, site, api, name)) != NULL) {
    id = c->id;
  } else {
    /* relaxed: g_next is written only under g_lock, which we hold. */
    rt_creator_id next = atomic_load_explicit(&g_next, memory_order_relaxed);
    if (next < RT_CREATOR_MAX) {
      if ((c = record_new(h, site, api, name)) == NULL) {
        id = RT_CREATOR_UNKNOWN;
      } else {
        c->id = id = next;
        /* release, each: see g_hash. By id first, so that an id found in
         * the hash table, or below g_next, always has its record. */
        atomic_store_explicit(&g_by_id[id], c, memory_order_release);
        uint64_t i = h;
        while (atomic_load_explicit(&g_hash[i & (HASH_SLOTS - 1)], memory_order_relaxed)) i++;
        atomic_store_explicit(&g_hash[i & (HASH_SLOTS - 1)], c, memory_order_release);
        atomic_store_explicit(&g_next, next + 1, memory_order_release);
      }
    }
  }
  pthread_mutex_unlock(&g_lock);
  *rec = c;
  return id;
}

rt_creator_id rt_creator_site_slow(const char *api, const void *site) {
  const creator *c;
  rt_creator_id id = intern(mix((uintptr_t)site), site, api, NULL, &c);
  if (id >= RT_CREATOR_FIRST) /* a failure is not remembered: the next put tries again */
    rt_t_creator_site = (rt_creator_site_cache){site, api, id};
  return id;
}

rt_creator_id rt_creator_task_slow(const char *name) {
  if (!name) name = "unnamed";
  const creator *c;
  rt_creator_id id = intern(hash_name(name), NULL, NULL, name, &c);
  if (id >= RT_CREATOR_FIRST) /* the interned copy: it never changes */
    rt_t_creator_task = (rt_creator_task_cache){c->name, id};
  return id;
}

rt_creator_id rt_creator_count(void) {
  return atomic_load_explicit(&g_next, memory_order_acquire);
}

const char *rt_creator_label(rt_creator_id id) {
  if (id == RT_CREATOR_UNKNOWN) return "(unknown creator: no memory to record it)";
  if (id == RT_CREATOR_OTHER) return "(other creators: more than the table holds)";
  if (id == RT_CREATOR_REMOTE) return "(copies of other ranks' objects)";
  creator *c =
      id < RT_CREATOR_MAX ? atomic_load_explicit(&g_by_id[id], memory_order_acquire) : NULL;
  if (!c) return "(unknown creator)"; /* not an id this table gave out */
  char *l = atomic_load_explicit(&c->label, memory_order_acquire);
  if (l) return l;
  char buf[512];
  int n = snprintf(buf, sizeof buf, "%s at ", c->api);
  /* Less one: the call's line, not the next statement's (symbol.h). */
  rt_symbol_describe((const char *)c->site - 1, buf + n, sizeof buf - (size_t)n);
  /* addr2line adds " (discriminator 3)" to a line with several blocks (a
   * loop's call): the line is what a person looks for, and what makes the
   * sites of one line one group (report.c). */
  char *d = strstr(buf, " (discriminator ");
  char *close = d ? strchr(d + 1, ')') : NULL;
  if (close) memmove(d, close + 1, strlen(close + 1) + 1);
  if (!(l = rt_strdup(buf))) return "(a put site: no memory to name it)";
  char *had = NULL;
  /* acq_rel: release publishes our text; acquire, on failure, reads the
   * text of the thread that got there first. */
  if (!atomic_compare_exchange_strong_explicit(&c->label, &had, l, memory_order_acq_rel,
                                               memory_order_acquire)) {
    free(l);
    l = had;
  }
  return l;
}
