/*
 * test_links.c -- exit signals, links, trap_exit and monitors, to OTP's
 * rules: a linked non-trapping actor dies with the same reason unless it is
 * `normal`; a trapping one gets EXIT; exit(Pid, kill) arrives as `killed` and
 * is untrappable while a `kill` reason propagated through a link is
 * trappable; exit/2 with other reasons; link to a dead pid gives `noproc`;
 * unlink stops propagation; monitors deliver DOWN with the reason, `noproc`
 * for a dead pid, demonitor (with flush); EXIT/DOWN are sent after the dead
 * actor's registered name is released; per-pair ordering of a message and
 * the sender's EXIT.
 */
#include "rt_test.h"

static act_pid_t W; /* the watcher: monitors everyone, never dies */

static void watch(act_pid_t p) { ag_monitor(W, p); }

/* ------------------------------------------------ links */

START_TEST(link_crash_propagates_same_reason) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  watch(a);
  watch(b);
  ck_assert_int_eq(ag_link(a, b), ACT_OK);
  send_crash(b);
  act_reason_t rb = wait_down(W, b), ra = wait_down(W, a);
  ck_assert_int_eq(rb.kind, ACT_ERROR);
  ck_assert_str_eq(rb.text, "crash 2");
  ck_assert_int_eq(ra.kind, ACT_ERROR);
  ck_assert_str_eq(ra.text, "crash 2");
  /* terminate saw the same reason */
  ck_assert_str_eq(wait_term(a).text, "crash 2");
  ck_assert(is_alive(W));
}
END_TEST

START_TEST(link_is_bidirectional_and_chains) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false), c = spawn_agent(3, false);
  watch(a);
  watch(b);
  watch(c);
  ck_assert_int_eq(ag_link(a, b), ACT_OK); /* a - b - c */
  ck_assert_int_eq(ag_link(c, b), ACT_OK);
  send_crash(a); /* the linker dies: the linked one follows, and its links */
  ck_assert_str_eq(wait_down(W, a).text, "crash 1");
  ck_assert_str_eq(wait_down(W, b).text, "crash 1");
  ck_assert_str_eq(wait_down(W, c).text, "crash 1");
}
END_TEST

START_TEST(link_normal_not_propagated) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  watch(b);
  ck_assert_int_eq(ag_link(a, b), ACT_OK);
  send_stop(b, act_reason(ACT_NORMAL));
  ck_assert_int_eq(wait_down(W, b).kind, ACT_NORMAL);
  ck_assert(ag_alive(a));
  ck_assert_int_eq(log_count(q_term(a)), 0);
}
END_TEST

START_TEST(link_shutdown_propagates) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  watch(a);
  ck_assert_int_eq(ag_link(a, b), ACT_OK);
  send_stop(b, act_reason(ACT_SHUTDOWN));
  ck_assert_int_eq(wait_down(W, a).kind, ACT_SHUTDOWN);
}
END_TEST

START_TEST(trapping_gets_exit_message) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, true), b = spawn_agent(2, false), c = spawn_agent(3, false);
  ck_assert_int_eq(ag_link(a, b), ACT_OK);
  ck_assert_int_eq(ag_link(a, c), ACT_OK);
  send_crash(b);
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(a, b), &e));
  ck_assert_int_eq(e.reason.kind, ACT_ERROR);
  ck_assert_str_eq(e.reason.text, "crash 2");
  /* a trapping actor also gets EXIT for a normal exit */
  send_stop(c, act_reason(ACT_NORMAL));
  ck_assert(log_wait1(q_exit(a, c), &e));
  ck_assert_int_eq(e.reason.kind, ACT_NORMAL);
  ck_assert(ag_alive(a));
  ck_assert_int_eq(log_count(q_term(a)), 0);
}
END_TEST

START_TEST(trap_exit_returns_previous) {
  act_pid_t a = spawn_agent(1, false);
  pidref_t x = {.flag = true};
  agent_run(a, fn_trap, &x);
  ck_assert(!x.flag);
  x.flag = false;
  agent_run(a, fn_trap, &x);
  ck_assert(x.flag);
}
END_TEST

/* exit(Pid, kill): `killed`, even for a trapping target; its links see
 * `killed`. */
