/*
 * checkpoint.c - an actor that checkpoints its state to the object store and
 * gets it back after a restart.
 *
 * A restart gives an actor a fresh, zeroed state and runs on_start again with
 * the ORIGINAL constructor arguments, so whatever should survive must live
 * outside the actor. Here that is a detached named actor, "checkpoints"
 * (class CheckpointStore), which keeps the ref of the newest checkpoint:
 *
 *   Counter.incr     count++; every CKPT_EVERY calls: ray_put the state, hand
 *                    the ref to "checkpoints".save and wait for the answer
 *   Counter.on_start look up "checkpoints", call load, and restore the state
 *                    from the checkpoint if there is one (else use the
 *                    constructor argument)
 *
 * An actor argument is read as a view of bytes, so to hand the store a ref
 * (not a copy of the bytes) save's argument is a refs object
 * (ray_put_refs) holding the checkpoint's ref; load answers with a refs
 * object of 0 or 1 refs.
 *
 * The driver counts 12 times from 100 (checkpoints after calls 5 and 10),
 * then ray_actor_kill(counter, false): the actor restarts, restores count 110
 * from the checkpoint (the two increments after it are lost, as with any
 * checkpoint), and counting goes on from there, checkpointing again after
 * call 15.
 *
 * Only <ray.h> is used. Every check prints what went wrong and makes the
 * program exit non-zero, so it doubles as a test (CTest: example_checkpoint).
 * Build by hand: cc checkpoint.c $(pkg-config --cflags --libs ray) -pthread
 */
#include <ray.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define STORE_NAME "checkpoints"
#define START 100
#define CKPT_EVERY 5

static bool check(ray_status s, const char *call) {
  if (s == RAY_OK) return true;
  fprintf(stderr, "checkpoint: %s failed: %s (%s): %s\n", call, ray_status_name(s), ray_strerror(s),
          ray_last_error());
  return false;
}

/* The Counter's state as checkpointed, and as returned by its "get". */
typedef struct counter_state {
  int64_t count; /* the value counted */
  int64_t calls; /* incr calls so far, over all incarnations */
} counter_state;
static RAY_DEFINE_TYPE(counter_state_type, counter_state, "counter_state");

/* ------------------------------------------------------------------------ */
/* CheckpointStore: keeps the newest checkpoint ref. Detached and named, so   */
/* it outlives the handles and restarts of the actors that use it.          */
/* ------------------------------------------------------------------------ */

typedef struct ckpt_store {
  ray_ref *latest; /* our own ref on the newest checkpoint; NULL: none yet */
  int64_t saves;
} ckpt_store;

/* "save": arg 0 is a refs object holding one ref, the new checkpoint. We keep
 * our own ref to it (ray_ref_retain) and drop the previous one, which frees
 * the old checkpoint. Returns the number of saves (i64). */
static ray_status store_save(void *state, ray_ctx *ctx) {
  ckpt_store *cs = state;
  ray_view v;
  ray_status s = ray_ctx_arg(ctx, 0, &ray_type_refs, &v);
  if (s != RAY_OK) return s;
  if (v.size != sizeof(ray_ref *)) return ray_ctx_fail(ctx, "save wants exactly one ref");
  ray_ref *ckpt = ray_ref_retain(((ray_ref *const *)v.data)[0]); /* borrowed -> ours */
  if (ckpt == NULL) return ray_ctx_fail(ctx, "save got a released ref");
  ray_ref_release(cs->latest);
  cs->latest = ckpt;
  cs->saves++;
  return ray_ctx_return_i64(ctx, 0, cs->saves);
}

/* "load": a refs object with the newest checkpoint, or with no ref at all. */
static ray_status store_load(void *state, ray_ctx *ctx) {
  ckpt_store *cs = state;
  ray_ref *list;
  ray_status s = ray_put_refs(&cs->latest, cs->latest ? 1 : 0, &list);
  if (s != RAY_OK) return s;
  s = ray_ctx_return_ref(ctx, 0, list);
  ray_ref_release(list);
  return s;
}

