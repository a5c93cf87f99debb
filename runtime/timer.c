/*
 * timer.c -- send_after/cancel_timer: one uv_timer_t per timer, on the
 * owner's scheduler loop, listed in the owner so that its death cancels
 * them (a dead actor's timers never fire).
 *
 * Only the owner touches its list: the owner's handlers and the timer
 * callbacks both run on the owner's scheduler thread.
 */
#include "act_internal.h"

#include <stdlib.h>

typedef struct act_timer {
  uv_timer_t h;
  struct act_timer *prev, *next;
  act_proc_t *owner;
  act_ref_t ref;
  act_pid_t to;
  act_env_t *env; /* built at send_after time, so firing cannot fail */
} act_timer_t;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void unlist(act_timer_t *t) {
  if (t->prev) t->prev->next = t->next;
  else t->owner->timers = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static void discard(act_timer_t *t) {
  uv_timer_stop(&t->h);
  unlist(t);
  if (t->env) act__env_free(t->env);
  t->env = NULL;
  uv_close((uv_handle_t *)&t->h, on_closed);
}

static void on_fire(uv_timer_t *h) {
  act_timer_t *t = h->data;
  unlist(t);
  act_env_t *e = t->env;
  t->env = NULL;
  act__deliver_or_drop(t->to, e);
  uv_close((uv_handle_t *)&t->h, on_closed);
}

static act_ref_t start(act_proc_t *p, uint64_t ms, act_pid_t to, act_env_t *e) {
  act_timer_t *t = calloc(1, sizeof *t);
  if (!t || !e) {
    free(t);
    if (e) act__env_free(e);
    return 0;
  }
  uv_timer_init(&p->sched->loop, &t->h);
  t->h.data = t;
  t->owner = p;
  t->ref = act_make_ref();
  t->to = to;
  t->env = e;
  t->next = p->timers;
  if (p->timers) p->timers->prev = t;
  p->timers = t;
  /* The loop's clock is only refreshed when it polls; a busy scheduler
   * would otherwise start the timer from a stale "now" and fire it early. */
  uv_update_time(&p->sched->loop);
  uv_timer_start(&t->h, on_fire, ms, 0);
  return t->ref;
}

act_ref_t act_send_after(uint64_t ms, act_pid_t to, int type, const void *data,
                         size_t size) {
  act_proc_t *p = act__require_current("act_send_after");
  if (type <= ACT_MSG_SYSTEM_MIN) return 0;
  return start(p, ms, to, act__env_new(type, p->pid, 0, data, size, NULL));
}

/* The timer behind act_request's timeout: a signal to the owner itself. */
act_ref_t act__timer_signal(act_proc_t *p, uint64_t ms, int type, act_ref_t ref) {
  return start(p, ms, p->pid, act__env_new(type, p->pid, ref, NULL, 0, NULL));
}

int64_t act_cancel_timer(act_ref_t tref) {
  act_proc_t *p = act__require_current("act_cancel_timer");
  for (act_timer_t *t = p->timers; t; t = t->next) {
    if (t->ref != tref) continue;
    int64_t left = (int64_t)uv_timer_get_due_in(&t->h);
    discard(t);
    return left;
  }
  return -1;
}

void act__timers_cancel_all(act_proc_t *p) {
  while (p->timers) discard(p->timers);
}
