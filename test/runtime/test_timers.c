/*
 * test_timers.c -- timers and request/reply: send_after fires (to self and
 * to others, in due order); cancel before firing returns the time left and
 * the message never arrives; cancel after firing (and of an unknown ref)
 * returns -1; act_request: the reply carries the ref, a timeout brings
 * ACT_MSG_TIMEOUT and a late reply is never delivered; act_call from outside
 * actors: reply, ACT_ETIMEDOUT after the default 5000 ms with the late reply
 * never delivered to a later call, ACT_ENOPROC for a dead target or one that
 * dies before replying.
 */
#include "rt_test.h"

/* ------------------------------------------------ timers */

typedef struct tm_arg {
  uint64_t ms;
  act_pid_t to;
  int type;
  int64_t val;
  act_ref_t ref;
  int64_t left;
} tm_arg_t;
static void fn_send_after(void *a) {
  tm_arg_t *t = a;
  t->ref = act_send_after(t->ms, t->to ? t->to : act_self(), t->type, &t->val, sizeof t->val);
}
static void fn_cancel(void *a) {
  tm_arg_t *t = a;
  t->left = act_cancel_timer(t->ref);
}

START_TEST(send_after_fires) {
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  int64_t t0 = now_ms();
  tm_arg_t t = {.ms = 50, .type = 5, .val = 55};
  agent_run(a, fn_send_after, &t);
  ck_assert(t.ref != 0);
  ev_t e = {0};
  ck_assert(log_wait1(q_msg(a, 5), &e));
  ck_assert_int_ge(now_ms() - t0, 45);
  ck_assert_int_eq(e.val, 55);
  /* to another actor */
  tm_arg_t u = {.ms = 10, .to = b, .type = 6, .val = 66};
  agent_run(a, fn_send_after, &u);
  ck_assert(log_wait1(q_msg(b, 6), &e));
  ck_assert_int_eq(e.val, 66);
  /* zero delay */
  tm_arg_t z = {.ms = 0, .type = 7, .val = 77};
  agent_run(a, fn_send_after, &z);
  ck_assert(log_wait1(q_msg(a, 7), &e));
  ck_assert_int_eq(log_count(q_msg(a, 5)), 1); /* fired once */
}
END_TEST

static void fn_reverse_timers(void *a) {
  (void)a;
  for (int64_t i = 5; i >= 1; i--) act_send_after((uint64_t)i * 20, act_self(), 9, &i, sizeof i);
}
START_TEST(timers_fire_in_due_order) {
  act_pid_t a = spawn_agent(1, false);
  agent_run(a, fn_reverse_timers, NULL);
  ck_assert(log_wait(q_msg(a, 9), 5, TMO, NULL));
  for (int i = 1; i <= 5; i++) {
    ev_t e = {0};
    ck_assert(log_nth(q_msg(a, 9), i, &e));
    ck_assert_int_eq(e.val, i);
  }
}
END_TEST

START_TEST(cancel_before_firing) {
  act_pid_t a = spawn_agent(1, false);
  tm_arg_t t = {.ms = 300, .type = 5, .val = 1};
  agent_run(a, fn_send_after, &t);
  agent_run(a, fn_cancel, &t);
  ck_assert_int_ge(t.left, 0);
  ck_assert_int_le(t.left, 300);
  /* cancelling again: unknown now */
  agent_run(a, fn_cancel, &t);
  ck_assert_int_eq(t.left, -1);
  /* a control timer due later than the cancelled one */
  tm_arg_t c = {.ms = 600, .type = 6, .val = 2};
  agent_run(a, fn_send_after, &c);
  ck_assert(log_wait1(q_msg(a, 6), NULL));
  ck_assert_int_eq(log_count(q_msg(a, 5)), 0);
}
END_TEST

