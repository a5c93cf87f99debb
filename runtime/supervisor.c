/*
 * supervisor.c -- OTP's supervisor, as an ordinary actor on the public API.
 *
 * It traps exits and links to its children.  When a child exits, the
 * child's restart type (permanent, transient, temporary) says whether to
 * restart it; the strategy (one_for_one, one_for_all, rest_for_one) says
 * which siblings go with it; the intensity (restarts within period_ms) says
 * when to give up: then it stops every child and exits with `shutdown`, and
 * its own supervisor decides what happens next.
 *
 * Stopping a child is OTP's shutdown protocol: monitor it, unlink it (so its
 * EXIT cannot be confused with a crash), send `shutdown`, and if no DOWN
 * comes within the child's shutdown time, `kill`.  Children are stopped one
 * at a time in reverse start order.  Since a handler may not block, a stop
 * sequence is a "job": while it runs, every message other than the job's
 * DOWN and timer is kept aside and handled, in order, once the job is done
 * (Erlang's selective receive, by hand).
 */
#include "act_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { /* the supervisor's own message types */
  SUP_START_CHILD = 1,
  SUP_TERMINATE_CHILD,
  SUP_WHICH_CHILDREN,
  SUP_RETRY_RESTART,
  SUP_STOP_TIMEOUT
};

typedef struct {
  act_child_spec_t spec;
  char name[ACT_NAME_MAX];
} start_req_t;

typedef struct {
  act_pid_t pid;
  char id[ACT_NAME_MAX];
} term_req_t;

typedef struct {
  act_child_spec_t spec;
  char name[ACT_NAME_MAX]; /* registered name, "" for none; spec.name is NULL:
                            * a pointer into kids[] would dangle when it grows */
  act_pid_t pid;
  uint32_t restarts;
  bool dynamic;            /* added by start_child: removed when it ends */
} kid_t;

typedef enum {
  AFTER_NOTHING,
  AFTER_RESTART_FROM,
  AFTER_REMOVE,
  AFTER_EXIT,
  AFTER_FAIL_START /* a static child failed: ack the error, exit */
} after_t;

/* A start in progress: proc_lib's start_link, without blocking.  The
 * child is spawned with an init ack to us; until it comes, every other
 * message waits (as the OTP supervisor waits inside start_link). */
typedef enum { START_NONE, START_STATIC, START_DYNAMIC } start_t;

typedef struct {
  act_sup_flags_t flags;
  act_pid_t parent;
  kid_t *kids;
  size_t n, cap;
  int64_t *stamps; /* ring of the last `intensity` restart times */
  size_t nstamps, stamp_head; /* stamps[stamp_head] is the oldest once full */

  /* the stop job */
  bool busy;
  act_pid_t *stopping;
  size_t nstop, istop;
  act_ref_t mref, tref;
  after_t after;
  size_t after_idx;          /* AFTER_RESTART_FROM / AFTER_REMOVE */
  act_reason_t after_reason; /* AFTER_EXIT */
  act_pid_t reply_to;        /* AFTER_REMOVE: the terminate_child caller */
  act_ref_t reply_ref;

  /* the start job */
  start_t starting;
  act_ref_t start_ref;       /* the child's init ack carries it */
  size_t start_idx;          /* START_STATIC: its index in spec; the kid
                              * being started is always kids[n - 1] */
  const act_sup_spec_t *spec;/* START_STATIC: the static children */
  act_pid_t start_to;        /* START_DYNAMIC: who asked */
  act_ref_t start_req;
  int start_err;             /* AFTER_FAIL_START */

  /* a FIFO: deferred[dhead..ndef) wait, popped in O(1) */
  act_msg_t **deferred; /* bounded by what callers send a busy supervisor */
  size_t dhead, ndef, capdef;
} sup_t;

static void dispatch(sup_t *s, act_msg_t *m);

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ children */

static void kid_set_spec(kid_t *k, const act_child_spec_t *spec, const char *name) {
  k->spec = *spec;
  k->spec.id[ACT_NAME_MAX - 1] = 0;
  k->spec.name = NULL;
  snprintf(k->name, sizeof k->name, "%s", name ? name : "");
}

