/*
 * ray.h - rayc: Ray Core for C.
 *
 * The whole public API. One runtime per process (ray_init .. ray_shutdown),
 * running inside the calling process; every function here may be called from
 * any thread of the program unless its comment says otherwise.
 *
 * Conventions that hold for every function below:
 *  - A fallible call returns ray_status. Outputs go through pointer arguments
 *    and are written only on RAY_OK; on failure they are left untouched and
 *    ray_last_error() gives a one-line description naming the object involved.
 *  - timeout_ms: -1 waits forever, 0 polls once, > 0 waits that many ms. A
 *    wait too long to reach on the monotonic clock (INT64_MAX, INT64_MAX / 2:
 *    centuries) waits forever as -1 does. Below -1 is RAY_EINVAL: a computed
 *    timeout that went negative is a bug, not a wish to wait forever.
 *  - Every handle you receive (ray_ref *, ray_view) you release exactly once.
 *    Handles are opaque: never dereference a ray_ref *.
 *  - Bad arguments (NULL, size 0 where data is needed, a released handle where
 *    detectable) give RAY_EINVAL, never a crash. Calls before ray_init or after
 *    ray_shutdown give RAY_ESHUTDOWN.
 */
#ifndef RAY_H
#define RAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RAY_API __attribute__((visibility("default")))
#else
#define RAY_API
#endif

/*
 * The version of this header. MAJOR, MINOR and PATCH are the single source
 * (CMake and the pkg-config files read them from here); the two below are
 * derived from them.
 *   RAY_VERSION_STRING  "MAJOR.MINOR.PATCH", e.g. "0.1.0"
 *   RAY_VERSION_NUMBER  MAJOR * 10000 + MINOR * 100 + PATCH, e.g. 100 for
 *                       0.1.0 (MINOR and PATCH stay below 100); for #if:
 *                       `#if RAY_VERSION_NUMBER >= 200` means 0.2.0 or later
 * ray_version() gives the version of the library actually linked, which may
 * differ from the header's when a program runs against another libray.so.
 */
#define RAY_VERSION_MAJOR 0
#define RAY_VERSION_MINOR 1
#define RAY_VERSION_PATCH 0
#define RAY_VERSION_STR_(x) #x
#define RAY_VERSION_XSTR_(x) RAY_VERSION_STR_(x)
#define RAY_VERSION_STRING                                                                         \
  RAY_VERSION_XSTR_(RAY_VERSION_MAJOR)                                                             \
  "." RAY_VERSION_XSTR_(RAY_VERSION_MINOR) "." RAY_VERSION_XSTR_(RAY_VERSION_PATCH)
#define RAY_VERSION_NUMBER                                                                         \
  ((RAY_VERSION_MAJOR)*10000 + (RAY_VERSION_MINOR)*100 + (RAY_VERSION_PATCH))

/* The library's version, RAY_VERSION_STRING as the library was built (e.g.
 * "0.1.0"): compare it with the header's RAY_VERSION_STRING to detect a
 * program running against another libray.so than it was compiled with.
 * Callable at any time, before ray_init too, from any thread. Static
 * storage; never NULL. */
RAY_API const char *ray_version(void);

/* ------------------------------------------------------------------------ */
/* Status                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum ray_status {
  RAY_OK = 0,
  RAY_EINVAL,     /* bad argument: NULL, size 0, released handle, bad config */
  RAY_ETIMEOUT,   /* the wait ran out; nothing changed, retrying is fine */
  RAY_ETYPE,      /* the object's type is not the one expected */
  RAY_ETASK,      /* the task that makes the object failed */
  RAY_ECANCELLED, /* the task that makes the object was cancelled */
  RAY_EACTOR,     /* the actor died or ended */
  RAY_ESTOREFULL, /* no memory for the object within put_timeout_ms */
  RAY_ELOST,      /* the object's bytes can no longer be read */
  RAY_ENOMEM,     /* the C heap refused an allocation */
  RAY_ENOTFOUND,  /* no such name */
  RAY_EEXIST,     /* already exists / already running */
  RAY_ESHUTDOWN,  /* the runtime is not running */
  RAY_EIO         /* an operating-system call failed */
} ray_status;

/* "RAY_ETIMEOUT"; "RAY_E?" for an unknown value. Static storage. */
RAY_API const char *ray_status_name(ray_status s);
/* A short description of s, e.g. "timed out". Static storage. */
RAY_API const char *ray_strerror(ray_status s);
/*
 * The detail of the calling thread's last failed call, one line, e.g.
 * "ray_get: object 5f..e1 has type 'f64' (elem 8), expected 'i64' (elem 8)".
 * "" if no call on this thread has failed yet. The string is thread-local and
 * stays valid until the next failing rayc call on the same thread.
 */
RAY_API const char *ray_last_error(void);

/* ------------------------------------------------------------------------ */
/* Runtime                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Zero means the default, in every field: `ray_config cfg = {0};` is a valid
 * config, the same as ray_init(NULL). A field left zero (0 or NULL) takes the
 * value of its RAY_* environment variable when that is set (see
 * ray_config_init), else the default given below; a malformed RAY_* variable
 * makes ray_init fail, whichever way the config was made.
 */
typedef struct ray_config {
  /* Worker threads, at most 4096; 0: the number of online CPUs. */
  int num_workers;
  /* Bytes of object payload held in memory, never exceeded; 0: 30% of RAM. */
  size_t object_store_memory;
  /* Spill directory: objects that do not fit in memory go there, in shared
   * spill files. NULL: $TMPDIR/rayc-<pid> (/tmp/rayc-<pid> when TMPDIR is
   * unset or empty), and ray_init first removes the rayc-<pid> directories
   * there of this user's processes that have died. ray_init creates the
   * directory if it does not exist (missing parents too, mode 0700); one
   * that cannot be created fails ray_init with RAY_EIO. ray_shutdown deletes
   * every spill file, and the directory itself if it is the default one or
   * ray_init created it (parents it created stay, and so does a directory
   * that holds other files). The string is copied by ray_init. Spill files
   * are rayc's alone while it runs. */
  const char *spill_dir;
  /* How long a put waits for memory before RAY_ESTOREFULL: > 0 milliseconds
   * (INT64_MAX: as good as forever), -1 forever, RAY_PUT_NO_WAIT not at all;
   * 0: the default, 10000 (ray_config_init sets it). Below RAY_PUT_NO_WAIT
   * makes ray_init fail RAY_EINVAL. */
  int64_t put_timeout_ms;
  /* Turns the timeline on and names the file ray_shutdown writes it to: a
   * self-contained HTML page if the path ends in ".html" or ".htm", else a
   * Chrome trace (JSON); see ray_timeline_write. NULL: RAY_TIMELINE if set,
   * else off (unless RAY_TIMELINE_SUMMARY=1). Copied by ray_init. */
  const char *timeline_path;
  /* Set by ray_config_init when a RAY_* environment variable is malformed
   * (names the variable and its value); ray_init then refuses the config
   * with RAY_EINVAL and this text. "" when all is well. */
  char env_error[192];
  /* Room for fields to come (zero them: `{0}` and ray_config_init do);
   * ray_init refuses a config whose reserved_ is not all zero. */
  uint64_t reserved_[8];
} ray_config;

/* put_timeout_ms: a put that finds no room fails RAY_ESTOREFULL at once. */
#define RAY_PUT_NO_WAIT (-2)