START_TEST(exit_kill_is_untrappable_and_seen_as_killed) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, true);  /* traps: must die anyway */
  act_pid_t t = spawn_agent(2, true);  /* linked, trapping */
  act_pid_t n = spawn_agent(3, false); /* linked, not trapping */
  watch(a);
  watch(n);
  ck_assert_int_eq(ag_link(a, t), ACT_OK);
  ck_assert_int_eq(ag_link(a, n), ACT_OK);
  ck_assert_int_eq(ag_exit(W, a, act_reason(ACT_KILL)), ACT_OK);
  ck_assert_int_eq(wait_down(W, a).kind, ACT_KILLED);
  ck_assert_int_eq(log_count(q_exit(a, 0)), 0); /* never saw it as a message */
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(t, a), &e));
  ck_assert_int_eq(e.reason.kind, ACT_KILLED);
  ck_assert_int_eq(wait_down(W, n).kind, ACT_KILLED);
  ck_assert(ag_alive(t));
}
END_TEST

/* An actor that exits with reason `kill` (exit/1): over links that is an
 * ordinary reason, trappable; a non-trapping linked actor dies with `kill`. */
START_TEST(kill_reason_through_link_is_trappable) {
  W = spawn_agent(99, false);
  act_pid_t b = spawn_agent(1, false);
  act_pid_t t = spawn_agent(2, true);
  act_pid_t n = spawn_agent(3, false);
  watch(b);
  watch(n);
  ck_assert_int_eq(ag_link(t, b), ACT_OK);
  ck_assert_int_eq(ag_link(n, b), ACT_OK);
  send_stop(b, act_reason(ACT_KILL));
  ck_assert_int_eq(wait_down(W, b).kind, ACT_KILL);
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(t, b), &e));
  ck_assert_int_eq(e.reason.kind, ACT_KILL);
  ck_assert(ag_alive(t));
  act_reason_t rn = wait_down(W, n);
  ck_assert_msg(rn.kind == ACT_KILL, "non-trapping linked actor died with %d (%s), OTP: kill",
                rn.kind, rn.text);
}
END_TEST

START_TEST(exit2_other_reasons) {
  W = spawn_agent(99, false);
  act_pid_t n = spawn_agent(1, false), t = spawn_agent(2, true), m = spawn_agent(3, false);
  watch(n);
  watch(m);
  /* normal to a non-trapping other: ignored */
  ck_assert_int_eq(ag_exit(W, n, act_reason(ACT_NORMAL)), ACT_OK);
  ck_assert(ag_alive(n));
  /* normal to a trapping one: an EXIT message from the sender */
  ck_assert_int_eq(ag_exit(W, t, act_reason(ACT_NORMAL)), ACT_OK);
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(t, W), &e));
  ck_assert_int_eq(e.reason.kind, ACT_NORMAL);
  /* an error to a trapping one: EXIT message */
  ck_assert_int_eq(ag_exit(W, t, act_reason_error("oops")), ACT_OK);
  ck_assert(log_wait(q_exit(t, W), 2, TMO, &e));
  ck_assert_int_eq(e.reason.kind, ACT_ERROR);
  ck_assert_str_eq(e.reason.text, "oops");
  ck_assert(ag_alive(t));
  /* shutdown to a non-trapping one: it dies with shutdown (no link needed) */
  ck_assert_int_eq(ag_exit(W, n, act_reason(ACT_SHUTDOWN)), ACT_OK);
  ck_assert_int_eq(wait_down(W, n).kind, ACT_SHUTDOWN);
  /* exit(self(), normal) ends a non-trapping caller with normal */
  ck_assert_int_eq(ag_exit(m, m, act_reason(ACT_NORMAL)), ACT_OK);
  ck_assert_int_eq(wait_down(W, m).kind, ACT_NORMAL);
  /* from outside actors too */
  act_pid_t o = spawn_agent(4, false);
  watch(o);
  ck_assert_int_eq(act_exit(o, act_reason_error("outside")), ACT_OK);
  ck_assert_str_eq(wait_down(W, o).text, "outside");
  ck_assert(is_alive(W));
}
END_TEST

