/*
 * gate.h - who is inside a submission call, so shutdown frees nothing under it.
 *
 * ray_shutdown refuses submissions from threads outside the pool, then
 * frees the runtime. A thread that read "not closing" a moment before the
 * refusal began is still building its task, touching the store and the
 * scheduler, and must be waited for; one that comes later must see the
 * refusal. Each such thread passes a gate of its own:
 *
 *   caller:   enter (seq_cst exchange on its word) ; load runtime, closing
 *   shutdown: store closing (seq_cst) ;              load every word
 *
 * This is the store-buffering (Dekker) pattern with seq_cst operations on
 * both sides: in their single total order, either the caller's load sees
 * closing (it leaves at once and reports RAY_ESHUTDOWN) or shutdown's load
 * sees the caller inside and waits until it leaves. A gate's word counts
 * entries and exits, odd while inside, so a waiter only needs to see it
 * change once, however fast the thread goes in and out again.
 *
 * Gates live in a process-wide list, outside any runtime, because a caller
 * enters before it knows whether a runtime exists: the runtime it then
 * reads cannot be freed under it. A thread's gate is made on its first
 * gated call and goes back to the list for reuse when the thread exits.
 * Entering costs one locked instruction (the exchange); leaving, a release
 * store and one load.
 */
#ifndef RT_GATE_H
#define RT_GATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct rt_gate rt_gate;

/* Marks the calling thread inside a gated call. NULL when no gate could be
 * allocated for the thread (out of memory): the call must fail then. */
rt_gate *rt_gate_enter(void);

/* Marks it outside again; g from rt_gate_enter on this thread. */
void rt_gate_leave(rt_gate *g);

/* Waits until every thread that was inside a gated call when this call
 * began has left it. Call after the seq_cst store that refuses new callers. */
void rt_gate_wait_all(void);

#endif
