/*
 * config.h - the runtime's resolved configuration: defaults filled in,
 * strings copied, everything validated by rt_config_resolve.
 */
#ifndef RT_CONFIG_H
#define RT_CONFIG_H

#include <stdint.h>

#include "ray.h"

typedef struct rt_config {
  int num_workers;           /* >= 1 */
  size_t memory_limit;       /* > 0 */
  char *spill_dir;           /* owned; never NULL */
  bool spill_dir_is_default; /* we made the name, so we remove the directory */
  int64_t put_timeout_ms;    /* -1 forever, 0 fails at once (RAY_PUT_NO_WAIT), > 0 ms */
  char *timeline_path;       /* owned; NULL: off */
} rt_config;

/* Checks cfg (NULL: ray_config_init) and fills *out. On failure sets the
 * last error and returns RAY_EINVAL or RAY_ENOMEM; *out holds nothing. */
ray_status rt_config_resolve(const ray_config *cfg, rt_config *out);
void rt_config_free(rt_config *c);

/* Parses "123", "64K", "512m", "2G" (x1024 per step) into *out. */
bool rt_parse_bytes(const char *s, size_t *out);

#endif