START_TEST(link_to_dead_pid_noproc) {
  W = spawn_agent(99, false);
  act_pid_t d = spawn_agent(1, false);
  watch(d);
  send_crash(d);
  wait_down(W, d);
  act_pid_t t = spawn_agent(2, true), n = spawn_agent(3, false);
  watch(n);
  int rc = ag_link(t, d);
  ck_assert(rc == ACT_OK || rc == ACT_ENOPROC);
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(t, d), &e));
  ck_assert_int_eq(e.reason.kind, ACT_NOPROC);
  ck_assert(ag_alive(t));
  /* not trapping: the noproc exit signal ends the caller */
  pidref_t x = {.pid = d};
  agent_post(n, fn_link, &x);
  ck_assert_int_eq(wait_down(W, n).kind, ACT_NOPROC);
}
END_TEST

START_TEST(unlink_stops_propagation) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false), c = spawn_agent(3, false);
  watch(b);
  watch(c);
  ck_assert_int_eq(ag_link(a, b), ACT_OK);
  ck_assert_int_eq(ag_link(a, b), ACT_OK); /* links are a set: once is enough */
  ck_assert_int_eq(ag_unlink(a, b), ACT_OK);
  send_crash(b);
  ck_assert_int_eq(wait_down(W, b).kind, ACT_ERROR);
  ck_assert(ag_alive(a));
  /* unlinking from the other side removes the link both ways */
  ck_assert_int_eq(ag_link(a, c), ACT_OK);
  ck_assert_int_eq(ag_unlink(c, a), ACT_OK);
  watch(a);
  send_crash(a);
  wait_down(W, a);
  ck_assert(ag_alive(c));
  ck_assert_int_eq(log_count(q_term(c)), 0);
}
END_TEST

/* A message sent before an exit arrives before the EXIT (per-pair order). */
static act_pid_t g_to;
static void fn_send_then_crash(void *a) {
  (void)a;
  int64_t v = 123;
  act_send(g_to, AG_PING, &v, sizeof v);
  act_crash("after send");
}
START_TEST(message_before_exit_signal) {
  act_pid_t t = spawn_agent(1, true), b = spawn_agent(2, false);
  ck_assert_int_eq(ag_link(t, b), ACT_OK);
  g_to = t;
  agent_post(b, fn_send_then_crash, NULL);
  ev_t e = {0};
  ck_assert(log_wait1(q_exit(t, b), &e));
  ck_assert_str_eq(e.reason.text, "after send");
  evq_t qp = q_msg(t, AG_PING);
  qp.has_val = true;
  qp.val = 123;
  int64_t sp = log_first_seq(qp);
  ck_assert_int_ge(sp, 0);
  ck_assert_int_lt(sp, (int64_t)e.seq);
}
END_TEST

/* spawn_link / spawn_monitor from inside an actor */
typedef struct spawned {
  act_pid_t pid;
  act_ref_t ref;
  agent_args_t args;
} spawned_t;
static void fn_spawn_link(void *a) {
  spawned_t *s = a;
  s->pid = act_spawn_link(&agent_behaviour, &s->args);
}
static void fn_spawn_monitor(void *a) {
  spawned_t *s = a;
  s->pid = act_spawn_monitor(&agent_behaviour, &s->args, &s->ref);
}
static void fn_spawn_opts(void *a) {
  spawned_t *s = a;
  act_spawn_opts_t o = {.link = true, .monitor = true, .monitor_ref = &s->ref,
                        .scheduler = ACT_SCHED_CALLER};
  s->pid = act_spawn(&agent_behaviour, &s->args, &o, NULL);
}
START_TEST(spawn_link_and_monitor_inside) {
  W = spawn_agent(99, false);
  act_pid_t p = spawn_agent(1, false);
  watch(p);
  spawned_t s = {.args = {.tag = 2}};
  agent_run(p, fn_spawn_link, &s);
  ck_assert(s.pid != ACT_NOPID);
  ck_assert(log_wait1(q_init_tag(2), NULL));
  act_info_t i;
  ck_assert_int_eq(act_info_of(s.pid, &i), ACT_OK);
  ck_assert(i.parent == p);
  send_crash(s.pid);
  ck_assert_str_eq(wait_down(W, p).text, "crash 2");

  spawned_t m = {.args = {.tag = 3}};
  agent_run(W, fn_spawn_monitor, &m);
  ck_assert(m.pid != ACT_NOPID && m.ref != 0);
  ck_assert(log_wait1(q_init_tag(3), NULL));
  send_stop(m.pid, act_reason_error("m"));
  ev_t e = {0};
  ck_assert(log_wait1(q_down(W, m.pid), &e));
  ck_assert(e.mref == m.ref);
  ck_assert_str_eq(e.reason.text, "m");
  ck_assert(ag_alive(W)); /* monitor only, no link */

  act_pid_t t = spawn_agent(4, true);
  spawned_t o = {.args = {.tag = 5}};
  agent_run(t, fn_spawn_opts, &o);
  ck_assert(o.pid != ACT_NOPID && o.ref != 0);
  act_info_t ti;
  ck_assert_int_eq(act_info_of(t, &ti), ACT_OK);
  ck_assert_int_eq(act_info_of(o.pid, &i), ACT_OK);
  ck_assert_int_eq(i.scheduler, ti.scheduler); /* ACT_SCHED_CALLER */
  send_crash(o.pid);
  ck_assert(log_wait1(q_down(t, o.pid), &e));
  ck_assert(e.mref == o.ref);
  ck_assert(log_wait1(q_exit(t, o.pid), &e));
  ck_assert_str_eq(e.reason.text, "crash 5");
}
END_TEST