/*
 * Fills cfg with the defaults, then applies the environment overrides:
 *   RAY_NUM_WORKERS          a decimal integer from 0 to 4096
 *   RAY_OBJECT_STORE_MEMORY  a byte count > 0: decimal digits, then
 *                            optionally K, M, G or T (x1024 each, either
 *                            case), then optionally B: "65536", "512k",
 *                            "64M", "1GB"
 *   RAY_SPILL_DIR            a path, not empty
 *   RAY_TIMELINE             a path, not empty (.html: a page, else a Chrome trace)
 *   RAY_PUT_TIMEOUT_MS       a decimal integer >= -1 (0 there: RAY_PUT_NO_WAIT)
 *   RAY_TIMELINE_SUMMARY     0 or 1 (1: the timeline is on, and its summary
 *                            is printed to stderr at shutdown)
 * The integers may have leading blanks and a sign (strtoll); a byte count
 * starts with a digit and has nothing after its suffix; a value too large
 * for its field is malformed. A set but empty variable is malformed too.
 * A malformed value does not fall back silently: it is recorded in
 * cfg->env_error and makes ray_init(cfg) fail. The string fields point into
 * the environment; they stay valid while the environment is unchanged.
 * Optional: ray_init applies the same overrides to the zero fields of any
 * config; this shows the values in force and lets the program change them.
 */
RAY_API void ray_config_init(ray_config *cfg);

/*
 * Starts the runtime. cfg NULL: ray_config_init defaults (environment
 * included). cfg is read during the call only.
 * Errors: RAY_EEXIST if already running; RAY_EINVAL for a bad field, a
 * reserved_ that is not zero, or a malformed RAY_* variable (message names
 * it); RAY_ENOMEM; RAY_EIO
 * (the spill directory cannot be created: the message names it and why).
 */
RAY_API ray_status ray_init(const ray_config *cfg);

/*
 * Stops the runtime. Outside submissions are refused (RAY_ESHUTDOWN) from
 * the start; submitted tasks and calls, and the work they submit, run to the
 * end; then every actor ends (on_stop once each), the timeline is written,
 * and every object and all memory are freed. Handles still held become
 * invalid; a warning on stderr counts the refs, views and actor handles the
 * program never released, and names the creators of the objects left
 * (ray_memory_report). Idempotent: RAY_OK when not running. ray_init may
 * follow.
 * Concurrency: ray_submit, ray_actor_create, ray_actor_call and
 * ray_actor_send may race ray_shutdown from any thread: each either returns
 * RAY_ESHUTDOWN, or is let in, completes before anything is freed, and its
 * work runs to the end like work submitted earlier. Every other call
 * (gets, puts, waits, releases, ray_init) must not run concurrently with
 * ray_shutdown on threads outside the pool: finish them first, and release
 * nothing after it (handles are invalid then; releasing one is a no-op once
 * shutdown has returned). A task that waits on an object nobody will seal
 * (a ray_create never sealed) keeps shutdown waiting: seal or release it
 * first.
 * Errors: RAY_EINVAL (called from inside a task or actor); RAY_EIO (the
 * timeline file could not be written; the runtime is shut down all the same;
 * RAY_ENOMEM if there was no memory to write it).
 */
RAY_API ray_status ray_shutdown(void);

/* True between a successful ray_init and the next ray_shutdown. */
RAY_API bool ray_is_initialized(void);

/*
 * Cluster mode (docs/GUIDE.md "Running on many machines"): the same program
 * started by `mpirun -n N` or `srun` runs as N processes, ranks 0..N-1.
 * ray_init joins them: on rank 0 it returns and the program is the driver;
 * on every other rank it does not return: the process serves the driver
 * until the driver's ray_shutdown, then finalises MPI and exits 0. A
 * program may initialise MPI itself first (MPI_Init_thread with
 * MPI_THREAD_SERIALIZED or more): rayc then uses it, on a communicator of
 * its own, and on rank 0 leaves finalising it to the program; otherwise
 * rayc initialises MPI and finalises it at exit. Every rank must run the same
 * executable and libraries: otherwise ray_init fails on every rank with
 * RAY_EINVAL and a message naming the rank and the file that differs.
 * Started without a launcher, with RAY_CLUSTER=0, or in a build without
 * MPI, the program runs in-process as one node. RAY_CLUSTER=1 joins even
 * when no launcher is recognised (a program that calls MPI_Init itself is
 * always recognised).
 */
/* Processes in this runtime: 1 in-process, N under mpirun; 0 before
 * ray_init and after ray_shutdown. */
RAY_API int ray_node_count(void);
/* This process's rank, 0 = the driver; also inside tasks and methods; -1
 * before ray_init and after ray_shutdown. */
RAY_API int ray_node_rank(void);
#define RAY_NODE_ANY 0              /* placement field value: let the scheduler choose */
#define RAY_NODE(rank) ((rank) + 1) /* placement field value: run on that rank */

/* ------------------------------------------------------------------------ */
/* Types                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A type descriptor names what an object holds. Two descriptors are the same
 * type if they are the same address, or have equal names and elem_size.
 * elem_size > 0 means the payload is a whole number of elements of that size
 * (checked at put: RAY_EINVAL otherwise); 0 means any size.
 * The runtime keeps the pointer, so a descriptor must outlive every object
 * that uses it: define them with static storage (RAY_DEFINE_TYPE).
 */
typedef struct ray_type {
  const char *name;
  size_t elem_size;
} ray_type;

#define RAY_DEFINE_TYPE(var, ctype, name) const ray_type var = {(name), sizeof(ctype)}

RAY_API extern const ray_type ray_type_bytes; /* "bytes", any size */
RAY_API extern const ray_type ray_type_i64;   /* "i64", int64_t elements */
RAY_API extern const ray_type ray_type_f64;   /* "f64", double elements */
RAY_API extern const ray_type ray_type_str;   /* "str", any size (text) */
RAY_API extern const ray_type ray_type_refs;  /* "refs", ray_ref * elements */

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * An ObjectRef: a counted handle on one immutable object in the store. The
 * object lives while any ref, view or pending use holds it. Each ray_ref *
 * you receive (from a put, create, ray_ref_retain, ...) you release exactly
 * once with ray_ref_release. A ray_ref * is an opaque value, not a pointer
 * to memory: a released one is detected (RAY_EINVAL "released or invalid") until
 * the slot is reused.
 */
typedef struct ray_ref ray_ref;

/*
 * Zero-copy read access to an object's bytes. data and size stay valid, and
 * the bytes stay in memory, until ray_view_release, even after every ref to
 * the object is released. Read the fields; do not touch priv_.
 */
typedef struct ray_view {
  const void *data;
  size_t size;
  const ray_type *type;
  void *priv_;
} ray_view;

/*
 * Copies size bytes from data into a new object. type NULL means
 * ray_type_bytes. On RAY_OK *out is a new ref (release it). When the store
 * is full, least recently used objects (sealed, over 64 bytes, not pinned,
 * viewed, adopted or refs objects) are spilled to disk first.
 * Errors: RAY_EINVAL (data/out NULL, size 0, a type whose name is NULL, size
 * not a multiple of type->elem_size); RAY_ESTOREFULL (nothing more could be
 * spilled and no room came within put_timeout_ms, or the object is larger
 * than the whole limit: the message gives asked, in use, pinned, viewed,
 * spilled and limit, and the I/O error if spilling failed; the store is
 * unchanged); RAY_ENOMEM; RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_put(const void *data, size_t size, const ray_type *type, ray_ref **out);

/*
 * Adopts the caller's buffer without copying. On RAY_OK the store owns data
 * and calls free_fn(data) once, from whichever thread drops the object last;
 * free_fn NULL means the caller keeps ownership and must keep data alive and
 * unchanged until the object is gone (no view or ref left). On failure the
 * caller still owns data. The buffer stays where it is: an adopted object is
 * never spilled. Errors as ray_put.
 */
