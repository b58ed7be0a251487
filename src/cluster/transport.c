/*
 * transport.c - the comm thread: batches control records per destination,
 * chunks bulk transfers, and sleeps when idle (transport.h).
 */
#define _GNU_SOURCE
#ifdef RAY_HAVE_MPI /* the whole file: built only with MPI */
#include "cluster/transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/prim.h"

struct rt_tp_bulk_req {
  rt_tp_bulk_req *next;
  bool send, failed;
  int peer, tag;
  unsigned char *buf;
  size_t size, posted, done;
  int inflight;
  rt_tp_done cb;
  void *arg;
};

/* What an MPI request in flight is for: a control batch (buf, freed when
 * sent) or a chunk of a bulk transfer. */
typedef struct rt_tp_flight {
  void *batch;
  rt_tp_bulk_req *bulk;
  size_t bytes;
  bool recv;
} rt_tp_flight;

/* Requests in flight: MPI wants them in one array for Testsome, so the
 * metadata lives in a parallel array. Comm thread only. */
typedef struct flights {
  MPI_Request *reqs;
  rt_tp_flight *meta;
  int *idx;
  MPI_Status *sts;
  size_t n, cap;
} flights;

static flights *fl_of(rt_transport *tp) {
  return (flights *)tp->flights;
}

static bool fl_add(rt_transport *tp, MPI_Request req, rt_tp_flight m) {
  flights *f = fl_of(tp);
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 64;
    MPI_Request *r = rt_realloc(f->reqs, cap * sizeof *r);
    if (r) f->reqs = r;
    rt_tp_flight *mm = rt_realloc(f->meta, cap * sizeof *mm);
    if (mm) f->meta = mm;
    int *ix = rt_realloc(f->idx, cap * sizeof *ix);
    if (ix) f->idx = ix;
    MPI_Status *st = rt_realloc(f->sts, cap * sizeof *st);
    if (st) f->sts = st;
    if (!r || !mm || !ix || !st) return false;
    f->cap = cap;
  }
  f->reqs[f->n] = req;
  f->meta[f->n] = m;
  f->n++;
  return true;
}

/* ------------------------------------------------------------------------ */
/* Any thread                                                               */
/* ------------------------------------------------------------------------ */

static void ring(rt_transport *tp) {
  /* seq_cst add, then seq_cst load of sleeping; the comm thread stores
   * sleeping (seq_cst) and then waits on the doorbell with the value it
   * read before it looked at the queues: either it sees our bump (the wait
   * returns at once) or we see it asleep and wake it. */
  atomic_fetch_add(&tp->doorbell, 1);
  if (atomic_load(&tp->sleeping)) rt_prim_futex_wake(&tp->doorbell, 1);
}

ray_status rt_tp_send(rt_transport *tp, int dest, const void *rec, size_t len) {
  if (dest < 0 || dest >= tp->size)
    return rt_fail(RAY_EINVAL, "transport: rank %d is not in 0..%d", dest, tp->size - 1);
  if (len > RT_TP_BATCH_MAX - 4)
    return rt_fail(RAY_EINVAL, "transport: a %zu-byte record is over the batch size", len);
  rt_tp_out *o = &tp->out[dest];
  pthread_mutex_lock(&o->lock);
  if (o->len + 4 + len > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + 4 + len) cap *= 2;
    unsigned char *b = rt_realloc(o->buf, cap);
    if (!b) {
      pthread_mutex_unlock(&o->lock);
      return rt_fail(RAY_ENOMEM, "transport: out of memory queueing a message for rank %d", dest);
    }
    o->buf = b;
    o->cap = cap;
  }
  uint32_t l = (uint32_t)len;
  memcpy(o->buf + o->len, &l, 4);
  memcpy(o->buf + o->len + 4, rec, len);
  o->len += 4 + len;
  pthread_mutex_unlock(&o->lock);
  ring(tp);
  return RAY_OK;
}