static long find_pid(sup_t *s, act_pid_t pid) {
  for (size_t i = 0; pid && i < s->n; i++)
    if (s->kids[i].pid == pid) return (long)i;
  return -1;
}

static long find_id(sup_t *s, const char *id) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->kids[i].spec.id, id) == 0) return (long)i;
  return -1;
}

static kid_t *add_kid(sup_t *s) {
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 8;
    kid_t *nk = realloc(s->kids, ncap * sizeof *nk);
    if (!nk) return NULL;
    s->kids = nk;
    s->cap = ncap;
  }
  kid_t *k = &s->kids[s->n++];
  memset(k, 0, sizeof *k);
  return k;
}

static void remove_kid(sup_t *s, size_t i) {
  kid_t *k = &s->kids[i];
  if (k->spec.free_args) k->spec.free_args(k->spec.args);
  memmove(&s->kids[i], &s->kids[i + 1], (s->n - i - 1) * sizeof *k);
  s->n--;
}

/* Spawn a child linked to us; with ack_ref, its init's answer comes as an
 * ACT_MSG_INIT_ACK carrying *ack_ref.  Restarts do not wait for it: a
 * restart whose init fails exits like a crash and is counted again. */
static int start_kid(kid_t *k, act_ref_t *ack_ref) {
  act_spawn_opts_t o = {
      .link = true,
      .scheduler = k->spec.scheduler,
      .name = k->name[0] ? k->name : NULL,
      .max_mailbox = k->spec.max_mailbox,
      .ack = ack_ref != NULL,
      .ack_ref = ack_ref,
  };
  int err;
  k->pid = act__spawn(k->spec.behaviour, k->spec.args, &o, k->restarts, &err);
  return k->pid ? ACT_OK : err;
}

static int shutdown_time(const kid_t *k) {
  if (k->spec.shutdown_ms != 0) return k->spec.shutdown_ms;
  return k->spec.type == ACT_SUPERVISOR ? ACT_SHUTDOWN_INFINITY : ACT_SHUTDOWN_DEFAULT;
}

/* ----------------------------------------------------------- intensity */

/* Record a restart; false when it is one too many for the period.  The
 * ring holds the last `intensity` restart times; if the oldest of them is
 * still within the period, this one would make intensity + 1.  O(1), so a
 * restart storm costs no more per restart than a single restart. */
static bool note_restart(sup_t *s) {
  int64_t now = now_ms();
  size_t cap = (size_t)(s->flags.intensity > 0 ? s->flags.intensity : 0);
  if (cap == 0) return false;
  if (s->nstamps == cap && now - s->stamps[s->stamp_head] <= s->flags.period_ms)
    return false;
  s->stamps[s->stamp_head] = now; /* overwrites the oldest once full */
  s->stamp_head = (s->stamp_head + 1) % cap;
  if (s->nstamps < cap) s->nstamps++;
  atomic_fetch_add_explicit(&act__current()->restarts, 1, memory_order_relaxed); /* a statistic */
  return true;
}

/* ---------------------------------------------------------------- jobs */

static void finish_job(sup_t *s);

static void stop_next(sup_t *s) {
  while (s->istop < s->nstop) {
    act_pid_t pid = s->stopping[s->istop];
    long i = find_pid(s, pid);
    int ms = i >= 0 ? shutdown_time(&s->kids[i]) : ACT_SHUTDOWN_DEFAULT;
    if (i >= 0) s->kids[i].pid = ACT_NOPID;
    s->mref = act_monitor(pid);
    act_unlink(pid);
    s->tref = 0;
    if (ms == ACT_BRUTAL_KILL) {
      act_exit(pid, act_reason(ACT_KILL));
    } else {
      act_exit(pid, act_reason(ACT_SHUTDOWN));
      if (ms > 0) s->tref = act_send_after((uint64_t)ms, act_self(), SUP_STOP_TIMEOUT,
                                          &s->mref, sizeof s->mref);
    }
    return; /* wait for DOWN */
  }
  finish_job(s);
}

/* Stop the running children among kids[from..to) in reverse order, then
 * do `after`. */