/* ------------------------------------------------ monitors */

START_TEST(monitor_down_with_reason) {
  W = spawn_agent(99, false);
  act_pid_t w2 = spawn_agent(98, false);
  act_pid_t x = spawn_agent(1, false);
  act_ref_t r1 = ag_monitor(W, x), r2 = ag_monitor(W, x), r3 = ag_monitor(w2, x);
  ck_assert(r1 != r2 && r1 != r3 && r2 != r3);
  send_stop(x, act_reason_error("why %d", 7));
  ev_t e = {0};
  ck_assert(log_wait(q_down(W, x), 2, TMO, &e));
  ck_assert(log_wait1(q_down(w2, x), &e));
  ck_assert(e.mref == r3);
  ck_assert_int_eq(e.reason.kind, ACT_ERROR);
  ck_assert_str_eq(e.reason.text, "why 7");
  ev_t d1 = {0}, d2 = {0};
  log_nth(q_down(W, x), 1, &d1);
  log_nth(q_down(W, x), 2, &d2);
  ck_assert((d1.mref == r1 && d2.mref == r2) || (d1.mref == r2 && d2.mref == r1));
  /* normal exit: DOWN normal; the watcher is not affected */
  act_pid_t y = spawn_agent(2, false);
  ag_monitor(W, y);
  send_stop(y, act_reason(ACT_NORMAL));
  ck_assert_int_eq(wait_down(W, y).kind, ACT_NORMAL);
  ck_assert(ag_alive(W));
}
END_TEST

START_TEST(monitor_dead_pid_noproc) {
  W = spawn_agent(99, false);
  act_pid_t x = spawn_agent(1, false);
  act_exit(x, act_reason(ACT_KILL));
  await_exit(x);
  act_ref_t r = ag_monitor(W, x);
  ev_t e = {0};
  ck_assert(log_wait1(q_down(W, x), &e));
  ck_assert(e.mref == r);
  ck_assert_int_eq(e.reason.kind, ACT_NOPROC);
}
END_TEST

START_TEST(demonitor_no_down) {
  W = spawn_agent(99, false);
  act_pid_t x = spawn_agent(1, false), y = spawn_agent(2, false);
  pidref_t m = {.pid = x};
  agent_run(W, fn_monitor, &m);
  agent_run(W, fn_demonitor, &m);
  ck_assert(m.flag); /* it was active */
  agent_run(W, fn_demonitor, &m);
  ck_assert(!m.flag); /* not any more */
  ag_monitor(W, y); /* control */
  send_crash(x);
  await_exit(x);
  send_crash(y);
  wait_down(W, y);
  ck_assert(ag_alive(W));
  ck_assert_int_eq(log_count(q_down(W, x)), 0);
}
END_TEST

