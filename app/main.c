/*
 * main.c -- start Chatter: read the configuration, migrate the database,
 * start the schedulers and the supervision tree of DESIGN.md, and on
 * SIGTERM or SIGINT drain it and shut it down in order (SIGHUP reopens
 * LOG_FILE).
 *
 * The drain (issue 9 §2), bounded by CHATTER_SHUTDOWN_MS (10 s):
 *   1. stop_accepting: every acceptor closes its listening socket (a new
 *      connect is refused from then on) and closes its conns as they become
 *      idle: HTTP after the response being written, a WebSocket with 1001
 *      ("going away", so that clients reconnect elsewhere) at once or right
 *      after the reply to the request its session is handling -- a `send`
 *      is answered `sent` (committed, broadcast) or `unavailable` first.
 *   2. drain: wait until no socket is left (a peer answers our close frame,
 *      or is cut CLOSE_GRACE_MS later) and the writer holds no insert (what
 *      a closed socket's session had sent is still committed and pushed).
 *   3. stop_tree: the root supervisor stops its children in reverse start
 *      order (endpoint, sessions, presence, pubsub, repo); exit 0.
 * If the bound passes first (a database that cannot commit, a peer that
 * holds a request), the log says what was pending; the writer drops its
 * connection, so every insert it held is answered `unavailable` now; every
 * WebSocket left gets 1001; the writer's backend, which may still commit
 * once it runs again, is terminated from a fresh connection (so a send
 * answered `unavailable` is not stored later: issue 8 item 15); exit 1.
 * A second SIGTERM or SIGINT during the drain exits at once, 128 + signal.
 * Each phase is one log line: `shutdown phase=... key=value ...`.
 */
#include "app.h"
#include "dashboard.h"
#include "db.h"
#include "endpoint.h"
#include "presence.h"
#include "pubsub.h"
#include "repo.h"
#include "telemetry.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int endpoint_static_open(const char *root);

#define REPO_MAX_POOL 64

static act_child_spec_t g_repo_children[REPO_MAX_POOL];
static act_sup_spec_t g_repo_spec;
static act_child_spec_t g_endpoint_children[256];
static act_sup_spec_t g_endpoint_spec;
static act_sup_spec_t g_sessions_spec;
static act_child_spec_t g_root_children[5];
static act_sup_spec_t g_root_spec;

static act_child_spec_t worker(const char *id, const act_behaviour_t *b, void *args) {
  act_child_spec_t c;
  memset(&c, 0, sizeof c);
  snprintf(c.id, sizeof c.id, "%.47s", id);
  c.behaviour = b;
  c.args = args;
  c.restart = ACT_PERMANENT;
  c.type = ACT_WORKER;
  c.scheduler = ACT_SCHED_NEXT;
  return c;
}

static act_child_spec_t supervisor(const char *id, act_sup_spec_t *spec) {
  act_child_spec_t c = worker(id, act_supervisor(), spec);
  c.type = ACT_SUPERVISOR;
  c.name = id; /* a literal; the supervisor copies it */
  return c;
}

