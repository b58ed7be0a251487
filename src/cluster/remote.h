/*
 * remote.h - tasks and objects across ranks (DESIGN §6).
 *
 * Tasks. A task placed on another rank is built here as usual (its
 * returns are PENDING entries of this rank, which owns them) and waits
 * here for its ref arguments; once they are ready it is shipped (RM_TASK)
 * and runs there as a task of that rank, whose results come back in one
 * RM_DONE. ray_cancel of a shipped task is forwarded (RM_CANCEL).
 *
 * Objects. A ref crosses ranks as a description of its object: small
 * ones (<= RT_REMOTE_INLINE bytes) carry their bytes, which the receiver
 * copies into its store; larger ones name the rank whose memory has the
 * bytes (the holder) and the rank that sent the ref (the lender), which
 * keeps the object alive for the receiver: it counts the ref in its
 * export table until the receiver's copy is freed and says so (RM_DROP).
 * The receiver's entry is sealed at once with its bytes still at the
 * holder (entry.h, RT_LF_REMOTE); the first view pulls them (RM_PULL and
 * a bulk transfer). Copies of one object on one rank are one entry, so
 * concurrent readers pull once.
 *
 * Message counts: a shipped task costs one RM_TASK and one RM_DONE (both
 * batched with whatever else goes the same way); an object larger than
 * the inline limit costs one RM_PULL, its bytes, and one RM_DROP per rank
 * that read it.
 */
#ifndef RT_REMOTE_H
#define RT_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ray.h"
#include "store/store.h"
#include "task/task.h"

#define RT_REMOTE_INLINE ((size_t)32 << 10)

/* Record kinds of this file (cluster.c owns those below 16). */
enum {
  RM_TASK = 16,
  RM_DONE,
  RM_CANCEL,
  RM_PULL,
  RM_DROP,
  RM_STATS_REQ,
  RM_STATS_REP,
  RM_READY, /* a pending object lent earlier (inside a refs object) has ended */
};

/* Binds the layer to the runtime's store and tasks (runtime.c, before the
 * runtime is published) and installs the task layer's remote ops when a
 * cluster runs. */
void rt_remote_bind(rt_store *st, rt_tasks *ts, int workers);
/* The comm thread runs from here on / stops: messages may flow. */
void rt_remote_start(void);
void rt_remote_stop(void);
/* A record of kind >= 16 from rank src (on the comm thread). */
void rt_remote_on_record(int src, const void *rec, size_t len);
/* Tasks this rank ran for others so far (for the drain rounds). */
uint64_t rt_remote_received(void);
/* Drops every export this rank still holds (its last shutdown step, after
 * every rank drained); returns how many objects were still lent. */
size_t rt_remote_release_exports(void);

/* The store's cluster hooks (rt_store_ops.pull, .remote_freed). */
ray_status rt_remote_pull(void *arg, const rt_remote_loc *loc, void *buf, size_t size);
void rt_remote_freed(void *arg, const rt_remote_loc *loc);

#endif