static void begin_stop(sup_t *s, size_t from, size_t to, after_t after) {
  free(s->stopping);
  s->stopping = calloc(s->n + 1, sizeof *s->stopping);
  if (!s->stopping) act_crash("supervisor: out of memory");
  s->nstop = 0;
  s->istop = 0;
  for (size_t i = to; i-- > from;)
    if (s->kids[i].pid) s->stopping[s->nstop++] = s->kids[i].pid;
  s->after = after;
  s->busy = true;
  stop_next(s);
}

static void on_job_down(sup_t *s) {
  if (s->tref) act_cancel_timer(s->tref);
  s->tref = 0;
  s->mref = 0;
  s->istop++;
  stop_next(s);
}

static void on_job_timeout(sup_t *s, act_msg_t *m) {
  act_ref_t mref = *(act_ref_t *)m->data;
  if (!s->busy || mref != s->mref) return;
  s->tref = 0;
  act_exit(s->stopping[s->istop], act_reason(ACT_KILL));
}

static void restart_from(sup_t *s, size_t from);
static void escalate(sup_t *s);

static void replay_deferred(sup_t *s) {
  while (!s->busy && !s->starting && s->dhead < s->ndef) {
    act_msg_t *m = s->deferred[s->dhead++];
    if (s->dhead == s->ndef) s->dhead = s->ndef = 0;
    dispatch(s, m);
    act_msg_free(m);
  }
}

static void finish_job(sup_t *s) {
  s->busy = false;
  after_t after = s->after;
  s->after = AFTER_NOTHING;
  switch (after) {
  case AFTER_RESTART_FROM:
    restart_from(s, s->after_idx);
    break;
  case AFTER_REMOVE: {
    act_sup_reply_t r = {ACT_OK, ACT_NOPID};
    act_msg_t fake = {.from = s->reply_to, .ref = s->reply_ref};
    if (s->after_idx < s->n) remove_kid(s, s->after_idx);
    act_reply(&fake, ACT_MSG_SUP_REPLY, &r, sizeof r);
    break;
  }
  case AFTER_EXIT:
    act_stop(s->after_reason);
    return;
  case AFTER_FAIL_START:
    act__init_ack(act__current(), s->start_err); /* told when we are gone */
    act_stop(s->after_reason);
    return;
  case AFTER_NOTHING:
    break;
  }
  replay_deferred(s);
}

/* ------------------------------------------------------------ restarts */

static void restart_kid(sup_t *s, size_t i) {
  kid_t *k = &s->kids[i];
  k->restarts++;
  if (start_kid(k, NULL) != ACT_OK) /* OTP's try_again_restart: counts again */
    act_send(act_self(), SUP_RETRY_RESTART, k->spec.id, sizeof k->spec.id);
}

static void restart_from(sup_t *s, size_t from) {
  for (size_t i = from; i < s->n; i++) {
    if (s->kids[i].pid) continue;
    if (s->kids[i].spec.restart == ACT_TEMPORARY) { /* never restarted */
      remove_kid(s, i--);
      continue;
    }
    restart_kid(s, i);
  }
}

static void escalate(sup_t *s) {
  fprintf(stderr, "supervisor %#llx: reached maximum restart intensity, shutting down\n",
          (unsigned long long)act_self());
  s->after_reason = act_reason(ACT_SHUTDOWN);
  begin_stop(s, 0, s->n, AFTER_EXIT);
}

static bool wants_restart(const kid_t *k, act_reason_t r) {
  switch (k->spec.restart) {
  case ACT_PERMANENT: return true;
  case ACT_TRANSIENT: return r.kind != ACT_NORMAL && r.kind != ACT_SHUTDOWN;
  default: return false;
  }
}

static void child_exited(sup_t *s, size_t i, act_reason_t r) {
  kid_t *k = &s->kids[i];
  k->pid = ACT_NOPID;
  if (!wants_restart(k, r)) {
    /* OTP deletes only a temporary child's spec; a transient one that ended
     * normally stays listed, not running.  A dynamic child without an id
     * cannot be named again (restart_child, delete_child), so keeping it
     * would only leak: it goes, as in a DynamicSupervisor. */
    if (k->spec.restart == ACT_TEMPORARY || (k->dynamic && !k->spec.id[0])) remove_kid(s, i);
    return;
  }
  if (!note_restart(s)) {
    escalate(s);
    return;
  }
  switch (s->flags.strategy) {
  case ACT_ONE_FOR_ONE:
    restart_kid(s, i);
    break;
  case ACT_ONE_FOR_ALL:
    s->after_idx = 0;
    begin_stop(s, 0, s->n, AFTER_RESTART_FROM);
    break;
  case ACT_REST_FOR_ONE:
    s->after_idx = i;
    begin_stop(s, i + 1, s->n, AFTER_RESTART_FROM);
    break;
  }
}