static void build_tree(void) {
  const app_config_t *cfg = app_config();
  static char repo_names[REPO_MAX_POOL][24];
  for (int i = 0; i < cfg->db_pool && i < REPO_MAX_POOL; i++) {
    snprintf(repo_names[i], sizeof repo_names[i], "repo.%d", i & 0xff);
    g_repo_children[i] = worker(repo_names[i], repo_conn_behaviour(), (void *)(intptr_t)i);
    g_repo_children[i].name = repo_names[i];
    g_repo_children[i].priority = ACT_PRIORITY_HIGH; /* see pubsub's below */
  }
  /* A connection actor that crashes is restarted alone; the pool gives up
   * (and escalates) only on a storm. */
  g_repo_spec = (act_sup_spec_t){{ACT_ONE_FOR_ONE, 10, 10000}, g_repo_children,
                                 (size_t)cfg->db_pool};

  /* One acceptor per scheduler, each pinned to its own. */
  int n = act_scheduler_count();
  static char acc_names[256][24];
  for (int i = 0; i < n && i < 256; i++) {
    snprintf(acc_names[i], sizeof acc_names[i], "acceptor.%d", i & 0xff);
    g_endpoint_children[i] = worker(acc_names[i], acceptor_behaviour(), NULL);
    g_endpoint_children[i].name = acc_names[i];
    g_endpoint_children[i].scheduler = ACT_SCHED_ON(i);
  }
  g_endpoint_spec = (act_sup_spec_t){{ACT_ONE_FOR_ONE, 3, 5000}, g_endpoint_children, (size_t)n};

  /* Sessions are independent: one's crash says nothing about another's,
   * so the budget is wide; it exists to stop a runaway storm. */
  g_sessions_spec = (act_sup_spec_t){{ACT_ONE_FOR_ONE, 10000, 1000}, NULL, 0};

  act_child_spec_t pubsub = worker(APP_NAME_PUBSUB, pubsub_behaviour(), NULL);
  pubsub.name = APP_NAME_PUBSUB;
  /* High priority (act.h), with the repo's connections: a message's fan-out
   * is a turn of every session, and a second message that the repo commits
   * meanwhile must not wait behind all of them at the repo and at pubsub.
   * Run first, it reaches the sessions still waiting for the first one, and
   * each of those writes both in one sendmsg. */
  pubsub.priority = ACT_PRIORITY_HIGH;
  act_child_spec_t presence = worker(APP_NAME_PRESENCE, presence_behaviour(), NULL);
  presence.name = APP_NAME_PRESENCE;
  presence.priority = ACT_PRIORITY_HIGH; /* every welcome, claim and join waits on it */
  /* No telemetry actor: the counters are atomics (telemetry.c) that need no
   * process; the do-nothing one kept here hid a race in a restarted presence
   * by its placement, fixed since (presence.c, rebuild.test.mjs). */
  g_root_children[0] = supervisor(APP_NAME_REPO_SUP, &g_repo_spec);
  g_root_children[1] = pubsub;
  g_root_children[2] = presence;
  g_root_children[3] = supervisor(APP_NAME_SESSIONS, &g_sessions_spec);
  g_root_children[3].priority = ACT_PRIORITY_HIGH; /* every new socket waits on it */
  g_root_children[4] = supervisor(APP_NAME_ENDPOINT, &g_endpoint_spec);
  g_root_spec = (act_sup_spec_t){{ACT_ONE_FOR_ONE, 3, 5000}, g_root_children, 5};
}

static void migrate(void) {
  const app_config_t *cfg = app_config();
  char err[512] = "";
  int applied = 0;
  if (db_migrate(cfg->database_url, cfg->sql_dir, &applied, err, sizeof err) < 0) {
    app_log(LOG_WARN, "migrations not applied (%s); the repo retries when it connects", err);
    return;
  }
  repo_mark_migrated();
  app_log(LOG_INFO, "database migrated (%d new)", applied);
}

/* The runtime's supervisor reports (OTP's words, act.h) as logfmt fields in
 * the event's text: supervisor=sessions context=child_terminated child=...
 * pid=<0.12.0> reason="...".  Progress reports (context=started) are
 * debug-level, as OTP 21+'s logger leaves them out by default: 20,000
 * sessions would be 20,000 lines.  Pids are written as the dashboard
 * writes them, so a line and the tree can be matched. */
static void log_sup_report(const act_sup_report_t *r, void *ud) {
  (void)ud;
  int level = r->context == ACT_REPORT_STARTED ? LOG_DEBUG : LOG_ERROR;
  if (level < app_config()->log_level) return; /* before any formatting */
  char sup[32], pid[32], shutdown[16];
  dash_pid_format(r->supervisor, sup, sizeof sup);
  dash_pid_format(r->child_pid, pid, sizeof pid);
  if (r->shutdown_ms == ACT_BRUTAL_KILL) snprintf(shutdown, sizeof shutdown, "brutal_kill");
  else if (r->shutdown_ms == ACT_SHUTDOWN_INFINITY) snprintf(shutdown, sizeof shutdown, "infinity");
  else snprintf(shutdown, sizeof shutdown, "%d", r->shutdown_ms);
  app_log(level,
          "supervisor=%s context=%s child=%s pid=%s mfargs=%s restart_type=%s "
          "shutdown=%s child_type=%s reason=\"%s\"",
          r->supervisor_name[0] ? r->supervisor_name : sup, r->context_name,
          r->child_id[0] ? r->child_id : "undefined", r->child_pid ? pid : "undefined",
          r->behaviour, act_restart_type_name(r->restart_type), shutdown,
          act_child_type_name(r->child_type), r->reason.text);
}

/* If the tree gives up on its own (the root exceeded its intensity), the
 * process ends too, as an OTP application's permanent top does, with
 * status 1 (systemd's Restart=on-failure starts it again). */
