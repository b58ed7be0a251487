/*
 * ray_stress.c - a seeded stress program for rayc that checks every result
 * against a sequential model. Only <ray.h> is used.
 *
 *   ray_stress [--seed N] [--seconds S] [--ops N] [--threads T] [--workers W]
 *              [--soak] [--stall S] [--verbose]
 *
 * Structure. The run is a series of rounds; a round is one ray_init ..
 * ray_shutdown, and every third round (1, 4, 7, ...) is memory-limited
 * (object_store_memory 6 MiB, put_timeout_ms RAY_PUT_NO_WAIT, 2 or 20), where
 * RAY_ESTOREFULL is an allowed outcome of a put, a task's return or a get
 * (restoring a spilled object needs room), but a wrong byte never is. A round is a few epochs; in
 * an epoch T client threads each issue up to 300 ops (stress_ops.c): puts of all kinds (ray_put,
 * ray_put_owned with and without free_fn, ray_create + ray_seal, refs
 * objects nested in each other), gets, waits with timeouts 0, 1, 5 ms and
 * -1, tasks (fan-in sums, chains of up to 64, checksums and concatenations
 * of objects, several returns, forwarding by ray_ctx_return_ref, retried
 * flaky tasks, failing tasks, slow tasks, tasks that submit and wait for
 * children), cancels (queued and running tasks, recursive or not, after
 * timed gets; a task that runs until it is cancelled must end
 * RAY_ECANCELLED, so a lost cancel shows), Counter actors (calls, sends,
 * crashes, kills with and without restart, lookups by name, releases), pins,
 * retains, and views handed to another client thread, which releases them
 * there at the moment the owner drops its ref. At the end of an epoch each client gets and checks
 * what it still holds and releases everything; then the main thread waits (a few seconds at most)
 * for the counters to settle and checks ray_stats: no objects, no bytes in memory or pinned, no
 * actors alive, every task ended (submitted = finished + failed + cancelled), and tasks_submitted,
 * actor_calls and gets equal to what the clients and the tasks did. A
 * watchdog fails the run when a thread makes no progress for --stall
 * seconds (a hang becomes a report with a seed, not a CTest timeout), and
 * samples bytes_in_memory against the memory limit.
 *
 * Determinism. Each client draws from its own xoshiro256** PRNG seeded from
 * (seed, round, epoch, thread) and never draws depending on an outcome, so
 * the sequence of operations each thread issues is a function of the seed:
 * a budget (--seconds, --ops) only cuts it short (--verbose prints a digest
 * per thread; stress_ops.c says which outcomes can make an op a no-op). The
 * interleaving of the threads with each other and with the workers is not
 * reproducible; that is the point of running threads. So a failure may need
 * a few runs of the same seed to show again.
 *
 * A failure prints "ray_stress: FAILED seed=N thread=T op=K: <what>" with
 * ray_last_error() of that thread and exits 1. To replay it:
 *
 *   ray_stress --seed N --threads T --workers W [--seconds S]
 *
 * (the exact command is printed). Without --seed the seed comes from the
 * clock; it is always printed first ("ray_stress: seed=N").
 *
 * Soak (by hand, ~10 min): ray_stress --soak --seconds 600
 * Rounds are then 20 epochs long. The resident set size is sampled at the
 * end of every epoch (everything released, runtime up) and printed every
 * 10 s; the run fails if, after the warm-up (a fifth of the time, at most
 * 60 s), it grows beyond the warm-up's maximum x 1.10 + 8 MiB.
 *
 * Files: ray_stress.c (the run, the checks between epochs, the watchdog,
 * the soak), stress_ops.c (the clients and the model), stress_fns.c (the
 * tasks and the actor), stress.h.
 *
 * CTest runs it as stress_model (--seconds 20 --seed 1) and
 * stress_model_random (--seconds 20, a new seed each time), in the plain,
 * ASan+UBSan and TSan builds.
 */
#define _GNU_SOURCE
#include "stress.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ST_SANITIZED 1
#endif
#endif
#ifdef ST_SANITIZED
enum { SETTLE_S = 30 }; /* sanitized builds run 5-20x slower */
#else
enum { SETTLE_S = 10 };
#endif

#define MIB ((size_t)1 << 20)

st_settings st_set;

static double mib(size_t b) {
  return (double)b / (double)MIB;
}
static char g_replay[256]; /* the command that replays this run */
static double g_t0;        /* CLOCK_MONOTONIC at the start */
static st_where g_main_where;

