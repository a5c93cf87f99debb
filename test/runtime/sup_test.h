/*
 * sup_test.h -- what the supervisor suites (test_supervisor.c, test_otp.c,
 * test_reports.c) share on top of rt_test.h: a worker child spec (of any
 * behaviour, or an agent), a supervisor started on the next scheduler (its
 * start must succeed), and waiting for a child's n-th init.
 */
#ifndef SUP_TEST_H
#define SUP_TEST_H

#include "rt_test.h"

/* A worker child spec of any behaviour, on the next scheduler. */
static inline act_child_spec_t kid_of(const char *id, const act_behaviour_t *b, void *a,
                                      act_restart_t r, int shutdown_ms) {
  act_child_spec_t c;
  memset(&c, 0, sizeof c);
  snprintf(c.id, sizeof c.id, "%s", id);
  c.behaviour = b;
  c.args = a;
  c.restart = r;
  c.shutdown_ms = shutdown_ms;
  c.type = ACT_WORKER;
  c.scheduler = ACT_SCHED_NEXT;
  return c;
}

/* An agent child spec. */
static inline act_child_spec_t kid(const char *id, agent_args_t *a, act_restart_t r, int shutdown_ms) {
  return kid_of(id, &agent_behaviour, a, r, shutdown_ms);
}

static inline act_pid_t start_sup(const act_sup_spec_t *spec) {
  int err = 0;
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
  act_pid_t s = act_supervisor_start(spec, &o, &err);
  ck_assert_msg(s != ACT_NOPID, "supervisor start: %d", err);
  return s;
}

/* Wait until tag has run init n times; returns the newest pid. */
static inline act_pid_t wait_init(int tag, int n) {
  ev_t e = {0};
  ck_assert_msg(log_wait(q_init_tag(tag), n, TMO, &e), "tag %d: init #%d never ran", tag, n);
  return e.self;
}

#endif
