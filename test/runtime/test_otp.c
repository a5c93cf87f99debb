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
 *  - item 2: the noproc EXIT/DOWN of a link or monitor to a dead pid comes
 *    after that pid's earlier messages;
 *  - item 3: act_request monitors the callee: noproc at once, a crash's
 *    reason at once, even with ACT_INFINITY;
 *  - item 5: a dynamic transient child that exits normally stays listed;
 *    terminate_child keeps the spec (but a temporary or anonymous child's);
 *  - item 7: timers are cancelled and read by reference from any actor or
 *    thread, the time left comes from a fresh clock; start_timer (item 8);
 *  - item 8: restart_child, delete_child, count_children, get_childspec;
 *    monitor and send by registered name; process_info (links, monitors,
 *    trap_exit, supervisor, a supervisor's flags); per-scheduler counters;
 *  - issue 6: a supervisor of 3,000 dynamic children that all end forgets
 *    every one, whatever the order (its links and children are hash sets);
 *  - item 14: a name is registered only once its pid can receive: a thread
 *    that finds the name and sends at once never loses the message (a
 *    stress test: the window it closes was a few instructions wide);
 *
 * Children are agents (rt_test.h) that log init/terminate with their tag.
 */
#include "sup_test.h"

#include <sched.h>

static act_pid_t W; /* watcher agent */

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

/* ------------------------------------------------ terminate_child as OTP's */

/* supervisor:terminate_child(Sup, Id) stops the child and keeps its spec
 * (which_children lists it as undefined, restart_child starts it again),
 * except a temporary child's, which is deleted; an anonymous dynamic child
 * terminated by pid goes, as under simple_one_for_one.  Before, every
 * terminate_child deleted the spec. */
static atomic_int g_tc_freed;
static void tc_free_args(void *a) { atomic_fetch_add(&g_tc_freed, 1); free(a); }
START_TEST(terminate_child_keeps_the_spec_but_a_temporary_ones) {
  atomic_store(&g_tc_freed, 0);
  W = spawn_agent(99, false);
  static agent_args_t perm = {.tag = 1}, temp = {.tag = 2};
  act_child_spec_t k[2] = {kid("perm", &perm, ACT_PERMANENT, 1000),
                           kid("temp", &temp, ACT_TEMPORARY, 1000)};
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), k, 2};
  act_pid_t sup = start_sup(&spec);
  act_pid_t p = wait_init(1, 1);
  wait_init(2, 1);
  ag_monitor(W, p);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "perm"), ACT_OK);
  ck_assert_int_eq(wait_down(W, p).kind, ACT_SHUTDOWN);
  act_child_info_t ci[4];
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 2);
  ck_assert_str_eq(ci[0].id, "perm");
  ck_assert(ci[0].pid == ACT_NOPID); /* undefined */
  act_sup_counts_t c;
  ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
  ck_assert_int_eq(c.specs, 2);
  ck_assert_int_eq(c.active, 1);
  ck_assert_int_eq(log_count(q_init_tag(1)), 1); /* stopped, not restarted */
  act_pid_t again = ACT_NOPID;
  ck_assert_int_eq(act_supervisor_restart_child(sup, "perm", &again), ACT_OK);
  ck_assert(again != ACT_NOPID && again != p);
  ck_assert(wait_init(1, 2) == again);

  /* a temporary child's spec is deleted */
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "temp"), ACT_OK);
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 1);
  ck_assert_str_eq(ci[0].id, "perm");
  ck_assert_int_eq(act_supervisor_restart_child(sup, "temp", &again), ACT_ENOPROC);

  /* an anonymous dynamic child terminated by pid is removed, its args freed */
  agent_args_t *a = calloc(1, sizeof *a);
  a->tag = 3;
  act_child_spec_t anon = kid("", a, ACT_TRANSIENT, 1000);
  anon.free_args = tc_free_args;
  act_pid_t ap = ACT_NOPID;
  ck_assert_int_eq(act_supervisor_start_child(sup, &anon, &ap), ACT_OK);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ap, NULL), ACT_OK);
  ck_assert_int_eq(atomic_load(&g_tc_freed), 1);
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 1);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ap, NULL), ACT_ENOPROC);
}
END_TEST

/* ------------------------------------------------ item 2: per-pair order */

static act_pid_t g_x, g_w;
static void fn_send_to_w_and_stop(void *a) {
  (void)a;
  int64_t v = 555;
  act_send(g_w, 555, &v, sizeof v);
  act_stop(act_reason(ACT_NORMAL));
}
/* Inside W: have X send us 555 and die, wait (blocking this handler, so
 * 555 stays in our inbox) until X is gone, then link and monitor it. */
