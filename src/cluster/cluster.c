/*
 * cluster.c - joining ranks into one runtime, the startup check, and the
 * end of a cluster (cluster.h).
 */
#define _GNU_SOURCE
#include "cluster/cluster.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* The process's place in the runtime: 0 and -1 when none runs. Relaxed:
 * written under runtime.c's life lock by ray_init/ray_shutdown, read by
 * ray_node_count/ray_node_rank, which a program calls after its own
 * ray_init returned (or inside tasks, which start after it). */
static _Atomic int g_count, g_rank = -1;

int ray_node_count(void) {
  return atomic_load_explicit(&g_count, memory_order_relaxed);
}

int ray_node_rank(void) {
  return atomic_load_explicit(&g_rank, memory_order_relaxed);
}

static void set_place(int rank, int count) {
  atomic_store_explicit(&g_rank, rank, memory_order_relaxed);
  atomic_store_explicit(&g_count, count, memory_order_relaxed);
}

#ifndef RAY_HAVE_MPI

ray_status rt_cluster_join(void) {
  set_place(0, 1);
  return RAY_OK;
}
ray_status rt_cluster_start(void) {
  return RAY_OK;
}
void rt_cluster_abandon(void) {
  set_place(-1, 0);
}
_Noreturn void rt_cluster_serve(ray_status (*shutdown)(void)) {
  (void)shutdown();
  abort(); /* never called: without MPI every process is rank 0 */
}
void rt_cluster_stop(char **trace, size_t *trace_len) {
  if (trace) {
    *trace = NULL;
    *trace_len = 0;
  }
  set_place(-1, 0);
}
void rt_cluster_set_trace_source(ray_status (*fn)(void *arg, int rank, char **out, size_t *len),
                                 void *arg) {
  (void)fn, (void)arg;
}
bool rt_cluster_is_driver(void) {
  return true;
}
ray_status ray_stats_get_node(int rank, ray_stats *out) {
  if (ray_node_count() == 0) return rt_not_running("ray_stats_get_node");
  if (rank != 0) return rt_fail(RAY_EINVAL, "ray_stats_get_node: rank %d is not in 0..0", rank);
  return ray_stats_get(out);
}

#else /* RAY_HAVE_MPI */

#include <elf.h>
#include <link.h>
#include <mpi.h>
#include <pthread.h>
#include <unistd.h>

#include "cluster/remote.h"
#include "cluster/transport.h"
#include "core/alloc.h"
#include "core/symbol.h"
#include "task/task.h"

/* Control records: a kind byte, then the kind's fields. */
enum {
  CL_SHUTDOWN = 1,
  CL_SHUTDOWN_DONE = 2,
  CL_PING = 3,
  CL_PONG = 4,
  CL_PATTERN = 5,
  CL_DRAIN = 6,     /* driver -> rank: drain your tasks, then say how many you ran for others */
  CL_DRAINED = 7,   /* rank -> driver: u64 round, u64 tasks run for others */
  CL_TRACE_REQ = 8, /* driver -> rank: send me your timeline's events */
  CL_TRACE = 9,     /* rank -> driver: int tag, u64 length; the bytes follow on tag */
};

typedef struct cl_trace {
  unsigned char kind;
  int tag;
  uint64_t len;
} cl_trace;

/* CL_PATTERN: "send me size bytes of the test pattern on tag". */
typedef struct cl_pattern {
  unsigned char kind;
  int tag;
  uint64_t size, seed;
} cl_pattern;