RAY_API ray_status ray_put_owned(void *data, size_t size, const ray_type *type,
                                 void (*free_fn)(void *data), ray_ref **out);

/*
 * Reserves an object of size bytes for writing in place: *data is writable
 * until ray_seal(*out); getters of the object block until then. Releasing the
 * last ref of an unsealed object frees it. Errors as ray_put.
 */
RAY_API ray_status ray_create(size_t size, const ray_type *type, void **data, ray_ref **out);

/*
 * Makes an object from ray_create immutable and wakes its getters; the data
 * pointer from ray_create must not be written afterwards.
 * Errors: RAY_EINVAL (NULL, released handle, already sealed, not from
 * ray_create); RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_seal(ray_ref *ref);

/*
 * Makes an object (type ray_type_refs) that holds n refs and keeps their
 * objects alive while it lives; it takes its own reference on each, so the
 * caller still releases the refs it passed. n may be 0 (refs may then be
 * NULL). A view of it has data of type `ray_ref *const[n]`: those refs are
 * borrowed from the object (valid while the view is held); ray_ref_retain
 * one to keep it longer. Errors: RAY_EINVAL (NULL or released ref), others
 * as ray_put.
 */
RAY_API ray_status ray_put_refs(ray_ref *const refs[], size_t n, ray_ref **out);

/*
 * Zero-copy read. Blocks while the object is being created (ray_create not yet
 * sealed) up to timeout_ms. expect NULL accepts any type. On RAY_OK *out is a
 * view to release with ray_view_release.
 * Waiting with timeout_ms < 0 may run work on the calling thread instead of
 * sleeping: the task that makes this object, when it is one of the last few
 * tasks this thread submitted and no worker has started it yet (it is what
 * the call waits for), or, inside a task, jobs queued by that task. So task
 * functions must not rely on which thread runs them.
 * Errors: RAY_EINVAL (NULL, released ref, timeout_ms < -1); RAY_ETIMEOUT (not
 * sealed in time; nothing changed, a later get still works); RAY_ETYPE
 * (message names the object and both types); RAY_ENOMEM (no memory to
 * record the view); the object's own error if it failed (RAY_ETASK,
 * RAY_ECANCELLED, RAY_EACTOR, with its message); for a spilled object, which
 * the get reads back: RAY_ELOST (its spill file is corrupt, truncated or
 * unreadable; the message names the file and offset; the object is lost)
 * and RAY_ESTOREFULL (no room to restore it, as for a put; nothing is lost,
 * a later get may work); RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_get(ray_ref *ref, const ray_type *expect, int64_t timeout_ms, ray_view *out);

/* Ends a view from ray_get; the view's fields are cleared. NULL, a view with
 * priv_ NULL (released through this struct, or borrowed from ray_ctx_arg)
 * and a view of an earlier runtime are ignored. Releasing one view twice,
 * also through a struct copy of it, is detected: the second release is
 * reported on stderr and changes nothing (it never ends another view of the
 * same object). Two releases of one view at the same instant on two threads
 * are a data race in the program, like a double free, and may go unseen. */
RAY_API void ray_view_release(ray_view *view);

/*
 * Waits until at least num_ready of the n refs are ready (sealed, or failed:
 * a failed object counts as ready) or the timeout passes. ready[i] is set for
 * every ref, ready or not, on RAY_OK and on RAY_ETIMEOUT. n == 0 with
 * num_ready == 0 returns RAY_OK at once while the runtime runs (before
 * ray_init or after ray_shutdown it is RAY_ESHUTDOWN, as for every call).
 * Errors: RAY_EINVAL (NULL refs/ready with n > 0, num_ready > n, a NULL,
 * released or duplicated ref, timeout_ms < -1); RAY_ETIMEOUT (fewer than
 * num_ready ready); RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_wait(ray_ref *const refs[], size_t n, size_t num_ready, int64_t timeout_ms,
                            bool ready[]);

/* Another handle on the same object (same value); release it separately.
 * NULL or a released ref gives NULL. */
RAY_API ray_ref *ray_ref_retain(ray_ref *ref);

/* Drops one handle. The object is freed when its last ref and view are
 * gone, pinned or not (a pin keeps an object in memory, not alive). NULL is
 * ignored; a detectably released handle is reported on stderr and otherwise
 * ignored. */
RAY_API void ray_ref_release(ray_ref *ref);

/*
 * Pins an object in memory: it is never spilled while pinned. Pins nest (up
 * to 65535); each ray_pin needs one ray_unpin. Pinned bytes are reported in
 * ray_stats and in RAY_ESTOREFULL messages. Pinning a spilled object reads
 * it back first. Errors: RAY_EINVAL (NULL, released, ray_unpin of an
 * unpinned object, the object is not sealed, a 65536th nested ray_pin:
 * "pinned too often"); RAY_ELOST and RAY_ESTOREFULL as for ray_get of a
 * spilled object; RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_pin(ray_ref *ref);
RAY_API ray_status ray_unpin(ray_ref *ref);

/* The object's 16-byte ID as 32 lowercase hex digits and a NUL. IDs are
 * unique across processes and runtimes. A NULL or released ref gives 32
 * zeros. */
RAY_API void ray_ref_id(const ray_ref *ref, char hex[33]);

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A task is a function run once on the worker pool, after every ref argument
 * is ready. Its results are objects: ray_submit hands back one ref per return
 * at once, and a get of one blocks until the task has set it. If the task
 * fails, or an argument it depends on failed, each return fails instead and
 * a get gives RAY_ETASK (or RAY_ECANCELLED) with a message naming the task,
 * its reason and, for a dependency, which argument came from which task:
 *   "task 'sum' not run: argument 0 comes from task 'parse', which failed:
 *    invalid input -5"
 */
typedef struct ray_ctx ray_ctx;

/* An actor handle (see Actors below). */
typedef struct ray_actor ray_actor;

/* Returns RAY_OK after setting every return, or an error status (usually via
 * ray_ctx_fail) to fail the task. Runs on a worker thread; it may call any
 * rayc function, including blocking ray_get/ray_wait and ray_submit. */
typedef ray_status (*ray_task_fn)(ray_ctx *ctx);

/* An argument of ray_submit: build it with ray_arg_ref / ray_arg_value. */
typedef struct ray_arg {
  int kind_;
  const void *p_;
  size_t size_;
  const ray_type *type_;
} ray_arg;

/* The object of ref, read zero-copy by the task once it is ready. The task
 * holds its own reference from submit until it ends: the caller may release
 * ref right after ray_submit. */
RAY_API ray_arg ray_arg_ref(ray_ref *ref);
/* size bytes at data, copied by ray_submit (the caller may reuse data when
 * ray_submit returns). type NULL means ray_type_bytes. */
RAY_API ray_arg ray_arg_value(const void *data, size_t size, const ray_type *type);
/* An actor handle, passed to the task or method, which holds its own handle
 * until it ends: the caller may release its handle right after the call. */
RAY_API ray_arg ray_arg_actor(ray_actor *actor);

/* Zero means the default, in every field: `ray_task_opts o = {0};` is the
 * same as RAY_TASK_OPTS_INIT and as passing NULL. */
