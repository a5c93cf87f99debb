/*
 * request.c -- request and reply (gen_server's call, without blocking): a
 * request carries a fresh ref, monitors the callee and may start a timer;
 * whichever of reply, timeout or the callee's DOWN comes first ends it.
 */
#include "act_internal.h"

/* A request ends (reply, timeout or the callee's DOWN): stop its timer and
 * its monitor of the callee.  The DOWN of a callee that died meanwhile may
 * still come; with no monitor or request left for its ref, it is dropped. */
bool act__request_done(act_proc_t *p, act_ref_t ref) {
  act_pid_t tref, callee;
  if (!act__monvec_del(&p->requests, ref, &tref)) return false;
  if (tref) act_cancel_timer(tref);
  if (act__monvec_del(&p->callees, ref, &callee))
    act__send_signal(callee, ACT__SIG_DEMONITOR, p->pid, ref, NULL, 0);
  return true;
}

act_ref_t act_request(act_pid_t to, int type, const void *data, size_t size,
                      int timeout_ms) {
  act_proc_t *p = act__require_current("act_request");
  act_ref_t ref = act_make_ref();
  /* Out of memory anywhere below: undo, send nothing, return 0 (a request
   * half made could wait for ever: no timer, or no DOWN). */
  act_env_t *e = act__env_new(type, p->pid, ref, data, size, NULL);
  act_env_t *mon = e ? act__env_new(ACT__SIG_MONITOR, p->pid, ref, NULL, 0, NULL) : NULL;
  act_ref_t tref = 0;
  if (mon && timeout_ms >= 0 &&
      !(tref = act__timer_signal(p, (uint64_t)timeout_ms, ACT__SIG_TIMEOUT, ref)))
    goto fail;
  if (!mon || !act__monvec_add(&p->requests, ref, tref)) goto fail;
  /* gen_server:call monitors the callee: a dead one fails the call at once
   * with noproc, one that dies before replying with its reason.  Cost: a
   * monitor and a demonitor signal per request.  Recorded before it is
   * sent, as undoing a record needs no memory. */
  if (!act__monvec_add(&p->callees, ref, to)) {
    act__monvec_del(&p->requests, ref, NULL);
    goto fail;
  }
  if (!act__deliver(to, mon)) {
    act__monvec_del(&p->callees, ref, NULL);
    act__env_free(mon);
    mon = act__down_env(ref, to, act_reason(ACT_NOPROC), ACT__SIG_DOWN);
    if (!mon) {
      act__monvec_del(&p->requests, ref, NULL);
      goto fail;
    }
    act__deliver_or_drop(p->pid, mon);
  }
  act__deliver_or_drop(to, e);
  return ref;
fail:
  if (tref) act_cancel_timer(tref);
  if (mon) act__env_free(mon);
  if (e) act__env_free(e);
  return 0;
}

int act_reply(const act_msg_t *req, int type, const void *data, size_t size) {
  return act_reply_ex(req, type, data, size, NULL);
}

int act_reply_ex(const act_msg_t *req, int type, const void *data, size_t size,
                 act_payload_free_fn free_fn) {
  /* A reply is awaited as a death signal is: its caller would otherwise
   * wait for its whole timeout. */
  act_env_t *e = act__env_must(type, act_self(), req->ref, data, size, free_fn);
  if (!e) return ACT_ENOMEM;
  e->is_reply = true;
  act__deliver_or_drop(req->from, e);
  return ACT_OK;
}
