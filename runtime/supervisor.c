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
  SUP_STOP_TIMEOUT,
  SUP_RESTART_CHILD,
  SUP_DELETE_CHILD,
  SUP_COUNT_CHILDREN,
  SUP_GET_CHILDSPEC
};

typedef struct {
  act_child_spec_t spec;
  char name[ACT_NAME_MAX];
} start_req_t;

typedef struct {
  act_pid_t pid;
  char id[ACT_NAME_MAX];
} term_req_t;

/* A child.  Each lives in its own allocation, on a list in start order,
 * and is found by pid through a hash index, so that finding and removing
 * one is O(1) whatever the number of children (a list in an array took
 * 2.5 s to remove 40,000 dynamic children, each removal a scan and a
 * memmove).  Ids are looked up by a scan, only when a request names one. */
typedef struct kid {
  act_child_spec_t spec;   /* spec.name is NULL: the name is below */
  char name[ACT_NAME_MAX]; /* registered name, "" for none */
  act_pid_t pid;
  uint32_t restarts;
  uint64_t serial;         /* unique per supervisor: names it in a retry */
  bool dynamic;            /* added by start_child */
  struct kid *prev, *next; /* start order */
  struct kid *hnext;       /* chain in the pid index */
} kid_t;

typedef enum {
  AFTER_NOTHING,
  AFTER_RESTART_FROM,
  AFTER_TERMINATE, /* terminate_child: keep the spec, or forget it */
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
  char name[ACT_NAME_MAX]; /* registered name (looked up once, at init), for reports */
  kid_t *first, *last;
  size_t n;
  _Atomic uint32_t *active; /* kids with a pid: our act_proc_t's `children`,
                               which act_info_t reads from outside */
  uint64_t serials;
  kid_t **index;   /* pid -> kid, chained; nbuckets a power of two */
  size_t nbuckets;
  int64_t *stamps; /* ring of the last `intensity` restart times */
  size_t nstamps, stamp_head; /* stamps[stamp_head] is the oldest once full */

  /* the stop job */
  bool busy;
  act_pid_t *stopping;
  size_t nstop, istop;
  kid_t *stop_kid;           /* the child being stopped now (NULL if unlisted) */
  bool stop_brutal;          /* it was sent `kill`: DOWN killed is its clean end */
  act_ref_t mref, tref;
  after_t after;
  kid_t *after_kid;          /* AFTER_RESTART_FROM / AFTER_TERMINATE */
  act_reason_t after_reason; /* AFTER_EXIT */
  act_pid_t reply_to;        /* AFTER_TERMINATE: the terminate_child caller */
  act_ref_t reply_ref;

  /* the start job */
  start_t starting;
  kid_t *start_kid;          /* the one being started */
  bool start_new;            /* START_DYNAMIC by start_child: dropped if it fails */
  act_ref_t start_ref;       /* the child's init ack carries it */
  size_t start_idx;          /* START_STATIC: its index in spec */
  const act_sup_spec_t *spec;/* START_STATIC: the static children */
  act_pid_t start_to;        /* START_DYNAMIC: who asked */
  act_ref_t start_req;
  int start_err;             /* AFTER_FAIL_START */

  /* kept messages waiting while busy, linked through their own envelopes
   * (queue.h): O(1) each way and no allocation, so deferring cannot fail */
  act_queue_t deferred;
  act_qnode_t *replaying; /* popped from deferred, being dispatched (replay_deferred) */
} sup_t;

static void dispatch(sup_t *s, act_msg_t *m);

/* An answer that cannot be allocated would leave its caller waiting, for
 * ever with ACT_INFINITY (the _async forms): the supervisor fails instead,
 * and the caller's monitor (act_request's) ends the request at once with
 * the reason, as a gen_server:call ends when the server exits. */
static void answer(const act_msg_t *m, const void *data, size_t size) {
  if (act_reply(m, ACT_MSG_SUP_REPLY, data, size) != ACT_OK)
    act_crash("supervisor: out of memory (reply)");
}

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

