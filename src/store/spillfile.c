/*
 * spillfile.c - the disk side of spilling: fused spill files of checksummed
 * records. See spillfile.h for the contract.
 *
 * Records. A record is a 64-byte header slot, then the payload. The slot
 * holds the fields of spillfile.h (magic, payload size, object id, payload
 * checksum, header checksum: 48 bytes) and 16 zero bytes, so that a payload
 * starts 64-byte aligned in the file as its record does. Fields are in host
 * byte order: a spill file lives and dies with one process.
 *
 * Space. A batch reserves its records under the lock (file, offset; rolling
 * to a new file when the current one would pass RT_SPILL_FILE_TARGET), then
 * writes without it. A reserved record counts as live at once, so the file
 * it lies in is not deleted under the writer. Records of at least
 * RT_SPILL_ALIGN_MIN bytes start on a 4096 boundary, and forgetting one
 * punches the whole pages inside it: no other record shares them. A file
 * with no live record is deleted, unless it is the current one, which is
 * truncated to 0 and refilled. A forget that punches without the lock marks
 * the file busy so that a concurrent forget of its last other record does
 * not close the descriptor under the punch.
 *
 * I/O. The writer hashes each payload while it is in cache: small records
 * are hashed and gathered into one pwritev (up to 256 KiB, 256 records or
 * the iovec limit); a large payload goes out 256 KiB at a time, each chunk
 * hashed just after the kernel copied it, and its header last. The reader does the same in
 * reverse: preadv of the header and the first chunk, then a chunk at a
 * time, each hashed right after the kernel copied it into the caller's
 * buffer. One pass over memory either way, not a copy and a second pass.
 *
 * Checksum. Our own 64-bit hash, built for speed over large buffers: 32
 * independent 64-bit lanes (eight 4-lane vectors where AVX2 exists), each
 * taking one 8-byte word per 256-byte block through the step
 *     t = swap_halves(acc + word);  acc = t + lo32(t) * K     (K even)
 * Writing t = h * 2^32 + l, the new acc is h * 2^32 + l * (K + 1): its low
 * half is l * (K + 1) mod 2^32, which gives back l (K + 1 is odd), and then
 * h follows. So the step is a bijection of acc for a fixed word, and two
 * inputs that differ in one lane's words leave that lane different to the
 * end. Every half takes a turn in the multiplier, whose high half mixes all
 * its bits. Four instructions per 4 lanes (add with the load, shuffle,
 * vpmuludq, add); eight chains hide the multiply's latency. The tail (under
 * 256 bytes) goes word by word into the lanes, a last partial word
 * zero-padded; the final mix adds up a xorshift-multiply finaliser of each
 * lane (relative to its start value) and the length, and finalises that.
 * Since every stage is a bijection of one lane, damage confined to one lane
 * (any 8-byte word, say) always changes the sum; wider damage goes unseen
 * with odds of about 2^-64. It detects corruption (flipped bytes, zeroed
 * pages, truncation, misplaced blocks); it is no defence against someone
 * who forges records on purpose. The AVX2 and portable versions compute the
 * same value (a test checks it).
 */
#define _GNU_SOURCE
#include "store/spillfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/prim.h"

/* ---- the checksum ---------------------------------------------------------- */

#define H_LANES 32
#define H_BLOCK ((size_t)H_LANES * 8)
#define H_K 0x9fb21c64u /* even, so that H_K + 1 is odd: see h_step */

typedef struct hstate {
  uint64_t lane[H_LANES];
} hstate;

