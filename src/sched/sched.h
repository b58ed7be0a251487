/*
 * sched.h - the work-stealing scheduler that runs rayc's tasks and actors.
 *
 * A pool of worker threads, each owning a Chase-Lev deque (deque.h). Work
 * from threads outside the pool goes to a ring of the submitting thread's
 * own (ring.h; up to 64 outside threads), or to one shared injector queue
 * (injector.h) for the threads beyond. A worker takes work in this order:
 * its own deque (LIFO: the job it pushed last is the one whose data is still
 * in cache), the outside queues (rings, then the injector, FIFO; also polled
 * every 61st job so a recursive workload cannot starve outside submitters),
 * then steals (FIFO end) from random victims, spins briefly, and finally
 * parks on a futex. A parked pool costs no CPU: no
 * timed polling anywhere. A submission wakes at most one parked worker and
 * issues no syscall when none is parked or one is already searching; a
 * searching worker that takes a job wakes the next one while more are
 * queued, so no queued job waits while a worker sleeps.
 *
 * A job about to block (ray_get on a pending object) first runs jobs from its
 * own deque (rt_sched_help), which resolves nested waits of any depth and
 * width on its own stack; if it must still block, it brackets the wait with
 * rt_sched_block_begin/end and the pool wakes or starts a spare thread so
 * that nworkers threads keep running jobs. See sched.c for the algorithms.
 *
 * Lifetime: rt_sched_create .. rt_sched_destroy. destroy runs every job that
 * was submitted before it, and every job those jobs submit, then joins all
 * threads. After destroy has started only jobs of the pool may submit.
 */
#ifndef RT_SCHED_H
#define RT_SCHED_H

#include <stdbool.h>

typedef struct rt_job rt_job;

/*
 * A unit of work, embedded in the caller's record (task, actor activation).
 * The scheduler owns the job from rt_sched_submit until it calls run(job);
 * next_ is the scheduler's link and means nothing outside it. run() may free
 * the record that holds the job: the scheduler never touches a job after
 * calling run. A job must be submitted at most once at a time. The job
 * should start a 64-byte-aligned record whose next 64 bytes run() reads
 * soon: the scheduler prefetches them for jobs it moves in batches (a hint;
 * any readable record is fine).
 */
struct rt_job {
  rt_job *next_; /* intrusive link (the injector's); accessed with __atomic builtins */
  void (*run)(rt_job *job);
};

typedef struct rt_sched rt_sched;

/* The most spare threads block_begin may add on top of nworkers. */
#define RT_SCHED_MAX_SPARES 256

/*
 * Starts nworkers (>= 1) worker threads. Returns 0 and sets *out, or
 * EINVAL (nworkers < 1 or out NULL), ENOMEM, or pthread_create's error; on
 * error *out is untouched and nothing is left running.
 */
int rt_sched_create(int nworkers, rt_sched **out);

/*
 * Runs every job submitted before and during the call until none is left
 * (jobs may submit jobs, and may block and resume), then stops and joins all
 * threads and frees s. Must not be called from a worker of s. Outside threads
 * must not submit to s once destroy has begun. NULL is a no-op.
 */
void rt_sched_destroy(rt_sched *s);

/*
 * Queues job. From a worker thread of s: pushed on that worker's own deque
 * (LIFO, for locality; thieves take the oldest). From any other thread: that
 * thread's own ring (ring.h), or the global injector when none is left for
 * it (both FIFO, safe for many concurrent submitters). Wakes at most
 * one parked worker, and only if one is parked and none is searching for
 * work. Never fails.
 */
void rt_sched_submit(rt_sched *s, rt_job *job);

/*
 * Bracket a blocking wait made inside a job. Between begin and end the pool
 * keeps nworkers threads running jobs: begin wakes a parked spare thread or
 * starts a new one (at most RT_SCHED_MAX_SPARES in the pool's lifetime);
 * end lets the surplus thread retire as a parked spare as soon as it has no
 * job of its own. No-op when not called from a worker of s. Calls must pair;
 * nested pairs count once.
 */
void rt_sched_block_begin(rt_sched *s);
void rt_sched_block_end(rt_sched *s);

/*
 * From a worker of s that is about to block: runs one job from the caller's
 * own deque and returns true, or returns false when there is none (or the
 * caller is not a worker of s). The newest jobs of a worker's deque are
 * almost always the children its running job is about to wait for, so a
 * waiter that helps first resolves nested waits of any depth on its own
 * stack, with no extra thread (Cilk and TBB wait the same way); spare
 * threads (block_begin) remain the fallback for waits that helping cannot
 * resolve. Helping nests at most RT_SCHED_HELP_DEPTH (128) jobs deep on one
 * thread, which bounds its stack use.
 */
bool rt_sched_help(rt_sched *s);

/* Brackets a job that a waiting thread (any thread) runs on its own stack
 * by other means than rt_sched_help: false when the thread is already
 * RT_SCHED_HELP_DEPTH jobs deep (then it must wait instead). */
bool rt_sched_nest_enter(void);

void rt_sched_nest_exit(void);

/*
 * Index of the calling worker thread in s, in 0 .. rt_sched_max_workers(s)-1
 * (the first nworkers are the original workers, higher ones are spares), or
 * -1 when the caller is not a worker of s.
 */
int rt_sched_worker_index(const rt_sched *s);
/* nworkers + RT_SCHED_MAX_SPARES: a bound for arrays indexed by worker index. */
int rt_sched_max_workers(const rt_sched *s);

#endif