static void fn_order(void *a) {
  (void)a;
  ag_cmd_t c = {fn_send_to_w_and_stop, NULL, 0};
  act_send(g_x, AG_RUN, &c, sizeof c);
  int64_t dl = now_ms() + TMO;
  while (is_alive(g_x) && now_ms() < dl) sleep_ms(1);
  act_link(g_x);
  act_monitor(g_x);
}
START_TEST(noproc_comes_after_earlier_messages) {
  g_w = spawn_agent_on(1, true, 0); /* traps: the noproc EXIT is a message */
  g_x = spawn_agent_on(2, false, 1);
  agent_run(g_w, fn_order, NULL);
  ck_assert(log_wait1(q_down(g_w, g_x), NULL));
  ck_assert(log_wait1(q_exit(g_w, g_x), NULL));
  int64_t msg = log_first_seq(q_msg(g_w, 555));
  ck_assert_int_ge(msg, 0);
  ck_assert_int_lt(msg, log_first_seq(q_exit(g_w, g_x)));
  ck_assert_int_lt(msg, log_first_seq(q_down(g_w, g_x)));
  ev_t e = {0};
  ck_assert(log_nth(q_down(g_w, g_x), 1, &e));
  ck_assert_int_eq(e.reason.kind, ACT_NOPROC);
}
END_TEST

/* ------------------------------------------------ item 3: calls monitor */

static char g_fail_text[ACT_REASON_TEXT];
static void on_request_failed(agent_t *ag, act_msg_t *m) {
  (void)ag;
  if (m->type != ACT_MSG_TIMEOUT) return;
  act_down_msg_t d;
  if (m->size != sizeof d) {
    log_user(80, -1); /* a plain timeout */
    return;
  }
  memcpy(&d, m->data, sizeof d);
  snprintf(g_fail_text, sizeof g_fail_text, "%s", d.reason.text);
  log_user(80, d.reason.kind);
}
static act_pid_t g_callee;
static act_ref_t g_req;
static void fn_request_infinity(void *a) {
  int *type = a;
  g_req = act_request(g_callee, *type, NULL, 0, ACT_INFINITY);
}
START_TEST(request_to_dead_or_dying_callee_fails_at_once) {
  agent_args_t wa = {.tag = 1, .on_msg = on_request_failed};
  act_pid_t w = spawn_agent_ex(&wa, ACT_SCHED_NEXT);
  /* dead */
  g_callee = spawn_agent(2, false);
  act_exit(g_callee, act_reason(ACT_KILL));
  await_exit(g_callee);
  int type = AG_PING;
  agent_run(w, fn_request_infinity, &type);
  ev_t e = {0};
  ck_assert(log_wait1(q_user(80), &e)); /* with ACT_INFINITY this waited for ever */
  ck_assert_int_eq(e.val, ACT_NOPROC);
  ck_assert(log_nth(q_msg(w, ACT_MSG_TIMEOUT), 1, &e));
  ck_assert(e.ref == g_req);
  /* crashes on the request */
  g_callee = spawn_agent(3, false);
  type = AG_CRASH;
  agent_run(w, fn_request_infinity, &type);
  ck_assert(log_wait(q_user(80), 2, TMO, &e));
  ck_assert_int_eq(e.val, ACT_ERROR);
  ck_assert_str_eq(g_fail_text, "crash 3");
  /* ACT_NOPID (an act_whereis that found nobody) */
  g_callee = ACT_NOPID;
  type = AG_PING;
  agent_run(w, fn_request_infinity, &type);
  ck_assert(log_wait(q_user(80), 3, TMO, &e));
  ck_assert_int_eq(e.val, ACT_NOPROC);
  ck_assert(ag_alive(w));
}
END_TEST

/* ------------------------------------------------ item 5: transient kept */

