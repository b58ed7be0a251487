/*
 * spillfile.h - where spilled objects live on disk: one directory of fused
 * spill files.
 *
 * The store's spiller (store/spill.c) moves sealed objects out of memory in
 * batches; this module owns everything on the disk side of that: the
 * directory's lifetime, the files, the record format, checksums, reading a
 * record back with verification, and reclaiming space. It knows nothing of
 * entries, locks or memory accounting, and takes no lock of the store.
 *
 * Layout. Objects are appended to the current spill file ("spill-<n>.bin")
 * until it reaches RT_SPILL_FILE_TARGET bytes (tens of MiB), then a new file
 * starts: many small objects share a file (Ray's issue 22485: one file per
 * object does not scale). Each record is a fixed header followed by the
 * payload:
 *     magic (8 bytes), payload size (8), object id (16), checksum (8),
 *     header checksum (8), 16 zero bytes (so the payload is 64-aligned too)
 * The checksum covers the payload; the header checksum covers the fields
 * before it. A record starts at an offset that is a multiple of 4096 for
 * payloads of at least RT_SPILL_ALIGN_MIN bytes (so their space can be
 * released with a hole punch), of 64 otherwise.
 *
 * Space. Each file counts its live records and bytes. rt_spill_forget
 * releases one record: big records punch a hole (fallocate
 * PUNCH_HOLE|KEEP_SIZE where the filesystem has it), and a file with no live
 * record left that is not the current one is deleted.
 *
 * Directory. rt_spilldir_open creates the directory (and its parents, mode
 * 0700) or uses an existing one (its files get spill-<n>.bin names that do
 * not exist yet: O_EXCL, so nothing there is overwritten); fails with the
 * reason if it cannot. When the name is the default one it first removes
 * directories left by dead processes of this user: $TMPDIR/rayc-<pid>[-...]
 * whose pid no longer runs (kill(pid, 0) fails with ESRCH). The default
 * directory counts as made by this runtime even if it existed (the name is
 * this process's). rt_spilldir_close deletes every spill file it created,
 * and the directory if this runtime made it.
 *
 * Threads. Writes come from the spiller thread(s) only; reads (restores)
 * and forgets from any thread, concurrently with writes. Internally a mutex
 * guards the file list and counts; file I/O (pwrite/pread) runs without it.
 */
#ifndef RT_SPILLFILE_H
#define RT_SPILLFILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ray.h"

#define RT_SPILL_FILE_TARGET ((uint64_t)64 << 20)
#define RT_SPILL_ALIGN_MIN ((size_t)64 << 10)

typedef struct rt_spillfile rt_spillfile; /* private to spillfile.c */

/* Where one object's record is. Fits in an entry's unused inline area. */
typedef struct rt_spill_loc {
  rt_spillfile *file;
  uint64_t offset; /* of the record's header */
  uint64_t size;   /* payload bytes */
  uint64_t sum;    /* payload checksum */
} rt_spill_loc;

/* One object to write: its bytes and the 16-byte object id put in the
 * header (for messages and for tools that read spill files). */
typedef struct rt_spill_item {
  const void *data;
  size_t size;
  unsigned char id[16];
} rt_spill_item;

typedef struct rt_spilldir {
  char *path; /* owned */
  bool made;  /* created by this runtime: removed at close */
  pthread_mutex_t lock;
  /* the rest is private to spillfile.c */
  rt_spillfile *files; /* every file with live records, and the current one */
  rt_spillfile *cur;
  uint64_t next_file;        /* number of the next file */
  uint64_t bytes;            /* live payload bytes on disk */
  uint64_t fail_next_writes; /* test hook: rt_spill_test_fail_writes */
  int fail_errno;
} rt_spilldir;

/* Creates or adopts the directory (see above). is_default: the name is
 * rayc's default, so dead processes' directories are cleaned first. RAY_EIO
 * with "ray_init: cannot create the spill directory PATH: <strerror>" (or
 * the like) when it cannot; RAY_ENOMEM when out of memory. */
ray_status rt_spilldir_open(rt_spilldir *d, const char *path, bool is_default);
/* Deletes every spill file (and the directory if made), frees d. */
void rt_spilldir_close(rt_spilldir *d);

/* Appends n records (one batch, one pwritev or a few pwrites) and fills
 * locs[i]. On any write error (ENOSPC, EIO, an injected failure) nothing of
 * the batch stays: its space is released and RAY_EIO is returned with
 * "spilling to PATH: <strerror>" recorded as the last error (rt_fail), and
 * the caller keeps the objects in memory. */
ray_status rt_spill_write(rt_spilldir *d, const rt_spill_item *items, size_t n, rt_spill_loc *locs);

/* Reads the record at loc into buf (loc->size bytes) and verifies its header
 * (magic, size, header checksum) and payload checksum. RAY_ELOST with
 * "... spill file PATH at offset N: <what is wrong>" (short read, I/O error,
 * bad header, checksum mismatch) recorded as the last error. Other records of
 * the same file are unaffected. */
ray_status rt_spill_read(rt_spilldir *d, const rt_spill_loc *loc, void *buf);

/*
 * Zero-copy restore of a big record: maps it read-only from the page cache
 * (MAP_PRIVATE | MAP_POPULATE) and verifies it as rt_spill_read does, with
 * the same RAY_ELOST messages; *data gets the payload (64-byte aligned),
 * which stays valid until rt_spill_unmap(data, loc->size). Only for records
 * rt_spill_mappable says yes to (RT_SPILL_ALIGN_MIN bytes or more, so they
 * start on a page); forgetting other records of the file punches only their
 * own whole pages, so a mapped record's pages stay. The caller must unmap
 * before it forgets the record. A spill file truncated by someone else
 * after the map would fault on access: spill files are the runtime's alone.
 */
bool rt_spill_mappable(const rt_spill_loc *loc);
ray_status rt_spill_map(rt_spilldir *d, const rt_spill_loc *loc, const void **data);
void rt_spill_unmap(const void *data, uint64_t size);

/* The record is no longer needed (its object was freed, or restored and then
 * freed, or the spill was abandoned): releases its space. */
void rt_spill_forget(rt_spilldir *d, const rt_spill_loc *loc);

/* The path of the spill file that holds the record at loc (valid while the
 * record lives), for messages and for tests that damage files. */
const char *rt_spill_path(const rt_spill_loc *loc);

/* Live payload bytes on disk now. */
uint64_t rt_spill_bytes(rt_spilldir *d);

/* Test hook: the next n writes fail with err (e.g. ENOSPC), as a full disk
 * would. n = 0 turns it off. */
void rt_spill_test_fail_writes(rt_spilldir *d, uint64_t n, int err);

/* The payload checksum (exposed for tests and for the writer): a 64-bit
 * hash fast enough that restoring stays within 0.8x of a plain file read. */
uint64_t rt_spill_checksum(const void *data, size_t size);
/* The same value computed without vector instructions (for the test that
 * the two versions agree). */
uint64_t rt_spill_checksum_portable(const void *data, size_t size);

#endif
