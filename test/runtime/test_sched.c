/*
 * test_sched.c -- schedulers: fairness (an actor flooding itself does not
 * starve another actor on the same scheduler: the other's message is handled
 * within a few budgets of the flooder's messages, while the flood goes on);
 * a wake-up drains the whole mailbox (bursts from outside threads, with the
 * receiver idle between bursts, are all handled; several receivers on one
 * scheduler, several sending threads); per-turn budgets from opts.budget;
 * idle schedulers sleep (CPU time of an idle system stays near zero); a
 * high-priority actor runs before the normal ones already waiting.
 */
#include "rt_test.h"

#include <sys/resource.h>

/* ------------------------------------------------ fairness */

enum { F_START = 1, F_FLOOD, F_PING };

/* A message from another thread may wait a few turns longer than one sent
 * on the scheduler itself (a scheduler may favour its local run queue for a
 * bounded number of turns): bounded, not zero. */
#define OUTSIDE_TURNS 16

static atomic_long g_flood;   /* flood messages handled so far */
static atomic_bool g_stop;    /* flooder: stop re-sending */
static act_pid_t g_victim;
static long g_ping_at = 1000; /* the flooder pings the victim at this count */

static int nil_init(void *a, void **s) {
  (void)a;
  *s = NULL;
  return 0;
}
static void flood_handle(void *s, act_msg_t *m) {
  (void)s;
  if (m->type == F_START) {
    for (int i = 0; i < 100; i++) act_send(act_self(), F_FLOOD, NULL, 0);
    return;
  }
  long n = atomic_fetch_add(&g_flood, 1) + 1;
  if (n == g_ping_at) {
    int64_t v = n;
    act_send(g_victim, F_PING, &v, sizeof v);
  }
  if (!atomic_load(&g_stop)) act_send(act_self(), F_FLOOD, NULL, 0);
}
static const act_behaviour_t flood_b = {"flooder", nil_init, flood_handle, NULL};

static void victim_handle(void *s, act_msg_t *m) {
  (void)s;
  if (m->type == F_PING) {
    log_user(2, atomic_load(&g_flood)); /* first: the count now */
    log_user(1, payload_val(m));        /* the count when it was sent */
  }
}
static const act_behaviour_t victim_b = {"victim", nil_init, victim_handle, NULL};

static void fairness_with_budget(int budget) {
  atomic_store(&g_flood, 0);
  atomic_store(&g_stop, false);
  int eff = budget ? budget : ACT_DEFAULT_BUDGET;
  act_spawn_opts_t vo = {.scheduler = ACT_SCHED_NEXT};
  g_victim = act_spawn(&victim_b, NULL, &vo, NULL);
  act_spawn_opts_t fo = {.scheduler = ACT_SCHED_NEXT, .budget = budget};
  act_pid_t f = act_spawn(&flood_b, NULL, &fo, NULL);
  ck_assert(g_victim && f);
  act_send(f, F_START, NULL, 0);
  ev_t sent = {0}, seen = {0};
  ck_assert_msg(log_wait(q_user(2), 1, TMO, &seen), "victim starved");
  ck_assert(log_wait(q_user(1), 1, TMO, &sent));
  ck_assert_int_eq(sent.val, g_ping_at);
  long delta = (long)(seen.val - sent.val);
  ck_assert_msg(delta <= 3 * eff, "victim handled its message %ld flood messages late (budget %d)",
                delta, eff);
  /* and the flood was still going on: it continues afterwards */
  int64_t dl = now_ms() + TMO;
  while (atomic_load(&g_flood) < seen.val + 10 * eff && now_ms() < dl) sleep_ms(1);
  ck_assert_int_ge(atomic_load(&g_flood), seen.val + 10 * eff);
  /* a message from outside reaches the victim during the flood, too */
  for (int k = 0; k < 5; k++) {
    int64_t v = 0;
    act_send(g_victim, F_PING, &v, sizeof v);
    /* read after the send: the message is queued by now, so the count can
     * only be late (underestimating the wait), never early */
    long after = atomic_load(&g_flood);
    ck_assert(log_wait(q_user(2), 2 + k, TMO, &seen));
    ck_assert_msg(seen.val - after <= OUTSIDE_TURNS * eff,
                  "outside ping waited %ld flood messages (budget %d)", (long)(seen.val - after), eff);
  }
  atomic_store(&g_stop, true);
  act_exit(f, act_reason(ACT_KILL));
}

