/*
 * test_reports.c -- supervisor reports in OTP's words (issue 8, issue 9 §2).
 *
 * A handler installed with act_set_report_handler records every report;
 * each test makes a supervisor do one thing OTP reports and checks the
 * context's word, the supervisor's name, the offender (id, pid, restart
 * type, shutdown, behaviour) and the reason, and that what OTP keeps quiet
 * (a transient child ending normally, a clean shutdown) gives no report.
 */
#include "sup_test.h"

#define REPORTS_MAX 64

typedef struct rec {
  act_report_context_t context;
  char context_name[24];
  act_pid_t sup;
  char sup_name[ACT_NAME_MAX];
  char child_id[ACT_NAME_MAX];
  act_pid_t child_pid;
  char behaviour[32];
  act_restart_t restart;
  int shutdown_ms;
  act_child_type_t type;
  act_reason_t reason;
} rec_t;

static rec_t g_recs[REPORTS_MAX];
static int g_nrecs;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static act_pid_t g_self_seen; /* act_self() inside the handler */
static bool g_bad_ud;         /* the handler's argument did not come back */

static void record(const act_sup_report_t *r, void *ud) {
  pthread_mutex_lock(&g_mu);
  if (ud != &g_recs) g_bad_ud = true; /* checked by the tests: no ck_assert off the test's thread */
  if (g_nrecs < REPORTS_MAX) {
    rec_t *o = &g_recs[g_nrecs++];
    o->context = r->context;
    snprintf(o->context_name, sizeof o->context_name, "%s", r->context_name);
    o->sup = r->supervisor;
    snprintf(o->sup_name, sizeof o->sup_name, "%s", r->supervisor_name);
    snprintf(o->child_id, sizeof o->child_id, "%s", r->child_id);
    o->child_pid = r->child_pid;
    snprintf(o->behaviour, sizeof o->behaviour, "%s", r->behaviour);
    o->restart = r->restart_type;
    o->shutdown_ms = r->shutdown_ms;
    o->type = r->child_type;
    o->reason = r->reason;
    g_self_seen = act_self();
  }
  pthread_cond_broadcast(&g_cv);
  pthread_mutex_unlock(&g_mu);
}

/* The nth (1-based) report of this context about child id; waits for it. */
static rec_t wait_report(act_report_context_t ctx, const char *id, int nth) {
  rec_t out;
  memset(&out, 0, sizeof out);
  int64_t deadline = now_ms() + TMO;
  pthread_mutex_lock(&g_mu);
  for (;;) {
    int seen = 0;
    for (int i = 0; i < g_nrecs; i++)
      if (g_recs[i].context == ctx && strcmp(g_recs[i].child_id, id) == 0 && ++seen == nth) {
        out = g_recs[i];
        pthread_mutex_unlock(&g_mu);
        return out;
      }
    if (now_ms() > deadline) break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&g_cv, &g_mu, &ts);
  }
  pthread_mutex_unlock(&g_mu);
  ck_abort_msg("no report #%d of context %d about %s", nth, (int)ctx, id);
  return out;
}

static int count_reports(act_report_context_t ctx, const char *id) {
  int n = 0;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_nrecs; i++)
    if (g_recs[i].context == ctx && strcmp(g_recs[i].child_id, id) == 0) n++;
  pthread_mutex_unlock(&g_mu);
  return n;
}

static act_pid_t start_named_sup(const act_sup_spec_t *spec, const char *name, int *err) {
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT, .name = name};
  return act_supervisor_start(spec, &o, err);
}

static void setup(void) {
  rt_start(2);
  pthread_mutex_lock(&g_mu);
  g_nrecs = 0;
  pthread_mutex_unlock(&g_mu);
  act_set_report_handler(record, &g_recs);
}

/* A child that ignores its supervisor's `shutdown` (it asks the parent's
 * EXIT as a message and traps it): only the kill at its shutdown time ends it. */
static int stubborn_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  act_parent_exit_as_message(true);
  act_trap_exit(true);
  log_user(70, 1);
  return ACT_OK;
}
static void stubborn_handle(void *state, act_msg_t *m) { (void)state, (void)m; }
static const act_behaviour_t stubborn = {"stubborn", stubborn_init, stubborn_handle, NULL};

