/*
 * vec.h -- the one growable array of the tree (runtime and app): a struct
 * of any element type with `v`, `n` and `cap`, grown by doubling.
 *
 *   ACT_VEC(act_pid_t) pids = ACT_VEC_INIT;
 *   act_pid_t *slot = act_vec_push(&pids);      NULL: out of memory
 *   if (slot) *slot = pid;
 *   act_vec_free(&pids);
 *
 * Out of memory, the one rule: a growth that fails returns false (push:
 * NULL) and leaves the array exactly as it was; the caller decides (an
 * actor usually act_crash()es and is restarted).  Cost: amortised O(1)
 * push, one realloc per doubling from ACT_VEC_MIN elements; pushed
 * elements are zeroed.  Pointers into v[] die at the next growth.
 */
#ifndef ACT_VEC_H
#define ACT_VEC_H

#include "act.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define ACT_VEC_MIN 8 /* elements of the first allocation */

#define ACT_VEC(T) struct { T *v; size_t n, cap; }
#define ACT_VEC_INIT {NULL, 0, 0}

/* Grows *vp (an array of elem-byte elements, *cap of them) to hold at
 * least `need`; false and nothing changed when memory is short. */
bool act_vec_grow_(void *vp, size_t *cap, size_t elem, size_t need);

/* Room for `need` elements in all. */
#define act_vec_reserve(vec, need)                                                \
  ((need) <= (vec)->cap || act_vec_grow_(&(vec)->v, &(vec)->cap, sizeof *(vec)->v, (need)))

/* A new zeroed element at the end (a T *), or NULL (the array unchanged). */
#define act_vec_push(vec)                                                         \
  (act_vec_reserve((vec), (vec)->n + 1)                                           \
       ? (memset(&(vec)->v[(vec)->n], 0, sizeof *(vec)->v), &(vec)->v[(vec)->n++]) \
       : NULL)

/* Inside an actor: the new element, or act_crash("WHO: out of memory") so
 * that its supervisor restarts it -- an actor's usual answer to OOM. */
#define act_vec_push_or_crash(vec, who)                                           \
  ((void)(act_vec_reserve((vec), (vec)->n + 1) || (act_crash("%s: out of memory", (who)), 0)), \
   act_vec_push(vec))

/* Removes element i in O(1): the last one takes its place. */
#define act_vec_swap_remove(vec, i) ((vec)->v[(i)] = (vec)->v[--(vec)->n])

#define act_vec_free(vec) (free((vec)->v), (vec)->v = NULL, (vec)->n = (vec)->cap = 0)

#endif
