/*
 * buf.h -- the one string builder of the tree (runtime and app), after
 * Redis's sds and Lua's luaL_Buffer: bytes appended to one growing heap
 * block, always followed by a '\0' (so the text is a C string as well).
 *
 * Out of memory, the one rule: an append that cannot grow the block sets
 * the sticky `oom` flag and does nothing; every later append is ignored.
 * Callers append freely and check `oom` (or act_buf_take's NULL) ONCE at
 * the end, where they would have sent the bytes.  The block is untouched by
 * a failed growth, so act_buf_free is always right.
 *
 * Cost: growth doubles from ACT_BUF_MIN (amortised O(1) per byte; a 64 KiB
 * text costs 8 reallocations), and nothing else allocates.  Not thread-safe:
 * a builder belongs to one thread at a time.
 */
#ifndef ACT_BUF_H
#define ACT_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define ACT_BUF_MIN 64 /* bytes of the first block */

typedef struct act_buf {
  char *p;    /* NULL until the first append; then p[len] == '\0' */
  size_t len; /* bytes appended, the '\0' not counted */
  size_t cap; /* bytes allocated */
  bool oom;   /* sticky: an append failed, the text is incomplete */
} act_buf_t;

#define ACT_BUF_INIT {NULL, 0, 0, false}

/* Room for `more` bytes (and the '\0') beyond len; false, and oom set, if it
 * cannot be had.  `hint` sizes: act_buf_reserve(b, expected) once up front. */
bool act_buf_reserve(act_buf_t *b, size_t more);
void act_buf_put(act_buf_t *b, const void *data, size_t n);
void act_buf_printf(act_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void act_buf_vprintf(act_buf_t *b, const char *fmt, va_list ap);
/* The bytes, handed over (the caller free()s them) and b emptied; NULL if
 * an append failed (b is freed then) or nothing was appended. */
char *act_buf_take(act_buf_t *b, size_t *len);
void act_buf_free(act_buf_t *b);

static inline void act_buf_puts(act_buf_t *b, const char *s) { act_buf_put(b, s, strlen(s)); }
/* A string literal, its length known at compile time. */
#define act_buf_lit(b, lit) act_buf_put((b), (lit), sizeof(lit) - 1)

static inline void act_buf_putc(act_buf_t *b, char c) {
  if (!b->oom && (b->len + 2 <= b->cap || act_buf_reserve(b, 1))) {
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
  }
}

#endif