static void on_exit_msg(sup_t *s, act_exit_msg_t *x) {
  long i = find_pid(s, x->from);
  if (i >= 0) {
    child_exited(s, (size_t)i, x->reason);
    return;
  }
  /* Not a child: our parent (or the outside world) telling us to stop. */
  if (x->from == s->parent || x->from == ACT_NOPID) {
    s->after_reason = x->reason;
    begin_stop(s, 0, s->n, AFTER_EXIT);
  }
}

static void on_retry(sup_t *s, const char *id) {
  long i = find_id(s, id);
  if (i < 0 || s->kids[i].pid) return;
  if (!note_restart(s)) {
    escalate(s);
    return;
  }
  restart_kid(s, (size_t)i);
}

/* ------------------------------------------------------------ requests */

static void on_start_child(sup_t *s, act_msg_t *m) {
  start_req_t *rq = m->data;
  act_sup_reply_t r = {ACT_OK, ACT_NOPID};
  rq->spec.id[ACT_NAME_MAX - 1] = 0;
  if (rq->spec.id[0] && find_id(s, rq->spec.id) >= 0) {
    r.result = ACT_EEXIST;
  } else {
    kid_t *k = add_kid(s);
    if (!k) {
      r.result = ACT_ENOMEM;
    } else {
      kid_set_spec(k, &rq->spec, rq->spec.name ? rq->name : NULL);
      k->dynamic = true;
      r.result = start_kid(k, &s->start_ref);
      if (r.result == ACT_OK) { /* answered when its init acks */
        s->starting = START_DYNAMIC;
        s->start_to = m->from;
        s->start_req = m->ref;
        return;
      }
      k->spec.free_args = NULL; /* the caller keeps its args on failure */
      remove_kid(s, s->n - 1);
    }
  }
  act_reply(m, ACT_MSG_SUP_REPLY, &r, sizeof r);
}

static void on_terminate_child(sup_t *s, act_msg_t *m) {
  term_req_t *rq = m->data;
  rq->id[ACT_NAME_MAX - 1] = 0;
  long i = rq->pid ? find_pid(s, rq->pid) : find_id(s, rq->id);
  if (i < 0) {
    act_sup_reply_t r = {ACT_ENOPROC, ACT_NOPID};
    act_reply(m, ACT_MSG_SUP_REPLY, &r, sizeof r);
    return;
  }
  s->reply_to = m->from;
  s->reply_ref = m->ref;
  s->after_idx = (size_t)i;
  begin_stop(s, (size_t)i, (size_t)i + 1, AFTER_REMOVE);
}

static void on_which_children(sup_t *s, act_msg_t *m) {
  act_child_info_t *out = calloc(s->n ? s->n : 1, sizeof *out);
  if (!out) act_crash("supervisor: out of memory");
  for (size_t i = 0; i < s->n; i++) {
    snprintf(out[i].id, sizeof out[i].id, "%s", s->kids[i].spec.id);
    out[i].pid = s->kids[i].pid;
    out[i].type = s->kids[i].spec.type;
    out[i].restart = s->kids[i].spec.restart;
    out[i].restarts = s->kids[i].restarts;
  }
  act_reply(m, ACT_MSG_SUP_REPLY, out, s->n * sizeof *out);
  free(out);
}

/* ---------------------------------------------------------- start jobs */

/* Start static child i (and, as each acks, the next); the last ack acks
 * our own init, so that act_supervisor_start returns with every child up
 * and named. */
