/*
 * owned.c -- what an actor owns besides its state: memory from act_alloc and
 * cleanups from act_defer.  Both live on one list in the process and are
 * released when it exits, whatever the reason, after terminate() -- which is
 * what makes a crash in the middle of a handler leak nothing that was
 * allocated this way.  Only the owner's thread touches the list.
 */
#include "act_internal.h"

#include <stdlib.h>

typedef struct act_owned {
  struct act_owned *prev, *next;
  act_cleanup_fn fn; /* NULL for a memory block */
  void *arg;
  uint64_t id;
  _Alignas(max_align_t) unsigned char mem[];
} act_owned_t;

static _Atomic uint64_t g_ids = 1;

static void add(act_proc_t *p, act_owned_t *o) {
  o->prev = NULL;
  o->next = p->owned;
  if (p->owned) p->owned->prev = o;
  p->owned = o;
}

static void del(act_proc_t *p, act_owned_t *o) {
  if (o->prev) o->prev->next = o->next;
  else p->owned = o->next;
  if (o->next) o->next->prev = o->prev;
}

void *act_alloc(size_t size) {
  act_proc_t *p = act__require_current("act_alloc");
  act_owned_t *o = malloc(sizeof *o + size);
  if (!o) return NULL;
  o->fn = NULL;
  o->arg = NULL;
  o->id = 0;
  add(p, o);
  return o->mem;
}

void act_free(void *mem) {
  if (!mem) return;
  act_owned_t *o = (act_owned_t *)((char *)mem - offsetof(act_owned_t, mem));
  del(act__require_current("act_free"), o);
  free(o);
}

uint64_t act_defer(act_cleanup_fn fn, void *arg) {
  act_proc_t *p = act__require_current("act_defer");
  act_owned_t *o = malloc(sizeof *o);
  if (!o) return 0;
  o->fn = fn;
  o->arg = arg;
  o->id = atomic_fetch_add_explicit(&g_ids, 1, memory_order_relaxed); /* unique is all */
  add(p, o);
  return o->id;
}

void act_undefer(uint64_t id) {
  act_proc_t *p = act__require_current("act_undefer");
  for (act_owned_t *o = p->owned; o; o = o->next)
    if (o->fn && o->id == id) {
      del(p, o);
      free(o);
      return;
    }
}

/* Newest first, like a stack of destructors. */
void act__owned_release_all(act_proc_t *p) {
  while (p->owned) {
    act_owned_t *o = p->owned;
    del(p, o);
    if (o->fn) o->fn(o->arg);
    free(o);
  }
}
