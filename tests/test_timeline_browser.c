/*
 * test_timeline_browser.c - the timeline page as a person sees it: a run
 * writes its .html, headless Chromium renders it to a PNG, and the test
 * decodes the PNG (zlib) and looks: the picture is not blank, and each lane
 * the page lists has slice-coloured pixels in its band (the page puts lane
 * i at a fixed height, which its data's "layout" gives); the marks of
 * failed and cancelled slices are drawn in their colours. Chromium also
 * dumps the DOM, in which the page's script leaves data-drawn="N" once it
 * has drawn all N slices (so a script error cannot pass as an empty chart).
 *
 * Two runs: an example program (param_server; CTest gives its path in
 * RAY_TEST_EXAMPLE, or argument 1) with RAY_TIMELINE set, and a workload of this file with a failed
 * and a cancelled task, the main thread's restore and the I/O thread's
 * spill.
 *
 * Without Chromium (or a build without zlib) it prints why and exits 77,
 * which CTest reports as skipped (SKIP_RETURN_CODE). RAY_CHROMIUM names
 * the browser to use; scripts/deps.sh --browser installs Debian's.
 * RAY_TIMELINE_PNG_DIR=DIR keeps the pages and their screenshots there,
 * to look at (NAME.html, NAME.png).
 */
#define _GNU_SOURCE
/* cmocka needs these first, in this order */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ray.h"
#include "test_util.h"

#ifdef RAY_TEST_HAVE_ZLIB
#include <zlib.h>
#endif

#define WIN_W 1400
#define WIN_H 900

static const char *g_chromium;
static const char *g_example;

/* ------------------------------------------------------------------------ */
/* Files and processes                                                      */
/* ------------------------------------------------------------------------ */

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (buf) buf[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* Runs argv with stdout to out_path (NULL: /dev/null) and stderr to
 * err_path, in env extra ("NAME=value", NULL-terminated) added to ours. A
 * hung child is killed by SIGALRM after 120 s. Returns the wait status. */
static int run(char *const argv[], char *const extra[], const char *out_path,
               const char *err_path) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0 || err < 0 || dup2(out, 1) != 1 || dup2(err, 2) != 2) _exit(126);
    for (char *const *e = extra; e && *e; e++) putenv(*e);
    alarm(120);
    execv(argv[0], argv);
    _exit(127);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

/* ------------------------------------------------------------------------ */
/* The page's data                                                          */
/* ------------------------------------------------------------------------ */

typedef struct page {
  int hdr, top, lane, gutter; /* layout, CSS pixels */
  int nlanes;
  char lanes[32][32];
  int busy[32]; /* slices per lane */
  int slices;
} page;

static void read_page(const char *html, page *p) {
  memset(p, 0, sizeof *p);
  const char *l = strstr(html, "\"layout\":{");
  assert_non_null(l);
  assert_int_equal(sscanf(l, "\"layout\":{\"hdr\":%d,\"top\":%d,\"lane\":%d,\"gutter\":%d}",
                          &p->hdr, &p->top, &p->lane, &p->gutter),
                   4);
  const char *q = strstr(html, "\"lanes\":[");
  assert_non_null(q);
  q += 9;
  while (*q == '"') {
    const char *e = strchr(q + 1, '"');
    assert_non_null(e);
    assert_true(p->nlanes < 32);
    snprintf(p->lanes[p->nlanes++], sizeof p->lanes[0], "%.*s", (int)(e - q - 1), q + 1);
    q = e + 1;
    if (*q == ',') q++;
  }
  const char *s = strstr(html, "\"slices\":[");
  assert_non_null(s);
  for (const char *n = strchr(s, '\n'); n && n[1] == '['; n = strchr(n + 1, '\n')) {
    int lane = atoi(n + 2);
    assert_true(lane >= 0 && lane < p->nlanes);
    p->busy[lane]++;
    p->slices++;
  }
}

/* ------------------------------------------------------------------------ */
/* PNG                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct image {
  int w, h;
  unsigned char *rgb; /* w * h * 3 */
} image;

#ifdef RAY_TEST_HAVE_ZLIB
static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c) {
  int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes). */
