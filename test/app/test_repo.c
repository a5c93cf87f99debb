/* test_repo.c: Check suite for the repo actors (app/repo.c) in-process, on
 * the runtime, against the real PostgreSQL ($DATABASE_URL, the private
 * cluster under make test-app).
 *
 * A stand-in pubsub, registered as "pubsub", counts the broadcasts by seq, so
 * that a test can tell "stored and pushed once" from "pushed again".  A driver
 * actor sends several requests in one turn (so that they meet in one batch
 * at the writer) and answers the test's act_call once every reply is in.
 *
 * Nothing sleeps for synchronisation: waits poll a condition (the writer is
 * up, a lock is awaited) with a bound. */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "db.h"
#include "db_test.h"
#include "pubsub.h"
#include "repo.h"

#define WAIT_MS 10000
#define CALL_MS 15000

static char uniq[64];

/* Polls pred every 5 ms for at most ms; returns its last value. */
static bool poll_until(bool (*pred)(void *), void *arg, unsigned ms)
{
    for (unsigned t = 0; t < ms; t += 5) {
        if (pred(arg)) return true;
        usleep(5000); /* waits on a condition another thread or process sets */
    }
    return pred(arg);
}

/* ------------------------------------------------------------ fake pubsub */

#define MAX_SEEN 4096
#define PS_SYNC 9001 /* answered once every earlier message was handled */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t g_seen[MAX_SEEN];
static size_t g_nseen;
static int g_bad_events; /* lobby events not shaped as repo.c publishes them */

static int ps_init(void *args, void **state)
{
    (void)args;
    *state = NULL;
    return ACT_OK;
}

static void ps_handle(void *state, act_msg_t *m)
{
    (void)state;
    if (m->type == PS_SYNC) {
        act_reply(m, PS_SYNC, NULL, 0);
        return;
    }
    if (m->type != PUBSUB_PUBLISH) return;
    const app_event_t *ev = m->data;
    /* a committed batch is one event: its frame's parts are the messages,
     * tagged by seq, the last one the event's own seq */
    size_t parts = ws_shared_nparts(ev->frame);
    pthread_mutex_lock(&g_mu);
    if (ws_shared_tag(ev->frame, parts - 1) != ev->seq)
        g_bad_events++; /* asserted by broadcasts_of, on the test's thread */
    for (size_t i = 0; i < parts && g_nseen < MAX_SEEN; i++) {
        if (i && ws_shared_tag(ev->frame, i) <= ws_shared_tag(ev->frame, i - 1))
            g_bad_events++;
        g_seen[g_nseen++] = ws_shared_tag(ev->frame, i);
    }
    pthread_mutex_unlock(&g_mu);
    /* the frame's reference goes with the message (app_event_release) */
}

static const act_behaviour_t fake_pubsub = {"fake_pubsub", ps_init, ps_handle, NULL};

static int broadcasts_of(int64_t seq)
{
    int n = 0;
    pthread_mutex_lock(&g_mu);
    int bad = g_bad_events;
    for (size_t i = 0; i < g_nseen; i++) n += g_seen[i] == seq;
    pthread_mutex_unlock(&g_mu);
    ck_assert_msg(!bad, "an event's parts out of seq order, or its seq not the last");
    return n;
}

/* ------------------------------------------------------------ driver */

#include "repo_driver.h" /* the driver actor, shared with fault_repo.c */

/* ------------------------------------------------------------ fixtures */

static act_pid_t g_pubsub, g_driver;

static bool writer_up(void *arg)
{
    (void)arg;
    return repo_writer() != ACT_NOPID && repo_database_up();
}

static act_pid_t spawn_writer(void)
{
    act_spawn_opts_t o = {.name = "repo.0", .scheduler = ACT_SCHED_ON(0)};
    int err = 0;
    act_pid_t p = act_spawn(repo_conn_behaviour(), (void *)(intptr_t)0, &o, &err);
    ck_assert_msg(p != ACT_NOPID, "spawn repo.0: %s", act_strerror(err));
    return p;
}