/* "saves": how many checkpoints were saved (i64). */
static ray_status store_saves(void *state, ray_ctx *ctx) {
  ckpt_store *cs = state;
  return ray_ctx_return_i64(ctx, 0, cs->saves);
}

static void store_stop(void *state, ray_ctx *ctx) {
  (void)ctx;
  ckpt_store *cs = state;
  ray_ref_release(cs->latest);
  cs->latest = NULL;
}

enum { STORE_SAVE, STORE_LOAD, STORE_SAVES };
static const ray_method store_methods[] = {
    {"save", store_save}, {"load", store_load}, {"saves", store_saves}};
static const ray_actor_class store_class = {"CheckpointStore", sizeof(ckpt_store), NULL,
                                            store_stop,        store_methods,      3};

/* Reads the answer of "load": *found tells whether there was a checkpoint;
 * if so *out is a copy of it. Used by the Counter's on_start and the driver. */
static ray_status read_loaded(ray_ref *loaded, counter_state *out, bool *found) {
  ray_view list, item;
  ray_status s = ray_get(loaded, &ray_type_refs, -1, &list);
  if (s != RAY_OK) return s;
  *found = list.size > 0;
  if (*found) {
    /* The refs in a refs object are borrowed from it: valid while we hold
     * the view of the list. */
    ray_ref *ckpt = ((ray_ref *const *)list.data)[0];
    if ((s = ray_get(ckpt, &counter_state_type, -1, &item)) == RAY_OK) {
      *out = *(const counter_state *)item.data;
      ray_view_release(&item);
    }
  }
  ray_view_release(&list);
  return s;
}

/* Calls method of the actor named STORE_NAME; *ret is its result ref. */
static ray_status call_store(size_t method, const ray_arg *args, size_t nargs, ray_ref **ret) {
  ray_actor *store;
  ray_status s = ray_actor_lookup(STORE_NAME, &store);
  if (s != RAY_OK) return s;
  s = ray_actor_call(store, method, args, nargs, ret);
  ray_actor_release(store);
  return s;
}

/* ------------------------------------------------------------------------ */
/* Counter                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct counter {
  counter_state st;
} counter;

/* Constructor argument 0: the start value (i64). Runs at creation and again
 * after every restart, with the same argument and a zeroed state. */
static ray_status counter_start(void *state, ray_ctx *ctx) {
  counter *c = state;
  ray_status s = ray_ctx_arg_i64(ctx, 0, &c->st.count);
  if (s != RAY_OK) return s;

  /* A blocking call inside on_start is fine: the pool runs a spare worker
   * meanwhile, so "checkpoints" can answer. */
  ray_ref *loaded;
  if ((s = call_store(STORE_LOAD, NULL, 0, &loaded)) != RAY_OK) return s;
  counter_state saved;
  bool found = false;
  s = read_loaded(loaded, &saved, &found);
  ray_ref_release(loaded);
  if (s != RAY_OK) return s; /* the actor restarts again, or ends, with this reason */
  if (found) {
    c->st = saved;
    printf("  Counter.on_start: restored count %" PRId64 " (after %" PRId64
           " calls) from the checkpoint\n",
           saved.count, saved.calls);
  } else {
    printf("  Counter.on_start: no checkpoint yet, count starts at %" PRId64 "\n", c->st.count);
  }
  return RAY_OK;
}

/* Puts the state in the store and hands its ref to "checkpoints"; returns
 * once the save is done, so a restart right after this call finds it. */
static ray_status checkpoint_now(const counter_state *st) {
  ray_ref *ckpt, *list, *saved;
  ray_status s = ray_put(st, sizeof *st, &counter_state_type, &ckpt);
  if (s != RAY_OK) return s;
  s = ray_put_refs(&ckpt, 1, &list); /* the list holds its own ref on ckpt */
  ray_ref_release(ckpt);
  if (s != RAY_OK) return s;
  ray_arg arg = ray_arg_ref(list);
  s = call_store(STORE_SAVE, &arg, 1, &saved);
  ray_ref_release(list); /* the call holds its own ref on its argument */
  if (s != RAY_OK) return s;
  int64_t saves;
  s = ray_get_i64(saved, -1, &saves);
  ray_ref_release(saved);
  return s;
}

