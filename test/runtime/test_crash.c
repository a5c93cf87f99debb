/*
 * test_crash.c -- crash containment: act_crash and a failed ACT_ASSERT end
 * that actor only (others, even on the same scheduler, keep running);
 * terminate is called with the reason; act_alloc memory and act_defer
 * cleanups are released (after terminate; act_undefer forgets one; ASan
 * checks the memory); a dead actor's timers still reach a live destination; init failure and a
 * crash inside init; mailbox overflow (max_mailbox) ends the actor with an
 * error reason and drops (and frees) what it could not take; a libuv handle
 * owned through act_defer is closed when its actor dies, and act_run_as runs
 * code as the actor from a libuv callback (a crash there ends the actor); a
 * crash inside terminate is contained.
 */
#include "rt_test.h"

static act_pid_t W;

START_TEST(crash_ends_only_that_actor) {
  W = spawn_agent_on(99, false, 0);
  act_pid_t a = spawn_agent_on(1, false, 0), b = spawn_agent_on(2, false, 0);
  act_pid_t c = spawn_agent_on(3, false, 1);
  ag_monitor(W, a);
  send_crash(a);
  act_reason_t r = wait_down(W, a);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_str_eq(r.text, "crash 1");
  act_reason_t t = wait_term(a);
  ck_assert_int_eq(t.kind, ACT_ERROR);
  ck_assert_str_eq(t.text, "crash 1");
  ck_assert(ag_alive(b)); /* same scheduler */
  ck_assert(ag_alive(c));
  ck_assert(ag_alive(W));
  ck_assert(!is_alive(a));
}
END_TEST

START_TEST(assert_ends_only_that_actor) {
  W = spawn_agent(99, false);
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  ag_monitor(W, a);
  ck_assert_int_eq(act_send(a, AG_ASSERT, NULL, 0), ACT_OK);
  act_reason_t r = wait_down(W, a);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_msg(strstr(r.text, "assertion failed") != NULL, "reason: %s", r.text);
  ck_assert_int_eq(wait_term(a).kind, ACT_ERROR);
  ck_assert(ag_alive(b));
}
END_TEST

/* The rest of a handler does not run after act_crash; the handler after
 * act_stop does (exit/1 semantics of the header). */
static void crash_mid_handle(void *s, act_msg_t *m) {
  (void)s;
  log_user(1, m->type);
  if (m->type == 1) act_crash("mid %d", 5);
  if (m->type == 2) act_stop(act_reason_error("stopped"));
  log_user(2, m->type);
}
static int null_init(void *a, void **s) {
  (void)a;
  *s = NULL;
  return 0;
}
static void log_term(void *s, act_reason_t r) {
  (void)s;
  ev_t e = {0};
  e.kind = EV_TERM;
  e.self = act_self();
  e.reason = r;
  ev_log(&e);
}
static const act_behaviour_t mid_b = {"mid", null_init, crash_mid_handle, log_term};
START_TEST(crash_longjmps_stop_finishes_handler) {
  W = spawn_agent(99, false);
  act_pid_t a = act_spawn(&mid_b, NULL, NULL, NULL);
  act_pid_t b = act_spawn(&mid_b, NULL, NULL, NULL);
  ag_monitor(W, a);
  ag_monitor(W, b);
  act_send(a, 1, NULL, 0);
  act_send(a, 3, NULL, 0); /* never handled: a is dead */
  act_send(b, 2, NULL, 0);
  act_send(b, 3, NULL, 0);
  ck_assert_str_eq(wait_down(W, a).text, "mid 5");
  ck_assert_str_eq(wait_down(W, b).text, "stopped");
  evq_t q2 = q_user(2);
  q2.self = a;
  ck_assert_int_eq(log_count(q2), 0);
  q2.self = b;
  ck_assert_int_eq(log_count(q2), 1); /* rest of the handler ran */
  evq_t q1 = q_user(1);
  q1.self = b;
  ck_assert_int_eq(log_count(q1), 1); /* ... and no further message */
  q1.self = a;
  ck_assert_int_eq(log_count(q1), 1);
  ck_assert_int_eq(wait_term(a).kind, ACT_ERROR);
  ck_assert_str_eq(wait_term(b).text, "stopped");
}
END_TEST