static void kill_and_wait(act_pid_t p)
{
    act_exit(p, act_reason(ACT_KILL));
    act_reason_t why;
    act_await_exit(p, WAIT_MS, &why);
}

static void setup(void)
{
    snprintf(uniq, sizeof uniq, "%d-%llu", (int)getpid(), (unsigned long long)uv_hrtime());
    app_config_load("test_repo");
    act_config_t cfg = {2, 0};
    ck_assert_int_eq(act_start(&cfg), ACT_OK);
    act_spawn_opts_t po = {.name = APP_NAME_PUBSUB};
    g_pubsub = act_spawn(&fake_pubsub, NULL, &po, NULL);
    g_driver = act_spawn(&repo_driver, NULL, &(act_spawn_opts_t){0}, NULL);
    ck_assert(g_pubsub && g_driver);
}

static void teardown(void)
{
    act_stop_system();
}

/* ------------------------------------------------------------ helpers */

static PGconn *side_conn(void)
{
    PGconn *pg = PQconnectdb(url());
    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "side connection: %s", PQerrorMessage(pg));
    return pg;
}

static long long scalar(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                      ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

static void exec_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* A user for this test, through the repo. */
static void user_for(const char *who, char id[PROTO_UUID_LEN + 1])
{
    repo_name_req_t rq;
    memset(&rq, 0, sizeof rq);
    snprintf(rq.name, sizeof rq.name, "%s-%s", who, uniq);
    act_msg_t *reply = NULL;
    ck_assert_int_eq(act_call(repo_writer(), REPO_GET_USER, &rq, sizeof rq, &reply, CALL_MS),
                     ACT_OK);
    const repo_user_reply_t *u = reply->data;
    ck_assert_int_eq(u->rc, 0);
    snprintf(id, PROTO_UUID_LEN + 1, "%s", u->id);
    act_msg_free(reply);
}

/* A REPO_INSERT payload (caller frees). */
static repo_insert_req_t *insert_req(const char *user_id, const char *cid, const char *text,
                                     size_t *size)
{
    size_t len = strlen(text);
    *size = sizeof(repo_insert_req_t) + len;
    repo_insert_req_t *rq = calloc(1, *size);
    ck_assert_ptr_nonnull(rq);
    snprintf(rq->user_id, sizeof rq->user_id, "%s", user_id);
    snprintf(rq->client_id, sizeof rq->client_id, "%s", cid ? cid : "");
    rq->content_len = len;
    memcpy(rq->content, text, len);
    return rq;
}

/* Sends n inserts from the driver in one turn; all replies come back. */
static drive_out_t drive_inserts(size_t n, repo_insert_req_t **rqs, const size_t *sizes)
{
    drive_req_t d;
    memset(&d, 0, sizeof d);
    d.n = n;
    for (size_t i = 0; i < n; i++) {
        d.type[i] = REPO_INSERT;
        d.data[i] = rqs[i];
        d.size[i] = sizes[i];
    }
    act_msg_t *reply = NULL;
    ck_assert_int_eq(act_call(g_driver, DRIVE, &d, sizeof d, &reply, 2 * CALL_MS), ACT_OK);
    drive_out_t out = *(const drive_out_t *)reply->data;
    act_msg_free(reply);
    return out;
}

static repo_inserted_t *call_insert(const char *user_id, const char *cid, const char *text)
{
    size_t size;
    repo_insert_req_t *rq = insert_req(user_id, cid, text, &size);
    act_msg_t *reply = NULL;
    ck_assert_int_eq(act_call(repo_writer(), REPO_INSERT, rq, size, &reply, CALL_MS), ACT_OK);
    free(rq);
    repo_inserted_t *out = malloc(reply->size + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, reply->data, reply->size);
    act_msg_free(reply);
    return out;
}

static repo_inserted_t *call_find(const char *user_id, const char *cid)
{
    repo_client_req_t rq;
    memset(&rq, 0, sizeof rq);
    snprintf(rq.user_id, sizeof rq.user_id, "%s", user_id);
    snprintf(rq.client_id, sizeof rq.client_id, "%s", cid);
    act_msg_t *reply = NULL;
    ck_assert_int_eq(act_call(repo_writer(), REPO_FIND_CLIENT_ID, &rq, sizeof rq, &reply,
                              CALL_MS), ACT_OK);
    repo_inserted_t *out = malloc(reply->size + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, reply->data, reply->size);
    act_msg_free(reply);
    return out;
}

/* Waits until the fake pubsub has handled every broadcast sent so far: the
 * repo publishes before it answers, so they are already in its mailbox. */
static void settle(void)
{
    act_msg_t *reply = NULL;
    ck_assert_int_eq(act_call(g_pubsub, PS_SYNC, NULL, 0, &reply, CALL_MS), ACT_OK);
    act_msg_free(reply);
}

/* ------------------------------------------------------------ tests */

/* client_id through the repo: the retry answers existed with the stored
 * message and is not broadcast; FIND finds it or says REPO_NOT_FOUND. */
START_TEST(test_insert_client_id_existed_not_broadcast)
{
    spawn_writer();
    ck_assert(poll_until(writer_up, NULL, WAIT_MS));
    char uid[PROTO_UUID_LEN + 1];
    user_for("nina", uid);

    repo_inserted_t *a = call_insert(uid, "c1", "hello");
    ck_assert_int_eq(a->rc, 0);
    ck_assert(!a->existed);
    ck_assert_ptr_nonnull(strstr(a->frag, "\"hello\""));
    repo_inserted_t *b = call_insert(uid, "c1", "hello, again");
    ck_assert_int_eq(b->rc, 0);
    ck_assert(b->existed);
    ck_assert_int_eq(b->seq, a->seq);
    ck_assert_str_eq(b->frag, a->frag); /* same shape, same bytes */
    repo_inserted_t *f = call_find(uid, "c1");
    ck_assert_int_eq(f->rc, 0);
    ck_assert(f->existed);
    ck_assert_int_eq(f->seq, a->seq);
    ck_assert_str_eq(f->frag, a->frag);
    repo_inserted_t *nf = call_find(uid, "c2");
    ck_assert_int_eq(nf->rc, REPO_NOT_FOUND);
    settle();
    ck_assert_int_eq(broadcasts_of(a->seq), 1);
    free(a);
    free(b);
    free(f);
    free(nf);
}
END_TEST

/* Repeats meet in one batch: the first and second go alone and together
 * (the writer has one batch in flight), each key is stored and pushed once. */
START_TEST(test_insert_client_id_within_batch)
{
    spawn_writer();
    ck_assert(poll_until(writer_up, NULL, WAIT_MS));
    char uid[PROTO_UUID_LEN + 1];
    user_for("olga", uid);
    enum { N = 8 };
    const char *cids[N] = {"x", "x", "y", "x", NULL, "y", "z", NULL};
    repo_insert_req_t *rqs[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "m%d", i);
        rqs[i] = insert_req(uid, cids[i], text, &sizes[i]);
    }
    drive_out_t out = drive_inserts(N, rqs, sizes);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(out.rc[i] == 0, "reply %d rc %d", i, out.rc[i]);
        free(rqs[i]);
    }
    ck_assert(!out.existed[0] && out.existed[1] && !out.existed[2] && out.existed[3]);
    ck_assert(!out.existed[4] && out.existed[5] && !out.existed[6] && !out.existed[7]);
    ck_assert_int_eq(out.seq[1], out.seq[0]);
    ck_assert_int_eq(out.seq[3], out.seq[0]);
    ck_assert_int_eq(out.seq[5], out.seq[2]);
    ck_assert_str_eq(out.frag[3], out.frag[0]);
    ck_assert_ptr_nonnull(strstr(out.frag[5], "\"m2\""));
    settle();
    for (int i = 0; i < N; i++)
        ck_assert_msg(broadcasts_of(out.seq[i]) == 1, "seq %lld pushed %d times",
                      (long long)out.seq[i], broadcasts_of(out.seq[i]));
    PGconn *pg = side_conn();
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE user_id = '%s'", uid);
    ck_assert_int_eq(scalar(pg, sql), 5);
    PQfinish(pg);
}
END_TEST

