/*
 * stress.h - what the parts of ray_stress share: the payload generator and
 * checksum (the model and the tasks must agree on them), the task functions
 * and the Counter actor class (stress_fns.c), the client threads and their
 * model (stress_ops.c), and the run's settings and failure report
 * (ray_stress.c). ray_stress.c opens with the design.
 */
#ifndef RAY_STRESS_H
#define RAY_STRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ray.h"

/* ------------------------------------------------------------------------ */
/* Payloads: every byte of every object is a function of a 64-bit key        */
/* ------------------------------------------------------------------------ */

/* splitmix64's finaliser: a bijective mix of x. */
uint64_t st_mix64(uint64_t x);
/* Bytes [off, off + n) of the stream of key into dst. */
void st_fill(uint64_t key, size_t off, void *dst, size_t n);
/* Whether p[0 .. n) equals bytes [off, off + n) of the stream of key. */
bool st_equal(uint64_t key, size_t off, const void *p, size_t n);
/* The checksum the "checksum" task computes over its arguments, one
 * st_hash_add per argument in order, starting from ST_HASH_INIT. */
#define ST_HASH_INIT UINT64_C(0xcbf29ce484222325)
uint64_t st_hash_add(uint64_t h, const void *p, size_t n);

/* The static buffer handed to ray_put_owned with free_fn NULL: the stream
 * of ST_PATTERN_KEY, never written after st_pattern_init. */
#define ST_PATTERN_KEY UINT64_C(0x5eed0f0adba5e)
#define ST_PATTERN_MAX ((size_t)512 * 1024)
extern unsigned char st_pattern[ST_PATTERN_MAX];
void st_pattern_init(void);

/* ------------------------------------------------------------------------ */
/* Tasks (pure functions of their arguments) and the Counter actor           */
/* ------------------------------------------------------------------------ */

/* i64 args (values or refs) -> i64 sum (wrapping). */
ray_status st_fn_sum(ray_ctx *ctx);
/* args of any type -> i64 st_hash_add over them in order. */
ray_status st_fn_checksum(ray_ctx *ctx);
/* bytes args -> bytes, their concatenation (owned return when large). */
ray_status st_fn_concat(ray_ctx *ctx);
/* (x, k) -> k i64 returns, return i = x + i * ST_SPLIT_STEP. */
#define ST_SPLIT_STEP 1000003
ray_status st_fn_split(ray_ctx *ctx);
/* a refs object [r] -> return 0 shares r's object (ray_ctx_return_ref). */
ray_status st_fn_forward(ray_ctx *ctx);
/* (slot, fail_times, value): fails "flaky attempt A of F" on its first
 * fail_times attempts (counted in st_flaky[slot]), then returns value. */
ray_status st_fn_flaky(ray_ctx *ctx);
/* (code) -> fails "stress failure CODE". */
ray_status st_fn_fail(ray_ctx *ctx);
/* (value, us): sleeps us microseconds in steps, stops early once
 * cancelled ("stopped after ..."), else returns value. */
ray_status st_fn_slow(ray_ctx *ctx);
/* (a, b): submits sum(a, 1) and sum(b, 2), gets both (blocking, inside a
 * task) and returns a + b + 3. */
ray_status st_fn_nested(ray_ctx *ctx);
/* (slot, ms, value): marks st_hold[slot] started, then waits for a cancel
 * ("held until cancelled") for up to ms milliseconds, then returns value. */
ray_status st_fn_hold(ray_ctx *ctx);

enum { ST_FLAKY_PER_THREAD = 1024, ST_ACTORS_PER_THREAD = 256, ST_MAX_THREADS = 64 };
/* Attempts of each flaky task so far; a client resets its entry before the
 * submit that uses it. */