START_TEST(dynamic_transient_child_stays_listed_after_normal_exit) {
  W = spawn_agent(99, false);
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), NULL, 0};
  act_pid_t sup = start_sup(&spec);
  static agent_args_t a1 = {.tag = 1}, a2 = {.tag = 2};
  act_child_spec_t k = kid("t", &a1, ACT_TRANSIENT, 1000);
  act_pid_t p = 0;
  ck_assert_int_eq(act_supervisor_start_child(sup, &k, &p), ACT_OK);
  ag_monitor(W, p);
  send_stop(p, act_reason(ACT_NORMAL));
  wait_down(W, p);
  act_child_info_t ci[4];
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 1);
  ck_assert_str_eq(ci[0].id, "t");
  ck_assert(ci[0].pid == ACT_NOPID);
  ck_assert_int_eq(act_supervisor_start_child(sup, &k, &p), ACT_EEXIST); /* already_present */
  ck_assert_int_eq(log_count(q_init_tag(1)), 1);
  /* an anonymous one (no id: nobody could name it again) goes */
  act_child_spec_t anon = kid("", &a2, ACT_TRANSIENT, 1000);
  ck_assert_int_eq(act_supervisor_start_child(sup, &anon, &p), ACT_OK);
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 2);
  ag_monitor(W, p);
  send_stop(p, act_reason(ACT_NORMAL));
  wait_down(W, p);
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 1);
}
END_TEST

/* ------------------------------------------------ item 7: timers */

typedef struct tmr {
  uint64_t ms;
  act_pid_t to;
  int type;
  act_ref_t ref;
  int64_t left;
  int busy_ms; /* fn_set_busy_cancel: block this long before cancelling */
} tmr_t;
static void fn_set(void *a) {
  tmr_t *t = a;
  t->ref = act_send_after(t->ms, t->to, t->type, NULL, 0);
}
static void fn_cancel(void *a) {
  tmr_t *t = a;
  t->left = act_cancel_timer(t->ref);
}
static void fn_set_busy_cancel(void *a) {
  tmr_t *t = a;
  t->ref = act_send_after(t->ms, t->to, t->type, NULL, 0);
  sleep_ms(t->busy_ms); /* the loop does not poll meanwhile: its clock is stale */
  t->left = act_cancel_timer(t->ref);
}
START_TEST(timers_cancelled_by_reference_from_anywhere) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent_on(1, false, 0), b = spawn_agent_on(2, false, 1);
  /* set by a, cancelled by b (another actor, another thread) */
  tmr_t t1 = {.ms = 300, .to = W, .type = 901};
  agent_run(a, fn_set, &t1);
  ck_assert(t1.ref != 0);
  ck_assert_int_ge(act_read_timer(t1.ref), 0);
  agent_run(b, fn_cancel, &t1);
  ck_assert_int_ge(t1.left, 0);
  ck_assert_int_le(t1.left, 300);
  ck_assert_int_eq(act_read_timer(t1.ref), -1);
  /* set by a, cancelled from this thread (outside actors: no abort) */
  tmr_t t2 = {.ms = 300, .to = W, .type = 902};
  agent_run(a, fn_set, &t2);
  int64_t left = act_cancel_timer(t2.ref);
  ck_assert_int_ge(left, 0);
  ck_assert_int_le(left, 300);
  ck_assert_int_eq(act_cancel_timer(t2.ref), -1); /* once */
  /* a control set later on the same loop: once it came, the two are moot */
  tmr_t c = {.ms = 400, .to = W, .type = 903};
  agent_run(a, fn_set, &c);
  ck_assert(log_wait1(q_msg(W, 903), NULL));
  ck_assert_int_eq(log_count(q_msg(W, 901)), 0);
  ck_assert_int_eq(log_count(q_msg(W, 902)), 0);
  ck_assert_int_eq(act_cancel_timer(c.ref), -1); /* fired */
  ck_assert_int_eq(act_cancel_timer(0), -1);
}
END_TEST

START_TEST(time_left_from_a_fresh_clock) {
  act_pid_t a = spawn_agent_on(1, false, 0);
  tmr_t t = {.ms = 10000, .to = a, .type = 904, .busy_ms = 300};
  agent_run(a, fn_set_busy_cancel, &t);
  ck_assert_int_ge(t.left, 0);
  /* the stale loop clock answered 10000 after 300 ms */
  ck_assert_msg(t.left <= 10000 - 250, "left %lld", (long long)t.left);
}
END_TEST

static void fn_start_timer(void *a) {
  tmr_t *t = a;
  t->ref = act_start_timer(t->ms, t->to, t->type, NULL, 0);
}
START_TEST(start_timer_carries_its_reference) {
  W = spawn_agent(99, false);
  tmr_t t = {.ms = 20, .to = W, .type = 905};
  agent_run(W, fn_start_timer, &t);
  ck_assert(t.ref != 0);
  ev_t e = {0};
  ck_assert(log_wait1(q_msg(W, 905), &e));
  ck_assert(e.ref == t.ref);
  ck_assert_int_eq(act_read_timer(t.ref), -1);
  /* off scheduler threads there is no loop to set one on: 0, no abort */
  ck_assert(act_send_after(10, W, 906, NULL, 0) == 0);
}
END_TEST