static bool lock_awaited(void *arg)
{
    return scalar(arg, "SELECT count(*) FROM pg_locks WHERE NOT granted") > 0;
}

typedef struct committer { PGconn *side, *watch; bool ok; } committer_t;

static void *commit_when_awaited(void *arg)
{
    committer_t *c = arg;
    if (poll_until(lock_awaited, c->watch, WAIT_MS)) {
        PGresult *r = PQexec(c->side, "COMMIT");
        c->ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    return NULL;
}

/* Another connection stores the key while the writer's batch waits on it:
 * the writer answers existed with that row (read back by client_id) and
 * pushes nothing for it; the batch's other row is stored and pushed. */
START_TEST(test_insert_client_id_race)
{
    spawn_writer();
    ck_assert(poll_until(writer_up, NULL, WAIT_MS));
    char uid[PROTO_UUID_LEN + 1];
    user_for("pia", uid);
    PGconn *side = side_conn(), *watch = side_conn();
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO messages (user_id, content, client_id) "
             "VALUES ('%s', 'theirs', 'r1') RETURNING seq", uid);
    PGresult *pr = PQexec(side, sql);
    ck_assert_int_eq(PQresultStatus(pr), PGRES_TUPLES_OK);
    long long their_seq = atoll(PQgetvalue(pr, 0, 0));
    PQclear(pr);

    /* The driver's call blocks this thread: another commits once the
     * writer waits on the side transaction's row. */
    committer_t c = {side, watch, false};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, commit_when_awaited, &c), 0);
    repo_insert_req_t *rqs[2];
    size_t sizes[2];
    rqs[0] = insert_req(uid, "r1", "mine", &sizes[0]);
    rqs[1] = insert_req(uid, "r2", "beside", &sizes[1]);
    drive_out_t out = drive_inserts(2, rqs, sizes);
    pthread_join(t, NULL);
    ck_assert(c.ok);
    free(rqs[0]);
    free(rqs[1]);
    ck_assert_int_eq(out.rc[0], 0);
    ck_assert(out.existed[0]);
    ck_assert_int_eq(out.seq[0], their_seq);
    ck_assert_ptr_nonnull(strstr(out.frag[0], "\"theirs\""));
    ck_assert_int_eq(out.rc[1], 0);
    ck_assert(!out.existed[1]);
    settle();
    ck_assert_int_eq(broadcasts_of(their_seq), 0); /* not ours to push */
    ck_assert_int_eq(broadcasts_of(out.seq[1]), 1);
    PQfinish(watch);
    PQfinish(side);
}
END_TEST