typedef struct ray_task_opts {
  /* For messages, stats and the timeline; copied. NULL: the task function's
   * own name ("square"), from the program's symbol table (static functions
   * included); "unnamed" where the function has no symbol (a stripped
   * binary's static function). */
  const char *name;
  /* How many results: 1 .. 256; 0 means 1; RAY_NO_RETURNS: none (returns
   * may then be NULL, and nothing can wait for the task). */
  int num_returns;
  /* Re-runs after the function returns an error; 0: none; -1: no limit. */
  int max_retries;
  /* Where it runs (cluster mode): RAY_NODE_ANY (0) lets the scheduler place
   * it; RAY_NODE(rank) runs it on that rank. A rank outside
   * 0..ray_node_count()-1 fails ray_submit with RAY_EINVAL. */
  int node;
  /* Room for fields to come; must be zero (ray_submit refuses it else). */
  int reserved_int_;
  uint64_t reserved_[3];
} ray_task_opts;
#define RAY_TASK_OPTS_INIT                                                                         \
  {                                                                                                \
    NULL, 1, 0, RAY_NODE_ANY, 0, {                                                                 \
      0                                                                                            \
    }                                                                                              \
  }
/* num_returns: a task without results. */
#define RAY_NO_RETURNS (-1)

/*
 * Submits fn(args). On RAY_OK returns[0 .. num_returns-1] are new refs to the
 * task's results (release each); fn runs later on the pool (or on the thread
 * that waits for it, see ray_get). opts NULL: one return, no retries.
 * Submitting from inside a task records the new task as a child of the
 * running one (see ray_cancel). It never blocks; a thread outside the pool
 * with 1024 tasks of its own still queued yields the CPU once, so that the
 * workers catch up.
 * Errors: RAY_EINVAL (fn NULL, args NULL with nargs > 0, a bad or released
 * ref argument, a value argument with NULL data, size 0 or a type whose name
 * is NULL, num_returns out of range or returns NULL while it asks for
 * results, max_retries < -1, reserved_ not zero; the message names the
 * argument);
 * RAY_ESHUTDOWN (no runtime, or ray_shutdown has begun and the caller is not
 * a task or actor method; see ray_shutdown for calls that race it);
 * RAY_ENOMEM. On failure nothing is submitted and returns is untouched.
 */
RAY_API ray_status ray_submit(ray_task_fn fn, const ray_arg *args, size_t nargs,
                              const ray_task_opts *opts, ray_ref **returns);

/*
 * Cancels the task whose result ref is. A task that has not started never
 * runs: its returns, and every task depending on them, fail RAY_ECANCELLED.
 * A running task sees ray_ctx_cancelled() return true; whatever it returns,
 * its returns fail RAY_ECANCELLED. A finished task, or an object no task
 * makes, is left alone (RAY_OK). recursive: also cancels, the same way, the
 * tasks the task submitted while running.
 * An actor call's result ref cancels that call: queued (or waiting for its
 * arguments), it never runs and fails RAY_ECANCELLED; running, it runs to
 * its end, its effects on the actor's state stay, and its result fails
 * RAY_ECANCELLED all the same (the method can poll ray_ctx_cancelled()).
 * The actor itself, and the calls after it, are not affected.
 * Errors: RAY_EINVAL (NULL or released ref); RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_cancel(ray_ref *ref, bool recursive);

/* --- inside a task -------------------------------------------------------
 * ctx is valid only during the call of the task function, on its thread. */

/* The number of arguments; 0 for a NULL ctx. */
RAY_API size_t ray_ctx_nargs(const ray_ctx *ctx);

/*
 * Zero-copy view of argument i, type-checked against expect (NULL: any).
 * The view is borrowed: it stays valid until the task function returns, and
 * needs no ray_view_release (calling it is harmless).
 * Errors: RAY_EINVAL (ctx/out NULL, i out of range); RAY_ETYPE (message names
 * the task, the argument and both types); for an argument that was spilled,
 * which is read back here, RAY_ELOST and RAY_ESTOREFULL as for ray_get.
 */
RAY_API ray_status ray_ctx_arg(ray_ctx *ctx, size_t i, const ray_type *expect, ray_view *out);

/*
 * Sets return i to a copy of size bytes at data (type NULL: bytes). Each
 * return is set once. The bytes count against the memory limit from now on,
 * and may wait for memory as ray_put does.
 * Errors: RAY_EINVAL (ctx NULL, i out of range, already set, data NULL, size 0,
 * size not whole elements); RAY_ESTOREFULL; RAY_ENOMEM.
 */
RAY_API ray_status ray_ctx_return(ray_ctx *ctx, size_t i, const void *data, size_t size,
                                  const ray_type *type);
/* Sets return i to the caller's buffer without a copy; the store calls
 * free_fn(data) when the object is gone (or at once if the task then fails).
 * On an error the caller keeps the buffer. Errors as ray_ctx_return. */
RAY_API ray_status ray_ctx_return_owned(ray_ctx *ctx, size_t i, void *data, size_t size,
                                        const ray_type *type, void (*free_fn)(void *));
/* Sets return i to the object of ref, without a copy (the return shares its
 * bytes and keeps it alive); the caller keeps its own ref. Waits for the
 * object if it is not ready. If it failed, the return is not set and its
 * status (e.g. RAY_ETASK) is returned with its message. */
RAY_API ray_status ray_ctx_return_ref(ray_ctx *ctx, size_t i, ray_ref *ref);

/* Records the reason the task fails, printf style, and returns RAY_ETASK:
 * `return ray_ctx_fail(ctx, "invalid input %d", x);` */
