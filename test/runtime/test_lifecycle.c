/*
 * test_lifecycle.c -- the system itself: act_start/act_stop_system repeated
 * many times in one process (with actors running at stop), act_stop_system
 * kills what is still alive (terminate runs, reason `killed`), the API
 * refuses work outside a running system (ACT_ESTATE), a second act_start is
 * refused, threads = 0 takes the core count and never an application's
 * environment ($CHATTER_THREADS is app/config.c's), and the orderly shutdown the
 * header recommends (exit(root, shutdown) then act_await_exit).
 */
#include "rt_test.h"

START_TEST(start_stop_cycles) {
  for (int cycle = 0; cycle < 100; cycle++) {
    log_reset();
    act_config_t c = {.threads = 1 + cycle % 2, .max_actors = 256};
    ck_assert_int_eq(act_start(&c), ACT_OK);
    int n = cycle % 4; /* sometimes no actor at all */
    for (int i = 0; i < n; i++) {
      agent_args_t a = {.tag = 1 + i};
      act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
      act_pid_t p = act_spawn(&agent_behaviour, &a, &o, NULL);
      ck_assert(p != ACT_NOPID);
      ck_assert(log_wait1((evq_t){.kind = EV_INIT, .self = p}, NULL));
      act_send(p, AG_PING, NULL, 0);
    }
    act_stop_system();
    ck_assert_int_eq(log_count((evq_t){.kind = EV_TERM}), n);
  }
}
END_TEST

START_TEST(stop_kills_the_living) {
  rt_start(2);
  act_pid_t p[4];
  for (int i = 0; i < 4; i++) p[i] = spawn_agent(1 + i, i % 2 == 0); /* trapping, too */
  act_stop_system();
  for (int i = 0; i < 4; i++) {
    ev_t e = {0};
    ck_assert(log_nth(q_term(p[i]), 1, &e));
    ck_assert_int_eq(e.reason.kind, ACT_KILLED);
  }
  /* a stopped system refuses work */
  int err = 0;
  agent_args_t a = {.tag = 9};
  ck_assert(act_spawn(&agent_behaviour, &a, NULL, &err) == ACT_NOPID);
  ck_assert_int_eq(err, ACT_ESTATE);
  act_msg_t *reply = NULL;
  ck_assert_int_lt(act_call(p[0], 1, NULL, 0, &reply, 100), 0);
  act_stop_system(); /* twice is harmless */
}
END_TEST

START_TEST(second_start_refused) {
  rt_start(1);
  act_config_t c = {.threads = 1};
  ck_assert_int_eq(act_start(&c), ACT_ESTATE);
  ck_assert_int_eq(act_scheduler_count(), 1);
  act_stop_system();
}
END_TEST

START_TEST(threads_only_from_config) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  setenv("CHATTER_THREADS", cores == 3 ? "4" : "3", 1);
  act_config_t c = {.threads = 0, .max_actors = 64};
  ck_assert_int_eq(act_start(&c), ACT_OK);
  ck_assert_int_eq(act_scheduler_count(), cores > 255 ? 255 : (int)cores);
  act_stop_system();
  unsetenv("CHATTER_THREADS");
}
END_TEST

START_TEST(orderly_shutdown) {
  rt_start(2);
  agent_args_t a[3] = {{.tag = 1}, {.tag = 2}, {.tag = 3}};
  act_child_spec_t k[3];
  for (int i = 0; i < 3; i++) {
    memset(&k[i], 0, sizeof k[i]);
    snprintf(k[i].id, sizeof k[i].id, "k%d", i);
    k[i].behaviour = &agent_behaviour;
    k[i].args = &a[i];
    k[i].restart = ACT_PERMANENT;
    k[i].shutdown_ms = 1000;
    k[i].scheduler = ACT_SCHED_NEXT;
  }
  act_sup_spec_t spec = {ACT_SUP_FLAGS_DEFAULT, k, 3};
  act_pid_t root = act_supervisor_start(&spec, NULL, NULL);
  ck_assert(root != ACT_NOPID);
  for (int t = 1; t <= 3; t++) ck_assert(log_wait1(q_init_tag(t), NULL));
  ck_assert_int_eq(act_exit(root, act_reason(ACT_SHUTDOWN)), ACT_OK);
  act_reason_t r;
  ck_assert_int_eq(act_await_exit(root, TMO, &r), ACT_OK);
  ck_assert_int_eq(r.kind, ACT_SHUTDOWN);
  for (int t = 1; t <= 3; t++) {
    ev_t e = {0};
    ck_assert(log_nth(q_term_tag(t), 1, &e));
    ck_assert_int_eq(e.reason.kind, ACT_SHUTDOWN);
  }
  ck_assert_uint_eq(act_list(NULL, 0), 0);
  act_stop_system();
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("lifecycle");
  TCase *tc = tcase_create("system"); /* no fixture: each test starts and stops */
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, start_stop_cycles);
  tcase_add_test(tc, stop_kills_the_living);
  tcase_add_test(tc, second_start_refused);
  tcase_add_test(tc, threads_only_from_config);
  tcase_add_test(tc, orderly_shutdown);
  suite_add_tcase(s, tc);
  return s;
}

RT_MAIN(suite)