/* The watchdog reads stats; ray_shutdown must not run meanwhile. */
static pthread_mutex_t g_rt_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_rt_up; /* guarded by g_rt_mu */
static _Atomic bool g_stop_watchdog;
static _Atomic size_t g_peak_bytes; /* the largest bytes_in_memory sampled in the round */

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double st_now(void) {
  return mono() - g_t0;
}

bool st_budget_spent(void) {
  return st_set.seconds > 0 && st_now() >= st_set.seconds;
}

static _Atomic bool g_failing;

_Noreturn void st_failf(int thread, uint64_t op, const char *fmt, ...) {
  char err[512], what[1024];
  snprintf(err, sizeof err, "%s", ray_last_error()); /* before any other rayc call */
  if (atomic_exchange(&g_failing, true))
    for (;;) pause(); /* another thread reports; its _exit ends this one */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  char who[32], at[32];
  if (thread < 0)
    snprintf(who, sizeof who, "main"), snprintf(at, sizeof at, "-");
  else
    snprintf(who, sizeof who, "%d", thread), snprintf(at, sizeof at, "%" PRIu64, op);
  fflush(stdout);
  fprintf(stderr, "ray_stress: FAILED seed=%" PRIu64 " thread=%s op=%s: %s\n", st_set.seed, who, at,
          what);
  fprintf(stderr, "ray_stress:   ray_last_error() of that thread (its last failed call): \"%s\"\n",
          err);
  fprintf(stderr, "ray_stress:   after %.1f s; replay: %s\n", st_now(), g_replay);
  fflush(stderr);
  _exit(1);
}

static void where_main(const char *what) {
  atomic_store(&g_main_where.what, what);
  atomic_store(&g_main_where.since, st_now());
}

/* ------------------------------------------------------------------------ */
/* Watchdog                                                                  */
/* ------------------------------------------------------------------------ */

static void check_stalled(int thread, st_where *w, double now) {
  if (!atomic_load(&w->active)) return;
  double since = atomic_load(&w->since);
  if (now - since < st_set.stall_s) return;
  st_failf(thread, atomic_load(&w->op), "no progress for %.0f s in '%s' (a hang: see the stacks)",
           now - since, atomic_load(&w->what));
}

static void *watchdog_main(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop_watchdog)) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double now = st_now();
    for (int t = 0; t < st_set.threads; t++) check_stalled(t, st_client_where(t), now);
    check_stalled(-1, &g_main_where, now);
    /* The limit is never exceeded, "not even for a moment". */
    pthread_mutex_lock(&g_rt_mu);
    ray_stats s;
    if (g_rt_up && ray_stats_get(&s) == RAY_OK) {
      if (s.bytes_in_memory > s.memory_limit)
        st_failf(-1, 0, "bytes_in_memory %zu exceeds the memory limit %zu", s.bytes_in_memory,
                 s.memory_limit);
      if (s.bytes_in_memory > atomic_load(&g_peak_bytes))
        atomic_store(&g_peak_bytes, s.bytes_in_memory);
    }
    pthread_mutex_unlock(&g_rt_mu);
  }
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Rounds and the checks between epochs                                      */
/* ------------------------------------------------------------------------ */

static st_round round_config(int round) {
  st_round r = {.round = round};
  r.mem = round % 3 == 1;
  r.limit = r.mem ? 6 * MIB : 256 * MIB;
  static const int64_t put_timeouts[] = {RAY_PUT_NO_WAIT, 2, 20};
  r.put_timeout_ms = r.mem ? put_timeouts[st_mix64(st_set.seed ^ (uint64_t)round) % 3] : 10000;
  return r;
}

static ray_stats stats_now(void) {
  ray_stats s;
  ray_status rc = ray_stats_get(&s);
  if (rc != RAY_OK) st_failf(-1, 0, "ray_stats_get: %s", ray_status_name(rc));
  return s;
}

/* What the round's clients and tasks did so far: ray_stats must agree. */
typedef struct expected {
  uint64_t submits, actor_calls, gets;
} expected;

/* After an epoch: everything released, so once the runtime has caught up
 * (a task drops its refs a moment after sealing, an actor ends a moment
 * after its last handle) every count is back to zero. */