START_TEST(flood_does_not_starve_neighbour_budget16) { fairness_with_budget(16); }
END_TEST
START_TEST(flood_does_not_starve_neighbour_default_budget) { fairness_with_budget(0); }
END_TEST

/* Two floods and two victims on the same scheduler. */
START_TEST(two_floods_two_victims) {
  atomic_store(&g_flood, 0);
  atomic_store(&g_stop, false);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT, .budget = 8};
  g_victim = act_spawn(&victim_b, NULL, &o, NULL);
  act_pid_t v2 = act_spawn(&victim_b, NULL, &o, NULL);
  act_pid_t f1 = act_spawn(&flood_b, NULL, &o, NULL), f2 = act_spawn(&flood_b, NULL, &o, NULL);
  act_send(f1, F_START, NULL, 0);
  act_send(f2, F_START, NULL, 0);
  ck_assert(log_wait(q_user(2), 1, TMO, NULL));
  for (int k = 0; k < 5; k++) {
    int64_t v = 0;
    act_send(v2, F_PING, &v, sizeof v);
    long after = atomic_load(&g_flood); /* see fairness_with_budget */
    ev_t seen = {0};
    ck_assert(log_wait(q_user(2), 2 + k, TMO, &seen));
    ck_assert_msg(seen.val - after <= OUTSIDE_TURNS * 8, "waited %ld", (long)(seen.val - after));
  }
  atomic_store(&g_stop, true);
}
END_TEST

/* ------------------------------------------------ wake-ups drain */

enum { D_MSG = 1, D_END = 2 };
typedef struct counter {
  int64_t n;
  int ends;
  int ends_wanted;
  int tag;
} counter_t;
static int counter_init(void *a, void **s) {
  counter_t *c = calloc(1, sizeof *c);
  c->ends_wanted = ((int *)a)[0];
  c->tag = ((int *)a)[1];
  *s = c;
  return 0;
}
static void counter_handle(void *s, act_msg_t *m) {
  counter_t *c = s;
  if (m->type == D_MSG) c->n++;
  if (m->type == D_END && ++c->ends == c->ends_wanted) {
    c->ends = 0;
    log_user(c->tag, c->n);
  }
}
static void counter_term(void *s, act_reason_t r) {
  (void)r;
  free(s);
}
static const act_behaviour_t counter_b = {"counter", counter_init, counter_handle, counter_term};

START_TEST(burst_from_outside_all_handled) {
  int args[2] = {1, 10};
  act_pid_t c = act_spawn(&counter_b, args, NULL, NULL);
  const int N = 20000;
  for (int i = 0; i < N; i++) act_send(c, D_MSG, NULL, 0);
  act_send(c, D_END, NULL, 0);
  ev_t e = {0};
  ck_assert_msg(log_wait(q_user(10), 1, TMO, &e), "burst not drained");
  ck_assert_int_eq(e.val, N);
  /* bursts of varied sizes with the receiver going idle in between */
  int64_t total = N;
  unsigned seed = 12345;
  for (int b = 0; b < 60; b++) {
    seed = seed * 1103515245u + 12345u;
    int k = 1 + (int)((seed >> 16) % 300);
    for (int i = 0; i < k; i++) act_send(c, D_MSG, NULL, 0);
    act_send(c, D_END, NULL, 0);
    total += k;
    ck_assert_msg(log_wait(q_user(10), 2 + b, TMO, &e), "burst %d not drained", b);
    ck_assert_int_eq(e.val, total);
    if (b % 10 == 0) sleep_ms(5); /* let the scheduler fall asleep */
  }
}
END_TEST

