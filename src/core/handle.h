/*
 * handle.h - the one encoding of the runtime's opaque handles.
 *
 * Object refs (store/slots.h), view records (store/viewtab.h) and actor
 * handles (actor/actor.c) are not pointers but 64-bit words:
 *
 *     (generation ^ salt) << 32 | (index + 1)
 *
 * The index names a record in a table; index + 1 keeps a valid handle
 * non-NULL, and a NULL handle decodes to index UINT32_MAX, out of every
 * table's range. The generation changes each time the record is reused,
 * so a released handle no longer matches; the salt is random per runtime,
 * so a handle from an earlier runtime does not match either.
 */
#ifndef RT_HANDLE_H
#define RT_HANDLE_H

#include <stdint.h>

static inline void *rt_handle_pack(uint32_t index, uint32_t gen, uint32_t salt) {
  return (void *)(uintptr_t)(((uint64_t)(gen ^ salt) << 32) | ((uint64_t)index + 1));
}

/* The index a handle names: UINT32_MAX for NULL. */
static inline uint32_t rt_handle_index(const void *h) {
  return (uint32_t)(uintptr_t)h - 1;
}

/* The generation a handle carries, to compare with its record's. */
static inline uint32_t rt_handle_gen(const void *h, uint32_t salt) {
  return (uint32_t)((uint64_t)(uintptr_t)h >> 32) ^ salt;
}

#endif
