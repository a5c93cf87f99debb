/* test_db.c: Check suite for app/db.c against the real PostgreSQL.
 *
 * The database is $DATABASE_URL (the Makefile sets it to the private cluster
 * of sql/devdb.sh).  The database persists between runs, so every test uses
 * user names unique to its process.  Each test drives a libuv loop until its
 * callbacks have fired (a timeout timer bounds the wait; nothing sleeps).
 *
 * The last test case stops and restarts the cluster (sql/devdb.sh), so it
 * runs only against the private cluster, and an unchecked fixture plus main()
 * start the cluster again even when it fails. */
#include <check.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "db_test.h"

#define WAIT_MS 10000

static uv_loop_t loop;
static char uniq[64];  /* this process's suffix for user names */

/* ------------------------------------------------------------ loop driving */

static bool timed_out;

static void on_timeout(uv_timer_t *t)
{
    (void)t;
    timed_out = true;
}

/* Runs the loop until pred(arg) holds or ms pass; returns pred(arg). */
static bool run_until(bool (*pred)(void *), void *arg, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    timed_out = false;
    uv_timer_start(&t, on_timeout, ms, 0);
    while (!pred(arg) && !timed_out) uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);  /* finish the close before t goes */
    return pred(arg);
}

static bool flag_set(void *arg) { return *(bool *)arg; }

/* Called by every test callback: a callback run from the timer phase would
 * otherwise leave uv_run(UV_RUN_ONCE) blocked in poll until the next event;
 * uv_stop makes that poll return at once so run_until re-checks. */
static void wake(void)
{
    uv_stop(&loop);
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    snprintf(uniq, sizeof uniq, "%d-%llu", (int)getpid(), (unsigned long long)uv_hrtime());
}

static void teardown(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_msg(uv_loop_close(&loop) == 0, "handles left open on the loop");
}

/* ------------------------------------------------------------ results */

typedef struct res {
    bool done;
    bool ok;
    db_error err;
    db_user_list *users;
    db_user *user;
    bool created;
    db_message_list *msgs;
    uint64_t rtt;
} res;

static void take_err(res *r, const db_error *err)
{
    wake();
    r->done = true;
    r->ok = err == NULL;
    if (err) r->err = *err;
}

static void on_users(void *ud, const db_error *err, db_user_list *l)
{
    res *r = ud;
    take_err(r, err);
    r->users = l;
}

static void on_user(void *ud, const db_error *err, db_user *u, bool created)
{
    res *r = ud;
    take_err(r, err);
    r->user = u;
    r->created = created;
}

static void on_msgs(void *ud, const db_error *err, db_message_list *l)
{
    res *r = ud;
    take_err(r, err);
    r->msgs = l;
}

static void on_ping(void *ud, const db_error *err, uint64_t rtt)
{
    res *r = ud;
    take_err(r, err);
    r->rtt = rtt;
}

static void res_free(res *r)
{
    db_user_list_free(r->users);
    db_user_free(r->user);
    db_message_list_free(r->msgs);
    memset(r, 0, sizeof *r);
}

static bool res_done(void *arg) { return ((res *)arg)->done; }

static void wait_res(res *r)
{
    ck_assert_msg(run_until(res_done, r, WAIT_MS), "callback did not fire in time");
}

/* Waits and insists on success. */
static void wait_ok(res *r)
{
    wait_res(r);
    ck_assert_msg(r->ok, "query failed: %s %s: %s", db_errcode_name(r->err.code),
                  r->err.sqlstate, r->err.message);
}

/* ------------------------------------------------------------ connections */

typedef struct conn_watch { db_conn *c; db_state want; } conn_watch;

static bool state_is(void *arg)
{
    conn_watch *w = arg;
    return db_conn_state(w->c) == w->want;
}

static bool wait_state(db_conn *c, db_state want, unsigned ms)
{
    conn_watch w = {c, want};
    return run_until(state_is, &w, ms);
}

static db_conn *open_with(db_reconnect mode, const char *conninfo)
{
    db_conn_opts o = {.conninfo = conninfo, .reconnect = mode};
    db_conn *c = db_conn_open(&loop, &o);
    ck_assert_ptr_nonnull(c);
    return c;
}

static db_conn *open_ok(void)
{
    db_conn *c = open_with(DB_RECONNECT_AUTO, url());
    ck_assert_msg(wait_state(c, DB_CONNECTED, WAIT_MS), "not connected: is DATABASE_URL right?");
    return c;
}

static void on_closed(void *ud)
{
    wake();
    *(bool *)ud = true;
}

static void close_conn(db_conn *c)
{
    bool closed = false;
    db_conn_close(c, on_closed, &closed);
    ck_assert(run_until(flag_set, &closed, WAIT_MS));
}

/* A blocking side connection for checks the API does not offer. */
static PGconn *side_conn(void)
{
    PGconn *pg = PQconnectdb(url());
    ck_assert_msg(PQstatus(pg) == CONNECTION_OK, "side connection: %s", PQerrorMessage(pg));
    return pg;
}

/* The first value of a one-row query, as a number; -1 on error. */
static long long scalar(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    long long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                      ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

/* The statement is refused by the database with this SQLSTATE. */
static void expect_refused(PGconn *pg, const char *sql, const char *sqlstate)
{
    PGresult *r = PQexec(pg, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), sqlstate);
    PQclear(r);
}

static void name_for(char *buf, size_t len, const char *who)
{
    snprintf(buf, len, "%s-%s", who, uniq);
}

/* get-or-create, waited for; returns the user (caller frees). */
static db_user *user_named(db_conn *c, const char *who, bool *created)
{
    char name[128];
    name_for(name, sizeof name, who);
    res r = {0};
    ck_assert_int_eq(db_user_get_or_create(c, name, on_user, &r), 0);
    wait_ok(&r);
    if (created) *created = r.created;
    db_user *u = r.user;
    r.user = NULL;
    return u;
}