/* ------------------------------------------------ item 8: the child API */

START_TEST(restart_delete_count_and_get_childspec) {
  W = spawn_agent(99, false);
  static agent_args_t a1 = {.tag = 1}, a2 = {.tag = 2};
  act_child_spec_t ks[2] = {kid("perm", &a1, ACT_PERMANENT, 1000),
                            kid("trans", &a2, ACT_TRANSIENT, 1000)};
  ks[1].name = "the_transient";
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), ks, 2};
  act_pid_t sup = start_sup(&spec);
  act_sup_counts_t c;
  ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
  ck_assert_int_eq(c.specs, 2);
  ck_assert_int_eq(c.active, 2);
  ck_assert_int_eq(c.workers, 2);
  ck_assert_int_eq(c.supervisors, 0);
  /* get_childspec */
  act_child_spec_t got;
  char name[ACT_NAME_MAX];
  ck_assert_int_eq(act_supervisor_get_childspec(sup, "trans", &got, name), ACT_OK);
  ck_assert_str_eq(got.id, "trans");
  ck_assert_int_eq(got.restart, ACT_TRANSIENT);
  ck_assert(got.behaviour == &agent_behaviour && got.args == &a2);
  ck_assert(got.name == name);
  ck_assert_str_eq(name, "the_transient");
  ck_assert_int_eq(act_supervisor_get_childspec(sup, "nope", &got, name), ACT_ENOPROC);
  /* restart_child / delete_child of a running child: running */
  act_pid_t p = 0;
  ck_assert_int_eq(act_supervisor_restart_child(sup, "trans", &p), ACT_ERUNNING);
  ck_assert_int_eq(act_supervisor_delete_child(sup, "trans"), ACT_ERUNNING);
  ck_assert_int_eq(act_supervisor_restart_child(sup, "nope", &p), ACT_ENOPROC);
  ck_assert_int_eq(act_supervisor_delete_child(sup, "nope"), ACT_ENOPROC);
  /* the transient ends normally: listed, not running; restart_child starts it */
  act_pid_t t = act_whereis("the_transient");
  ag_monitor(W, t);
  send_stop(t, act_reason(ACT_NORMAL));
  wait_down(W, t);
  ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
  ck_assert_int_eq(c.specs, 2);
  ck_assert_int_eq(c.active, 1);
  ck_assert_int_eq(act_supervisor_restart_child(sup, "trans", &p), ACT_OK);
  ck_assert(p != ACT_NOPID && p != t);
  ck_assert(act_whereis("the_transient") == p);
  ck_assert_int_eq(log_count(q_init_tag(2)), 2); /* init ran before the answer */
  act_child_info_t ci[4];
  ck_assert_int_eq(act_supervisor_which_children(sup, ci, 4), 2);
  ck_assert_str_eq(ci[1].id, "trans"); /* start order kept */
  /* stop it again and delete it */
  ag_monitor(W, p);
  send_stop(p, act_reason(ACT_NORMAL));
  wait_down(W, p);
  ck_assert_int_eq(act_supervisor_delete_child(sup, "trans"), ACT_OK);
  ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
  ck_assert_int_eq(c.specs, 1);
  ck_assert_int_eq(act_supervisor_restart_child(sup, "trans", &p), ACT_ENOPROC);
  /* count_children of a dead pid: noproc at once */
  ck_assert_int_eq(act_supervisor_count_children(t, &c), ACT_ENOPROC);
}
END_TEST

/* ------------------------------------------------ issue 6: many children */

