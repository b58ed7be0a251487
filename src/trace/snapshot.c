/*
 * snapshot.c - a consistent view of the timeline for its writers, taken
 * while threads may still record (timeline.h explains why it is safe).
 *
 * The moment of the snapshot is one pass that loads every buffer's
 * published count; the slices below those counts never change again, so
 * the writers read them in place, with no copy and no lock. Then lanes
 * (one per worker, per outside thread, and rayc-io), groups (per name, or
 * per kind for the store's slices) and each group's statistics are
 * computed: count, total, p50 and p99 by nearest rank over the sorted
 * durations, failures and cancellations.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/prim.h"
#include "trace/timeline_int.h"

/* ---- lanes ---------------------------------------------------------------- */

/* Workers first (by index), then the program's threads (main first, then
 * by thread id), then rayc-io. */
static int lane_class(const tl_lane *l) {
  return l->track >= 0 ? 0 : l->track == RT_TL_TRACK_IO ? 2 : 1;
}
static int lane_cmp(const void *a, const void *b) {
  const tl_lane *x = a, *y = b;
  int cx = lane_class(x), cy = lane_class(y);
  if (cx != cy) return cx < cy ? -1 : 1;
  if (cx == 0) return x->track < y->track ? -1 : x->track > y->track;
  if (x->main != y->main) return x->main ? -1 : 1;
  return x->os_tid < y->os_tid ? -1 : x->os_tid > y->os_tid;
}

static bool lane_is(const tl_lane *l, const tl_event *e, const rt_tl_buf *b) {
  if (e->track >= 0 || e->track == RT_TL_TRACK_IO) return l->track == e->track;
  return lane_class(l) == 1 && l->os_tid == b->os_tid;
}

/* A new lane for track (b: the thread, for an outside one); -1: no memory. */
static long lane_add(tl_snap *s, size_t *cap, int track, const rt_tl_buf *b) {
  if (s->nlanes == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    tl_lane *l = rt_realloc(s->lanes, ncap * sizeof *l);
    if (!l) return -1;
    s->lanes = l;
    *cap = ncap;
  }
  tl_lane *l = &s->lanes[s->nlanes];
  memset(l, 0, sizeof *l);
  if (track >= 0) {
    l->track = track;
    snprintf(l->name, sizeof l->name, "worker %d", track);
  } else if (track == RT_TL_TRACK_IO) {
    l->track = RT_TL_TRACK_IO;
    snprintf(l->name, sizeof l->name, "rayc-io");
  } else {
    l->track = RT_TL_TRACK_OUTSIDE;
    l->os_tid = b->os_tid;
    l->main = b->main;
    if (b->main)
      snprintf(l->name, sizeof l->name, "main thread");
    else
      snprintf(l->name, sizeof l->name, "thread %u", b->os_tid);
  }
  return (long)s->nlanes++;
}

/* The lane of e (recorded by b's thread), added if new; -1: no memory. */
static long lane_of(tl_snap *s, size_t *cap, const tl_event *e, const rt_tl_buf *b, long hint) {
  if (hint >= 0 && lane_is(&s->lanes[hint], e, b)) return hint;
  for (size_t i = 0; i < s->nlanes; i++)
    if (lane_is(&s->lanes[i], e, b)) return (long)i;
  return lane_add(s, cap, e->track, b);
}

/* ---- groups --------------------------------------------------------------- */

static bool by_kind(const char *kind) {
  return strcmp(kind, "task") != 0 && strncmp(kind, "actor", 5) != 0;
}

