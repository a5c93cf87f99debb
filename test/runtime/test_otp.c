/*
 * test_otp.c -- the runtime held to OTP's letter (issue 8): each test names
 * the rule it checks and failed before the change that made it pass.
 *
 *  - item 9: a supervisor with more children than its first allocation
 *    (8) still restarts a named child (its name was read from freed memory);
 *  - item 1: init runs before any signal; start_child answers init's error
 *    and restarts nothing; act_supervisor_start returns with every child
 *    started and named;
 *  - item 4: the parent-EXIT rule; item 8: {shutdown, Term} is not a crash;
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


/* ------------------------------------------------ item 1: proc_lib starts */

/* Spawned from an actor, which then at once tells it to exit: init ran
 * first (the exit signal used to act before init; neither init nor
 * terminate ran), and terminate saw the reason. */
static agent_args_t g_trapper = {.tag = 7, .trap = true};
static void fn_spawn_and_exit(void *a) {
  act_pid_t *out = a;
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_CALLER}; /* init runs after this handler */
  *out = act_spawn(&agent_behaviour, &g_trapper, &o, NULL);
  act_exit(*out, act_reason(ACT_SHUTDOWN));
}
START_TEST(init_runs_before_signals) {
  W = spawn_agent(99, false);
  act_pid_t p = ACT_NOPID;
  agent_run(W, fn_spawn_and_exit, &p);
  ck_assert(p != ACT_NOPID);
  ck_assert_int_eq(wait_term(p).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(log_count(q_init_tag(7)), 1);
}
END_TEST

static atomic_int g_fail;
START_TEST(start_child_returns_init_error_and_restarts_nothing) {
  W = spawn_agent(99, false);
  agent_args_t healthy = {.tag = 1};
  act_child_spec_t k1 = kid("healthy", &healthy, ACT_PERMANENT, 1000);
  act_sup_spec_t spec = {ACT_SUP_FLAGS_DEFAULT, &k1, 1}; /* 1 restart in 5 s */
  act_pid_t sup = start_sup(&spec);
  act_pid_t h = wait_init(1, 1);
  atomic_store(&g_fail, 1);
  static agent_args_t failing;
  failing = (agent_args_t){.tag = 2, .fail_init = &g_fail};
  act_child_spec_t k2 = kid("failing", &failing, ACT_PERMANENT, 1000);
  k2.name = "failing";
  act_pid_t pid = 1;
  ck_assert_int_eq(act_supervisor_start_child(sup, &k2, &pid), ACT_EINVAL);
  ck_assert(pid == ACT_NOPID);
  ck_assert(act_whereis("failing") == ACT_NOPID);
  /* twice: with the default intensity a restart of each would end it */
  atomic_store(&g_fail, 1);
  ck_assert_int_eq(act_supervisor_start_child(sup, &k2, &pid), ACT_EINVAL);
  act_child_info_t ci[4];
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 1);
  ck_assert(ci[0].pid == h);
  ck_assert_int_eq(log_count(q_init_tag(2)), 2); /* the two starts, no restart */
  ck_assert(is_alive(sup) && is_alive(h));
  /* and the id is free: a start that succeeds */
  ck_assert_int_eq(act_supervisor_start_child(sup, &k2, &pid), ACT_OK);
  ck_assert(act_whereis("failing") == pid);
  ck_assert_int_eq(log_count(q_init_tag(2)), 3); /* init ran before the answer */
}
END_TEST