START_TEST(many_dynamic_children_all_forgotten) {
  W = spawn_agent(99, false);
  act_sup_spec_t spec = {FLAGS(ACT_ONE_FOR_ONE, 10, 5000), NULL, 0};
  act_pid_t sup = start_sup(&spec);
  enum { N = 3000 };
  static act_pid_t pids[N];
  static agent_args_t a = {.tag = 5};
  act_child_spec_t k = kid("", &a, ACT_TRANSIENT, 1000);
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(act_supervisor_start_child(sup, &k, &pids[i]), ACT_OK);
  act_sup_counts_t c;
  ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
  ck_assert_int_eq(c.active, N);
  /* end them in a scrambled order: every removal finds its child */
  for (int i = 0; i < N; i++) act_exit(pids[(i * 7919) % N], act_reason(ACT_SHUTDOWN));
  int64_t dl = now_ms() + TMO;
  do {
    ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
  } while (c.specs > 0 && now_ms() < dl && (sleep_ms(5), true));
  ck_assert_int_eq(c.specs, 0);
  ck_assert_int_eq(log_count(q_init_tag(5)), N); /* none restarted */
  /* the supervisor's own link set is empty again: its exit kills nobody */
  act_pid_t q = spawn_agent(6, false);
  ck_assert(ag_alive(q));
  ag_monitor(W, sup);
  act_exit(sup, act_reason(ACT_SHUTDOWN));
  ck_assert_int_eq(wait_down(W, sup).kind, ACT_SHUTDOWN);
  ck_assert(ag_alive(q));
}
END_TEST

/* ------------------------------------------------ item 8: names, process_info */

static act_ref_t g_name_ref;
static void fn_monitor_name(void *a) { g_name_ref = act_monitor_name((const char *)a); }
START_TEST(monitor_and_send_by_name) {
  W = spawn_agent(99, false);
  act_pid_t t = spawn_agent(2, false);
  ck_assert_int_eq(act_register("target", t), ACT_OK);
  int64_t v = 42;
  ck_assert_int_eq(act_send_name("target", 908, &v, sizeof v), ACT_OK);
  ck_assert(log_wait1(q_msg(t, 908), NULL));
  ck_assert_int_eq(act_send_name("nobody", 908, &v, sizeof v), ACT_ENOPROC);
  agent_run(W, fn_monitor_name, "target");
  send_crash(t);
  ev_t e = {0};
  ck_assert(log_wait1(q_down(W, t), &e));
  ck_assert(e.mref == g_name_ref);
  ck_assert_int_eq(e.reason.kind, ACT_ERROR);
  /* nobody holds it now: DOWN noproc at once */
  agent_run(W, fn_monitor_name, "target");
  evq_t q = {.kind = EV_MSG, .self = W, .has_type = true, .type = ACT_MSG_DOWN, .ref = g_name_ref};
  ck_assert(log_wait1(q, &e));
  ck_assert_int_eq(e.reason.kind, ACT_NOPROC);
}
END_TEST

static void fn_link_monitor(void *a) {
  act_pid_t *x = a;
  act_link(x[0]);
  act_monitor(x[1]);
}
START_TEST(process_info_links_monitors_trap_exit_supervisor) {
  act_pid_t a = spawn_agent(1, true), b = spawn_agent(2, false), c = spawn_agent(3, false);
  act_pid_t x[2] = {b, c};
  agent_run(a, fn_link_monitor, x);
  act_process_info_t pi;
  ck_assert_int_eq(act_process_info(a, &pi, TMO), ACT_OK);
  ck_assert(pi.info.pid == a);
  ck_assert_str_eq(pi.info.behaviour, "agent");
  ck_assert(pi.trap_exit);
  ck_assert_uint_eq(pi.nlinks, 1);
  ck_assert(pi.links[0] == b);
  ck_assert_uint_eq(pi.nmonitors, 1);
  ck_assert(pi.monitors[0] == c);
  ck_assert(!pi.is_supervisor);
  ck_assert_int_eq(act_process_info(c, &pi, TMO), ACT_OK);
  ck_assert(!pi.trap_exit);
  /* a, and the blocking call's own monitor of the callee (act_call's) */
  ck_assert_uint_eq(pi.nmonitored_by, 2);
  ck_assert(pi.monitored_by[0] == a || pi.monitored_by[1] == a);
  /* a supervisor: its flags, and its child names it as supervisor */
  static agent_args_t ka = {.tag = 4};
  act_child_spec_t k = kid("k", &ka, ACT_PERMANENT, 1000);
  act_sup_spec_t spec = {FLAGS(ACT_REST_FOR_ONE, 7, 3000), &k, 1};
  act_pid_t sup = start_sup(&spec);
  ck_assert_int_eq(act_process_info(sup, &pi, TMO), ACT_OK);
  ck_assert(pi.is_supervisor);
  ck_assert_int_eq(pi.sup_flags.strategy, ACT_REST_FOR_ONE);
  ck_assert_int_eq(pi.sup_flags.intensity, 7);
  ck_assert_int_eq(pi.sup_flags.period_ms, 3000);
  ck_assert(pi.trap_exit);
  act_pid_t kp = pid_of_tag(4);
  ck_assert_uint_eq(pi.nlinks, 1);
  ck_assert(pi.links[0] == kp);
  ck_assert_int_eq(act_process_info(kp, &pi, TMO), ACT_OK);
  ck_assert(pi.supervisor == sup);
  /* dead: noproc */
  act_exit(b, act_reason(ACT_KILL));
  await_exit(b);
  ck_assert_int_eq(act_process_info(b, &pi, TMO), ACT_ENOPROC);
}
END_TEST

