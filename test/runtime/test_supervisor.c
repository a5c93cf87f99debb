/*
 * test_supervisor.c -- OTP's supervisor: one_for_one, one_for_all and
 * rest_for_one (which children restart; siblings stopped in reverse start
 * order with `shutdown`); permanent/transient/temporary restart rules;
 * intensity (the default 1 in 5000 ms: the second restart within the period
 * ends the supervisor with `shutdown`; a restart outside the period is fine;
 * failed restart attempts count); child shutdown (`shutdown`, then `kill`
 * after shutdown_ms for a child that ignores it; brutal_kill; monitor+DOWN,
 * not the link); children stopped in reverse order when the supervisor is
 * shut down, nested supervisors first stopping their own; dynamic children
 * (start_child, terminate_child, sync and async); which_children; restart
 * counts in introspection; registered child names follow restarts.
 *
 * Children are agents (rt_test.h) that log init/terminate with their tag.
 */
#include "sup_test.h"

static act_pid_t W; /* watcher agent */

static int n_inits(int tag) { return log_count(q_init_tag(tag)); }

static int children(act_pid_t sup, act_child_info_t *out, int max) {
  int n = act_supervisor_which_children(sup, out, max);
  ck_assert_int_ge(n, 0);
  return n;
}

/* Crash a child (by tag) and wait until its DOWN is seen by W. */
static act_pid_t crash_tag(int tag) {
  act_pid_t p = pid_of_tag(tag);
  ck_assert(p != ACT_NOPID);
  ag_monitor(W, p);
  send_crash(p);
  wait_down(W, p);
  return p;
}

static int64_t term_seq(act_pid_t p) { return log_first_seq(q_term(p)); }

#define FLAGS(st, i, p) ((act_sup_flags_t){(st), (i), (p)})

/* ------------------------------------------------ strategies */

static agent_args_t A[8];
static act_child_spec_t K[8];
static act_sup_spec_t SPEC;

static void three_kids(act_sup_flags_t f, act_restart_t r) {
  for (int i = 0; i < 3; i++) {
    A[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i + 1);
    K[i] = kid(id, &A[i], r, 1000);
  }
  SPEC = (act_sup_spec_t){f, K, 3};
}

START_TEST(one_for_one_restarts_only_the_child) {
  W = spawn_agent(99, false);
  three_kids(FLAGS(ACT_ONE_FOR_ONE, 10, 5000), ACT_PERMANENT);
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p1 = wait_init(1, 1), p2 = wait_init(2, 1), p3 = wait_init(3, 1);
  act_child_info_t ci[8];
  ck_assert_int_eq(children(sup, ci, 8), 3);
  ck_assert_str_eq(ci[0].id, "c1");
  ck_assert_str_eq(ci[1].id, "c2");
  ck_assert_str_eq(ci[2].id, "c3");
  ck_assert(ci[0].pid == p1 && ci[1].pid == p2 && ci[2].pid == p3);
  ck_assert_int_eq(ci[1].type, ACT_WORKER);
  ck_assert_int_eq(ci[1].restart, ACT_PERMANENT);
  ck_assert_uint_eq(ci[1].restarts, 0);
  crash_tag(2);
  act_pid_t n2 = wait_init(2, 2);
  ck_assert(n2 != p2);
  ck_assert_int_eq(children(sup, ci, 8), 3);
  ck_assert(ci[0].pid == p1 && ci[1].pid == n2 && ci[2].pid == p3);
  ck_assert_uint_eq(ci[1].restarts, 1);
  ck_assert_uint_eq(ci[0].restarts, 0);
  ck_assert_int_eq(n_inits(1), 1);
  ck_assert_int_eq(n_inits(3), 1);
  ck_assert_int_eq(log_count(q_term_tag(1)), 0);
  ck_assert_int_eq(log_count(q_term_tag(3)), 0);
  /* introspection: parent and restart counts */
  act_info_t i;
  ck_assert_int_eq(act_info_of(n2, &i), ACT_OK);
  ck_assert(i.parent == sup);
  ck_assert_uint_eq(i.restarts, 1);
  ck_assert_str_eq(i.behaviour, "agent");
  ck_assert_int_eq(act_info_of(sup, &i), ACT_OK);
  ck_assert_uint_eq(i.restarts, 1);
  ck_assert(is_alive(sup));
}
END_TEST

