/*
 * test_otp.c -- the runtime held to OTP's letter (issue 8): each test names
 * the rule it checks and failed before the change that made it pass.
 *
 *  - item 9: a supervisor with more children than its first allocation
 *    (8) still restarts a named child (its name was read from freed memory);
 *
 * Children are agents (rt_test.h) that log init/terminate with their tag.
 */
#include "rt_test.h"

static act_pid_t W; /* watcher agent */

static act_child_spec_t kid(const char *id, agent_args_t *a, act_restart_t r, int shutdown_ms) {
  act_child_spec_t c;
  memset(&c, 0, sizeof c);
  snprintf(c.id, sizeof c.id, "%s", id);
  c.behaviour = &agent_behaviour;
  c.args = a;
  c.restart = r;
  c.shutdown_ms = shutdown_ms;
  c.type = ACT_WORKER;
  c.scheduler = ACT_SCHED_NEXT;
  return c;
}

static act_pid_t start_sup(const act_sup_spec_t *spec) {
  int err = 0;
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
  act_pid_t s = act_supervisor_start(spec, &o, &err);
  ck_assert_msg(s != ACT_NOPID, "supervisor start: %d", err);
  return s;
}

static act_pid_t wait_init(int tag, int n) {
  ev_t e = {0};
  ck_assert_msg(log_wait(q_init_tag(tag), n, TMO, &e), "tag %d: init #%d never ran", tag, n);
  return e.self;
}

#define FLAGS(st, i, p) ((act_sup_flags_t){(st), (i), (p)})

/* ------------------------------------------------ item 9: names survive growth */

#define MANY 12
static agent_args_t MA[MANY];
static act_child_spec_t MK[MANY];
static char MNAMES[MANY][24];

START_TEST(many_named_children_restart_under_their_names) {
  W = spawn_agent(99, false);
  for (int i = 0; i < MANY; i++) {
    MA[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i);
    snprintf(MNAMES[i], sizeof MNAMES[i], "named.%d", i);
    MK[i] = kid(id, &MA[i], ACT_PERMANENT, 1000);
    MK[i].name = MNAMES[i];
  }
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 100, 5000), MK, MANY};
  act_pid_t sup = start_sup(&spec);
  for (int i = 0; i < MANY; i++) wait_init(i + 1, 1);
  /* Crash each child once: each restart reads its spec's name. */
  for (int i = 0; i < MANY; i++) {
    act_pid_t p = act_whereis(MNAMES[i]);
    ck_assert(p != ACT_NOPID);
    ag_monitor(W, p);
    send_crash(p);
    wait_down(W, p);
    act_pid_t n = wait_init(i + 1, 2);
    ck_assert(n != p);
    /* the name is registered at spawn, before init: it is there now */
    ck_assert_msg(act_whereis(MNAMES[i]) == n, "child %d lost its name", i);
  }
  ck_assert(is_alive(sup));
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("otp");
  TCase *tc = rt_tcase("supervisor", 2, 60);
  tcase_add_test(tc, many_named_children_restart_under_their_names);
  suite_add_tcase(s, tc);
  return s;
}

RT_MAIN(suite)