static _Atomic bool g_stopping;
static _Atomic bool g_tree_died;

static void *watch_root(void *arg) {
  act_pid_t root = *(act_pid_t *)arg;
  act_reason_t why;
  if (act_await_exit(root, ACT_INFINITY, &why) == ACT_OK && !atomic_load(&g_stopping)) {
    app_log(LOG_ERROR, "the supervision tree exited (%s)", why.text);
    atomic_store(&g_tree_died, true);
    kill(getpid(), SIGTERM);
  }
  return NULL;
}

/* ------------------------------------------------------------ the drain */

#define DRAIN_POLL_MS 10     /* the drain's checks: 100 wake-ups a second,
                                only while shutting down; each waits for a
                                signal too (a second SIGTERM, SIGHUP) */
#define DRAIN_CALL_MS 1000   /* an acceptor answers ENDPOINT_DRAIN within
                                one turn; this bounds a stuck one */
#define ABANDON_MS 1000      /* past the bound: for the writer to answer
                                what it held, then for the 1001s to leave */
#define FENCE_CONNECT_S "2"  /* libpq's connect_timeout (its minimum is 2 s) */

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *sig_name(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal";
}

/* Waits up to ms for a signal of set.  A second SIGTERM/SIGINT ends the
 * process now; SIGHUP reopens the log, as always. */
static void wait_or_signal(const sigset_t *set, uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  int sig = sigtimedwait(set, NULL, &ts);
  if (sig == SIGHUP) {
    app_log_reopen();
    app_log(LOG_INFO, "SIGHUP: log reopened");
  } else if (sig == SIGTERM || sig == SIGINT) {
    app_log(LOG_WARN, "shutdown phase=abort signal=%s: a second signal, exiting now with %d",
            sig_name(sig), 128 + sig);
    _exit(128 + sig);
  }
}

/* Sends type to every acceptor; ENDPOINT_DRAIN as a call, so that the
 * listening sockets are closed when this returns.  How many answered. */
static int tell_acceptors(int type) {
  int n = act_scheduler_count(), told = 0;
  for (int i = 0; i < n && i < 256; i++) {
    char name[24];
    snprintf(name, sizeof name, "acceptor.%d", i);
    act_pid_t a = act_whereis(name);
    if (!a) continue;
    if (type != ENDPOINT_DRAIN) {
      told += act_send(a, type, NULL, 0) == ACT_OK;
      continue;
    }
    act_msg_t *r = NULL;
    if (act_call(a, ENDPOINT_DRAIN, NULL, 0, &r, DRAIN_CALL_MS) == ACT_OK) told++;
    if (r) act_msg_free(r);
  }
  return told;
}

/* The writer's former backend may hold an INSERT it has not run yet (a
 * stopped or hung server): ended now, from a fresh connection, it never
 * commits it (a backend handles a pending terminate before its next
 * command).  Blocking is fine here: main is no actor, and the connect is
 * bounded by FENCE_CONNECT_S, the statement by statement_timeout. */
static void fence_writer_backend(int pid) {
  char arg[16];
  snprintf(arg, sizeof arg, "%d", pid);
  const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
  const char *vals[] = {app_config()->database_url, FENCE_CONNECT_S,
                        "-c statement_timeout=1000", "chatter shutdown fence", NULL};
  PGconn *pg = PQconnectdbParams(keys, vals, 1);
  bool ended = false;
  if (PQstatus(pg) == CONNECTION_OK) {
    const char *params[] = {arg};
    PGresult *res = PQexecParams(pg, "SELECT pg_terminate_backend($1::int)", 1, NULL, params,
                                 NULL, NULL, 0);
    ended = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
            strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
  }
  app_log(ended ? LOG_INFO : LOG_WARN, "shutdown phase=fence backend=%d ended=%s", pid,
          ended ? "yes" : "no");
  PQfinish(pg);
}