START_TEST(one_for_all_restarts_all_stopping_in_reverse) {
  W = spawn_agent(99, false);
  three_kids(FLAGS(ACT_ONE_FOR_ALL, 10, 5000), ACT_PERMANENT);
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p1 = wait_init(1, 1), p2 = wait_init(2, 1), p3 = wait_init(3, 1);
  crash_tag(2);
  act_pid_t n1 = wait_init(1, 2), n2 = wait_init(2, 2), n3 = wait_init(3, 2);
  ck_assert(n1 != p1 && n2 != p2 && n3 != p3);
  ck_assert_int_eq(wait_term(p1).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_term(p3).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_term(p2).kind, ACT_ERROR);
  /* the siblings are stopped in reverse start order: c3 before c1 */
  ck_assert_int_lt(term_seq(p3), term_seq(p1));
  /* ... before any restart */
  ck_assert_int_lt(term_seq(p1), log_first_seq((evq_t){.kind = EV_INIT, .self = n1}));
  act_child_info_t ci[8];
  ck_assert_int_eq(children(sup, ci, 8), 3);
  ck_assert(ci[0].pid == n1 && ci[1].pid == n2 && ci[2].pid == n3);
  ck_assert_int_eq(n_inits(1) + n_inits(2) + n_inits(3), 6);
}
END_TEST

START_TEST(rest_for_one_restarts_the_rest) {
  W = spawn_agent(99, false);
  for (int i = 0; i < 4; i++) {
    A[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i + 1);
    K[i] = kid(id, &A[i], ACT_PERMANENT, 1000);
  }
  SPEC = (act_sup_spec_t){FLAGS(ACT_REST_FOR_ONE, 10, 5000), K, 4};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p1 = wait_init(1, 1), p3 = wait_init(3, 1), p4 = wait_init(4, 1);
  wait_init(2, 1);
  crash_tag(2);
  wait_init(2, 2);
  act_pid_t n3 = wait_init(3, 2), n4 = wait_init(4, 2);
  ck_assert_int_eq(wait_term(p3).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_term(p4).kind, ACT_SHUTDOWN);
  ck_assert_int_lt(term_seq(p4), term_seq(p3)); /* reverse order */
  act_child_info_t ci[8];
  ck_assert_int_eq(children(sup, ci, 8), 4);
  ck_assert(ci[0].pid == p1);
  ck_assert_int_eq(n_inits(1), 1);
  ck_assert_int_eq(log_count(q_term_tag(1)), 0);
  /* now the first one: everything after it, c4 c3 c2 in that order */
  act_pid_t q2 = ci[1].pid;
  crash_tag(1);
  wait_init(1, 2);
  wait_init(2, 3);
  wait_init(3, 3);
  wait_init(4, 3);
  ck_assert_int_lt(term_seq(n4), term_seq(n3));
  ck_assert_int_lt(term_seq(n3), term_seq(q2));
  ck_assert_int_eq(wait_term(q2).kind, ACT_SHUTDOWN);
}
END_TEST

/* ------------------------------------------------ restart types */

START_TEST(restart_types) {
  W = spawn_agent(99, false);
  act_restart_t types[6] = {ACT_PERMANENT, ACT_TRANSIENT, ACT_TEMPORARY,
                            ACT_TRANSIENT, ACT_PERMANENT, ACT_TRANSIENT};
  for (int i = 0; i < 6; i++) {
    A[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i + 1);
    K[i] = kid(id, &A[i], types[i], 1000);
  }
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 20, 5000), K, 6};
  act_pid_t sup = start_sup(&SPEC);
  for (int t = 1; t <= 6; t++) wait_init(t, 1);
  act_child_info_t ci[8];

  /* permanent: restarted even after a normal exit */
  act_pid_t p = pid_of_tag(1);
  ag_monitor(W, p);
  send_stop(p, act_reason(ACT_NORMAL));
  wait_down(W, p);
  wait_init(1, 2);

  /* transient, normal exit: not restarted, still listed without a pid */
  p = pid_of_tag(2);
  ag_monitor(W, p);
  send_stop(p, act_reason(ACT_NORMAL));
  wait_down(W, p);
  int n = children(sup, ci, 8);
  ck_assert_str_eq(ci[1].id, "c2");
  ck_assert(ci[1].pid == ACT_NOPID);

  /* transient, shutdown exit: not restarted either */
  p = pid_of_tag(6);
  ag_monitor(W, p);
  send_stop(p, act_reason(ACT_SHUTDOWN));
  wait_down(W, p);
  n = children(sup, ci, 8);
  ck_assert(ci[n - 1].pid == ACT_NOPID);

  /* transient, crash: restarted */
  crash_tag(4);
  wait_init(4, 2);

  /* temporary, crash: never restarted, and its spec is gone */
  crash_tag(3);
  n = children(sup, ci, 8);
  ck_assert_int_eq(n, 5);
  for (int i = 0; i < n; i++) ck_assert_str_ne(ci[i].id, "c3");

  /* permanent crash: restarted */
  crash_tag(5);
  wait_init(5, 2);

  children(sup, ci, 8); /* everything above is processed */
  ck_assert_int_eq(n_inits(2), 1);
  ck_assert_int_eq(n_inits(3), 1);
  ck_assert_int_eq(n_inits(6), 1);
  ck_assert(is_alive(sup));
}
END_TEST

