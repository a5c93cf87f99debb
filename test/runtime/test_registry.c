/*
 * test_registry.c -- the name registry: register/whereis/unregister from
 * inside and outside actors, ACT_EEXIST for a taken name, ACT_ENOPROC for a
 * dead pid, names registered at spawn (opts.name) before act_spawn returns
 * and refused when taken, names freed when their actor exits (whatever the
 * reason), many names registered and released concurrently.
 */
#include "rt_test.h"

START_TEST(register_whereis_unregister) {
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  ck_assert(act_whereis("alpha") == ACT_NOPID);
  ck_assert_int_eq(act_register("alpha", a), ACT_OK);
  ck_assert(act_whereis("alpha") == a);
  ck_assert_int_eq(act_register("alpha", b), ACT_EEXIST);
  ck_assert(act_whereis("alpha") == a);
  ck_assert_int_eq(act_register("beta", b), ACT_OK);
  ck_assert(act_whereis("beta") == b);
  ck_assert_int_eq(act_unregister("alpha"), ACT_OK);
  ck_assert(act_whereis("alpha") == ACT_NOPID);
  ck_assert_int_lt(act_unregister("alpha"), 0); /* not registered any more */
  /* introspection shows the name */
  act_info_t i;
  ck_assert_int_eq(act_info_of(b, &i), ACT_OK);
  ck_assert_str_eq(i.name, "beta");
}
END_TEST

START_TEST(register_dead_pid_enoproc) {
  act_pid_t w = spawn_agent(9, false), a = spawn_agent(1, false);
  ag_monitor(w, a);
  send_crash(a);
  wait_down(w, a);
  ck_assert_int_eq(act_register("ghost", a), ACT_ENOPROC);
  ck_assert(act_whereis("ghost") == ACT_NOPID);
  ck_assert_int_lt(act_register("x", ACT_NOPID), 0);
}
END_TEST

static void fn_register_self(void *a) {
  pidref_t *x = a;
  x->rc = act_register("inner", act_self());
}
START_TEST(register_from_inside) {
  act_pid_t a = spawn_agent(1, false);
  pidref_t x = {0};
  agent_run(a, fn_register_self, &x);
  ck_assert_int_eq(x.rc, ACT_OK);
  ck_assert(act_whereis("inner") == a);
  act_send(act_whereis("inner"), AG_PING, NULL, 0);
  ck_assert(log_wait1(q_msg(a, AG_PING), NULL));
}
END_TEST

START_TEST(spawn_name_registered_before_return) {
  agent_args_t aa = {.tag = 1};
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT, .name = "svc"};
  int err = 0;
  act_pid_t p = act_spawn(&agent_behaviour, &aa, &o, &err);
  ck_assert(p != ACT_NOPID);
  ck_assert(act_whereis("svc") == p); /* at once, before init ran or not */
  ck_assert(log_wait1(q_init_tag(1), NULL));
  /* a second one under the same name is refused, and nothing is left over */
  agent_args_t bb = {.tag = 2};
  err = 0;
  act_pid_t q = act_spawn(&agent_behaviour, &bb, &o, &err);
  ck_assert(q == ACT_NOPID);
  ck_assert_int_eq(err, ACT_EEXIST);
  ck_assert(act_whereis("svc") == p);
  size_t n = act_list(NULL, 0);
  ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(names_freed_on_exit) {
  act_pid_t w = spawn_agent(9, false);
  const act_reason_t reasons[] = {act_reason(ACT_NORMAL), act_reason(ACT_SHUTDOWN),
                                  act_reason_error("boom"), act_reason(ACT_KILL)};
  for (int i = 0; i < 4; i++) {
    act_pid_t a = spawn_agent(1 + i, false);
    ck_assert_int_eq(act_register("tmp", a), ACT_OK);
    ag_monitor(w, a);
    if (i == 3) act_exit(a, act_reason(ACT_KILL));
    else send_stop(a, reasons[i]);
    wait_down(w, a);
    ck_assert(act_whereis("tmp") == ACT_NOPID);
    act_pid_t b = spawn_agent(10 + i, false);
    ck_assert_int_eq(act_register("tmp", b), ACT_OK);
    ck_assert_int_eq(act_unregister("tmp"), ACT_OK);
  }
}
END_TEST

START_TEST(name_too_long_refused) {
  act_pid_t a = spawn_agent(1, false);
  char longname[ACT_NAME_MAX + 10];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  ck_assert_int_lt(act_register(longname, a), 0);
}
END_TEST

/* Threads register, look up and unregister distinct names concurrently
 * while their actors die. */
static act_pid_t g_pids[64];
static void *reg_thread(void *arg) {
  int t = (int)(intptr_t)arg;
  char name[32];
  for (int round = 0; round < 200; round++) {
    for (int k = 0; k < 8; k++) {
      snprintf(name, sizeof name, "t%d-%d", t, k);
      act_pid_t p = g_pids[t * 8 + k];
      int rc = act_register(name, p);
      if (rc != ACT_OK) log_user(1, rc);
      if (act_whereis(name) != p) log_user(2, round);
      if (act_unregister(name) != ACT_OK) log_user(3, round);
    }
  }
  return NULL;
}
START_TEST(concurrent_registry) {
  for (int i = 0; i < 32; i++) g_pids[i] = spawn_agent(100 + i, false);
  pthread_t th[4];
  for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, reg_thread, (void *)(intptr_t)t);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  ck_assert_int_eq(log_count(q_user(1)), 0);
  ck_assert_int_eq(log_count(q_user(2)), 0);
  ck_assert_int_eq(log_count(q_user(3)), 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("registry");
  TCase *tc = rt_tcase("registry", 2, 60);
  tcase_add_test(tc, register_whereis_unregister);
  tcase_add_test(tc, register_dead_pid_enoproc);
  tcase_add_test(tc, register_from_inside);
  tcase_add_test(tc, spawn_name_registered_before_return);
  tcase_add_test(tc, names_freed_on_exit);
  tcase_add_test(tc, name_too_long_refused);
  tcase_add_test(tc, concurrent_registry);
  suite_add_tcase(s, tc);
  return s;
}

RT_MAIN(suite)