typedef struct cluster {
  bool active;   /* joined a cluster of more than... or of 1 under a launcher */
  bool mpi_ours; /* rayc called MPI_Init_thread: finalise at exit */
  MPI_Comm comm;
  rt_transport tp;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool shutdown_asked;    /* a rank: the driver's CL_SHUTDOWN came; under lock */
  int done_ranks;         /* the driver: CL_SHUTDOWN_DONE count; under lock */
  uint64_t pongs;         /* CL_PONG records received; under lock */
  uint64_t drain_round;   /* a rank: the last CL_DRAIN round asked; under lock */
  int drained;            /* the driver: CL_DRAINED replies this round; under lock */
  uint64_t drained_tasks; /* the driver: their sum; under lock */
  /* The driver's merged trace: the other ranks' fragments, by rank. */
  char **traces;
  size_t *trace_lens;
  int traces_done; /* under lock */
  /* Where a rank gets its fragment (runtime.c; NULL: timeline off). */
  ray_status (*trace_source)(void *arg, int rank, char **out, size_t *len);
  void *trace_arg;
  bool ended; /* the driver: a cluster ran and ended (the ranks exited) */
} cluster;

static cluster g_cl = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
static bool g_atexit_set;

static void finalize_at_exit(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

/* Whether a launcher started this process (or RAY_CLUSTER says so). */
static bool launched(void) {
  const char *c = getenv("RAY_CLUSTER");
  if (c && strcmp(c, "0") == 0) return false;
  if (c && strcmp(c, "1") == 0) return true;
  int init = 0;
  MPI_Initialized(&init);
  if (init) return true;
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
                                     "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
    if (getenv(vars[i])) return true;
  return false;
}

/* ---- the startup check: same executable and libraries everywhere ------- */

typedef struct modlist {
  char *buf; /* lines: "name\tid\n"; the executable first, as "<exe>" */
  size_t len, cap;
  bool oom;
} modlist;

static void ml_add(modlist *m, const char *name, const char *id) {
  size_t need = strlen(name) + strlen(id) + 3;
  if (m->len + need + 1 > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 4096;
    while (cap < m->len + need + 1) cap *= 2;
    char *b = rt_realloc(m->buf, cap);
    if (!b) {
      m->oom = true;
      return;
    }
    m->buf = b;
    m->cap = cap;
  }
  m->len += (size_t)snprintf(m->buf + m->len, m->cap - m->len, "%s\t%s\n", name, id);
}

/* The GNU build ID of a loaded module, as hex, from its PT_NOTE segments;
 * "" if it has none. */
static void build_id(const struct dl_phdr_info *info, char *hex, size_t len) {
  hex[0] = '\0';
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const unsigned char *p = (const void *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const void *)p;
      const unsigned char *name = p + sizeof *nh;
      const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
      if (desc + nh->n_descsz > end) break;
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
        size_t o = 0;
        for (uint32_t k = 0; k < nh->n_descsz && o + 3 < len; k++)
          o += (size_t)snprintf(hex + o, len - o, "%02x", desc[k]);
        return;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
}

/* Without a build ID: the file's size and an FNV-1a hash of its bytes. */
static void file_id(const char *path, char *hex, size_t len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(hex, len, "unreadable");
    return;
  }
  uint64_t h = 1469598103934665603ull, size = 0;
  unsigned char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ull;
    size += n;
  }
  fclose(f);
  snprintf(hex, len, "size %llu hash %016llx", (unsigned long long)size, (unsigned long long)h);
}

static int module_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  modlist *m = arg;
  const char *name = info->dlpi_name;
  char id[160], path[4096];
  bool exe = !name || !name[0];
  if (exe) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    path[n > 0 ? n : 0] = '\0';
  } else {
    if (strstr(name, "linux-vdso") || strstr(name, "linux-gate")) return 0;
    snprintf(path, sizeof path, "%s", name);
  }
  build_id(info, id, sizeof id);
  if (!id[0]) file_id(path, id, sizeof id);
  if (exe) {
    char line[4200];
    snprintf(line, sizeof line, "%s", path);
    ml_add(m, "<exe>", id);
    ml_add(m, "<exe-path>", line);
  } else {
    const char *slash = strrchr(path, '/');
    ml_add(m, slash ? slash + 1 : path, id);
  }
  return 0;
}

