/*
 * config.c - ray_config defaults, RAY_* environment overrides, validation.
 *
 * A malformed environment value must not fall back to a default silently (a
 * typo in RAY_OBJECT_STORE_MEMORY would otherwise run with 30% of RAM), yet
 * ray_config_init cannot fail; so it records the problem in cfg->env_error
 * and ray_init refuses the config with that text.
 *
 * Zero means the default in every field, so that `ray_config cfg = {0}` is
 * as good as ray_config_init: rt_config_resolve fills each zero field from
 * a ray_config_init of its own (the environment, else the built-in
 * default), and refuses a malformed RAY_* variable for every config. A
 * config from ray_config_init gets the same values twice, which is why
 * "0 means the default" and "ray_config_init fills the default" agree.
 * put_timeout_ms 0 is the default too; "do not wait" is RAY_PUT_NO_WAIT
 * (RAY_PUT_TIMEOUT_MS=0 in the environment, where no struct is zeroed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/error.h"
#include "core/prim.h"
#include "core/types.h"

bool rt_parse_bytes(const char *s, size_t *out) {
  if (!s || *s < '0' || *s > '9') return false;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return false;
  unsigned shift = 0;
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    end++;
    break;
  case 'm':
  case 'M':
    shift = 20;
    end++;
    break;
  case 'g':
  case 'G':
    shift = 30;
    end++;
    break;
  case 't':
  case 'T':
    shift = 40;
    end++;
    break;
  default:
    break;
  }
  if (*end == 'B' || *end == 'b') end++; /* "64MB", "1GB" read naturally */
  if (*end != '\0') return false;
  if (shift && v > (SIZE_MAX >> shift)) return false;
  *out = (size_t)(v << shift);
  return true;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
  if (!s || !*s) return false;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static void env_bad(ray_config *cfg, const char *var, const char *val, const char *want) {
  if (cfg->env_error[0]) return; /* report the first problem */
  snprintf(cfg->env_error, sizeof cfg->env_error, "%s='%.60s' is not %s", var, val, want);
}

void ray_config_init(ray_config *cfg) {
  if (!cfg) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->put_timeout_ms = 10000;

  const char *v;
  long long n;
  if ((v = getenv("RAY_NUM_WORKERS")) != NULL) {
    if (parse_int(v, 0, 4096, &n))
      cfg->num_workers = (int)n;
    else
      env_bad(cfg, "RAY_NUM_WORKERS", v, "an integer from 0 to 4096");
  }
  if ((v = getenv("RAY_OBJECT_STORE_MEMORY")) != NULL) {
    size_t b;
    if (rt_parse_bytes(v, &b) && b > 0)
      cfg->object_store_memory = b;
    else
      env_bad(cfg, "RAY_OBJECT_STORE_MEMORY", v, "a byte size > 0 (digits, optional K/M/G)");
  }
  if ((v = getenv("RAY_PUT_TIMEOUT_MS")) != NULL) {
    if (parse_int(v, -1, INT64_MAX, &n))
      cfg->put_timeout_ms = n ? n : RAY_PUT_NO_WAIT;
    else
      env_bad(cfg, "RAY_PUT_TIMEOUT_MS", v, "an integer >= -1");
  }
  if ((v = getenv("RAY_SPILL_DIR")) != NULL) {
    if (*v)
      cfg->spill_dir = v;
    else
      env_bad(cfg, "RAY_SPILL_DIR", v, "a directory path");
  }
  if ((v = getenv("RAY_TIMELINE")) != NULL) {
    if (*v)
      cfg->timeline_path = v;
    else
      env_bad(cfg, "RAY_TIMELINE", v, "a file path");
  }
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = rt_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

ray_status rt_config_resolve(const ray_config *cfg, rt_config *out) {
  ray_config defaults; /* the built-in defaults with the RAY_* overrides */
  ray_config_init(&defaults);
  if (!cfg) cfg = &defaults;
  if (memchr(cfg->env_error, '\0', sizeof cfg->env_error) == NULL)
    return rt_fail(RAY_EINVAL, "ray_init: config.env_error is not a string (initialise the "
                               "config with {0} or ray_config_init)");
  if (cfg->env_error[0]) return rt_fail(RAY_EINVAL, "ray_init: %s", cfg->env_error);
  if (defaults.env_error[0]) return rt_fail(RAY_EINVAL, "ray_init: %s", defaults.env_error);
  if (!RT_RESERVED_ZERO(cfg->reserved_))
    return rt_fail(RAY_EINVAL, "ray_init: config.reserved_ is not zero (initialise the config "
                               "with {0} or ray_config_init)");
  if (cfg->num_workers < 0)
    return rt_fail(RAY_EINVAL, "ray_init: num_workers %d is negative", cfg->num_workers);
  if (cfg->num_workers > 4096)
    return rt_fail(RAY_EINVAL, "ray_init: num_workers %d is more than 4096", cfg->num_workers);
  if (cfg->put_timeout_ms < RAY_PUT_NO_WAIT)
    return rt_fail(RAY_EINVAL,
                   "ray_init: put_timeout_ms %lld is below RAY_PUT_NO_WAIT (%d; -1 waits "
                   "forever, 0 is the default)",
                   (long long)cfg->put_timeout_ms, RAY_PUT_NO_WAIT);
  if (cfg->spill_dir && !cfg->spill_dir[0])
    return rt_fail(RAY_EINVAL, "ray_init: spill_dir is an empty string");
  if (cfg->timeline_path && !cfg->timeline_path[0])
    return rt_fail(RAY_EINVAL, "ray_init: timeline_path is an empty string");

  /* Zero fields take the environment's value, else the built-in default. */
  int workers = cfg->num_workers ? cfg->num_workers : defaults.num_workers;
  size_t memory =
      cfg->object_store_memory ? cfg->object_store_memory : defaults.object_store_memory;
  int64_t put_timeout = cfg->put_timeout_ms ? cfg->put_timeout_ms : defaults.put_timeout_ms;
  const char *spill_dir = cfg->spill_dir ? cfg->spill_dir : defaults.spill_dir;
  const char *timeline = cfg->timeline_path ? cfg->timeline_path : defaults.timeline_path;

  rt_config c = {0};
  c.num_workers = workers ? workers : rt_prim_cpu_count();
  c.memory_limit = memory ? memory : (size_t)(rt_prim_ram_bytes() / 10 * 3);
  /* The store's own convention: 0 fails at once. */
  c.put_timeout_ms = put_timeout == RAY_PUT_NO_WAIT ? 0 : put_timeout;
  if (spill_dir) {
    c.spill_dir = dup_str(spill_dir);
  } else {
    const char *tmp = getenv("TMPDIR");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/rayc-%u", tmp && *tmp ? tmp : "/tmp", rt_prim_pid());
    c.spill_dir = dup_str(buf);
    c.spill_dir_is_default = true;
  }
  if (timeline) c.timeline_path = dup_str(timeline);
  if (!c.spill_dir || (timeline && !c.timeline_path)) {
    rt_config_free(&c);
    return rt_fail(RAY_ENOMEM, "ray_init: out of memory copying the config strings");
  }
  *out = c;
  return RAY_OK;
}

void rt_config_free(rt_config *c) {
  free(c->spill_dir);
  free(c->timeline_path);
  c->spill_dir = c->timeline_path = NULL;
}