static size_t pid_bucket(const sup_t *s, act_pid_t pid) {
  uint64_t h = pid * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing: slot bits vary most */
  return (size_t)(h >> 32) & (s->nbuckets - 1);
}

static void index_del(sup_t *s, kid_t *k) {
  if (!k->pid || !s->nbuckets) return;
  for (kid_t **pp = &s->index[pid_bucket(s, k->pid)]; *pp; pp = &(*pp)->hnext)
    if (*pp == k) {
      *pp = k->hnext;
      k->hnext = NULL;
      return;
    }
}

/* Grow at one child per bucket on average; a failed growth keeps the old
 * table (longer chains, still correct). */
static void index_put(sup_t *s, kid_t *k) {
  if (s->n >= s->nbuckets) {
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 16;
    kid_t **ni = calloc(nb, sizeof *ni);
    if (ni) {
      kid_t **old = s->index;
      size_t ob = s->nbuckets;
      s->index = ni;
      s->nbuckets = nb;
      for (size_t i = 0; i < ob; i++)
        for (kid_t *c = old[i], *nx; c; c = nx) {
          nx = c->hnext;
          size_t b = pid_bucket(s, c->pid);
          c->hnext = s->index[b];
          s->index[b] = c;
        }
      free(old);
    }
  }
  if (!s->nbuckets) return; /* not even the first table: find_pid scans */
  size_t b = pid_bucket(s, k->pid);
  k->hnext = s->index[b];
  s->index[b] = k;
}

static kid_t *find_pid(sup_t *s, act_pid_t pid);

/* The running children's count, for readers outside (act_info_t.children,
 * the dashboard's folded sessions): one relaxed add per start and end, by
 * the supervisor alone, so that nobody has to call count_children,
 * O(children), to know it. */
static void count_active(sup_t *s, int delta) {
  atomic_fetch_add_explicit(s->active, (uint32_t)delta, memory_order_relaxed); /* a statistic */
}

/* Every change of a kid's pid goes through here, to keep the index true. */
static void set_pid(sup_t *s, kid_t *k, act_pid_t pid) {
  ACT_DEBUG_ASSERT(!pid || !k->pid); /* started only from stopped: never two pids */
  index_del(s, k);
  if (!k->pid != !pid) count_active(s, pid ? 1 : -1);
  k->pid = pid;
  if (pid) index_put(s, k);
  ACT_DEBUG_ASSERT(!pid || find_pid(s, pid) == k);
}

static kid_t *find_pid(sup_t *s, act_pid_t pid) {
  if (!pid) return NULL;
  if (!s->nbuckets) {
    for (kid_t *k = s->first; k; k = k->next)
      if (k->pid == pid) return k;
    return NULL;
  }
  for (kid_t *k = s->index[pid_bucket(s, pid)]; k; k = k->hnext)
    if (k->pid == pid) return k;
  return NULL;
}

static kid_t *find_id(sup_t *s, const char *id) {
  if (!id[0]) return NULL; /* anonymous children cannot be named */
  for (kid_t *k = s->first; k; k = k->next)
    if (strcmp(k->spec.id, id) == 0) return k;
  return NULL;
}

static kid_t *add_kid(sup_t *s) {
  kid_t *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->serial = ++s->serials;
  k->prev = s->last;
  if (s->last) s->last->next = k;
  else s->first = k;
  s->last = k;
  s->n++;
  return k;
}

static void remove_kid(sup_t *s, kid_t *k) {
  if (k->spec.free_args) k->spec.free_args(k->spec.args);
  index_del(s, k);
  if (k->pid) count_active(s, -1);
  if (k->prev) k->prev->next = k->next;
  else s->first = k->next;
  if (k->next) k->next->prev = k->prev;
  else s->last = k->prev;
  s->n--;
  free(k);
}

/* Spawn a child linked to us; with ack_ref, its init's answer comes as an
 * ACT_MSG_INIT_ACK carrying *ack_ref.  Restarts do not wait for it: a
 * restart whose init fails exits like a crash and is counted again. */