/* ------------------------------------------------ intensity */

START_TEST(default_intensity_second_restart_ends_supervisor) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};
  A[1] = (agent_args_t){.tag = 2};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  K[1] = kid("c2", &A[1], ACT_PERMANENT, 1000);
  SPEC = (act_sup_spec_t){ACT_SUP_FLAGS_DEFAULT, K, 2};
  ck_assert_int_eq(SPEC.flags.intensity, 1);
  ck_assert_int_eq(SPEC.flags.period_ms, 5000);
  act_pid_t sup = start_sup(&SPEC);
  ag_monitor(W, sup);
  wait_init(1, 1);
  act_pid_t p2 = wait_init(2, 1);
  crash_tag(1); /* first restart: fine */
  wait_init(1, 2);
  act_child_info_t ci[4];
  ck_assert_int_eq(children(sup, ci, 4), 2);
  ck_assert(is_alive(sup));
  crash_tag(1); /* second within 5 s: too many */
  act_reason_t r = wait_down(W, sup);
  ck_assert_int_eq(r.kind, ACT_SHUTDOWN);
  ck_assert_int_eq(n_inits(1), 2); /* not restarted a third time */
  ck_assert_int_eq(wait_term(p2).kind, ACT_SHUTDOWN); /* the other child stopped */
  ck_assert_int_lt(term_seq(p2), log_first_seq(q_down(W, sup)));
}
END_TEST

START_TEST(intensity_zero_first_crash_ends_supervisor) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 0, 5000), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  ag_monitor(W, sup);
  wait_init(1, 1);
  crash_tag(1);
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(n_inits(1), 1);
}
END_TEST

START_TEST(restarts_outside_the_period_are_forgotten) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 1, 300), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  ag_monitor(W, sup);
  wait_init(1, 1);
  crash_tag(1);
  wait_init(1, 2);
  sleep_ms(450); /* time is the subject here: let the period pass */
  crash_tag(1);
  wait_init(1, 3);
  ck_assert(is_alive(sup));
  crash_tag(1); /* at once: two within 300 ms */
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
}
END_TEST

static atomic_int g_fail, g_inits;
START_TEST(failed_restart_attempts_count) {
  W = spawn_agent(99, false);
  atomic_store(&g_fail, 0);
  atomic_store(&g_inits, 0);
  A[0] = (agent_args_t){.tag = 1, .fail_init = &g_fail, .inits = &g_inits};
  A[1] = (agent_args_t){.tag = 2};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  K[1] = kid("c2", &A[1], ACT_PERMANENT, 1000);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 3, 5000), K, 2};
  act_pid_t sup = start_sup(&SPEC);
  ag_monitor(W, sup);
  wait_init(1, 1);
  wait_init(2, 1);
  atomic_store(&g_fail, 1000); /* from now on, c1's init fails */
  crash_tag(1);
  /* without counting the failures the supervisor would retry for ever */
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  int attempts = atomic_load(&g_inits) - 1;
  ck_assert_int_ge(attempts, 1);
  ck_assert_int_le(attempts, 3); /* intensity 3: the 4th restart is refused */
}
END_TEST

START_TEST(failed_restart_with_default_intensity) {
  W = spawn_agent(99, false);
  atomic_store(&g_fail, 0);
  atomic_store(&g_inits, 0);
  A[0] = (agent_args_t){.tag = 1, .fail_init = &g_fail, .inits = &g_inits};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  SPEC = (act_sup_spec_t){ACT_SUP_FLAGS_DEFAULT, K, 1};
  act_pid_t sup = start_sup(&SPEC);
  ag_monitor(W, sup);
  wait_init(1, 1);
  atomic_store(&g_fail, 1000);
  crash_tag(1); /* one restart allowed: it fails; the retry is the second */
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(atomic_load(&g_inits), 2);
}
END_TEST

/* ------------------------------------------------ child shutdown */

