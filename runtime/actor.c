/*
 * actor.c -- processes: spawn, send, the turn, signals (links, monitors,
 * exits) and death, in OTP's order.  The process table is slot.c, the
 * envelopes envelope.c, the link and monitor sets sets.c, request/reply
 * request.c, introspection introspect.c.
 *
 * Reading guide.  A pid names a slot and a generation.  A sender "pins" the
 * slot (readers += 1), checks that the slot still holds that pid, pushes its
 * envelope into the process's inbox, and unpins.  A dying process unpublishes
 * its slot and waits for readers to reach zero before draining its inbox, so
 * no envelope is ever pushed into freed memory and none is lost unnoticed.
 *
 * `pending` counts envelopes pushed but not consumed.  The sender that takes
 * it from 0 to 1 schedules the process; the turn subtracts what it consumed
 * and reschedules if anything is left.  So a process is in at most one run
 * queue at a time, and runs on one thread at a time.
 *
 * A turn first moves envelopes from the inbox to a private FIFO, acting on
 * signals as it meets them (OTP's signal order per sender is kept because
 * trapped exits and DOWNs become messages at that point, behind the
 * messages that came before them), then runs handle() on up to `budget`
 * messages.
 */
#include "act_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOVE_MAX 1024 /* envelopes moved per turn: bounds a turn's length */

static _Atomic uint64_t g_refs = 1;

/* ---------------------------------------------------------- reasons */

static const char *const kind_names[] = {"normal", "shutdown", "kill",
                                         "killed", "noproc",   "error"};

act_reason_t act_reason(act_reason_kind_t kind) {
  act_reason_t r = {.kind = kind};
  snprintf(r.text, sizeof r.text, "%s", kind_names[kind]);
  return r;
}

act_reason_t act_reason_shutdown(const char *fmt, ...) {
  act_reason_t r = {.kind = ACT_SHUTDOWN};
  char term[ACT_REASON_TEXT];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(term, sizeof term, fmt, ap);
  va_end(ap);
  snprintf(r.text, sizeof r.text, "shutdown: %.*s", ACT_REASON_TEXT - 11, term);
  return r;
}

act_reason_t act_reason_error(const char *fmt, ...) {
  act_reason_t r = {.kind = ACT_ERROR};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r.text, sizeof r.text, fmt, ap);
  va_end(ap);
  return r;
}

const char *act_strerror(int err) {
  switch (err) {
  case ACT_OK: return "ok";
  case ACT_EINVAL: return "invalid argument";
  case ACT_ENOMEM: return "out of memory or actor slots";
  case ACT_ENOPROC: return "no such actor";
  case ACT_ETIMEDOUT: return "timed out";
  case ACT_EEXIST: return "already exists";
  case ACT_ENOTACTOR: return "only an actor may do this";
  case ACT_ESTATE: return "runtime not running";
  case ACT_EEXITED: return "exited before init answered";
  case ACT_ERUNNING: return "the child is running";
  default: return "unknown error";
  }
}

/* relaxed: only uniqueness matters, and an RMW is unique in any order */
act_ref_t act_make_ref(void) { return atomic_fetch_add_explicit(&g_refs, 1, memory_order_relaxed); }

/* ---------------------------------------------------------- delivery */

static bool is_signal(const act_env_t *e) { return e->msg.type <= ACT_MSG_SYSTEM_MIN; }

/* max_mailbox: the first sender that finds the box full tells the owner to
 * die; later ones drop their message.  Signals are never refused. */
static bool admit(act_proc_t *p, act_env_t *e, act_pid_t to) {
  if (!p->max_mailbox || is_signal(e)) return true;
  /* relaxed: the bound is advisory (a few messages over it are fine); the
   * exchange alone decides who sends the one overflow signal */
  if (atomic_load_explicit(&p->overflow, memory_order_relaxed)) return false;
  if (atomic_load_explicit(&p->pending, memory_order_relaxed) < p->max_mailbox) return true;
  if (!atomic_exchange_explicit(&p->overflow, true, memory_order_relaxed)) {
    act__exit_sig_t sig = {act_reason_error("mailbox_overflow"), false, true};
    act_env_t *k = act__env_new(ACT__SIG_EXIT, to, 0, &sig, sizeof sig, NULL);
    if (k) { /* seq_cst: as every pending increment, see deliver_local */
      if (atomic_fetch_add(&p->pending, 1) == 0) act__schedule(p);
      act__mpsc_push(&p->inbox, &k->node);
    }
  }
  return false;
}

