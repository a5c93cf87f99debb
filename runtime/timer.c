/*
 * timer.c -- send_after, start_timer, cancel_timer, read_timer.
 *
 * OTP's rules: a timer belongs to its destination, not to whoever set it
 * (the creator may exit; the message still comes; to a dead destination it
 * is dropped), and any process may cancel or read it by its reference.
 *
 * A timer is a uv_timer_t on the loop of the scheduler that set it, so only
 * that thread starts, fires, stops and frees it.  Cancel and read may come
 * from any thread: they go through a table of armed timers (ref -> timer),
 * sharded by ref, each shard under its own mutex.  `armed` changes only
 * under that mutex, so exactly one of fire and cancel wins.  A cancel from
 * the owning thread closes the handle at once; from another thread it only
 * disarms, and the handle is closed when it comes due (its memory, about
 * 250 bytes, lives until then).  Time left is computed from uv_hrtime(),
 * not from the loop's cached clock, which is stale on a busy scheduler.
 */
#include "act_internal.h"

#include <stdlib.h>

typedef struct act_timer {
  uv_timer_t h;
  struct act_timer *prev, *next; /* the scheduler's timers not yet closed */
  struct act_timer *hnext;       /* chain in its shard */
  act_sched_t *sched;
  act_ref_t ref;
  act_pid_t to;
  uint64_t due_ns;               /* uv_hrtime() at which it fires */
  act_env_t *env;                /* built when set, so firing cannot fail */
  bool armed;                    /* in the table: neither fired nor cancelled */
} act_timer_t;

#define SHARDS 64    /* lock stripes: contention stays low with 2..64 threads */
#define BUCKETS 1024 /* per shard: 64 K chains, short up to ~100 K timers */

typedef struct shard {
  pthread_mutex_t mu;
  act_timer_t *b[BUCKETS];
} shard_t;

static shard_t g_shards[SHARDS];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void shards_init(void) {
  for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&g_shards[i].mu, NULL);
}

static shard_t *shard_of(act_ref_t ref) { return &g_shards[ref % SHARDS]; }
static act_timer_t **bucket_of(shard_t *sh, act_ref_t ref) {
  return &sh->b[(ref / SHARDS) % BUCKETS];
}

/* Caller holds the shard's mutex. */
static act_timer_t *unhash(shard_t *sh, act_ref_t ref) {
  for (act_timer_t **pp = bucket_of(sh, ref); *pp; pp = &(*pp)->hnext)
    if ((*pp)->ref == ref) {
      act_timer_t *t = *pp;
      *pp = t->hnext;
      t->hnext = NULL;
      t->armed = false;
      return t;
    }
  return NULL;
}

static act_timer_t *lookup(shard_t *sh, act_ref_t ref) {
  for (act_timer_t *t = *bucket_of(sh, ref); t; t = t->hnext)
    if (t->ref == ref) return t;
  return NULL;
}

static int64_t left_ms(const act_timer_t *t) {
  uint64_t now = uv_hrtime();
  return t->due_ns > now ? (int64_t)((t->due_ns - now + 999999) / 1000000) : 0;
}

/* ---------------------------------------------- the owning thread */

static void on_closed(uv_handle_t *h) {
  act_timer_t *t = h->data;
  if (t->prev) t->prev->next = t->next;
  else t->sched->timers = t->next;
  if (t->next) t->next->prev = t->prev;
  free(t);
}

static void close_timer(act_timer_t *t) {
  uv_timer_stop(&t->h);
  if (t->env) act__env_free(t->env);
  t->env = NULL;
  uv_close((uv_handle_t *)&t->h, on_closed);
}

static void on_fire(uv_timer_t *h) {
  act_timer_t *t = h->data;
  shard_t *sh = shard_of(t->ref);
  pthread_mutex_lock(&sh->mu);
  bool fire = t->armed && unhash(sh, t->ref);
  pthread_mutex_unlock(&sh->mu);
  if (fire) {
    act__deliver_or_drop(t->to, t->env); /* dropped if the destination died */
    t->env = NULL;
  }
  close_timer(t);
}

