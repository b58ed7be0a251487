/*
 * symbol.h - names for code addresses: which function a pointer is in.
 *
 * Messages, the timeline and `ray_memory_report` name tasks after their
 * function and puts after their caller, without asking the user to
 * register anything. A function pointer or a return address is looked up
 * in the module (executable or shared library) that contains it:
 *
 *   1. the module's own ELF symbol table (.symtab), which also holds static
 *      functions and the executable's symbols, read once per module from
 *      its file (mapped, copied into a sorted table, unmapped);
 *   2. when the file is stripped, its dynamic symbol table (.dynsym), which
 *      is what dladdr(3) would answer from.
 *
 * Nothing here is on a hot path: callers cache what they look up (a task
 * function's name is looked up once per function, a put site once per
 * site). Every function is thread-safe.
 */
#ifndef RT_SYMBOL_H
#define RT_SYMBOL_H

#include <stdbool.h>
#include <stddef.h>

/* The name of the function that contains addr ("square"), or NULL when no
 * symbol covers it. The string stays valid until the process ends, and
 * every lookup of one function gives the same pointer. */
const char *rt_symbol_name(const void *addr);

/* As rt_symbol_name; *retry (when not NULL) is set when a NULL answer may
 * change: memory ran out recording the module or reading its symbol table
 * (a later call reads it again). A cache keeps only answers without it. */
const char *rt_symbol_lookup(const void *addr, bool *retry);

/*
 * Describes a code address for a person, into buf (always terminated,
 * truncated to len): "square (examples/pipeline.c:42)" when the module has
 * line information and addr2line(1) is installed, else "square+0x1c
 * (pipeline)" or "0x55d0c1a2b3c4 (pipeline)". Slow (it may start a
 * process): for reports, not for hot paths. Not async-signal-safe. For a
 * return address pass it less one, so that the line is the call's, not the
 * next statement's. Returns strlen(buf).
 */
size_t rt_symbol_describe(const void *addr, char *buf, size_t len);

/* The module that contains addr: its path (valid until the process ends) and, in
 * *offset, addr's offset from the module's load base. NULL if addr is in no
 * loaded module. */
const char *rt_symbol_module(const void *addr, size_t *offset);

#endif