static inline uint64_t load64(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

static inline uint64_t h_step(uint64_t acc, uint64_t w) {
  uint64_t s = acc + w, t = (s << 32) | (s >> 32);
  return t + (t & 0xffffffffu) * H_K;
}

static inline uint64_t h_lane_init(int i) {
  return (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
}

static void h_init(hstate *h) {
  for (int i = 0; i < H_LANES; i++) h->lane[i] = h_lane_init(i);
}

static void h_blocks_portable(hstate *h, const unsigned char *p, size_t nblocks) {
  uint64_t a[H_LANES];
  memcpy(a, h->lane, sizeof a);
  for (size_t b = 0; b < nblocks; b++, p += H_BLOCK)
    for (int i = 0; i < H_LANES; i++) a[i] = h_step(a[i], load64(p + 8 * (size_t)i));
  memcpy(h->lane, a, sizeof a);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define H_HAVE_AVX2 1
typedef uint64_t h_v4 __attribute__((vector_size(32)));
typedef int h_v8i __attribute__((vector_size(32)));

/* The same step on four lanes at once: vpmuludq multiplies the low 32 bits
 * of each 64-bit lane (compilers do not find it from the masked multiply,
 * and <immintrin.h> is not ours to include here, so the builtin that
 * _mm256_mul_epu32 wraps in GCC and Clang). */
#if defined(__clang__)
#define H_SWAP_HALVES(s)                                                                           \
  ((h_v4)__builtin_shufflevector((h_v8i)(s), (h_v8i)(s), 1, 0, 3, 2, 5, 4, 7, 6))
#else
#define H_SWAP_HALVES(s) ((h_v4)__builtin_shuffle((h_v8i)(s), (h_v8i){1, 0, 3, 2, 5, 4, 7, 6}))
#endif
/* One step on vector j: named accumulators, not an array, so that they stay
 * in registers across the loop. */
#define H_STEP4(acc, j)                                                                            \
  do {                                                                                             \
    h_v4 w_, s_, m_;                                                                               \
    memcpy(&w_, p + (size_t)32 * (j), 32);                                                         \
    s_ = H_SWAP_HALVES((acc) + w_);                                                                \
    m_ = (h_v4)__builtin_ia32_pmuludq256((h_v8i)s_, k);                                            \
    (acc) = s_ + m_;                                                                               \
  } while (0)

__attribute__((target("avx2"))) static void h_blocks_avx2(hstate *h, const unsigned char *p,
                                                          size_t nblocks) {
  const h_v8i k = {(int)H_K, 0, (int)H_K, 0, (int)H_K, 0, (int)H_K, 0};
  h_v4 a0, a1, a2, a3, a4, a5, a6, a7;
  memcpy(&a0, h->lane + 0, 32), memcpy(&a1, h->lane + 4, 32);
  memcpy(&a2, h->lane + 8, 32), memcpy(&a3, h->lane + 12, 32);
  memcpy(&a4, h->lane + 16, 32), memcpy(&a5, h->lane + 20, 32);
  memcpy(&a6, h->lane + 24, 32), memcpy(&a7, h->lane + 28, 32);
  for (size_t b = 0; b < nblocks; b++, p += H_BLOCK) {
    H_STEP4(a0, 0);
    H_STEP4(a1, 1);
    H_STEP4(a2, 2);
    H_STEP4(a3, 3);
    H_STEP4(a4, 4);
    H_STEP4(a5, 5);
    H_STEP4(a6, 6);
    H_STEP4(a7, 7);
  }
  memcpy(h->lane + 0, &a0, 32), memcpy(h->lane + 4, &a1, 32);
  memcpy(h->lane + 8, &a2, 32), memcpy(h->lane + 12, &a3, 32);
  memcpy(h->lane + 16, &a4, 32), memcpy(h->lane + 20, &a5, 32);
  memcpy(h->lane + 24, &a6, 32), memcpy(h->lane + 28, &a7, 32);
}
#endif

/* Folds whole blocks (nblocks * 256 bytes at p) into the lanes. */
static void h_blocks(hstate *h, const unsigned char *p, size_t nblocks) {
#if defined(H_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2")) {
    h_blocks_avx2(h, p, nblocks);
    return;
  }
#endif
  h_blocks_portable(h, p, nblocks);
}

static inline uint64_t h_fmix(uint64_t x) {
  x ^= x >> 31;
  x *= 0xd6e8feb86659fd93ull;
  x ^= x >> 29;
  x *= 0xa0761d6478bd642full;
  x ^= x >> 32;
  return x;
}

/* The tail (under one block, tail_len bytes at p) and the total length.
 * Each lane enters the fold as fmix(lane ^ its initial value): fmix(0) is 0,
 * so a lane no word reached adds nothing and is skipped, which keeps short
 * inputs (record headers, small objects) cheap. The fold is a sum of
 * independent terms, so the multiplies overlap instead of forming a chain. */
static uint64_t h_finish(hstate *h, const unsigned char *p, size_t tail_len, uint64_t total) {
  int i = 0;
  for (; tail_len >= 8; tail_len -= 8, p += 8, i++) h->lane[i] = h_step(h->lane[i], load64(p));
  if (tail_len) {
    uint64_t w = 0;
    memcpy(&w, p, tail_len);
    h->lane[i] = h_step(h->lane[i], w);
    i++;
  }
  int used = total >= H_BLOCK ? H_LANES : i;
  uint64_t r = total * 0x9e3779b97f4a7c15ull;
  for (i = 0; i < used; i++) r += h_fmix(h->lane[i] ^ h_lane_init(i));
  return h_fmix(r ^ (r >> 29) ^ 0x6a09e667f3bcc909ull);
}

/* Hashes a chunk of a payload being streamed: every chunk but the last must
 * be a whole number of blocks. */
static void h_update(hstate *h, const void *chunk, size_t len) {
  h_blocks(h, chunk, len / H_BLOCK);
}

/* The whole hash of size bytes, its blocks hashed by `blocks`. */
static uint64_t checksum_by(void (*blocks)(hstate *, const unsigned char *, size_t),
                            const void *data, size_t size) {
  hstate h;
  const unsigned char *p = data;
  size_t nb = size / H_BLOCK;
  h_init(&h);
  blocks(&h, p, nb);
  return h_finish(&h, p + nb * H_BLOCK, size % H_BLOCK, size);
}

uint64_t rt_spill_checksum(const void *data, size_t size) {
  return checksum_by(h_blocks, data, size);
}

uint64_t rt_spill_checksum_portable(const void *data, size_t size) {
  return checksum_by(h_blocks_portable, data, size);
}

/* ---- records and files ----------------------------------------------------- */

#define REC_HDR 64
#define REC_MAGIC 0x31304c4c49505352ull /* "RSPILL01" read as little-endian bytes */
#define PAGE 4096u
/* Payload bytes hashed and moved per system call in the streaming paths:
 * small enough to stay in L2 between the kernel's copy and the hash (on a
 * 2 MiB-L2 Xeon, 64-256 KiB chunks hash at ~45 GB/s after a pread, 1 MiB at
 * ~28, 4 MiB at ~15). */
#define CHUNK ((size_t)256 << 10)

typedef struct rec_hdr {
  uint64_t magic;
  uint64_t size;
  unsigned char id[16];
  uint64_t sum;  /* of the payload */
  uint64_t hsum; /* of the 40 bytes above */
  unsigned char zero[16];
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == REC_HDR, "a record header fills its 64-byte slot");

struct rt_spillfile {
  rt_spillfile *prev, *next; /* d->files */
  int fd;
  uint64_t num;  /* spill-<num>.bin */
  uint64_t tail; /* end of the last reserved record: the next goes after it */
  uint64_t live; /* records reserved or written and not yet forgotten */
  uint64_t busy; /* forgets punching a hole in it without the lock */
  char path[];
};

static inline uint64_t round_up(uint64_t x, uint64_t a) {
  return (x + a - 1) & ~(a - 1);
}

static inline uint64_t rec_align(uint64_t size) {
  return size >= RT_SPILL_ALIGN_MIN ? PAGE : 64;
}

static uint64_t hdr_sum(const rec_hdr *h) {
  return rt_spill_checksum(h, offsetof(rec_hdr, hsum));
}

static void file_unlink_locked(rt_spilldir *d, rt_spillfile *f) {
  if (f->prev)
    f->prev->next = f->next;
  else
    d->files = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
  if (d->cur == f) d->cur = NULL;
}

/* Closes and deletes a file already taken off the list (no lock needed: no
 * one else can reach it). */
static void file_destroy(rt_spillfile *f) {
  close(f->fd);
  unlink(f->path);
  rt_free(f);
}

/* A file just lost its last live record (and no punch is in flight): the
 * current one is emptied for reuse, another one is taken off the list and
 * returned for the caller to destroy after unlocking. */
static rt_spillfile *file_emptied_locked(rt_spilldir *d, rt_spillfile *f) {
  if (f == d->cur) {
    f->tail = 0;
    /* Under the lock: a writer could otherwise reserve at 0 and write before
     * this truncation. A failure only leaves the space allocated. */
    (void)ftruncate(f->fd, 0);
    return NULL;
  }
  file_unlink_locked(d, f);
  return f;
}

/* Creates the next spill file and makes it current (*out). The old current
 * file, if now empty, is returned through *drop for destruction after
 * unlocking. 0 or an errno value; *failed_path gets the path that failed
 * (owned). */
static int file_roll_locked(rt_spilldir *d, rt_spillfile **out, rt_spillfile **drop,
                            char **failed_path) {
  size_t plen = strlen(d->path) + 32;
  for (int tries = 0;; tries++) {
    rt_spillfile *f = rt_calloc(1, sizeof *f + plen);
    if (!f) return ENOMEM;
    f->num = d->next_file++;
    snprintf(f->path, plen, "%s/spill-%" PRIu64 ".bin", d->path, f->num);
    /* O_EXCL: never write into a file this runtime did not create (a
     * stale one, or another process's in a shared directory). */
    f->fd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f->fd < 0) {
      int err = errno;
      if (err == EEXIST && tries < 1000) {
        rt_free(f);
        continue;
      }
      *failed_path = rt_strdup(f->path);
      rt_free(f);
      return err ? err : EIO;
    }
    rt_spillfile *old = d->cur;
    f->next = d->files;
    if (d->files) d->files->prev = f;
    d->files = f;
    d->cur = f;
    *out = f;
    if (old && old->live == 0 && old->busy == 0) {
      file_unlink_locked(d, old);
      *drop = old;
    }
    return 0;
  }
}

/* ---- writing --------------------------------------------------------------- */

#define W_IOV 768     /* iovecs per pwritev, under every IOV_MAX (1024 on Linux) */
#define W_HDRS 256    /* records per pwritev */
#define W_BYTES CHUNK /* gathered bytes that trigger a pwritev */

static const unsigned char zeros[PAGE];

typedef struct writer {
  rt_spillfile *f; /* file of the gathered run */
  uint64_t off;    /* file offset of iov[0] */
  uint64_t len;    /* bytes gathered */
  int cnt, nhdr;
  int inject; /* errno the next system call fails with (test hook), or 0 */
  struct iovec iov[W_IOV];
  rec_hdr hdr[W_HDRS];
} writer;

/* Writes iov[0..cnt) at off, through short writes. 0 or an errno value. */
/* Moves an iovec array past `done` bytes that a short pwritev/preadv moved:
 * whole entries are dropped, a partial one is trimmed in place. */
static void iov_advance(struct iovec **iov, int *cnt, size_t done) {
  while (*cnt > 0 && done >= (*iov)->iov_len) done -= (*iov)->iov_len, (*iov)++, (*cnt)--;
  if (*cnt > 0) {
    (*iov)->iov_base = (char *)(*iov)->iov_base + done;
    (*iov)->iov_len -= done;
  }
}

static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off) {
  while (cnt > 0) {
    ssize_t r = pwritev(fd, iov, cnt, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return EIO;
    off += (uint64_t)r;
    iov_advance(&iov, &cnt, (size_t)r);
  }
  return 0;
}

static int w_flush(writer *w) {
  int err = 0;
  if (w->cnt) err = w->inject ? w->inject : pwritev_all(w->f->fd, w->iov, w->cnt, w->off);
  w->cnt = w->nhdr = 0;
  w->len = 0;
  return err;
}

static void w_add(writer *w, const void *p, size_t len) {
  w->iov[w->cnt].iov_base = (void *)(uintptr_t)p; /* pwritev only reads it */
  w->iov[w->cnt].iov_len = len;
  w->cnt++;
  w->len += len;
}

static void fill_hdr(rec_hdr *h, const rt_spill_item *it, uint64_t sum) {
  memset(h, 0, sizeof *h);
  h->magic = REC_MAGIC;
  h->size = it->size;
  memcpy(h->id, it->id, 16);
  h->sum = sum;
  h->hsum = hdr_sum(h);
}

/* Writes and hashes one payload too large to gather, chunk by chunk, then
 * its header. 0 or an errno value; the checksum in *sum. */
static int write_large(writer *w, const rt_spill_item *it, const rt_spill_loc *loc, uint64_t *sum) {
  const unsigned char *p = it->data;
  int fd = loc->file->fd;
  hstate h;
  h_init(&h);
  size_t pos = 0;
  /* Each chunk is hashed right after the kernel copied it, while it is
   * still in cache: one trip from memory for both. The object is sealed, so
   * the bytes hashed are the bytes written. */
  for (; it->size - pos > CHUNK; pos += CHUNK) {
    struct iovec v = {(void *)(uintptr_t)(p + pos), CHUNK};
    int err = w->inject ? w->inject : pwritev_all(fd, &v, 1, loc->offset + REC_HDR + pos);
    if (err) return err;
    h_update(&h, p + pos, CHUNK);
  }
  size_t last = it->size - pos, nb = last / H_BLOCK;
  struct iovec v = {(void *)(uintptr_t)(p + pos), last};
  int err = w->inject ? w->inject : pwritev_all(fd, &v, 1, loc->offset + REC_HDR + pos);
  if (err) return err;
  h_update(&h, p + pos, nb * H_BLOCK);
  *sum = h_finish(&h, p + pos + nb * H_BLOCK, last % H_BLOCK, it->size);
  rec_hdr hdr;
  fill_hdr(&hdr, it, *sum);
  v = (struct iovec){&hdr, REC_HDR};
  return pwritev_all(fd, &v, 1, loc->offset);
}

/* Writes the reserved batch. 0 or an errno value, with *err_file the file
 * whose write failed. */
static int write_batch(writer *w, const rt_spill_item *items, size_t n, rt_spill_loc *locs,
                       rt_spillfile **err_file) {
  int err = 0;
  for (size_t i = 0; i < n && !err; i++) {
    const rt_spill_item *it = &items[i];
    rt_spill_loc *loc = &locs[i];
    if (w->cnt) {
      uint64_t end = w->off + w->len;
      if (it->size <= CHUNK && w->f == loc->file && loc->offset >= end &&
          loc->offset - end < PAGE && w->cnt + 3 <= W_IOV && w->nhdr < W_HDRS && w->len < W_BYTES) {
        if (loc->offset > end) w_add(w, zeros, (size_t)(loc->offset - end));
      } else {
        *err_file = w->f;
        err = w_flush(w);
        if (err) break;
      }
    }
    if (it->size > CHUNK) {
      *err_file = loc->file;
      err = write_large(w, it, loc, &loc->sum);
      continue;
    }
    loc->sum = rt_spill_checksum(it->data, it->size);
    if (!w->cnt) w->f = loc->file, w->off = loc->offset;
    rec_hdr *h = &w->hdr[w->nhdr++];
    fill_hdr(h, it, loc->sum);
    w_add(w, h, REC_HDR);
    if (it->size) w_add(w, it->data, it->size);
  }
  if (!err) {
    *err_file = w->f;
    err = w_flush(w);
  }
  return err;
}

/* Takes back the reservations of a failed batch: counts, and the space
 * (truncating the file back when the batch was its tail, else punching).
 * Returns the files left empty, for destruction after unlocking. */
static rt_spillfile *undo_batch_locked(rt_spilldir *d, const rt_spill_item *items, size_t n,
                                       const rt_spill_loc *locs) {
  rt_spillfile *dropped = NULL;
  size_t i = 0;
  while (i < n) {
    rt_spillfile *f = locs[i].file;
    uint64_t start = locs[i].offset, end = start;
    for (; i < n && locs[i].file == f; i++) {
      f->live--;
      end = locs[i].offset + REC_HDR + items[i].size;
    }
    if (f->tail == end) {
      f->tail = start;
      (void)ftruncate(f->fd, (off_t)start); /* under the lock: see file_emptied_locked */
    } else {
      uint64_t a = round_up(start, PAGE), b = end & ~(uint64_t)(PAGE - 1);
      if (b > a) (void)rt_prim_punch_hole(f->fd, a, b - a);
    }
    if (f->live == 0 && f->busy == 0) {
      rt_spillfile *g = file_emptied_locked(d, f);
      if (g) g->next = dropped, dropped = g;
    }
  }
  return dropped;
}

ray_status rt_spill_write(rt_spilldir *d, const rt_spill_item *items, size_t n,
                          rt_spill_loc *locs) {
  if (n == 0) return RAY_OK;
  writer *w = rt_malloc(sizeof *w);
  if (!w) return rt_fail(RAY_ENOMEM, "spilling to %s: out of memory", d->path);
  w->cnt = w->nhdr = 0;
  w->len = 0;
  w->f = NULL;
  w->inject = 0;

  /* Reserve every record under the lock. */
  rt_spillfile *drop = NULL;
  char *failed_path = NULL;
  int err = 0;
  size_t i;
  pthread_mutex_lock(&d->lock);
  if (d->fail_next_writes) {
    d->fail_next_writes--;
    w->inject = d->fail_errno ? d->fail_errno : EIO;
  }
  for (i = 0; i < n; i++) {
    uint64_t size = items[i].size;
    rt_spillfile *f = d->cur;
    uint64_t off = f ? round_up(f->tail, rec_align(size)) : 0;
    if (!f || (f->tail > 0 && off + REC_HDR + size > RT_SPILL_FILE_TARGET)) {
      rt_spillfile *old = NULL;
      err = file_roll_locked(d, &f, &old, &failed_path);
      if (old) old->next = drop, drop = old;
      if (err) break;
      off = 0;
    }
    f->tail = off + REC_HDR + size;
    f->live++;
    locs[i] = (rt_spill_loc){f, off, size, 0};
  }
  if (err) {
    rt_spillfile *more = undo_batch_locked(d, items, i, locs);
    pthread_mutex_unlock(&d->lock);
    rt_free(w);
    if (err == ENOMEM)
      rt_set_error("spilling to %s: out of memory", d->path);
    else
      rt_set_error("spilling to %s: %s", failed_path ? failed_path : d->path, strerror(err));
    rt_free(failed_path);
    for (rt_spillfile *f = drop, *nx; f; f = nx) nx = f->next, file_destroy(f);
    for (rt_spillfile *f = more, *nx; f; f = nx) nx = f->next, file_destroy(f);
    return err == ENOMEM ? RAY_ENOMEM : RAY_EIO;
  }
  pthread_mutex_unlock(&d->lock);
  for (rt_spillfile *f = drop, *nx; f; f = nx) nx = f->next, file_destroy(f);

  /* Write without it. */
  rt_spillfile *err_file = NULL;
  err = write_batch(w, items, n, locs, &err_file);
  rt_free(w);

  pthread_mutex_lock(&d->lock);
  if (err) {
    /* The message first: the undo may delete err_file. */
    rt_set_error("spilling to %s: %s", err_file ? err_file->path : d->path, strerror(err));
    drop = undo_batch_locked(d, items, n, locs);
  } else {
    for (i = 0; i < n; i++) d->bytes += items[i].size;
    drop = NULL;
  }
  pthread_mutex_unlock(&d->lock);
  for (rt_spillfile *f = drop, *nx; f; f = nx) nx = f->next, file_destroy(f);
  return err ? RAY_EIO : RAY_OK;
}

/* ---- reading --------------------------------------------------------------- */

/* Reads up to the iovecs' total at off, through short reads, stopping at end
 * of file. The bytes read, or -errno. */
static int64_t preadv_all(int fd, struct iovec *iov, int cnt, uint64_t off) {
  int64_t got = 0;
  while (cnt > 0) {
    ssize_t r = preadv(fd, iov, cnt, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -(int64_t)errno;
    }
    if (r == 0) break;
    got += r;
    off += (uint64_t)r;
    iov_advance(&iov, &cnt, (size_t)r);
  }
  return got;
}

static ray_status lost(const rt_spillfile *f, uint64_t off, const char *fmt, ...) RT_PRINTF(3, 4);
static ray_status lost(const rt_spillfile *f, uint64_t off, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return rt_fail(RAY_ELOST, "restoring a spilled object: spill file %s at offset %" PRIu64 ": %s",
                 f->path, off, what);
}

static ray_status short_read(const rt_spillfile *f, uint64_t off, int64_t got, uint64_t want) {
  if (got < 0) return lost(f, off, "I/O error: %s", strerror((int)-got));
  return lost(f, off, "short read, the file is truncated (%" PRId64 " of %" PRIu64 " bytes)", got,
              want);
}

/* The checks of a record's header against its location. */
static ray_status check_header(const rt_spillfile *f, const rt_spill_loc *loc, const rec_hdr *h) {
  if (h->magic != REC_MAGIC) return lost(f, loc->offset, "bad record header (magic)");
  if (h->hsum != hdr_sum(h)) return lost(f, loc->offset, "bad record header (header checksum)");
  if (h->size != loc->size)
    return lost(f, loc->offset, "bad record header (size %" PRIu64 ", expected %" PRIu64 ")",
                h->size, loc->size);
  if (h->sum != loc->sum) return lost(f, loc->offset, "bad record header (payload checksum)");
  return RAY_OK;
}

static ray_status check_sum(const rt_spillfile *f, const rt_spill_loc *loc, uint64_t sum) {
  if (sum == loc->sum) return RAY_OK;
  return lost(f, loc->offset,
              "payload checksum mismatch (stored %016" PRIx64 ", read %016" PRIx64 ")", loc->sum,
              sum);
}

ray_status rt_spill_read(rt_spilldir *d, const rt_spill_loc *loc, void *buf) {
  (void)d; /* the record's file stays open while the record lives */
  const rt_spillfile *f = loc->file;
  unsigned char *p = buf;
  size_t size = (size_t)loc->size;
  size_t first = size > CHUNK ? CHUNK : size;
  rec_hdr h;
  struct iovec v[2] = {{&h, REC_HDR}, {p, first}};
  int64_t got = preadv_all(f->fd, v, first ? 2 : 1, loc->offset);
  if (got < (int64_t)(REC_HDR + first)) return short_read(f, loc->offset, got, REC_HDR + size);

  ray_status s = check_header(f, loc, &h);
  if (s != RAY_OK) return s;

  hstate hs;
  h_init(&hs);
  size_t pos = 0;
  while (size - pos > CHUNK) {
    h_update(&hs, p + pos, CHUNK);
    pos += CHUNK;
    size_t len = size - pos > CHUNK ? CHUNK : size - pos;
    struct iovec c = {p + pos, len};
    got = preadv_all(f->fd, &c, 1, loc->offset + REC_HDR + pos);
    if (got < (int64_t)len)
      return short_read(f, loc->offset, got < 0 ? got : (int64_t)(REC_HDR + pos) + got,
                        REC_HDR + size);
  }
  size_t last = size - pos, nb = last / H_BLOCK;
  h_update(&hs, p + pos, nb * H_BLOCK);
  return check_sum(f, loc, h_finish(&hs, p + pos + nb * H_BLOCK, last % H_BLOCK, size));
}

bool rt_spill_mappable(const rt_spill_loc *loc) {
  return loc->size >= RT_SPILL_ALIGN_MIN && loc->offset % PAGE == 0;
}

static size_t map_len(uint64_t size) {
  return (size_t)((REC_HDR + size + PAGE - 1) & ~(uint64_t)(PAGE - 1));
}

ray_status rt_spill_map(rt_spilldir *d, const rt_spill_loc *loc, const void **data) {
  (void)d; /* the record's file stays open while the record lives */
  const rt_spillfile *f = loc->file;
  size_t size = (size_t)loc->size;
  /* A record past the end of the file would fault on access (SIGBUS), not
   * fail a read: check that the file still holds all of it first. */
  struct stat sb;
  if (fstat(f->fd, &sb) != 0) return lost(f, loc->offset, "I/O error: %s", strerror(errno));
  uint64_t end = loc->offset + REC_HDR + size;
  if ((uint64_t)sb.st_size < end) {
    int64_t have = (uint64_t)sb.st_size > loc->offset ? (int64_t)(sb.st_size - loc->offset) : 0;
    return short_read(f, loc->offset, have, REC_HDR + size);
  }
  size_t len = map_len(size);
  unsigned char *base =
      mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, f->fd, (off_t)loc->offset);
  if (base == MAP_FAILED) return lost(f, loc->offset, "I/O error: mmap: %s", strerror(errno));
  rec_hdr h;
  memcpy(&h, base, sizeof h);
  ray_status s = check_header(f, loc, &h);
  if (s == RAY_OK) s = check_sum(f, loc, rt_spill_checksum(base + REC_HDR, size));
  if (s != RAY_OK) {
    munmap(base, len);
    return s;
  }
  *data = base + REC_HDR;
  return RAY_OK;
}