RAY_API ray_status ray_ctx_fail(ray_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* True once ray_cancel has been called on this task. */
RAY_API bool ray_ctx_cancelled(const ray_ctx *ctx);

/* The actor handle passed as argument i (ray_arg_actor), borrowed: valid
 * until the function returns; ray_actor_retain it to keep it longer.
 * Errors: RAY_EINVAL (NULL, i out of range); RAY_ETYPE (not an actor). */
RAY_API ray_status ray_ctx_arg_actor(ray_ctx *ctx, size_t i, ray_actor **out);

/* Inside an actor method, on_start or on_stop: the actor's own handle,
 * borrowed (retain it to pass it on or keep it). NULL in a task. */
RAY_API ray_actor *ray_ctx_self(const ray_ctx *ctx);

/* Inside an actor method: the actor stops after this method returns (its
 * result is delivered), without a restart; on_stop runs; calls still queued
 * fail RAY_EACTOR. Errors: RAY_EINVAL (NULL ctx, or not in an actor). */
RAY_API ray_status ray_ctx_exit_actor(ray_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Actors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * An actor is a state block plus a mailbox, run on the same worker pool as
 * tasks (actors are not threads) and reading and writing the same store.
 * Methods of one actor run one at a time (max_concurrency 1), and calls from
 * one submitter (a thread outside the pool, or one task or actor method) run
 * in the order they were made. A call whose ref arguments are not ready yet
 * waits without holding back other submitters' calls.
 *
 * Lifetime: ray_actor_create returns at once; on_start runs first, on the
 * pool, with the constructor arguments. The actor ends when its last handle
 * is released (after the calls already made), unless detached, or by
 * ray_ctx_exit_actor, ray_actor_kill(a, true) or ray_shutdown; on_stop then
 * runs, once per started incarnation. A call to an ended actor fails
 * RAY_EACTOR with "actor 'NAME' (ID) ended: REASON".
 *
 * Failures: a method that returns an error fails only that call (RAY_ETASK).
 * A method that returns RAY_EACTOR kills the actor: with max_restarts left it
 * restarts with a fresh zeroed state and on_start with the original
 * constructor arguments (no on_stop for a crash); a call in flight is re-run
 * after the restart while it has max_task_retries left. An on_start that
 * fails restarts the same way; out of restarts, every call fails RAY_EACTOR.
 */
typedef ray_status (*ray_method_fn)(void *state, ray_ctx *ctx);
typedef struct ray_method {
  const char *name; /* for messages: "Class.name"; NULL: the function's name */
  ray_method_fn fn;
} ray_method;

/* The class must outlive its actors (static storage). */
typedef struct ray_actor_class {
  const char *name;
  size_t state_size;                                 /* zeroed block owned by the runtime */
  ray_status (*on_start)(void *state, ray_ctx *ctx); /* ctx args = constructor args; may be NULL */
  void (*on_stop)(void *state, ray_ctx *ctx);        /* may be NULL */
  const ray_method *methods;
  size_t num_methods;
} ray_actor_class;

/* Zero means the default, in every field: `ray_actor_opts o = {0};` is the
 * same as passing NULL. */
typedef struct ray_actor_opts {
  const char *name; /* unique among living actors; NULL: unnamed; copied */
  /* Restarts after a crash or ray_actor_kill(a, false); 0: none; -1: no limit. */
  int max_restarts;
  /* Re-runs of a call in flight when the actor restarts; 0: none; -1: no limit. */
  int max_task_retries;
  int max_concurrency; /* methods of this actor running at once; 0 means 1 */
  size_t memory_quota; /* bytes of objects the actor may put; 0: no quota */
  bool detached;       /* lives on after its last handle, until killed or shutdown */
  /* Where it lives (cluster mode): RAY_NODE_ANY (0) or RAY_NODE(rank) of the
   * calling rank. An actor lives on the rank that creates it; another rank
   * of the runtime gives RAY_EINVAL saying so, a rank outside
   * 0..ray_node_count()-1 RAY_EINVAL naming it. (In the padding after
   * `detached`: the struct is as large as before.) */
  int node;
  /* Room for fields to come; must be zero (ray_actor_create refuses it else). */
  uint64_t reserved_[4];
} ray_actor_opts;

/*
 * Creates an actor of cls; on_start(args) runs asynchronously. opts NULL:
 * defaults. On RAY_OK *out is a handle (release it with ray_actor_release).
 * Errors: RAY_EINVAL (cls, out or a method fn NULL, an empty name, a bad
 * argument as in ray_submit, max_concurrency < 0, max_restarts or
 * max_task_retries < -1, reserved_ not zero); RAY_EEXIST (the name is taken by a living actor);
 * RAY_ESHUTDOWN; RAY_ENOMEM.
 */
RAY_API ray_status ray_actor_create(const ray_actor_class *cls, const ray_arg *args, size_t nargs,
                                    const ray_actor_opts *opts, ray_actor **out);

/*
 * Calls method (an index into cls->methods) with args. On RAY_OK *ret is a
 * new ref to the method's return 0 (release it).
 * Errors: RAY_EINVAL (bad handle, method out of range, bad argument, ret
 * NULL); RAY_EACTOR (the actor has ended: the message gives the reason);
 * RAY_ESHUTDOWN; RAY_ENOMEM.
 */
RAY_API ray_status ray_actor_call(ray_actor *a, size_t method, const ray_arg *args, size_t nargs,
                                  ray_ref **ret);
/* As ray_actor_call without a result. If the method then fails, nothing is
 * lost silently: the failure is written to stderr and counted in
 * ray_stats.actor_sends_failed. Errors as ray_actor_call. */
RAY_API ray_status ray_actor_send(ray_actor *a, size_t method, const ray_arg *args, size_t nargs);

/* A new handle on the living actor named name. Errors: RAY_EINVAL (NULL or
 * empty name, out NULL); RAY_ENOTFOUND; RAY_ESHUTDOWN. */
RAY_API ray_status ray_actor_lookup(const char *name, ray_actor **out);

/* no_restart false: restarts the actor as after a crash (on_stop runs
 * first), or ends it when no restart is left. true: ends it; queued calls
 * fail RAY_EACTOR. Takes effect after the method running now, if any.
 * Kills are requests, not a queue: those that reach the actor before it
 * has acted on an earlier one merge with it (several kill(a, false) in a
 * row may restart it once), and an end request wins over a restart.
 * Errors: RAY_EINVAL (bad handle); RAY_ESHUTDOWN. */
RAY_API ray_status ray_actor_kill(ray_actor *a, bool no_restart);

/* Another handle on a (the same value); NULL for a NULL or released handle. */
RAY_API ray_actor *ray_actor_retain(ray_actor *a);
/* Drops one handle; NULL is ignored, a released handle is reported on stderr. */
RAY_API void ray_actor_release(ray_actor *a);

/* ------------------------------------------------------------------------ */
/* Typed helpers                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Shortcuts for the common case of one number or one string. Each keeps the
 * type check of the call it stands for: an object or argument of another
 * type fails RAY_ETYPE with both type names, and one of the right type that
 * holds more than one element fails RAY_ETYPE too ("holds 3 'i64' elements,
 * not one"). Messages begin with the helper's name. Outputs are written on
 * RAY_OK only, as everywhere.
 */

/* Argument i as one int64_t (type ray_type_i64, 8 bytes) or one double
 * (ray_type_f64), copied to *out; or as a string (ray_type_str with a NUL in
 * its bytes, as ray_arg_str makes it), *out borrowed like a ray_ctx_arg view:
 * valid until the task function returns.
 * Errors: those of ray_ctx_arg (RAY_EINVAL: ctx or out NULL, i out of range;
 * RAY_ETYPE; RAY_ELOST, RAY_ESTOREFULL for a spilled argument); RAY_ETYPE
 * for more than one element, or a string without a NUL. */
RAY_API ray_status ray_ctx_arg_i64(ray_ctx *ctx, size_t i, int64_t *out);
RAY_API ray_status ray_ctx_arg_f64(ray_ctx *ctx, size_t i, double *out);
RAY_API ray_status ray_ctx_arg_str(ray_ctx *ctx, size_t i, const char **out);

/* Sets return i to one int64_t (ray_type_i64) or one double (ray_type_f64).
 * Errors as ray_ctx_return. */
RAY_API ray_status ray_ctx_return_i64(ray_ctx *ctx, size_t i, int64_t v);
RAY_API ray_status ray_ctx_return_f64(ray_ctx *ctx, size_t i, double v);

/* A new object holding v (ray_type_i64 or ray_type_f64, 8 bytes); *out is a
 * new ref to release. Errors as ray_put. */
RAY_API ray_status ray_put_i64(int64_t v, ray_ref **out);
RAY_API ray_status ray_put_f64(double v, ray_ref **out);

/* The value of a one-element i64 (f64) object, copied to *out: no view to
 * release. Waits as ray_get does. Errors: those of ray_get (RAY_EINVAL for
 * a NULL or released ref or timeout_ms < -1, RAY_ETIMEOUT, RAY_ETYPE, the
 * object's own error, RAY_ELOST, RAY_ESTOREFULL, RAY_ENOMEM,
 * RAY_ESHUTDOWN); RAY_EINVAL for out NULL; RAY_ETYPE for more than one
 * element. */
RAY_API ray_status ray_get_i64(ray_ref *ref, int64_t timeout_ms, int64_t *out);
RAY_API ray_status ray_get_f64(ray_ref *ref, int64_t timeout_ms, double *out);

/*
 * Ray's ray.get(list): views of the objects of refs[0 .. n-1] into
 * out[0 .. n-1], each type-checked against expect (NULL: any type). A ref
 * may appear more than once (each gets its own view).
 * timeout_ms bounds the whole call, not each object: -1 waits forever, 0
 * takes only what is ready now, > 0 fails RAY_ETIMEOUT unless every object
 * is ready within that many ms. The objects are got in index order, so a
 * failure of refs[j] is reported once refs[0 .. j-1] are ready.
 * All or nothing: on RAY_OK each out[i] is a view to release with
 * ray_view_release. On any failure no view is held (those already taken
 * are released), out is untouched, and the status and message are those
 * of the first object that failed, named by its index:
 *   "ray_get_many: refs[2]: task 'parse' failed: invalid input -5"
 * n == 0 returns RAY_OK at once (refs and out may then be NULL).
 * Errors: RAY_EINVAL (refs or out NULL with n > 0, timeout_ms < -1, a NULL
 * or released ref); RAY_ETIMEOUT (the message names the first object not
 * ready); RAY_ENOMEM (no memory for scratch views, over 16 refs); every
 * error of ray_get, for the object that has it; RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_get_many(ray_ref *const refs[], size_t n, const ray_type *expect,
                                int64_t timeout_ms, ray_view out[]);
/* ray_get_many of one-element i64 objects, their values copied to
 * out[0 .. n-1] (written only on RAY_OK): no view to release. Errors as
 * ray_get_many, and RAY_ETYPE for an object of more than one element
 * (named by its index). */
RAY_API ray_status ray_get_many_i64(ray_ref *const refs[], size_t n, int64_t timeout_ms,
                                    int64_t out[]);

/* A string argument: strlen(s) + 1 bytes (the NUL included) of type
 * ray_type_str, copied by the submit; read it with ray_ctx_arg_str. s NULL
 * makes the submit fail RAY_EINVAL. */
RAY_API ray_arg ray_arg_str(const char *s);

/* ------------------------------------------------------------------------ */
/* One-line submits and calls (C11 _Generic; C only, not C++)               */
/* ------------------------------------------------------------------------ */

/*
 *   ray_ref *r, *s;
 *   RAY_SUBMIT(&r, square, x);              square(x), named "square"
 *   RAY_SUBMIT(&s, add, r, 1.5);            r passed by reference: add waits for it
 *   RAY_CALL(&r, counter, ADD, s);          method ADD (an index) of an actor
 *   RAY_SEND(counter, ADD, 5);              the same without a result
 *   RAY_ACTOR_CREATE(&counter, &Counter, 100);
 *
 * Each expands to the plain call (ray_submit, ray_actor_call, ray_actor_send,
 * ray_actor_create) and evaluates to its ray_status, with that call's errors
 * and ownership rules: on RAY_OK *ret is a new ref (or actor handle) to
 * release. The arguments after the function (the actor and method, the
 * class) are counted, and each becomes a ray_arg by its static type:
 *   ray_ref *                         ray_arg_ref: by reference, waited for
 *   ray_actor *                       ray_arg_actor
 *   ray_arg                           as it is: ray_arg_value(&x, sizeof x,
 *                                     &my_type) passes any other type
 *   char *, const char *, "literal"   ray_arg_str
 *   _Bool, char, signed/unsigned char, short, unsigned short, int,
 *   unsigned int, long, long long     converted to int64_t: ray_type_i64
 *   float, double                     converted to double: ray_type_f64
 * Any other type is a compile error ("'_Generic' selector of type
 * 'long unsigned int' is not compatible with any association"): unsigned
 * long and unsigned long long (size_t, uint64_t), which may not fit in
 * int64_t; long double; other pointers; structs. Cast it, or pass a ray_arg.
 * From 0 to 16 arguments; 17 or more is a compile error naming
 * RAY_TOO_MANY_ARGUMENTS_MAX_16. Each argument is evaluated once; values
 * are copied by the call (from compound literals that live until the end
 * of the enclosing block).
 * A task is named after the function as written: RAY_SUBMIT(&r, square, x)
 * is 'square' in messages and the timeline. RAY_SUBMIT_OPTS takes a
 * ray_task_opts (NULL: defaults) for more returns (ret then points to an
 * array of num_returns refs), retries or another name; a NULL opts.name
 * still gives the function's name. RAY_ACTOR_CREATE_OPTS takes a
 * ray_actor_opts.
 */
#define RAY_SUBMIT(ret, ...) RAY_SUBMIT_OPTS(NULL, ret, __VA_ARGS__)
#define RAY_SUBMIT_OPTS(opts, ret, ...)                                                            \
  ray_submit_named_(RAY_HEAD_(__VA_ARGS__, ~), RAY_STR_HEAD_(__VA_ARGS__, ~),                      \
                    RAY_CAT_(RAY_ARGV1_, RAY_NARG_(__VA_ARGS__))(__VA_ARGS__),                     \
                    (size_t)(RAY_NARG_(__VA_ARGS__) - 1), (opts), (ret))
#define RAY_CALL(ret, ...)                                                                         \
  ray_actor_call(RAY_HEAD_(__VA_ARGS__, ~), (size_t)(RAY_SECOND_(__VA_ARGS__, ~, ~)),              \
                 RAY_CAT_(RAY_ARGV2_, RAY_NARG_(__VA_ARGS__))(__VA_ARGS__),                        \
                 (size_t)(RAY_NARG_(__VA_ARGS__) - 2), (ret))
#define RAY_SEND(actor, ...)                                                                       \
  ray_actor_send((actor), (size_t)(RAY_HEAD_(__VA_ARGS__, ~)),                                     \
                 RAY_CAT_(RAY_ARGV1_, RAY_NARG_(__VA_ARGS__))(__VA_ARGS__),                        \
                 (size_t)(RAY_NARG_(__VA_ARGS__) - 1))
#define RAY_ACTOR_CREATE(out, ...) RAY_ACTOR_CREATE_OPTS(NULL, out, __VA_ARGS__)
#define RAY_ACTOR_CREATE_OPTS(opts, out, ...)                                                      \
  ray_actor_create(RAY_HEAD_(__VA_ARGS__, ~),                                                      \
                   RAY_CAT_(RAY_ARGV1_, RAY_NARG_(__VA_ARGS__))(__VA_ARGS__),                      \
                   (size_t)(RAY_NARG_(__VA_ARGS__) - 1), (opts), (out))

/* One argument as a ray_arg, by its static type (the table above). */
#define RAY_ARG(x)                                                                                 \
  _Generic((x),                                                                                    \
      ray_ref *: ray_arg_ref_,                                                                     \
      ray_actor *: ray_arg_actor_,                                                                 \
      ray_arg: ray_arg_pass_,                                                                      \
      char *: ray_arg_str_,                                                                        \
      const char *: ray_arg_str_,                                                                  \
      _Bool: ray_arg_i64_,                                                                         \
      char: ray_arg_i64_,                                                                          \
      signed char: ray_arg_i64_,                                                                   \
      unsigned char: ray_arg_i64_,                                                                 \
      short: ray_arg_i64_,                                                                         \
      unsigned short: ray_arg_i64_,                                                                \
      int: ray_arg_i64_,                                                                           \
      unsigned int: ray_arg_i64_,                                                                  \
      long: ray_arg_i64_,                                                                          \
      long long: ray_arg_i64_,                                                                     \
      float: ray_arg_f64_,                                                                         \
      double: ray_arg_f64_)((x), &(ray_scalar_){0})

/* The machinery of the macros above; not for direct use. A value argument
 * is converted into a ray_scalar_ compound literal of the caller's block,
 * which the ray_arg points to. */
#if !defined(__cplusplus)
typedef union ray_scalar_ {
  int64_t i;
  double f;
} ray_scalar_;
static inline ray_arg ray_arg_i64_(int64_t v, ray_scalar_ *s) {
  s->i = v;
  return ray_arg_value(&s->i, sizeof s->i, &ray_type_i64);
}
static inline ray_arg ray_arg_f64_(double v, ray_scalar_ *s) {
  s->f = v;
  return ray_arg_value(&s->f, sizeof s->f, &ray_type_f64);
}
static inline ray_arg ray_arg_ref_(ray_ref *r, ray_scalar_ *s) {
  (void)s;
  return ray_arg_ref(r);
}
static inline ray_arg ray_arg_actor_(ray_actor *a, ray_scalar_ *s) {
  (void)s;
  return ray_arg_actor(a);
}
static inline ray_arg ray_arg_str_(const char *p, ray_scalar_ *s) {
  (void)s;
  return ray_arg_str(p);
}
static inline ray_arg ray_arg_pass_(ray_arg a, ray_scalar_ *s) {
  (void)s;
  return a;
}
static inline ray_status ray_submit_named_(ray_task_fn fn, const char *name, const ray_arg *args,
                                           size_t nargs, const ray_task_opts *opts, ray_ref **ret) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  if (opts) o = *opts;
  if (!o.name) o.name = name;
  return ray_submit(fn, args, nargs, &o, ret);
}
#endif

#define RAY_CAT_(a, b) RAY_CAT2_(a, b)
#define RAY_CAT2_(a, b) a##b
#define RAY_HEAD_(h, ...) h
#define RAY_STR_HEAD_(h, ...) #h
#define RAY_SECOND_(a, b, ...) b
/* The number of its arguments, 1 .. 24. */
#define RAY_NARG_(...)                                                                             \
  RAY_NARG_N_(__VA_ARGS__, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, \
              5, 4, 3, 2, 1, 0)
#define RAY_NARG_N_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17,    \
                    _18, _19, _20, _21, _22, _23, _24, N, ...)                                     \
  N