/* ------------------------------------------------------------ migrations */

START_TEST(test_migrate_twice_is_noop)
{
    char err[512] = "";
    int applied = -1;
    ck_assert_msg(db_migrate(url(), "sql", &applied, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ge(applied, 0);
    PGconn *pg = side_conn();
    long long before = scalar(pg, "SELECT count(*) FROM schema_migrations");
    ck_assert_msg(db_migrate(url(), "sql", &applied, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(applied, 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM schema_migrations"), before);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM schema_migrations"
                                " WHERE version IN ('001', '002')"), 2);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_indexes WHERE tablename = 'messages'"
                                " AND indexdef LIKE '%(seq)%'"), 1);
    /* one index leads with user_id: 003's (user_id, client_id); 004 dropped
     * the single-column one it made redundant */
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM pg_indexes WHERE tablename = 'messages'"
                                " AND indexdef LIKE '%(user_id%'"), 1);
    PQfinish(pg);
}
END_TEST

/* A failing migration leaves nothing behind: not its table, not its record. */
START_TEST(test_migrate_failure_rolls_back)
{
    char dir[] = "/tmp/chatter-mig-XXXXXX", path[256], table[64], sql[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/999999_bad.sql", dir);
    snprintf(table, sizeof table, "mig_%d", (int)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "CREATE TABLE %s (x int);\nSELECT no_such_function();\n", table);
    fclose(f);

    char err[512] = "";
    int applied = -1;
    ck_assert_int_eq(db_migrate(url(), dir, &applied, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "999999_bad.sql") != NULL, "error names the file: %s", err);
    ck_assert_int_eq(applied, 0);
    PGconn *pg = side_conn();
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_tables WHERE tablename = '%s'", table);
    ck_assert_int_eq(scalar(pg, sql), 0);
    ck_assert_int_eq(scalar(pg, "SELECT count(*) FROM schema_migrations WHERE version = '999999'"), 0);
    PQfinish(pg);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* A connection made before the tables exist (the server may start while the
 * database is away, and migrate later): the query fails with the real cause,
 * and once migrated the same connection prepares again and works.  Uses a
 * scratch database so the shared one is untouched. */
START_TEST(test_queries_before_and_after_migration)
{
    const char *u = url();
    const char *at = strstr(u, "/chatter?");
    if (!at) {
        fprintf(stderr, "test_queries_before_and_after_migration: skipped (URL shape)\n");
        return;
    }
    char db[64], scratch[1024], sql[128];
    snprintf(db, sizeof db, "chatter_scratch_%d", (int)getpid());
    snprintf(scratch, sizeof scratch, "%.*s/%s%s", (int)(at - u), u, db, at + strlen("/chatter"));
    PGconn *pg = side_conn();
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    PQclear(PQexec(pg, sql));

    db_conn *c = open_with(DB_RECONNECT_AUTO, scratch);
    ck_assert(wait_state(c, DB_CONNECTED, WAIT_MS));
    res r = {0};
    ck_assert_int_eq(db_users_list(c, on_users, &r), 0);
    wait_res(&r);
    ck_assert_int_eq(r.err.code, DB_QUERY_FAILED);
    ck_assert_str_eq(r.err.sqlstate, "42P01");  /* undefined_table, not 26000 */

    char err[512] = "";
    int applied = 0;
    ck_assert_msg(db_migrate(scratch, "sql", &applied, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ge(applied, 2);
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(db_users_list(c, on_users, &r), 0);
    wait_ok(&r);
    ck_assert_uint_eq(r.users->n, 0);
    res_free(&r);
    close_conn(c);

    snprintf(sql, sizeof sql, "DROP DATABASE %s", db);
    PGresult *pr = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(pr) == PGRES_COMMAND_OK, "%s", PQresultErrorMessage(pr));
    PQclear(pr);
    PQfinish(pg);
}
END_TEST

/* ------------------------------------------------------------ users */

START_TEST(test_get_or_create)
{
    db_conn *c = open_ok();
    bool created = false;
    db_user *a = user_named(c, "alice", &created);
    ck_assert(created);
    ck_assert_int_eq(strlen(a->id), 36);
    db_user *a2 = user_named(c, "alice", &created);
    ck_assert(!created);
    ck_assert_str_eq(a2->id, a->id);
    ck_assert_str_eq(a2->name, a->name);
    db_user *b = user_named(c, "bob", &created);
    ck_assert(created);
    ck_assert_str_ne(b->id, a->id);

    res r = {0};
    ck_assert_int_eq(db_users_list(c, on_users, &r), 0);
    wait_ok(&r);
    int ia = -1, ib = -1;
    for (size_t i = 0; i < r.users->n; i++) {
        const db_user *u = &r.users->users[i];
        if (i > 0) ck_assert_str_ne(u->name, r.users->users[i - 1].name);
        if (strcmp(u->name, a->name) == 0) { ia = (int)i; ck_assert_str_eq(u->id, a->id); }
        if (strcmp(u->name, b->name) == 0) { ib = (int)i; ck_assert_str_eq(u->id, b->id); }
    }
    ck_assert_int_ge(ia, 0);
    ck_assert_int_gt(ib, ia);  /* ordered by name */
    res_free(&r);
    db_user_free(a);
    db_user_free(a2);
    db_user_free(b);
    close_conn(c);
}
END_TEST

START_TEST(test_names_unique)
{
    db_conn *c = open_ok();
    char name[128], sql[256];
    name_for(name, sizeof name, "carol");
    /* Two get-or-creates of one new name in one pipeline: one user. */
    res r1 = {0}, r2 = {0};
    ck_assert_int_eq(db_user_get_or_create(c, name, on_user, &r1), 0);
    ck_assert_int_eq(db_user_get_or_create(c, name, on_user, &r2), 0);
    wait_ok(&r1);
    wait_ok(&r2);
    ck_assert_str_eq(r1.user->id, r2.user->id);
    ck_assert(r1.created && !r2.created);

    PGconn *pg = side_conn();
    snprintf(sql, sizeof sql, "INSERT INTO users (name) VALUES ('%s')", name);
    expect_refused(pg, sql, "23505");
    PQfinish(pg);
    res_free(&r1);
    res_free(&r2);
    close_conn(c);
}
END_TEST

/* Many names in one statement: one user per distinct name (a repeat in the
 * batch is no error), `created` true only for the new ones, ids the same as
 * the one-name upsert's. */
START_TEST(test_users_batch_get_or_create)
{
    db_conn *c = open_ok();
    char a[128], b[128], old[128];
    name_for(a, sizeof a, "bat-a");
    name_for(b, sizeof b, "bat-b");
    db_user *o = user_named(c, "bat-old", NULL);
    snprintf(old, sizeof old, "%s", o->name);
    const char *names[] = {b, a, old, b};
    res r = {0};
    ck_assert_int_eq(db_users_get_or_create(c, names, 4, on_users, &r), 0);
    wait_ok(&r);
    ck_assert_uint_eq(r.users->n, 3);
    int seen = 0;
    for (size_t i = 0; i < r.users->n; i++) {
        const db_user *u = &r.users->users[i];
        if (strcmp(u->name, old) == 0) {
            ck_assert(!u->created);
            ck_assert_str_eq(u->id, o->id);
            seen |= 1;
        } else {
            ck_assert_msg(u->created, "%s", u->name);
            seen |= strcmp(u->name, a) == 0 ? 2 : strcmp(u->name, b) == 0 ? 4 : 8;
        }
    }
    ck_assert_int_eq(seen, 7);
    res r2 = {0};
    ck_assert_int_eq(db_users_get_or_create(c, names, 2, on_users, &r2), 0);
    wait_ok(&r2);
    ck_assert_uint_eq(r2.users->n, 2);
    ck_assert(!r2.users->users[0].created && !r2.users->users[1].created);
    ck_assert_int_eq(db_users_get_or_create(c, names, 0, on_users, &r2), -1);
    db_user_free(o);
    res_free(&r);
    res_free(&r2);
    close_conn(c);
}
END_TEST

/* ------------------------------------------------------------ messages */

static bool iso_utc_us(const char *s)
{
    int y, mo, d, h, mi, se, us;
    char z;
    return strlen(s) == 27 && s[10] == 'T' &&
           sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &y, &mo, &d, &h, &mi, &se, &us, &z) == 8 &&
           z == 'Z';
}

/* Inserts n messages by u in one batch, waited for; caller frees. */
static db_message_list *insert_batch(db_conn *c, const db_new_message *m, size_t n)
{
    res r = {0};
    ck_assert_int_eq(db_messages_insert(c, m, n, on_msgs, &r), 0);
    wait_ok(&r);
    ck_assert_uint_eq(r.msgs->n, n);
    return r.msgs;
}

START_TEST(test_batch_insert_in_order)
{
    db_conn *c = open_ok();
    db_user *a = user_named(c, "dave", NULL), *b = user_named(c, "erin", NULL);
    const char *texts[] = {"he said \"hi\"", "back\\slash", "NULL", "{a,b}", "h\xc3\xa9llo \xe2\x9c\x93",
                           "  spaced  ", "'quote'"};
    enum { N = sizeof texts / sizeof *texts };
    db_new_message in[N];
    for (int i = 0; i < N; i++) in[i] = (db_new_message){i % 2 ? b->id : a->id, texts[i], NULL};
    db_message_list *l = insert_batch(c, in, N);
    ck_assert(!l->more);
    for (int i = 0; i < N; i++) {
        const db_message *m = &l->messages[i];
        if (i > 0) ck_assert_int_gt(m->seq, l->messages[i - 1].seq);
        /* ids are UUID version 7, increasing in insert order (db.c's
         * message_ids): the primary key appends at its right edge */
        if (i > 0) ck_assert_int_gt(strcmp(m->id, l->messages[i - 1].id), 0);
        ck_assert_int_eq(m->id[14], '7');
        ck_assert_msg(strchr("89ab", m->id[19]), "variant of %s", m->id);
        ck_assert_str_eq(m->content, texts[i]);
        ck_assert_str_eq(m->user_id, in[i].user_id);
        ck_assert_str_eq(m->name, i % 2 ? b->name : a->name);
        ck_assert_int_eq(strlen(m->id), 36);
        ck_assert_msg(iso_utc_us(m->inserted_at), "inserted_at %s", m->inserted_at);
    }
    db_message_list_free(l);
    db_user_free(a);
    db_user_free(b);
    close_conn(c);
}
END_TEST

/* A failing statement spoils neither the batch (nothing stored) nor the
 * connection (the next query works). */
START_TEST(test_insert_errors_are_isolated)
{
    db_conn *c = open_ok();
    db_user *a = user_named(c, "frank", NULL);
    db_new_message bad[] = {{a->id, "fine", NULL}, {"00000000-0000-0000-0000-000000000000", "orphan", NULL}};
    db_new_message junk[] = {{"not-a-uuid", "x", NULL}};
    res r1 = {0}, r2 = {0}, r3 = {0};
    ck_assert_int_eq(db_messages_insert(c, bad, 2, on_msgs, &r1), 0);
    ck_assert_int_eq(db_messages_insert(c, junk, 1, on_msgs, &r2), 0);
    ck_assert_int_eq(db_ping(c, on_ping, &r3), 0);
    wait_res(&r1);
    wait_res(&r2);
    wait_ok(&r3);
    ck_assert_int_eq(r1.err.code, DB_QUERY_FAILED);
    ck_assert_str_eq(r1.err.sqlstate, "23503");
    ck_assert_ptr_null(r1.msgs);
    ck_assert_int_eq(r2.err.code, DB_QUERY_FAILED);
    ck_assert_str_eq(r2.err.sqlstate, "22P02");

    PGconn *pg = side_conn();
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE user_id = '%s'", a->id);
    ck_assert_int_eq(scalar(pg, sql), 0);
    PQfinish(pg);
    db_user_free(a);
    close_conn(c);
}
END_TEST

/* Migration 006 checks messages' users once per statement instead of by a
 * foreign key: a user that messages name can be neither deleted nor given
 * another id (23503, as the foreign key answered), one without messages can,
 * and a side INSERT of one row naming no user fails too. */
START_TEST(test_users_of_messages_are_kept)
{
    db_conn *c = open_ok();
    db_user *a = user_named(c, "kept", NULL), *b = user_named(c, "unused", NULL);
    db_new_message in[] = {{a->id, "keeps its author", NULL}};
    db_message_list_free(insert_batch(c, in, 1));
    close_conn(c);

    PGconn *pg = side_conn();
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM users WHERE id = '%s'", a->id);
    expect_refused(pg, sql, "23503");
    snprintf(sql, sizeof sql, "UPDATE users SET id = gen_random_uuid() WHERE id = '%s'", a->id);
    expect_refused(pg, sql, "23503");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM users WHERE id = '%s'", a->id);
    ck_assert_int_eq(scalar(pg, sql), 1);
    expect_refused(pg, "INSERT INTO messages (user_id, content) VALUES "
                       "('00000000-0000-0000-0000-000000000000', 'orphan')", "23503");
    snprintf(sql, sizeof sql, "DELETE FROM users WHERE id = '%s'", b->id);
    PGresult *r = PQexec(pg, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    ck_assert_str_eq(PQcmdTuples(r), "1");
    PQclear(r);
    PQfinish(pg);
    db_user_free(a);
    db_user_free(b);
}
END_TEST

/* A batch of about 1.2 MB: more than the socket takes at once, so the
 * connection must wait for writability and flush in pieces.  Its last row
 * names no user, so the whole batch fails and the shared development
 * database is not filled with test text (a later `joined` would carry it). */
START_TEST(test_big_batch_flushes_in_pieces)
{
    db_conn *c = open_ok();
    db_user *u = user_named(c, "ivan", NULL);
    enum { N = 600, LEN = 2000 };
    char *text = malloc(LEN + 1);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < LEN; i++) text[i] = "abc\\\"{},xyz"[i % 11];
    text[LEN] = '\0';
    db_new_message *in = calloc(N, sizeof *in);
    ck_assert_ptr_nonnull(in);
    for (int i = 0; i < N; i++) in[i] = (db_new_message){u->id, text, NULL};
    in[N - 1].user_id = "00000000-0000-0000-0000-000000000000";
    res r = {0}, after = {0};
    ck_assert_int_eq(db_messages_insert(c, in, N, on_msgs, &r), 0);
    ck_assert_int_eq(db_ping(c, on_ping, &after), 0);
    wait_res(&r);
    wait_ok(&after);
    ck_assert_int_eq(r.err.code, DB_QUERY_FAILED);
    ck_assert_str_eq(r.err.sqlstate, "23503");

    PGconn *pg = side_conn();
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE user_id = '%s'", u->id);
    ck_assert_int_eq(scalar(pg, sql), 0);
    PQfinish(pg);
    free(in);
    free(text);
    db_user_free(u);
    close_conn(c);
}
END_TEST

/* The rows stored for this user and client_id, from a side connection. */
static long long count_client_id(PGconn *pg, const char *user_id, const char *cid)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages WHERE user_id = '%s' AND client_id = '%s'",
             user_id, cid);
    return scalar(pg, sql);
}