static void fn_parent_exit_as_message(void *a) {
  (void)a;
  act_parent_exit_as_message(true);
}
START_TEST(shutdown_then_kill_after_timeout) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1, .trap = true};
  K[0] = kid("stubborn", &A[0], ACT_PERMANENT, 200);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p = wait_init(1, 1);
  agent_run(p, fn_parent_exit_as_message, NULL); /* now it ignores `shutdown` */
  ag_monitor(W, p);
  int64_t t0 = now_ms();
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "stubborn"), ACT_OK);
  int64_t took = now_ms() - t0;
  ck_assert_int_ge(took, 180);
  ck_assert_int_eq(wait_down(W, p).kind, ACT_KILLED);
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(p, sup), &e)); /* it was asked first */
  ck_assert_int_eq(e.reason.kind, ACT_SHUTDOWN);
  act_child_info_t ci[2];
  ck_assert_int_eq(children(sup, ci, 2), 1); /* OTP: the spec stays, not running */
  ck_assert(ci[0].pid == ACT_NOPID);
  ck_assert_int_eq(n_inits(1), 1);
}
END_TEST

START_TEST(graceful_shutdown_of_children) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};                                  /* not trapping */
  A[1] = (agent_args_t){.tag = 2, .trap = true, .exit_on_exit = true}; /* cleans up, exits */
  K[0] = kid("plain", &A[0], ACT_PERMANENT, 5000);
  K[1] = kid("trapper", &A[1], ACT_PERMANENT, 5000);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 2};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p1 = wait_init(1, 1), p2 = wait_init(2, 1);
  ag_monitor(W, p1);
  ag_monitor(W, p2);
  int64_t t0 = now_ms();
  ck_assert_int_eq(act_supervisor_terminate_child(sup, p2, NULL), ACT_OK);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "plain"), ACT_OK);
  ck_assert_int_lt(now_ms() - t0, 3000);
  ck_assert_int_eq(wait_down(W, p1).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_down(W, p2).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_term(p2).kind, ACT_SHUTDOWN);
  /* kept, not running: terminating it again is ok; deleted, it is not_found */
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "plain"), ACT_OK);
  ck_assert_int_eq(act_supervisor_delete_child(sup, "plain"), ACT_OK);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "plain"), ACT_ENOPROC);
}
END_TEST

START_TEST(brutal_kill) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1, .trap = true};
  K[0] = kid("brutal", &A[0], ACT_PERMANENT, ACT_BRUTAL_KILL);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p = wait_init(1, 1);
  ag_monitor(W, p);
  int64_t t0 = now_ms();
  ck_assert_int_eq(act_supervisor_terminate_child(sup, p, NULL), ACT_OK);
  ck_assert_int_lt(now_ms() - t0, 2000);
  ck_assert_int_eq(wait_down(W, p).kind, ACT_KILLED);
  ck_assert_int_eq(log_count(q_exit(p, 0)), 0); /* never asked politely */
}
END_TEST

/* The supervisor stops a child by monitor and DOWN, not by its link: a child
 * that unlinked itself from the supervisor is still shut down properly. */
static void fn_unlink_parent(void *a) {
  (void)a;
  act_info_t i;
  if (act_info_of(act_self(), &i) == ACT_OK) act_unlink(i.parent);
}
START_TEST(shutdown_by_monitor_not_link) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};
  A[1] = (agent_args_t){.tag = 2, .trap = true, .exit_on_exit = true};
  K[0] = kid("unlinked", &A[0], ACT_PERMANENT, 4000);
  K[1] = kid("unlinked_trapper", &A[1], ACT_PERMANENT, 4000);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 2};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p1 = wait_init(1, 1), p2 = wait_init(2, 1);
  agent_run(p1, fn_unlink_parent, NULL);
  agent_run(p2, fn_unlink_parent, NULL);
  ag_monitor(W, p1);
  ag_monitor(W, p2);
  int64_t t0 = now_ms();
  ck_assert_int_eq(act_supervisor_terminate_child(sup, p1, NULL), ACT_OK);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, p2, NULL), ACT_OK);
  ck_assert_int_lt(now_ms() - t0, 3000); /* not the 4 s kill timeout */
  ck_assert_int_eq(wait_down(W, p1).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_down(W, p2).kind, ACT_SHUTDOWN);
  /* the same when the whole supervisor shuts down */
  A[2] = (agent_args_t){.tag = 3};
  act_child_spec_t k3 = kid("late", &A[2], ACT_PERMANENT, 4000);
  act_pid_t p3 = ACT_NOPID;
  ck_assert_int_eq(act_supervisor_start_child(sup, &k3, &p3), ACT_OK);
  wait_init(3, 1);
  agent_run(p3, fn_unlink_parent, NULL);
  ag_monitor(W, p3);
  ag_monitor(W, sup);
  t0 = now_ms();
  ck_assert_int_eq(act_exit(sup, act_reason(ACT_SHUTDOWN)), ACT_OK);
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_lt(now_ms() - t0, 3000);
  ck_assert_int_eq(wait_down(W, p3).kind, ACT_SHUTDOWN);
}
END_TEST