/* A target on the caller's own scheduler cannot die while we push: only
 * this thread runs it.  No pin, no reader count. */
static bool deliver_local(act_pid_t to, act_env_t *e) {
  act_slot_t *s = act__slot_of(to);
  /* acquire: pairs with the release publishing the slot (act__spawn), so
   * the process it names is fully built even if another thread spawned it
   * (free on x86: a plain load either way) */
  if (!s || atomic_load_explicit(&s->pid, memory_order_acquire) != to) return false;
  act_proc_t *p = atomic_load_explicit(&s->proc, memory_order_acquire);
  if (!p) return false;
  if (admit(p, e, to)) {
    /* seq_cst: the turn's fetch_sub and this fetch_add decide, between
     * them, who schedules the process: exactly one sees the count leave 0 */
    size_t old = atomic_fetch_add(&p->pending, 1);
    act__mpsc_push(&p->inbox, &e->node);
    if (old == 0) act__schedule(p);
  } else {
    act__env_free(e);
  }
  return true;
}

bool act__deliver(act_pid_t to, act_env_t *e) {
  act_sched_t *me = act__sched_self();
  if (me && (unsigned)me->id == act__pid_sched(to) && to != ACT_NOPID) return deliver_local(to, e);
  act_slot_t *s;
  act_proc_t *p = act__pin(to, &s);
  if (!p) return false;
  if (admit(p, e, to)) {
    size_t old = atomic_fetch_add(&p->pending, 1); /* seq_cst: as deliver_local */
    act__mpsc_push(&p->inbox, &e->node);
    if (old == 0) act__schedule(p);
  } else {
    act__env_free(e); /* refused for overflow: dropped like a dead pid's */
  }
  act__unpin(s);
  return true;
}

void act__deliver_or_drop(act_pid_t to, act_env_t *e) {
  if (e && !act__deliver(to, e)) act__env_free(e);
}

int act_send_ex(act_pid_t to, int type, const void *data, size_t size,
                act_payload_free_fn free_fn) {
  if (type <= ACT_MSG_SYSTEM_MIN) return ACT_EINVAL;
  act_env_t *e = act__env_new(type, act_self(), 0, data, size, free_fn);
  if (!e) return ACT_ENOMEM;
  act__deliver_or_drop(to, e);
  return ACT_OK;
}

int act_send(act_pid_t to, int type, const void *data, size_t size) {
  return act_send_ex(to, type, data, size, NULL);
}

/* A process's own private FIFO, from its own thread.  Counted in pending so
 * that the turn's accounting stays exact. */
static void append_private(act_proc_t *p, act_env_t *e) {
  ACT_DEBUG_ASSERT(p->sched == act__sched_self()); /* the owner's FIFO, owner only */
  act_queue_push(&p->priv, &e->qnode);
}

void act__push_private(act_proc_t *p, act_env_t *e) {
  append_private(p, e);
  if (atomic_fetch_add(&p->pending, 1) == 0) act__schedule(p); /* seq_cst: as deliver_local */
}

static act_env_t *pop_private(act_proc_t *p) {
  act_qnode_t *n = act_queue_pop(&p->priv);
  return n ? ACT_QUEUE_DATA(n, act_env_t, qnode) : NULL;
}

/* -------------------------------------------------------------- self */

act_pid_t act_self(void) {
  act_proc_t *p = act__current();
  return p ? p->pid : ACT_NOPID;
}

act_proc_t *act__require_current(const char *what) {
  act_proc_t *p = act__current();
  if (!p) {
    fprintf(stderr, "act: %s called outside an actor\n", what);
    abort();
  }
  return p;
}

/* Where an exit reason goes when its 100 bytes cannot be allocated: the
 * actor still ends, with this reason, shared and never written or freed
 * (exit_reason_free). */
static act_reason_t g_oom_reason = {ACT_ERROR, "out of memory"};

void act__set_exit(act_proc_t *p, act_reason_t r) {
  if (p->exit_reason) return; /* the first reason wins */
  p->exit_reason = malloc(sizeof *p->exit_reason);
  if (!p->exit_reason) {
    p->exit_reason = &g_oom_reason;
    return;
  }
  *p->exit_reason = r;
}

static void exit_reason_free(act_proc_t *p) {
  if (p->exit_reason != &g_oom_reason) free(p->exit_reason);
  p->exit_reason = NULL;
}

void act_stop(act_reason_t reason) {
  act__set_exit(act__require_current("act_stop"), reason);
}