/* The id rank 0 has for name in list, or NULL (copied into out). */
static const char *list_find(const char *list, const char *name, char *out, size_t len) {
  if (!list) return NULL;
  size_t nl = strlen(name);
  for (const char *p = list; *p;) {
    const char *tab = strchr(p, '\t'), *nlp = strchr(p, '\n');
    if (!tab || !nlp) break;
    if ((size_t)(tab - p) == nl && memcmp(p, name, nl) == 0) {
      size_t l = (size_t)(nlp - tab - 1);
      if (l >= len) l = len - 1;
      memcpy(out, tab + 1, l);
      out[l] = '\0';
      return out;
    }
    p = nlp + 1;
  }
  return NULL;
}

#define CL_DIFF 512

/* The modules every rank knows by the same number: rank 0's list, in its
 * order, with where each is loaded here (0: not here). Functions and types
 * cross ranks as (number, offset) (DESIGN §6). Built by rt_cluster_join,
 * read-only while the cluster runs. */
typedef struct canon_mod {
  char name[256];  /* basename, or "<exe>" */
  char path[4096]; /* where it is here (for matching rt_symbol_module) */
  uintptr_t base;
  bool here;
} canon_mod;
static canon_mod *g_mods;
static size_t g_nmods;

typedef struct local_find {
  const char *name;
  canon_mod *m;
} local_find;

static int local_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  local_find *f = arg;
  const char *name = info->dlpi_name;
  bool exe = !name || !name[0];
  if (exe != (strcmp(f->name, "<exe>") == 0)) return 0;
  char path[4096];
  if (exe) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    path[n > 0 ? n : 0] = '\0';
  } else {
    const char *slash = strrchr(name, '/');
    if (strcmp(slash ? slash + 1 : name, f->name) != 0) return 0;
    snprintf(path, sizeof path, "%s", name);
  }
  f->m->base = info->dlpi_addr;
  f->m->here = true;
  memcpy(f->m->path, path, sizeof path);
  return 1;
}

/* Builds g_mods from rank 0's list; false when out of memory. */
static bool canon_build(const char *list) {
  if (!list) return false;
  size_t n = 0;
  for (const char *p = list; *p; p++) n += *p == '\n';
  canon_mod *mods = rt_calloc(n ? n : 1, sizeof *mods);
  if (!mods) return false;
  size_t k = 0;
  for (const char *p = list; *p && k < n;) {
    const char *tab = strchr(p, '\t'), *nl = strchr(p, '\n');
    if (!tab || !nl) break;
    size_t l = (size_t)(tab - p) < sizeof mods[k].name - 1 ? (size_t)(tab - p) : 0;
    memcpy(mods[k].name, p, l);
    mods[k].name[l] = '\0';
    p = nl + 1;
    if (!l || strcmp(mods[k].name, "<exe-path>") == 0) continue;
    local_find f = {mods[k].name, &mods[k]};
    dl_iterate_phdr(local_cb, &f);
    k++;
  }
  free(g_mods);
  g_mods = mods;
  g_nmods = k;
  return true;
}

bool rt_cluster_encode_addr(const void *p, uint32_t *mod, uint64_t *off) {
  size_t o = 0;
  const char *path = rt_symbol_module(p, &o);
  if (!path) return false;
  for (size_t i = 0; i < g_nmods; i++)
    if (g_mods[i].here && strcmp(g_mods[i].path, path) == 0) {
      *mod = (uint32_t)i;
      *off = o;
      return true;
    }
  return false;
}

const void *rt_cluster_decode_addr(uint32_t mod, uint64_t off) {
  if (mod >= g_nmods || !g_mods[mod].here) return NULL;
  return (const void *)(g_mods[mod].base + off);
}

/* This rank's first difference from rank 0's list, or "" if none. The
 * executable always counts; a library counts if both ranks loaded it. */