/* client_id (protocol v2): a repeat, before or within a batch, is answered
 * with the stored message and stores nothing; no key never conflicts. */
START_TEST(test_client_id_stored_once)
{
    db_conn *c = open_ok();
    db_user *a = user_named(c, "kim", NULL), *b = user_named(c, "lee", NULL);
    db_new_message first[] = {{a->id, "one", "k1"}, {a->id, "no key", NULL},
                              {a->id, "one again", "k1"}, {b->id, "b's k1", "k1"},
                              {a->id, "empty key", ""}, {a->id, "two", "k-2_Z"}};
    db_message_list *l = insert_batch(c, first, 6);
    for (int i = 0; i < 6; i++) ck_assert_ptr_nonnull(l->messages[i].id);
    ck_assert(!l->messages[0].existed && !l->messages[1].existed);
    ck_assert_msg(l->messages[2].existed, "a repeat within the batch is not stored twice");
    ck_assert_str_eq(l->messages[2].id, l->messages[0].id);
    ck_assert_int_eq(l->messages[2].seq, l->messages[0].seq);
    ck_assert_str_eq(l->messages[2].content, "one"); /* the stored one */
    ck_assert_str_eq(l->messages[2].name, a->name);
    ck_assert(!l->messages[3].existed && !l->messages[4].existed && !l->messages[5].existed);
    ck_assert_int_gt(l->messages[1].seq, l->messages[0].seq);
    ck_assert_int_gt(l->messages[5].seq, l->messages[3].seq);
    int64_t seq_k1 = l->messages[0].seq;
    char id_k1[64];
    snprintf(id_k1, sizeof id_k1, "%s", l->messages[0].id);
    db_message_list_free(l);

    /* A later batch: the retry finds it, a new key beside it is stored. */
    db_new_message again[] = {{a->id, "retry, other text", "k1"}, {a->id, "three", "k3"},
                              {a->id, "no key", NULL}};
    l = insert_batch(c, again, 3);
    ck_assert(l->messages[0].existed);
    ck_assert_str_eq(l->messages[0].id, id_k1);
    ck_assert_int_eq(l->messages[0].seq, seq_k1);
    ck_assert_str_eq(l->messages[0].content, "one");
    ck_assert(iso_utc_us(l->messages[0].inserted_at));
    ck_assert(!l->messages[1].existed && !l->messages[2].existed);
    ck_assert_int_gt(l->messages[2].seq, l->messages[1].seq);
    db_message_list_free(l);

    res r = {0};
    ck_assert_int_eq(db_message_by_client_id(c, a->id, "k1", on_msgs, &r), 0);
    wait_ok(&r);
    ck_assert_uint_eq(r.msgs->n, 1);
    ck_assert_str_eq(r.msgs->messages[0].id, id_k1);
    ck_assert_str_eq(r.msgs->messages[0].content, "one");
    res_free(&r);
    ck_assert_int_eq(db_message_by_client_id(c, a->id, "nope", on_msgs, &r), 0);
    wait_ok(&r);
    ck_assert_uint_eq(r.msgs->n, 0);
    res_free(&r);
    ck_assert_int_eq(db_message_by_client_id(c, "not-a-uuid", "k1", on_msgs, &r), 0);
    wait_res(&r);
    ck_assert_int_eq(r.err.code, DB_QUERY_FAILED);
    res_free(&r);
    ck_assert_int_eq(db_message_by_client_id(c, a->id, "", on_msgs, &r), -1);
    ck_assert_int_eq(db_message_by_client_id(c, a->id, NULL, on_msgs, &r), -1);

    PGconn *pg = side_conn();
    ck_assert_int_eq(count_client_id(pg, a->id, "k1"), 1);
    ck_assert_int_eq(count_client_id(pg, b->id, "k1"), 1);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM messages WHERE user_id = '%s' AND client_id IS NULL", a->id);
    ck_assert_int_eq(scalar(pg, sql), 3); /* two without a key, one with "" */
    PQfinish(pg);
    db_user_free(a);
    db_user_free(b);
    close_conn(c);
}
END_TEST