/* progress report at start and restart; child_terminated with the crash. */
START_TEST(started_and_child_terminated) {
  static agent_args_t a = {.tag = 1}; /* read again by restarts, maybe after we return */
  act_child_spec_t k = kid("worker_a", &a, ACT_PERMANENT, 1000);
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 10, 5000}, &k, 1};
  int err = 0;
  act_pid_t sup = start_named_sup(&spec, "rsup", &err);
  ck_assert_msg(sup, "start: %d", err);
  act_pid_t p = pid_of_tag(1);
  rec_t r = wait_report(ACT_REPORT_STARTED, "worker_a", 1);
  ck_assert_str_eq(r.context_name, "started");
  ck_assert(r.sup == sup);
  ck_assert(g_self_seen == sup); /* the handler runs inside the supervisor */
  ck_assert(!g_bad_ud);
  ck_assert_str_eq(r.sup_name, "rsup");
  ck_assert(r.child_pid == p);
  ck_assert_str_eq(r.behaviour, "agent");
  ck_assert_int_eq(r.restart, ACT_PERMANENT);
  ck_assert_str_eq(act_restart_type_name(r.restart), "permanent");
  ck_assert_int_eq(r.shutdown_ms, 1000);
  ck_assert_str_eq(act_child_type_name(r.type), "worker");

  send_crash(p);
  r = wait_report(ACT_REPORT_CHILD_TERMINATED, "worker_a", 1);
  ck_assert_str_eq(r.context_name, "child_terminated");
  ck_assert(r.child_pid == p); /* the offender is the pid that died */
  ck_assert_int_eq(r.reason.kind, ACT_ERROR);
  ck_assert_str_eq(r.reason.text, "crash 1");
  r = wait_report(ACT_REPORT_STARTED, "worker_a", 2); /* the restart */
  ck_assert(r.child_pid != p && r.child_pid != ACT_NOPID);
  ck_assert(log_wait(q_init_tag(1), 2, TMO, NULL));
  ck_assert(r.child_pid == pid_of_tag(1));

  /* a permanent child's normal exit is reported too (OTP's do_restart) */
  send_stop(r.child_pid, act_reason(ACT_NORMAL));
  rec_t n = wait_report(ACT_REPORT_CHILD_TERMINATED, "worker_a", 2);
  ck_assert_str_eq(n.reason.text, "normal");
  ck_assert_int_eq(count_reports(ACT_REPORT_SHUTDOWN_ERROR, "worker_a"), 0);
}
END_TEST

/* A transient child ending normally or with {shutdown,_} is quiet; a
 * temporary one that crashes is reported (and not restarted). */
START_TEST(quiet_ends_are_not_reported) {
  static agent_args_t t = {.tag = 2}, tmp = {.tag = 3};
  act_child_spec_t k[2] = {kid("trans", &t, ACT_TRANSIENT, 1000),
                           kid("temp", &tmp, ACT_TEMPORARY, 1000)};
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 10, 5000}, k, 2};
  int err = 0;
  act_pid_t sup = start_named_sup(&spec, "qsup", &err);
  ck_assert(sup);
  wait_report(ACT_REPORT_STARTED, "temp", 1);
  act_pid_t pt = pid_of_tag(2), pm = pid_of_tag(3);
  send_stop(pt, act_reason_shutdown("bye"));
  send_crash(pm);
  rec_t r = wait_report(ACT_REPORT_CHILD_TERMINATED, "temp", 1);
  ck_assert_str_eq(r.reason.text, "crash 3");
  ck_assert_int_eq(r.restart, ACT_TEMPORARY);
  /* pt's EXIT and our request come from different senders, unordered:
   * ask until the supervisor has seen it (bounded) */
  act_sup_counts_t c = {0};
  for (int64_t dl = now_ms() + TMO; now_ms() < dl; sleep_ms(5)) {
    ck_assert_int_eq(act_supervisor_count_children(sup, &c), ACT_OK);
    if (c.active == 0) break;
  }
  ck_assert_int_eq(c.active, 0);
  ck_assert_int_eq(c.specs, 1); /* trans stays listed, temp is gone */
  ck_assert_int_eq(count_reports(ACT_REPORT_CHILD_TERMINATED, "trans"), 0);
  ck_assert_int_eq(count_reports(ACT_REPORT_STARTED, "temp"), 1); /* not restarted */
}
END_TEST

/* terminate_child of a child that ignores `shutdown`: killed at its
 * shutdown time, reported as shutdown_error with reason killed; a child
 * that stops cleanly gives no report. */
