/*
 * rt_test.h -- shared helpers for the runtime's Check suites.
 *
 *  - an event log: actors append what happened to them (init, every message,
 *    terminate, user facts) to a mutex-protected array; the test thread waits
 *    on a condition variable with a timeout for the event it expects, so no
 *    test sleeps to synchronise where an event can be awaited;
 *  - the "agent": a scriptable actor that logs every message it gets (EXIT and
 *    DOWN with their reasons) and runs test-supplied functions inside itself
 *    (to monitor, link, trap exits, send_after... as an actor);
 *  - fixtures pairing act_start/act_stop_system per test, and a main().
 *
 * Actors never call ck_assert (they run on scheduler threads): they log, and
 * the test thread asserts.
 */
#ifndef RT_TEST_H
#define RT_TEST_H

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "act.h"
#include "../lib/check_main.h"

#define TMO 10000 /* ms: "this must happen" waits; generous for TSan */

/* ------------------------------------------------------------- time */

static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

/* ------------------------------------------------------------- event log */

enum ev_kind { EV_INIT = 1, EV_MSG, EV_TERM, EV_DONE, EV_USER, EV_CLEANUP };

typedef struct ev {
  int kind;
  int tag;             /* the logging actor's tag, or the user tag */
  act_pid_t self;      /* who logged it (act_self()) */
  int type;            /* EV_MSG: message type */
  act_pid_t from;      /* EV_MSG: msg->from */
  act_ref_t ref;       /* EV_MSG: msg->ref */
  act_pid_t pid;       /* EXIT: payload from; DOWN: payload pid */
  act_ref_t mref;      /* DOWN: monitor ref */
  act_reason_t reason; /* EXIT, DOWN, TERM */
  int64_t val;         /* first 8 bytes of a payload, or a user value */
  size_t size;         /* payload size */
  uint64_t seq;        /* position in the log */
} ev_t;

#define LOG_CAP (1 << 15)
static ev_t g_log[LOG_CAP];
static size_t g_log_n;
static size_t g_log_lost;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_log_cv = PTHREAD_COND_INITIALIZER;

static inline void log_reset(void) {
  pthread_mutex_lock(&g_log_mu);
  g_log_n = 0;
  g_log_lost = 0;
  pthread_mutex_unlock(&g_log_mu);
}

static inline void ev_log(const ev_t *e) {
  pthread_mutex_lock(&g_log_mu);
  if (g_log_n < LOG_CAP) {
    g_log[g_log_n] = *e;
    g_log[g_log_n].seq = g_log_n;
    g_log_n++;
  } else {
    g_log_lost++;
  }
  pthread_cond_broadcast(&g_log_cv);
  pthread_mutex_unlock(&g_log_mu);
}

/* A user fact, from anywhere. */
static inline void log_user(int tag, int64_t val) {
  ev_t e = {0};
  memset(&e, 0, sizeof e);
  e.kind = EV_USER;
  e.tag = tag;
  e.val = val;
  e.self = act_self();
  ev_log(&e);
}

/* A query: fields with has_* false match anything. */
typedef struct evq {
  int kind; /* 0 = any */
  int tag;  /* 0 = any */
  bool has_type;
  int type;
  act_pid_t self; /* 0 = any */
  act_pid_t pid;  /* 0 = any */
  act_ref_t ref;  /* 0 = any (msg ref or DOWN mref) */
  bool has_val;
  int64_t val;
} evq_t;

static inline bool ev_match(const ev_t *e, const evq_t *q) {
  if (q->kind && e->kind != q->kind) return false;
  if (q->tag && e->tag != q->tag) return false;
  if (q->has_type && e->type != q->type) return false;
  if (q->self && e->self != q->self) return false;
  if (q->pid && e->pid != q->pid) return false;
  if (q->ref && e->ref != q->ref && e->mref != q->ref) return false;
  if (q->has_val && e->val != q->val) return false;
  return true;
}