static uint32_t fnv1a(uint32_t h, const char *p) {
  for (; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
  return h;
}

typedef struct group_table {
  uint32_t *slot; /* group index + 1; 0: empty */
  size_t cap;     /* a power of two, at least twice the groups */
  size_t groups_cap;
} group_table;

static bool table_grow(tl_snap *s, group_table *t) {
  size_t ncap = t->cap ? t->cap * 2 : 64;
  uint32_t *slot = rt_calloc(ncap, sizeof *slot);
  if (!slot) return false;
  for (size_t g = 0; g < s->ngroups; g++) {
    uint32_t h = fnv1a(fnv1a(2166136261u, s->groups[g].kind), s->groups[g].name);
    size_t i = h & (ncap - 1);
    while (slot[i]) i = (i + 1) & (ncap - 1);
    slot[i] = (uint32_t)g + 1;
  }
  free(t->slot);
  t->slot = slot;
  t->cap = ncap;
  return true;
}

/* The group of e, added if new; -1: no memory. */
static long group_of(tl_snap *s, group_table *t, const tl_event *e) {
  const char *key = by_kind(e->kind) ? e->kind : e->name;
  if ((!t->slot || (s->ngroups + 1) * 2 > t->cap) && !table_grow(s, t)) return -1;
  uint32_t h = fnv1a(fnv1a(2166136261u, e->kind), key);
  size_t i = h & (t->cap - 1);
  for (; t->slot[i]; i = (i + 1) & (t->cap - 1)) {
    const tl_group *g = &s->groups[t->slot[i] - 1];
    if (!strcmp(g->name, key) && !strcmp(g->kind, e->kind)) return (long)t->slot[i] - 1;
  }
  if (s->ngroups == t->groups_cap) {
    size_t ncap = t->groups_cap ? t->groups_cap * 2 : 16;
    tl_group *g = rt_realloc(s->groups, ncap * sizeof *g);
    if (!g) return -1;
    s->groups = g;
    t->groups_cap = ncap;
  }
  tl_group *g = &s->groups[s->ngroups];
  memset(g, 0, sizeof *g);
  g->name = key;
  g->kind = e->kind;
  t->slot[i] = (uint32_t)s->ngroups + 1;
  return (long)s->ngroups++;
}

/* ---- sorting -------------------------------------------------------------- */

/* By lane, then start; of two that start together the longer first, so a
 * slice comes before the slices nested in it. */
static int item_cmp(const void *a, const void *b) {
  const tl_item *x = a, *y = b;
  if (x->lane != y->lane) return x->lane < y->lane ? -1 : 1;
  if (x->e->start_ns != y->e->start_ns) return x->e->start_ns < y->e->start_ns ? -1 : 1;
  if (x->e->end_ns != y->e->end_ns) return x->e->end_ns > y->e->end_ns ? -1 : 1;
  return 0;
}

static int u64_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int total_cmp(const void *a, const void *b) {
  const tl_group *x = *(const tl_group *const *)a, *y = *(const tl_group *const *)b;
  if (x->total_ns != y->total_ns) return x->total_ns > y->total_ns ? -1 : 1;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->kind, y->kind);
}

/* Nearest rank: the smallest duration with at least q percent at or below. */
static uint64_t percentile(const uint64_t *sorted, uint64_t n, unsigned q) {
  uint64_t rank = (n * q + 99) / 100;
  return sorted[rank ? rank - 1 : 0];
}

/* Per-group statistics; false: no memory. */
static bool group_stats(tl_snap *s) {
  uint64_t *start = rt_calloc(s->ngroups + 1, sizeof *start);
  uint64_t *dur = rt_malloc((s->n + 1) * sizeof *dur);
  if (!start || !dur) {
    free(start);
    free(dur);
    return false;
  }
  for (size_t i = 0; i < s->n; i++) {
    tl_group *g = &s->groups[s->items[i].group];
    const tl_event *e = s->items[i].e;
    g->count++;
    g->total_ns += e->end_ns - e->start_ns;
    g->failed += rt_tl_failed(e);
    g->cancelled += e->cancelled;
  }
  for (size_t g = 0; g < s->ngroups; g++) {
    start[g + 1] = start[g] + s->groups[g].count;
    s->failed += s->groups[g].failed;
    s->cancelled += s->groups[g].cancelled;
  }
  /* Counting sort by group (start[g] is the next free place of group g,
   * so it ends at the start of group g + 1), then each group's part by
   * duration. */
  for (size_t i = 0; i < s->n; i++) {
    const tl_event *e = s->items[i].e;
    dur[start[s->items[i].group]++] = e->end_ns - e->start_ns;
  }
  uint64_t at = 0;
  for (size_t g = 0; g < s->ngroups; g++) {
    tl_group *gr = &s->groups[g];
    qsort(dur + at, gr->count, sizeof *dur, u64_cmp); /* count >= 1 */
    gr->p50_ns = percentile(dur + at, gr->count, 50);
    gr->p99_ns = percentile(dur + at, gr->count, 99);
    gr->max_ns = dur[at + gr->count - 1];
    at += gr->count;
  }
  free(start);
  free(dur);
  return true;
}

/* ---- the snapshot ----------------------------------------------------------- */