START_TEST(supervisor_start_returns_with_children_started_and_named) {
  for (int i = 0; i < MANY; i++) {
    MA[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i);
    snprintf(MNAMES[i], sizeof MNAMES[i], "named.%d", i);
    MK[i] = kid(id, &MA[i], ACT_PERMANENT, 1000);
    MK[i].name = MNAMES[i];
  }
  /* a nested supervisor, last: its own children are up too */
  static act_child_spec_t inner_k;
  static agent_args_t inner_a = {.tag = 50};
  inner_k = kid("inner_child", &inner_a, ACT_PERMANENT, 1000);
  inner_k.name = "inner_child";
  static act_sup_spec_t inner;
  inner = (act_sup_spec_t){ACT_SUP_FLAGS_DEFAULT, &inner_k, 1};
  static act_child_spec_t all[MANY + 1];
  memcpy(all, MK, sizeof MK);
  all[MANY] = kid("inner", NULL, ACT_PERMANENT, ACT_SHUTDOWN_INFINITY);
  all[MANY].behaviour = act_supervisor();
  all[MANY].args = &inner;
  all[MANY].type = ACT_SUPERVISOR;
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), all, MANY + 1};
  start_sup(&spec);
  /* no waiting: everything is there when act_supervisor_start returned */
  for (int i = 0; i < MANY; i++) {
    ck_assert_msg(act_whereis(MNAMES[i]) != ACT_NOPID, "%s not registered", MNAMES[i]);
    ck_assert_int_eq(log_count(q_init_tag(i + 1)), 1);
  }
  ck_assert(act_whereis("inner_child") != ACT_NOPID);
  ck_assert_int_eq(log_count(q_init_tag(50)), 1);
}
END_TEST

/* ------------------------------------------------ item 4: parent-EXIT rule */

START_TEST(trapping_child_terminates_on_its_parents_shutdown) {
  W = spawn_agent(99, false);
  agent_args_t a = {.tag = 1, .trap = true};
  /* 30 s: if the rule did not hold, the child would sit out the whole
   * shutdown time and be killed (the suite's 60 s budget would show it) */
  act_child_spec_t k = kid("trapper", &a, ACT_PERMANENT, 30000);
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), &k, 1};
  act_pid_t sup = start_sup(&spec);
  act_pid_t p = wait_init(1, 1);
  ag_monitor(W, p);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "trapper"), ACT_OK);
  ck_assert_int_eq(wait_down(W, p).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_term(p).kind, ACT_SHUTDOWN); /* terminate ran with it */
  ck_assert_int_eq(log_count(q_exit(p, sup)), 0);    /* not a message */
  /* an EXIT from anyone else is still a message */
  act_pid_t q = spawn_agent(2, true);
  ck_assert_int_eq(act_exit(q, act_reason(ACT_SHUTDOWN)), ACT_OK);
  ck_assert(log_wait1(q_msg(q, ACT_MSG_EXIT), NULL));
  ck_assert(ag_alive(q));
}
END_TEST

/* ------------------------------------------------ item 8: {shutdown, Term} */

START_TEST(shutdown_with_a_term_is_not_a_crash) {
  act_reason_t r = act_reason_shutdown("reconnect %d", 3);
  ck_assert_int_eq(r.kind, ACT_SHUTDOWN);
  ck_assert_str_eq(r.text, "shutdown: reconnect 3");
  W = spawn_agent(99, false);
  agent_args_t a = {.tag = 1};
  act_child_spec_t k = kid("t", &a, ACT_TRANSIENT, 1000);
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), &k, 1};
  act_pid_t sup = start_sup(&spec);
  act_pid_t p = wait_init(1, 1);
  ag_monitor(W, p);
  send_stop(p, r);
  act_reason_t d = wait_down(W, p);
  ck_assert_int_eq(d.kind, ACT_SHUTDOWN);
  ck_assert_str_eq(d.text, "shutdown: reconnect 3");
  /* transient: not restarted, and the supervisor is fine */
  act_child_info_t ci[2];
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 2), 1);
  ck_assert(ci[0].pid == ACT_NOPID);
  ck_assert_int_eq(log_count(q_init_tag(1)), 1);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("otp");
  TCase *tc = rt_tcase("supervisor", 2, 60);
  tcase_add_test(tc, many_named_children_restart_under_their_names);
  tcase_add_test(tc, init_runs_before_signals);
  tcase_add_test(tc, start_child_returns_init_error_and_restarts_nothing);
  tcase_add_test(tc, supervisor_start_returns_with_children_started_and_named);
  tcase_add_test(tc, trapping_child_terminates_on_its_parents_shutdown);
  tcase_add_test(tc, shutdown_with_a_term_is_not_a_crash);
  suite_add_tcase(s, tc);
  return s;
}

RT_MAIN(suite)