/* Queries most tests need. */
static inline evq_t q_msg(act_pid_t self, int type) {
  evq_t q = {.kind = EV_MSG, .self = self, .has_type = true, .type = type};
  return q;
}
static inline evq_t q_down(act_pid_t watcher, act_pid_t pid) {
  evq_t q = {.kind = EV_MSG, .self = watcher, .has_type = true, .type = ACT_MSG_DOWN, .pid = pid};
  return q;
}
static inline evq_t q_exit(act_pid_t self, act_pid_t from) {
  evq_t q = {.kind = EV_MSG, .self = self, .has_type = true, .type = ACT_MSG_EXIT, .pid = from};
  return q;
}
static inline evq_t q_term(act_pid_t pid) {
  evq_t q = {.kind = EV_TERM, .self = pid};
  return q;
}
static inline evq_t q_term_tag(int tag) {
  evq_t q = {.kind = EV_TERM, .tag = tag};
  return q;
}
static inline evq_t q_init_tag(int tag) {
  evq_t q = {.kind = EV_INIT, .tag = tag};
  return q;
}
static inline evq_t q_user(int tag) {
  evq_t q = {.kind = EV_USER, .tag = tag};
  return q;
}

static inline int log_count_locked(const evq_t *q, int nth, ev_t *out) {
  int c = 0;
  for (size_t i = 0; i < g_log_n; i++) {
    if (ev_match(&g_log[i], q)) {
      c++;
      if (c == nth && out) *out = g_log[i];
    }
  }
  return c;
}

/* How many events match now; the nth (1-based) is copied to *out if found. */
static inline int log_count(evq_t q) {
  pthread_mutex_lock(&g_log_mu);
  int c = log_count_locked(&q, 0, NULL);
  pthread_mutex_unlock(&g_log_mu);
  return c;
}
static inline bool log_nth(evq_t q, int nth, ev_t *out) {
  pthread_mutex_lock(&g_log_mu);
  int c = log_count_locked(&q, nth, out);
  pthread_mutex_unlock(&g_log_mu);
  return c >= nth;
}

/* Wait until at least n events match (copying the nth to *out); false on
 * timeout. */
static inline bool log_wait(evq_t q, int n, int timeout_ms, ev_t *out) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += timeout_ms / 1000;
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  bool ok = false;
  pthread_mutex_lock(&g_log_mu);
  for (;;) {
    if (log_count_locked(&q, n, out) >= n) {
      ok = true;
      break;
    }
    if (pthread_cond_timedwait(&g_log_cv, &g_log_mu, &dl) == ETIMEDOUT) {
      ok = log_count_locked(&q, n, out) >= n;
      break;
    }
  }
  pthread_mutex_unlock(&g_log_mu);
  return ok;
}
static inline bool log_wait1(evq_t q, ev_t *out) { return log_wait(q, 1, TMO, out); }

/* The position (seq) of the first matching event, or -1. */
static inline int64_t log_first_seq(evq_t q) {
  ev_t e = {0};
  return log_nth(q, 1, &e) ? (int64_t)e.seq : -1;
}

/* ------------------------------------------------------------- the agent */

enum {
  AG_RUN = 1000000, /* payload ag_cmd_t: run fn(arg) inside, then log EV_DONE */
  AG_CRASH,         /* act_crash("crash <tag>") */
  AG_STOP,          /* payload act_reason_t: act_stop(reason) */
  AG_ASSERT,        /* ACT_ASSERT on a false condition */
  AG_PING           /* just logged */
};

typedef struct agent agent_t;

typedef struct agent_args {
  int tag;
  bool trap;         /* trap exits from init */
  bool exit_on_exit; /* when trapping: an EXIT makes it stop with that reason */
  atomic_int *fail_init; /* if set and > 0: decrement, and init fails */
  atomic_int *inits;     /* if set: incremented on every init */
  /* Called for every logged message, inside the agent, after logging. */
  void (*on_msg)(agent_t *ag, act_msg_t *msg);
  void *user;
} agent_args_t;

