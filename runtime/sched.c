/*
 * sched.c -- scheduler threads: one per core, each with a libuv loop and a
 * run queue of actors that have something to do.
 *
 * A scheduler pops an actor, gives it one turn (actor.c: at most its budget
 * of messages), and pushes it back at the tail if it still has work, so a
 * busy actor cannot starve the others.  Between turns it polls its loop for
 * I/O without blocking; with nothing to run it blocks in uv_run until I/O, a
 * timer or a wake-up arrives.  Wake-ups are uv_async_send, which coalesces:
 * several sends may produce one wake-up, which is why a turn starts by
 * draining the mailbox rather than taking one message per wake-up.
 *
 * The `sleeping` flag keeps wake-ups off the hot path: a producer only calls
 * uv_async_send when the target scheduler said it was about to block.  Both
 * sides use sequentially consistent operations on (run queue length,
 * sleeping), so at least one of them sees the other (Dekker's argument).
 */
#include "act_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static act_sched_t *g_scheds;
static int g_nsched;
static _Atomic bool g_running;
static _Atomic bool g_stopping;
static _Atomic unsigned g_rr;
static _Thread_local act_sched_t *tls_sched;

#define TURNS_BETWEEN_POLLS 256 /* I/O latency vs. throughput: one epoll_wait per 256 turns */
#define IDLE_SPINS 200         /* brief spin before blocking: cheap ping-pong */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* seq_cst: rare (spawn, calls), and ordered against act_start/stop's stores */
bool act__running(void) { return atomic_load(&g_running); }
act_sched_t *act__sched_self(void) { return tls_sched; }
int act_scheduler_count(void) { return g_nsched; }
int act_scheduler_id(void) { return tls_sched ? tls_sched->id : -1; }

act_proc_t *act__current(void) { return tls_sched ? tls_sched->current : NULL; }

uv_loop_t *act_loop(void) {
  act_proc_t *p = act__current();
  return p ? &p->sched->loop : NULL;
}

act_sched_t *act__sched_for(int want, act_proc_t *caller) {
  if (want > 0) return &g_scheds[(want - 1) % g_nsched];
  if (want == ACT_SCHED_CALLER && caller && caller->sched) return caller->sched;
  unsigned i = atomic_fetch_add_explicit(&g_rr, 1, memory_order_relaxed); /* spreading only */
  return &g_scheds[i % (unsigned)g_nsched];
}

void act__schedule(act_proc_t *p) {
  if (p->is_proxy) {
    pthread_mutex_lock(p->proxy_mu);
    pthread_cond_signal(p->proxy_cv);
    pthread_mutex_unlock(p->proxy_mu);
    return;
  }
  act_sched_t *s = p->sched;
  if (s == tls_sched) { /* the common case: a send between neighbours */
    act_queue_push(p->high ? &s->local_high : &s->local, &p->local_node);
    s->local_len++;
    return;
  }
  /* seq_cst, both: Dekker with sched_main (stores sleeping, then loads
   * runq_len): either it sees our work or we see it asleep and wake it */
  atomic_fetch_add(&s->runq_len, 1);
  act__mpsc_push(&s->runq, &p->run_node);
  if (atomic_load(&s->sleeping)) uv_async_send(&s->wakeup);
}

static bool local_empty(const act_sched_t *s) {
  return act_queue_empty(&s->local) && act_queue_empty(&s->local_high);
}

static act_proc_t *pop_local(act_sched_t *s) {
  act_qnode_t *n = act_queue_pop(act_queue_empty(&s->local_high) ? &s->local : &s->local_high);
  if (!n) return NULL;
  s->local_len--;
  return ACT_QUEUE_DATA(n, act_proc_t, local_node);
}

#define REMOTE_EVERY 8 /* with local work, still look at the shared queue this often */

static act_proc_t *pop_remote(act_sched_t *s);

/* Local work first (no atomics), but never so long that actors woken by
 * other threads wait behind a busy neighbourhood. */
static act_proc_t *next_runnable(act_sched_t *s) {
  if (!local_empty(s) && (++s->picks % REMOTE_EVERY != 0 ||
                        atomic_load_explicit(&s->runq_len, memory_order_relaxed) == 0)) /* a hint */
    return pop_local(s);
  act_proc_t *p = pop_remote(s);
  return p ? p : pop_local(s);
}

static act_proc_t *pop_remote(act_sched_t *s) {
  while (atomic_load_explicit(&s->runq_len, memory_order_relaxed) > 0) { /* the queue's acquire publishes */
    act_node_t *n = act__mpsc_pop(&s->runq);
    if (n) {
      atomic_fetch_sub_explicit(&s->runq_len, 1, memory_order_relaxed); /* a count; the queue orders */
      return (act_proc_t *)((char *)n - offsetof(act_proc_t, run_node));
    }
    cpu_relax(); /* a push is half done */
  }
  return NULL;
}

static bool idle_spin(act_sched_t *s) {
  if (!local_empty(s)) return true; /* a libuv callback made someone runnable */
  for (int i = 0; i < IDLE_SPINS; i++) {
    if (atomic_load_explicit(&s->runq_len, memory_order_relaxed) > 0) return true; /* a hint */
    cpu_relax();
  }
  return false;
}

static void on_wakeup(uv_async_t *h) { (void)h; }

/* relaxed, owner-only stores: statistics, published at most once per 256
 * turns so that the hot path pays one plain increment */