static bool migration_over(void *arg)
{
    (void)arg;
    return repo_migration_idle();
}

/* Issue 8 item 10: repo.0 killed while its migration runs on the thread
 * pool.  The migration is held on its advisory lock by a side connection,
 * so it is certainly running when repo.0 dies; then it is let go.  Before
 * the fix the pool wrote into the freed repo state (ASan: use after free). */
START_TEST(test_kill_writer_during_migration)
{
    PGconn *side = side_conn(), *watch = side_conn();
    exec_ok(side, "SELECT pg_advisory_lock(7263541)");
    act_pid_t w = spawn_writer();
    ck_assert_msg(poll_until(lock_awaited, watch, WAIT_MS), "the migration never started");
    ck_assert(!repo_migration_idle());
    kill_and_wait(w);
    exec_ok(side, "SELECT pg_advisory_unlock(7263541)");
    ck_assert_msg(poll_until(migration_over, NULL, WAIT_MS), "the migration never finished");
    /* A new writer works. */
    spawn_writer();
    ck_assert(poll_until(writer_up, NULL, WAIT_MS));
    char uid[PROTO_UUID_LEN + 1];
    user_for("quinn", uid);
    PQfinish(watch);
    PQfinish(side);
}
END_TEST

/* ------------------------------------------------------------ hung writer */

