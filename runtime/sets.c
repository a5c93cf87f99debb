/*
 * sets.c -- the links and monitors of a process, as hash sets.
 *
 * A pid set (links) and a ref -> pid map (monitors, requests, callees), both
 * open-addressing tables: O(1) add, find and remove however many entries.
 * Only the owning process's thread touches them.
 */
#include "act_internal.h"

#include <stdlib.h>

/* Links and monitors are sets, kept as open-addressing hash tables (linear
 * probing, at most half full, 0 = empty since no pid or ref is 0): adding,
 * finding and removing are O(1) however many there are.  A supervisor of
 * 40,000 children has 40,000 links; a scan per exit made their removal
 * quadratic.  The smallest table is 4 entries (32 or 64 bytes), as the old
 * vectors; iteration walks the table and skips the empty entries. */

static uint32_t hslot(uint64_t key, uint32_t cap) {
  return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* Find key's entry, or the empty one where it would go. */
#define FIND(tab, cap, keyof, key)                                   \
  uint32_t i = hslot((key), (cap));                                  \
  while (keyof((tab)[i]) && keyof((tab)[i]) != (key)) i = (i + 1) & ((cap) - 1)

/* Remove entry i and shift back those that probed past it (no tombstones). */
#define DELETE_AT(tab, cap, keyof, zero)                                        \
  do {                                                                          \
    uint32_t j = i;                                                             \
    for (;;) {                                                                  \
      (tab)[i] = (zero);                                                        \
      for (;;) {                                                                \
        j = (j + 1) & ((cap) - 1);                                              \
        if (!keyof((tab)[j])) return true;                                      \
        uint32_t k = hslot(keyof((tab)[j]), (cap));                             \
        /* keep j where it is if its home k lies cyclically in (i, j] */       \
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;           \
        break;                                                                  \
      }                                                                         \
      (tab)[i] = (tab)[j];                                                      \
      i = j;                                                                    \
    }                                                                           \
  } while (0)

#define PID_KEY(x) (x)
#define MON_KEY(x) ((x).ref)

bool act__pidvec_has(const act_pidvec_t *v, act_pid_t pid) {
  if (!v->cap || !pid) return false;
  FIND(v->v, v->cap, PID_KEY, pid);
  return v->v[i] == pid;
}

static bool pid_rehash(act_pidvec_t *v, uint32_t ncap) {
  act_pid_t *nv = calloc(ncap, sizeof *nv);
  if (!nv) return false;
  for (uint32_t o = 0; o < v->cap; o++) {
    if (!v->v[o]) continue;
    FIND(nv, ncap, PID_KEY, v->v[o]);
    nv[i] = v->v[o];
  }
  free(v->v);
  v->v = nv;
  v->cap = ncap;
  return true;
}

bool act__pidvec_add(act_pidvec_t *v, act_pid_t pid) {
  if (act__pidvec_has(v, pid)) return true;
  if ((v->n + 1) * 2 > v->cap && !pid_rehash(v, v->cap ? v->cap * 2 : 4)) return false;
  FIND(v->v, v->cap, PID_KEY, pid);
  v->v[i] = pid;
  v->n++;
  ACT_DEBUG_ASSERT(v->n * 2 <= v->cap); /* at most half full: probes stay short */
  return true;
}

bool act__pidvec_del(act_pidvec_t *v, act_pid_t pid) {
  if (!v->cap || !pid) return false;
  FIND(v->v, v->cap, PID_KEY, pid);
  if (v->v[i] != pid) return false;
  v->n--;
  DELETE_AT(v->v, v->cap, PID_KEY, (act_pid_t)0);
}

static bool mon_rehash(act_monvec_t *v, uint32_t ncap) {
  act_monref_t *nv = calloc(ncap, sizeof *nv);
  if (!nv) return false;
  for (uint32_t o = 0; o < v->cap; o++) {
    if (!v->v[o].ref) continue;
    FIND(nv, ncap, MON_KEY, v->v[o].ref);
    nv[i] = v->v[o];
  }
  free(v->v);
  v->v = nv;
  v->cap = ncap;
  return true;
}

bool act__monvec_add(act_monvec_t *v, act_ref_t ref, act_pid_t pid) {
  if ((v->n + 1) * 2 > v->cap && !mon_rehash(v, v->cap ? v->cap * 2 : 4)) return false;
  FIND(v->v, v->cap, MON_KEY, ref);
  if (!v->v[i].ref) v->n++;
  v->v[i] = (act_monref_t){ref, pid};
  return true;
}

bool act__monvec_del(act_monvec_t *v, act_ref_t ref, act_pid_t *pid) {
  if (!v->cap || !ref) return false;
  FIND(v->v, v->cap, MON_KEY, ref);
  if (v->v[i].ref != ref) return false;
  if (pid) *pid = v->v[i].pid;
  v->n--;
  DELETE_AT(v->v, v->cap, MON_KEY, ((act_monref_t){0, 0}));
}