static act_ref_t g_tref;
static void fn_send_after_store(void *a) {
  fn_send_after(a);
  g_tref = ((tm_arg_t *)a)->ref;
}
static void on_fired_cancel(agent_t *ag, act_msg_t *m) {
  (void)ag;
  if (m->type == 8) log_user(80, act_cancel_timer(g_tref));
}
START_TEST(cancel_after_firing) {
  agent_args_t aa = {.tag = 1, .on_msg = on_fired_cancel};
  act_pid_t a = spawn_agent_ex(&aa, ACT_SCHED_NEXT);
  tm_arg_t t = {.ms = 10, .type = 8};
  /* g_tref is set inside the agent, before the timer's message can be handled */
  agent_run(a, fn_send_after_store, &t);
  ev_t e = {0};
  ck_assert(log_wait1(q_user(80), &e));
  ck_assert_int_eq(e.val, -1);
  /* unknown reference */
  tm_arg_t u = {.ref = act_make_ref()};
  agent_run(a, fn_cancel, &u);
  ck_assert_int_eq(u.left, -1);
  /* fired but not yet handled: still -1 (the message may be queued) */
  tm_arg_t v = {.ms = 1, .type = 9};
  agent_run(a, fn_send_after, &v);
  ck_assert(log_wait1(q_msg(a, 9), NULL));
  agent_run(a, fn_cancel, &v);
  ck_assert_int_eq(v.left, -1);
}
END_TEST

START_TEST(timer_to_dead_pid_is_harmless) {
  act_pid_t a = spawn_agent(1, false), d = spawn_agent(2, false);
  ag_monitor(a, d);
  send_crash(d);
  wait_down(a, d);
  tm_arg_t t = {.ms = 5, .to = d, .type = 5};
  agent_run(a, fn_send_after, &t);
  tm_arg_t c = {.ms = 50, .type = 6};
  agent_run(a, fn_send_after, &c);
  ck_assert(log_wait1(q_msg(a, 6), NULL));
  ck_assert(ag_alive(a));
}
END_TEST


/* A timer never fires early, even when set at the end of a long turn (the
 * loop's cached clock must not be the base of the delay). */
static atomic_llong g_set_at;
static void fn_busy_then_timer(void *a) {
  (void)a;
  sleep_ms(100); /* test-only: a long handler */
  atomic_store(&g_set_at, now_ms());
  act_send_after(50, act_self(), 5, NULL, 0);
}
static void on_timer_msg(agent_t *ag, act_msg_t *m) {
  (void)ag;
  if (m->type == 5) log_user(55, now_ms());
}
START_TEST(send_after_never_early) {
  agent_args_t aa = {.tag = 1, .on_msg = on_timer_msg};
  act_pid_t a = spawn_agent_ex(&aa, ACT_SCHED_NEXT);
  for (int i = 0; i < 3; i++) {
    agent_run(a, fn_busy_then_timer, NULL);
    ev_t e = {0};
    ck_assert(log_wait(q_user(55), i + 1, TMO, &e));
    long long took = e.val - atomic_load(&g_set_at);
    ck_assert_msg(took >= 49, "send_after(50) fired after %lld ms", took);
  }
}
END_TEST

/* ------------------------------------------------ request / reply */

enum { REQ_KEEP = 10, RELEASE = 11, REQ_ECHO = 12, REQ_CRASH = 13, REPLY_LATE = 20,
       MARKER = 21, REPLY_ECHO = 22 };

static act_msg_t *g_kept;
static act_pid_t g_client;
static void server_on_msg(agent_t *ag, act_msg_t *m) {
  (void)ag;
  switch (m->type) {
  case REQ_KEEP:
    g_kept = act_msg_keep(m);
    break;
  case RELEASE: {
    int64_t v = 999;
    log_user(90, act_reply(g_kept, REPLY_LATE, &v, sizeof v));
    act_msg_free(g_kept);
    g_kept = NULL;
    if (g_client) act_send(g_client, MARKER, NULL, 0);
    break;
  }
  case REQ_ECHO: {
    int64_t v = payload_val(m) * 2;
    act_reply(m, REPLY_ECHO, &v, sizeof v);
    break;
  }
  case REQ_CRASH:
    act_crash("no reply for you");
  }
}
static act_pid_t spawn_server(int tag) {
  agent_args_t aa = {.tag = tag, .on_msg = server_on_msg};
  return spawn_agent_ex(&aa, ACT_SCHED_NEXT);
}

typedef struct rq {
  act_pid_t to;
  int type;
  int64_t val;
  int tmo;
  act_ref_t ref;
} rq_t;
static void fn_request(void *a) {
  rq_t *r = a;
  r->ref = act_request(r->to, r->type, &r->val, sizeof r->val, r->tmo);
}

