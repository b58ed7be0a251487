/*
 * creator.h - who made an object: a put's call site, or the task or method
 * whose result it is, as a 32-bit creator id (ray_memory_report).
 *
 * Every entry records its creator's id in a side array of the slot table
 * (slots.h); the id comes from interning the creator here, once per
 * distinct creator, in a table shared by every runtime of the process:
 *   - a put site: the code address the object was created at (the return
 *     address of the public call, or of a public wrapper's caller) and the
 *     call's name ("ray_put"). Symbolised only when a report asks for its
 *     label, so a put pays no lookup of names or lines;
 *   - a task or method: the name of its record ("square", "Counter.add"),
 *     copied, since the record is freed long before its results are.
 *
 * The table is open addressing over at most RT_CREATOR_MAX records, never
 * removed: lookups are lock-free (acquire loads of published records);
 * inserts take one mutex. A thread remembers the last site and the last
 * name it interned, so a loop of puts from one line, or of submissions of
 * one task, finds its id with two compares (or one strcmp). Creators past
 * RT_CREATOR_MAX share the id RT_CREATOR_OTHER; a record that cannot be
 * allocated gives RT_CREATOR_UNKNOWN. Neither fails the object's creation:
 * the creator is for reports, not for the object's life.
 */
#ifndef RT_CREATOR_H
#define RT_CREATOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint32_t rt_creator_id;

enum {
  RT_CREATOR_UNKNOWN = 0, /* no memory to record the creator */
  RT_CREATOR_OTHER = 1,   /* the table was full */
  RT_CREATOR_REMOTE = 2,  /* cluster mode: a copy of an object of another rank */
  RT_CREATOR_FIRST = 3,   /* the first id of a recorded creator */
};

/* Distinct creators recorded per process, beyond which they share
 * RT_CREATOR_OTHER. Put sites are bounded by the program's code; task
 * names are not (a name made per task), hence the cap. */
#define RT_CREATOR_MAX 16384u

/* The code address of the call the current function was called from:
 * what a public entry point passes as the site of what it creates. */
#define RT_CALLER() __builtin_return_address(0)

/* The last site this thread interned (creator.c), for the inline check. */
typedef struct rt_creator_site_cache {
  const void *site; /* NULL until a site is recorded: never a return address */
  const char *api;
  rt_creator_id id;
} rt_creator_site_cache;
extern _Thread_local rt_creator_site_cache rt_t_creator_site;

rt_creator_id rt_creator_site_slow(const char *api, const void *site);

/* The id of a put site: `site` a return address, `api` the public call's
 * name (a string that lives as long as the process, e.g. a literal). On
 * every put: inline, the thread's last site first. */
static inline rt_creator_id rt_creator_site(const char *api, const void *site) {
  const rt_creator_site_cache *c = &rt_t_creator_site;
  if (__builtin_expect(c->site == site && c->api == api, 1)) return c->id;
  return rt_creator_site_slow(api, site);
}

/* The last task name this thread interned (creator.c): the interned copy
 * (NULL until one is), for the inline check. */
typedef struct rt_creator_task_cache {
  const char *name;
  rt_creator_id id;
} rt_creator_task_cache;
extern _Thread_local rt_creator_task_cache rt_t_creator_task;

rt_creator_id rt_creator_task_slow(const char *name);

/* The id of a task or method by its record's name (copied; NULL reads as
 * "unnamed"). On every submission: inline, the thread's last name first. */
static inline rt_creator_id rt_creator_task(const char *name) {
  const rt_creator_task_cache *c = &rt_t_creator_task;
  if (__builtin_expect(name && c->name && strcmp(c->name, name) == 0, 1)) return c->id;
  return rt_creator_task_slow(name);
}

/* One past the highest id handed out so far (ids are dense from 0). */
rt_creator_id rt_creator_count(void);

/* A person's name for a creator, valid until the process ends:
 * "ray_put at fill (main.c:42)", "ray_put at fill+0x1c (prog)" without
 * line information, "returned by 'square'" (a task), "returned by
 * 'Counter.add'" (a method: its record's name), "(unknown creator: out of
 * memory)", "(other creators)", "(copies of other ranks' objects)". Symbolises a site the first
 * time it is asked (it may start addr2line: not for hot paths, not in signal handlers); NULL only
 * if that first time finds no memory for the text. */
const char *rt_creator_label(rt_creator_id id);

#endif
