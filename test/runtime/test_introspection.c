/*
 * test_introspection.c -- act_list and act_info_of: live actors with their
 * behaviour name, registered name, parent (spawner / supervisor), mailbox
 * length, messages handled, restarts and scheduler; a short buffer still
 * returns the full count; dead pids give ACT_ENOPROC; act_list is safe while
 * actors spawn and die concurrently on other threads (TSan checks it).
 */
#include "rt_test.h"

static act_info_t *find(act_info_t *v, size_t n, act_pid_t p) {
  for (size_t i = 0; i < n; i++)
    if (v[i].pid == p) return &v[i];
  return NULL;
}

typedef struct sp {
  act_pid_t pid;
  agent_args_t args;
} sp_t;
static void fn_spawn_child(void *a) {
  sp_t *s = a;
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_CALLER, .name = "kid"};
  s->pid = act_spawn(&agent_behaviour, &s->args, &o, NULL);
}

START_TEST(list_shows_fields) {
  act_pid_t a = spawn_agent(1, false);
  ck_assert_int_eq(act_register("alpha", a), ACT_OK);
  sp_t s = {.args = {.tag = 2}};
  agent_run(a, fn_spawn_child, &s);
  ck_assert(s.pid != ACT_NOPID);
  ck_assert(log_wait1(q_init_tag(2), NULL));
  agent_args_t ca = {.tag = 3};
  act_child_spec_t k;
  memset(&k, 0, sizeof k);
  snprintf(k.id, sizeof k.id, "w");
  k.behaviour = &agent_behaviour;
  k.args = &ca;
  k.name = "worker";
  k.restart = ACT_PERMANENT;
  k.shutdown_ms = 1000;
  k.scheduler = ACT_SCHED_NEXT;
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 10, 5000}, &k, 1};
  act_pid_t sup = act_supervisor_start(&spec, NULL, NULL);
  ck_assert(sup != ACT_NOPID);
  ck_assert(log_wait1(q_init_tag(3), NULL));
  act_pid_t w = pid_of_tag(3);

  act_info_t v[16];
  size_t n = act_list(v, 16);
  ck_assert_uint_eq(n, 4);
  act_info_t *ia = find(v, n, a), *ik = find(v, n, s.pid), *is = find(v, n, sup),
             *iw = find(v, n, w);
  ck_assert(ia && ik && is && iw);
  ck_assert_str_eq(ia->behaviour, "agent");
  ck_assert_str_eq(ia->name, "alpha");
  ck_assert(ia->parent == ACT_NOPID); /* spawned from outside */
  ck_assert_str_eq(ik->name, "kid");
  ck_assert(ik->parent == a);
  ck_assert_int_eq(ik->scheduler, ia->scheduler); /* ACT_SCHED_CALLER */
  ck_assert_str_eq(is->behaviour, "supervisor");
  ck_assert_str_eq(is->name, "");
  ck_assert_str_eq(iw->name, "worker");
  ck_assert(iw->parent == sup);
  ck_assert_uint_eq(iw->restarts, 0);
  ck_assert_uint_eq(is->children, 1); /* the supervisor's running children */
  ck_assert_uint_eq(iw->children, 0); /* a worker has none */
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_ge(v[i].scheduler, 0);
    ck_assert_int_lt(v[i].scheduler, 2);
  }
  /* restarts, after two crashes */
  for (int r = 1; r <= 2; r++) {
    act_pid_t cur = pid_of_tag(3);
    ag_monitor(a, cur);
    send_crash(cur);
    wait_down(a, cur);
    ck_assert(log_wait(q_init_tag(3), r + 1, TMO, NULL));
  }
  w = pid_of_tag(3);
  n = act_list(v, 16);
  iw = find(v, n, w);
  is = find(v, n, sup);
  ck_assert(iw && is);
  ck_assert_uint_eq(iw->restarts, 2);
  ck_assert_uint_eq(is->restarts, 2);
  ck_assert(iw->parent == sup);
  /* a short buffer: the full count, max entries filled */
  act_info_t one[1];
  ck_assert_uint_eq(act_list(one, 1), 4);
  ck_assert(one[0].pid != ACT_NOPID);
  ck_assert_uint_eq(act_list(NULL, 0), 4);
  /* dead pid */
  act_info_t x;
  act_pid_t old = s.pid;
  ag_monitor(a, old);
  send_crash(old);
  wait_down(a, old);
  ck_assert_int_eq(act_info_of(old, &x), ACT_ENOPROC);
  ck_assert(act_list(v, 16) == 3);
  ck_assert(find(v, 3, old) == NULL);
}
END_TEST