START_TEST(shutdown_error_when_killed_at_its_timeout) {
  static agent_args_t a = {.tag = 4};
  act_child_spec_t k[2] = {kid_of("stub", &stubborn, NULL, ACT_PERMANENT, 100),
                           kid("clean", &a, ACT_PERMANENT, 1000)};
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 10, 5000}, k, 2};
  int err = 0;
  act_pid_t sup = start_named_sup(&spec, "ssup", &err);
  ck_assert(sup);
  act_pid_t stub = wait_report(ACT_REPORT_STARTED, "stub", 1).child_pid;
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "stub"), ACT_OK);
  rec_t r = wait_report(ACT_REPORT_SHUTDOWN_ERROR, "stub", 1);
  ck_assert_str_eq(r.context_name, "shutdown_error");
  ck_assert(r.child_pid == stub);
  ck_assert_int_eq(r.reason.kind, ACT_KILLED);
  ck_assert_str_eq(r.reason.text, "killed");
  ck_assert_int_eq(r.shutdown_ms, 100);
  ck_assert_int_eq(act_supervisor_terminate_child(sup, ACT_NOPID, "clean"), ACT_OK);
  ck_assert_int_eq(count_reports(ACT_REPORT_SHUTDOWN_ERROR, "clean"), 0);
  ck_assert_int_eq(count_reports(ACT_REPORT_CHILD_TERMINATED, "stub"), 0);
}
END_TEST

/* A static child whose init fails: start_error with init's error, and the
 * supervisor's start fails. */
START_TEST(start_error_for_a_static_child) {
  static atomic_int fail;
  atomic_store(&fail, 1);
  static agent_args_t ok = {.tag = 5}, bad = {.tag = 6};
  bad.fail_init = &fail;
  act_child_spec_t k[2] = {kid("fine", &ok, ACT_PERMANENT, 1000),
                           kid("broken", &bad, ACT_PERMANENT, 1000)};
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 10, 5000}, k, 2};
  int err = 0;
  act_pid_t sup = start_named_sup(&spec, "esup", &err);
  ck_assert(sup == ACT_NOPID);
  ck_assert_int_eq(err, ACT_EINVAL);
  rec_t r = wait_report(ACT_REPORT_START_ERROR, "broken", 1);
  ck_assert_str_eq(r.context_name, "start_error");
  ck_assert_str_eq(r.sup_name, "esup");
  ck_assert(r.child_pid == ACT_NOPID);
  ck_assert_str_eq(r.reason.text, act_strerror(ACT_EINVAL));
  ck_assert_int_eq(count_reports(ACT_REPORT_STARTED, "broken"), 0);
  ck_assert_int_eq(count_reports(ACT_REPORT_STARTED, "fine"), 1);
}
END_TEST

/* Intensity 1 in 5 s, two crashes: child_terminated twice, then shutdown
 * with reason reached_max_restart_intensity and the second crash's pid as
 * the offender; the supervisor exits with shutdown. */
START_TEST(shutdown_at_max_restart_intensity) {
  static agent_args_t a = {.tag = 7};
  act_child_spec_t k = kid("flaky", &a, ACT_PERMANENT, 1000);
  act_sup_spec_t spec = {ACT_SUP_FLAGS_DEFAULT, &k, 1};
  int err = 0;
  act_pid_t sup = start_named_sup(&spec, "isup", &err);
  ck_assert(sup);
  act_pid_t w = spawn_agent(99, false);
  ag_monitor(w, sup);
  act_pid_t p1 = pid_of_tag(7);
  send_crash(p1);
  wait_report(ACT_REPORT_STARTED, "flaky", 2);
  ck_assert(log_wait(q_init_tag(7), 2, TMO, NULL));
  act_pid_t p2 = pid_of_tag(7);
  send_crash(p2);
  rec_t r = wait_report(ACT_REPORT_SHUTDOWN, "flaky", 1);
  ck_assert_str_eq(r.context_name, "shutdown");
  ck_assert_str_eq(r.reason.text, "reached_max_restart_intensity");
  ck_assert(r.child_pid == p2);
  ck_assert_str_eq(r.sup_name, "isup");
  ck_assert_int_eq(count_reports(ACT_REPORT_CHILD_TERMINATED, "flaky"), 2);
  ck_assert_int_eq(wait_down(w, sup).kind, ACT_SHUTDOWN);
  ck_assert_int_eq(count_reports(ACT_REPORT_STARTED, "flaky"), 2); /* no third start */
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("reports");
  TCase *tc = checked_case(s, "supervisor", setup, rt_teardown, 60);
  tcase_add_test(tc, started_and_child_terminated);
  tcase_add_test(tc, quiet_ends_are_not_reported);
  tcase_add_test(tc, shutdown_error_when_killed_at_its_timeout);
  tcase_add_test(tc, start_error_for_a_static_child);
  tcase_add_test(tc, shutdown_at_max_restart_intensity);
  return s;
}

RT_MAIN(suite)