/* ------------------------------------------------ owned resources */

static atomic_int g_cleanups, g_undeferred;
static void cleanup_fn(void *arg) {
  log_user(50, (int64_t)(intptr_t)arg);
  atomic_fetch_add(&g_cleanups, 1);
}
static void undeferred_fn(void *arg) {
  (void)arg;
  atomic_fetch_add(&g_undeferred, 1);
}
typedef struct own {
  void *blocks[8];
} own_t;
static int own_init(void *a, void **s) {
  (void)a;
  own_t *o = act_alloc(sizeof *o); /* even the state is owned memory */
  if (!o) return ACT_ENOMEM;
  memset(o, 0, sizeof *o);
  for (int i = 0; i < 8; i++) o->blocks[i] = act_alloc(1000 + (size_t)i);
  act_free(o->blocks[0]); /* explicit free of one works */
  o->blocks[0] = NULL;
  act_defer(cleanup_fn, (void *)(intptr_t)1);
  uint64_t id = act_defer(undeferred_fn, NULL);
  act_undefer(id);
  *s = o;
  return 0;
}
static void own_handle(void *s, act_msg_t *m) {
  own_t *o = s;
  for (int i = 1; i < 8; i++) memset(o->blocks[i], 0xab, 1000 + (size_t)i);
  void *more = act_alloc(4096); /* leaked on purpose: the runtime frees it */
  memset(more, 1, 4096);
  act_defer(cleanup_fn, (void *)(intptr_t)2);
  log_user(51, m->type);
  if (m->type == 1) act_crash("owned");
}
static void own_term(void *s, act_reason_t r) {
  (void)s;
  log_term(NULL, r);
  /* the state (act_alloc'd) must still be valid here */
}
static const act_behaviour_t own_b = {"owner", own_init, own_handle, own_term};
START_TEST(owned_memory_and_cleanups_released) {
  atomic_store(&g_cleanups, 0);
  atomic_store(&g_undeferred, 0);
  W = spawn_agent(99, false);
  act_pid_t a = act_spawn(&own_b, NULL, NULL, NULL);
  ag_monitor(W, a);
  act_send(a, 0, NULL, 0);
  act_send(a, 1, NULL, 0);
  ck_assert_str_eq(wait_down(W, a).text, "owned");
  ck_assert(log_wait(q_user(50), 3, TMO, NULL));
  ck_assert_int_eq(atomic_load(&g_cleanups), 3);
  ck_assert_int_eq(atomic_load(&g_undeferred), 0);
  /* cleanups after terminate */
  int64_t st = log_first_seq(q_term(a));
  ck_assert_int_ge(st, 0);
  ck_assert_int_gt(log_first_seq(q_user(50)), st);
  /* the same with a kill */
  act_pid_t b = act_spawn(&own_b, NULL, NULL, NULL);
  ag_monitor(W, b);
  act_send(b, 0, NULL, 0);
  evq_t qh = q_user(51);
  qh.self = b;
  ck_assert(log_wait1(qh, NULL));
  ag_exit(W, b, act_reason(ACT_KILL));
  ck_assert_int_eq(wait_down(W, b).kind, ACT_KILLED);
  wait_term(b);
  ck_assert(log_wait(q_user(50), 5, TMO, NULL));
  ck_assert_int_eq(atomic_load(&g_undeferred), 0);
  /* ASan's leak check at exit verifies the act_alloc blocks were freed */
}
END_TEST


/* ------------------------------------------------ libuv handles, run_as */