#define PG_STOPPED_FILE "_build/test_repo.stopped"

#include "pg_stop.h"

static bool writer_down(void *arg)
{
    (void)arg;
    return !repo_database_up();
}

static bool private_cluster(void)
{
    return strstr(url(), "_build/pg/run") != NULL;
}

/* The writer with an 800 ms query deadline (CHATTER_DB_TIMEOUT_MS, read
 * in one place), up, and a user for the test. */
static void writer_with_deadline(const char *who, char uid[PROTO_UUID_LEN + 1])
{
    setenv("CHATTER_DB_TIMEOUT_MS", "800", 1);
    app_config_load("test_repo");
    spawn_writer();
    ck_assert(poll_until(writer_up, NULL, WAIT_MS));
    user_for(who, uid);
}

/* After the outage (what): the retry of client_id cid is stored, pushed
 * exactly once and in one row; says whether it found a late commit.  The
 * answer is the caller's to free. */
static repo_inserted_t *retry_stored_once(PGconn *pg, const char *what, const char *uid,
                                          const char *cid, const char *text)
{
    repo_inserted_t *c = call_insert(uid, cid, text);
    ck_assert_int_eq(c->rc, 0);
    settle();
    ck_assert_int_eq(broadcasts_of(c->seq), 1);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages WHERE user_id = '%s' AND client_id = '%s'", uid, cid);
    ck_assert_int_eq(scalar(pg, sql), 1);
    fprintf(stderr, "%s: the retry %s\n", what,
            c->existed ? "found the late commit" : "stored it (the hung insert never committed)");
    return c;
}

/* Issue 8 items 15 and 16: the writer's backend is stopped (hung, not
 * dead).  A send is answered unavailable at the deadline, the writer is down
 * (/healthz 503) and answers at once while the old backend cannot be ended;
 * once it resumes, the writer comes back, and the retry with the same
 * client_id stores the message at most once and it is pushed exactly once,
 * whether the hung backend committed it late or not. */
START_TEST(test_hung_writer_unavailable_then_exactly_once)
{
    if (!private_cluster()) return; /* SIGSTOP only our own cluster */
    char uid[PROTO_UUID_LEN + 1];
    writer_with_deadline("ruth", uid);
    PGconn *pg = side_conn();
    char q[160];
    snprintf(q, sizeof q, "SELECT pid FROM pg_stat_activity"
             " WHERE application_name = 'chatter.%d repo.0'", (int)getpid());
    int pid = (int)scalar(pg, q);
    ck_assert_int_gt(pid, 0);
    stop_backend(pid);

    uint64_t t0 = uv_hrtime();
    repo_inserted_t *a = call_insert(uid, "h1", "sent while hung");
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    ck_assert_int_lt(a->rc, 0);
    ck_assert_msg(ms >= 700 && ms < 5000, "answered after %llu ms", (unsigned long long)ms);
    ck_assert(poll_until(writer_down, NULL, WAIT_MS)); /* /healthz: 503 */
    /* While the old backend cannot be ended, the writer stays down and
     * answers at once. */
    t0 = uv_hrtime();
    repo_inserted_t *b = call_insert(uid, "h2", "also while hung");
    ck_assert_int_lt(b->rc, 0);
    ck_assert_int_lt((uv_hrtime() - t0) / 1000000, 700);
    ck_assert_msg(!poll_until(writer_up, NULL, 1500), "up while the old backend still runs");
    /* A late commit, as the hung backend could make: the writer, once back,
     * pushes it (once) before anything new, and its retry finds it. */
    char sql[256];
    snprintf(sql, sizeof sql, "INSERT INTO messages (user_id, content, client_id)"
             " VALUES ('%s', 'late', 'h3') RETURNING seq", uid);
    long long late_seq = scalar(pg, sql);
    ck_assert_int_gt(late_seq, 0);

    kill(pid, SIGCONT);
    ck_assert_msg(poll_until(writer_up, NULL, 3 * WAIT_MS), "the writer did not come back");
    repo_inserted_t *d = call_insert(uid, "h3", "late");
    ck_assert_int_eq(d->rc, 0);
    ck_assert(d->existed);
    ck_assert_int_eq(d->seq, late_seq);
    settle();
    ck_assert_int_eq(broadcasts_of(late_seq), 1);
    free(d);
    repo_inserted_t *c = retry_stored_once(pg, "hung writer", uid, "h1", "sent while hung");
    PQfinish(pg);
    free(a);
    free(b);
    free(c);
}
END_TEST