/* ------------------------------------------------ supervisor shutdown */

static act_child_spec_t KN[3];
static act_sup_spec_t NESTED;
START_TEST(shutdown_stops_children_in_reverse_order) {
  W = spawn_agent(99, false);
  for (int i = 0; i < 4; i++) {
    A[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i + 1);
    K[i] = kid(id, &A[i], ACT_PERMANENT, 1000);
  }
  /* c3 is itself a supervisor of n1, n2 */
  for (int i = 0; i < 2; i++) {
    A[4 + i] = (agent_args_t){.tag = 11 + i};
    char id[16];
    snprintf(id, sizeof id, "n%d", i + 1);
    KN[i] = kid(id, &A[4 + i], ACT_PERMANENT, 1000);
  }
  NESTED = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), KN, 2};
  K[2].behaviour = act_supervisor();
  K[2].args = (void *)&NESTED;
  K[2].type = ACT_SUPERVISOR;
  K[2].shutdown_ms = ACT_SHUTDOWN_INFINITY;
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 4};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t c1 = wait_init(1, 1), c2 = wait_init(2, 1), c4 = wait_init(4, 1);
  act_pid_t n1 = wait_init(11, 1), n2 = wait_init(12, 1);
  act_child_info_t ci[8];
  ck_assert_int_eq(children(sup, ci, 8), 4);
  ck_assert_int_eq(ci[2].type, ACT_SUPERVISOR);
  act_pid_t c3 = ci[2].pid;
  ag_monitor(W, sup);
  ag_monitor(W, c3);
  ck_assert_int_eq(act_exit(sup, act_reason(ACT_SHUTDOWN)), ACT_OK);
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_down(W, c3).kind, ACT_SHUTDOWN);
  act_pid_t order[] = {c4, n2, n1, c2, c1};
  for (int i = 0; i < 5; i++) ck_assert_int_eq(wait_term(order[i]).kind, ACT_SHUTDOWN);
  for (int i = 0; i + 1 < 5; i++)
    ck_assert_msg(term_seq(order[i]) < term_seq(order[i + 1]), "stop order wrong at %d", i);
  ck_assert_int_lt(term_seq(c1), log_first_seq(q_down(W, sup)));
  ck_assert_int_lt(log_first_seq(q_down(W, c3)), term_seq(c2));
  /* nothing restarted on the way down */
  for (int t = 1; t <= 4; t++)
    if (t != 3) ck_assert_int_eq(n_inits(t), 1);
  ck_assert_int_eq(n_inits(11), 1);
  ck_assert_uint_eq(act_list(NULL, 0), 1); /* only W is left */
}
END_TEST

/* A supervisor started by a parent actor (spawn_link) goes down with it. */
static act_sup_spec_t *g_spec_for_fn;
static void fn_start_linked_sup(void *a) {
  act_spawn_opts_t o = {.link = true, .scheduler = ACT_SCHED_NEXT};
  *(act_pid_t *)a = act_supervisor_start(g_spec_for_fn, &o, NULL);
}
START_TEST(supervisor_follows_its_parent) {
  W = spawn_agent(99, false);
  act_pid_t parent = spawn_agent(50, false);
  three_kids(FLAGS(ACT_ONE_FOR_ONE, 10, 5000), ACT_PERMANENT);
  g_spec_for_fn = &SPEC;
  act_pid_t sup = ACT_NOPID;
  agent_run(parent, fn_start_linked_sup, &sup);
  ck_assert(sup != ACT_NOPID);
  act_pid_t p1 = wait_init(1, 1), p3 = wait_init(3, 1);
  wait_init(2, 1);
  ag_monitor(W, sup);
  send_stop(parent, act_reason(ACT_SHUTDOWN));
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(wait_term(p1).kind, ACT_SHUTDOWN);
  ck_assert_int_lt(term_seq(p3), term_seq(p1));
}
END_TEST

/* ------------------------------------------------ dynamic children */