_Noreturn void act_crash(const char *fmt, ...) {
  act_proc_t *p = act__current();
  act_sched_t *s = act__sched_self();
  char text[ACT_REASON_TEXT];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (!p || !s || !s->crash_jb) {
    fprintf(stderr, "act_crash outside an actor: %s\n", text);
    abort();
  }
  if (p->in_terminate && p->exit_reason != &g_oom_reason)
    *p->exit_reason = act_reason_error("%s", text);
  else act__set_exit(p, act_reason_error("%s", text));
  siglongjmp(*s->crash_jb, 1); /* no signal mask: handlers do not change it */
}

/* -------------------------------------------------------------- spawn */

int act__registry_add(const char *name, act_pid_t pid, act_proc_t *p);
static void drain_dead_inbox(act_proc_t *p);

/* proc_lib's init_ack: one message to whoever waits for init's answer.
 * Sent at most once (ack_to is cleared); false if its 88 bytes could not
 * be allocated (nothing sent, ack_to kept). */
static bool send_ack(act_proc_t *p, int result) {
  act_init_ack_t a = {p->pid, result};
  act_env_t *e = result == ACT_OK /* a failure's ack is a death signal */
                     ? act__env_new(ACT_MSG_INIT_ACK, p->pid, p->ack_ref, &a, sizeof a, NULL)
                     : act__env_must(ACT_MSG_INIT_ACK, p->pid, p->ack_ref, &a, sizeof a,
                                     NULL);
  if (!e) return false;
  act_pid_t to = p->ack_to;
  p->ack_to = ACT_NOPID;
  act__deliver_or_drop(to, e);
  return true;
}

void act__init_ack_later(void) { act__require_current("act__init_ack_later")->ack_deferred = true; }

void act__init_ack(act_proc_t *p, int result) {
  if (!p->ack_to) return;
  if (result == ACT_OK && send_ack(p, ACT_OK)) return;
  /* A failure is sent by die(), once the name is free.  An ok that cannot
   * be sent fails the start: the actor ends, its starter is told (by the
   * ack die() sends, or by its EXIT) and nobody waits for ever. */
  if (result == ACT_OK) {
    result = ACT_ENOMEM;
    act__set_exit(p, act_reason_error("out of memory: init_ack"));
  }
  p->ack_result = result;
}

/* An outside thread's blocking start: wait for the ack on a proxy. */
static int await_ack(act_proc_t *x, act_ref_t ref) {
  for (;;) {
    act_env_t *e = act__proxy_wait(x, -1);
    if (!e) continue;
    int rc = ACT_EEXITED;
    bool mine = e->msg.type == ACT_MSG_INIT_ACK && e->msg.ref == ref;
    if (mine) rc = ((act_init_ack_t *)e->msg.data)->result;
    act__env_free(e);
    if (mine) return rc;
  }
}

/* A spawn that failed after recording its link or monitor: forget both. */
static void unspawn_links(act_proc_t *caller, act_proc_t *p, bool link, act_ref_t mref) {
  if (link) act__pidvec_del(&caller->links, p->pid);
  if (mref) act__monvec_del(&caller->monitors_out, mref, NULL);
  free(p->links.v);
  free(p->monitors_in.v);
}

