/*
 * transport.h - the one thread per rank that owns MPI.
 *
 * Open MPI 4.1 deadlocks when several threads are inside MPI at once
 * (ompi issue 11428), so exactly one thread, the comm thread, calls MPI
 * once the transport runs. Every other thread hands it work through
 * queues:
 *
 *   - control messages (rt_tp_send): small records appended to a
 *     per-destination batch; the comm thread sends each batch as one
 *     MPI message (at most RT_TP_BATCH_MAX bytes) on the control tag, and
 *     hands each record it receives to the handler, on the comm thread;
 *   - bulk transfers (rt_tp_bulk): a buffer sent to or received from one
 *     rank on a tag of its own, in chunks of at most RT_TP_CHUNK bytes
 *     (Open MPI 4.1 has no large-count calls), RT_TP_INFLIGHT chunks in
 *     flight, with a callback when the last chunk is done.
 *
 * Idle, the comm thread must not spin: two or three ranks may share two
 * cores. After its last activity it yields for RT_TP_YIELD_NS, then sleeps
 * on a futex doorbell with a timeout that doubles from 1 us up to
 * RT_TP_SLEEP_MAX_NS; a local sender rings the doorbell (and wakes the
 * thread only if it sleeps), a remote one is noticed at the next timeout.
 * It sleeps only while no send or receive is in flight, because over TCP
 * a transfer progresses only while some thread is inside MPI.
 */
#ifndef RT_TRANSPORT_H
#define RT_TRANSPORT_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ray.h"

#define RT_TP_TAG_CTRL 1
#define RT_TP_TAG_BULK0 2 /* bulk tags: RT_TP_TAG_BULK0 .. tag_ub */
#define RT_TP_BATCH_MAX (64u << 10)
#define RT_TP_RECORD_MAX (RT_TP_BATCH_MAX - 4) /* the largest record rt_tp_send takes */
#define RT_TP_CHUNK (64u << 20)
#define RT_TP_INFLIGHT 4
#define RT_TP_YIELD_NS 50000ull
#define RT_TP_SLEEP_MAX_NS 1000000ull

/* Called on the comm thread for each control record from rank src; the
 * bytes are valid only during the call. It may call rt_tp_send and
 * rt_tp_bulk (they only queue). */
typedef void (*rt_tp_handler)(void *arg, int src, const void *rec, size_t len);
/* A bulk transfer ended (on the comm thread); ok is false if MPI failed. */
typedef void (*rt_tp_done)(void *arg, bool ok);

typedef struct rt_tp_out {
  pthread_mutex_t lock;
  unsigned char *buf; /* records: u32 length, then its bytes; under lock */
  size_t len, cap;
} rt_tp_out;

typedef struct rt_tp_bulk_req rt_tp_bulk_req;

typedef struct rt_transport {
  MPI_Comm comm;
  int rank, size;
  int tag_ub;
  rt_tp_handler handler;
  void *arg;
  rt_tp_out *out; /* one per rank */

  /* Bumped by every local enqueue (seq_cst, with `sleeping`: a Dekker
   * pair, see rt_tp_send); the futex word the comm thread sleeps on. */
  _Atomic uint32_t doorbell;
  _Atomic uint32_t sleeping;
  _Atomic bool stop;
  pthread_t thread;
  bool started;

  /* Bulk requests queued by other threads; under bulk_lock. */
  pthread_mutex_t bulk_lock;
  rt_tp_bulk_req *bulk_head, *bulk_tail;
  _Atomic uint32_t next_tag;

  /* Comm thread only. */
  struct rt_tp_flight *flights; /* MPI requests in flight */
  size_t nflights, flights_cap;
  rt_tp_bulk_req *active; /* bulk transfers being chunked */

  /* Counters for tests and stats; relaxed, they order nothing. */
  _Atomic uint64_t batches_sent, records_sent, records_received, sleeps;
} rt_transport;

/* Starts the comm thread on comm (already set up by the caller, with
 * MPI_THREAD_SERIALIZED or better). The caller makes no MPI call until
 * rt_tp_stop. RAY_ENOMEM or RAY_EIO (thread start) recorded for ray_init. */
ray_status rt_tp_start(rt_transport *tp, MPI_Comm comm, rt_tp_handler handler, void *arg);

/* Queues one control record (len bytes, copied) for rank dest, which may
 * be this rank (delivered through MPI too, in order). Any thread. Records
 * to one destination are delivered in the order they were queued.
 * RAY_ENOMEM if the batch cannot grow; RAY_EINVAL for a bad rank or a
 * record over RT_TP_BATCH_MAX - 4 bytes. */
ray_status rt_tp_send(rt_transport *tp, int dest, const void *rec, size_t len);

/* A new tag for one bulk transfer; both sides must use the same one (the
 * receiver picks it and names it in its request). */
int rt_tp_new_tag(rt_transport *tp);

/* Queues a bulk transfer of size bytes: send buf to peer (send true) or
 * receive into buf from peer, on tag, in chunks. done(arg, ok) runs on the
 * comm thread when the last chunk is done; buf must stay valid until then.
 * RAY_ENOMEM if the request cannot be queued. */
ray_status rt_tp_bulk(rt_transport *tp, bool send, int peer, int tag, void *buf, size_t size,
                      rt_tp_done done, void *arg);

/* A thread waiting for one bulk transfer to end: pass rt_tp_wake as the
 * transfer's done callback with the wait as its argument, then call
 * rt_tp_await. Initialise with RT_TP_WAIT_INIT. */
typedef struct rt_tp_wait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done, ok; /* under lock */
} rt_tp_wait;
#define RT_TP_WAIT_INIT                                                                            \
  { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false }
void rt_tp_wake(void *wait, bool ok);
/* Blocks until the transfer ended; whether it went through. */
bool rt_tp_await(rt_tp_wait *w);

/* Flushes what is queued, waits until every send is done, and stops the
 * comm thread. Receives still pending are cancelled. After it the caller
 * may call MPI again. */
void rt_tp_stop(rt_transport *tp);

#endif