static void list_diff(const char *mine, const char *theirs, int rank, char *diff) {
  diff[0] = '\0';
  if (!mine || !theirs) return;
  char exe_path[4096] = "", theirs_path[4096] = "";
  list_find(mine, "<exe-path>", exe_path, sizeof exe_path);
  list_find(theirs, "<exe-path>", theirs_path, sizeof theirs_path);
  for (const char *p = mine; *p;) {
    const char *tab = strchr(p, '\t'), *nlp = strchr(p, '\n');
    if (!tab || !nlp) break;
    char name[512], id[160], other[160];
    size_t l = (size_t)(tab - p) < sizeof name - 1 ? (size_t)(tab - p) : sizeof name - 1;
    memcpy(name, p, l);
    name[l] = '\0';
    l = (size_t)(nlp - tab - 1) < sizeof id - 1 ? (size_t)(nlp - tab - 1) : sizeof id - 1;
    memcpy(id, tab + 1, l);
    id[l] = '\0';
    p = nlp + 1;
    if (strcmp(name, "<exe-path>") == 0) continue;
    if (!list_find(theirs, name, other, sizeof other)) continue;
    if (strcmp(id, other) == 0) continue;
    if (strcmp(name, "<exe>") == 0)
      snprintf(diff, CL_DIFF,
               "rank %d runs executable %.180s (build %.40s), rank 0 runs %.180s (build %.40s)",
               rank, exe_path, id, theirs_path, other);
    else
      snprintf(diff, CL_DIFF,
               "rank %d loaded library %.300s (build %.40s), rank 0's is build %.40s", rank, name,
               id, other);
    return;
  }
}

static ray_status check_same_program(MPI_Comm comm, int rank, int size) {
  modlist m = {0};
  dl_iterate_phdr(module_cb, &m);
  int ok_local = !m.oom && m.buf, ok = 0;
  MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (!ok) {
    free(m.buf);
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory listing the loaded modules");
  }
  unsigned long long len = rank == 0 ? m.len + 1 : 0;
  MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, 0, comm);
  char *theirs = rank == 0 ? m.buf : rt_malloc(len);
  ok_local = theirs != NULL;
  MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (!ok) {
    if (rank != 0) free(theirs);
    free(m.buf);
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory comparing the loaded modules");
  }
  MPI_Bcast(theirs, (int)len, MPI_CHAR, 0, comm);
  char diff[CL_DIFF];
  list_diff(m.buf, theirs, rank, diff);
  bool canon_ok = canon_build(theirs);
  if (rank != 0) free(theirs);
  free(m.buf);
  if (!canon_ok) return rt_fail(RAY_ENOMEM, "ray_init: out of memory listing the loaded modules");
  char *all = rt_malloc((size_t)size * CL_DIFF);
  ok_local = all != NULL;
  MPI_Allreduce(&ok_local, &ok, 1, MPI_INT, MPI_MIN, comm);
  if (!ok) {
    free(all);
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory comparing the loaded modules");
  }
  if (!all) return RAY_ENOMEM; /* unreachable: every rank agreed it has it */
  MPI_Allgather(diff, CL_DIFF, MPI_CHAR, all, CL_DIFF, MPI_CHAR, comm);
  for (int r = 0; r < size; r++) {
    const char *d = all + (size_t)r * CL_DIFF;
    if (!d[0]) continue;
    ray_status s = rt_fail(
        RAY_EINVAL, "ray_init: %s; every rank must run the same executable and libraries", d);
    free(all);
    return s;
  }
  free(all);
  return RAY_OK;
}

/* ---- joining, serving, leaving ------------------------------------------ */

/* Waits until every task of this rank has ended (the gate closes for
 * outside submitters; tasks that other ranks send are still taken). */
static void rt_cluster_drain_local(void) {
  rt_tasks *ts = rt_tasks_current();
  if (ts) rt_tasks_drain(ts);
}