act_pid_t act__spawn(const act_behaviour_t *b, void *args,
                     const act_spawn_opts_t *opts, uint32_t restarts, int *err) {
  int dummy;
  if (!err) err = &dummy;
  *err = ACT_OK;
  if (!act__running()) return *err = ACT_ESTATE, ACT_NOPID;
  if (!b || !b->handle) return *err = ACT_EINVAL, ACT_NOPID;
  act_proc_t *caller = act__current();
  if (caller && caller->is_proxy) caller = NULL;
  bool link = opts && opts->link, monitor = opts && opts->monitor;
  if (!caller && (link || monitor)) return *err = ACT_EINVAL, ACT_NOPID;
  act_proc_t *p = calloc(1, sizeof *p);
  act_sched_t *sched = act__sched_for(opts ? opts->scheduler : ACT_SCHED_CALLER, caller);
  act_pid_t pid = p ? act__slot_alloc((unsigned)sched->id) : ACT_NOPID;
  /* Blocking is for threads outside the runtime only: a scheduler thread
   * (an actor, or a libuv callback) waiting for an init that its own loop
   * must run would wait for ever.  The waiter is a proxy, which holds a
   * slot of its own while it waits; it is taken after the process's slot,
   * so that the process gets the slot freed last (the free list is LIFO)
   * and the proxy, gone again before we return, the one before it.  The
   * other order handed the most recently freed slot to every proxy in
   * turn: a loop of spawns from outside never reused it, and filled the
   * table around it. */
  act_proc_t *waiter = NULL;
  if (pid && !caller && !act__sched_self() && !(waiter = act__proxy_new())) {
    act__slot_release((uint32_t)pid);
    pid = ACT_NOPID;
  }
  if (!pid) {
    free(p);
    return *err = ACT_ENOMEM, ACT_NOPID;
  }
  p->pid = pid;
  p->b = b;
  p->args = args;
  p->sched = sched;
  p->parent = caller ? caller->pid : ACT_NOPID;
  p->max_mailbox = opts ? opts->max_mailbox : 0;
  p->high = opts && opts->priority == ACT_PRIORITY_HIGH;
  p->budget = opts && opts->budget > 0 ? opts->budget : ACT_DEFAULT_BUDGET;
  atomic_store_explicit(&p->restarts, restarts, memory_order_relaxed); /* published with the slot */
  act__mpsc_init(&p->inbox);
  /* The link and monitor are recorded before anyone can see the process,
   * so that out of memory here undoes them and nothing was spawned. */
  act_ref_t mref = 0;
  bool ok = !link || (act__pidvec_add(&p->links, caller->pid) &&
                      act__pidvec_add(&caller->links, pid));
  if (ok && monitor) {
    mref = act_make_ref();
    ok = act__monvec_add(&p->monitors_in, mref, caller->pid) &&
         act__monvec_add(&caller->monitors_out, mref, pid);
  }
  if (!ok) {
    unspawn_links(caller, p, link, mref);
    act__slot_release((uint32_t)pid);
    free(p);
    if (waiter) act__proxy_free(waiter);
    return *err = ACT_ENOMEM, ACT_NOPID;
  }
  /* init counts as the first pending item: set before anyone can see the
   * process, so that no sender schedules it a second time. */
  atomic_store_explicit(&p->pending, 1, memory_order_relaxed); /* published with the slot */
  act_slot_t *s = act__slot_of(pid);
  /* Publish the slot first, then the name: whoever finds the name can send
   * (the other order dropped a send made in between).  seq_cst (a release
   * at least): everything above is visible to whoever reads the slot;
   * seq_cst as the other half of pin's Dekker. */
  atomic_store(&s->proc, p);
  atomic_store(&s->pid, pid);
  if (opts && opts->name && act__registry_add(opts->name, pid, p) != ACT_OK) {
    /* Nobody was given the pid, but act_list may have seen it: unpublish
     * as die() does and answer what came meanwhile. */
    atomic_store(&s->pid, ACT_NOPID); /* seq_cst: Dekker with act__pin */
    atomic_store(&s->proc, NULL);
    while (atomic_load(&s->readers)) sched_yield();
    drain_dead_inbox(p);
    unspawn_links(caller, p, link, mref);
    act__slot_release((uint32_t)pid);
    free(p);
    if (waiter) act__proxy_free(waiter);
    return *err = ACT_EEXIST, ACT_NOPID;
  }
  if (waiter || (caller && opts && opts->ack)) {
    p->ack_to = waiter ? waiter->pid : caller->pid;
    p->ack_ref = act_make_ref();
    if (!waiter && opts->ack_ref) *opts->ack_ref = p->ack_ref;
  }
  if (monitor && opts->monitor_ref) *opts->monitor_ref = mref;
  act__live_inc();
  atomic_fetch_add_explicit(&p->sched->actors, 1, memory_order_relaxed); /* a statistic */
  act_ref_t ack_ref = p->ack_ref; /* p may be gone once scheduled */
  act__schedule(p);
  if (waiter) {
    int rc = await_ack(waiter, ack_ref);
    act__proxy_free(waiter);
    if (rc != ACT_OK) return *err = rc, ACT_NOPID;
  }
  return pid;
}

act_pid_t act_spawn(const act_behaviour_t *b, void *args,
                    const act_spawn_opts_t *opts, int *err) {
  return act__spawn(b, args, opts, 0, err);
}

act_pid_t act_spawn_link(const act_behaviour_t *b, void *args) {
  act_spawn_opts_t o = {.link = true, .scheduler = ACT_SCHED_CALLER};
  return act__spawn(b, args, &o, 0, NULL);
}

act_pid_t act_spawn_monitor(const act_behaviour_t *b, void *args, act_ref_t *mref) {
  act_spawn_opts_t o = {.monitor = true, .monitor_ref = mref, .scheduler = ACT_SCHED_CALLER};
  return act__spawn(b, args, &o, 0, NULL);
}

