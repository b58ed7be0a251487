/*
 * symbol.c - function names for code addresses, from the modules' own
 * ELF symbol tables (see symbol.h).
 *
 * A module is found with dl_iterate_phdr, which gives its path, its load
 * bias (what to add to a symbol's value to get its address in memory) and
 * its loaded segments. Its symbol table is read once, the first time an
 * address in it is asked about: every function symbol with an address,
 * sorted, names copied into one block. Modules and their tables are kept
 * until the process ends (a library unloaded and another mapped at the
 * same place would be read again only if its range differs; rayc itself
 * never unloads code).
 */
#define _GNU_SOURCE
#include "core/symbol.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"

extern char **environ;

typedef struct sym {
  uintptr_t value; /* in the file's address space: add the bias */
  size_t size;     /* 0: unknown, extends to the next symbol */
  const char *name;
} sym;

typedef struct module {
  struct module *next;
  uintptr_t lo, hi; /* loaded range in memory */
  uintptr_t bias;
  const char *path;    /* for opening and for addr2line */
  const char *display; /* base name, for messages */
  bool read;           /* table read (or found unreadable) */
  sym *syms;
  size_t nsyms;
  char *names;
} module;

/* Modules seen so far; under g_lock, and never freed. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static module *g_modules;

typedef struct find_ctx {
  uintptr_t addr;
  bool found;
  uintptr_t lo, hi, bias;
  char path[PATH_MAX];
} find_ctx;

static int find_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  find_ctx *f = arg;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  bool in = false;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
    if (s < lo) lo = s;
    if (e > hi) hi = e;
    if (f->addr >= s && f->addr < e) in = true;
  }
  if (!in) return 0;
  f->found = true;
  f->lo = lo;
  f->hi = hi;
  f->bias = info->dlpi_addr;
  const char *name = info->dlpi_name;
  if (!name || !name[0]) { /* the executable itself */
    ssize_t n = readlink("/proc/self/exe", f->path, sizeof f->path - 1);
    f->path[n > 0 ? n : 0] = '\0';
  } else {
    snprintf(f->path, sizeof f->path, "%s", name);
  }
  return 1;
}

static int sym_cmp(const void *a, const void *b) {
  uintptr_t x = ((const sym *)a)->value, y = ((const sym *)b)->value;
  return x < y ? -1 : x > y;
}

static bool is_func(const ElfW(Sym) * s) {
  int t = ELF64_ST_TYPE(s->st_info);
  return (t == STT_FUNC || t == STT_GNU_IFUNC) && s->st_shndx != SHN_UNDEF && s->st_value != 0;
}

/* Copies the function symbols of one table (SHT_SYMTAB or SHT_DYNSYM):
 * 1 done, 0 no such table (or no function in it), -1 out of memory. */
static int read_table(module *m, const unsigned char *base, size_t len, const ElfW(Shdr) * sh,
                      size_t shnum, uint32_t want) {
  for (size_t i = 0; i < shnum; i++) {
    if (sh[i].sh_type != want || sh[i].sh_entsize != sizeof(ElfW(Sym))) continue;
    if (sh[i].sh_link >= shnum) continue;
    const ElfW(Shdr) *str = &sh[sh[i].sh_link];
    if (sh[i].sh_offset + sh[i].sh_size > len || str->sh_offset + str->sh_size > len) continue;
    const ElfW(Sym) *syms = (const void *)(base + sh[i].sh_offset);
    const char *strs = (const char *)base + str->sh_offset;
    size_t n = sh[i].sh_size / sizeof(ElfW(Sym)), count = 0, bytes = 0;
    for (size_t k = 0; k < n; k++)
      if (is_func(&syms[k]) && syms[k].st_name < str->sh_size) {
        count++;
        bytes += strnlen(strs + syms[k].st_name, str->sh_size - syms[k].st_name) + 1;
      }
    if (count == 0) continue;
    m->syms = rt_malloc(count * sizeof(sym));
    m->names = rt_malloc(bytes);
    if (!m->syms || !m->names) {
      free(m->syms);
      free(m->names);
      m->syms = NULL;
      m->names = NULL;
      return -1;
    }
    char *at = m->names;
    for (size_t k = 0; k < n; k++) {
      if (!is_func(&syms[k]) || syms[k].st_name >= str->sh_size) continue;
      const char *nm = strs + syms[k].st_name;
      size_t l = strnlen(nm, str->sh_size - syms[k].st_name);
      memcpy(at, nm, l);
      at[l] = '\0';
      m->syms[m->nsyms++] = (sym){syms[k].st_value, syms[k].st_size, at};
      at += l + 1;
    }
    qsort(m->syms, m->nsyms, sizeof(sym), sym_cmp);
    return 1;
  }
  return 0;
}

/* Reads m's symbol table from its file, once; under g_lock. Out of memory,
 * m stays unread, so that a later question reads it again. */
static void module_read(module *m) {
  m->read = true;
  int fd = open(m->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat sb;
  void *map = MAP_FAILED;
  if (fstat(fd, &sb) == 0 && (size_t)sb.st_size >= sizeof(ElfW(Ehdr)))
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return;
  size_t len = (size_t)sb.st_size;
  const unsigned char *base = map;
  const ElfW(Ehdr) *eh = map;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
      eh->e_shentsize == sizeof(ElfW(Shdr)) &&
      eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) <= len) {
    const ElfW(Shdr) *sh = (const void *)(base + eh->e_shoff);
    int r = read_table(m, base, len, sh, eh->e_shnum, SHT_SYMTAB);
    if (r == 0) r = read_table(m, base, len, sh, eh->e_shnum, SHT_DYNSYM);
    if (r < 0) m->read = false;
  }
  munmap(map, len);
}