/* The drain of the top of this file; returns the exit status (or exits). */
static int shut_down(act_pid_t root, int sig, const sigset_t *set) {
  const app_config_t *cfg = app_config();
  uint64_t t0 = mono_ms(), deadline = t0 + (uint64_t)cfg->shutdown_ms;
  app_log(LOG_INFO, "shutdown phase=begin signal=%s bound_ms=%d conns=%ld", sig_name(sig),
          cfg->shutdown_ms, endpoint_open_conns());
  int acceptors = tell_acceptors(ENDPOINT_DRAIN);
  app_log(LOG_INFO, "shutdown phase=listeners_closed acceptors=%d conns=%ld ms=%llu",
          acceptors, endpoint_open_conns(), (unsigned long long)(mono_ms() - t0));

  for (uint64_t now = mono_ms(); now < deadline; now = mono_ms()) {
    if (endpoint_open_conns() == 0 && repo_writer_idle()) break;
    wait_or_signal(set, deadline - now < DRAIN_POLL_MS ? deadline - now : DRAIN_POLL_MS);
  }
  if (endpoint_open_conns() != 0 || !repo_writer_idle()) {
    bool writer_busy = !repo_writer_idle();
    app_log(LOG_ERROR, "shutdown phase=timeout bound_ms=%d conns=%ld writer=%s",
            cfg->shutdown_ms, endpoint_open_conns(), writer_busy ? "busy" : "idle");
    /* An idle writer holds nothing to answer or to fence: left alone. */
    if (writer_busy) act_send(repo_writer(), REPO_ABANDON, NULL, 0);
    uint64_t until = mono_ms() + ABANDON_MS;
    while (!repo_writer_idle() && mono_ms() < until) wait_or_signal(set, DRAIN_POLL_MS);
    /* The sessions answered by the writer run before the acceptor's turn
     * for this message (the same scheduler, an earlier place in its run
     * queue): their `unavailable` leaves ahead of the 1001. */
    tell_acceptors(ENDPOINT_DRAIN_FORCE);
    while (endpoint_open_conns() != 0 && mono_ms() < until) wait_or_signal(set, DRAIN_POLL_MS);
    int pid = writer_busy ? repo_fence_pid() : 0;
    if (pid) fence_writer_backend(pid);
    app_log(LOG_ERROR, "shutdown phase=exit status=1 conns=%ld writer=%s ms=%llu",
            endpoint_open_conns(), repo_writer_idle() ? "idle" : "busy",
            (unsigned long long)(mono_ms() - t0));
    _exit(1); /* the tree is not stopped: what it holds may never finish */
  }
  app_log(LOG_INFO, "shutdown phase=drained ms=%llu", (unsigned long long)(mono_ms() - t0));

  atomic_store(&g_stopping, true);
  act_exit(root, act_reason(ACT_SHUTDOWN));
  uint64_t now = mono_ms();
  int left = now < deadline ? (int)(deadline - now) : 0;
  act_reason_t why;
  if (act_await_exit(root, left > 0 ? left : 1, &why) == ACT_ETIMEDOUT) {
    app_log(LOG_ERROR, "shutdown phase=exit status=1 the tree did not stop within bound_ms=%d",
            cfg->shutdown_ms);
    _exit(1);
  }
  app_log(LOG_INFO, "shutdown phase=tree_stopped ms=%llu", (unsigned long long)(mono_ms() - t0));
  return atomic_load(&g_tree_died) ? 1 : 0;
}

int main(int argc, char **argv) {
  (void)argc;
  app_config_load(argv[0]);
  const app_config_t *cfg = app_config();
  if (!cfg->database_url[0]) {
    fprintf(stderr, "DATABASE_URL is not set: use `make run`, which starts a private cluster\n");
    return 2;
  }
  if (endpoint_static_open(cfg->web_root) != 0) {
    fprintf(stderr, "cannot open the web root %s\n", cfg->web_root);
    return 2;
  }
  /* Signals go to this thread only: the schedulers inherit the mask. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  migrate();
  act_config_t acfg = {cfg->threads, 0};
  if (act_start(&acfg) != ACT_OK) return 1;
  act_set_report_handler(log_sup_report, NULL);
  build_tree();
  act_spawn_opts_t opts = {.name = "chatter"};
  int err;
  act_pid_t root = act_supervisor_start(&g_root_spec, &opts, &err);
  if (!root) {
    fprintf(stderr, "cannot start the tree: %s\n", act_strerror(err));
    return 1;
  }
  app_log(LOG_INFO, "chatter listening on http://localhost:%d (%d schedulers, pool %d)",
          cfg->port, act_scheduler_count(), cfg->db_pool);

  pthread_t watcher;
  pthread_create(&watcher, NULL, watch_root, &root);
  int sig = 0;
  while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
    app_log_reopen();
    app_log(LOG_INFO, "SIGHUP: log reopened");
  }
  int status = shut_down(root, sig, &set);
  pthread_join(watcher, NULL);
  act_stop_system();
  app_log(LOG_INFO, "shutdown phase=done status=%d", status);
  return status;
}