/* ------------------------------------------------------ links, monitors */

static void local_exit_signal(act_proc_t *p, act_pid_t from, act_reason_t r);

int act_link(act_pid_t pid) {
  act_proc_t *p = act__require_current("act_link");
  if (pid == p->pid || act__pidvec_has(&p->links, pid)) return ACT_OK;
  act_env_t *e = act__env_new(ACT__SIG_LINK, p->pid, 0, NULL, 0, NULL);
  if (!e) return ACT_ENOMEM;
  if (!act__pidvec_add(&p->links, pid)) {
    act__env_free(e);
    return ACT_ENOMEM;
  }
  if (!act__deliver(pid, e)) {
    /* noproc through our own inbox, behind whatever pid sent us before it
     * died (OTP keeps per-pair order); the link goes when it arrives */
    act__env_free(e);
    act__exit_sig_t sig = {act_reason(ACT_NOPROC), true, false};
    act__send_signal(p->pid, ACT__SIG_EXIT, pid, 0, &sig, sizeof sig);
    return ACT_ENOPROC;
  }
  return ACT_OK;
}

int act_unlink(act_pid_t pid) {
  act_proc_t *p = act__require_current("act_unlink");
  if (act__pidvec_del(&p->links, pid)) act__send_signal(pid, ACT__SIG_UNLINK, p->pid, 0, NULL, 0);
  return ACT_OK;
}

bool act_trap_exit(bool on) {
  act_proc_t *p = act__require_current("act_trap_exit");
  bool old = p->trap_exit;
  p->trap_exit = on;
  return old;
}

/* p->high is read only by p's own scheduler thread (act__schedule's local
 * case), and p runs on no other: a plain store suffices. */
act_priority_t act_set_priority(act_priority_t level) {
  act_proc_t *p = act__require_current("act_set_priority");
  act_priority_t old = p->high ? ACT_PRIORITY_HIGH : ACT_PRIORITY_NORMAL;
  p->high = level == ACT_PRIORITY_HIGH;
  return old;
}

bool act_parent_exit_as_message(bool on) {
  act_proc_t *p = act__require_current("act_parent_exit_as_message");
  bool old = p->parent_exit_as_msg;
  p->parent_exit_as_msg = on;
  return old;
}

act_ref_t act_monitor(act_pid_t pid) {
  act_proc_t *p = act__require_current("act_monitor");
  act_ref_t ref = act_make_ref();
  act_env_t *e = act__env_new(ACT__SIG_MONITOR, p->pid, ref, NULL, 0, NULL);
  if (!e) return 0;
  if (!act__monvec_add(&p->monitors_out, ref, pid)) { /* its DOWN would be dropped */
    act__env_free(e);
    return 0;
  }
  if (!act__deliver(pid, e)) { /* as act_link: behind pid's earlier messages */
    act__env_free(e);
    act__deliver_or_drop(p->pid, act__down_env(ref, pid, act_reason(ACT_NOPROC), ACT__SIG_DOWN));
  }
  return ref;
}

act_ref_t act_monitor_name(const char *name) {
  return act_monitor(name ? act_whereis(name) : ACT_NOPID);
}

int act_send_name(const char *name, int type, const void *data, size_t size) {
  act_pid_t to = name ? act_whereis(name) : ACT_NOPID;
  if (!to) return ACT_ENOPROC;
  return act_send(to, type, data, size);
}

bool act_demonitor(act_ref_t ref) {
  act_proc_t *p = act__require_current("act_demonitor");
  act_pid_t target;
  bool active = act__monvec_del(&p->monitors_out, ref, &target);
  if (active) act__send_signal(target, ACT__SIG_DEMONITOR, p->pid, ref, NULL, 0);
  /* flush: a DOWN already turned into a message is skipped, not handled */
  ACT_QUEUE_FOREACH(n, &p->priv) {
    act_env_t *e = ACT_QUEUE_DATA(n, act_env_t, qnode);
    if (e->msg.type == ACT_MSG_DOWN && e->msg.ref == ref) e->flushed = true;
  }
  return active;
}

int act_exit(act_pid_t pid, act_reason_t reason) {
  act__exit_sig_t sig = {reason, false, reason.kind == ACT_KILL};
  if (sig.forced) sig.reason = act_reason(ACT_KILLED);
  act_env_t *e = act__env_new(ACT__SIG_EXIT, act_self(), 0, &sig, sizeof sig, NULL);
  if (!e) return ACT_ENOMEM;
  if (!act__deliver(pid, e)) {
    act__env_free(e);
    return ACT_ENOPROC;
  }
  return ACT_OK;
}