ray_status rt_cluster_join(void) {
  g_cl.active = false;
  if (!launched()) {
    set_place(0, 1);
    return RAY_OK;
  }
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (fin || g_cl.ended) { /* a cluster ended earlier in this process: it does not come back */
    set_place(0, 1);
    return RAY_OK;
  }
  int provided = 0;
  if (!init) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
      return rt_fail(RAY_EIO, "ray_init: MPI_Init_thread failed");
    g_cl.mpi_ours = true;
    if (!g_atexit_set) {
      atexit(finalize_at_exit);
      g_atexit_set = true;
    }
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED)
    return rt_fail(RAY_EINVAL,
                   "ray_init: MPI gives thread level %d; rayc calls MPI from its own thread "
                   "and needs MPI_THREAD_SERIALIZED (initialise MPI with MPI_Init_thread)",
                   provided);
  /* A communicator of our own: the program's MPI traffic never meets ours. */
  MPI_Comm_dup(MPI_COMM_WORLD, &g_cl.comm);
  int rank = 0, size = 1;
  MPI_Comm_rank(g_cl.comm, &rank);
  MPI_Comm_size(g_cl.comm, &size);
  ray_status s = check_same_program(g_cl.comm, rank, size);
  if (s != RAY_OK) {
    MPI_Comm_free(&g_cl.comm);
    return s;
  }
  g_cl.active = true;
  g_cl.shutdown_asked = false;
  g_cl.drain_round = 0;
  g_cl.done_ranks = 0;
  set_place(rank, size);
  return RAY_OK;
}

static unsigned char pattern_byte(uint64_t i, uint64_t seed) {
  return (unsigned char)((i * 7 + seed + (i >> 12)) & 0xff);
}

static void pattern_sent(void *arg, bool ok) {
  (void)ok;
  free(arg);
}

static void trace_sent(void *arg, bool ok) {
  (void)ok;
  free(arg);
}

/* A rank: the driver asks for this rank's timeline events. */
static void on_trace_req(int src) {
  char *buf = NULL;
  size_t len = 0;
  if (!g_cl.trace_source ||
      g_cl.trace_source(g_cl.trace_arg, ray_node_rank(), &buf, &len) != RAY_OK)
    len = 0;
  cl_trace t = {.kind = CL_TRACE, .tag = len ? rt_tp_new_tag(&g_cl.tp) : 0, .len = len};
  (void)rt_tp_send(&g_cl.tp, src, &t, sizeof t);
  if (!len || rt_tp_bulk(&g_cl.tp, true, src, t.tag, buf, len, trace_sent, buf) != RAY_OK) {
    free(buf); /* (a failed bulk queue: fail-stop follows on the driver's wait) */
    if (len) rt_cluster_abort();
  }
}

static void trace_done(void *arg, bool ok) {
  (void)ok;
  (void)arg;
  pthread_mutex_lock(&g_cl.lock);
  g_cl.traces_done++;
  pthread_cond_broadcast(&g_cl.cond);
  pthread_mutex_unlock(&g_cl.lock);
}

/* The driver: a rank's answer; its bytes follow on the tag it names. */
static void on_trace(int src, const void *rec) {
  cl_trace t;
  memcpy(&t, rec, sizeof t);
  char *buf = t.len && g_cl.traces ? rt_malloc(t.len) : NULL;
  if (!buf) { /* nothing to get, or no room for it: the trace goes without */
    if (t.len) {
      rt_warn("rayc: no memory for rank %d's timeline (%llu bytes); aborting the job", src,
              (unsigned long long)t.len);
      rt_cluster_abort();
    }
    trace_done(NULL, true);
    return;
  }
  g_cl.traces[src] = buf;
  g_cl.trace_lens[src] = t.len;
  if (rt_tp_bulk(&g_cl.tp, false, src, t.tag, buf, t.len, trace_done, NULL) != RAY_OK)
    rt_cluster_abort();
}