/* The private cluster's postmaster and every process it started. */
static size_t cluster_pids(int *out, size_t max)
{
    FILE *f = fopen("_build/pg/data/postmaster.pid", "r");
    int pm = 0;
    if (!f || fscanf(f, "%d", &pm) != 1) pm = 0;
    if (f) fclose(f);
    if (pm <= 0 || max == 0) return 0;
    size_t n = 0;
    out[n++] = pm;
    char cmd[96];
    snprintf(cmd, sizeof cmd, "ps -o pid= --ppid %d", pm);
    FILE *ps = popen(cmd, "r");
    int pid;
    while (ps && n < max && fscanf(ps, "%d", &pid) == 1) out[n++] = pid;
    if (ps) pclose(ps);
    return n;
}

/* Issue 8 item 15 as reported: the whole PostgreSQL stopped (postmaster and
 * every backend), not only the writer's.  The send is answered unavailable
 * at the deadline, the writer is down while the cluster is, and after
 * SIGCONT the retry with the same client_id finds one stored message (the
 * old backend may have committed it when it resumed: then the fence pushed
 * it) that was pushed exactly once. */
START_TEST(test_stopped_cluster_unavailable_then_exactly_once)
{
    if (!private_cluster()) return;
    char uid[PROTO_UUID_LEN + 1];
    writer_with_deadline("sara", uid);
    int pids[64];
    size_t n = cluster_pids(pids, 64);
    ck_assert_uint_ge(n, 2);
    stop_backend(pids[0]); /* the postmaster: it must be there */
    for (size_t i = 1; i < n; i++) { /* a child may have exited since ps */
        FILE *f = fopen(PG_STOPPED_FILE, "a");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "%d\n", pids[i]);
        fclose(f);
        kill(pids[i], SIGSTOP);
    }

    repo_inserted_t *a = call_insert(uid, "s1", "sent while stopped");
    ck_assert_int_lt(a->rc, 0);
    ck_assert(poll_until(writer_down, NULL, WAIT_MS));
    ck_assert_msg(!poll_until(writer_up, NULL, 1500), "up while the cluster is stopped");
    for (size_t i = 0; i < n; i++) kill(pids[i], SIGCONT);

    ck_assert_msg(poll_until(writer_up, NULL, 3 * WAIT_MS), "the writer did not come back");
    PGconn *pg = side_conn();
    repo_inserted_t *c = retry_stored_once(pg, "stopped cluster", uid, "s1", "sent while stopped");
    PQfinish(pg);
    free(a);
    free(c);
}
END_TEST

/* ------------------------------------------------------------ main */

static Suite *repo_suite(void)
{
    Suite *s = suite_create("repo");
    TCase *c = checked_case(s, "client_id", setup, teardown, 60);
    tcase_add_test(c, test_insert_client_id_existed_not_broadcast);
    tcase_add_test(c, test_insert_client_id_within_batch);
    tcase_add_test(c, test_insert_client_id_race);

    TCase *life = checked_case(s, "lifecycle", setup, teardown, 60);
    tcase_add_test(life, test_kill_writer_during_migration);
    tcase_add_test(life, test_hung_writer_unavailable_then_exactly_once);
    tcase_add_test(life, test_stopped_cluster_unavailable_then_exactly_once);
    return s;
}

int main(void)
{
    if (db_test_migrate("test_repo") != 0) return 1;
    int failed = db_test_run(repo_suite());
    resume_stopped();
    return failed ? 1 : 0;
}