/* An exit signal from `from` that reached p: OTP's receiving rules. */
static void local_exit_signal(act_proc_t *p, act_pid_t from, act_reason_t r) {
  /* The parent-EXIT rule of gen_server: a trapping child told to exit by
   * its parent (the supervisor's `shutdown`) runs terminate with that
   * reason at once instead of getting a message it might ignore.  A
   * supervisor opts out: it stops its own children first. */
  if (p->trap_exit && from == p->parent && from != ACT_NOPID && !p->parent_exit_as_msg) {
    act__set_exit(p, r);
    return;
  }
  if (p->trap_exit) {
    act_exit_msg_t m = {from, r};
    act_env_t *e = act__env_must(ACT_MSG_EXIT, from, 0, &m, sizeof m, NULL);
    if (e) act__push_private(p, e);
  } else if (r.kind != ACT_NORMAL || from == p->pid) {
    act__set_exit(p, r);
  }
}

/* ------------------------------------------------------ signals in a turn */


/* Returns true if e was consumed (freed or absorbed), false if it became a
 * message in the private FIFO. */
static bool accept_envelope(act_proc_t *p, act_env_t *e) {
  act_msg_t *m = &e->msg;
  switch (m->type) {
  case ACT__SIG_EXIT: {
    act__exit_sig_t *sig = m->data;
    if (sig->forced) act__set_exit(p, sig->reason);
    else if (!sig->linked || act__pidvec_del(&p->links, m->from))
      local_exit_signal(p, m->from, sig->reason); /* a trapped EXIT is counted there */
    act__env_free(e);
    return true;
  }
  case ACT__SIG_LINK: /* recorded, or its EXIT would never be sent */
    ACT__RETRY_OOM(act__pidvec_add(&p->links, m->from));
    act__env_free(e);
    return true;
  case ACT__SIG_UNLINK:
    act__pidvec_del(&p->links, m->from);
    act__env_free(e);
    return true;
  case ACT__SIG_MONITOR: /* as LINK: an unrecorded monitor never gets its DOWN */
    ACT__RETRY_OOM(act__monvec_add(&p->monitors_in, m->ref, m->from));
    act__env_free(e);
    return true;
  case ACT__SIG_DEMONITOR:
    act__monvec_del(&p->monitors_in, m->ref, NULL);
    act__env_free(e);
    return true;
  case ACT__SIG_DOWN:
    if (act__monvec_del(&p->monitors_out, m->ref, NULL)) {
      m->type = ACT_MSG_DOWN;
      append_private(p, e);
      return false;
    }
    if (act__request_done(p, m->ref)) { /* the callee is gone: the call fails now */
      m->type = ACT_MSG_TIMEOUT;
      append_private(p, e);
      return false;
    }
    act__env_free(e);
    return true;
  case ACT__SIG_INFO:
    act__answer_info(p, m);
    act__env_free(e);
    return true;
  case ACT__SIG_TIMEOUT:
    if (act__request_done(p, m->ref)) {
      m->type = ACT_MSG_TIMEOUT;
      append_private(p, e);
      return false;
    }
    act__env_free(e);
    return true;
  default:
    if (e->is_reply && m->ref && !act__request_done(p, m->ref)) {
      act__env_free(e); /* a reply nobody waits for any more */
      return true;
    }
    append_private(p, e);
    return false;
  }
}

/* --------------------------------------------------------------- death */

static void drain_dead_inbox(act_proc_t *p) {
  act_env_t *e;
  while ((e = pop_private(p))) act__env_free(e);
  act_node_t *n;
  while ((n = act__mpsc_pop(&p->inbox))) {
    e = (act_env_t *)((char *)n - offsetof(act_env_t, node));
    if (e->msg.type == ACT__SIG_LINK) {
      act__exit_sig_t sig = {act_reason(ACT_NOPROC), true, false};
      act__deliver_or_drop(e->msg.from,
                           act__env_must(ACT__SIG_EXIT, p->pid, 0, &sig, sizeof sig, NULL));
    } else if (e->msg.type == ACT__SIG_MONITOR) {
      act__deliver_or_drop(e->msg.from, act__down_env(e->msg.ref, p->pid,
                                                 act_reason(ACT_NOPROC), ACT__SIG_DOWN));
    }
    act__env_free(e);
  }
}