void rt_spill_unmap(const void *data, uint64_t size) {
  munmap((unsigned char *)(uintptr_t)data - REC_HDR, map_len(size));
}

/* ---- forgetting ------------------------------------------------------------ */

void rt_spill_forget(rt_spilldir *d, const rt_spill_loc *loc) {
  rt_spillfile *f = loc->file, *drop = NULL;
  pthread_mutex_lock(&d->lock);
  f->live--;
  d->bytes -= loc->size;
  if (f->live == 0 && f->busy == 0) {
    drop = file_emptied_locked(d, f);
  } else if (loc->size >= RT_SPILL_ALIGN_MIN) {
    /* Whole pages only: a record this size starts on a page, and the next
     * record may start inside its last page. */
    uint64_t a = loc->offset, b = (loc->offset + REC_HDR + loc->size) & ~(uint64_t)(PAGE - 1);
    f->busy++;
    pthread_mutex_unlock(&d->lock);
    (void)rt_prim_punch_hole(f->fd, a, b - a); /* where unsupported the space waits for the file */
    pthread_mutex_lock(&d->lock);
    f->busy--;
    if (f->live == 0 && f->busy == 0) drop = file_emptied_locked(d, f);
  }
  pthread_mutex_unlock(&d->lock);
  if (drop) file_destroy(drop);
}

