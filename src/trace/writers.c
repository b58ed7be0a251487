/*
 * writers.c - the Chrome trace (JSON) and the text summary of a snapshot.
 *
 * Chrome trace: one complete event ("ph":"X") per slice, ts and dur in
 * microseconds since ray_init; one thread per lane, with ids 1, 2, ... in
 * lane order (ids 0 and below trip up some viewers), each named by a
 * thread_name event and ordered by thread_sort_index; the process name
 * carries the dropped count.
 */
#include <inttypes.h>
#include <string.h>

#include "trace/timeline_int.h"

/* Length of the valid UTF-8 sequence at p (1..4), 0 if it is not one. */
static int utf8_len(const unsigned char *p) {
  int n = p[0] < 0x80                   ? 1
          : p[0] >= 0xC2 && p[0] < 0xE0 ? 2
          : p[0] >= 0xE0 && p[0] < 0xF0 ? 3
          : p[0] >= 0xF0 && p[0] < 0xF5 ? 4
                                        : 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  /* overlong forms, surrogates and values above U+10FFFF */
  if (n == 3 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] >= 0xA0))) return 0;
  if (n == 4 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] >= 0x90))) return 0;
  return n;
}

void rt_tl_put_json_str(FILE *f, const char *s, bool html) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned char c = *p;
    int n = utf8_len(p);
    if (n == 0) {
      fputs("\\ufffd", f);
      p++;
    } else if (n > 1) {
      fwrite(p, 1, (size_t)n, f);
      p += n;
    } else {
      if (c == '"' || c == '\\')
        fprintf(f, "\\%c", c);
      else if (c < 0x20 || (html && (c == '<' || c == '>' || c == '&')))
        fprintf(f, "\\u%04x", c);
      else
        fputc(c, f);
      p++;
    }
  }
}

const char *rt_tl_fmt_dur(uint64_t ns, char buf[16]) {
  if (ns < 1000)
    snprintf(buf, 16, "%" PRIu64 " ns", ns);
  else if (ns < 1000000)
    snprintf(buf, 16, "%.1f us", (double)ns / 1e3);
  else if (ns < 1000000000)
    snprintf(buf, 16, "%.2f ms", (double)ns / 1e6);
  else
    snprintf(buf, 16, "%.2f s", (double)ns / 1e9);
  return buf;
}

void rt_tl_write_chrome_events(const tl_snap *s, FILE *f, const char *label) {
  for (size_t i = 0; i < s->n; i++) {
    const tl_event *e = s->items[i].e;
    fputs("{\"name\":\"", f);
    rt_tl_put_json_str(f, e->name, false);
    fprintf(f,
            "\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%" PRIu32
            ",\"tid\":%" PRIu32 ",\"args\":{\"id\":%" PRIu64 ",\"attempt\":%d,\"status\":\"%s\"",
            e->kind, (double)(e->start_ns - s->t0_ns) / 1e3,
            (double)(e->end_ns - e->start_ns) / 1e3, s->pid, s->items[i].lane + 1, e->id,
            e->attempt, ray_status_name(e->status));
    if (e->cancelled) fputs(",\"cancelled\":true", f);
    if (e->obj[0]) fprintf(f, ",\"object\":\"%.*s\"", RT_TL_OBJ_LEN, e->obj);
    if (e->nobj > 1) fprintf(f, ",\"results\":%u", (unsigned)e->nobj);
    fputs("}},\n", f);
  }
  for (size_t l = 0; l < s->nlanes; l++) {
    fprintf(f,
            "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%" PRIu32 ",\"tid\":%zu,"
            "\"args\":{\"name\":\"",
            s->pid, l + 1);
    rt_tl_put_json_str(f, s->lanes[l].name, false);
    fprintf(f,
            "\"}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%" PRIu32 ",\"tid\":%zu,"
            "\"args\":{\"sort_index\":%zu}},\n",
            s->pid, l + 1, l + 1);
  }
  fprintf(f,
          "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%" PRIu32 ",\"args\":{\"name\":"
          "\"%s (%" PRIu64 " events dropped)\"}},\n",
          s->pid, label, s->dropped);
}

void rt_tl_write_chrome(const tl_snap *s, FILE *f, const char *extra, size_t extra_len) {
  fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
  rt_tl_write_chrome_events(s, f, extra_len ? "rayc rank 0" : "rayc");
  if (extra_len) fwrite(extra, 1, extra_len, f);
  /* Every object above ends with ",\n": one last one closes the array. */
  fprintf(f,
          "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%" PRIu32
          ",\"args\":{\"sort_index\":0}}\n]}\n",
          s->pid);
}

void rt_tl_write_summary(const tl_snap *s, FILE *f) {
  char a[16], b[16], c[16], d[16];
  fprintf(f,
          "rayc timeline summary: %zu slices on %zu lanes in the first %s since ray_init; "
          "%" PRIu64 " failed, %" PRIu64 " cancelled, %" PRIu64 " events dropped\n",
          s->n, s->nlanes, rt_tl_fmt_dur(s->taken_ns - s->t0_ns, a), s->failed, s->cancelled,
          s->dropped);
  int w = 4; /* "name" */
  for (size_t g = 0; g < s->ngroups; g++) {
    int len = (int)strlen(s->groups[g].name);
    if (len > w) w = len;
  }
  fprintf(f, "%-*s  %-14s %8s %11s %11s %11s %11s %7s %9s\n", w, "name", "kind", "count", "total",
          "mean", "p50", "p99", "failed", "cancelled");
  for (size_t i = 0; i < s->ngroups; i++) {
    const tl_group *g = &s->groups[s->by_total[i]];
    fprintf(f, "%-*s  %-14s %8" PRIu64 " %11s %11s %11s %11s %7" PRIu64 " %9" PRIu64 "\n", w,
            g->name, g->kind, g->count, rt_tl_fmt_dur(g->total_ns, a),
            rt_tl_fmt_dur(g->total_ns / g->count, b), rt_tl_fmt_dur(g->p50_ns, c),
            rt_tl_fmt_dur(g->p99_ns, d), g->failed, g->cancelled);
  }
}