/* demonitor flushes a DOWN that is already queued. */
static void fn_kill_wait_demonitor(void *a) {
  pidref_t *x = a;
  act_exit(x->pid, act_reason(ACT_KILL));
  act_info_t i;
  int64_t dl = now_ms() + 3000;
  /* test-only busy wait inside a handler: until the DOWN is in our mailbox */
  while (now_ms() < dl) {
    if (act_info_of(act_self(), &i) == ACT_OK && i.mailbox_len > 0 &&
        act_info_of(x->pid, &i) == ACT_ENOPROC)
      break;
    sleep_ms(1);
  }
  act_demonitor(x->ref);
  int64_t v = 555;
  act_send(act_self(), AG_PING, &v, sizeof v);
}
START_TEST(demonitor_flushes_queued_down) {
  act_pid_t w = spawn_agent_on(1, false, 0);
  act_pid_t x = spawn_agent_on(2, false, 1);
  act_info_t iw, ix;
  ck_assert_int_eq(act_info_of(w, &iw), ACT_OK);
  ck_assert_int_eq(act_info_of(x, &ix), ACT_OK);
  ck_assert_msg(iw.scheduler == 0 && ix.scheduler == 1,
                "opts.scheduler index not honoured: asked 0 and 1, got %d and %d",
                iw.scheduler, ix.scheduler);
  pidref_t m = {.pid = x};
  agent_run(w, fn_monitor, &m);
  agent_run(w, fn_kill_wait_demonitor, &m);
  evq_t qp = q_msg(w, AG_PING);
  qp.has_val = true;
  qp.val = 555;
  ck_assert(log_wait1(qp, NULL));
  ck_assert_int_eq(log_count(q_down(w, x)), 0);
}
END_TEST

/* EXIT and DOWN are sent after the dead actor's name is released. */
static void on_exit_down_check_name(agent_t *ag, act_msg_t *m) {
  if (m->type != ACT_MSG_DOWN && m->type != ACT_MSG_EXIT) return;
  act_pid_t who = act_whereis("victim");
  log_user(ag->a.tag * 10 + 1, (int64_t)who);
  if (m->type == ACT_MSG_DOWN) log_user(ag->a.tag * 10 + 2, act_register("victim", act_self()));
}
START_TEST(exit_down_after_name_released) {
  agent_args_t wa = {.tag = 5, .on_msg = on_exit_down_check_name};
  agent_args_t la = {.tag = 6, .trap = true, .on_msg = on_exit_down_check_name};
  act_pid_t w = spawn_agent_ex(&wa, 0), l = spawn_agent_ex(&la, 1);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_ON(1), .name = "victim"};
  agent_args_t va = {.tag = 7};
  act_pid_t v = act_spawn(&agent_behaviour, &va, &o, NULL);
  ck_assert(v != ACT_NOPID);
  ck_assert(act_whereis("victim") == v);
  ck_assert(log_wait1(q_init_tag(7), NULL));
  ag_monitor(w, v);
  ck_assert_int_eq(ag_link(l, v), ACT_OK);
  send_crash(v);
  ev_t e = {0};
  ck_assert(log_wait1(q_user(62 - 1), &e)); /* linked: tag 6 -> 61 */
  ck_assert_msg(e.val == 0 || e.val == (int64_t)w,
                "EXIT handler still sees the dead actor under its name");
  ck_assert(e.val != (int64_t)v);
  ck_assert(log_wait1(q_user(51), &e));
  ck_assert_msg(e.val == 0, "DOWN handler still sees the dead actor under its name");
  ck_assert(log_wait1(q_user(52), &e));
  ck_assert_int_eq(e.val, ACT_OK); /* the name can be taken at once */
  ck_assert(act_whereis("victim") == w);
}
END_TEST


/* An exit signal is not queued behind messages: on one scheduler, messages
 * and then kill from one handler; the target dies without handling them. */
static act_pid_t g_victim;
static void fn_msgs_then_kill(void *a) {
  (void)a;
  for (int i = 0; i < 5; i++) act_send(g_victim, AG_PING, NULL, 0);
  act_exit(g_victim, act_reason(ACT_KILL));
}
START_TEST(kill_not_queued_behind_messages) {
  W = spawn_agent(99, false);
  g_victim = spawn_agent(1, true);
  watch(g_victim);
  agent_run(W, fn_msgs_then_kill, NULL);
  ck_assert_int_eq(wait_down(W, g_victim).kind, ACT_KILLED);
  ck_assert_int_eq(log_count(q_msg(g_victim, AG_PING)), 0);
}
END_TEST