static int start_kid(sup_t *s, kid_t *k, act_ref_t *ack_ref) {
  act_spawn_opts_t o = {
      .link = true,
      .scheduler = k->spec.scheduler,
      .name = k->name[0] ? k->name : NULL,
      .max_mailbox = k->spec.max_mailbox,
      .priority = k->spec.priority,
      .ack = ack_ref != NULL,
      .ack_ref = ack_ref,
  };
  int err;
  set_pid(s, k, act__spawn(k->spec.behaviour, k->spec.args, &o, k->restarts, &err));
  return k->pid ? ACT_OK : err;
}

static int shutdown_time(const kid_t *k) {
  if (k->spec.shutdown_ms != 0) return k->spec.shutdown_ms;
  return k->spec.type == ACT_SUPERVISOR ? ACT_SHUTDOWN_INFINITY : ACT_SHUTDOWN_DEFAULT;
}

/* ------------------------------------------------------------- reports */

/* The handler and its argument change together under one mutex; a report
 * costs one uncontended lock (~25 ns), and reports are rare but for
 * progress reports, one per child start. */
static pthread_mutex_t g_report_mu = PTHREAD_MUTEX_INITIALIZER;
static act_report_fn g_report_fn;
static void *g_report_ud;

const char *act_restart_type_name(act_restart_t r) {
  switch (r) {
  case ACT_PERMANENT: return "permanent";
  case ACT_TRANSIENT: return "transient";
  case ACT_TEMPORARY: return "temporary";
  }
  return "?";
}

const char *act_child_type_name(act_child_type_t t) {
  return t == ACT_SUPERVISOR ? "supervisor" : "worker";
}

/* The default: one plain line per supervisor report, none for progress. */
static void default_report(const act_sup_report_t *r, void *ud) {
  (void)ud;
  if (r->context == ACT_REPORT_STARTED) return;
  fprintf(stderr,
          "act: supervisor %s (%#llx) %s: child %s (%#llx, %s, %s) reason: %s\n",
          r->supervisor_name[0] ? r->supervisor_name : "-",
          (unsigned long long)r->supervisor, r->context_name,
          r->child_id[0] ? r->child_id : "-", (unsigned long long)r->child_pid,
          r->behaviour, act_restart_type_name(r->restart_type), r->reason.text);
}

void act_set_report_handler(act_report_fn fn, void *ud) {
  pthread_mutex_lock(&g_report_mu);
  g_report_fn = fn;
  g_report_ud = ud;
  pthread_mutex_unlock(&g_report_mu);
}

static const char *const context_names[] = {"started", "start_error", "child_terminated",
                                            "shutdown_error", "shutdown"};

static int shutdown_time(const kid_t *k);

static void report(sup_t *s, act_report_context_t ctx, const kid_t *k, act_pid_t pid,
                   act_reason_t reason) {
  act_sup_report_t r = {
      .context = ctx,
      .context_name = context_names[ctx],
      .supervisor = act_self(),
      .supervisor_name = s->name,
      .child_id = k->spec.id,
      .child_pid = pid,
      .behaviour = k->spec.behaviour && k->spec.behaviour->name ? k->spec.behaviour->name : "",
      .restart_type = k->spec.restart,
      .shutdown_ms = shutdown_time(k),
      .child_type = k->spec.type,
      .reason = reason,
  };
  pthread_mutex_lock(&g_report_mu);
  act_report_fn fn = g_report_fn ? g_report_fn : default_report;
  void *ud = g_report_ud;
  pthread_mutex_unlock(&g_report_mu);
  fn(&r, ud);
}

static void report_started(sup_t *s, const kid_t *k) {
  report(s, ACT_REPORT_STARTED, k, k->pid, act_reason(ACT_NORMAL));
}