START_TEST(scheduler_counters) {
  act_sched_info_t si0, si1;
  ck_assert_int_eq(act_scheduler_info(0, &si0), ACT_OK);
  ck_assert_int_eq(act_scheduler_info(2, &si1), ACT_EINVAL);
  ck_assert_int_eq(act_scheduler_info(-1, &si1), ACT_EINVAL);
  act_pid_t a = spawn_agent_on(1, false, 0);
  for (int i = 0; i < 50; i++) ck_assert(ag_alive(a));
  /* published when the scheduler next polls or sleeps: soon after */
  int64_t dl = now_ms() + TMO;
  do ck_assert_int_eq(act_scheduler_info(0, &si1), ACT_OK);
  while (si1.turns < si0.turns + 50 && now_ms() < dl && (sleep_ms(1), true));
  ck_assert_int_eq(si1.id, 0);
  ck_assert_uint_ge(si1.turns, si0.turns + 50); /* one turn per ping at least */
  ck_assert_int_ge(si1.run_queue, 0);
  ck_assert_uint_ge(si1.idle_ms, si0.idle_ms); /* a running total */
}
END_TEST

/* ------------------------------------------------ item 14: publication */

static _Atomic act_pid_t g_seen;
static atomic_bool g_pub_stop;
static void *name_sender(void *a) {
  (void)a;
  act_pid_t last = ACT_NOPID;
  while (!atomic_load(&g_pub_stop)) {
    act_pid_t p = act_whereis("pub");
    if (p && p != last) {
      int64_t v = (int64_t)p;
      act_send(p, 907, &v, sizeof v);
      atomic_store(&g_seen, p);
      last = p;
    }
  }
  return NULL;
}
START_TEST(name_found_means_sendable) {
  pthread_t th;
  atomic_store(&g_pub_stop, false);
  atomic_store(&g_seen, ACT_NOPID);
  pthread_create(&th, NULL, name_sender, NULL);
  static agent_args_t a = {.tag = 3};
  for (int i = 0; i < 200; i++) {
    act_spawn_opts_t o = {.name = "pub", .scheduler = ACT_SCHED_NEXT};
    int err = 0;
    act_pid_t p = act_spawn(&agent_behaviour, &a, &o, &err);
    ck_assert_msg(p != ACT_NOPID, "spawn: %d", err);
    int64_t dl = now_ms() + TMO;
    while (atomic_load(&g_seen) != p && now_ms() < dl) sched_yield();
    ck_assert(atomic_load(&g_seen) == p);
    evq_t q = {.kind = EV_MSG, .self = p, .has_type = true, .type = 907};
    ck_assert_msg(log_wait(q, 1, TMO, NULL), "the send to a found name was lost (round %d)", i);
    act_exit(p, act_reason(ACT_KILL));
    await_exit(p);
  }
  atomic_store(&g_pub_stop, true);
  pthread_join(th, NULL);
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
  tcase_add_test(tc, noproc_comes_after_earlier_messages);
  tcase_add_test(tc, request_to_dead_or_dying_callee_fails_at_once);
  tcase_add_test(tc, dynamic_transient_child_stays_listed_after_normal_exit);
  tcase_add_test(tc, timers_cancelled_by_reference_from_anywhere);
  tcase_add_test(tc, time_left_from_a_fresh_clock);
  tcase_add_test(tc, start_timer_carries_its_reference);
  tcase_add_test(tc, name_found_means_sendable);
  tcase_add_test(tc, restart_delete_count_and_get_childspec);
  tcase_add_test(tc, many_dynamic_children_all_forgotten);
  tcase_add_test(tc, monitor_and_send_by_name);
  tcase_add_test(tc, process_info_links_monitors_trap_exit_supervisor);
  tcase_add_test(tc, scheduler_counters);
  tcase_add_test(tc, terminate_child_keeps_the_spec_but_a_temporary_ones);
  suite_add_tcase(s, tc);
  return s;
}

RT_MAIN(suite)
