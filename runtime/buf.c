/*
 * buf.c -- the string builder's growth and formatting (buf.h says the
 * rule: a sticky out-of-memory flag, checked once at the end).
 */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

bool act_buf_reserve(act_buf_t *b, size_t more) {
  if (b->oom) return false;
  if (b->cap - b->len > more) return true; /* room for more and the '\0' */
  if (more > SIZE_MAX / 2 - b->len) { /* no doubling reaches it */
    b->oom = true;
    return false;
  }
  size_t cap = b->cap ? b->cap : ACT_BUF_MIN;
  while (cap - b->len < more + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  if (!b->p) p[0] = '\0';
  b->p = p;
  b->cap = cap;
  return true;
}

void act_buf_put(act_buf_t *b, const void *data, size_t n) {
  if (!act_buf_reserve(b, n)) return;
  if (n) memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void act_buf_vprintf(act_buf_t *b, const char *fmt, va_list ap) {
  if (b->oom) return;
  va_list again;
  va_copy(again, ap);
  /* one vsnprintf into the room there is; a second one only when it was
   * too small (the first told how much is needed) */
  size_t room = b->cap - b->len;
  int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
  if (n < 0) {
    va_end(again);
    return; /* an encoding error: nothing appended */
  }
  if ((size_t)n >= room) {
    if (act_buf_reserve(b, (size_t)n)) vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
    else n = -1;
  }
  va_end(again);
  if (n >= 0) b->len += (size_t)n;
  else if (b->p) b->p[b->len] = '\0'; /* undo a partial write */
}

void act_buf_printf(act_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  act_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

char *act_buf_take(act_buf_t *b, size_t *len) {
  char *p = b->oom ? NULL : b->p;
  if (len) *len = p ? b->len : 0;
  if (!p) free(b->p);
  *b = (act_buf_t)ACT_BUF_INIT;
  return p;
}

void act_buf_free(act_buf_t *b) {
  free(b->p);
  *b = (act_buf_t)ACT_BUF_INIT;
}