static void start_static(sup_t *s, size_t i) {
  if (i == s->spec->nchildren) {
    s->starting = START_NONE;
    act__init_ack(act__current(), ACT_OK);
    return;
  }
  kid_t *k = add_kid(s);
  int rc = ACT_ENOMEM;
  if (k) {
    kid_set_spec(k, &s->spec->children[i], s->spec->children[i].name);
    k->spec.free_args = NULL; /* static specs belong to the caller */
    rc = start_kid(k, &s->start_ref);
  }
  if (rc == ACT_OK) {
    s->starting = START_STATIC;
    s->start_idx = i;
    return;
  }
  if (k) remove_kid(s, s->n - 1);
  s->starting = START_NONE;
  s->start_err = rc;
  s->after_reason = act_reason_shutdown("failed_to_start_child %s", s->spec->children[i].id);
  begin_stop(s, 0, s->n, AFTER_FAIL_START); /* those started go, in reverse */
}

static void on_init_ack(sup_t *s, const act_init_ack_t *a) {
  start_t kind = s->starting;
  s->starting = START_NONE;
  if (kind == START_DYNAMIC) {
    act_sup_reply_t r = {a->result, a->result == ACT_OK ? a->pid : ACT_NOPID};
    act_msg_t fake = {.from = s->start_to, .ref = s->start_req};
    if (a->result != ACT_OK) { /* nothing to restart: its EXIT is ignored */
      s->kids[s->n - 1].spec.free_args = NULL; /* the caller keeps its args */
      remove_kid(s, s->n - 1);
    }
    act_reply(&fake, ACT_MSG_SUP_REPLY, &r, sizeof r);
  } else if (a->result == ACT_OK) {
    start_static(s, s->start_idx + 1);
  } else {
    remove_kid(s, s->n - 1);
    s->start_err = a->result;
    s->after_reason = act_reason_shutdown("failed_to_start_child %s",
                                          s->spec->children[s->start_idx].id);
    begin_stop(s, 0, s->n, AFTER_FAIL_START);
  }
  replay_deferred(s);
}

/* ----------------------------------------------------------- behaviour */

static void dispatch(sup_t *s, act_msg_t *m) {
  switch (m->type) {
  case ACT_MSG_EXIT: on_exit_msg(s, m->data); break;
  case SUP_START_CHILD: on_start_child(s, m); break;
  case SUP_TERMINATE_CHILD: on_terminate_child(s, m); break;
  case SUP_WHICH_CHILDREN: on_which_children(s, m); break;
  case SUP_RETRY_RESTART: on_retry(s, m->data); break;
  default: break; /* unexpected: OTP logs and ignores */
  }
}

static void defer(sup_t *s, act_msg_t *m) {
  if (s->ndef == s->capdef && s->dhead > 0) { /* reuse the popped front */
    memmove(s->deferred, s->deferred + s->dhead, (s->ndef - s->dhead) * sizeof *s->deferred);
    s->ndef -= s->dhead;
    s->dhead = 0;
  }
  if (s->ndef == s->capdef) {
    size_t ncap = s->capdef ? s->capdef * 2 : 16;
    act_msg_t **nd = realloc(s->deferred, ncap * sizeof *nd);
    if (!nd) act_crash("supervisor: out of memory");
    s->deferred = nd;
    s->capdef = ncap;
  }
  s->deferred[s->ndef++] = act_msg_keep(m);
}

static void sup_handle(void *state, act_msg_t *m) {
  sup_t *s = state;
  if (s->starting) {
    if (m->type == ACT_MSG_INIT_ACK && m->ref == s->start_ref) on_init_ack(s, m->data);
    else defer(s, m);
    return;
  }
  if (!s->busy) {
    dispatch(s, m);
    return;
  }
  if (m->type == ACT_MSG_DOWN && ((act_down_msg_t *)m->data)->ref == s->mref) on_job_down(s);
  else if (m->type == SUP_STOP_TIMEOUT) on_job_timeout(s, m);
  else defer(s, m);
}

static void sup_terminate(void *state, act_reason_t r);

/* init returns at once and the static children start one by one, each
 * after the previous one's init acked (start_static); our own ack waits
 * for the last.  A failure stops those started, in reverse, then fails
 * the start with the child's error and exits {shutdown, failed_to_start_child}. */