struct agent {
  agent_args_t a;
  act_pid_t self;
  int64_t n;
};

typedef struct ag_cmd {
  void (*fn)(void *arg);
  void *arg;
  uint64_t id;
} ag_cmd_t;

static inline int64_t payload_val(const act_msg_t *m) {
  int64_t v = 0;
  if (m->data && m->size > 0) memcpy(&v, m->data, m->size < sizeof v ? m->size : sizeof v);
  return v;
}

static inline int ag_init(void *args, void **state) {
  agent_args_t *a = args;
  agent_t *ag = calloc(1, sizeof *ag);
  if (!ag) return ACT_ENOMEM;
  if (a) ag->a = *a;
  ag->self = act_self();
  if (ag->a.inits) atomic_fetch_add(ag->a.inits, 1);
  ev_t e = {0};
  memset(&e, 0, sizeof e);
  e.kind = EV_INIT;
  e.tag = ag->a.tag;
  e.self = act_self();
  ev_log(&e);
  if (ag->a.fail_init && atomic_fetch_sub(ag->a.fail_init, 1) > 0) {
    free(ag);
    return ACT_EINVAL;
  }
  if (ag->a.trap) act_trap_exit(true);
  *state = ag;
  return 0;
}

static inline void ag_handle(void *state, act_msg_t *m) {
  agent_t *ag = state;
  ag->n++;
  if (m->type == AG_RUN) {
    ag_cmd_t c;
    memcpy(&c, m->data, sizeof c);
    c.fn(c.arg);
    ev_t e = {0};
    memset(&e, 0, sizeof e);
    e.kind = EV_DONE;
    e.tag = ag->a.tag;
    e.self = act_self();
    e.val = (int64_t)c.id;
    ev_log(&e);
    return;
  }
  ev_t e = {0};
  memset(&e, 0, sizeof e);
  e.kind = EV_MSG;
  e.tag = ag->a.tag;
  e.self = act_self();
  e.type = m->type;
  e.from = m->from;
  e.ref = m->ref;
  e.size = m->size;
  if (m->type == ACT_MSG_EXIT && m->size >= sizeof(act_exit_msg_t)) {
    act_exit_msg_t x;
    memcpy(&x, m->data, sizeof x);
    e.pid = x.from;
    e.reason = x.reason;
  } else if (m->type == ACT_MSG_DOWN && m->size >= sizeof(act_down_msg_t)) {
    act_down_msg_t d;
    memcpy(&d, m->data, sizeof d);
    e.pid = d.pid;
    e.mref = d.ref;
    e.reason = d.reason;
  } else {
    e.val = payload_val(m);
  }
  ev_log(&e);
  if (ag->a.on_msg) ag->a.on_msg(ag, m);
  if (m->type == ACT_MSG_EXIT && ag->a.exit_on_exit) act_stop(e.reason);
  if (m->type == AG_CRASH) act_crash("crash %d", ag->a.tag);
  if (m->type == AG_ASSERT) ACT_ASSERT(ag->n < 0);
  if (m->type == AG_STOP && m->size >= sizeof(act_reason_t)) {
    act_reason_t r;
    memcpy(&r, m->data, sizeof r);
    act_stop(r);
  }
}

static inline void ag_terminate(void *state, act_reason_t reason) {
  agent_t *ag = state;
  ev_t e = {0};
  memset(&e, 0, sizeof e);
  e.kind = EV_TERM;
  e.tag = ag->a.tag;
  e.self = ag->self;
  e.reason = reason;
  ev_log(&e);
  free(ag);
}

static const act_behaviour_t agent_behaviour = {"agent", ag_init, ag_handle, ag_terminate};

/* Spawn an agent (args are copied by init; the pointer must live until init
 * ran: the agent logs EV_INIT, spawn_agent waits for it). */