/* RAY_ARGV1_<k>(h, a1 .. a<k-1>): the array of the k-1 arguments after the
 * head h (NULL for none); RAY_ARGV2_<k> skips two heads. */
#define RAY_ARGV1_1(h) NULL
#define RAY_ARGV1_2(h, a1) ((const ray_arg[]){RAY_ARG(a1)})
#define RAY_ARGV1_3(h, a1, a2) ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2)})
#define RAY_ARGV1_4(h, a1, a2, a3) ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3)})
#define RAY_ARGV1_5(h, a1, a2, a3, a4)                                                             \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4)})
#define RAY_ARGV1_6(h, a1, a2, a3, a4, a5)                                                         \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5)})
#define RAY_ARGV1_7(h, a1, a2, a3, a4, a5, a6)                                                     \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6)})
#define RAY_ARGV1_8(h, a1, a2, a3, a4, a5, a6, a7)                                                 \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7)})
#define RAY_ARGV1_9(h, a1, a2, a3, a4, a5, a6, a7, a8)                                             \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8)})
#define RAY_ARGV1_10(h, a1, a2, a3, a4, a5, a6, a7, a8, a9)                                        \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9)})
#define RAY_ARGV1_11(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10)                                   \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10)})
#define RAY_ARGV1_12(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11)                              \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10), RAY_ARG(a11)})
#define RAY_ARGV1_13(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12)                         \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10), RAY_ARG(a11),            \
                     RAY_ARG(a12)})
