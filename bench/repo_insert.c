/*
 * repo_insert -- committed messages per second through the repo's writer
 * (app/repo.c: repo.0, batched multi-row INSERT ... ON CONFLICT with a
 * client_id per row), against the private cluster ($DATABASE_URL, or
 * `bash sql/devdb.sh url`).  Issue 6's target: at least 20,000/s.
 *
 * Measures, each as committed messages per second (a message counts once its
 * REPO_INSERTED reply came back, i.e. after COMMIT):
 *   batched   S senders (BENCH_SENDERS, default 2,000), each with one
 *             insert in flight, as sessions are: while one batch commits the
 *             next gathers, so a commit carries up to 1,024 rows (MAX_BATCH);
 *   serial    one sender, one insert in flight: one round trip and one
 *             commit per message, the rate without batching.
 * N messages (argv[1], default 100,000) for batched, N/20 (or
 * $BENCH_SERIAL_N) for serial.  The
 * messages and the bench's user are deleted afterwards, so that the
 * development database's lobby is not filled with bench text.
 *
 * Prints: name=repo_insert n=<N> senders=<S> seconds=<s> rate=<batched/s>
 *         serial_rate=<serial/s> ratio=<x>
 */
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "bench.h"
#include "db.h"
#include "repo.h"

enum { MSG_GO = 9100, MSG_DONE };

static char g_user_id[PROTO_UUID_LEN + 1];
static _Atomic uint64_t g_next;   /* messages handed out so far */
static uint64_t g_total;
static _Atomic uint64_t g_failed;

/* ------------------------------------------------------------ a sender */

typedef struct sender {
  int id;
  act_pid_t collector;
  uint64_t sent;
} sender_t;

static int sender_init(void *args, void **state) {
  sender_t *s = calloc(1, sizeof *s);
  if (!s) return ACT_ENOMEM;
  s->id = (int)(intptr_t)args;
  *state = s;
  return ACT_OK;
}

/* The next message, if any are left: one in flight per sender. */
static bool send_next(sender_t *s) {
  uint64_t k = atomic_fetch_add(&g_next, 1);
  if (k >= g_total) return false;
  char text[96];
  int len = snprintf(text, sizeof text, "bench message %llu from sender %d, some ordinary text",
                     (unsigned long long)k, s->id);
  size_t size = sizeof(repo_insert_req_t) + (size_t)len;
  repo_insert_req_t *rq = calloc(1, size);
  if (!rq) act_crash("out of memory");
  snprintf(rq->user_id, sizeof rq->user_id, "%s", g_user_id);
  snprintf(rq->client_id, sizeof rq->client_id, "b%d-%llu-%llu", (int)getpid(),
           (unsigned long long)uv_hrtime() % 1000000007ull, (unsigned long long)k);
  rq->content_len = (size_t)len;
  memcpy(rq->content, text, (size_t)len);
  act_request(repo_writer(), REPO_INSERT, rq, size, 60000);
  free(rq);
  return true;
}

static void sender_handle(void *state, act_msg_t *m) {
  sender_t *s = state;
  if (m->type == MSG_GO) {
    s->collector = m->from;
  } else if (m->type == REPO_INSERTED) {
    const repo_inserted_t *r = m->data;
    if (r->rc != 0 || r->existed) atomic_fetch_add(&g_failed, 1);
  } else {
    atomic_fetch_add(&g_failed, 1); /* timed out */
  }
  if (!send_next(s)) {
    act_send(s->collector, MSG_DONE, NULL, 0);
    act_stop(act_reason(ACT_NORMAL));
  }
}

static const act_behaviour_t sender_b = {"bench_sender", sender_init, sender_handle, NULL};

/* ------------------------------------------------------------ collector */

typedef struct collector {
  int senders, done;
  act_msg_t *call;
} collector_t;

static int collector_init(void *args, void **state) {
  (void)args;
  *state = calloc(1, sizeof(collector_t));
  return *state ? ACT_OK : ACT_ENOMEM;
}

static void collector_handle(void *state, act_msg_t *m) {
  collector_t *c = state;
  if (m->type == MSG_GO) {
    c->senders = *(const int *)m->data;
    c->done = 0;
    c->call = act_msg_keep(m);
    for (int i = 0; i < c->senders; i++) {
      act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
      act_pid_t p = act_spawn(&sender_b, (void *)(intptr_t)i, &o, NULL);
      if (!p) act_crash("spawn failed");
      act_send(p, MSG_GO, NULL, 0);
    }
  } else if (m->type == MSG_DONE && ++c->done == c->senders) {
    act_reply(c->call, MSG_DONE, NULL, 0);
    act_msg_free(c->call);
    c->call = NULL;
  }
}