static void report_start_error(sup_t *s, const kid_t *k, int err) {
  report(s, ACT_REPORT_START_ERROR, k, ACT_NOPID, act_reason_error("%s", act_strerror(err)));
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
    kid_t *k = find_pid(s, pid);
    int ms = k ? shutdown_time(k) : ACT_SHUTDOWN_DEFAULT;
    if (k) set_pid(s, k, ACT_NOPID);
    s->stop_kid = k;
    s->stop_brutal = ms == ACT_BRUTAL_KILL;
    /* Without its monitor, signal or timer the job would wait for ever:
     * out of memory there fails the supervisor (its children die by
     * their links). */
    s->mref = act_monitor(pid);
    if (!s->mref) act_crash("supervisor: out of memory (stopping a child)");
    act_unlink(pid);
    s->tref = 0;
    int rc;
    if (ms == ACT_BRUTAL_KILL) {
      rc = act_exit(pid, act_reason(ACT_KILL));
    } else {
      rc = act_exit(pid, act_reason(ACT_SHUTDOWN));
      if (rc == ACT_OK && ms > 0 &&
          !(s->tref = act_send_after((uint64_t)ms, act_self(), SUP_STOP_TIMEOUT, &s->mref,
                                     sizeof s->mref)))
        rc = ACT_ENOMEM;
    }
    if (rc == ACT_ENOMEM) act_crash("supervisor: out of memory (stopping a child)");
    return; /* wait for DOWN (a dead child's noproc DOWN too) */
  }
  finish_job(s);
}

/* Stop the running children from `from` up to (not including) `to` (NULL:
 * the end) in reverse order, then do `after`.  The job's pid list is as
 * long as the range, so stopping one child of 40,000 costs O(1). */
static void begin_stop(sup_t *s, kid_t *from, kid_t *to, after_t after) {
  size_t count = 0;
  for (kid_t *k = from; k != to; k = k->next) count++;
  free(s->stopping);
  s->stopping = calloc(count + 1, sizeof *s->stopping);
  if (!s->stopping) act_crash("supervisor: out of memory");
  s->nstop = 0;
  s->istop = 0;
  kid_t *k = to ? to->prev : s->last;
  for (size_t i = 0; i < count; i++, k = k->prev)
    if (k->pid) s->stopping[s->nstop++] = k->pid;
  s->after = after;
  s->busy = true;
  stop_next(s);
}

/* OTP's do_terminate: a child that ended otherwise than by our `shutdown`
 * (or our `kill` when brutal_kill) is reported as shutdown_error; normal is
 * quiet unless the child is permanent.  A child that had already exited
 * gives noproc: its real reason is in its EXIT, kept aside meanwhile. */
static void check_shutdown(sup_t *s, act_pid_t pid, act_reason_t r) {
  const kid_t *k = s->stop_kid;
  if (!k) return;
  if (r.kind == ACT_NOPROC)
    ACT_QUEUE_FOREACH(n, &s->deferred) {
      act_msg_t *m = &ACT_QUEUE_DATA(n, act_env_t, qnode)->msg;
      if (m->type == ACT_MSG_EXIT && ((act_exit_msg_t *)m->data)->from == pid) {
        r = ((act_exit_msg_t *)m->data)->reason;
        break;
      }
    }
  if (s->stop_brutal ? r.kind == ACT_KILLED
                     : r.kind == ACT_SHUTDOWN && strcmp(r.text, "shutdown") == 0)
    return;
  if (r.kind == ACT_NORMAL && k->spec.restart != ACT_PERMANENT) return;
  report(s, ACT_REPORT_SHUTDOWN_ERROR, k, pid, r);
}