/* "incr": count + 1, checkpointed every CKPT_EVERY calls. Returns the new
 * count (i64). */
static ray_status counter_incr(void *state, ray_ctx *ctx) {
  counter *c = state;
  c->st.count++;
  c->st.calls++;
  if (c->st.calls % CKPT_EVERY == 0) {
    ray_status s = checkpoint_now(&c->st);
    if (s != RAY_OK) return s; /* this call fails; the state keeps the increment */
  }
  return ray_ctx_return_i64(ctx, 0, c->st.count);
}

/* "get": the whole state (counter_state). */
static ray_status counter_get(void *state, ray_ctx *ctx) {
  counter *c = state;
  return ray_ctx_return(ctx, 0, &c->st, sizeof c->st, &counter_state_type);
}

enum { COUNTER_INCR, COUNTER_GET };
static const ray_method counter_methods[] = {{"incr", counter_incr}, {"get", counter_get}};
static const ray_actor_class counter_class = {"Counter", sizeof(counter), counter_start,
                                              NULL,      counter_methods, 2};

/* ------------------------------------------------------------------------ */
/* Driver helpers                                                           */
/* ------------------------------------------------------------------------ */

/* Makes k incr calls at once (they run in order), then checks that they
 * returned first, first+1, ... */
static bool incr_times(ray_actor *a, int k, int64_t first) {
  ray_ref *r[32];
  int n = 0;
  bool ok = true;
  for (; n < k && n < 32; n++)
    if (!check(RAY_CALL(&r[n], a, COUNTER_INCR), "RAY_CALL(incr)")) {
      ok = false;
      break;
    }
  int64_t got[32]; /* all or nothing: a failed call fails the batch, naming its index */
  if (n > 0 && !check(ray_get_many_i64(r, (size_t)n, -1, got), "ray_get_many_i64(incr)")) {
    ok = false;
  } else {
    for (int i = 0; i < n; i++)
      if (got[i] != first + i) {
        fprintf(stderr, "checkpoint: incr %d returned %" PRId64 ", expected %" PRId64 "\n", i,
                got[i], first + i);
        ok = false;
      }
  }
  for (int i = 0; i < n; i++) ray_ref_release(r[i]);
  return ok;
}

/* Calls a method without arguments whose result is size bytes of type t;
 * copies it to out. */
static bool call_get(ray_actor *a, size_t method, const ray_type *t, void *out, size_t size) {
  ray_ref *r;
  if (!check(ray_actor_call(a, method, NULL, 0, &r), "ray_actor_call")) return false;
  ray_view v;
  bool ok = check(ray_get(r, t, -1, &v), "ray_get");
  if (ok) {
    ok = v.size == size;
    if (ok) memcpy(out, v.data, size);
    ray_view_release(&v);
  }
  ray_ref_release(r);
  return ok;
}

/* The newest checkpoint, as the store has it. */
static bool latest_checkpoint(ray_actor *store, counter_state *out) {
  ray_ref *loaded;
  if (!check(ray_actor_call(store, STORE_LOAD, NULL, 0, &loaded), "ray_actor_call(load)"))
    return false;
  bool found = false;
  bool ok = check(read_loaded(loaded, out, &found), "read_loaded");
  ray_ref_release(loaded);
  if (ok && !found) fprintf(stderr, "checkpoint: no checkpoint saved\n");
  return ok && found;
}

