/*
 * entry.h - one object in the store.
 *
 * An entry is exactly 128 bytes: a 64-byte header (one cache line) and 64
 * bytes of inline payload, so an object of up to RT_INLINE_MAX bytes costs no
 * allocation beyond its slot and 128 - size bytes of overhead. 64 is the
 * threshold because it keeps the per-object overhead of an 8-byte object at
 * 120 bytes (goal <= 128) while covering scalars, small structs and short
 * strings; a bigger inline area would grow every entry.
 *
 * Life of an entry (state, low bits of `state`):
 *   FREE -> CREATING (ray_create) -> SEALED          (ray_seal)
 *   FREE -> SEALED                                    (ray_put, put_owned, put_refs)
 *   FREE -> PENDING (a task's return) -> ENDING -> SEALED | FAILED  (the task ends)
 *   any live state -> FREE when `holds` reaches 0 (last ref and view gone).
 * Ending a PENDING entry: whoever moves it to ENDING owns writing the
 * outcome, then publishes it with an exchange to SEALED or FAILED. The task
 * that finishes tries a CAS from exactly PENDING without taking any lock;
 * everyone else (a canceller, a sealer whose CAS failed) works under the
 * stripe lock, after setting RT_ST_WAITERS, which makes that CAS fail.
 * RT_ST_WAITERS is set (under the stripe lock) by a thread that parks on the
 * entry or needs the entry to stay PENDING while it holds the lock (a
 * canceller reading the producer); whoever publishes the outcome sees it and
 * takes the lock to wake the stripe's waiters for this slot.
 *
 * Spilling (spill.c): an entry is on its stripe's LRU list exactly when it
 * may be spilled: sealed, out of line and the store's own buffer
 * (RT_EF_SPILLABLE: not inline, not refs, not an adopted ray_put_owned
 * buffer), no view, no pin, in memory and not being spilled or restored
 * (SQLite pcache1: "pinned means not on the LRU list"). Where its bytes are
 * is in locked_flags, under the stripe lock: RT_LF_DISK says a spill file
 * holds a copy (its rt_spill_loc is in `inl`, unused by out-of-line
 * objects), RT_LF_OUT that memory does not (data is NULL, the bytes given
 * back). A restored object keeps its disk copy until it is freed, so
 * spilling it again writes nothing.
 */
#ifndef RT_ENTRY_H
#define RT_ENTRY_H

#include <stdatomic.h>
#include <stdint.h>

#include "ray.h"

enum {
  RT_ST_FREE = 0,
  RT_ST_CREATING = 1,
  RT_ST_SEALED = 2,
  RT_ST_PENDING = 3,
  RT_ST_FAILED = 4,
  RT_ST_ENDING = 5, /* a PENDING entry whose outcome is being written */
  RT_ST_MASK = 0xff,
  RT_ST_WAITERS = 0x100,
};

enum {
  RT_EF_INLINE = 1 << 0,    /* data points at inl[] */
  RT_EF_OWNED = 1 << 1,     /* adopted buffer: aux.free_fn(data) at the end (may be NULL) */
  RT_EF_POOL = 1 << 2,      /* buffer from the large-buffer pool: aux.cap bytes */
  RT_EF_HEAP = 1 << 3,      /* malloc'd buffer: free(data) */
  RT_EF_REFS = 1 << 4,      /* payload is ray_ref handles, each holding a reference */
  RT_EF_SPILLABLE = 1 << 5, /* out of line and not refs: may go on the LRU list */
  RT_EF_ERROR = 1 << 6,     /* FAILED: data is a malloc'd rt_error (store.h) */
  RT_EF_ALIAS = 1 << 7,     /* data belongs to aux.target, which this entry holds */
  RT_EF_REMOTE = 1 << 8,    /* cluster mode: a copy of an object of another rank (rt_remote_loc) */
};