static atomic_int g_args_freed;
static void free_dyn_args(void *a) {
  atomic_fetch_add(&g_args_freed, 1);
  free(a);
}
static act_child_spec_t dyn_kid(const char *id, int tag) {
  agent_args_t *a = calloc(1, sizeof *a);
  a->tag = tag;
  act_child_spec_t c = kid(id, a, ACT_TRANSIENT, 1000);
  c.free_args = free_dyn_args;
  return c;
}

START_TEST(dynamic_children) {
  atomic_store(&g_args_freed, 0);
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};
  K[0] = kid("static", &A[0], ACT_PERMANENT, 1000);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  wait_init(1, 1);
  act_child_spec_t d1 = dyn_kid("d1", 21), d2 = dyn_kid("d2", 22), d3 = dyn_kid("d3", 23);
  act_pid_t p1 = 0, p2 = 0, p3 = 0, px = 0;
  ck_assert_int_eq(act_supervisor_start_child(sup, &d1, &p1), ACT_OK);
  ck_assert_int_eq(act_supervisor_start_child(sup, &d2, &p2), ACT_OK);
  ck_assert_int_eq(act_supervisor_start_child(sup, &d3, &p3), ACT_OK);
  ck_assert(p1 && p2 && p3);
  ck_assert(wait_init(21, 1) == p1);
  ck_assert(wait_init(22, 1) == p2);
  act_child_spec_t dup = kid("d1", &A[0], ACT_TRANSIENT, 1000);
  ck_assert_int_eq(act_supervisor_start_child(sup, &dup, &px), ACT_EEXIST);
  act_child_info_t ci[8];
  ck_assert_int_eq(children(sup, ci, 8), 4);
  ck_assert_str_eq(ci[0].id, "static");
  ck_assert_str_eq(ci[1].id, "d1");
  ck_assert_str_eq(ci[3].id, "d3");
  ck_assert(ci[2].pid == p2);
  ck_assert_int_eq(ci[2].restart, ACT_TRANSIENT);
  /* max smaller than the count: returns the count, fills max */
  memset(ci, 0, sizeof ci);
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 2), 4);
  ck_assert_str_eq(ci[1].id, "d1");
  ck_assert_str_eq(ci[2].id, "");
  /* a dynamic transient child that crashes is restarted */
  ag_monitor(W, p2);
  send_crash(p2);
  wait_down(W, p2);
  act_pid_t n2 = wait_init(22, 2);
  /* terminate by pid and by id */
  ag_monitor(W, p1);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, p1, NULL), ACT_OK);
  ck_assert_int_eq(wait_down(W, p1).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(atomic_load(&g_args_freed), 0); /* OTP: the spec is kept */
  ck_assert_int_eq(act_supervisor_delete_child(sup, "d1"), ACT_OK);
  ck_assert_int_eq(atomic_load(&g_args_freed), 1);
  ag_monitor(W, n2);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "d2"), ACT_OK);
  ck_assert_int_eq(wait_down(W, n2).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(act_supervisor_delete_child(sup, "d2"), ACT_OK);
  ck_assert_int_eq(atomic_load(&g_args_freed), 2);
  ck_assert_int_eq(children(sup, ci, 8), 2);
  ck_assert_str_eq(ci[1].id, "d3");
  ck_assert_int_lt(act_supervisor_terminate_child(sup, ACT_NOPID, "nope"), 0);
  ck_assert_int_lt(act_supervisor_terminate_child(sup, p1, NULL), 0);
  /* the id can be reused once removed */
  act_child_spec_t again = dyn_kid("d1", 24);
  ck_assert_int_eq(act_supervisor_start_child(sup, &again, &px), ACT_OK);
  wait_init(24, 1);
  /* supervisor shutdown stops and frees the rest (d1 again, d3, static) */
  ag_monitor(W, sup);
  act_exit(sup, act_reason(ACT_SHUTDOWN));
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_lt(term_seq(px), term_seq(p3));
  ck_assert_int_lt(term_seq(p3), term_seq(pid_of_tag(1)));
  ck_assert_int_eq(atomic_load(&g_args_freed), 4);
}
END_TEST