int main(void) {
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.object_store_memory = 64u << 20;
  if (!check(ray_init(&cfg), "ray_init")) return 1;
  int failures = 0;
#define EXPECT(cond, ...)                                                                          \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "checkpoint: check failed: " __VA_ARGS__);                                   \
      fputc('\n', stderr);                                                                         \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

  /* The checkpoint holder: named (so on_start can find it) and detached (it
   * lives until killed or shutdown, whatever happens to its users). */
  ray_actor_opts store_opts = {0};
  store_opts.name = STORE_NAME;
  store_opts.detached = true;
  ray_actor *store = NULL;
  if (!check(ray_actor_create(&store_class, NULL, 0, &store_opts, &store), "ray_actor_create")) {
    ray_shutdown();
    return 1;
  }

  /* The counter may be restarted once (max_restarts), e.g. by a kill. */
  ray_actor_opts counter_opts = {0};
  counter_opts.max_restarts = 1;
  ray_actor *counter = NULL;
  if (!check(RAY_ACTOR_CREATE_OPTS(&counter_opts, &counter, &counter_class, START),
             "RAY_ACTOR_CREATE_OPTS")) {
    ray_actor_kill(store, true);
    ray_actor_release(store);
    ray_shutdown();
    return 1;
  }

  /* 12 increments: 101 .. 112, checkpoints after calls 5 and 10. */
  printf("counting 12 times from %d, checkpoint every %d calls\n", START, CKPT_EVERY);
  EXPECT(incr_times(counter, 12, START + 1), "the first 12 increments");
  counter_state before = {0}, ckpt = {0}, after = {0};
  EXPECT(call_get(counter, COUNTER_GET, &counter_state_type, &before, sizeof before),
         "get before the kill");
  EXPECT(latest_checkpoint(store, &ckpt), "reading the checkpoint");
  printf("  state %" PRId64 " after %" PRId64 " calls; newest checkpoint %" PRId64 " after %" PRId64
         " calls\n",
         before.count, before.calls, ckpt.count, ckpt.calls);
  EXPECT(before.count == START + 12 && before.calls == 12, "state before the kill");
  EXPECT(ckpt.count == START + 10 && ckpt.calls == 10, "checkpoint %" PRId64 "/%" PRId64,
         ckpt.count, ckpt.calls);

  /* Restart it. Calls made after the kill go to the new incarnation, which
   * has restored the checkpoint in on_start. */
  printf("ray_actor_kill(counter, no_restart = false)\n");
  EXPECT(check(ray_actor_kill(counter, false), "ray_actor_kill"), "kill");
  EXPECT(call_get(counter, COUNTER_GET, &counter_state_type, &after, sizeof after),
         "get after the restart");
  printf("  state after the restart: %" PRId64 " after %" PRId64 " calls\n", after.count,
         after.calls);
  EXPECT(after.count == ckpt.count && after.calls == ckpt.calls,
         "restored %" PRId64 "/%" PRId64 ", the checkpoint is %" PRId64 "/%" PRId64, after.count,
         after.calls, ckpt.count, ckpt.calls);

  /* Counting goes on from the checkpoint: 111 .. 117, a checkpoint at call
   * 15 (count 115). */
  EXPECT(incr_times(counter, 7, ckpt.count + 1), "the increments after the restart");
  EXPECT(latest_checkpoint(store, &ckpt), "reading the checkpoint");
  int64_t saves = 0;
  EXPECT(call_get(store, STORE_SAVES, &ray_type_i64, &saves, sizeof saves), "saves");
  printf("  7 more increments: newest checkpoint %" PRId64 " after %" PRId64 " calls, %" PRId64
         " checkpoints saved\n",
         ckpt.count, ckpt.calls, saves);
  EXPECT(ckpt.count == START + 15 && ckpt.calls == 15, "checkpoint after the restart");
  EXPECT(saves == 3, "%" PRId64 " saves, expected 3", saves);

  ray_stats st = {0};
  EXPECT(check(ray_stats_get(&st), "ray_stats_get"), "stats");
  EXPECT(st.actor_restarts == 1, "actor_restarts %" PRIu64 ", expected 1", st.actor_restarts);

  /* Done: the counter ends with its last handle; the detached store only
   * when killed (its on_stop releases the newest checkpoint). */
  ray_actor_release(counter);
  EXPECT(check(ray_actor_kill(store, true), "ray_actor_kill"), "kill the store");
  ray_actor_release(store);
  if (!check(ray_shutdown(), "ray_shutdown")) failures++;
  printf("checkpoint: restart restored count %" PRId64 " from the checkpoint, counting went on "
         "to %" PRId64 "; %" PRIu64 " restart: %s\n",
         after.count, after.count + 7, st.actor_restarts,
         failures == 0 ? "all checks passed" : "FAILED");
  return failures == 0 ? 0 : 1;
#undef EXPECT
}