static inline act_pid_t spawn_agent_on(int tag, bool trap, int sched) {
  agent_args_t *a = calloc(1, sizeof *a);
  a->tag = tag;
  a->trap = trap;
  act_spawn_opts_t o = {.scheduler = sched >= 0 ? ACT_SCHED_ON(sched) : sched};
  int err = 0;
  act_pid_t p = act_spawn(&agent_behaviour, a, &o, &err);
  ck_assert_msg(p != ACT_NOPID, "spawn agent: %d", err);
  evq_t q = {.kind = EV_INIT, .self = p};
  ck_assert_msg(log_wait1(q, NULL), "agent %d never ran init", tag);
  free(a);
  return p;
}
/* Spawn with full args (copied; may be a stack object). */
static inline act_pid_t spawn_agent_ex(const agent_args_t *a, int sched) {
  act_spawn_opts_t o = {.scheduler = sched >= 0 ? ACT_SCHED_ON(sched) : sched};
  int err = 0;
  act_pid_t p = act_spawn(&agent_behaviour, (void *)a, &o, &err);
  ck_assert_msg(p != ACT_NOPID, "spawn agent: %d", err);
  evq_t q = {.kind = EV_INIT, .self = p};
  ck_assert_msg(log_wait1(q, NULL), "agent %d never ran init", a->tag);
  return p;
}
static inline act_pid_t spawn_agent(int tag, bool trap) {
  return spawn_agent_on(tag, trap, ACT_SCHED_NEXT);
}

/* Run fn(arg) inside the agent and wait until it has run. */
static atomic_uint_fast64_t g_cmd_id;
static inline bool agent_run_tmo(act_pid_t ag, void (*fn)(void *), void *arg, int tmo) {
  ag_cmd_t c = {fn, arg, atomic_fetch_add(&g_cmd_id, 1) + 1};
  if (act_send(ag, AG_RUN, &c, sizeof c) != ACT_OK) return false;
  evq_t q = {.kind = EV_DONE, .self = ag, .has_val = true, .val = (int64_t)c.id};
  return log_wait(q, 1, tmo, NULL);
}
static inline void agent_run(act_pid_t ag, void (*fn)(void *), void *arg) {
  ck_assert_msg(agent_run_tmo(ag, fn, arg, TMO), "agent command did not run");
}
/* Fire and forget. */
static inline void agent_post(act_pid_t ag, void (*fn)(void *), void *arg) {
  ag_cmd_t c = {fn, arg, atomic_fetch_add(&g_cmd_id, 1) + 1};
  ck_assert_int_eq(act_send(ag, AG_RUN, &c, sizeof c), ACT_OK);
}

/* Common agent commands. */
typedef struct pidref {
  act_pid_t pid;
  act_ref_t ref;
  int rc;
  bool flag;
  act_reason_t reason;
} pidref_t;

static inline void fn_monitor(void *p) {
  pidref_t *x = p;
  x->ref = act_monitor(x->pid);
}
static inline void fn_demonitor(void *p) {
  pidref_t *x = p;
  x->flag = act_demonitor(x->ref);
}
static inline void fn_link(void *p) {
  pidref_t *x = p;
  x->rc = act_link(x->pid);
}
static inline void fn_unlink(void *p) {
  pidref_t *x = p;
  x->rc = act_unlink(x->pid);
}
static inline void fn_trap(void *p) {
  pidref_t *x = p;
  x->flag = act_trap_exit(x->flag);
}
static inline void fn_exit(void *p) {
  pidref_t *x = p;
  x->rc = act_exit(x->pid, x->reason);
}

static inline act_ref_t ag_monitor(act_pid_t ag, act_pid_t pid) {
  pidref_t x = {.pid = pid};
  agent_run(ag, fn_monitor, &x);
  ck_assert(x.ref != 0);
  return x.ref;
}
static inline int ag_link(act_pid_t ag, act_pid_t pid) {
  pidref_t x = {.pid = pid};
  agent_run(ag, fn_link, &x);
  return x.rc;
}
static inline int ag_unlink(act_pid_t ag, act_pid_t pid) {
  pidref_t x = {.pid = pid};
  agent_run(ag, fn_unlink, &x);
  return x.rc;
}
static inline int ag_exit(act_pid_t ag, act_pid_t pid, act_reason_t r) {
  pidref_t x = {.pid = pid, .reason = r};
  agent_run(ag, fn_exit, &x);
  return x.rc;
}