/* The async forms, from inside an actor. */
static void on_sup_reply(agent_t *ag, act_msg_t *m) {
  (void)ag;
  if (m->type != ACT_MSG_SUP_REPLY || m->size < sizeof(act_sup_reply_t)) return;
  act_sup_reply_t r;
  memcpy(&r, m->data, sizeof r);
  log_user(40, r.result);
  log_user(41, (int64_t)r.pid);
  log_user(42, (int64_t)m->ref);
}
typedef struct async_arg {
  act_pid_t sup;
  act_child_spec_t spec;
  act_pid_t pid;
  act_ref_t ref;
} async_arg_t;
static void fn_start_child_async(void *a) {
  async_arg_t *x = a;
  x->ref = act_supervisor_start_child_async(x->sup, &x->spec);
}
static void fn_terminate_child_async(void *a) {
  async_arg_t *x = a;
  x->ref = act_supervisor_terminate_child_async(x->sup, x->pid, NULL);
}
START_TEST(dynamic_children_async) {
  atomic_store(&g_args_freed, 0);
  agent_args_t wa = {.tag = 99, .on_msg = on_sup_reply};
  W = spawn_agent_ex(&wa, ACT_SCHED_NEXT);
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), NULL, 0};
  act_pid_t sup = start_sup(&SPEC);
  async_arg_t x = {.sup = sup, .spec = dyn_kid("a1", 31)};
  agent_run(W, fn_start_child_async, &x);
  ck_assert(x.ref != 0);
  ev_t e = {0};
  ck_assert(log_wait1(q_user(42), &e));
  ck_assert(e.val == (int64_t)x.ref);
  ck_assert(log_nth(q_user(40), 1, &e));
  ck_assert_int_eq(e.val, ACT_OK);
  ck_assert(log_nth(q_user(41), 1, &e));
  act_pid_t p = (act_pid_t)e.val;
  ck_assert(wait_init(31, 1) == p);
  ag_monitor(W, p);
  x.pid = p;
  agent_run(W, fn_terminate_child_async, &x);
  ck_assert(log_wait(q_user(42), 2, TMO, &e));
  ck_assert(e.val == (int64_t)x.ref);
  ck_assert(log_nth(q_user(40), 2, &e));
  ck_assert_int_eq(e.val, ACT_OK);
  ck_assert_int_eq(wait_down(W, p).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(atomic_load(&g_args_freed), 0); /* OTP: a1's spec is kept */
  ck_assert_int_eq(act_supervisor_delete_child(sup, "a1"), ACT_OK);
  ck_assert_int_eq(atomic_load(&g_args_freed), 1);
}
END_TEST

START_TEST(registered_child_name_follows_restarts) {
  W = spawn_agent(99, false);
  A[0] = (agent_args_t){.tag = 1};
  K[0] = kid("named", &A[0], ACT_PERMANENT, 1000);
  K[0].name = "the_named_one";
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 10, 5000), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  act_pid_t p = wait_init(1, 1);
  ck_assert(act_whereis("the_named_one") == p);
  crash_tag(1);
  act_pid_t n = wait_init(1, 2);
  ck_assert(act_whereis("the_named_one") == n);
  act_info_t i;
  ck_assert_int_eq(act_info_of(n, &i), ACT_OK);
  ck_assert_str_eq(i.name, "the_named_one");
  ag_monitor(W, sup);
  act_exit(sup, act_reason(ACT_SHUTDOWN));
  wait_down(W, sup);
  ck_assert(act_whereis("the_named_one") == ACT_NOPID);
}
END_TEST


/* A restart that fails synchronously (the child's registered name is taken)
 * is retried and counted: the supervisor gives up with `shutdown`. */
static act_pid_t g_thief;
static void on_crash_hand_name_over(agent_t *ag, act_msg_t *m) {
  (void)ag;
  if (m->type != AG_CRASH) return;
  act_unregister("contested");
  log_user(70, act_register("contested", g_thief));
}
START_TEST(restart_blocked_by_taken_name_escalates) {
  W = spawn_agent(99, false);
  g_thief = spawn_agent(98, false);
  A[0] = (agent_args_t){.tag = 1, .on_msg = on_crash_hand_name_over};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  K[0].name = "contested";
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 3, 5000), K, 1};
  act_pid_t sup = start_sup(&SPEC);
  ag_monitor(W, sup);
  act_pid_t p = wait_init(1, 1);
  ck_assert(act_whereis("contested") == p);
  send_crash(p);
  ev_t e = {0};
  ck_assert(log_wait1(q_user(70), &e));
  ck_assert_int_eq(e.val, ACT_OK);
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(n_inits(1), 1); /* no restart could start */
  ck_assert(act_whereis("contested") == g_thief);
}
END_TEST

/* A child start failing at the supervisor's own start fails the start
 * (proc_lib: act_supervisor_start returns the child's error); the children
 * already started are stopped with `shutdown`, in reverse, first. */