#define RAY_ARGV1_14(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13)                    \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10), RAY_ARG(a11),            \
                     RAY_ARG(a12), RAY_ARG(a13)})
#define RAY_ARGV1_15(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14)               \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10), RAY_ARG(a11),            \
                     RAY_ARG(a12), RAY_ARG(a13), RAY_ARG(a14)})
#define RAY_ARGV1_16(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15)          \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10), RAY_ARG(a11),            \
                     RAY_ARG(a12), RAY_ARG(a13), RAY_ARG(a14), RAY_ARG(a15)})
#define RAY_ARGV1_17(h, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16)     \
  ((const ray_arg[]){RAY_ARG(a1), RAY_ARG(a2), RAY_ARG(a3), RAY_ARG(a4), RAY_ARG(a5), RAY_ARG(a6), \
                     RAY_ARG(a7), RAY_ARG(a8), RAY_ARG(a9), RAY_ARG(a10), RAY_ARG(a11),            \
                     RAY_ARG(a12), RAY_ARG(a13), RAY_ARG(a14), RAY_ARG(a15), RAY_ARG(a16)})
#define RAY_ARGV1_18(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV1_19(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV1_20(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV1_21(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV1_22(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV1_23(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV1_24(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV2_2(h, ...) RAY_ARGV1_1(__VA_ARGS__)
#define RAY_ARGV2_3(h, ...) RAY_ARGV1_2(__VA_ARGS__)
#define RAY_ARGV2_4(h, ...) RAY_ARGV1_3(__VA_ARGS__)
#define RAY_ARGV2_5(h, ...) RAY_ARGV1_4(__VA_ARGS__)
#define RAY_ARGV2_6(h, ...) RAY_ARGV1_5(__VA_ARGS__)
#define RAY_ARGV2_7(h, ...) RAY_ARGV1_6(__VA_ARGS__)
#define RAY_ARGV2_8(h, ...) RAY_ARGV1_7(__VA_ARGS__)
#define RAY_ARGV2_9(h, ...) RAY_ARGV1_8(__VA_ARGS__)
#define RAY_ARGV2_10(h, ...) RAY_ARGV1_9(__VA_ARGS__)
#define RAY_ARGV2_11(h, ...) RAY_ARGV1_10(__VA_ARGS__)
#define RAY_ARGV2_12(h, ...) RAY_ARGV1_11(__VA_ARGS__)
#define RAY_ARGV2_13(h, ...) RAY_ARGV1_12(__VA_ARGS__)
#define RAY_ARGV2_14(h, ...) RAY_ARGV1_13(__VA_ARGS__)
#define RAY_ARGV2_15(h, ...) RAY_ARGV1_14(__VA_ARGS__)
#define RAY_ARGV2_16(h, ...) RAY_ARGV1_15(__VA_ARGS__)
#define RAY_ARGV2_17(h, ...) RAY_ARGV1_16(__VA_ARGS__)
#define RAY_ARGV2_18(h, ...) RAY_ARGV1_17(__VA_ARGS__)
#define RAY_ARGV2_19(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV2_20(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV2_21(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV2_22(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV2_23(...) RAY_TOO_MANY_ARGUMENTS_MAX_16
#define RAY_ARGV2_24(...) RAY_TOO_MANY_ARGUMENTS_MAX_16

/* ------------------------------------------------------------------------ */
/* Observability                                                            */
/* ------------------------------------------------------------------------ */