typedef struct burst_arg {
  act_pid_t to[4];
  int n;
} burst_arg_t;
static void *burst_thread(void *a) {
  burst_arg_t *b = a;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < b->n; i++)
      for (int j = 0; j < 4; j++) act_send(b->to[j], D_MSG, NULL, 0);
    for (int j = 0; j < 4; j++) act_send(b->to[j], D_END, NULL, 0);
  }
  return NULL;
}
START_TEST(bursts_to_many_receivers_on_one_scheduler) {
  burst_arg_t ba = {.n = 250};
  int args[4][2];
  for (int j = 0; j < 4; j++) {
    args[j][0] = 2; /* one END per thread per round */
    args[j][1] = 20 + j;
    act_spawn_opts_t o = {.scheduler = ACT_SCHED_CALLER};
    ba.to[j] = act_spawn(&counter_b, args[j], &o, NULL);
  }
  pthread_t t1, t2;
  pthread_create(&t1, NULL, burst_thread, &ba);
  pthread_create(&t2, NULL, burst_thread, &ba);
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  for (int j = 0; j < 4; j++) {
    ev_t e = {0};
    int n = 0;
    /* the ENDs of the two threads interleave: the final count is exact */
    ck_assert_msg(log_wait(q_user(20 + j), 20, TMO, &e), "receiver %d not drained", j);
    n = log_count(q_user(20 + j));
    ck_assert_int_eq(n, 20);
    ck_assert_int_eq(e.val, 2 * 20 * 250);
  }
}
END_TEST

/* opts.budget bounds the messages of a turn: with budget 1, two actors on
 * one scheduler that both have a backlog alternate. */
static void alt_handle(void *s, act_msg_t *m) {
  (void)s;
  log_user(30, m->type);
}
static const act_behaviour_t alt_b = {"alt", nil_init, alt_handle, NULL};
static act_pid_t g_alt[2];
static void fn_fill_both(void *a) {
  (void)a;
  for (int i = 0; i < 10; i++) {
    act_send(g_alt[0], 1, NULL, 0);
  }
  for (int i = 0; i < 10; i++) act_send(g_alt[1], 2, NULL, 0);
}
START_TEST(budget_one_alternates) {
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT, .budget = 1};
  g_alt[0] = act_spawn(&alt_b, NULL, &o, NULL);
  g_alt[1] = act_spawn(&alt_b, NULL, &o, NULL);
  act_pid_t ag = spawn_agent(1, false);
  /* let both inits run first */
  act_send(g_alt[0], 0, NULL, 0);
  act_send(g_alt[1], 0, NULL, 0);
  ck_assert(log_wait(q_user(30), 2, TMO, NULL));
  agent_run(ag, fn_fill_both, NULL);
  ck_assert(log_wait(q_user(30), 22, TMO, NULL));
  /* after the first few, the two interleave: never more than 2 in a row
   * from the same actor once both have a backlog */
  int run = 0, maxrun = 0, prev = -1;
  for (int i = 3; i <= 22; i++) {
    ev_t e = {0};
    log_nth(q_user(30), i, &e);
    run = (e.val == prev) ? run + 1 : 1;
    prev = (int)e.val;
    if (i > 12) continue; /* the tail is one actor alone */
    if (run > maxrun) maxrun = run;
  }
  ck_assert_int_le(maxrun, 2);
}
END_TEST


/* ------------------------------------------------ priority */

/* process_flag(priority, high): on one scheduler, a driver makes 50 normal
 * actors runnable, then one more; each takes a ticket when it runs.  The
 * last one made runnable runs first when it is high, last when it is not:
 * the contrast shows the test can fail. */
enum { P_GO = 1, P_TICK, P_SET };
#define P_NORMALS 50
static atomic_int g_ticket;
static act_pid_t g_pr[P_NORMALS + 1];

static void ticket_handle(void *s, act_msg_t *m) {
  (void)s;
  if (m->type == P_SET) { /* process_flag(priority, L) from inside: the old level */
    log_user(5, act_set_priority((act_priority_t)payload_val(m)));
    return;
  }
  int t = atomic_fetch_add(&g_ticket, 1);
  if (m->type == P_TICK && payload_val(m) == 1) log_user(3, t); /* the last one made runnable */
  log_user(4, t);
}
static const act_behaviour_t ticket_b = {"ticket", nil_init, ticket_handle, NULL};

static void driver_handle(void *s, act_msg_t *m) {
  (void)s;
  (void)m;
  for (int i = 0; i <= P_NORMALS; i++) {
    int64_t last = i == P_NORMALS;
    act_send(g_pr[i], P_TICK, &last, sizeof last);
  }
}
static const act_behaviour_t driver_b = {"driver", nil_init, driver_handle, NULL};