/* Two monitors on one pid: removing one leaves the other. */
START_TEST(two_monitors_demonitor_one) {
  W = spawn_agent(99, false);
  act_pid_t x = spawn_agent(1, false);
  pidref_t m1 = {.pid = x}, m2 = {.pid = x};
  agent_run(W, fn_monitor, &m1);
  agent_run(W, fn_monitor, &m2);
  agent_run(W, fn_demonitor, &m1);
  ck_assert(m1.flag);
  send_crash(x);
  ev_t e = {0};
  ck_assert(log_wait1(q_down(W, x), &e));
  ck_assert(e.mref == m2.ref);
  ck_assert(ag_alive(W));
  ck_assert_int_eq(log_count(q_down(W, x)), 1);
}
END_TEST


/* What a dying actor sends from terminate arrives before its DOWN/EXIT. */
static act_pid_t g_last_words_to;
static void on_stop_last_words(void *st, act_reason_t r) {
  (void)r;
  act_send(g_last_words_to, AG_PING, &(int64_t){4242}, sizeof(int64_t));
  free(st);
}
static int lw_init(void *a, void **s) {
  (void)a;
  *s = malloc(1);
  return 0;
}
static void lw_handle(void *s, act_msg_t *m) {
  (void)s;
  (void)m;
  act_crash("last words");
}
static const act_behaviour_t lw_b = {"lastwords", lw_init, lw_handle, on_stop_last_words};
START_TEST(terminate_messages_before_down) {
  W = spawn_agent(99, true);
  g_last_words_to = W;
  act_pid_t x = act_spawn(&lw_b, NULL, NULL, NULL);
  watch(x);
  ck_assert_int_eq(ag_link(W, x), ACT_OK);
  act_send(x, 1, NULL, 0);
  ev_t d = {0}, x2 = {0};
  ck_assert(log_wait1(q_down(W, x), &d));
  ck_assert(log_wait1(q_exit(W, x), &x2));
  evq_t qp = q_msg(W, AG_PING);
  qp.has_val = true;
  qp.val = 4242;
  int64_t sp = log_first_seq(qp);
  ck_assert_int_ge(sp, 0);
  ck_assert_int_lt(sp, (int64_t)d.seq);
  ck_assert_int_lt(sp, (int64_t)x2.seq);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("links");
  TCase *tc = rt_tcase("links", 2, 60);
  tcase_add_test(tc, link_crash_propagates_same_reason);
  tcase_add_test(tc, link_is_bidirectional_and_chains);
  tcase_add_test(tc, link_normal_not_propagated);
  tcase_add_test(tc, link_shutdown_propagates);
  tcase_add_test(tc, trapping_gets_exit_message);
  tcase_add_test(tc, trap_exit_returns_previous);
  tcase_add_test(tc, exit_kill_is_untrappable_and_seen_as_killed);
  tcase_add_test(tc, kill_reason_through_link_is_trappable);
  tcase_add_test(tc, exit2_other_reasons);
  tcase_add_test(tc, link_to_dead_pid_noproc);
  tcase_add_test(tc, unlink_stops_propagation);
  tcase_add_test(tc, message_before_exit_signal);
  tcase_add_test(tc, spawn_link_and_monitor_inside);
  suite_add_tcase(s, tc);
  TCase *tm = rt_tcase("monitors", 2, 60);
  tcase_add_test(tm, monitor_down_with_reason);
  tcase_add_test(tm, monitor_dead_pid_noproc);
  tcase_add_test(tm, demonitor_no_down);
  tcase_add_test(tm, demonitor_flushes_queued_down);
  tcase_add_test(tm, exit_down_after_name_released);
  tcase_add_test(tm, two_monitors_demonitor_one);
  tcase_add_test(tm, terminate_messages_before_down);
  suite_add_tcase(s, tm);
  TCase *t1 = rt_tcase("one_scheduler", 1, 60);
  tcase_add_test(t1, kill_not_queued_behind_messages);
  suite_add_tcase(s, t1);
  return s;
}

RT_MAIN(suite)