START_TEST(supervisor_start_failure_takes_started_children) {
  W = spawn_agent(99, false);
  act_pid_t squatter = spawn_agent(98, false);
  ck_assert_int_eq(act_register("taken", squatter), ACT_OK);
  A[0] = (agent_args_t){.tag = 1};
  A[1] = (agent_args_t){.tag = 2};
  K[0] = kid("c1", &A[0], ACT_PERMANENT, 1000);
  K[1] = kid("c2", &A[1], ACT_PERMANENT, 1000);
  K[1].name = "taken";
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ONE, 3, 5000), K, 2};
  int err = 0;
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
  ck_assert(act_supervisor_start(&SPEC, &o, &err) == ACT_NOPID);
  ck_assert_int_eq(err, ACT_EEXIST);
  /* c1 had started (init ran before c2 was tried) and was shut down */
  ck_assert_int_eq(n_inits(1), 1);
  ck_assert_int_eq(wait_term(pid_of_tag(1)).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(n_inits(2), 0);
  ck_assert(act_whereis("taken") == squatter);
  ck_assert_uint_eq(act_list(NULL, 0), 2); /* W and the squatter */
}
END_TEST

/* one_for_all: a temporary child's exit restarts nobody, and a transient's
 * normal exit neither. */
START_TEST(one_for_all_temporary_and_transient_exits_restart_nobody) {
  W = spawn_agent(99, false);
  act_restart_t types[3] = {ACT_PERMANENT, ACT_TEMPORARY, ACT_TRANSIENT};
  for (int i = 0; i < 3; i++) {
    A[i] = (agent_args_t){.tag = i + 1};
    char id[16];
    snprintf(id, sizeof id, "c%d", i + 1);
    K[i] = kid(id, &A[i], types[i], 1000);
  }
  SPEC = (act_sup_spec_t){FLAGS(ACT_ONE_FOR_ALL, 10, 5000), K, 3};
  act_pid_t sup = start_sup(&SPEC);
  for (int t = 1; t <= 3; t++) wait_init(t, 1);
  crash_tag(2);
  act_pid_t p3 = pid_of_tag(3);
  ag_monitor(W, p3);
  send_stop(p3, act_reason(ACT_NORMAL));
  wait_down(W, p3);
  act_child_info_t ci[4];
  ck_assert_int_eq(children(sup, ci, 4), 2); /* the temporary is gone */
  ck_assert(ci[0].pid == pid_of_tag(1));
  ck_assert(ci[1].pid == ACT_NOPID);
  ck_assert_int_eq(n_inits(1), 1);
  ck_assert_int_eq(log_count(q_term_tag(1)), 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("supervisor");
  TCase *tc = rt_tcase("strategies", 2, 60);
  tcase_add_test(tc, one_for_one_restarts_only_the_child);
  tcase_add_test(tc, one_for_all_restarts_all_stopping_in_reverse);
  tcase_add_test(tc, rest_for_one_restarts_the_rest);
  tcase_add_test(tc, restart_types);
  tcase_add_test(tc, one_for_all_temporary_and_transient_exits_restart_nobody);
  suite_add_tcase(s, tc);
  TCase *ti = rt_tcase("intensity", 2, 60);
  tcase_add_test(ti, default_intensity_second_restart_ends_supervisor);
  tcase_add_test(ti, intensity_zero_first_crash_ends_supervisor);
  tcase_add_test(ti, restarts_outside_the_period_are_forgotten);
  tcase_add_test(ti, failed_restart_attempts_count);
  tcase_add_test(ti, failed_restart_with_default_intensity);
  tcase_add_test(ti, restart_blocked_by_taken_name_escalates);
  tcase_add_test(ti, supervisor_start_failure_takes_started_children);
  suite_add_tcase(s, ti);
  TCase *ts = rt_tcase("shutdown", 2, 60);
  tcase_add_test(ts, shutdown_then_kill_after_timeout);
  tcase_add_test(ts, graceful_shutdown_of_children);
  tcase_add_test(ts, brutal_kill);
  tcase_add_test(ts, shutdown_by_monitor_not_link);
  tcase_add_test(ts, shutdown_stops_children_in_reverse_order);
  tcase_add_test(ts, supervisor_follows_its_parent);
  suite_add_tcase(s, ts);
  TCase *td = rt_tcase("dynamic", 2, 60);
  tcase_add_test(td, dynamic_children);
  tcase_add_test(td, dynamic_children_async);
  tcase_add_test(td, registered_child_name_follows_restarts);
  suite_add_tcase(s, td);
  return s;
}

RT_MAIN(suite)