static inline void send_crash(act_pid_t p) { ck_assert_int_eq(act_send(p, AG_CRASH, NULL, 0), ACT_OK); }
static inline void send_stop(act_pid_t p, act_reason_t r) {
  ck_assert_int_eq(act_send(p, AG_STOP, &r, sizeof r), ACT_OK);
}

/* Wait for the DOWN the watcher gets about pid; returns its reason. */
static inline act_reason_t wait_down(act_pid_t watcher, act_pid_t pid) {
  ev_t e = {0};
  ck_assert_msg(log_wait1(q_down(watcher, pid), &e), "no DOWN for pid %llx",
                (unsigned long long)pid);
  return e.reason;
}
/* Wait for the pid's own terminate; returns the reason it saw. */
static inline act_reason_t wait_term(act_pid_t pid) {
  ev_t e = {0};
  ck_assert_msg(log_wait1(q_term(pid), &e), "pid %llx never terminated",
                (unsigned long long)pid);
  return e.reason;
}

/* Prove an agent is alive and has handled everything sent to it before:
 * ping it and wait until the ping is logged. */
static inline bool ag_alive(act_pid_t ag) {
  static atomic_long pings;
  int64_t v = atomic_fetch_add(&pings, 1) + 1;
  if (act_send(ag, AG_PING, &v, sizeof v) != ACT_OK) return false;
  evq_t q = {.kind = EV_MSG, .self = ag, .has_type = true, .type = AG_PING,
             .has_val = true, .val = v};
  return log_wait(q, 1, 2000, NULL);
}

/* The newest pid that logged init with this tag. */
static inline act_pid_t pid_of_tag(int tag) {
  int n = log_count(q_init_tag(tag));
  ev_t e = {0};
  if (n == 0 || !log_nth(q_init_tag(tag), n, &e)) return ACT_NOPID;
  return e.self;
}

static inline bool is_alive(act_pid_t p) {
  act_info_t i;
  return act_info_of(p, &i) == ACT_OK;
}

/* Wait until pid has exited (the runtime's own act_await_exit). */
static inline act_reason_t await_exit(act_pid_t p) {
  act_reason_t r;
  memset(&r, 0, sizeof r);
  int rc = act_await_exit(p, TMO, &r);
  ck_assert_msg(rc == ACT_OK || rc == ACT_ENOPROC, "act_await_exit: %d", rc);
  return r;
}

/* ------------------------------------------------------------- fixtures */

static inline void rt_start(int threads) {
  log_reset();
  act_config_t c = {.threads = threads, .max_actors = 1u << 14};
  int rc = act_start(&c);
  ck_assert_int_eq(rc, ACT_OK);
  ck_assert_int_eq(act_scheduler_count(), threads);
}
static inline void rt_setup1(void) { rt_start(1); }
static inline void rt_setup2(void) { rt_start(2); }
static inline void rt_teardown(void) { act_stop_system(); }

static inline TCase *rt_tcase(const char *name, int threads, double timeout_s) {
  TCase *tc = tcase_create(name);
  tcase_add_checked_fixture(tc, threads == 1 ? rt_setup1 : rt_setup2, rt_teardown);
  tcase_set_timeout(tc, timeout_s);
  return tc;
}

/* main(): runs the suite in Check's default fork mode (one process per test,
 * so a hang or crash in one test is reported and the others still run;
 * CK_FORK=no for a debugger). */
#define RT_MAIN(suite_fn) CHECK_MAIN(suite_fn, CK_ENV)

#endif /* RT_TEST_H */