START_TEST(request_reply_in_time) {
  act_pid_t s = spawn_server(1), c = spawn_agent(2, false);
  rq_t r = {.to = s, .type = REQ_ECHO, .val = 21, .tmo = 200};
  agent_run(c, fn_request, &r);
  ck_assert(r.ref != 0);
  ev_t e = {0};
  ck_assert(log_wait1(q_msg(c, REPLY_ECHO), &e));
  ck_assert(e.ref == r.ref);
  ck_assert(e.from == s);
  ck_assert_int_eq(e.val, 42);
  /* the request carried the ref and the requester */
  ck_assert(log_wait1(q_msg(s, REQ_ECHO), &e));
  ck_assert(e.ref == r.ref && e.from == c);
  /* no TIMEOUT afterwards: wait past the timeout with a control timer */
  tm_arg_t t = {.ms = 500, .type = MARKER};
  agent_run(c, fn_send_after, &t);
  ck_assert(log_wait1(q_msg(c, MARKER), NULL));
  ck_assert_int_eq(log_count(q_msg(c, ACT_MSG_TIMEOUT)), 0);
}
END_TEST

START_TEST(request_timeout_late_reply_dropped) {
  act_pid_t s = spawn_server(1), c = spawn_agent(2, false);
  g_client = c;
  rq_t r = {.to = s, .type = REQ_KEEP, .val = 1, .tmo = 50};
  agent_run(c, fn_request, &r);
  ev_t e = {0};
  ck_assert(log_wait1(q_msg(c, ACT_MSG_TIMEOUT), &e));
  ck_assert(e.ref == r.ref);
  ck_assert(log_wait1(q_msg(s, REQ_KEEP), NULL));
  /* now the late reply, then a marker from the same sender */
  act_send(s, RELEASE, NULL, 0);
  ck_assert(log_wait1(q_msg(c, MARKER), NULL));
  ck_assert(log_wait1(q_user(90), &e));
  ck_assert_int_eq(e.val, ACT_OK); /* the reply itself is legal, and dropped */
  ck_assert_int_eq(log_count(q_msg(c, REPLY_LATE)), 0);
  evq_t qr = {.kind = EV_MSG, .self = c, .ref = r.ref};
  ck_assert_int_eq(log_count(qr), 1); /* only the TIMEOUT carried the ref */
  ck_assert_int_eq(log_count(q_msg(c, ACT_MSG_TIMEOUT)), 1);
}
END_TEST

/* ------------------------------------------------ act_call from outside */

START_TEST(call_gets_reply) {
  act_pid_t s = spawn_server(1);
  act_msg_t *reply = NULL;
  int64_t v = 8;
  ck_assert_int_eq(act_call(s, REQ_ECHO, &v, sizeof v, &reply, 2000), ACT_OK);
  ck_assert_ptr_nonnull(reply);
  ck_assert_int_eq(reply->type, REPLY_ECHO);
  ck_assert_int_eq(payload_val(reply), 16);
  ck_assert(reply->from == s);
  act_msg_free(reply);
  reply = NULL;
  v = 9;
  ck_assert_int_eq(act_call(s, REQ_ECHO, &v, sizeof v, &reply, ACT_INFINITY), ACT_OK);
  ck_assert_int_eq(payload_val(reply), 18);
  act_msg_free(reply);
}
END_TEST

static void call_timeout_then_late_reply(int tmo, int min_ms) {
  act_pid_t s = spawn_server(1);
  g_client = ACT_NOPID;
  act_msg_t *reply = NULL;
  int64_t v = 1;
  int64_t t0 = now_ms();
  ck_assert_int_eq(act_call(s, REQ_KEEP, &v, sizeof v, &reply, tmo), ACT_ETIMEDOUT);
  int64_t took = now_ms() - t0;
  ck_assert_int_ge(took, min_ms);
  ck_assert_int_lt(took, tmo + 10000);
  /* the late reply */
  act_send(s, RELEASE, NULL, 0);
  ck_assert(log_wait1(q_user(90), NULL));
  /* a later call gets its own reply, never the late one */
  v = 5;
  ck_assert_int_eq(act_call(s, REQ_ECHO, &v, sizeof v, &reply, 2000), ACT_OK);
  ck_assert_int_eq(reply->type, REPLY_ECHO);
  ck_assert_int_eq(payload_val(reply), 10);
  act_msg_free(reply);
  /* and again, after the late one surely arrived wherever it went */
  v = 6;
  ck_assert_int_eq(act_call(s, REQ_ECHO, &v, sizeof v, &reply, 2000), ACT_OK);
  ck_assert_int_eq(reply->type, REPLY_ECHO);
  ck_assert_int_eq(payload_val(reply), 12);
  act_msg_free(reply);
}