/* Mailbox length and message counts, deterministic on one scheduler: the
 * agent queues five messages and looks before the target can run. */
static act_pid_t g_target;
static void fn_queue_and_look(void *a) {
  (void)a;
  for (int i = 0; i < 5; i++) act_send(g_target, AG_PING, NULL, 0);
  act_info_t i;
  if (act_info_of(g_target, &i) == ACT_OK) log_user(1, (int64_t)i.mailbox_len);
  act_info_t v[8];
  size_t n = act_list(v, 8);
  for (size_t k = 0; k < n && k < 8; k++)
    if (v[k].pid == g_target) log_user(2, (int64_t)v[k].mailbox_len);
}
static void fn_look(void *a) {
  act_info_t *out = a;
  act_info_of(g_target, out); /* same scheduler: the target is not running */
}
START_TEST(mailbox_len_and_messages) {
  act_pid_t ag = spawn_agent(1, false);
  g_target = spawn_agent(2, false);
  act_info_t before, after;
  agent_run(ag, fn_look, &before);
  ck_assert_uint_eq(before.mailbox_len, 0);
  agent_run(ag, fn_queue_and_look, NULL);
  ev_t e = {0};
  ck_assert(log_wait1(q_user(1), &e));
  ck_assert_int_eq(e.val, 5);
  ck_assert(log_wait1(q_user(2), &e));
  ck_assert_int_eq(e.val, 5);
  ck_assert(log_wait(q_msg(g_target, AG_PING), 5, TMO, NULL));
  agent_run(ag, fn_look, &after);
  ck_assert_uint_eq(after.messages - before.messages, 5);
  ck_assert_uint_eq(after.mailbox_len, 0);
}
END_TEST

/* children: published by the supervisor as they start and end, read
 * without a call; the schedulers' actors and messages: one counter each,
 * so that a reader never walks the process table for them. */
static act_child_spec_t kid_spec(agent_args_t *a) {
  act_child_spec_t k;
  memset(&k, 0, sizeof k);
  k.behaviour = &agent_behaviour;
  k.args = a;
  k.restart = ACT_TEMPORARY;
  k.shutdown_ms = 1000;
  k.scheduler = ACT_SCHED_NEXT;
  return k;
}
static uint64_t sched_messages(long *actors) {
  uint64_t m = 0;
  *actors = 0;
  for (int i = 0; i < act_scheduler_count(); i++) {
    act_sched_info_t si;
    ck_assert_int_eq(act_scheduler_info(i, &si), ACT_OK);
    m += si.messages;
    *actors += si.actors;
  }
  return m;
}
START_TEST(children_and_scheduler_counters) {
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 10, 5000}, NULL, 0};
  act_pid_t sup = act_supervisor_start(&spec, NULL, NULL);
  ck_assert(sup != ACT_NOPID);
  act_info_t is;
  ck_assert_int_eq(act_info_of(sup, &is), ACT_OK);
  ck_assert_uint_eq(is.children, 0);
  agent_args_t args[3] = {{.tag = 11}, {.tag = 12}, {.tag = 13}};
  act_pid_t kids[3];
  for (int i = 0; i < 3; i++) {
    act_child_spec_t k = kid_spec(&args[i]);
    ck_assert_int_eq(act_supervisor_start_child(sup, &k, &kids[i]), ACT_OK);
    ck_assert_int_eq(act_info_of(sup, &is), ACT_OK);
    ck_assert_uint_eq(is.children, (uint32_t)i + 1); /* published before the answer */
  }
  ck_assert_int_eq(act_supervisor_terminate_child(sup, kids[1], NULL), ACT_OK);
  ck_assert_int_eq(act_info_of(sup, &is), ACT_OK);
  ck_assert_uint_eq(is.children, 2);
  /* every live process is counted on exactly one scheduler */
  long actors;
  uint64_t before = sched_messages(&actors);
  ck_assert_int_eq(actors, (long)act_list(NULL, 0));
  ck_assert_int_eq(actors, 3); /* the supervisor and two children */
  /* handled messages reach the scheduler's counter, which it publishes
   * before it sleeps (and every 256 turns): await that */
  for (int i = 0; i < 5; i++) act_send(kids[0], AG_PING, NULL, 0);
  ck_assert(log_wait(q_msg(kids[0], AG_PING), 5, TMO, NULL));
  int64_t dl = now_ms() + TMO;
  uint64_t after;
  while ((after = sched_messages(&actors)) < before + 5 && now_ms() < dl) sleep_ms(1);
  ck_assert_uint_ge(after, before + 5);
  /* the dead leave the actors count but not the messages */
  act_exit(sup, act_reason(ACT_SHUTDOWN));
  await_exit(sup);
  dl = now_ms() + TMO;
  while ((sched_messages(&actors), actors) > 0 && now_ms() < dl) sleep_ms(1);
  ck_assert_int_eq(actors, 0);
  ck_assert_uint_ge(sched_messages(&actors), after);
}
END_TEST