void rt_cluster_set_trace_source(ray_status (*fn)(void *arg, int rank, char **out, size_t *len),
                                 void *arg) {
  g_cl.trace_source = fn;
  g_cl.trace_arg = arg;
}

/* The driver: every other rank's timeline fragment, concatenated (NULL,
 * 0 if none); after the drain rounds, while the ranks still serve. */
static void collect_traces(int size, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  g_cl.traces = rt_calloc((size_t)size, sizeof *g_cl.traces);
  g_cl.trace_lens = rt_calloc((size_t)size, sizeof *g_cl.trace_lens);
  if (!g_cl.traces || !g_cl.trace_lens) {
    free(g_cl.traces);
    free(g_cl.trace_lens);
    g_cl.traces = NULL;
    g_cl.trace_lens = NULL;
    return; /* the trace covers the driver only */
  }
  pthread_mutex_lock(&g_cl.lock);
  g_cl.traces_done = 0;
  pthread_mutex_unlock(&g_cl.lock);
  unsigned char req = CL_TRACE_REQ;
  for (int r = 1; r < size; r++) (void)rt_tp_send(&g_cl.tp, r, &req, 1);
  pthread_mutex_lock(&g_cl.lock);
  while (g_cl.traces_done < size - 1) pthread_cond_wait(&g_cl.cond, &g_cl.lock);
  pthread_mutex_unlock(&g_cl.lock);
  size_t total = 0;
  for (int r = 1; r < size; r++) total += g_cl.trace_lens[r];
  char *all = total ? rt_malloc(total) : NULL;
  size_t at = 0;
  for (int r = 1; r < size; r++) {
    if (all && g_cl.traces[r]) memcpy(all + at, g_cl.traces[r], g_cl.trace_lens[r]);
    at += g_cl.trace_lens[r];
    free(g_cl.traces[r]);
  }
  free(g_cl.traces);
  free(g_cl.trace_lens);
  g_cl.traces = NULL;
  g_cl.trace_lens = NULL;
  if (all) {
    *out = all;
    *out_len = total;
  }
}

static void on_record(void *arg, int src, const void *rec, size_t len) {
  (void)arg;
  if (len < 1) return;
  unsigned char kind = *(const unsigned char *)rec;
  if (kind >= 16) {
    rt_remote_on_record(src, rec, len);
    return;
  }
  if (kind == CL_TRACE_REQ) {
    on_trace_req(src);
    return;
  }
  if (kind == CL_TRACE && len == sizeof(cl_trace)) {
    on_trace(src, rec);
    return;
  }
  if (kind == CL_PING) {
    unsigned char pong = CL_PONG;
    (void)rt_tp_send(&g_cl.tp, src, &pong, 1);
    return;
  }
  if (kind == CL_PATTERN && len == sizeof(cl_pattern)) {
    cl_pattern p;
    memcpy(&p, rec, sizeof p);
    unsigned char *buf = rt_malloc(p.size ? p.size : 1);
    if (!buf) abort(); /* fail-stop: the asker would wait forever */
    for (uint64_t i = 0; i < p.size; i++) buf[i] = pattern_byte(i, p.seed);
    if (rt_tp_bulk(&g_cl.tp, true, src, p.tag, buf, p.size, pattern_sent, buf) != RAY_OK) abort();
    return;
  }
  pthread_mutex_lock(&g_cl.lock);
  if (kind == CL_PONG) g_cl.pongs++;
  if (kind == CL_DRAIN && len >= 9) memcpy(&g_cl.drain_round, (const char *)rec + 1, 8);
  if (kind == CL_DRAINED && len >= 17) {
    uint64_t n;
    memcpy(&n, (const char *)rec + 9, 8);
    g_cl.drained++;
    g_cl.drained_tasks += n;
  }
  if (kind == CL_SHUTDOWN && src == 0)
    g_cl.shutdown_asked = true;
  else if (kind == CL_SHUTDOWN_DONE)
    g_cl.done_ranks++;
  pthread_cond_broadcast(&g_cl.cond);
  pthread_mutex_unlock(&g_cl.lock);
}