static void png_decode(const unsigned char *f, size_t n, image *img) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  assert_true(n > 8 && !memcmp(f, sig, 8));
  unsigned char *z = NULL;
  size_t zn = 0;
  int depth = 0, type = 0, interlace = 0;
  img->w = img->h = 0;
  for (size_t at = 8; at + 12 <= n;) {
    uint32_t len = be32(f + at);
    const unsigned char *kind = f + at + 4, *data = f + at + 8;
    assert_true(at + 12 + len <= n);
    if (!memcmp(kind, "IHDR", 4)) {
      img->w = (int)be32(data);
      img->h = (int)be32(data + 4);
      depth = data[8];
      type = data[9];
      interlace = data[12];
    } else if (!memcmp(kind, "IDAT", 4)) {
      z = realloc(z, zn + len);
      assert_non_null(z);
      memcpy(z + zn, data, len);
      zn += len;
    } else if (!memcmp(kind, "IEND", 4)) {
      break;
    }
    at += 12 + len;
  }
  if (depth != 8 || (type != 2 && type != 6) || interlace != 0)
    fail_msg("a PNG this decoder does not read: depth %d, colour type %d, interlace %d", depth,
             type, interlace);
  int bpp = type == 6 ? 4 : 3;
  size_t stride = (size_t)img->w * (size_t)bpp;
  uLongf rawn = (uLongf)((stride + 1) * (size_t)img->h);
  unsigned char *raw = malloc(rawn);
  assert_non_null(raw);
  assert_int_equal(uncompress(raw, &rawn, z, (uLong)zn), Z_OK);
  assert_int_equal(rawn, (stride + 1) * (size_t)img->h);
  free(z);
  /* unfilter in place, row by row */
  for (int y = 0; y < img->h; y++) {
    unsigned char *row = raw + (size_t)y * (stride + 1) + 1;
    const unsigned char *up = y ? row - (stride + 1) : NULL;
    int filter = row[-1];
    for (size_t i = 0; i < stride; i++) {
      int a = i >= (size_t)bpp ? row[i - (size_t)bpp] : 0, b = up ? up[i] : 0;
      int c = up && i >= (size_t)bpp ? up[i - (size_t)bpp] : 0;
      switch (filter) {
      case 0:
        break;
      case 1:
        row[i] = (unsigned char)(row[i] + a);
        break;
      case 2:
        row[i] = (unsigned char)(row[i] + b);
        break;
      case 3:
        row[i] = (unsigned char)(row[i] + (a + b) / 2);
        break;
      case 4:
        row[i] = (unsigned char)(row[i] + paeth(a, b, c));
        break;
      default:
        fail_msg("PNG row %d has filter %d", y, filter);
      }
    }
  }
  img->rgb = malloc((size_t)img->w * (size_t)img->h * 3);
  assert_non_null(img->rgb);
  for (int y = 0; y < img->h; y++)
    for (int x = 0; x < img->w; x++)
      memcpy(img->rgb + ((size_t)y * (size_t)img->w + (size_t)x) * 3,
             raw + (size_t)y * (stride + 1) + 1 + (size_t)x * (size_t)bpp, 3);
  free(raw);
}
#endif

static const unsigned char *px(const image *img, int x, int y) {
  return img->rgb + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
}

/* A slice's colour: saturated (backgrounds, grid and text are greys). */
static bool saturated(const unsigned char *p) {
  int mx = p[0], mn = p[0];
  for (int i = 1; i < 3; i++) {
    if (p[i] > mx) mx = p[i];
    if (p[i] < mn) mn = p[i];
  }
  return mx - mn >= 40;
}

static int count_in(const image *img, int x0, int y0, int x1, int y1,
                    bool (*pred)(const unsigned char *, const void *), const void *arg) {
  int n = 0;
  for (int y = y0; y < y1 && y < img->h; y++)
    for (int x = x0; x < x1 && x < img->w; x++) n += pred(px(img, x, y), arg);
  return n;
}
static bool is_saturated(const unsigned char *p, const void *arg) {
  (void)arg;
  return saturated(p);
}
static bool is_dark(const unsigned char *p, const void *arg) {
  (void)arg;
  return p[0] + p[1] + p[2] < 3 * 110;
}
static bool is_colour(const unsigned char *p, const void *arg) {
  const unsigned char *c = arg;
  return p[0] == c[0] && p[1] == c[1] && p[2] == c[2];
}