const char *rt_spill_path(const rt_spill_loc *loc) {
  return loc->file->path;
}

uint64_t rt_spill_bytes(rt_spilldir *d) {
  pthread_mutex_lock(&d->lock);
  uint64_t b = d->bytes;
  pthread_mutex_unlock(&d->lock);
  return b;
}

void rt_spill_test_fail_writes(rt_spilldir *d, uint64_t n, int err) {
  pthread_mutex_lock(&d->lock);
  d->fail_next_writes = n;
  d->fail_errno = err;
  pthread_mutex_unlock(&d->lock);
}

/* ---- the directory --------------------------------------------------------- */

/* "rayc-<pid>" or "rayc-<pid>-<anything>": the pid, or 0. */
static long rayc_dir_pid(const char *name) {
  if (strncmp(name, "rayc-", 5) != 0) return 0;
  const char *p = name + 5;
  long pid = 0;
  if (*p < '0' || *p > '9') return 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    pid = pid * 10 + (*p - '0');
    if (pid > INT_MAX) return 0;
  }
  return (*p == 0 || *p == '-') ? pid : 0;
}

static bool is_spill_file_name(const char *name) {
  size_t n = strlen(name);
  return n > 10 && strncmp(name, "spill-", 6) == 0 && strcmp(name + n - 4, ".bin") == 0;
}