static void on_job_down(sup_t *s, const act_down_msg_t *d) {
  check_shutdown(s, s->stopping[s->istop], d->reason);
  s->stop_kid = NULL;
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

static void restart_from(sup_t *s, kid_t *from);
static void escalate(sup_t *s, const kid_t *offender, act_pid_t pid);

/* A message being replayed is out of the deferred queue but not yet freed;
 * if its dispatch crashes us (a reply we cannot allocate), act_crash jumps
 * past the free below.  So it waits on s->replaying, a stack (replays nest:
 * a replayed EXIT can finish a job, which replays again) threaded through
 * the same qnode, and sup_terminate frees what is still on it. */
static void replay_deferred(sup_t *s) {
  while (!s->busy && !s->starting && !act_queue_empty(&s->deferred) &&
         !act__current()->exit_reason) {
    act_qnode_t *n = act_queue_pop(&s->deferred);
    n->next = s->replaying;
    s->replaying = n;
    dispatch(s, &ACT_QUEUE_DATA(n, act_env_t, qnode)->msg);
    s->replaying = n->next;
    act_msg_free(&ACT_QUEUE_DATA(n, act_env_t, qnode)->msg);
  }
}

/* OTP deletes only a temporary child's spec when the child ends for good
 * (it exits without restart, or terminate_child stops it); others stay
 * listed, not running, for restart_child.  A dynamic child without an id
 * cannot be named again (restart_child, delete_child), so keeping it would
 * only leak: it goes, as in a DynamicSupervisor or under
 * simple_one_for_one, whose terminate_child(Sup, Pid) removes the child. */
static bool forgotten_when_stopped(const kid_t *k) {
  return k->spec.restart == ACT_TEMPORARY || (k->dynamic && !k->spec.id[0]);
}

static void finish_job(sup_t *s) {
  s->busy = false;
  after_t after = s->after;
  s->after = AFTER_NOTHING;
  switch (after) {
  case AFTER_RESTART_FROM:
    restart_from(s, s->after_kid);
    break;
  case AFTER_TERMINATE: {
    act_sup_reply_t r = {ACT_OK, ACT_NOPID};
    act_msg_t fake = {.from = s->reply_to, .ref = s->reply_ref};
    if (forgotten_when_stopped(s->after_kid)) remove_kid(s, s->after_kid);
    answer(&fake, &r, sizeof r);
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

static void restart_kid(sup_t *s, kid_t *k) {
  k->restarts++;
  int rc = start_kid(s, k, NULL);
  if (rc == ACT_OK) {
    report_started(s, k);
  } else { /* OTP's try_again_restart: counts again */
    report_start_error(s, k, rc);
    act_send(act_self(), SUP_RETRY_RESTART, &k->serial, sizeof k->serial);
  }
}

static void restart_from(sup_t *s, kid_t *from) {
  for (kid_t *k = from, *nx; k; k = nx) {
    nx = k->next;
    if (k->pid) continue;
    if (k->spec.restart == ACT_TEMPORARY) { /* never restarted */
      remove_kid(s, k);
      continue;
    }
    restart_kid(s, k);
  }
}

static void escalate(sup_t *s, const kid_t *offender, act_pid_t pid) {
  report(s, ACT_REPORT_SHUTDOWN, offender, pid,
         act_reason_error("reached_max_restart_intensity"));
  s->after_reason = act_reason(ACT_SHUTDOWN);
  begin_stop(s, s->first, NULL, AFTER_EXIT);
}

static bool wants_restart(const kid_t *k, act_reason_t r) {
  switch (k->spec.restart) {
  case ACT_PERMANENT: return true;
  case ACT_TRANSIENT: return r.kind != ACT_NORMAL && r.kind != ACT_SHUTDOWN;
  default: return false;
  }
}

/* OTP's do_restart: a permanent child's end is always reported; another's
 * unless it ended quietly (normal, shutdown, {shutdown,_}). */
static bool quiet_end(act_reason_t r) { return r.kind == ACT_NORMAL || r.kind == ACT_SHUTDOWN; }

static void child_exited(sup_t *s, kid_t *k, act_reason_t r) {
  act_pid_t pid = k->pid;
  set_pid(s, k, ACT_NOPID);
  if (k->spec.restart == ACT_PERMANENT || !quiet_end(r))
    report(s, ACT_REPORT_CHILD_TERMINATED, k, pid, r);
  if (!wants_restart(k, r)) { /* a transient one that ended normally stays listed */
    if (forgotten_when_stopped(k)) remove_kid(s, k);
    return;
  }
  if (!note_restart(s)) {
    escalate(s, k, pid);
    return;
  }
  switch (s->flags.strategy) {
  case ACT_ONE_FOR_ONE:
    restart_kid(s, k);
    break;
  case ACT_ONE_FOR_ALL:
    s->after_kid = s->first;
    begin_stop(s, s->first, NULL, AFTER_RESTART_FROM);
    break;
  case ACT_REST_FOR_ONE:
    s->after_kid = k;
    begin_stop(s, k->next, NULL, AFTER_RESTART_FROM);
    break;
  }
}

static void on_exit_msg(sup_t *s, act_exit_msg_t *x) {
  kid_t *k = find_pid(s, x->from);
  if (k) {
    child_exited(s, k, x->reason);
    return;
  }
  /* Not a child: our parent (or the outside world) telling us to stop. */
  if (x->from == s->parent || x->from == ACT_NOPID) {
    s->after_reason = x->reason;
    begin_stop(s, s->first, NULL, AFTER_EXIT);
  }
}

static void on_retry(sup_t *s, const uint64_t *serial) {
  kid_t *k = s->first; /* O(n), on a failed restart only; it may have gone */
  while (k && k->serial != *serial) k = k->next;
  if (!k || k->pid) return;
  if (!note_restart(s)) {
    escalate(s, k, ACT_NOPID);
    return;
  }
  restart_kid(s, k);
}

/* ------------------------------------------------------------ requests */

static void reply(act_msg_t *m, int result, act_pid_t pid) {
  act_sup_reply_t r = {result, pid};
  answer(m, &r, sizeof r);
}

static void on_start_child(sup_t *s, act_msg_t *m) {
  start_req_t *rq = m->data;
  rq->spec.id[ACT_NAME_MAX - 1] = 0;
  if (find_id(s, rq->spec.id)) {
    reply(m, ACT_EEXIST, ACT_NOPID);
    return;
  }
  kid_t *k = add_kid(s);
  if (!k) {
    reply(m, ACT_ENOMEM, ACT_NOPID);
    return;
  }
  kid_set_spec(k, &rq->spec, rq->spec.name ? rq->name : NULL);
  k->dynamic = true;
  int rc = start_kid(s, k, &s->start_ref);
  if (rc == ACT_OK) { /* answered when its init acks */
    s->starting = START_DYNAMIC;
    s->start_kid = k;
    s->start_new = true;
    s->start_to = m->from;
    s->start_req = m->ref;
    return;
  }
  k->spec.free_args = NULL; /* the caller keeps its args on failure */
  remove_kid(s, k);
  reply(m, rc, ACT_NOPID);
}

static void on_terminate_child(sup_t *s, act_msg_t *m) {
  term_req_t *rq = m->data;
  rq->id[ACT_NAME_MAX - 1] = 0;
  kid_t *k = rq->pid ? find_pid(s, rq->pid) : find_id(s, rq->id);
  if (!k) {
    reply(m, ACT_ENOPROC, ACT_NOPID);
    return;
  }
  s->reply_to = m->from;
  s->reply_ref = m->ref;
  s->after_kid = k;
  begin_stop(s, k, k->next, AFTER_TERMINATE);
}

/* restart_child: start again a listed child that is not running (a
 * transient one that ended normally, or one whose restart failed). */
static void on_restart_child(sup_t *s, act_msg_t *m) {
  term_req_t *rq = m->data;
  rq->id[ACT_NAME_MAX - 1] = 0;
  kid_t *k = find_id(s, rq->id);
  if (!k) {
    reply(m, ACT_ENOPROC, ACT_NOPID);
    return;
  }
  if (k->pid) {
    reply(m, ACT_ERUNNING, k->pid);
    return;
  }
  int rc = start_kid(s, k, &s->start_ref);
  if (rc != ACT_OK) {
    reply(m, rc, ACT_NOPID);
    return;
  }
  s->starting = START_DYNAMIC;
  s->start_kid = k;
  s->start_new = false;
  s->start_to = m->from;
  s->start_req = m->ref;
}

static void on_delete_child(sup_t *s, act_msg_t *m) {
  term_req_t *rq = m->data;
  rq->id[ACT_NAME_MAX - 1] = 0;
  kid_t *k = find_id(s, rq->id);
  if (!k) reply(m, ACT_ENOPROC, ACT_NOPID);
  else if (k->pid) reply(m, ACT_ERUNNING, k->pid);
  else {
    remove_kid(s, k);
    reply(m, ACT_OK, ACT_NOPID);
  }
}

static void on_count_children(sup_t *s, act_msg_t *m) {
  act_sup_counts_t c = {0};
  for (kid_t *k = s->first; k; k = k->next) {
    c.specs++;
    if (k->pid) c.active++;
    if (k->spec.type == ACT_SUPERVISOR) c.supervisors++;
    else c.workers++;
  }
  answer(m, &c, sizeof c);
}

static void on_get_childspec(sup_t *s, act_msg_t *m) {
  term_req_t *rq = m->data;
  rq->id[ACT_NAME_MAX - 1] = 0;
  kid_t *k = find_id(s, rq->id);
  start_req_t out;
  memset(&out, 0, sizeof out);
  if (!k) {
    answer(m, NULL, 0);
    return;
  }
  out.spec = k->spec;
  snprintf(out.name, sizeof out.name, "%s", k->name);
  answer(m, &out, sizeof out);
}

static void on_which_children(sup_t *s, act_msg_t *m) {
  act_child_info_t *out = calloc(s->n ? s->n : 1, sizeof *out);
  if (!out) act_crash("supervisor: out of memory");
  size_t i = 0;
  for (kid_t *k = s->first; k; k = k->next, i++) {
    snprintf(out[i].id, sizeof out[i].id, "%s", k->spec.id);
    out[i].pid = k->pid;
    out[i].type = k->spec.type;
    out[i].restart = k->spec.restart;
    out[i].restarts = k->restarts;
  }
  int rc = act_reply(m, ACT_MSG_SUP_REPLY, out, s->n * sizeof *out);
  free(out);
  if (rc != ACT_OK) act_crash("supervisor: out of memory (reply)");
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
    rc = start_kid(s, k, &s->start_ref);
  }
  if (rc == ACT_OK) {
    s->starting = START_STATIC;
    s->start_kid = k;
    s->start_idx = i;
    return;
  }
  if (k) {
    report_start_error(s, k, rc);
    remove_kid(s, k);
  }
  s->starting = START_NONE;
  s->start_err = rc;
  s->after_reason = act_reason_shutdown("failed_to_start_child %s", s->spec->children[i].id);
  begin_stop(s, s->first, NULL, AFTER_FAIL_START); /* those started go, in reverse */
}

static void on_init_ack(sup_t *s, const act_init_ack_t *a) {
  start_t kind = s->starting;
  kid_t *k = s->start_kid;
  s->starting = START_NONE;
  s->start_kid = NULL;
  if (a->result == ACT_OK) report_started(s, k);
  if (kind == START_DYNAMIC) {
    act_msg_t fake = {.from = s->start_to, .ref = s->start_req};
    if (a->result != ACT_OK) { /* nothing to restart: its EXIT is ignored */
      set_pid(s, k, ACT_NOPID);
      if (s->start_new) { /* a new start_child: not kept */
        k->spec.free_args = NULL; /* the caller keeps its args */
        remove_kid(s, k);
      }
    }
    reply(&fake, a->result, a->result == ACT_OK ? a->pid : ACT_NOPID);
  } else if (a->result == ACT_OK) {
    start_static(s, s->start_idx + 1);
  } else {
    report_start_error(s, k, a->result);
    remove_kid(s, k);
    s->start_err = a->result;
    s->after_reason = act_reason_shutdown("failed_to_start_child %s",
                                          s->spec->children[s->start_idx].id);
    begin_stop(s, s->first, NULL, AFTER_FAIL_START);
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
  case SUP_RESTART_CHILD: on_restart_child(s, m); break;
  case SUP_DELETE_CHILD: on_delete_child(s, m); break;
  case SUP_COUNT_CHILDREN: on_count_children(s, m); break;
  case SUP_GET_CHILDSPEC: on_get_childspec(s, m); break;
  default: break; /* unexpected: OTP logs and ignores */
  }
}

static void defer(sup_t *s, act_msg_t *m) {
  /* kept: out of its process's private FIFO, so its qnode is free */
  act_queue_push(&s->deferred, &act__env_of(act_msg_keep(m))->qnode);
}

static void sup_handle(void *state, act_msg_t *m) {
  sup_t *s = state;
  if (s->starting) {
    if (m->type == ACT_MSG_INIT_ACK && m->ref == s->start_ref) {
      on_init_ack(s, m->data);
    } else if (m->type == ACT_MSG_EXIT &&
               ((act_exit_msg_t *)m->data)->from == s->start_kid->pid) {
      /* proc_lib's start_link hears of the child's death by its EXIT too:
       * it comes after the failing ack, unless that ack could not be
       * allocated; then it is the answer (nothing to restart) */
      act_init_ack_t a = {s->start_kid->pid, ACT_EEXITED};
      on_init_ack(s, &a);
    } else {
      defer(s, m);
    }
    return;
  }
  if (!s->busy) {
    dispatch(s, m);
    return;
  }
  if (m->type == ACT_MSG_DOWN && ((act_down_msg_t *)m->data)->ref == s->mref) on_job_down(s, m->data);
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
  act__registry_name_of(act_self(), s->name, sizeof s->name); /* named at spawn, before init */
  act__current()->is_supervisor = true; /* for process_info */
  s->active = &act__current()->children;
  act__current()->sup_flags = spec->flags;
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
  for (kid_t *k = s->first; k; k = k->next)
    if (k->pid) act_exit(k->pid, act_reason(ACT_KILL));
  while (s->first) remove_kid(s, s->first); /* frees dynamic args */
  for (act_qnode_t *n; (n = act_queue_pop(&s->deferred));)
    act_msg_free(&ACT_QUEUE_DATA(n, act_env_t, qnode)->msg);
  for (act_qnode_t *n = s->replaying, *next; n; n = next) { /* crashed mid-replay */
    next = n->next;
    act_msg_free(&ACT_QUEUE_DATA(n, act_env_t, qnode)->msg);
  }
  free(s->index);
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

act_ref_t act_supervisor_restart_child_async(act_pid_t sup, const char *id) {
  term_req_t rq = term_req(ACT_NOPID, id);
  return act_request(sup, SUP_RESTART_CHILD, &rq, sizeof rq, ACT_INFINITY);
}

act_ref_t act_supervisor_delete_child_async(act_pid_t sup, const char *id) {
  term_req_t rq = term_req(ACT_NOPID, id);
  return act_request(sup, SUP_DELETE_CHILD, &rq, sizeof rq, ACT_INFINITY);
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

int act_supervisor_restart_child(act_pid_t sup, const char *id, act_pid_t *pid) {
  term_req_t rq = term_req(ACT_NOPID, id);
  return sup_call(sup, SUP_RESTART_CHILD, &rq, sizeof rq, pid);
}

int act_supervisor_delete_child(act_pid_t sup, const char *id) {
  term_req_t rq = term_req(ACT_NOPID, id);
  return sup_call(sup, SUP_DELETE_CHILD, &rq, sizeof rq, NULL);
}

int act_supervisor_count_children(act_pid_t sup, act_sup_counts_t *out) {
  act_msg_t *reply;
  int rc = act_call(sup, SUP_COUNT_CHILDREN, NULL, 0, &reply, SUP_CALL_TIMEOUT);
  if (rc != ACT_OK) return rc;
  if (reply->size == sizeof *out) memcpy(out, reply->data, sizeof *out);
  else rc = ACT_EINVAL; /* not a supervisor */
  act_msg_free(reply);
  return rc;
}

int act_supervisor_get_childspec(act_pid_t sup, const char *id, act_child_spec_t *out,
                                 char name[ACT_NAME_MAX]) {
  term_req_t rq = term_req(ACT_NOPID, id);
  act_msg_t *reply;
  int rc = act_call(sup, SUP_GET_CHILDSPEC, &rq, sizeof rq, &reply, SUP_CALL_TIMEOUT);
  if (rc != ACT_OK) return rc;
  if (reply->size == sizeof(start_req_t)) {
    start_req_t *r = reply->data;
    *out = r->spec;
    snprintf(name, ACT_NAME_MAX, "%s", r->name);
    out->name = name[0] ? name : NULL;
  } else {
    rc = ACT_ENOPROC; /* not_found */
  }
  act_msg_free(reply);
  return rc;
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