typedef struct uvt {
  uv_timer_t t;
  act_pid_t owner;
  int fired;
} uvt_t;
static void uvt_closed(uv_handle_t *h) { free(h->data); }
static void uvt_cleanup(void *arg) {
  uvt_t *u = arg;
  log_user(61, 1);
  uv_close((uv_handle_t *)&u->t, uvt_closed);
}
static void as_owner(void *arg) {
  uvt_t *u = arg;
  log_user(62, (int64_t)act_self()); /* act_self() is the owner here */
  if (u->fired == 3) act_crash("from uv callback");
}
static void uvt_cb(uv_timer_t *t) {
  uvt_t *u = t->data;
  u->fired++;
  log_user(63, (int64_t)act_self()); /* outside the actor: NOPID */
  log_user(64, act_run_as(u->owner, as_owner, u));
}
static void uv_owner_handle(void *s, act_msg_t *m) {
  (void)s;
  (void)m;
  uvt_t *u = calloc(1, sizeof *u);
  u->owner = act_self();
  u->t.data = u;
  uv_timer_init(act_loop(), &u->t);
  act_defer(uvt_cleanup, u);
  uv_timer_start(&u->t, uvt_cb, 5, 5);
}
static const act_behaviour_t uv_owner_b = {"uvowner", null_init, uv_owner_handle, log_term};
START_TEST(uv_handle_owned_and_run_as) {
  W = spawn_agent(99, false);
  act_pid_t a = act_spawn(&uv_owner_b, NULL, NULL, NULL);
  ag_monitor(W, a);
  act_send(a, 1, NULL, 0);
  act_reason_t r = wait_down(W, a);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_str_eq(r.text, "from uv callback");
  ck_assert_int_eq(log_count(q_user(62)), 3);
  ev_t e = {0};
  ck_assert(log_nth(q_user(62), 1, &e));
  ck_assert(e.val == (int64_t)a);
  ck_assert(log_nth(q_user(63), 1, &e));
  ck_assert(e.val == 0);
  ck_assert(log_nth(q_user(64), 1, &e));
  ck_assert_int_eq(e.val, ACT_OK);
  ck_assert(log_wait1(q_user(61), NULL)); /* the handle was closed by its cleanup */
  ck_assert(ag_alive(W));
  /* ASan: the handle's memory was freed by its close callback */
  /* the header: "pid must be alive and on this scheduler; returns
   * ACT_ENOPROC otherwise" -- here: dead, then alive but another thread */
  ck_assert_int_eq(act_run_as(a, as_owner, NULL), ACT_ENOPROC);
  ck_assert_int_eq(act_run_as(W, as_owner, NULL), ACT_ENOPROC);
}
END_TEST

/* A crash inside terminate is contained too, and (OTP: terminate raising)
 * its reason becomes the exit reason that links and monitors see. */
static void crash_in_term(void *s, act_reason_t r) {
  (void)s;
  log_term(NULL, r);
  act_crash("in terminate");
}
static void stop_handle(void *s, act_msg_t *m) {
  (void)s;
  (void)m;
  act_stop(act_reason_error("first reason"));
}
static const act_behaviour_t termcrash_b = {"termcrash", null_init, stop_handle, crash_in_term};
START_TEST(crash_in_terminate_contained) {
  W = spawn_agent(99, false);
  act_pid_t a = act_spawn(&termcrash_b, NULL, NULL, NULL);
  ag_monitor(W, a);
  act_send(a, 1, NULL, 0);
  act_reason_t r = wait_down(W, a);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_str_eq(r.text, "in terminate");
  ck_assert(ag_alive(W));
}
END_TEST

/* ------------------------------------------------ timers of the dead */

/* OTP: a timer belongs to its destination.  The creator's crash does not
 * cancel it (777 reaches W); a timer to the dead creator itself is dropped
 * (778 never handled: the actor is gone). */
static act_pid_t g_timer_to;
static void timer_handle(void *s, act_msg_t *m) {
  (void)s;
  if (m->type == 1) {
    act_send_after(30, g_timer_to, 777, NULL, 0);
    act_send_after(60, act_self(), 778, NULL, 0);
    act_crash("with timers");
  }
  if (m->type == 2) {
    act_send_after(200, g_timer_to, 779, NULL, 0); /* the control */
  }
  if (m->type == 778) log_user(78, 1);
}
static const act_behaviour_t timer_b = {"timers", null_init, timer_handle, log_term};
START_TEST(dead_actors_timers_belong_to_their_destination) {
  /* one scheduler: timers of both actors live on the same loop */
  W = spawn_agent(99, false);
  g_timer_to = W;
  act_pid_t a = act_spawn(&timer_b, NULL, NULL, NULL);
  act_pid_t ctl = act_spawn(&timer_b, NULL, NULL, NULL);
  ag_monitor(W, a);
  act_send(a, 1, NULL, 0);
  ck_assert_str_eq(wait_down(W, a).text, "with timers");
  act_send(ctl, 2, NULL, 0);
  ck_assert(log_wait1(q_msg(W, 779), NULL)); /* the later control timer fired */
  ck_assert_int_eq(log_count(q_msg(W, 777)), 1);
  ck_assert_int_lt(log_first_seq(q_msg(W, 777)), log_first_seq(q_msg(W, 779)));
  ck_assert_int_eq(log_count(q_user(78)), 0);
}
END_TEST