static const act_behaviour_t collector_b = {"bench_collector", collector_init,
                                            collector_handle, NULL};

/* A pubsub stand-in: takes the broadcasts (their frames are released with
 * the message) so that the bench measures the repo, not the fan-out. */
static int sink_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  return ACT_OK;
}
static void sink_handle(void *state, act_msg_t *m) {
  (void)state;
  (void)m;
}
static const act_behaviour_t sink_b = {"bench_pubsub", sink_init, sink_handle, NULL};

/* ------------------------------------------------------------ runs */

static double run(act_pid_t collector, uint64_t n, int senders) {
  atomic_store(&g_next, 0);
  g_total = n;
  act_msg_t *reply = NULL;
  double t0 = now_s();
  int rc = act_call(collector, MSG_GO, &senders, sizeof senders, &reply, 600000);
  double t1 = now_s();
  if (rc != ACT_OK) die("run", rc);
  act_msg_free(reply);
  return (double)n / (t1 - t0);
}

static void exec_or_die(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    exit(2);
  }
  PQclear(r);
}

int main(int argc, char **argv) {
  uint64_t n = arg_n(argc, argv, 100000);
  int senders = getenv("BENCH_SENDERS") ? atoi(getenv("BENCH_SENDERS")) : 2000;
  if (senders < 1) senders = 1;
  app_config_load(argv[0]);
  if (!app_config()->database_url[0]) {
    fprintf(stderr, "set DATABASE_URL (bash sql/devdb.sh url)\n");
    return 2;
  }
  PGconn *pg = PQconnectdb(app_config()->database_url);
  if (PQstatus(pg) != CONNECTION_OK) {
    fprintf(stderr, "connect: %s", PQerrorMessage(pg));
    return 2;
  }
  char err[512] = "";
  if (db_migrate(app_config()->database_url, app_config()->sql_dir, NULL, err, sizeof err)) {
    fprintf(stderr, "migrate: %s\n", err);
    return 2;
  }
  repo_mark_migrated();
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO users (name) VALUES ('bench-%d-%llu') RETURNING id::text", (int)getpid(),
           (unsigned long long)uv_hrtime());
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "user: %s", PQresultErrorMessage(r));
    return 2;
  }
  snprintf(g_user_id, sizeof g_user_id, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);

  start_runtime();
  act_spawn_opts_t po = {.name = APP_NAME_PUBSUB};
  act_spawn(&sink_b, NULL, &po, NULL);
  act_spawn_opts_t wo = {.name = "repo.0"};
  int rc = 0;
  if (!act_spawn(repo_conn_behaviour(), (void *)(intptr_t)0, &wo, &rc)) die("repo.0", rc);
  for (int i = 0; i < 2000 && !repo_database_up(); i++) usleep(5000); /* start-up only */
  if (!repo_database_up()) die("the writer did not connect", 0);
  act_spawn_opts_t co = placed(ACT_SCHED_NEXT);
  act_pid_t collector = act_spawn(&collector_b, NULL, &co, NULL);
  (void)await_driver; /* bench.h's; this bench waits with act_call */

  run(collector, n / 100 ? n / 100 : 1, senders); /* warm-up: prepare, caches */
  double batched = run(collector, n, senders);
  /* BENCH_SERIAL_N: the serial run's count (default N/20: about 25 s of a
   * 35 s run at 200 commits/s, so paired runs may want it smaller) */
  uint64_t ns = getenv("BENCH_SERIAL_N") ? strtoull(getenv("BENCH_SERIAL_N"), NULL, 10) : n / 20;
  if (ns < 1) ns = 1;
  double serial = run(collector, ns, 1);
  uint64_t failed = atomic_load(&g_failed);

  snprintf(sql, sizeof sql, "DELETE FROM messages WHERE user_id = '%s'", g_user_id);
  exec_or_die(pg, sql);
  snprintf(sql, sizeof sql, "DELETE FROM users WHERE id = '%s'", g_user_id);
  exec_or_die(pg, sql);
  PQfinish(pg);
  act_stop_system();

  printf("name=repo_insert n=%llu senders=%d seconds=%.3f rate=%.0f serial_n=%llu "
         "serial_rate=%.0f ratio=%.1f failed=%llu\n",
         (unsigned long long)n, senders, (double)n / batched, batched, (unsigned long long)ns,
         serial, batched / serial, (unsigned long long)failed);
  return failed ? 1 : 0;
}