void rt_tl_snap_free(tl_snap *s) {
  free(s->items);
  free(s->lanes);
  free(s->groups);
  free(s->by_total);
  memset(s, 0, sizeof *s);
}

ray_status rt_tl_snap_take(rt_timeline *tl, tl_snap *s, const char *fn) {
  memset(s, 0, sizeof *s);
  s->t0_ns = s->end_ns = tl->t0_ns;
  s->pid = rt_prim_pid();
  /* The list only grows at its head, and a buffer's link is set before it
   * becomes the head: the list from the head read here is fixed. */
  pthread_mutex_lock(&tl->lock);
  rt_tl_buf *head = tl->bufs;
  pthread_mutex_unlock(&tl->lock);
  size_t nbufs = 0;
  for (rt_tl_buf *b = head; b; b = b->next) nbufs++;
  uint32_t *counts = rt_malloc((nbufs + 1) * sizeof *counts);
  if (!counts) return rt_fail(RAY_ENOMEM, "%s: out of memory taking the timeline's snapshot", fn);

  /* The moment: one load per buffer, back to back. acquire: pairs with the
   * owner's release store, so the slices (and chunk pointers) below the
   * count are complete. */
  s->taken_ns = rt_prim_now_ns();
  size_t total = 0, bi = 0;
  for (rt_tl_buf *b = head; b; b = b->next, bi++) {
    counts[bi] = atomic_load_explicit(&b->n, memory_order_acquire);
    total += counts[bi];
    /* relaxed: counts that order nothing */
    s->dropped += atomic_load_explicit(&b->dropped, memory_order_relaxed);
  }
  s->dropped += atomic_load_explicit(&tl->dropped, memory_order_relaxed);

  group_table t = {0};
  size_t lanes_cap = 0;
  uint32_t *lane_map = NULL;
  s->items = rt_malloc((total + 1) * sizeof *s->items);
  if (!s->items) goto oom;
  /* A lane for every worker, busy or not; spares and other threads when
   * they ran something. */
  for (int w = 0; w < tl->nworkers; w++)
    if (lane_add(s, &lanes_cap, w, NULL) < 0) goto oom;
  bi = 0;
  for (rt_tl_buf *b = head; b; b = b->next, bi++) {
    long lane = -1;
    for (uint32_t i = 0; i < counts[bi]; i++) {
      const tl_event *e = rt_tl_event_at(b, i);
      long group = group_of(s, &t, e);
      if ((lane = lane_of(s, &lanes_cap, e, b, lane)) < 0 || group < 0) goto oom;
      s->items[s->n++] = (tl_item){e, (uint32_t)lane, (uint32_t)group};
      if (e->end_ns > s->end_ns) s->end_ns = e->end_ns;
    }
  }

  /* Lanes in display order; the items follow them. */
  if (!(lane_map = rt_malloc((s->nlanes + 1) * sizeof *lane_map))) goto oom;
  for (size_t i = 0; i < s->nlanes; i++) s->lanes[i].made = (uint32_t)i;
  if (s->nlanes) qsort(s->lanes, s->nlanes, sizeof *s->lanes, lane_cmp);
  for (size_t j = 0; j < s->nlanes; j++) lane_map[s->lanes[j].made] = (uint32_t)j;
  for (size_t i = 0; i < s->n; i++) s->items[i].lane = lane_map[s->items[i].lane];
  if (s->n) qsort(s->items, s->n, sizeof *s->items, item_cmp);

  if (!group_stats(s)) goto oom;
  const tl_group **order = rt_malloc((s->ngroups + 1) * sizeof *order);
  if (!order || !(s->by_total = rt_malloc((s->ngroups + 1) * sizeof *s->by_total))) {
    free(order);
    goto oom;
  }
  for (size_t g = 0; g < s->ngroups; g++) order[g] = &s->groups[g];
  if (s->ngroups) qsort(order, s->ngroups, sizeof *order, total_cmp);
  for (size_t g = 0; g < s->ngroups; g++) {
    s->by_total[g] = (uint32_t)(order[g] - s->groups);
    s->groups[s->by_total[g]].rank = (uint32_t)g;
  }
  free(order);

  free(lane_map);
  free(t.slot);
  free(counts);
  return RAY_OK;

oom:
  free(lane_map);
  free(t.slot);
  free(counts);
  rt_tl_snap_free(s);
  return rt_fail(RAY_ENOMEM, "%s: out of memory taking the timeline's snapshot", fn);
}