/* Removes one dead process's directory: its regular spill-*.bin files, then
 * the directory itself, which fails (and stays) if anything else is in it.
 * Never follows a symbolic link. */
static void remove_dead_dir(int parent, const char *name) {
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  DIR *dir = fdopendir(fd);
  if (!dir) {
    close(fd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(dir))) {
    struct stat st;
    if (!is_spill_file_name(e->d_name)) continue;
    if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    (void)unlinkat(fd, e->d_name, 0);
  }
  closedir(dir); /* closes fd */
  (void)unlinkat(parent, name, AT_REMOVEDIR);
}

/* Best effort: directories rayc-<pid>[-...] in parent that belong to this
 * user and whose process no longer runs. */
static void clean_dead_dirs(const char *parent) {
  int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) return;
  DIR *dir = fdopendir(pfd);
  if (!dir) {
    close(pfd);
    return;
  }
  long self = (long)rt_prim_pid();
  uid_t uid = geteuid();
  struct dirent *e;
  while ((e = readdir(dir))) {
    long pid = rayc_dir_pid(e->d_name);
    if (pid <= 0 || pid == self) continue;
    struct stat st;
    if (fstatat(pfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISDIR(st.st_mode) || st.st_uid != uid) continue;
    /* ESRCH only: EPERM means the pid runs (as another user). */
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    remove_dead_dir(pfd, e->d_name);
  }
  closedir(dir);
}

