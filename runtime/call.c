/*
 * call.c -- blocking requests for code outside actors (main, tests).
 *
 * An outside thread borrows a slot of its own, a "proxy": a pid with a
 * mailbox whose wake-up is a condition variable instead of a scheduler.  It
 * monitors the target, sends the request and sleeps until the reply, the
 * target's DOWN, or the timeout.  Then the proxy's slot is released, so a
 * late reply goes to a dead pid and is dropped: it is never delivered to
 * anyone, as with OTP's aliases.
 */
#include "act_internal.h"

#include <stdlib.h>
#include <time.h>

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monitor pid from the proxy: ACT_OK and *mref, ACT_ENOPROC if pid is
 * dead, ACT_ENOMEM if the signal or its record cannot be allocated (then
 * nothing was sent: a monitor the proxy does not record would never be
 * taken down). */
static int proxy_monitor(act_proc_t *x, act_pid_t pid, act_ref_t *mref) {
  act_ref_t ref = act_make_ref();
  act_env_t *e = act__env_new(ACT__SIG_MONITOR, x->pid, ref, NULL, 0, NULL);
  if (!e) return ACT_ENOMEM;
  if (!act__monvec_add(&x->monitors_out, ref, pid)) {
    act__env_free(e);
    return ACT_ENOMEM;
  }
  if (!act__deliver(pid, e)) {
    act__env_free(e);
    act__monvec_del(&x->monitors_out, ref, NULL);
    return ACT_ENOPROC;
  }
  *mref = ref;
  return ACT_OK;
}

static int outside_only(void) {
  act_proc_t *p = act__current();
  if (p) return ACT_ENOTACTOR;
  return act__running() ? ACT_OK : ACT_ESTATE;
}

/* Waits for the target's DOWN (monitor mref) or, when ref is not 0, the
 * reply carrying ref; drops anything else.  NULL after timeout_ms. */
static act_env_t *await_down_or_reply(act_proc_t *x, act_ref_t mref, act_ref_t ref,
                                      int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int left = timeout_ms < 0 ? -1 : (int)(deadline - now_ms());
    if (timeout_ms >= 0 && left < 0) left = 0;
    act_env_t *e = act__proxy_wait(x, left);
    if (!e) return NULL;
    if (e->msg.type == ACT__SIG_DOWN && e->msg.ref == mref) {
      act__monvec_del(&x->monitors_out, mref, NULL);
      return e;
    }
    if (ref && e->msg.type >= ACT_MSG_SYSTEM_MIN && e->msg.ref == ref) return e;
    act__env_free(e);
  }
}

int act_call(act_pid_t to, int type, const void *data, size_t size,
             act_msg_t **reply, int timeout_ms) {
  int rc = outside_only();
  if (rc) return rc;
  act_proc_t *x = act__proxy_new();
  if (!x) return ACT_ENOMEM;
  act_ref_t mref = 0, ref = act_make_ref();
  /* the request first: if it cannot be made, nothing was sent at all */
  act_env_t *rq = act__env_new(type, x->pid, ref, data, size, NULL);
  rc = rq ? proxy_monitor(x, to, &mref) : ACT_ENOMEM;
  if (rc != ACT_OK) {
    if (rq) act__env_free(rq);
    act__proxy_free(x);
    return rc;
  }
  act__deliver_or_drop(to, rq);
  act_env_t *e = await_down_or_reply(x, mref, ref, timeout_ms);
  if (!e) {
    rc = ACT_ETIMEDOUT;
  } else if (e->msg.type == ACT__SIG_DOWN) {
    act__env_free(e);
    rc = ACT_ENOPROC;
  } else {
    if (reply) *reply = &e->msg;
    else act__env_free(e);
    rc = ACT_OK;
  }
  act__proxy_free(x);
  return rc;
}

int act_await_exit(act_pid_t pid, int timeout_ms, act_reason_t *reason) {
  int rc = outside_only();
  if (rc) return rc;
  act_proc_t *x = act__proxy_new();
  if (!x) return ACT_ENOMEM;
  act_ref_t mref = 0;
  rc = proxy_monitor(x, pid, &mref);
  if (rc != ACT_OK) {
    act__proxy_free(x);
    if (reason && rc == ACT_ENOPROC) *reason = act_reason(ACT_NOPROC);
    return rc;
  }
  act_env_t *e = await_down_or_reply(x, mref, 0, timeout_ms);
  rc = ACT_ETIMEDOUT;
  if (e) {
    act_down_msg_t *d = e->msg.data;
    if (reason) *reason = d->reason;
    rc = d->reason.kind == ACT_NOPROC ? ACT_ENOPROC : ACT_OK;
    act__env_free(e);
  }
  act__proxy_free(x);
  return rc;
}