/* The module containing addr, added on first sight; under g_lock. NULL
 * when there is none, or (*oom set) no memory to record it. */
static module *module_find(uintptr_t addr, bool *oom) {
  *oom = false;
  for (module *m = g_modules; m; m = m->next)
    if (addr >= m->lo && addr < m->hi) return m;
  find_ctx f = {.addr = addr};
  dl_iterate_phdr(find_cb, &f);
  if (!f.found) return NULL;
  size_t plen = strlen(f.path) + 1;
  module *m = rt_calloc(1, sizeof *m + plen);
  if (!m) {
    *oom = true;
    return NULL;
  }
  char *path = (char *)(m + 1);
  memcpy(path, f.path, plen);
  const char *slash = strrchr(path, '/');
  m->path = path;
  m->display = slash ? slash + 1 : path;
  m->lo = f.lo;
  m->hi = f.hi;
  m->bias = f.bias;
  m->next = g_modules;
  g_modules = m;
  return m;
}

static module *module_of(uintptr_t addr) {
  bool oom;
  return module_find(addr, &oom);
}

/* The symbol of m that covers file address off, or NULL; under g_lock. */
static const sym *module_sym(module *m, uintptr_t off) {
  if (!m->read) module_read(m);
  if (!m->syms) return NULL; /* unreadable, or no function symbols */
  size_t lo = 0, hi = m->nsyms;
  while (lo < hi) { /* the first symbol above off */
    size_t mid = lo + (hi - lo) / 2;
    if (m->syms[mid].value <= off)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return NULL;
  const sym *s = &m->syms[lo - 1];
  /* Aliases share a value: prefer one with a size that covers off. */
  for (size_t k = lo - 1; k > 0 && m->syms[k - 1].value == s->value; k--)
    if (m->syms[k - 1].size > s->size) s = &m->syms[k - 1];
  if (s->size) return off < s->value + s->size ? s : NULL;
  return (lo < m->nsyms && off < m->syms[lo].value) || lo == m->nsyms ? s : NULL;
}

const char *rt_symbol_lookup(const void *addr, bool *retry) {
  const char *name = NULL;
  bool oom;
  pthread_mutex_lock(&g_lock);
  module *m = module_find((uintptr_t)addr, &oom);
  const sym *s = m ? module_sym(m, (uintptr_t)addr - m->bias) : NULL;
  if (s) name = s->name;
  /* No memory to record the module or to read its table: not known to
   * have no symbol. */
  bool again = !s && (m ? !m->read : oom);
  pthread_mutex_unlock(&g_lock);
  if (retry) *retry = again;
  return name;
}

const char *rt_symbol_name(const void *addr) {
  return rt_symbol_lookup(addr, NULL);
}

const char *rt_symbol_module(const void *addr, size_t *offset) {
  const char *path = NULL;
  pthread_mutex_lock(&g_lock);
  module *m = module_of((uintptr_t)addr);
  if (m) {
    path = m->path;
    if (offset) *offset = (uintptr_t)addr - m->bias;
  }
  pthread_mutex_unlock(&g_lock);
  return path;
}

/* "file:line" for file address off of path, from addr2line(1); false when
 * it is not installed or the module has no line information. */
static bool source_line(const char *path, uintptr_t off, char *out, size_t len) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  char addr[32];
  snprintf(addr, sizeof addr, "0x%lx", (unsigned long)off);
  char *argv[] = {"addr2line", "-e", (char *)path, addr, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, "addr2line", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return false;
  }
  char buf[PATH_MAX + 32];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof buf - 1 && (r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
  close(fds[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  buf[n] = '\0';
  char *nl = strchr(buf, '\n');
  if (nl) *nl = '\0';
  /* "??:0" or "file.c:?" when there is no line information. */
  size_t bl = strlen(buf);
  if (bl < 3 || buf[0] == '?' || buf[bl - 1] == '?' || strcmp(buf + bl - 2, ":0") == 0)
    return false;
  /* Truncated to len (a copy, not snprintf: gcc's -Wformat-truncation
   * rejects a PATH_MAX line into a smaller buffer at -O1, which is the
   * point). */
  const char *slash = strrchr(buf, '/');
  const char *file = slash ? slash + 1 : buf;
  size_t k = strlen(file);
  if (len == 0) return false;
  if (k >= len) k = len - 1;
  memcpy(out, file, k);
  out[k] = '\0';
  return true;
}

size_t rt_symbol_describe(const void *addr, char *buf, size_t len) {
  if (len == 0) return 0;
  pthread_mutex_lock(&g_lock);
  module *m = module_of((uintptr_t)addr);
  const sym *s = NULL;
  uintptr_t off = 0;
  const char *path = NULL, *display = NULL;
  if (m) {
    off = (uintptr_t)addr - m->bias;
    s = module_sym(m, off);
    path = m->path;
    display = m->display;
  }
  pthread_mutex_unlock(&g_lock);
  if (!m) {
    snprintf(buf, len, "%p", addr);
    return strlen(buf);
  }
  char line[PATH_MAX];
  if (s && source_line(path, off, line, sizeof line))
    snprintf(buf, len, "%s (%s)", s->name, line);
  else if (s)
    snprintf(buf, len, "%s+0x%lx (%s)", s->name, (unsigned long)(off - s->value), display);
  else
    snprintf(buf, len, "%p (%s)", addr, display);
  return strlen(buf);
}