static void notify_links_and_monitors(act_proc_t *p, act_reason_t r) {
  act__exit_sig_t sig = {r, true, false};
  /* the sets are hash tables: walk them, skipping empty entries */
  for (uint32_t i = 0; i < p->links.cap; i++)
    if (p->links.v[i])
      act__deliver_or_drop(p->links.v[i],
                           act__env_must(ACT__SIG_EXIT, p->pid, 0, &sig, sizeof sig, NULL));
  for (uint32_t i = 0; i < p->monitors_in.cap; i++)
    if (p->monitors_in.v[i].ref)
      act__deliver_or_drop(p->monitors_in.v[i].pid,
                           act__down_env(p->monitors_in.v[i].ref, p->pid, r, ACT__SIG_DOWN));
  for (uint32_t i = 0; i < p->monitors_out.cap; i++)
    if (p->monitors_out.v[i].ref)
      act__send_signal(p->monitors_out.v[i].pid, ACT__SIG_DEMONITOR, p->pid,
                  p->monitors_out.v[i].ref, NULL, 0);
  for (uint32_t i = 0; i < p->callees.cap; i++) /* requests in flight */
    if (p->callees.v[i].ref)
      act__send_signal(p->callees.v[i].pid, ACT__SIG_DEMONITOR, p->pid, p->callees.v[i].ref, NULL, 0);
}

/* A crash inside terminate becomes the exit reason (act_crash overwrites
 * it while in_terminate), as OTP's terminate raising does. */
static void run_terminate(act_proc_t *p, act_reason_t r) {
  if (!p->initialised || !p->b->terminate) return;
  sigjmp_buf jb;
  act_sched_t *s = p->sched;
  sigjmp_buf *saved = s->crash_jb;
  s->crash_jb = &jb;
  p->in_terminate = true;
  if (sigsetjmp(jb, 0) == 0) p->b->terminate(p->state, r);
  p->in_terminate = false;
  s->crash_jb = saved;
}

/* The order is OTP's: terminate, release what it owned, free the name,
 * then EXIT and DOWN (so that a watcher may re-register the name at once). */
static void die(act_proc_t *p) {
  ACT_DEBUG_ASSERT(p->exit_reason && p->sched == act__sched_self());
  ACT_DEBUG_ASSERT(p->started && !p->in_terminate); /* running -> dead, once */
  act_reason_t r = *p->exit_reason;
  act_sched_t *s = p->sched;
  s->current = p;
  if (p->current) {
    act_env_t *cur = act__env_of(p->current);
    p->current = NULL;
    if (!cur->kept) act__env_free(cur);
  }
  run_terminate(p, r);
  r = *p->exit_reason;
  act__owned_release_all(p);
  act_slot_t *slot = act__slot_of(p->pid);
  /* The name goes before the slot: once the pid is seen dead (a monitor
   * answers noproc) its name is free, as in OTP.  acquire: pairs with
   * registry.c's release of has_name. */
  if (atomic_load_explicit(&p->has_name, memory_order_acquire)) act__registry_drop_pid(p->pid);
  /* seq_cst: Dekker with act__pin (stores, then the load of readers) */
  atomic_store(&slot->pid, ACT_NOPID);
  atomic_store(&slot->proc, NULL);
  while (atomic_load(&slot->readers)) sched_yield();
  /* again: an act_register racing with the first drop saw the slot still
   * published; it set has_name before its check (registry.c) */
  if (atomic_load_explicit(&p->has_name, memory_order_acquire)) act__registry_drop_pid(p->pid);
  /* A start still waiting hears of the failure before the EXIT, and after
   * the name is free, so that it may start the child again at once. */
  if (p->ack_to) (void)send_ack(p, p->ack_result ? p->ack_result : ACT_EEXITED);
  notify_links_and_monitors(p, r);
  drain_dead_inbox(p);
  s->current = NULL;
  free(p->links.v);
  free(p->monitors_in.v);
  free(p->monitors_out.v);
  free(p->requests.v);
  free(p->callees.v);
  exit_reason_free(p);
  act__slot_release((uint32_t)p->pid);
  free(p);
  atomic_fetch_sub_explicit(&s->actors, 1, memory_order_relaxed); /* a statistic */
  act__live_dec();
}

/* ---------------------------------------------------------------- turn */

static void run_init(act_proc_t *p) {
  int rc = p->b->init ? p->b->init(p->args, &p->state) : 0;
  if (rc < 0) {
    act__set_exit(p, act_reason_error("init failed (%d)", rc));
    p->ack_result = rc;
  } else {
    p->initialised = true;
  }
}

