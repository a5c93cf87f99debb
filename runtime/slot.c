/*
 * slot.c -- the process table: pids and slots, pinning a slot to read the
 * process it holds, the count of live processes, killing them all at stop,
 * and proxies (a slot without a scheduler, for threads outside the runtime).
 *
 * A pid names a slot and a generation.  A sender pins the slot (readers +=
 * 1), checks that it still holds that pid, pushes, and unpins; a dying
 * process unpublishes its slot and waits for readers to reach zero (die() in
 * actor.c), so no envelope is ever pushed into freed memory.
 */
#include "act_internal.h"

#include <sched.h>
#include <stdlib.h>

act_slot_t *act__slots;
_Atomic uint32_t act__slots_high;
static uint32_t g_max;
static pthread_mutex_t g_free_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t g_free_head = UINT32_MAX;
static _Atomic long g_live;
static pthread_mutex_t g_live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_live_cv = PTHREAD_COND_INITIALIZER;

void act__slots_init(uint32_t max) {
  g_max = max;
  act__slots = calloc(max, sizeof *act__slots); /* untouched pages cost no RSS */
  atomic_store(&act__slots_high, 0); /* seq_cst: before any thread runs; cost is nil here */
  g_free_head = UINT32_MAX;
  atomic_store(&g_live, 0); /* seq_cst: before any thread runs */
}

void act__slots_free(void) {
  free(act__slots);
  act__slots = NULL;
  g_max = 0;
}

/* acquire: pairs with slot_alloc's release, so slots below it are initialised */
uint32_t act__slot_high_water(void) { return atomic_load_explicit(&act__slots_high, memory_order_acquire); }
act_slot_t *act__slot_at(uint32_t idx) { return &act__slots[idx]; }

/* pid = generation (24 bits) | scheduler (8 bits) | slot index (32 bits).
 * The scheduler in the pid lets a sender on that very scheduler skip the
 * pinning: such a target can only die on the sender's own thread. */
#define PROXY_SCHED_TAG 0xFFu

act_pid_t act__slot_alloc(unsigned sched_tag) {
  pthread_mutex_lock(&g_free_mu);
  uint32_t idx;
  if (g_free_head != UINT32_MAX) {
    idx = g_free_head;
    g_free_head = act__slots[idx].next_free;
  } else if (atomic_load_explicit(&act__slots_high, memory_order_relaxed) < g_max) { /* under g_free_mu */
    idx = atomic_load_explicit(&act__slots_high, memory_order_relaxed);
    atomic_store_explicit(&act__slots_high, idx + 1, memory_order_release); /* readers of act__slots_high see a zeroed slot */
  } else {
    pthread_mutex_unlock(&g_free_mu);
    return ACT_NOPID;
  }
  uint32_t gen = ++act__slots[idx].gen & 0xFFFFFFu;
  if (gen == 0) gen = ++act__slots[idx].gen & 0xFFFFFFu; /* 0 would allow pid 0 */
  act__slots[idx].gen = gen;
  pthread_mutex_unlock(&g_free_mu);
  return ((act_pid_t)gen << 40) | ((act_pid_t)sched_tag << 32) | idx;
}

void act__slot_release(uint32_t idx) {
  pthread_mutex_lock(&g_free_mu);
  act__slots[idx].next_free = g_free_head;
  g_free_head = idx;
  pthread_mutex_unlock(&g_free_mu);
}

act_proc_t *act__pin(act_pid_t pid, act_slot_t **out) {
  act_slot_t *s = act__slot_of(pid);
  if (!s || pid == ACT_NOPID) return NULL;
  /* seq_cst, all three: Dekker with die(), which stores pid/proc and then
   * loads readers; either it sees our count or we see its unpublishing */
  atomic_fetch_add(&s->readers, 1);
  act_proc_t *p = atomic_load(&s->proc);
  if (p && atomic_load(&s->pid) == pid) {
    *out = s;
    return p;
  }
  atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release); /* our reads are done */
  return NULL;
}

/* release: our reads of the process happen before die() sees readers == 0 */
void act__unpin(act_slot_t *s) { atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release); }

/* ------------------------------------------------------ live processes */

/* seq_cst: once per spawn, against kill_all's loop */
void act__live_inc(void) { atomic_fetch_add(&g_live, 1); }

void act__live_dec(void) {
  if (atomic_fetch_sub(&g_live, 1) == 1) { /* seq_cst: rare; kill_all reads it under g_live_mu */
    pthread_mutex_lock(&g_live_mu);
    pthread_cond_broadcast(&g_live_cv);
    pthread_mutex_unlock(&g_live_mu);
  }
}

