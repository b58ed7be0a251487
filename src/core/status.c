/*
 * status.c - the library's version, status names, descriptions and the
 * per-thread last error.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/error.h"

static const struct {
  const char *name, *text;
} k_status[] = {
    [RAY_OK] = {"RAY_OK", "success"},
    [RAY_EINVAL] = {"RAY_EINVAL", "invalid argument"},
    [RAY_ETIMEOUT] = {"RAY_ETIMEOUT", "timed out"},
    [RAY_ETYPE] = {"RAY_ETYPE", "object type mismatch"},
    [RAY_ETASK] = {"RAY_ETASK", "task failed"},
    [RAY_ECANCELLED] = {"RAY_ECANCELLED", "task cancelled"},
    [RAY_EACTOR] = {"RAY_EACTOR", "actor died or ended"},
    [RAY_ESTOREFULL] = {"RAY_ESTOREFULL", "object store full"},
    [RAY_ELOST] = {"RAY_ELOST", "object lost"},
    [RAY_ENOMEM] = {"RAY_ENOMEM", "out of memory"},
    [RAY_ENOTFOUND] = {"RAY_ENOTFOUND", "not found"},
    [RAY_EEXIST] = {"RAY_EEXIST", "already exists"},
    [RAY_ESHUTDOWN] = {"RAY_ESHUTDOWN", "runtime not running"},
    [RAY_EIO] = {"RAY_EIO", "I/O error"},
};

/* Compiled from the header the library is built with, so a program can tell
 * the libray.so it runs against from the ray.h it was compiled with. */
const char *ray_version(void) {
  return RAY_VERSION_STRING;
}

#define NSTATUS (sizeof k_status / sizeof k_status[0])

const char *ray_status_name(ray_status s) {
  return (unsigned)s < NSTATUS ? k_status[s].name : "RAY_E?";
}

const char *ray_strerror(ray_status s) {
  return (unsigned)s < NSTATUS ? k_status[s].text : "unknown status";
}

/* 512 bytes: long enough for a message naming an object, two types and a
 * path; a longer message is truncated, never overflowed. */
static _Thread_local char t_last_error[512];

const char *ray_last_error(void) {
  return t_last_error;
}

void rt_clear_error(void) {
  t_last_error[0] = '\0';
}

void rt_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_last_error, sizeof t_last_error, fmt, ap);
  va_end(ap);
}

void rt_warn(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "rayc: %s\n", line);
}