int rt_tp_new_tag(rt_transport *tp) {
  /* relaxed: only uniqueness matters; tags wrap, and a transfer is long
   * done before its tag comes round again (tag_ub is at least 32767). */
  uint32_t n = atomic_fetch_add_explicit(&tp->next_tag, 1, memory_order_relaxed);
  return RT_TP_TAG_BULK0 + (int)(n % (uint32_t)(tp->tag_ub - RT_TP_TAG_BULK0));
}

void rt_tp_wake(void *wait, bool ok) {
  rt_tp_wait *w = wait;
  pthread_mutex_lock(&w->lock);
  w->done = true;
  w->ok = ok;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

bool rt_tp_await(rt_tp_wait *w) {
  pthread_mutex_lock(&w->lock);
  while (!w->done) pthread_cond_wait(&w->cond, &w->lock);
  bool ok = w->ok;
  pthread_mutex_unlock(&w->lock);
  return ok;
}

ray_status rt_tp_bulk(rt_transport *tp, bool send, int peer, int tag, void *buf, size_t size,
                      rt_tp_done done, void *arg) {
  rt_tp_bulk_req *r = rt_calloc(1, sizeof *r);
  if (!r) return rt_fail(RAY_ENOMEM, "transport: out of memory queueing a transfer");
  *r = (rt_tp_bulk_req){
      .send = send, .peer = peer, .tag = tag, .buf = buf, .size = size, .cb = done, .arg = arg};
  pthread_mutex_lock(&tp->bulk_lock);
  if (tp->bulk_tail)
    tp->bulk_tail->next = r;
  else
    tp->bulk_head = r;
  tp->bulk_tail = r;
  pthread_mutex_unlock(&tp->bulk_lock);
  ring(tp);
  return RAY_OK;
}

/* ------------------------------------------------------------------------ */
/* The comm thread                                                          */
/* ------------------------------------------------------------------------ */

/* The requests posted here are kept in the flights and completed by
 * progress() (MPI_Testsome), which clang's MPI checker cannot follow. */
// NOLINTBEGIN(clang-analyzer-optin.mpi.MPI-Checker)
static bool flush_out(rt_transport *tp) {
  bool did = false;
  for (int d = 0; d < tp->size; d++) {
    rt_tp_out *o = &tp->out[d];
    pthread_mutex_lock(&o->lock);
    unsigned char *buf = o->buf;
    size_t len = o->len;
    if (len) {
      o->buf = NULL;
      o->len = o->cap = 0;
    }
    pthread_mutex_unlock(&o->lock);
    if (!len) continue;
    /* A batch holds whole records; one over the limit goes alone. */
    MPI_Request req;
    /* Waited for by progress() (Testsome over the flights), or just below. */
    MPI_Isend(buf, (int)len, MPI_BYTE, d, RT_TP_TAG_CTRL, tp->comm, &req);
    if (!fl_add(tp, req, (rt_tp_flight){.batch = buf})) {
      MPI_Wait(&req, MPI_STATUS_IGNORE); /* no room to track it: finish it now */
      free(buf);
    }
    atomic_fetch_add_explicit(&tp->batches_sent, 1, memory_order_relaxed); /* counter */
    did = true;
  }
  return did;
}

// NOLINTEND(clang-analyzer-optin.mpi.MPI-Checker)

static void dispatch(rt_transport *tp, int src, const unsigned char *b, size_t n) {
  size_t at = 0, count = 0;
  while (at + 4 <= n) {
    uint32_t l;
    memcpy(&l, b + at, 4);
    if (at + 4 + l > n) break; /* cannot happen: batches hold whole records */
    tp->handler(tp->arg, src, b + at + 4, l);
    at += 4 + l;
    count++;
  }
  atomic_fetch_add_explicit(&tp->records_received, count, memory_order_relaxed); /* counter */
}

static bool poll_in(rt_transport *tp) {
  bool did = false;
  for (int i = 0; i < 64; i++) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    MPI_Improbe(MPI_ANY_SOURCE, RT_TP_TAG_CTRL, tp->comm, &flag, &msg, &st);
    if (!flag) break;
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    unsigned char *buf = rt_malloc(n ? (size_t)n : 1);
    if (!buf) { /* receive it into a scratch byte and drop it: fail-stop */
      rt_warn("rayc: out of memory receiving %d bytes from rank %d", n, st.MPI_SOURCE);
      abort();
    }
    MPI_Mrecv(buf, n, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    dispatch(tp, st.MPI_SOURCE, buf, (size_t)n);
    free(buf);
    did = true;
  }
  return did;
}

static void finish_bulk(rt_transport *tp);

// NOLINTBEGIN(clang-analyzer-optin.mpi.MPI-Checker): as flush_out
static bool start_bulk(rt_transport *tp) {
  pthread_mutex_lock(&tp->bulk_lock);
  rt_tp_bulk_req *r = tp->bulk_head;
  tp->bulk_head = tp->bulk_tail = NULL;
  pthread_mutex_unlock(&tp->bulk_lock);
  bool did = r != NULL;
  while (r) {
    rt_tp_bulk_req *next = r->next;
    r->next = tp->active;
    tp->active = r;
    r = next;
  }
  /* Post chunks, up to RT_TP_INFLIGHT per transfer. */
  for (rt_tp_bulk_req *b = tp->active; b; b = b->next) {
    while (b->inflight < RT_TP_INFLIGHT && b->posted < b->size) {
      size_t c = b->size - b->posted;
      if (c > RT_TP_CHUNK) c = RT_TP_CHUNK;
      MPI_Request req; /* waited for by progress(), as the batches' */
      if (b->send)
        MPI_Isend(b->buf + b->posted, (int)c, MPI_BYTE, b->peer, b->tag, tp->comm, &req);
      else
        MPI_Irecv(b->buf + b->posted, (int)c, MPI_BYTE, b->peer, b->tag, tp->comm, &req);
      if (!fl_add(tp, req, (rt_tp_flight){.bulk = b, .bytes = c, .recv = !b->send})) {
        MPI_Wait(&req, MPI_STATUS_IGNORE);
        b->done += c;
        b->posted += c;
        continue;
      }
      b->posted += c;
      b->inflight++;
      did = true;
    }
  }
  finish_bulk(tp); /* an empty transfer has no chunk to wait for */
  return did;
}

// NOLINTEND(clang-analyzer-optin.mpi.MPI-Checker)

/* Ends the bulk transfers whose last chunk is done. */
static void finish_bulk(rt_transport *tp) {
  rt_tp_bulk_req **pp = &tp->active;
  while (*pp) {
    rt_tp_bulk_req *b = *pp;
    if (b->done == b->size && b->inflight == 0) {
      *pp = b->next;
      b->cb(b->arg, !b->failed);
      free(b);
    } else {
      pp = &b->next;
    }
  }
}

static bool progress(rt_transport *tp) {
  flights *f = fl_of(tp);
  if (f->n == 0) return false;
  int outcount = 0;
  MPI_Testsome((int)f->n, f->reqs, &outcount, f->idx, f->sts);
  if (outcount <= 0 || outcount == MPI_UNDEFINED) return false;
  for (int i = 0; i < outcount; i++) {
    rt_tp_flight *m = &f->meta[f->idx[i]];
    if (m->batch) {
      free(m->batch);
    } else if (m->bulk) {
      m->bulk->inflight--;
      m->bulk->done += m->bytes;
    }
  }
  size_t k = 0; /* compact: Testsome set the finished requests to NULL */
  for (size_t i = 0; i < f->n; i++)
    if (f->reqs[i] != MPI_REQUEST_NULL) {
      f->reqs[k] = f->reqs[i];
      f->meta[k] = f->meta[i];
      k++;
    }
  f->n = k;
  finish_bulk(tp);
  return true;
}

static void *comm_main(void *arg) {
  rt_transport *tp = arg;
  /* The default 50 us timer slack would turn a 1 us sleep into ~56 us. */
  (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  uint64_t last_activity = rt_prim_now_ns();
  uint64_t nap = 1000; /* ns */
  for (;;) {
    /* seq_cst: read before looking at the queues (see ring). */
    uint32_t seen = atomic_load(&tp->doorbell);
    /* acquire: pairs with rt_tp_stop's release store. Read before the
     * queues are looked at, so everything queued before the stop is
     * flushed in this pass or an earlier one. */
    bool stopping = atomic_load_explicit(&tp->stop, memory_order_acquire);
    bool did = flush_out(tp);
    did |= start_bulk(tp);
    did |= poll_in(tp);
    did |= progress(tp);
    if (did) {
      last_activity = rt_prim_now_ns();
      nap = 1000;
      continue;
    }
    bool busy = fl_of(tp)->n > 0 || tp->active;
    if (stopping && !busy) break;
    if (busy || rt_prim_now_ns() - last_activity < RT_TP_YIELD_NS) {
      rt_prim_yield(); /* a transfer only moves while we call MPI */
      continue;
    }
    /* Open MPI's Improbe may see a message one call late: look again
     * before sleeping, or each hop would cost a whole nap. */
    if (poll_in(tp)) {
      last_activity = rt_prim_now_ns();
      continue;
    }
    atomic_store(&tp->sleeping, 1);                                  /* seq_cst: see ring */
    atomic_fetch_add_explicit(&tp->sleeps, 1, memory_order_relaxed); /* counter */
    rt_prim_futex_wait(&tp->doorbell, seen, rt_prim_now_ns() + nap);
    atomic_store(&tp->sleeping, 0);
    nap = nap * 2 > RT_TP_SLEEP_MAX_NS ? RT_TP_SLEEP_MAX_NS : nap * 2;
  }
  return NULL;
}

ray_status rt_tp_start(rt_transport *tp, MPI_Comm comm, rt_tp_handler handler, void *arg) {
  memset(tp, 0, sizeof *tp);
  tp->comm = comm;
  MPI_Comm_rank(comm, &tp->rank);
  MPI_Comm_size(comm, &tp->size);
  int *ub = NULL, flag = 0;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &ub, &flag);
  tp->tag_ub = flag && ub && *ub > RT_TP_TAG_BULK0 + 1 ? *ub : 32767;
  tp->handler = handler;
  tp->arg = arg;
  tp->out = rt_calloc((size_t)tp->size, sizeof *tp->out);
  tp->flights = rt_calloc(1, sizeof(flights));
  if (!tp->out || !tp->flights) {
    free(tp->out);
    free(tp->flights);
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory setting up the transport");
  }
  for (int i = 0; i < tp->size; i++) pthread_mutex_init(&tp->out[i].lock, NULL);
  pthread_mutex_init(&tp->bulk_lock, NULL);
  int err = pthread_create(&tp->thread, NULL, comm_main, tp);
  if (err) {
    for (int i = 0; i < tp->size; i++) pthread_mutex_destroy(&tp->out[i].lock);
    pthread_mutex_destroy(&tp->bulk_lock);
    free(tp->out);
    free(tp->flights);
    return rt_fail(RAY_EIO, "ray_init: cannot start the comm thread: %s", strerror(err));
  }
  tp->started = true;
  return RAY_OK;
}

void rt_tp_stop(rt_transport *tp) {
  if (!tp->started) return;
  /* release: see comm_main */
  atomic_store_explicit(&tp->stop, true, memory_order_release);
  ring(tp);
  pthread_join(tp->thread, NULL);
  tp->started = false;
  flights *f = fl_of(tp);
  for (int i = 0; i < tp->size; i++) {
    free(tp->out[i].buf);
    pthread_mutex_destroy(&tp->out[i].lock);
  }
  pthread_mutex_destroy(&tp->bulk_lock);
  free(tp->out);
  free(f->reqs);
  free(f->meta);
  free(f->idx);
  free(f->sts);
  free(f);
  tp->out = NULL;
  tp->flights = NULL;
}

#endif /* RAY_HAVE_MPI */