/* 50 normal actors and the one that is made runnable last, spawned at prio */
static void spawn_ticketers(act_priority_t prio) {
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_ON(0)};
  for (int i = 0; i < P_NORMALS; i++) g_pr[i] = act_spawn(&ticket_b, NULL, &o, NULL);
  act_spawn_opts_t ho = {.scheduler = ACT_SCHED_ON(0), .priority = prio};
  g_pr[P_NORMALS] = act_spawn(&ticket_b, NULL, &ho, NULL);
}

static void kill_ticketers(void) {
  for (int i = 0; i <= P_NORMALS; i++) act_exit(g_pr[i], act_reason(ACT_KILL));
}

/* Round number `round` of the test: the ticket the last one drew. */
static int64_t ticket_of_last(int round) {
  atomic_store(&g_ticket, 0);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_ON(0)};
  act_pid_t d = act_spawn(&driver_b, NULL, &o, NULL);
  act_send(d, P_GO, NULL, 0);
  ev_t e = {0};
  ck_assert(log_wait(q_user(3), round, TMO, &e));
  ck_assert(log_wait(q_user(4), round * (P_NORMALS + 1), TMO, NULL)); /* all ran */
  act_exit(d, act_reason(ACT_KILL));
  return e.val;
}

START_TEST(high_priority_runs_before_queued_normals) {
  spawn_ticketers(ACT_PRIORITY_NORMAL);
  ck_assert_int_eq(ticket_of_last(1), P_NORMALS); /* FIFO: last */
  kill_ticketers();
  spawn_ticketers(ACT_PRIORITY_HIGH);
  ck_assert_int_eq(ticket_of_last(2), 0); /* first */
  kill_ticketers();
}
END_TEST

/* The same actor, normal at spawn, raises itself (act_set_priority) and
 * runs first; lowers itself and runs last again. */
static int64_t set_priority_of_last(act_priority_t level, int k) {
  int64_t v = level;
  act_send(g_pr[P_NORMALS], P_SET, &v, sizeof v);
  ev_t e = {0};
  ck_assert(log_wait(q_user(5), k, TMO, &e));
  return e.val;
}

START_TEST(priority_changed_by_the_actor_itself) {
  spawn_ticketers(ACT_PRIORITY_NORMAL);
  ck_assert_int_eq(ticket_of_last(1), P_NORMALS);
  ck_assert_int_eq(set_priority_of_last(ACT_PRIORITY_HIGH, 1), ACT_PRIORITY_NORMAL);
  ck_assert_int_eq(ticket_of_last(2), 0);
  ck_assert_int_eq(set_priority_of_last(ACT_PRIORITY_NORMAL, 2), ACT_PRIORITY_HIGH);
  ck_assert_int_eq(ticket_of_last(3), P_NORMALS);
  kill_ticketers();
}
END_TEST

/* Idle schedulers sleep: no busy spinning when nothing happens. */
static int64_t cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}
START_TEST(idle_schedulers_sleep) {
  act_pid_t a = spawn_agent(1, false), b = spawn_agent(2, false);
  ck_assert(ag_alive(a) && ag_alive(b));
  sleep_ms(50); /* past any post-activity spinning */
  int64_t c0 = cpu_us(), t0 = now_ms();
  sleep_ms(500);
  int64_t used = cpu_us() - c0, wall = now_ms() - t0;
  /* two schedulers spinning would use ~2 * wall; allow 5% of one core */
  ck_assert_msg(used < wall * 1000 / 20, "idle system used %lld us of CPU in %lld ms",
                (long long)used, (long long)wall);
  ck_assert(ag_alive(a)); /* and it still wakes up */
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sched");
  TCase *t1 = rt_tcase("one_scheduler", 1, 60);
  tcase_add_test(t1, flood_does_not_starve_neighbour_budget16);
  tcase_add_test(t1, flood_does_not_starve_neighbour_default_budget);
  tcase_add_test(t1, two_floods_two_victims);
  tcase_add_test(t1, bursts_to_many_receivers_on_one_scheduler);
  tcase_add_test(t1, budget_one_alternates);
  tcase_add_test(t1, high_priority_runs_before_queued_normals);
  tcase_add_test(t1, priority_changed_by_the_actor_itself);
  suite_add_tcase(s, t1);
  TCase *t2 = rt_tcase("two_schedulers", 2, 60);
  tcase_add_test(t2, burst_from_outside_all_handled);
  tcase_add_test(t2, idle_schedulers_sleep);
  suite_add_tcase(s, t2);
  return s;
}

RT_MAIN(suite)