typedef struct ray_stats {
  size_t memory_limit;    /* object_store_memory in force */
  size_t bytes_in_memory; /* payload bytes of live objects held in memory */
  size_t bytes_pinned;    /* payload bytes of pinned objects */
  size_t bytes_spilled;   /* payload bytes in spill files now */
  uint64_t objects;       /* live objects */
  /* puts, gets: successful calls since init; spills: moves of objects out
   * of memory (a restored object that leaves again is not rewritten, its
   * disk copy is kept until it is freed); restores: objects read back. */
  uint64_t puts, gets, spills, restores;
  /* Every submitted task ends once, as finished (returned RAY_OK), failed
   * (returned an error after its retries, or an argument failed) or
   * cancelled; tasks_retried counts re-runs. */
  uint64_t tasks_submitted, tasks_finished, tasks_failed, tasks_cancelled, tasks_retried;
  uint64_t actors_alive, actor_restarts, actor_calls;
  uint64_t actor_sends_failed; /* ray_actor_send calls whose method failed */
  /* Spilling: payload bytes written to spill files and read back from them
   * since init (spills and restores above count the objects). */
  uint64_t bytes_spilled_total, bytes_restored_total;
  /* Room for counters to come; ray_stats_get zeroes it. */
  uint64_t reserved_[16];
} ray_stats;

/* A snapshot of the runtime's counters. Counters are exact when no call is
 * in flight. Task counters are updated before the task's results become
 * visible; `objects` and the byte counts settle a moment after, because a
 * task drops its own reference on each return just after sealing it.
 * Errors: RAY_EINVAL (out NULL); RAY_ESHUTDOWN. */
RAY_API ray_status ray_stats_get(ray_stats *out);
/* The stats of one rank of the runtime (cluster mode), read from any rank:
 * rank ray_node_rank() is ray_stats_get; another rank is asked over the
 * wire and answers from its own counters (the call waits for the answer).
 * Errors: RAY_EINVAL (out NULL, rank not in 0..ray_node_count()-1),
 * RAY_ESHUTDOWN. */
RAY_API ray_status ray_stats_get_node(int rank, ray_stats *out);

/* ------------------------------------------------------------------------ */
/* Timeline                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * The timeline records every run of a task, actor method, on_start and
 * on_stop, and every spill and restore, on the lane of the thread that ran
 * it: one lane per worker, one per thread of the program outside the pool,
 * and "rayc-io" for the store's I/O thread. It is on when ray_init finds
 * ray_config.timeline_path (or RAY_TIMELINE) set, or RAY_TIMELINE_SUMMARY=1
 * in the environment; off, it costs one branch per run.
 *
 * At the end: ray_shutdown writes the file named by timeline_path, and with
 * RAY_TIMELINE_SUMMARY=1 prints ray_timeline_summary's table to stderr. A
 * program that exits (returns from main, calls exit) while the runtime runs
 * gets both all the same, from an atexit handler, with one line on stderr
 * saying that ray_shutdown was not called; _exit, a crash or a fatal signal
 * write nothing.
 */

/*
 * Writes what the timeline recorded so far to path (created or truncated),
 * while the runtime runs; tasks keep running meanwhile. A path ending in
 * ".html" or ".htm" (any case) gives a self-contained page to open in a
 * browser (no network, nothing loaded from elsewhere): a lane per thread,
 * slices coloured by name, failed and cancelled ones marked, details on
 * hover, zoom with the wheel and pan by dragging, and a summary table. Any
 * other path gives a Chrome trace (JSON) for chrome://tracing or Perfetto,
 * thread ids 1, 2, ... in lane order. Each thread's slices are those it had
 * finished when the call began, complete (a snapshot, not a stop of the
 * world). path is read during the call only.
 * Must not race ray_shutdown (as gets and puts, see there); may be called
 * from tasks and actors.
 * Errors: RAY_EINVAL (path NULL or empty; the timeline is off: the message
 * says how to turn it on); RAY_EIO (the file cannot be written: the message
 * names the path and the reason); RAY_ENOMEM; RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_timeline_write(const char *path);

/*
 * Prints a table of what the timeline recorded so far to out: one row per
 * task or method name (per kind for spills and restores) with its count of
 * runs, total, mean, p50 and p99 duration (nearest rank), failed runs
 * (returned an error, retries each counted) and cancelled ones (ray_cancel
 * reached them while they ran), the largest total first. Tasks cancelled
 * before they ran never ran and are not counted. out stays open; its error
 * flag is cleared first. Same concurrency rules as ray_timeline_write.
 * Errors: RAY_EINVAL (out NULL; the timeline is off); RAY_EIO (writing to
 * out failed); RAY_ENOMEM; RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_timeline_summary(FILE *out);

/* ------------------------------------------------------------------------ */
/* Memory report: what is alive, who made it, who holds it                  */
/* ------------------------------------------------------------------------ */

/* ray_memory_report flags. */
#define RAY_MEMORY_ALL 1u /* after the groups, one line per live object */

/*
 * Writes a report of the live objects to out (Ray's `ray memory`), grouped
 * by creator, the groups with the most bytes first:
 *   - a put (ray_put, ray_put_owned, ray_create, ray_put_refs, ray_put_i64,
 *     ray_put_f64) is charged to the line that called it: "ray_put at load_rows (main.c:42)" where
 * the program has debug information and addr2line(1) is installed, else "ray_put at load_rows+0x1c
 * (main)". A call in tail position
 *     (`return ray_put(...)`, compiled as a jump) is charged to its
 *     caller's line.
 *   - a task's or method's results to its name: "returned by 'square'",
 *     "returned by 'Counter.add'" (LABEL.method, as in the timeline).
 * Per group: objects, bytes (payload, in memory or spilled; 0 for results
 * not yet made, failed ones, and a ray_ctx_return_ref result, whose bytes
 * are its target's), refs (held by the program, and by rayc for it: a
 * task's arguments, a ray_put_refs object's elements, a running task's
 * own ref on its results), views, pins, spilled (objects and bytes on disk,
 * not in memory); then a total line. With RAY_MEMORY_ALL, one line per
 * object follows: ID, state (CREATING, SEALED, PENDING, FAILED), bytes,
 * refs, views, pins, where (memory, disk, alias, -), type, creator.
 * The objects are looked at one by one while other threads go on, so the
 * report is of no single instant; each object is counted whole. Safe to
 * call from any thread while others put, get and free (not from a signal
 * handler: it allocates, and may start addr2line the first time a put site
 * is named). Creators past 16384 distinct ones per process (task names
 * made per task) share one group, "(other creators ...)".
 * Without changing a program: RAY_MEMORY_REPORT=1 (or =all, for
 * RAY_MEMORY_ALL) at ray_init prints it on stderr at ray_shutdown, before
 * anything is freed; RAY_MEMORY_SIGNAL=USR2 (a name: USR1, USR2, HUP, INT,
 * QUIT, TERM, WINCH, with or without SIG, or a number) makes that signal
 * print it on stderr on demand while the runtime runs. rayc then owns the
 * signal (its handler only wakes a thread of rayc's, which writes the
 * report); ray_shutdown gives the previous handler back. Off by default. A
 * malformed value of either makes ray_init fail with RAY_EINVAL.
 * out stays the caller's: it is written and flushed, not closed; its error
 * flag is cleared first.
 * Errors: RAY_EINVAL (out NULL, unknown flags); RAY_EIO (writing or
 * flushing out failed: the message says why; what was written stays);
 * RAY_ENOMEM; RAY_ESHUTDOWN.
 */
RAY_API ray_status ray_memory_report(FILE *out, unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* RAY_H */