/* The first turn runs init before the inbox is even looked at: no signal
 * sent during the start can act before init did (OTP's proc_lib start). */
static void guarded_init(act_proc_t *p) {
  sigjmp_buf jb;
  act_sched_t *s = p->sched;
  ACT_DEBUG_ASSERT(!p->started && !p->initialised && !p->exit_reason); /* spawned -> started */
  p->started = true;
  s->crash_jb = &jb;
  if (sigsetjmp(jb, 0) == 0) run_init(p);
  s->crash_jb = NULL;
  /* act_stop in init fails the start too: die() acks ACT_EEXITED */
  if (p->initialised && !p->ack_deferred && !p->exit_reason) act__init_ack(p, ACT_OK);
}

static size_t run_handlers(act_proc_t *p) {
  size_t done = 0;
  for (int i = 0; i < p->budget && !p->exit_reason; i++) {
    act_env_t *e = pop_private(p);
    if (!e) break;
    done++;
    if (!e->flushed) {
      p->current = &e->msg;
      p->b->handle(p->state, &e->msg);
      atomic_fetch_add_explicit(&p->handled, 1, memory_order_relaxed); /* a statistic */
      p->sched->handled_local++;
      p->current = NULL;
    }
    if (!e->kept) act__env_free(e);
  }
  return done;
}

/* Signals are acted upon as they are moved; returns how many were consumed. */
static size_t move_inbox(act_proc_t *p) {
  size_t consumed = 0;
  for (int i = 0; i < MOVE_MAX && !p->exit_reason; i++) {
    act_node_t *n = act__mpsc_pop(&p->inbox);
    if (!n) break;
    act_env_t *e = (act_env_t *)((char *)n - offsetof(act_env_t, node));
    if (accept_envelope(p, e)) consumed++;
  }
  return consumed;
}

/* act_crash longjmps here; the process then dies, so what was counted no
 * longer matters. */
static size_t guarded_handlers(act_proc_t *p) {
  sigjmp_buf jb;
  act_sched_t *s = p->sched;
  s->crash_jb = &jb;
  if (sigsetjmp(jb, 0) != 0) {
    s->crash_jb = NULL;
    return 0;
  }
  size_t n = p->exit_reason ? 0 : run_handlers(p);
  s->crash_jb = NULL;
  return n;
}

void act__turn(act_proc_t *p) {
  act_sched_t *s = p->sched;
  ACT_DEBUG_ASSERT(s == act__sched_self() && !s->current && !p->is_proxy);
  s->current = p;
  size_t consumed = 0;
  if (!p->started) { /* init counts as the first pending item */
    guarded_init(p);
    consumed = 1;
  }
  if (!p->exit_reason) consumed += move_inbox(p);
  consumed += guarded_handlers(p);
  if (p->exit_reason) {
    die(p);
    return;
  }
  s->current = NULL;
  size_t before = atomic_fetch_sub(&p->pending, consumed); /* seq_cst: as deliver_local */
  ACT_DEBUG_ASSERT(before >= consumed); /* never consumed what was not counted */
  size_t left = before - consumed;
  if (left > 0) act__schedule(p);
}

/* ---------------------------------------------------------- run_as */

int act_run_as(act_pid_t pid, void (*fn)(void *arg), void *arg) {
  act_sched_t *s = act__sched_self();
  act_slot_t *slot;
  act_proc_t *p = act__pin(pid, &slot);
  if (!p) return ACT_ENOPROC;
  bool here = s && p->sched == s; /* read while pinned: elsewhere p may die now */
  act__unpin(slot); /* on this thread it can only die on this very thread */
  if (!here) return ACT_ENOPROC; /* not this thread's to run */
  act_proc_t *saved = s->current;
  sigjmp_buf *saved_jb = s->crash_jb;
  sigjmp_buf jb;
  s->current = p;
  s->crash_jb = &jb;
  if (sigsetjmp(jb, 0) == 0) fn(arg);
  s->crash_jb = saved_jb;
  s->current = saved;
  if (p->exit_reason) { /* end it in its own turn, untrappably */
    act__exit_sig_t sig = {*p->exit_reason, false, true};
    act_env_t *e = act__env_new(ACT__SIG_EXIT, pid, 0, &sig, sizeof sig, NULL);
    if (e) {
      exit_reason_free(p);
      act__deliver_or_drop(pid, e);
    } /* else the reason stays set, and the actor's next turn ends it */
  }
  return ACT_OK;
}