/* ------------------------------------------------ init */

static int failing_init(void *a, void **s) {
  (void)a;
  (void)s;
  return ACT_EINVAL;
}
static int crashing_init(void *a, void **s) {
  (void)a;
  (void)s;
  act_crash("crash in init");
}
static void never_handle(void *s, act_msg_t *m) {
  (void)s;
  (void)m;
  log_user(70, 1);
}
static void never_term(void *s, act_reason_t r) {
  (void)s;
  (void)r;
}
static const act_behaviour_t failinit_b = {"failinit", failing_init, never_handle, never_term};
static const act_behaviour_t crashinit_b = {"crashinit", crashing_init, never_handle, never_term};
/* From outside the runtime a start is proc_lib's: it returns only once
 * init answered, with init's error, and leaves nothing behind (not even
 * the name); no message reaches a failed actor. */
START_TEST(init_failure_fails_the_start) {
  W = spawn_agent(99, false);
  int err = 0;
  act_spawn_opts_t o = {.name = "failing"};
  act_pid_t a = act_spawn(&failinit_b, NULL, &o, &err);
  ck_assert(a == ACT_NOPID);
  ck_assert_int_eq(err, ACT_EINVAL); /* failing_init's own code */
  ck_assert(act_whereis("failing") == ACT_NOPID);
  err = 0;
  act_pid_t b = act_spawn(&crashinit_b, NULL, &o, &err);
  ck_assert(b == ACT_NOPID);
  ck_assert_int_eq(err, ACT_EEXITED);
  ck_assert(act_whereis("failing") == ACT_NOPID);
  ck_assert_int_eq(log_count(q_user(70)), 0); /* no message handled */
  ck_assert(ag_alive(W));
  /* the name is free for a start that succeeds */
  act_pid_t c = act_spawn(&agent_behaviour, &(agent_args_t){.tag = 5}, &o, &err);
  ck_assert(c != ACT_NOPID);
  ck_assert(act_whereis("failing") == c);
  /* its init has run by the time act_spawn returned */
  ck_assert_int_eq(log_count(q_init_tag(5)), 1);
}
END_TEST

/* Deterministic: monitor before init can run (init runs on the actor's
 * scheduler; the spawner is on the same one and still in its handler). */
typedef struct sp {
  act_pid_t pid;
  act_ref_t ref;
  const act_behaviour_t *b;
} sp_t;
static void fn_spawn_monitor_b(void *a) {
  sp_t *s = a;
  s->pid = act_spawn_monitor(s->b, NULL, &s->ref);
}
START_TEST(init_failure_reason_seen_by_monitor) {
  W = spawn_agent(99, false);
  sp_t s = {.b = &failinit_b};
  agent_run(W, fn_spawn_monitor_b, &s);
  act_reason_t r = wait_down(W, s.pid);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_msg(strncmp(r.text, "init failed", 11) == 0, "%s", r.text);
  sp_t c = {.b = &crashinit_b};
  agent_run(W, fn_spawn_monitor_b, &c);
  r = wait_down(W, c.pid);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_msg(strstr(r.text, "crash in init") || strstr(r.text, "init failed"), "%s", r.text);
}
END_TEST

/* ------------------------------------------------ mailbox overflow */