static act_ref_t start(act_sched_t *s, uint64_t ms, act_pid_t to, act_env_t *e,
                       bool ref_in_msg) {
  act_timer_t *t = e ? calloc(1, sizeof *t) : NULL;
  if (!t) {
    if (e) act__env_free(e);
    return 0;
  }
  pthread_once(&g_once, shards_init);
  uv_timer_init(&s->loop, &t->h);
  t->h.data = t;
  t->sched = s;
  t->ref = act_make_ref();
  t->to = to;
  t->env = e;
  if (ref_in_msg) e->msg.ref = t->ref; /* start_timer: {timeout, TRef, Msg} */
  t->next = s->timers;
  if (s->timers) s->timers->prev = t;
  s->timers = t;
  t->due_ns = uv_hrtime() + ms * 1000000u;
  shard_t *sh = shard_of(t->ref);
  pthread_mutex_lock(&sh->mu);
  t->armed = true;
  act_timer_t **b = bucket_of(sh, t->ref);
  t->hnext = *b;
  *b = t;
  pthread_mutex_unlock(&sh->mu);
  /* The loop's clock is only refreshed when it polls; a busy scheduler
   * would otherwise start the timer from a stale "now" and fire it early. */
  uv_update_time(&s->loop);
  uv_timer_start(&t->h, on_fire, ms, 0);
  return t->ref;
}

static act_ref_t set_timer(uint64_t ms, act_pid_t to, int type, const void *data, size_t size,
                           bool ref_in_msg) {
  act_sched_t *s = act__sched_self();
  if (!s || type <= ACT_MSG_SYSTEM_MIN) return 0;
  return start(s, ms, to, act__env_new(type, act_self(), 0, data, size, NULL), ref_in_msg);
}

act_ref_t act_send_after(uint64_t ms, act_pid_t to, int type, const void *data,
                         size_t size) {
  return set_timer(ms, to, type, data, size, false);
}

act_ref_t act_start_timer(uint64_t ms, act_pid_t to, int type, const void *data,
                          size_t size) {
  return set_timer(ms, to, type, data, size, true);
}

/* The timer behind act_request's timeout: a signal to the owner itself. */
act_ref_t act__timer_signal(act_proc_t *p, uint64_t ms, int type, act_ref_t ref) {
  return start(p->sched, ms, p->pid, act__env_new(type, p->pid, ref, NULL, 0, NULL), false);
}

/* ---------------------------------------------- any thread */

int64_t act_cancel_timer(act_ref_t tref) {
  if (!tref) return -1;
  pthread_once(&g_once, shards_init);
  shard_t *sh = shard_of(tref);
  pthread_mutex_lock(&sh->mu);
  act_timer_t *t = unhash(sh, tref);
  int64_t left = t ? left_ms(t) : -1;
  /* t stays valid after the unlock only on its own thread, which alone
   * frees it; elsewhere on_fire closes it when it comes due */
  bool mine = t && t->sched == act__sched_self();
  pthread_mutex_unlock(&sh->mu);
  if (mine) close_timer(t);
  return left;
}

int64_t act_read_timer(act_ref_t tref) {
  if (!tref) return -1;
  pthread_once(&g_once, shards_init);
  shard_t *sh = shard_of(tref);
  pthread_mutex_lock(&sh->mu);
  act_timer_t *t = lookup(sh, tref);
  int64_t left = t ? left_ms(t) : -1;
  pthread_mutex_unlock(&sh->mu);
  return left;
}

/* A stopping scheduler, after its loop closed every handle (with no close
 * callback): free what is left and take it out of the table. */
void act__timers_free_sched(act_sched_t *s) {
  while (s->timers) {
    act_timer_t *t = s->timers;
    s->timers = t->next;
    shard_t *sh = shard_of(t->ref);
    pthread_mutex_lock(&sh->mu);
    if (t->armed) unhash(sh, t->ref);
    pthread_mutex_unlock(&sh->mu);
    if (t->env) act__env_free(t->env);
    free(t);
  }
}