extern _Atomic int st_flaky[ST_MAX_THREADS * ST_FLAKY_PER_THREAD];
/* Per hold task: 0 not started, else the st_now() it started at (ms). */
extern _Atomic int64_t st_hold[ST_MAX_THREADS * ST_FLAKY_PER_THREAD];
/* Incarnations started of each Counter actor (its on_start counts them). */
extern _Atomic int64_t st_incarn[ST_MAX_THREADS * ST_ACTORS_PER_THREAD];
/* What code running inside the runtime did, for the exact stats checks. */
extern _Atomic uint64_t st_nested_submits, st_nested_gets;
/* ray_put_owned buffers handed over, and freed by the store (st_owned_free). */
extern _Atomic uint64_t st_owned_given, st_owned_freed;
void st_owned_free(void *p);

/* Counter: state {inc, n}; on_start(init, idx) sets n = init and inc to the
 * incarnation number (1, 2, ...); every method that succeeds returns the
 * i64 pair {inc, n} after it. */
enum { ST_M_ADD, ST_M_GET, ST_M_FAIL, ST_M_CRASH, ST_M_SLOW_ADD, ST_M_COUNT };
extern const ray_actor_class st_counter_class;

/* ------------------------------------------------------------------------ */
/* The run                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct st_settings {
  uint64_t seed;
  double seconds; /* time budget; <= 0: none */
  uint64_t ops;   /* ops per client thread; 0: no bound */
  int threads;    /* client threads */
  int workers;    /* ray_config.num_workers */
  bool soak;      /* RSS checks */
  bool verbose;   /* a line per epoch */
  double stall_s; /* no progress for this long is a failure */
  int epochs;     /* epochs per round */
} st_settings;
extern st_settings st_set;

/* A round is one ray_init .. ray_shutdown; its config depends only on the
 * seed and the round number. */
typedef struct st_round {
  int round, epoch;
  bool mem;               /* the memory-limited phase */
  size_t limit;           /* object_store_memory */
  int64_t put_timeout_ms; /* put_timeout_ms */
} st_round;

/* Whether the time or op budget is spent (clients stop issuing ops). */
bool st_budget_spent(void);
/* Seconds since the start of the run (CLOCK_MONOTONIC). */
double st_now(void);

/* What a client thread is doing, for failure reports and the watchdog. */
typedef struct st_client st_client;
typedef struct st_where {
  _Atomic uint64_t op;        /* index of the op (in the thread, over the run) */
  _Atomic(const char *) what; /* the op's name */
  _Atomic double since;       /* when it started (st_now) */
  _Atomic bool active;
} st_where;

/* Reports a failure and ends the process with status 1: "ray_stress:
 * FAILED seed=N thread=T op=K: <what>", ray_last_error() of the calling
 * thread, and the command that replays the seed. thread < 0: the main
 * thread. Safe from several threads at once (the first one reports). */
_Noreturn void st_failf(int thread, uint64_t op, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------------------------ */
/* Client threads (stress_ops.c)                                             */
/* ------------------------------------------------------------------------ */

/* Counts of what the clients did; summed over the run for the summary. */
typedef struct st_counts {
  uint64_t ops, puts, gets, waits, tasks, cancels, actor_calls, kills, put_refs, pins;
  uint64_t handoffs, handoffs_in_step; /* views handed over; released as the ref was dropped */
  uint64_t holds, holds_running;       /* hold tasks cancelled; of them, known to be running */
  uint64_t values, errors, storefull;
  /* exact expectations for ray_stats */
  uint64_t submits_ok, actor_calls_ok, gets_ok;
} st_counts;

void st_counts_add(st_counts *to, const st_counts *n);

/* Per-thread state that lives for the whole run (the view inbox, where). */
void st_clients_init(int threads);
void st_clients_free(void);
st_where *st_client_where(int thread);
/* A digest of the ops thread has issued so far (*ops of them): equal seeds
 * and op counts give equal digests. */
uint64_t st_client_digest(int thread, uint64_t *ops);
/* Whether every client has issued its --ops ops (false without --ops). */
bool st_all_ops_done(void);
/* Runs epoch (r->round, r->epoch) on every client thread and joins them,
 * then releases the views still queued; *epoch_counts: what they did. */
void st_run_epoch(const st_round *r, st_counts *epoch_counts);

#endif