static atomic_int g_ov_freed;
static void ov_free(void *d, size_t n) {
  (void)d;
  (void)n;
  atomic_fetch_add(&g_ov_freed, 1);
}
static act_pid_t g_ov;
static void fn_flood10(void *a) {
  (void)a;
  for (int64_t i = 0; i < 10; i++) act_send_ex(g_ov, AG_PING, &i, sizeof i, ov_free);
}
START_TEST(mailbox_overflow_ends_actor) {
  atomic_store(&g_ov_freed, 0);
  W = spawn_agent(99, false);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_ON(0), .max_mailbox = 4};
  agent_args_t aa = {.tag = 1};
  act_pid_t a = act_spawn(&agent_behaviour, &aa, &o, NULL);
  ck_assert(a != ACT_NOPID);
  ck_assert(log_wait1(q_init_tag(1), NULL));
  ag_monitor(W, a);
  g_ov = a;
  /* one scheduler: the whole flood is queued before the receiver runs */
  agent_run(W, fn_flood10, NULL);
  act_reason_t r = wait_down(W, a);
  ck_assert_int_eq(r.kind, ACT_ERROR);
  ck_assert_msg(strstr(r.text, "mailbox_overflow") != NULL, "reason %s", r.text);
  ck_assert_int_le(log_count(q_msg(a, AG_PING)), 4);
  /* every payload is freed: handled ones after handle, the rest dropped */
  int64_t dl = now_ms() + TMO;
  while (atomic_load(&g_ov_freed) < 10 && now_ms() < dl) sleep_ms(1);
  ck_assert_int_eq(atomic_load(&g_ov_freed), 10);
  ck_assert(ag_alive(W));
}
END_TEST

START_TEST(mailbox_bound_not_hit_is_fine) {
  W = spawn_agent(99, false);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_ON(0), .max_mailbox = 16};
  agent_args_t aa = {.tag = 1};
  act_pid_t a = act_spawn(&agent_behaviour, &aa, &o, NULL);
  ck_assert(log_wait1(q_init_tag(1), NULL));
  for (int round = 0; round < 20; round++) {
    for (int64_t i = 0; i < 8; i++) act_send(a, 5, &i, sizeof i);
    ck_assert(log_wait(q_msg(a, 5), (round + 1) * 8, TMO, NULL));
  }
  ck_assert(is_alive(a));
}
END_TEST


/* Overflow under several producer threads: the actor ends with
 * mailbox_overflow and every payload is freed exactly once. */
static atomic_int g_ov_sent;
static void *ov_thread(void *a) {
  act_pid_t to = (act_pid_t)(uintptr_t)a;
  for (int64_t i = 0; i < 5000; i++) {
    act_send_ex(to, AG_PING, &i, sizeof i, ov_free);
    atomic_fetch_add(&g_ov_sent, 1);
  }
  return NULL;
}
START_TEST(mailbox_overflow_concurrent_producers) {
  atomic_store(&g_ov_freed, 0);
  atomic_store(&g_ov_sent, 0);
  W = spawn_agent(99, false);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT, .max_mailbox = 50};
  agent_args_t aa = {.tag = 1};
  act_pid_t a = act_spawn(&agent_behaviour, &aa, &o, NULL);
  ck_assert(log_wait1(q_init_tag(1), NULL));
  ag_monitor(W, a);
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, ov_thread, (void *)(uintptr_t)a);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  act_reason_t r = wait_down(W, a);
  ck_assert_msg(strstr(r.text, "mailbox_overflow") != NULL, "reason %s", r.text);
  int64_t dl = now_ms() + TMO;
  while (atomic_load(&g_ov_freed) < 20000 && now_ms() < dl) sleep_ms(1);
  sleep_ms(20); /* a double free would show as more than 20000 */
  ck_assert_int_eq(atomic_load(&g_ov_freed), 20000);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("crash");
  TCase *tc = rt_tcase("containment", 2, 60);
  tcase_add_test(tc, crash_ends_only_that_actor);
  tcase_add_test(tc, assert_ends_only_that_actor);
  tcase_add_test(tc, crash_longjmps_stop_finishes_handler);
  tcase_add_test(tc, owned_memory_and_cleanups_released);
  tcase_add_test(tc, init_failure_fails_the_start);
  tcase_add_test(tc, uv_handle_owned_and_run_as);
  tcase_add_test(tc, crash_in_terminate_contained);
  tcase_add_test(tc, mailbox_overflow_concurrent_producers);
  suite_add_tcase(s, tc);
  TCase *t1 = rt_tcase("one_scheduler", 1, 60);
  tcase_add_test(t1, dead_actors_timers_belong_to_their_destination);
  tcase_add_test(t1, init_failure_reason_seen_by_monitor);
  tcase_add_test(t1, mailbox_overflow_ends_actor);
  tcase_add_test(t1, mailbox_bound_not_hit_is_fine);
  suite_add_tcase(s, t1);
  return s;
}

RT_MAIN(suite)