/* Racing: another connection stores the same (user, client_id) while the
 * batch waits on the unique index.  The batch's other rows commit; that row
 * is not stored twice and comes back with id NULL (db.h), and
 * db_message_by_client_id then reads the other connection's row. */
START_TEST(test_client_id_race)
{
    db_conn *c = open_ok();
    db_user *a = user_named(c, "mia", NULL);
    PGconn *side = side_conn();
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO messages (user_id, content, client_id) "
             "VALUES ('%s', 'the other one', 'race')", a->id);
    PGresult *pr = PQexec(side, sql);
    ck_assert_int_eq(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    db_new_message in[] = {{a->id, "mine", "race"}, {a->id, "beside", "side"}};
    res r = {0};
    ck_assert_int_eq(db_messages_insert(c, in, 2, on_msgs, &r), 0);
    /* Wait until our statement waits on the side transaction's row. */
    PGconn *watch = side_conn();
    bool waiting = false;
    for (int i = 0; i < 1000 && !waiting; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        waiting = scalar(watch, "SELECT count(*) FROM pg_locks WHERE NOT granted") > 0;
        if (!waiting) usleep(5000); /* polls a condition another process sets */
    }
    ck_assert_msg(waiting, "the insert never waited on the side transaction");
    ck_assert(!r.done);
    pr = PQexec(side, "COMMIT");
    ck_assert_int_eq(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    wait_ok(&r);
    ck_assert_uint_eq(r.msgs->n, 2);
    ck_assert_ptr_null(r.msgs->messages[0].id);
    ck_assert_ptr_nonnull(r.msgs->messages[1].id);
    ck_assert(!r.msgs->messages[1].existed);
    ck_assert_str_eq(r.msgs->messages[1].content, "beside");
    res_free(&r);
    ck_assert_int_eq(db_message_by_client_id(c, a->id, "race", on_msgs, &r), 0);
    wait_ok(&r);
    ck_assert_uint_eq(r.msgs->n, 1);
    ck_assert_str_eq(r.msgs->messages[0].content, "the other one");
    res_free(&r);
    ck_assert_int_eq(count_client_id(watch, a->id, "race"), 1);
    PQfinish(watch);
    PQfinish(side);
    db_user_free(a);
    close_conn(c);
}
END_TEST

/* Checks a page: its seqs are want[0..n) and its `more` flag. */
static void expect_page(res *r, const int64_t *want, size_t n, bool more)
{
    wait_ok(r);
    ck_assert_uint_eq(r->msgs->n, n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(r->msgs->messages[i].seq, want[i]);
    ck_assert_msg(r->msgs->more == more, "more is %d", r->msgs->more);
    res_free(r);
}

START_TEST(test_latest_history_catch_up)
{
    db_conn *c = open_ok();
    db_user *u = user_named(c, "grace", NULL);
    enum { N = 10 };
    db_new_message in[N];
    char texts[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "m%d", i);
        in[i] = (db_new_message){u->id, texts[i], NULL};
    }
    db_message_list *l = insert_batch(c, in, N);
    int64_t s[N];
    for (int i = 0; i < N; i++) s[i] = l->messages[i].seq;
    db_message_list_free(l);
    res r = {0};

    /* catch_up: oldest first after the cursor; more when some remain. */
    ck_assert_int_eq(db_messages_after(c, s[4], 3, on_msgs, &r), 0);
    expect_page(&r, &s[5], 3, true);
    ck_assert_int_eq(db_messages_after(c, s[6], 3, on_msgs, &r), 0);
    expect_page(&r, &s[7], 3, false);  /* exactly the rest: no more */
    ck_assert_int_eq(db_messages_after(c, s[9], DB_CATCH_UP_LIMIT, on_msgs, &r), 0);
    expect_page(&r, NULL, 0, false);

    /* history: the newest before the cursor, oldest first. */
    ck_assert_int_eq(db_messages_before(c, s[5], 3, on_msgs, &r), 0);
    expect_page(&r, &s[2], 3, true);
    ck_assert_int_eq(db_messages_before(c, s[1], 1, on_msgs, &r), 0);
    wait_ok(&r);
    ck_assert_int_eq(r.msgs->n, 1);
    ck_assert_int_eq(r.msgs->messages[0].seq, s[0]);
    ck_assert_str_eq(r.msgs->messages[0].content, "m0");
    ck_assert_str_eq(r.msgs->messages[0].name, u->name);
    PGconn *pg = side_conn();
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE seq < %lld", (long long)s[0]);
    ck_assert(r.msgs->more == (scalar(pg, sql) > 0));
    res_free(&r);

    /* latest: the newest N, oldest first; more iff older exist. */
    ck_assert_int_eq(db_messages_latest(c, 3, on_msgs, &r), 0);
    expect_page(&r, &s[7], 3, true);
    long long total = scalar(pg, "SELECT count(*) FROM messages");
    if (total <= DB_MAX_LIMIT) {
        ck_assert_int_eq(db_messages_latest(c, (int)total, on_msgs, &r), 0);
        wait_ok(&r);
        ck_assert_int_eq(r.msgs->n, total);
        ck_assert(!r.msgs->more);
        ck_assert_int_eq(r.msgs->messages[total - 1].seq, s[9]);
        for (size_t i = 1; i < r.msgs->n; i++)
            ck_assert_int_gt(r.msgs->messages[i].seq, r.msgs->messages[i - 1].seq);
        res_free(&r);
        ck_assert_int_eq(db_messages_latest(c, (int)total - 1, on_msgs, &r), 0);
        wait_ok(&r);
        ck_assert(r.msgs->more);
        res_free(&r);
    }
    PQfinish(pg);
    db_user_free(u);
    close_conn(c);
}
END_TEST

START_TEST(test_bad_arguments_refused)
{
    db_conn *c = open_ok();
    res r = {0};
    db_new_message m = {NULL, "x", NULL};
    ck_assert_int_eq(db_messages_latest(c, 0, on_msgs, &r), -1);
    ck_assert_int_eq(db_messages_before(c, 10, DB_MAX_LIMIT + 1, on_msgs, &r), -1);
    ck_assert_int_eq(db_messages_after(c, 10, 5, NULL, &r), -1);
    ck_assert_int_eq(db_messages_insert(c, &m, 0, on_msgs, &r), -1);
    ck_assert_int_eq(db_messages_insert(c, &m, 1, on_msgs, &r), -1);
    ck_assert_int_eq(db_user_get_or_create(c, NULL, on_user, &r), -1);
    ck_assert_uint_eq(db_conn_pending(c), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert(!r.done);
    close_conn(c);
}
END_TEST

/* ------------------------------------------------------------ the connection */

enum { MANY = 60 };
typedef struct order_rec { int seen[MANY]; int n; res r[MANY]; } order_rec;
typedef struct order_slot { order_rec *rec; int i; } order_slot;
static order_slot slots[MANY];

static void on_ordered_ping(void *ud, const db_error *err, uint64_t rtt)
{
    order_slot *s = ud;
    s->rec->seen[s->rec->n++] = s->i;
    on_ping(&s->rec->r[s->i], err, rtt);
}

static void on_ordered_msgs(void *ud, const db_error *err, db_message_list *l)
{
    order_slot *s = ud;
    s->rec->seen[s->rec->n++] = s->i;
    on_msgs(&s->rec->r[s->i], err, l);
}

static bool all_seen(void *arg) { return ((order_rec *)arg)->n == MANY; }

/* Submitted before the connection is up: they wait, then run, and every
 * callback fires in submission order. */
START_TEST(test_pipeline_order_and_queue_while_connecting)
{
    static order_rec rec;
    memset(&rec, 0, sizeof rec);
    db_conn *c = open_with(DB_RECONNECT_AUTO, url());
    ck_assert_int_eq(db_conn_state(c), DB_CONNECTING);
    for (int i = 0; i < MANY; i++) {
        slots[i] = (order_slot){&rec, i};
        int rc = i % 3 ? db_ping(c, on_ordered_ping, &slots[i])
                       : db_messages_latest(c, 2, on_ordered_msgs, &slots[i]);
        ck_assert_int_eq(rc, 0);
    }
    ck_assert_int_eq(rec.n, 0);  /* never called from inside a submit */
    ck_assert(run_until(all_seen, &rec, WAIT_MS));
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(rec.seen[i], i);
        ck_assert_msg(rec.r[i].ok, "query %d: %s", i, rec.r[i].err.message);
        res_free(&rec.r[i]);
    }
    ck_assert_uint_eq(db_conn_pending(c), 0);
    ck_assert_uint_gt(db_conn_last_rtt_us(c), 0);
    close_conn(c);
}
END_TEST

static int closed_count;

static void on_ping_closed(void *ud, const db_error *err, uint64_t rtt)
{
    (void)ud;
    (void)rtt;
    if (err && err->code == DB_CLOSED) closed_count++;
}

START_TEST(test_close_fails_pending_with_closed)
{
    db_conn *c = open_ok();
    closed_count = 0;
    for (int i = 0; i < 5; i++) ck_assert_int_eq(db_ping(c, on_ping_closed, NULL), 0);
    bool closed = false;
    db_conn_close(c, on_closed, &closed);
    ck_assert_int_eq(closed_count, 5);
    ck_assert(run_until(flag_set, &closed, WAIT_MS));
}
END_TEST

/* Callbacks may submit more queries, and may close the connection. */
typedef struct chain { db_conn *c; int step; bool closed; res last; } chain;

static void on_chain(void *ud, const db_error *err, uint64_t rtt)
{
    chain *ch = ud;
    (void)rtt;
    wake();
    ck_assert_ptr_null(err);
    if (++ch->step < 3) {
        ck_assert_int_eq(db_ping(ch->c, on_chain, ch), 0);
        return;
    }
    ck_assert_int_eq(db_ping(ch->c, on_ping, &ch->last), 0);  /* pending at close */
    db_conn_close(ch->c, on_closed, &ch->closed);
    ck_assert(ch->last.done);
    ck_assert_int_eq(ch->last.err.code, DB_CLOSED);
    ck_assert_int_eq(db_ping(ch->c, on_ping, &ch->last), -1);  /* closing: refused */
}

START_TEST(test_callbacks_may_submit_and_close)
{
    chain ch = {.c = open_ok()};
    ck_assert_int_eq(db_ping(ch.c, on_chain, &ch), 0);
    ck_assert(run_until(flag_set, &ch.closed, WAIT_MS));
    ck_assert_int_eq(ch.step, 3);
}
END_TEST

static int state_changes;
static db_state last_state;

static void on_state(db_conn *c, db_state s, void *ud)
{
    (void)c;
    (void)ud;
    wake();
    state_changes++;
    last_state = s;
}

/* Nobody listens there: the query fails as unavailable, later, not inside
 * the submit; a manual connection stays down. */
START_TEST(test_unreachable_is_unavailable)
{
    state_changes = 0;
    db_conn_opts o = {.conninfo = "postgresql://postgres@/chatter?host=/nonexistent-dir&port=1",
                      .reconnect = DB_RECONNECT_MANUAL, .on_state = on_state};
    db_conn *c = db_conn_open(&loop, &o);
    ck_assert_ptr_nonnull(c);
    res r = {0};
    ck_assert_int_eq(db_ping(c, on_ping, &r), 0);
    ck_assert(!r.done);
    wait_res(&r);
    ck_assert_int_eq(r.err.code, DB_UNAVAILABLE);
    ck_assert_int_eq(db_conn_state(c), DB_DOWN);
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(db_ping(c, on_ping, &r), 0);
    ck_assert(!r.done);
    wait_res(&r);
    ck_assert_int_eq(r.err.code, DB_UNAVAILABLE);
    ck_assert_int_eq(last_state, DB_DOWN);
    close_conn(c);
}
END_TEST

/* ------------------------------------------------------------ outage */

static bool devdb_cluster(void)
{
    return strstr(url(), "_build/pg/run") != NULL && access("sql/devdb.sh", R_OK) == 0;
}

static int devdb(const char *cmd)
{
    char line[128];
    snprintf(line, sizeof line, "bash sql/devdb.sh %s >/dev/null", cmd);
    return system(line);
}

static void ensure_cluster_up(void)
{
    if (devdb_cluster()) devdb("start");
}

/* Stops PostgreSQL under pending queries: they and later ones fail as
 * `unavailable`; once it is back, the automatic connection recovers alone
 * and the manual one on db_conn_reconnect. */
START_TEST(test_outage_and_recovery)
{
    if (!devdb_cluster()) {
        fprintf(stderr, "test_outage_and_recovery: skipped (not the private cluster)\n");
        return;
    }
    /* A side transaction holds a new name, so an upsert of it waits: it is
     * pending when the server goes.  The side connection is opened first on
     * purpose: PostgreSQL signals the newest backends first at shutdown, so
     * ours is told to die before the holder can abort and free the name
     * (the other order let the upsert slip through and commit). */
    char name[128], sql[256];
    name_for(name, sizeof name, "locked");
    PGconn *side = side_conn();
    snprintf(sql, sizeof sql, "BEGIN; INSERT INTO users (name) VALUES ('%s')", name);
    PGresult *pr = PQexec(side, sql);
    ck_assert_int_eq(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);

    db_conn *c = open_ok();
    db_conn *m = open_with(DB_RECONNECT_MANUAL, url());
    ck_assert(wait_state(m, DB_CONNECTED, WAIT_MS));
    db_user *u = user_named(c, "heidi", NULL);
    res blocked = {0}, behind = {0}, later = {0};
    ck_assert_int_eq(db_user_get_or_create(c, name, on_user, &blocked), 0);
    ck_assert_int_eq(db_ping(c, on_ping, &behind), 0);
    uv_run(&loop, UV_RUN_NOWAIT);

    ck_assert_int_eq(devdb("stop"), 0);
    wait_res(&blocked);
    wait_res(&behind);
    ck_assert_int_eq(blocked.err.code, DB_UNAVAILABLE);
    ck_assert_int_eq(behind.err.code, DB_UNAVAILABLE);
    ck_assert_int_ne(db_conn_state(c), DB_CONNECTED);
    ck_assert_int_eq(db_ping(c, on_ping, &later), 0);
    wait_res(&later);
    ck_assert_int_eq(later.err.code, DB_UNAVAILABLE);
    ck_assert(wait_state(m, DB_DOWN, WAIT_MS));
    PQfinish(side);

    ck_assert_int_eq(devdb("start"), 0);
    ck_assert_msg(wait_state(c, DB_CONNECTED, 3 * WAIT_MS), "no automatic reconnect");
    res r = {0};
    db_new_message msg = {u->id, "after the outage", NULL};
    ck_assert_int_eq(db_messages_insert(c, &msg, 1, on_msgs, &r), 0);
    wait_ok(&r);
    int64_t seq = r.msgs->messages[0].seq;
    res_free(&r);
    ck_assert_int_eq(db_messages_latest(c, 1, on_msgs, &r), 0);
    wait_ok(&r);
    ck_assert_int_eq(r.msgs->messages[0].seq, seq);
    res_free(&r);

    ck_assert_int_eq(db_conn_state(m), DB_DOWN);  /* manual: waits to be told */
    db_conn_reconnect(m);
    ck_assert(wait_state(m, DB_CONNECTED, WAIT_MS));
    ck_assert_int_eq(db_ping(m, on_ping, &r), 0);
    wait_ok(&r);

    db_user_free(u);
    close_conn(c);
    close_conn(m);
}
END_TEST

/* ------------------------------------------------------------ hung server */

/* Backends this process stopped with SIGSTOP (pg_stop.h). */
#define PG_STOPPED_FILE "_build/test_db.stopped"

#include "pg_stop.h"

static bool pid_changed(void *arg)
{
    conn_watch *w = arg;
    return db_conn_state(w->c) == DB_CONNECTED && db_conn_backend_pid(w->c) != (int)w->want;
}

/* Issue 8 item 16: the backend is stopped (hung, not dead).  A query past
 * its deadline is answered DB_UNAVAILABLE, the connection is dropped and
 * replaced by one to a new backend, which works. */
START_TEST(test_deadline_drops_hung_connection)
{
    if (!devdb_cluster()) return; /* SIGSTOP only our own private cluster */
    db_conn_opts o = {.conninfo = url(), .query_timeout_ms = 600, .application_name = "t-hung"};
    db_conn *c = db_conn_open(&loop, &o);
    ck_assert(wait_state(c, DB_CONNECTED, WAIT_MS));
    int pid = db_conn_backend_pid(c);
    ck_assert_int_gt(pid, 0);
    PGconn *pg = side_conn();
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d"
             " AND application_name = 't-hung'", pid);
    ck_assert_int_eq(scalar(pg, sql), 1);
    stop_backend(pid);
    res r = {0};
    uint64_t t0 = uv_hrtime();
    ck_assert_int_eq(db_ping(c, on_ping, &r), 0);
    wait_res(&r);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    ck_assert_int_eq(r.err.code, DB_UNAVAILABLE);
    ck_assert_msg(ms >= 500 && ms < 5000, "answered after %llu ms", (unsigned long long)ms);
    ck_assert_uint_eq(db_conn_deadline_drops(c), 1);
    conn_watch w = {c, (db_state)pid};
    ck_assert_msg(run_until(pid_changed, &w, WAIT_MS), "not replaced by a new backend");
    res ok = {0};
    ck_assert_int_eq(db_ping(c, on_ping, &ok), 0);
    wait_ok(&ok);
    kill(pid, SIGCONT);
    PQfinish(pg);
    close_conn(c);
}
END_TEST

