/*
 * main.c -- start Chatter: read the configuration, migrate the database,
 * start the schedulers and the supervision tree of DESIGN.md, and wait for
 * SIGINT/SIGTERM to shut it down in order (SIGHUP reopens LOG_FILE) (children in reverse start order,
 * so the endpoint stops taking sockets before the repo goes away).
 */
#include "app.h"
#include "db.h"
#include "endpoint.h"
#include "presence.h"
#include "pubsub.h"
#include "repo.h"
#include "telemetry.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int endpoint_static_open(const char *root);

#define REPO_MAX_POOL 64

static act_child_spec_t g_repo_children[REPO_MAX_POOL];
static act_sup_spec_t g_repo_spec;
static act_child_spec_t g_endpoint_children[256];
static act_sup_spec_t g_endpoint_spec;
static act_sup_spec_t g_sessions_spec;
static act_child_spec_t g_root_children[6];
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

  act_child_spec_t telemetry = worker(APP_NAME_TELEMETRY, telemetry_behaviour(), NULL);
  telemetry.name = APP_NAME_TELEMETRY;
  act_child_spec_t pubsub = worker(APP_NAME_PUBSUB, pubsub_behaviour(), NULL);
  pubsub.name = APP_NAME_PUBSUB;
  act_child_spec_t presence = worker(APP_NAME_PRESENCE, presence_behaviour(), NULL);
  presence.name = APP_NAME_PRESENCE;
  g_root_children[0] = telemetry;
  g_root_children[1] = supervisor(APP_NAME_REPO_SUP, &g_repo_spec);
  g_root_children[2] = pubsub;
  g_root_children[3] = presence;
  g_root_children[4] = supervisor(APP_NAME_SESSIONS, &g_sessions_spec);
  g_root_children[5] = supervisor(APP_NAME_ENDPOINT, &g_endpoint_spec);
  g_root_spec = (act_sup_spec_t){{ACT_ONE_FOR_ONE, 3, 5000}, g_root_children, 6};
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

/* If the tree gives up on its own (the root exceeded its intensity), the
 * process ends too, as an OTP application's permanent top does. */
static _Atomic bool g_stopping;

static void *watch_root(void *arg) {
  act_pid_t root = *(act_pid_t *)arg;
  act_reason_t why;
  if (act_await_exit(root, ACT_INFINITY, &why) == ACT_OK && !atomic_load(&g_stopping)) {
    app_log(LOG_ERROR, "the supervision tree exited (%s)", why.text);
    kill(getpid(), SIGTERM);
  }
  return NULL;
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
  app_log(LOG_INFO, "signal %d: shutting down", sig);
  atomic_store(&g_stopping, true);
  act_exit(root, act_reason(ACT_SHUTDOWN));
  pthread_join(watcher, NULL);
  act_stop_system();
  return 0;
}