static void publish_counters(act_sched_t *s) {
  atomic_store_explicit(&s->turns, s->turns_local, memory_order_relaxed);
  atomic_store_explicit(&s->messages, s->handled_local, memory_order_relaxed);
  atomic_store_explicit(&s->local_len_seen, s->local_len, memory_order_relaxed);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void *sched_main(void *arg) {
  act_sched_t *s = arg;
  tls_sched = s;
  act__env_cache(true);
  unsigned turns = 0;
  while (!atomic_load_explicit(&g_stopping, memory_order_relaxed)) { /* the wake-up orders */
    act_proc_t *p;
    while ((p = next_runnable(s))) {
      act__turn(p);
      s->turns_local++;
      if (++turns % TURNS_BETWEEN_POLLS == 0) {
        publish_counters(s);
        uv_run(&s->loop, UV_RUN_NOWAIT);
      }
    }
    publish_counters(s);
    uv_run(&s->loop, UV_RUN_NOWAIT);
    if (idle_spin(s)) continue;
    /* seq_cst: Dekker with act__schedule (see there) */
    atomic_store(&s->sleeping, 1);
    if (!local_empty(s) || atomic_load(&s->runq_len) > 0 || atomic_load(&g_stopping)) {
      atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed); /* a spurious wake-up is harmless */
      continue;
    }
    uint64_t t0 = uv_hrtime(); /* two clock reads per sleep, none per turn */
    uv_run(&s->loop, UV_RUN_ONCE);
    atomic_store_explicit(&s->sleeping, 0, memory_order_relaxed); /* as above */
    atomic_store_explicit(&s->idle_ns, /* relaxed: a statistic, owner-only */
                          atomic_load_explicit(&s->idle_ns, memory_order_relaxed) +
                              (uv_hrtime() - t0),
                          memory_order_relaxed);
  }
  pthread_mutex_lock(&s->wakeup_mu); /* no uv_async_send may follow the close */
  s->wakeup_closed = true;
  pthread_mutex_unlock(&s->wakeup_mu);
  uv_walk(&s->loop, close_walk, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  act__timers_free_sched(s);
  act__env_cache(false);
  tls_sched = NULL;
  return NULL;
}

#define MAX_SCHEDULERS 255 /* the scheduler travels in 8 bits of every pid */

/* Only act_config_t: the runtime reads no application's environment (the
 * server's CHATTER_THREADS is app/config.c's business). */
static int threads_wanted(const act_config_t *cfg) {
  int n = 0;
  if (cfg && cfg->threads > 0) n = cfg->threads;
  else n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  return n > MAX_SCHEDULERS ? MAX_SCHEDULERS : n;
}

int act_start(const act_config_t *cfg) {
  if (atomic_load(&g_running)) return ACT_ESTATE; /* seq_cst: start and stop are rare */
  g_nsched = threads_wanted(cfg);
  act__slots_init(cfg && cfg->max_actors ? cfg->max_actors : (1u << 21));
  g_scheds = calloc((size_t)g_nsched, sizeof *g_scheds);
  if (!g_scheds) return ACT_ENOMEM;
  atomic_store(&g_stopping, false); /* seq_cst: before the threads exist */
  for (int i = 0; i < g_nsched; i++) {
    act_sched_t *s = &g_scheds[i];
    s->id = i;
    act__mpsc_init(&s->runq);
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->wakeup, on_wakeup);
    pthread_mutex_init(&s->wakeup_mu, NULL);
  }
  atomic_store(&g_running, true); /* seq_cst: rare */
  for (int i = 0; i < g_nsched; i++)
    pthread_create(&g_scheds[i].thread, NULL, sched_main, &g_scheds[i]);
  return ACT_OK;
}

int act_scheduler_info(int id, act_sched_info_t *out) {
  if (!atomic_load(&g_running) || id < 0 || id >= g_nsched) return ACT_EINVAL; /* seq_cst: rare */
  act_sched_t *s = &g_scheds[id];
  out->id = id;
  /* relaxed: snapshots of counters their owner keeps */
  out->run_queue = atomic_load_explicit(&s->runq_len, memory_order_relaxed) +
                   atomic_load_explicit(&s->local_len_seen, memory_order_relaxed);
  out->actors = atomic_load_explicit(&s->actors, memory_order_relaxed);
  out->turns = atomic_load_explicit(&s->turns, memory_order_relaxed);
  out->messages = atomic_load_explicit(&s->messages, memory_order_relaxed);
  out->idle_ms = atomic_load_explicit(&s->idle_ns, memory_order_relaxed) / 1000000u;
  return ACT_OK;
}

void act_stop_system(void) {
  if (!atomic_load(&g_running)) return; /* seq_cst: rare */
  act__kill_all();
  atomic_store(&g_stopping, true); /* seq_cst: then the wake-ups, under wakeup_mu */
  for (int i = 0; i < g_nsched; i++) {
    act_sched_t *s = &g_scheds[i];
    pthread_mutex_lock(&s->wakeup_mu);
    if (!s->wakeup_closed) uv_async_send(&s->wakeup);
    pthread_mutex_unlock(&s->wakeup_mu);
  }
  for (int i = 0; i < g_nsched; i++) {
    pthread_join(g_scheds[i].thread, NULL);
    pthread_mutex_destroy(&g_scheds[i].wakeup_mu);
  }
  atomic_store(&g_running, false); /* seq_cst: rare */
  act__registry_clear();
  act__slots_free();
  free(g_scheds);
  g_scheds = NULL;
  g_nsched = 0;
}