/* The server-side bound: a lock held elsewhere is waited for at most
 * lock_timeout (1/2 of the deadline), then the statement fails with 55P03
 * and is rolled back; the connection stays and the next query works. */
START_TEST(test_lock_timeout_fails_statement_only)
{
    char name[128], sql[256];
    name_for(name, sizeof name, "held");
    PGconn *side = side_conn();
    snprintf(sql, sizeof sql, "BEGIN; INSERT INTO users (name) VALUES ('%s')", name);
    PGresult *pr = PQexec(side, sql);
    ck_assert_int_eq(PQresultStatus(pr), PGRES_COMMAND_OK);
    PQclear(pr);
    db_conn_opts o = {.conninfo = url(), .query_timeout_ms = 800};
    db_conn *c = db_conn_open(&loop, &o);
    ck_assert(wait_state(c, DB_CONNECTED, WAIT_MS));
    int pid = db_conn_backend_pid(c);
    res r = {0}, after = {0};
    ck_assert_int_eq(db_user_get_or_create(c, name, on_user, &r), 0);
    wait_res(&r);
    ck_assert_int_eq(r.err.code, DB_QUERY_FAILED);
    ck_assert_str_eq(r.err.sqlstate, "55P03");
    ck_assert_int_eq(db_ping(c, on_ping, &after), 0);
    wait_ok(&after);
    ck_assert_int_eq(db_conn_backend_pid(c), pid);
    ck_assert_uint_eq(db_conn_deadline_drops(c), 0);
    PQfinish(side);
    res_free(&r);
    close_conn(c);
}
END_TEST