static int sup_init(void *args, void **state) {
  const act_sup_spec_t *spec = args;
  sup_t *s = calloc(1, sizeof *s);
  if (!s) return ACT_ENOMEM;
  s->flags = spec->flags;
  s->stamps = calloc((size_t)(s->flags.intensity > 0 ? s->flags.intensity : 0) + 1,
                     sizeof *s->stamps);
  s->parent = act__current()->parent;
  act_parent_exit_as_message(true); /* on_exit_msg stops the children first */
  act_trap_exit(true);
  if (!s->stamps) {
    sup_terminate(s, act_reason_error("start failed"));
    return ACT_ENOMEM;
  }
  s->spec = spec;
  *state = s;
  act__init_ack_later();
  start_static(s, 0);
  return ACT_OK;
}

static void sup_terminate(void *state, act_reason_t r) {
  (void)r;
  sup_t *s = state;
  if (!s) return;
  /* Children still running are linked and die with us (non-trapping ones
   * via their link; OTP's supervisor would have stopped them already). */
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i].pid) act_exit(s->kids[i].pid, act_reason(ACT_KILL));
  for (size_t i = 0; i < s->n; i++)
    if (s->kids[i].spec.free_args) s->kids[i].spec.free_args(s->kids[i].spec.args);
  for (size_t i = s->dhead; i < s->ndef; i++) act_msg_free(s->deferred[i]);
  free(s->deferred);
  free(s->kids);
  free(s->stamps);
  free(s->stopping);
  free(s);
}

static const act_behaviour_t sup_behaviour = {"supervisor", sup_init, sup_handle,
                                              sup_terminate};

const act_behaviour_t *act_supervisor(void) { return &sup_behaviour; }

act_pid_t act_supervisor_start(const act_sup_spec_t *spec, const act_spawn_opts_t *opts,
                               int *err) {
  return act_spawn(&sup_behaviour, (void *)spec, opts, err);
}

/* ---------------------------------------------------------------- API */

static start_req_t start_req(const act_child_spec_t *spec) {
  start_req_t rq;
  memset(&rq, 0, sizeof rq);
  rq.spec = *spec;
  if (spec->name) snprintf(rq.name, sizeof rq.name, "%s", spec->name);
  return rq;
}

static term_req_t term_req(act_pid_t pid, const char *id) {
  term_req_t rq;
  memset(&rq, 0, sizeof rq);
  rq.pid = pid;
  if (id) snprintf(rq.id, sizeof rq.id, "%s", id);
  return rq;
}

act_ref_t act_supervisor_start_child_async(act_pid_t sup, const act_child_spec_t *spec) {
  start_req_t rq = start_req(spec);
  return act_request(sup, SUP_START_CHILD, &rq, sizeof rq, ACT_INFINITY);
}

act_ref_t act_supervisor_terminate_child_async(act_pid_t sup, act_pid_t pid, const char *id) {
  term_req_t rq = term_req(pid, id);
  return act_request(sup, SUP_TERMINATE_CHILD, &rq, sizeof rq, ACT_INFINITY);
}

#define SUP_CALL_TIMEOUT 60000 /* a supervisor may be busy stopping children */

static int sup_call(act_pid_t sup, int type, const void *rq, size_t size, act_pid_t *pid) {
  act_msg_t *reply;
  int rc = act_call(sup, type, rq, size, &reply, SUP_CALL_TIMEOUT);
  if (rc != ACT_OK) return rc;
  act_sup_reply_t *r = reply->data;
  rc = r->result;
  if (pid) *pid = r->pid;
  act_msg_free(reply);
  return rc;
}

int act_supervisor_start_child(act_pid_t sup, const act_child_spec_t *spec, act_pid_t *pid) {
  start_req_t rq = start_req(spec);
  return sup_call(sup, SUP_START_CHILD, &rq, sizeof rq, pid);
}

int act_supervisor_terminate_child(act_pid_t sup, act_pid_t pid, const char *id) {
  term_req_t rq = term_req(pid, id);
  return sup_call(sup, SUP_TERMINATE_CHILD, &rq, sizeof rq, NULL);
}

int act_supervisor_which_children(act_pid_t sup, act_child_info_t *out, int max) {
  act_msg_t *reply;
  int rc = act_call(sup, SUP_WHICH_CHILDREN, NULL, 0, &reply, SUP_CALL_TIMEOUT);
  if (rc != ACT_OK) return rc;
  int n = (int)(reply->size / sizeof(act_child_info_t));
  memcpy(out, reply->data, (size_t)(n < max ? n : max) * sizeof *out);
  act_msg_free(reply);
  return n;
}