ray_status rt_cluster_start(void) {
  if (!g_cl.active) return RAY_OK;
  ray_status s = rt_tp_start(&g_cl.tp, g_cl.comm, on_record, NULL);
  if (s == RAY_OK) rt_remote_start();
  if (s != RAY_OK) { /* the other ranks would wait for us forever: fail-stop */
    rt_warn("rayc: rank %d: %s; aborting the job", ray_node_rank(), ray_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return s;
}

void rt_cluster_abandon(void) {
  if (g_cl.active) {
    MPI_Comm_free(&g_cl.comm);
    g_cl.active = false;
  }
  set_place(-1, 0);
}

bool rt_cluster_is_driver(void) {
  return !g_cl.active || ray_node_rank() == 0;
}

static void end_mpi(void) {
  MPI_Comm_free(&g_cl.comm);
  g_cl.active = false;
}

_Noreturn void rt_cluster_serve(ray_status (*shutdown)(void)) {
  uint64_t answered = 0;
  pthread_mutex_lock(&g_cl.lock);
  for (;;) {
    if (g_cl.drain_round > answered) { /* drain, with the comm thread still serving */
      uint64_t round = g_cl.drain_round;
      pthread_mutex_unlock(&g_cl.lock);
      rt_cluster_drain_local();
      unsigned char rec[17] = {CL_DRAINED};
      uint64_t ran = rt_remote_received();
      memcpy(rec + 1, &round, 8);
      memcpy(rec + 9, &ran, 8);
      (void)rt_tp_send(&g_cl.tp, 0, rec, sizeof rec);
      answered = round;
      pthread_mutex_lock(&g_cl.lock);
      continue;
    }
    if (g_cl.shutdown_asked) break;
    pthread_cond_wait(&g_cl.cond, &g_cl.lock);
  }
  pthread_mutex_unlock(&g_cl.lock);
  rt_remote_stop(); /* every rank drained: nothing of ours is lent any more */
  (void)rt_remote_release_exports();
  (void)shutdown(); /* frees this rank's runtime; warns about its leaks */
  unsigned char done = CL_SHUTDOWN_DONE;
  (void)rt_tp_send(&g_cl.tp, 0, &done, 1);
  rt_tp_stop(&g_cl.tp); /* flushes the record above */
  end_mpi();
  /* This process ends here, so MPI ends with it, whoever initialised it:
   * the program never gets back control to finalise it itself. */
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
  set_place(-1, 0);
  exit(0);
}

void rt_cluster_stop(char **trace, size_t *trace_len) {
  if (trace) {
    *trace = NULL;
    *trace_len = 0;
  }
  if (g_cl.active && ray_node_rank() != 0) return; /* a rank: rt_cluster_serve ends it */
  if (g_cl.active) {
    int size = ray_node_count();
    /* Rounds of draining every rank at once, until a round in which no
     * rank ran anything new for another: then no task is in flight
     * anywhere (a shipped task keeps its submitter's drain waiting until
     * it is done, and any task it caused is counted by the rank that ran
     * it). */
    uint64_t last = UINT64_MAX;
    for (uint64_t round = 1;; round++) {
      pthread_mutex_lock(&g_cl.lock);
      g_cl.drained = 0;
      g_cl.drained_tasks = 0;
      pthread_mutex_unlock(&g_cl.lock);
      unsigned char rec[9] = {CL_DRAIN};
      memcpy(rec + 1, &round, 8);
      for (int r = 1; r < size; r++) (void)rt_tp_send(&g_cl.tp, r, rec, sizeof rec);
      rt_cluster_drain_local();
      pthread_mutex_lock(&g_cl.lock);
      while (g_cl.drained < size - 1) pthread_cond_wait(&g_cl.cond, &g_cl.lock);
      uint64_t total = g_cl.drained_tasks + rt_remote_received();
      pthread_mutex_unlock(&g_cl.lock);
      if (total == last) break;
      last = total;
    }
    if (trace) collect_traces(size, trace, trace_len);
    rt_remote_stop();
    (void)rt_remote_release_exports();
    unsigned char kind = CL_SHUTDOWN;
    for (int r = 1; r < size; r++) (void)rt_tp_send(&g_cl.tp, r, &kind, 1);
    pthread_mutex_lock(&g_cl.lock);
    while (g_cl.done_ranks < size - 1) pthread_cond_wait(&g_cl.cond, &g_cl.lock);
    pthread_mutex_unlock(&g_cl.lock);
    rt_tp_stop(&g_cl.tp);
    end_mpi();
    g_cl.ended = true;
  }
  set_place(-1, 0);
}

/* ---- for remote.c ------------------------------------------------------- */

ray_status rt_cluster_send(int dest, const void *rec, size_t len) {
  return rt_tp_send(&g_cl.tp, dest, rec, len);
}

ray_status rt_cluster_bulk(bool send, int peer, int tag, void *buf, size_t size,
                           void (*done)(void *arg, bool ok), void *arg) {
  return rt_tp_bulk(&g_cl.tp, send, peer, tag, buf, size, done, arg);
}

int rt_cluster_new_tag(void) {
  return rt_tp_new_tag(&g_cl.tp);
}

_Noreturn void rt_cluster_abort(void) {
  MPI_Abort(MPI_COMM_WORLD, 70);
  abort();
}

/* ---- for tests and the bench ------------------------------------------- */

ray_status rt_cluster_ping(int rank) {
  if (!g_cl.active) return rt_fail(RAY_EINVAL, "rt_cluster_ping: not in a cluster");
  pthread_mutex_lock(&g_cl.lock);
  uint64_t want = g_cl.pongs + 1;
  pthread_mutex_unlock(&g_cl.lock);
  unsigned char ping = CL_PING;
  ray_status s = rt_tp_send(&g_cl.tp, rank, &ping, 1);
  if (s != RAY_OK) return s;
  pthread_mutex_lock(&g_cl.lock);
  while (g_cl.pongs < want) pthread_cond_wait(&g_cl.cond, &g_cl.lock);
  pthread_mutex_unlock(&g_cl.lock);
  return RAY_OK;
}

ray_status rt_cluster_pull_pattern(int rank, void *buf, size_t size, uint64_t seed) {
  if (!g_cl.active) return rt_fail(RAY_EINVAL, "rt_cluster_pull_pattern: not in a cluster");
  rt_tp_wait w = RT_TP_WAIT_INIT;
  cl_pattern p = {.kind = CL_PATTERN, .tag = rt_tp_new_tag(&g_cl.tp), .size = size, .seed = seed};
  ray_status s = rt_tp_bulk(&g_cl.tp, false, rank, p.tag, buf, size, rt_tp_wake, &w);
  if (s == RAY_OK) s = rt_tp_send(&g_cl.tp, rank, &p, sizeof p);
  if (s != RAY_OK) return s; /* (the receive stays posted: tests only) */
  if (!rt_tp_await(&w)) return rt_fail(RAY_EIO, "rt_cluster_pull_pattern: the transfer failed");
  unsigned char *b = buf;
  for (size_t i = 0; i < size; i++)
    if (b[i] != pattern_byte(i, seed))
      return rt_fail(RAY_EIO, "rt_cluster_pull_pattern: byte %zu differs", i);
  return RAY_OK;
}

uint64_t rt_cluster_comm_sleeps(void) {
  return g_cl.active ? atomic_load_explicit(&g_cl.tp.sleeps, memory_order_relaxed) : 0;
}

#endif /* RAY_HAVE_MPI */