/* ------------------------------------------------ concurrency */

static atomic_bool g_done;
static int nil_init(void *a, void **s) {
  (void)a;
  *s = NULL;
  return 0;
}
static void churn_handle(void *s, act_msg_t *m) {
  (void)s;
  (void)m;
}
static const act_behaviour_t churn_b = {"churn", nil_init, churn_handle, NULL};

/* Actors that spawn two children (down to a depth) and die. */
static const act_behaviour_t tree_b;
static void tree_handle(void *s, act_msg_t *m) {
  (void)s;
  int64_t depth = payload_val(m);
  if (depth > 0 && !atomic_load(&g_done)) {
    act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
    for (int i = 0; i < 2; i++) {
      act_pid_t c = act_spawn(&tree_b, NULL, &o, NULL);
      int64_t d = depth - 1;
      act_send(c, 1, &d, sizeof d);
    }
  }
  act_stop(act_reason(ACT_NORMAL));
}
static const act_behaviour_t tree_b = {"tree", nil_init, tree_handle, NULL};

static atomic_int g_spawned;
static void *spawner_thread(void *a) {
  (void)a;
  while (!atomic_load(&g_done)) {
    atomic_fetch_add(&g_spawned, 1);
    act_pid_t p = act_spawn(&tree_b, NULL, NULL, NULL);
    int64_t d = 4;
    if (p) act_send(p, 1, &d, sizeof d);
    act_pid_t q = act_spawn(&churn_b, NULL, NULL, NULL);
    if (q) act_exit(q, act_reason(ACT_KILL));
    sched_yield();
  }
  return NULL;
}
START_TEST(list_while_actors_churn) {
  atomic_store(&g_done, false);
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, spawner_thread, NULL);
  static act_info_t v[512];
  int bad = 0;
  size_t maxn = 0;
  atomic_store(&g_spawned, 0);
  int64_t dl0 = now_ms() + 20000;
  for (int it = 0; (it < 400 || atomic_load(&g_spawned) < 300 || maxn == 0) && now_ms() < dl0;
       it++) {
    size_t n = act_list(v, 512);
    if (n > maxn) maxn = n;
    size_t m = n < 512 ? n : 512;
    for (size_t i = 0; i < m; i++) {
      if (v[i].pid == ACT_NOPID) bad++;
      if (memchr(v[i].behaviour, 0, sizeof v[i].behaviour) == NULL) bad++;
      else if (strcmp(v[i].behaviour, "tree") && strcmp(v[i].behaviour, "churn")) bad++;
      if (memchr(v[i].name, 0, sizeof v[i].name) == NULL) bad++;
      if (v[i].scheduler < 0 || v[i].scheduler >= 2) bad++;
      act_info_t one;
      int rc = act_info_of(v[i].pid, &one);
      if (rc == ACT_OK && one.pid != v[i].pid) bad++;
      if (rc != ACT_OK && rc != ACT_ENOPROC) bad++;
    }
  }
  atomic_store(&g_done, true);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(bad, 0);
  ck_assert_uint_gt(maxn, 0);
  /* everything dies down (trees stop once g_done is set) */
  int64_t dl = now_ms() + TMO;
  while (act_list(NULL, 0) > 0 && now_ms() < dl) sleep_ms(5);
  ck_assert_uint_eq(act_list(NULL, 0), 0);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("introspection");
  TCase *tc = rt_tcase("list", 2, 60);
  tcase_add_test(tc, list_shows_fields);
  tcase_add_test(tc, list_while_actors_churn);
  tcase_add_test(tc, children_and_scheduler_counters);
  suite_add_tcase(s, tc);
  TCase *t1 = rt_tcase("one_scheduler", 1, 60);
  tcase_add_test(t1, mailbox_len_and_messages);
  suite_add_tcase(s, t1);
  return s;
}

RT_MAIN(suite)