/* ------------------------------------------------------------ main */

static Suite *db_suite(void)
{
    Suite *s = suite_create("db");
    TCase *mig = checked_case(s, "migrations", setup, teardown, 30);
    tcase_add_test(mig, test_migrate_twice_is_noop);
    tcase_add_test(mig, test_migrate_failure_rolls_back);
    tcase_add_test(mig, test_queries_before_and_after_migration);

    TCase *q = checked_case(s, "queries", setup, teardown, 30);
    tcase_add_test(q, test_get_or_create);
    tcase_add_test(q, test_names_unique);
    tcase_add_test(q, test_users_batch_get_or_create);
    tcase_add_test(q, test_batch_insert_in_order);
    tcase_add_test(q, test_insert_errors_are_isolated);
    tcase_add_test(q, test_users_of_messages_are_kept);
    tcase_add_test(q, test_latest_history_catch_up);
    tcase_add_test(q, test_bad_arguments_refused);
    tcase_add_test(q, test_big_batch_flushes_in_pieces);
    tcase_add_test(q, test_client_id_stored_once);
    tcase_add_test(q, test_client_id_race);

    TCase *conn = checked_case(s, "connection", setup, teardown, 30);
    tcase_add_test(conn, test_pipeline_order_and_queue_while_connecting);
    tcase_add_test(conn, test_close_fails_pending_with_closed);
    tcase_add_test(conn, test_callbacks_may_submit_and_close);
    tcase_add_test(conn, test_unreachable_is_unavailable);
    tcase_add_test(conn, test_deadline_drops_hung_connection);
    tcase_add_test(conn, test_lock_timeout_fails_statement_only);

    /* Last: it stops the shared cluster. */
    TCase *out = checked_case(s, "outage", setup, teardown, 90);
    tcase_add_unchecked_fixture(out, NULL, ensure_cluster_up);
    tcase_add_test(out, test_outage_and_recovery);
    return s;
}

int main(void)
{
    if (db_test_migrate("test_db") != 0) return 1;
    int failed = db_test_run(db_suite());
    resume_stopped();     /* whatever happened above */
    ensure_cluster_up();
    return failed ? 1 : 0;
}