enum {
  RT_LF_ON_LRU = 1 << 0,    /* linked on the stripe's LRU list */
  RT_LF_SPILLING = 1 << 1,  /* chosen by the spiller, its write in flight */
  RT_LF_DISK = 1 << 2,      /* a spill file holds a copy: rt_spill_loc in inl */
  RT_LF_OUT = 1 << 3,       /* not in memory (implies DISK): data is NULL */
  RT_LF_RESTORING = 1 << 4, /* OUT, and a thread is reading it back */
  RT_LF_MAPPED = 1 << 5,    /* restored by mapping its spill record: data is that map */
  RT_LF_REMOTE = 1 << 6,    /* OUT, and its bytes are on another rank, not on disk */
};

#define RT_HOLD_REF 1ull          /* one ref: low 32 bits of holds */
#define RT_HOLD_VIEW (1ull << 32) /* one view: high 32 bits of holds */
#define RT_HOLD_REFS(h) ((uint32_t)(h))
#define RT_HOLD_VIEWS(h) ((uint32_t)((h) >> 32))

#define RT_NO_SLOT UINT32_MAX

/* What a payload needs besides its bytes, by its flags; an entry's and a
 * staged payload's (store.h, rt_payload) are the same union, so one
 * function frees either's buffer (rt_store_buffer_free). */
typedef union rt_aux {
  void (*free_fn)(void *); /* RT_EF_OWNED */
  size_t cap;              /* RT_EF_POOL */
  void *producer;          /* PENDING: the task record, under the stripe lock */
  ray_ref *target;         /* RT_EF_ALIAS */
} rt_aux;

typedef struct rt_entry {
  /* Bumped when the entry is freed: a handle carries the generation it was
   * made with, so a released handle no longer resolves. */
  _Atomic uint32_t gen;
  _Atomic uint32_t state;
  /* refs (low 32 bits) and views (high 32 bits) in one word, so that exactly
   * one thread sees the pair reach zero and frees the entry. */
  _Atomic uint64_t holds;
  uint16_t pins;         /* under the stripe lock */
  uint16_t account;      /* memory-quota account charged for the payload; 0: none */
  uint16_t flags;        /* RT_EF_*: set before the entry is published, then fixed */
  uint16_t locked_flags; /* RT_LF_*: under the stripe lock (entries that can spill) */
  uint32_t lru_prev;     /* slot numbers; under the stripe lock */
  uint32_t lru_next;     /* also links entries on a thread's finalize list */
  size_t size;
  const ray_type *type;
  /* The payload; an rt_error when FAILED; while PENDING, the head of the
   * entry's list of task dependencies (rt_waiter, under the stripe lock;
   * wait.c, rt_store_add_waiter), as it has no payload yet. */
  void *data;
  rt_aux aux;
  unsigned char inl[64];
} rt_entry;

#define RT_INLINE_MAX sizeof(((rt_entry *)0)->inl)
/* Where a spillable (out-of-line) entry keeps, in its unused `inl`, when it
 * last went on its LRU list (store_int.h); its rt_spill_loc comes first. */
#define RT_ENTRY_LAST_USE_AT 32

/*
 * Cluster mode: where an RT_EF_REMOTE entry's bytes live and whom to tell
 * when it goes. Kept in `inl` after the spill location and the last-use
 * stamp: a remote entry is never inline (its bytes, when in memory, are in
 * a buffer of their own), so those bytes are free in every state.
 *   lender: the rank that sent us the ref and holds it for us until we
 *           tell it we are done (lender_key: its export key);
 *   holder: the rank whose memory has the bytes (holder_key: its key).
 */
typedef struct rt_remote_loc {
  int32_t holder, lender;
  uint64_t holder_key, lender_key;
} rt_remote_loc;
#define RT_ENTRY_REMOTE_AT 40
_Static_assert(RT_ENTRY_REMOTE_AT + sizeof(rt_remote_loc) <= 64, "the remote location fits in inl");

_Static_assert(sizeof(rt_entry) == 128, "an entry is two cache lines");
_Static_assert(sizeof(void *) == 8, "handles pack a generation and a slot into a pointer");

#endif