/* mkdir -p, mode 0700. 0, or an errno value; *made when the last component
 * was created here. */
static int make_dirs(char *path, bool *made) {
  *made = false;
  for (char *s = path + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    (void)mkdir(path, 0700); /* errors show at the last component */
    *s = '/';
  }
  if (mkdir(path, 0700) == 0) {
    *made = true;
    return 0;
  }
  int err = errno;
  struct stat st;
  if (err == EEXIST) {
    if (stat(path, &st) != 0) return errno;
    return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  }
  return err;
}

ray_status rt_spilldir_open(rt_spilldir *d, const char *path, bool is_default) {
  memset(d, 0, sizeof *d);
  d->path = rt_strdup(path);
  if (!d->path) return rt_fail(RAY_ENOMEM, "ray_init: out of memory for the spill directory");
  size_t n = strlen(d->path);
  while (n > 1 && d->path[n - 1] == '/') d->path[--n] = 0;

  if (is_default) {
    char *slash = strrchr(d->path, '/');
    if (slash == d->path) {
      clean_dead_dirs("/");
    } else if (slash) {
      *slash = 0;
      clean_dead_dirs(d->path);
      *slash = '/';
    } else {
      clean_dead_dirs(".");
    }
  }

  bool made;
  int err = make_dirs(d->path, &made);
  if (err) {
    ray_status s = rt_fail(RAY_EIO, "ray_init: cannot create the spill directory %s: %s", d->path,
                           strerror(err));
    rt_free(d->path);
    d->path = NULL;
    return s;
  }
  /* The default name is this process's own: whatever made it, it goes. */
  d->made = made || is_default;
  err = pthread_mutex_init(&d->lock, NULL);
  if (err) {
    if (made) rmdir(d->path);
    ray_status s = rt_fail(RAY_EIO, "ray_init: spill directory %s: %s", d->path, strerror(err));
    rt_free(d->path);
    d->path = NULL;
    return s;
  }
  return RAY_OK;
}

void rt_spilldir_close(rt_spilldir *d) {
  if (!d->path) return;
  for (rt_spillfile *f = d->files, *nx; f; f = nx) nx = f->next, file_destroy(f);
  d->files = d->cur = NULL;
  if (d->made) (void)rmdir(d->path);
  pthread_mutex_destroy(&d->lock);
  rt_free(d->path);
  d->path = NULL;
}