static void settle(const st_round *r, expected *e) {
  where_main("settle");
  double until = st_now() + SETTLE_S;
  ray_stats s;
  uint64_t given, freed;
  for (;;) {
    s = stats_now();
    given = atomic_load(&st_owned_given);
    freed = atomic_load(&st_owned_freed);
    bool ended = s.tasks_submitted == s.tasks_finished + s.tasks_failed + s.tasks_cancelled;
    if (s.objects == 0 && s.bytes_in_memory == 0 && s.bytes_pinned == 0 && s.actors_alive == 0 &&
        ended && given == freed)
      break;
    if (st_now() > until)
      st_failf(-1, 0,
               "round %d epoch %d: %d s after every handle was released: objects %" PRIu64
               ", bytes_in_memory %zu, bytes_pinned %zu, actors_alive %" PRIu64
               ", tasks submitted %" PRIu64 " vs finished %" PRIu64 " + failed %" PRIu64
               " + cancelled %" PRIu64 ", owned buffers freed %" PRIu64 " of %" PRIu64,
               r->round, r->epoch, SETTLE_S, s.objects, s.bytes_in_memory, s.bytes_pinned,
               s.actors_alive, s.tasks_submitted, s.tasks_finished, s.tasks_failed,
               s.tasks_cancelled, freed, given);
    struct timespec ts = {0, 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* Every task has ended, so the children nested tasks submit are counted
   * (a nested task whose result was dropped unread may run past the epoch). */
  e->submits += atomic_exchange(&st_nested_submits, 0);
  e->gets += atomic_exchange(&st_nested_gets, 0);
  if (s.memory_limit != r->limit)
    st_failf(-1, 0, "memory_limit %zu, configured %zu", s.memory_limit, r->limit);
  if (s.bytes_spilled != 0) st_failf(-1, 0, "bytes_spilled %zu without spilling", s.bytes_spilled);
  if (s.tasks_submitted != e->submits)
    st_failf(-1, 0,
             "round %d epoch %d: tasks_submitted %" PRIu64 ", the clients and tasks made %" PRIu64,
             r->round, r->epoch, s.tasks_submitted, e->submits);
  if (s.actor_calls != e->actor_calls)
    st_failf(-1, 0, "round %d epoch %d: actor_calls %" PRIu64 ", accepted calls and sends %" PRIu64,
             r->round, r->epoch, s.actor_calls, e->actor_calls);
  if (s.gets != e->gets)
    st_failf(-1, 0, "round %d epoch %d: gets %" PRIu64 ", successful ray_get calls %" PRIu64,
             r->round, r->epoch, s.gets, e->gets);
}

static void init_round(const st_round *r) {
  where_main("ray_init");
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = st_set.workers;
  cfg.object_store_memory = r->limit;
  cfg.put_timeout_ms = r->put_timeout_ms;
  pthread_mutex_lock(&g_rt_mu);
  ray_status s = ray_init(&cfg);
  g_rt_up = s == RAY_OK;
  pthread_mutex_unlock(&g_rt_mu);
  if (s != RAY_OK) st_failf(-1, 0, "round %d: ray_init: %s", r->round, ray_status_name(s));
  atomic_store(&st_nested_submits, 0);
  atomic_store(&st_nested_gets, 0);
}

static void shutdown_round(const st_round *r) {
  where_main("ray_shutdown");
  pthread_mutex_lock(&g_rt_mu);
  g_rt_up = false;
  ray_status s = ray_shutdown();
  pthread_mutex_unlock(&g_rt_mu);
  if (s != RAY_OK) st_failf(-1, 0, "round %d: ray_shutdown: %s", r->round, ray_status_name(s));
  if (ray_is_initialized()) st_failf(-1, 0, "ray_is_initialized() after ray_shutdown");
  ray_stats st;
  if ((s = ray_stats_get(&st)) != RAY_ESHUTDOWN)
    st_failf(-1, 0, "ray_stats_get after ray_shutdown gave %s", ray_status_name(s));
}

/* ------------------------------------------------------------------------ */
/* Resident set size (--soak)                                                */
/* ------------------------------------------------------------------------ */

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

typedef struct soak {
  double warmup, next_report;
  size_t warm_max, after_max, last;
  unsigned after_samples;
} soak;

static void soak_sample(soak *k) {
  double now = st_now();
  k->last = rss_bytes();
  if (now < k->warmup) {
    if (k->last > k->warm_max) k->warm_max = k->last;
  } else {
    if (k->last > k->after_max) k->after_max = k->last;
    k->after_samples++;
  }
  if (now >= k->next_report) {
    printf("ray_stress: soak t=%.0fs rss=%.1f MiB (warm-up max %.1f MiB%s)\n", now, mib(k->last),
           mib(k->warm_max), now < k->warmup ? ", warming up" : "");
    fflush(stdout);
    while (k->next_report <= now) k->next_report += 10;
  }
}

static void soak_verdict(const soak *k) {
  size_t bound = k->warm_max + k->warm_max / 10 + 8 * MIB;
  if (!k->after_samples || !k->warm_max)
    st_failf(-1, 0, "soak: no RSS sample %s the warm-up of %.0f s; run longer",
             k->warm_max ? "after" : "during", k->warmup);
  printf("ray_stress: soak: RSS after warm-up max %.1f MiB, last %.1f MiB; bound %.1f MiB "
         "(warm-up max %.1f MiB x 1.10 + 8 MiB)\n",
         mib(k->after_max), mib(k->last), mib(bound), mib(k->warm_max));
  if (k->after_max > bound)
    st_failf(-1, 0, "soak: RSS grew to %.1f MiB after warm-up, bound %.1f MiB", mib(k->after_max),
             mib(bound));
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f) {
  fprintf(f,
          "usage: ray_stress [--seed N] [--seconds S] [--ops N] [--threads T] [--workers W]\n"
          "                  [--soak] [--stall S] [--verbose]\n"
          "  --seed N      PRNG seed (default: from the clock; always printed)\n"
          "  --seconds S   time budget (default 10 when --ops is not given)\n"
          "  --ops N       ops per client thread (stops earlier than --seconds if reached)\n"
          "  --threads T   client threads (default 3, at most %d)\n"
          "  --workers W   ray worker threads (default 2)\n"
          "  --soak        print RSS every 10 s, fail if it grows after the warm-up\n"
          "  --stall S     a thread without progress for S seconds fails the run (default 60)\n"
          "  --verbose     a line per epoch\n",
          ST_MAX_THREADS);
}

static bool parse_u64(const char *s, uint64_t *out) {
  char *end;
  if (!s || !*s) return false;
  unsigned long long v = strtoull(s, &end, 0);
  if (*end) return false;
  *out = v;
  return true;
}

static bool parse_f64(const char *s, double *out) {
  char *end;
  if (!s || !*s) return false;
  *out = strtod(s, &end);
  return !*end && *out >= 0;
}

static void parse_args(int argc, char **argv) {
  st_set = (st_settings){.threads = 3, .workers = 2, .stall_s = 60, .epochs = 3};
  bool have_seed = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t u = 0;
    bool ok = true;
    if (!strcmp(a, "--seed")) {
      ok = parse_u64(v, &st_set.seed), have_seed = true, i++;
    } else if (!strcmp(a, "--seconds")) {
      ok = parse_f64(v, &st_set.seconds), i++;
    } else if (!strcmp(a, "--ops")) {
      ok = parse_u64(v, &st_set.ops), i++;
    } else if (!strcmp(a, "--threads")) {
      ok = parse_u64(v, &u) && u >= 1 && u <= ST_MAX_THREADS, st_set.threads = (int)u, i++;
    } else if (!strcmp(a, "--workers")) {
      ok = parse_u64(v, &u) && u <= 4096, st_set.workers = (int)u, i++;
    } else if (!strcmp(a, "--stall")) {
      ok = parse_f64(v, &st_set.stall_s) && st_set.stall_s > 0, i++;
    } else if (!strcmp(a, "--soak")) {
      st_set.soak = true;
    } else if (!strcmp(a, "--verbose")) {
      st_set.verbose = true;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else {
      ok = false;
    }
    if (!ok) {
      fprintf(stderr, "ray_stress: bad option or value: %s%s%s\n", a, v ? " " : "", v ? v : "");
      usage(stderr);
      exit(2);
    }
  }
  if (!have_seed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st_set.seed =
        st_mix64((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ (uint64_t)getpid();
    st_set.seed %= UINT64_C(1) << 48; /* short enough to copy by hand */
  }
  if (st_set.seconds <= 0 && !st_set.ops) st_set.seconds = 10;
  if (st_set.soak) st_set.epochs = 20;
  int n =
      snprintf(g_replay, sizeof g_replay, "ray_stress --seed %" PRIu64 " --threads %d --workers %d",
               st_set.seed, st_set.threads, st_set.workers);
  if (st_set.seconds > 0)
    n += snprintf(g_replay + n, sizeof g_replay - (size_t)n, " --seconds %g", st_set.seconds);
  if (st_set.ops)
    n += snprintf(g_replay + n, sizeof g_replay - (size_t)n, " --ops %" PRIu64, st_set.ops);
  if (st_set.soak) snprintf(g_replay + n, sizeof g_replay - (size_t)n, " --soak");
}

int main(int argc, char **argv) {
  g_t0 = mono();
  parse_args(argc, argv);
  printf("ray_stress: seed=%" PRIu64 "\n", st_set.seed);
  printf("ray_stress: %s\n", g_replay);
  fflush(stdout);

  st_pattern_init();
  st_clients_init(st_set.threads);
  pthread_t wd;
  atomic_store(&g_main_where.active, true);
  where_main("start");
  if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0) st_failf(-1, 0, "pthread_create");

  soak k = {0};
  k.warmup = st_set.seconds / 5 < 60 ? st_set.seconds / 5 : 60;
  st_counts total = {0};
  int rounds = 0, epochs = 0, mem_rounds = 0;
  for (int round = 0;; round++) {
    if (round > 0 && (st_budget_spent() || st_all_ops_done())) break;
    st_round r = round_config(round);
    init_round(&r);
    expected e = {0};
    for (int epoch = 0; epoch < st_set.epochs; epoch++) {
      if (epoch > 0 && (st_budget_spent() || st_all_ops_done())) break;
      r.epoch = epoch;
      where_main("epoch");
      atomic_store(&g_main_where.active, false); /* the clients report their own progress */
      st_counts ec;
      st_run_epoch(&r, &ec);
      atomic_store(&g_main_where.active, true);
      st_counts_add(&total, &ec);
      e.submits += ec.submits_ok;
      e.actor_calls += ec.actor_calls_ok;
      e.gets += ec.gets_ok;
      settle(&r, &e);
      epochs++;
      if (st_set.soak) soak_sample(&k);
      if (st_set.verbose) {
        printf("ray_stress: round %d epoch %d%s: %" PRIu64 " ops, %" PRIu64 " tasks, %" PRIu64
               " values, %" PRIu64 " errors, %" PRIu64 " store full, peak %.1f MiB; t=%.1fs\n",
               round, epoch, r.mem ? " (memory-limited)" : "", ec.ops, ec.tasks, ec.values,
               ec.errors, ec.storefull, mib(atomic_exchange(&g_peak_bytes, 0)), st_now());
        fflush(stdout);
      }
    }
    shutdown_round(&r);
    rounds++;
    mem_rounds += r.mem;
  }
  atomic_store(&g_stop_watchdog, true);
  pthread_join(wd, NULL);
  st_clients_free();

  printf("ray_stress: %d rounds (%d memory-limited), %d epochs, %" PRIu64 " ops: %" PRIu64
         " puts, %" PRIu64 " gets, %" PRIu64 " waits, %" PRIu64 " tasks, %" PRIu64
         " cancels (%" PRIu64 " of tasks held running until cancelled, %" PRIu64
         " of them started), %" PRIu64 " actor calls, %" PRIu64 " kills, %" PRIu64
         " views handed over (%" PRIu64 " released as the ref was dropped), %" PRIu64
         " refs objects, %" PRIu64 " pin ops; checked %" PRIu64 " values and %" PRIu64
         " errors, %" PRIu64 " puts refused (store full); %.1f s\n",
         rounds, mem_rounds, epochs, total.ops, total.puts, total.gets, total.waits, total.tasks,
         total.cancels, total.holds, total.holds_running, total.actor_calls, total.kills,
         total.handoffs, total.handoffs_in_step, total.put_refs, total.pins, total.values,
         total.errors, total.storefull, st_now());
  if (st_set.soak) soak_verdict(&k);
  for (int t = 0; t < st_set.threads && st_set.verbose; t++) {
    uint64_t ops, digest = st_client_digest(t, &ops);
    printf("ray_stress: thread %d: %" PRIu64 " ops, sequence digest %016" PRIx64 "\n", t, ops,
           digest);
  }
  printf("ray_stress: seed=%" PRIu64 ": %d rounds passed, 0 failed\n", st_set.seed, rounds);
  return 0;
}