/* ----------------------------------------------------- system stop */

void act__kill_all(void) {
  for (int round = 0; round < 200 && atomic_load(&g_live) > 0; round++) { /* seq_cst: rare */
    uint32_t high = act__slot_high_water();
    for (uint32_t i = 0; i < high; i++) {
      act_pid_t pid = atomic_load_explicit(&act__slots[i].pid, memory_order_relaxed); /* a hint: pin checks */
      act_slot_t *s;
      act_proc_t *p = pid ? act__pin(pid, &s) : NULL;
      if (!p) continue;
      bool proxy = p->is_proxy;
      act__unpin(s);
      if (!proxy) act_exit(pid, act_reason(ACT_KILL));
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&g_live_mu);
    if (atomic_load(&g_live) > 0) pthread_cond_timedwait(&g_live_cv, &g_live_mu, &ts); /* seq_cst: rare */
    pthread_mutex_unlock(&g_live_mu);
  }
}

/* ---------------------------------------------------------- proxies */

act_proc_t *act__proxy_new(void) {
  act_proc_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->proxy_mu = malloc(sizeof *p->proxy_mu);
  p->proxy_cv = malloc(sizeof *p->proxy_cv);
  act_pid_t pid = act__slot_alloc(PROXY_SCHED_TAG);
  if (!pid || !p->proxy_mu || !p->proxy_cv) {
    if (pid) act__slot_release((uint32_t)pid);
    free(p->proxy_mu);
    free(p->proxy_cv);
    free(p);
    return NULL;
  }
  pthread_mutex_init(p->proxy_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(p->proxy_cv, &ca);
  pthread_condattr_destroy(&ca);
  p->is_proxy = true;
  p->pid = pid;
  act__mpsc_init(&p->inbox);
  act_slot_t *s = act__slot_of(pid);
  atomic_store(&s->proc, p); /* seq_cst: as act__spawn's publication */
  atomic_store(&s->pid, pid);
  return p;
}

/* Next envelope for the proxy's thread, or NULL after timeout_ms. */
act_env_t *act__proxy_wait(act_proc_t *p, int timeout_ms) {
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  if (timeout_ms >= 0) {
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(p->proxy_mu);
  for (;;) {
    if (atomic_load(&p->pending) > 0) { /* seq_cst: as deliver_local; under proxy_mu too */
      act_node_t *n = act__mpsc_pop(&p->inbox);
      if (n) {
        atomic_fetch_sub(&p->pending, 1); /* seq_cst: as deliver_local */
        pthread_mutex_unlock(p->proxy_mu);
        return (act_env_t *)((char *)n - offsetof(act_env_t, node));
      }
      /* a push is half done: its sender will signal once it has pushed */
      pthread_mutex_unlock(p->proxy_mu);
      sched_yield();
      pthread_mutex_lock(p->proxy_mu);
      continue;
    }
    int rc = timeout_ms < 0 ? pthread_cond_wait(p->proxy_cv, p->proxy_mu)
                            : pthread_cond_timedwait(p->proxy_cv, p->proxy_mu, &dl);
    if (rc != 0 && atomic_load(&p->pending) == 0) { /* seq_cst: as above */
      pthread_mutex_unlock(p->proxy_mu);
      return NULL;
    }
  }
}

void act__proxy_free(act_proc_t *p) {
  act_slot_t *s = act__slot_of(p->pid);
  atomic_store(&s->pid, ACT_NOPID); /* seq_cst: Dekker with act__pin, as in die() */
  atomic_store(&s->proc, NULL);
  while (atomic_load(&s->readers)) sched_yield();
  for (uint32_t i = 0; i < p->monitors_out.cap; i++)
    if (p->monitors_out.v[i].ref)
      act__send_signal(p->monitors_out.v[i].pid, ACT__SIG_DEMONITOR, p->pid,
                  p->monitors_out.v[i].ref, NULL, 0);
  act_node_t *n;
  while ((n = act__mpsc_pop(&p->inbox)))
    act__env_free((act_env_t *)((char *)n - offsetof(act_env_t, node)));
  free(p->monitors_out.v);
  pthread_mutex_destroy(p->proxy_mu);
  pthread_cond_destroy(p->proxy_cv);
  free(p->proxy_mu);
  free(p->proxy_cv);
  act__slot_release((uint32_t)p->pid);
  free(p);
}