START_TEST(call_short_timeout_late_reply_not_delivered) { call_timeout_then_late_reply(100, 90); }
END_TEST

START_TEST(call_default_timeout_5000) {
  call_timeout_then_late_reply(ACT_CALL_DEFAULT_TIMEOUT, 4900);
}
END_TEST

START_TEST(call_dead_or_dying_target_enoproc) {
  act_pid_t s = spawn_server(1), w = spawn_agent(2, false);
  ag_monitor(w, s);
  act_msg_t *reply = NULL;
  int64_t t0 = now_ms();
  ck_assert_int_eq(act_call(s, REQ_CRASH, NULL, 0, &reply, 5000), ACT_ENOPROC);
  ck_assert_int_lt(now_ms() - t0, 3000); /* noticed the death, not the timeout */
  ck_assert_str_eq(wait_down(w, s).text, "no reply for you");
  t0 = now_ms();
  ck_assert_int_eq(act_call(s, REQ_ECHO, NULL, 0, &reply, 5000), ACT_ENOPROC);
  ck_assert_int_lt(now_ms() - t0, 3000);
}
END_TEST


/* Several outside threads call one server at once: each gets its own
 * reply; and several threads await the same exit. */
static act_pid_t g_server;
static atomic_int g_call_bad;
static void *caller_thread(void *a) {
  int64_t base = (int64_t)(intptr_t)a * 100000;
  for (int64_t i = 0; i < 200; i++) {
    int64_t v = base + i;
    act_msg_t *reply = NULL;
    int rc = act_call(g_server, REQ_ECHO, &v, sizeof v, &reply, 5000);
    if (rc != ACT_OK || reply->type != REPLY_ECHO || payload_val(reply) != 2 * v)
      atomic_fetch_add(&g_call_bad, 1);
    if (rc == ACT_OK) act_msg_free(reply);
  }
  return NULL;
}
static atomic_int g_await_ok;
static void *awaiter_thread(void *a) {
  act_reason_t r;
  if (act_await_exit((act_pid_t)(uintptr_t)a, TMO, &r) == ACT_OK && r.kind == ACT_ERROR &&
      strcmp(r.text, "no reply for you") == 0)
    atomic_fetch_add(&g_await_ok, 1);
  return NULL;
}
START_TEST(concurrent_calls_and_awaits) {
  atomic_store(&g_call_bad, 0);
  atomic_store(&g_await_ok, 0);
  g_server = spawn_server(1);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, caller_thread, (void *)(intptr_t)(i + 1));
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(atomic_load(&g_call_bad), 0);
  /* three threads wait for the server's end, which a timer brings later */
  tm_arg_t t = {.ms = 500, .type = REQ_CRASH};
  agent_run(g_server, fn_send_after, &t);
  for (int i = 0; i < 3; i++)
    pthread_create(&th[i], NULL, awaiter_thread, (void *)(uintptr_t)g_server);
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(atomic_load(&g_await_ok), 3);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("timers");
  TCase *t1 = rt_tcase("timers", 1, 60);
  tcase_add_test(t1, send_after_fires);
  tcase_add_test(t1, timers_fire_in_due_order);
  tcase_add_test(t1, send_after_never_early);
  tcase_add_test(t1, cancel_before_firing);
  tcase_add_test(t1, cancel_after_firing);
  tcase_add_test(t1, timer_to_dead_pid_is_harmless);
  suite_add_tcase(s, t1);
  TCase *tc = rt_tcase("request", 2, 60);
  tcase_add_test(tc, request_reply_in_time);
  tcase_add_test(tc, request_timeout_late_reply_dropped);
  tcase_add_test(tc, call_gets_reply);
  tcase_add_test(tc, call_short_timeout_late_reply_not_delivered);
  tcase_add_test(tc, call_default_timeout_5000);
  tcase_add_test(tc, call_dead_or_dying_target_enoproc);
  tcase_add_test(tc, concurrent_calls_and_awaits);
  suite_add_tcase(s, tc);
  return s;
}

RT_MAIN(suite)