/* Distinct colours in the image, up to cap. */
static int distinct_colours(const image *img, int cap) {
  uint32_t *seen = calloc((size_t)cap, sizeof *seen);
  assert_non_null(seen);
  int n = 0;
  for (int i = 0; i < img->w * img->h && n < cap; i += 7) {
    const unsigned char *p = img->rgb + (size_t)i * 3;
    uint32_t c = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2] | 1u << 24;
    bool found = false;
    for (int k = 0; k < n && !found; k++) found = seen[k] == c;
    if (!found) seen[n++] = c;
  }
  free(seen);
  return n;
}

/* ------------------------------------------------------------------------ */
/* Rendering and the checks                                                 */
/* ------------------------------------------------------------------------ */

/* Renders html (a file) to a PNG (img NULL: not) and dumps its DOM (the
 * DOM after the scripts ran; free it). */
static void render(const char *html, const char *name, image *img, char **dom) {
  char profile[] = "/tmp/rayc-chromium-XXXXXX";
  assert_non_null(mkdtemp(profile));
  char png[128], url[256], udd[160], shot[160], log[128], domf[128];
  const char *keep = getenv("RAY_TIMELINE_PNG_DIR");
  snprintf(png, sizeof png, "%s/%s.png", keep && *keep ? keep : profile, name);
  snprintf(url, sizeof url, "file://%s", html);
  snprintf(udd, sizeof udd, "--user-data-dir=%s", profile);
  snprintf(shot, sizeof shot, "--screenshot=%s", png);
  snprintf(log, sizeof log, "%s/chromium.log", profile);
  snprintf(domf, sizeof domf, "%s/dom.html", profile);
  char size[32];
  snprintf(size, sizeof size, "--window-size=%d,%d", WIN_W, WIN_H);
  char *common[] = {(char *)g_chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    udd,
                    size,
                    NULL,
                    url,
                    NULL};
  int st;
  if (img) {
    common[13] = shot;
    st = run(common, NULL, NULL, log);
    unsigned char *errs = slurp(log, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      fail_msg("chromium --screenshot failed (status %d):\n%.3000s", st, errs ? (char *)errs : "");
    free(errs);
  }
  common[13] = "--dump-dom";
  st = run(common, NULL, domf, log);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("chromium --dump-dom failed (%d)", st);
  *dom = (char *)slurp(domf, NULL);
  assert_non_null(*dom);
  if (!img) {
    nftw(profile, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return;
  }

  size_t n = 0;
  unsigned char *file = slurp(png, &n);
  if (!file) fail_msg("chromium wrote no screenshot at %s", png);
#ifdef RAY_TEST_HAVE_ZLIB
  png_decode(file, n, img);
#else
  (void)img;
#endif
  free(file);
  nftw(profile, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* What every page must show; returns the page's data for more checks. */
static void check_picture(const char *html_path, const char *name, page *pg, image *img) {
  unsigned char *html = slurp(html_path, NULL);
  assert_non_null(html);
  read_page((const char *)html, pg);
  free(html);
  assert_true(pg->nlanes >= 1);
  assert_true(pg->slices >= 1);
  int chart_top = pg->hdr + pg->top;
  if (chart_top + pg->nlanes * pg->lane > WIN_H)
    fail_msg("%d lanes do not fit the %d-pixel window", pg->nlanes, WIN_H);

  const char *keep = getenv("RAY_TIMELINE_PNG_DIR");
  if (keep && *keep) {
    char copy[256];
    snprintf(copy, sizeof copy, "cp '%s' '%s/%s.html'", html_path, keep, name);
    assert_int_equal(system(copy), 0);
  }
  char *dom;
  render(html_path, name, img, &dom);
  char drawn[64];
  snprintf(drawn, sizeof drawn, "data-drawn=\"%d\"", pg->slices);
  if (!strstr(dom, drawn)) fail_msg("the page's script did not draw its %d slices", pg->slices);
  free(dom);
  assert_int_equal(img->w, WIN_W);
  assert_int_equal(img->h, WIN_H);

  /* not blank: many colours, and slice colours all over the chart */
  int colours = distinct_colours(img, 64);
  if (colours < 12) fail_msg("%s: only %d distinct colours", name, colours);
  int plot_x0 = pg->gutter, plot_x1 = WIN_W - 16;
  int slice_px = count_in(img, plot_x0, chart_top, plot_x1, chart_top + pg->nlanes * pg->lane,
                          is_saturated, NULL);
  if (slice_px < 400) fail_msg("%s: only %d slice-coloured pixels in the chart", name, slice_px);
  /* the header: its title in light text on dark */
  assert_true(count_in(img, 0, 0, WIN_W, pg->hdr, is_dark, NULL) > WIN_W * pg->hdr / 2);

  /* each lane: its name in the gutter; slices in its band if it ran
   * something, nothing if it did not (an idle worker) */
  for (int l = 0; l < pg->nlanes; l++) {
    int y0 = chart_top + l * pg->lane, y1 = y0 + pg->lane;
    int in_band = count_in(img, plot_x0, y0, plot_x1, y1, is_saturated, NULL);
    if (pg->busy[l] ? in_band < 12 : in_band != 0)
      fail_msg("%s: lane %d (%s, %d slices) has %d slice-coloured pixels in rows %d..%d", name, l,
               pg->lanes[l], pg->busy[l], in_band, y0, y1);
    int label = count_in(img, 8, y0, pg->gutter - 12, y1, is_dark, NULL);
    if (label < 15) fail_msg("%s: lane %d (%s) has no name drawn", name, l, pg->lanes[l]);
  }
  /* and nothing drawn below the last lane */
  int below = count_in(img, plot_x0, chart_top + pg->nlanes * pg->lane + 1, plot_x1,
                       chart_top + pg->nlanes * pg->lane + 8, is_saturated, NULL);
  assert_int_equal(below, 0);
}

static void test_an_examples_page_shows_every_lane(void **state) {
  (void)state;
  if (!g_example) skip();
  char html[] = "/tmp/rayc-page-XXXXXX.html";
  int fd = mkstemps(html, 5);
  assert_true(fd >= 0);
  close(fd);
  char env_tl[128], log[] = "/tmp/rayc-example-XXXXXX";
  snprintf(env_tl, sizeof env_tl, "RAY_TIMELINE=%s", html);
  assert_true((fd = mkstemp(log)) >= 0);
  close(fd);
  char *argv[] = {(char *)g_example, NULL};
  char *env[] = {env_tl, "RAY_NUM_WORKERS=4", NULL};
  int st = run(argv, env, NULL, log);
  unsigned char *out = slurp(log, NULL);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("%s failed (status %d):\n%s", g_example, st, out ? (char *)out : "");
  free(out);
  unlink(log);
  page pg;
  image img = {0};
  check_picture(html, "example", &pg, &img);
  bool worker = false;
  for (int l = 0; l < pg.nlanes; l++) worker |= !strncmp(pg.lanes[l], "worker ", 7);
  assert_true(worker);
  free(img.rgb);
  unlink(html);
}

/* What a person does with the page, done by a script added to a copy of
 * it: find a failed slice by its outline colour in the canvas, move the
 * mouse over it and keep the tooltip's text; zoom with the wheel, drag,
 * and double-click, noting whether the picture changed each time (and came
 * back on the reset). The results go to attributes of <body>, which the
 * DOM dump shows. */
static const char k_probe[] =
    "<script>(function () {\n"
    "var cv = document.getElementById('cv'), g = cv.getContext('2d'), b = "
    "cv.getBoundingClientRect();\n"
    "function pic() { var d = g.getImageData(0, 0, cv.width, cv.height).data, h = 0;\n"
    "  for (var i = 0; i < d.length; i += 4) h = (Math.imul(h, 31) + d[i] + d[i + 1] * 7 + d[i + "
    "2] * 13) | 0;\n"
    "  return h; }\n"
    "function at(type, x, y, extra) { var o = { clientX: b.left + x, clientY: b.top + y, bubbles: "
    "true,\n"
    "  cancelable: true }; for (var k in extra) o[k] = extra[k];\n"
    "  cv.dispatchEvent(type === 'wheel' ? new WheelEvent(type, o) : new MouseEvent(type, o)); }\n"
    "var d = g.getImageData(0, 0, cv.width, cv.height).data, fx = -1, fy = -1;\n"
    "for (var i = 0; i < d.length && fx < 0; i += 4)\n"
    "  if (d[i] === 224 && d[i + 1] === 16 && d[i + 2] === 58) { fx = (i / 4) % cv.width; fy = "
    "Math.floor(i / 4 / cv.width); }\n"
    "var body = document.body;\n"
    "if (fx >= 0) { at('mousemove', fx + 3, fy + 4);\n"
    "  body.setAttribute('data-tip', document.getElementById('tip').textContent);\n"
    "  body.setAttribute('data-tip-shown', document.getElementById('tip').style.display); }\n"
    "var p0 = pic(), mx = Math.round(cv.width * 0.6), my = 40;\n"
    "at('wheel', mx, my, { deltaY: -600 }); var p1 = pic();\n"
    "at('mousedown', mx, my); at('mousemove', mx + 150, my); window.dispatchEvent(new "
    "MouseEvent('mouseup'));\n"
    "var p2 = pic(); at('dblclick', mx, my); var p3 = pic();\n"
    "body.setAttribute('data-zoomed', String(p1 !== p0)); body.setAttribute('data-panned', "
    "String(p2 !== p1));\n"
    "body.setAttribute('data-reset', String(p3 === p0));\n"
    "})();</script>\n";

static void check_interaction(const char *html_path) {
  size_t n;
  unsigned char *html = slurp(html_path, &n);
  assert_non_null(html);
  char *end = strstr((char *)html, "</body>");
  assert_non_null(end);
  char probe_path[] = "/tmp/rayc-probe-XXXXXX.html";
  int fd = mkstemps(probe_path, 5);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fwrite(html, 1, (size_t)(end - (char *)html), f);
  fputs(k_probe, f);
  fputs(end, f);
  assert_int_equal(fclose(f), 0);
  free(html);
  char *dom;
  render(probe_path, "probe", NULL, &dom);
  unlink(probe_path);
  const char *want[] = {"data-tip-shown=\"block\"", "data-zoomed=\"true\"", "data-panned=\"true\"",
                        "data-reset=\"true\""};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (!strstr(dom, want[i])) fail_msg("after the probe, the DOM lacks %s", want[i]);
  /* the tooltip of a failed slice: its name, status, times and object */
  const char *tip = strstr(dom, "data-tip=\"");
  assert_non_null(tip);
  const char *parts[] = {
      "validate",  "task on worker ", "after ray_init, took ", "status RAY_ETASK (failed)",
      "attempt 1", "object "};
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
    if (!strstr(tip, parts[i])) fail_msg("the tooltip lacks \"%s\": %.300s", parts[i], tip);
  free(dom);
}

/* ---- a workload with every kind of lane and mark -------------------------- */

static _Atomic int g_running;
static ray_status work(ray_ctx *ctx) {
  /* long enough to be seen at the page's first zoom */
  volatile double x = 0;
  for (int i = 0; i < 200000; i++) x = x + i * 0.5;
  int64_t v = (int64_t)x;
  return ray_ctx_return(ctx, 0, &v, sizeof v, &ray_type_i64);
}
static ray_status broken(ray_ctx *ctx) {
  work(ctx);
  return ray_ctx_fail(ctx, "on purpose");
}
static ray_status stubborn(ray_ctx *ctx) {
  atomic_fetch_add(&g_running, 1);
  while (!ray_ctx_cancelled(ctx)) usleep(100);
  return work(ctx);
}
static ray_status step(void *state, ray_ctx *ctx) {
  (void)state;
  return work(ctx);
}
static const ray_method k_methods[] = {{"step", step}};
static const ray_actor_class k_sim = {"Simulator", 0, NULL, NULL, k_methods, 1};

static ray_ref *submit(ray_task_fn fn, const char *name) {
  ray_task_opts o = RAY_TASK_OPTS_INIT;
  o.name = name;
  ray_ref *r = NULL;
  CHECK_OK(ray_submit(fn, NULL, 0, &o, &r));
  return r;
}

static void test_a_workloads_page_marks_failed_and_cancelled_slices(void **state) {
  (void)state;
  char html[] = "/tmp/rayc-page-XXXXXX.html";
  int fd = mkstemps(html, 5);
  assert_true(fd >= 0);
  close(fd);
  ray_config cfg;
  ray_config_init(&cfg);
  cfg.num_workers = 3;
  cfg.object_store_memory = 2 << 20;
  cfg.timeline_path = html;
  CHECK_OK(ray_init(&cfg));
  enum { N = 40 };
  ray_ref *r[N + 8];
  size_t n = 0;
  for (int i = 0; i < N; i++) r[n++] = submit(work, i % 3 ? "transform" : "load");
  r[n++] = submit(broken, "validate");
  r[n++] = submit(broken, "validate");
  atomic_store(&g_running, 0);
  r[n++] = submit(stubborn, "long_poll");
  WAIT_UNTIL(atomic_load(&g_running) == 1, "long_poll running");
  CHECK_OK(ray_cancel(r[n - 1], false));
  ray_actor *a;
  CHECK_OK(ray_actor_create(&k_sim, NULL, 0, NULL, &a));
  for (int i = 0; i < 4; i++) CHECK_OK(ray_actor_call(a, 0, NULL, 0, &r[n++]));
  bool ready[N + 8];
  CHECK_OK(ray_wait(r, n, n, -1, ready));
  for (size_t i = 0; i < n; i++) ray_ref_release(r[i]);
  ray_actor_release(a);
  /* a spill on rayc-io, a restore on the main thread */
  char *buf = calloc(1, 1 << 20);
  assert_non_null(buf);
  ray_ref *o[3];
  for (int i = 0; i < 3; i++) CHECK_OK(ray_put(buf, 1 << 20, NULL, &o[i]));
  ray_view v;
  CHECK_OK(ray_get(o[0], NULL, -1, &v));
  ray_view_release(&v);
  for (int i = 0; i < 3; i++) ray_ref_release(o[i]);
  free(buf);
  CHECK_OK(ray_shutdown());

  page pg;
  image img = {0};
  check_picture(html, "workload", &pg, &img);
  bool main_lane = false, io_lane = false;
  for (int l = 0; l < pg.nlanes; l++) {
    main_lane |= !strcmp(pg.lanes[l], "main thread");
    io_lane |= !strcmp(pg.lanes[l], "rayc-io");
  }
  assert_true(main_lane);
  assert_true(io_lane);
  /* the marks' outlines, in the page's colours */
  static const unsigned char failed[3] = {0xe0, 0x10, 0x3a}, cancelled[3] = {0x55, 0x5b, 0x6e};
  int chart_top = pg.hdr + pg.top, chart_bottom = chart_top + pg.nlanes * pg.lane;
  int f = count_in(&img, pg.gutter, chart_top, WIN_W, chart_bottom, is_colour, failed);
  int c = count_in(&img, pg.gutter, chart_top, WIN_W, chart_bottom, is_colour, cancelled);
  if (f < 2 * 20) fail_msg("the failed slices' outline: %d pixels", f);
  if (c < 20) fail_msg("the cancelled slice's outline: %d pixels", c);
  free(img.rgb);
  check_interaction(html);
  unlink(html);
}

/* The browser to use: $RAY_CHROMIUM, else chromium or chromium-browser. */
static const char *find_chromium(void) {
  const char *env = getenv("RAY_CHROMIUM");
  if (env && *env) return access(env, X_OK) == 0 ? env : NULL;
  static const char *const names[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser",
                                      "/usr/local/bin/chromium"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (access(names[i], X_OK) == 0) return names[i];
  return NULL;
}

int main(int argc, char **argv) {
  unsetenv("RAY_TIMELINE");
  unsetenv("RAY_TIMELINE_SUMMARY");
  g_example = argc > 1 ? argv[1] : getenv("RAY_TEST_EXAMPLE");
  if (g_example && !*g_example) g_example = NULL;
#ifndef RAY_TEST_HAVE_ZLIB
  fprintf(stderr, "SKIP: test_timeline_browser: built without zlib (Debian: zlib1g-dev), so the "
                  "screenshots cannot be read; scripts/deps.sh --browser installs it\n");
  return 77;
#endif
  if (!(g_chromium = find_chromium())) {
    fprintf(stderr, "SKIP: test_timeline_browser: no Chromium (looked for $RAY_CHROMIUM, "
                    "/usr/bin/chromium, /usr/bin/chromium-browser); the timeline page was not "
                    "rendered. Install it with scripts/deps.sh --browser (Debian: chromium)\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_examples_page_shows_every_lane),
      cmocka_unit_test(test_a_workloads_page_marks_failed_and_cancelled_slices),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
