/* db.h: Chatter's PostgreSQL access, a non-blocking libpq connection driven
 * by a libuv loop, plus the blocking migration runner used at start-up.
 *
 * How it fits: the repo actors (app/repo.c) each own one db_conn on their
 * scheduler's uv_loop_t and call the typed queries below from their handlers;
 * nothing here knows about actors.  A db_conn is not thread-safe: create it,
 * use it and close it on the thread that runs its loop.
 *
 * The connection pipelines (libpq pipeline mode): queries are sent as soon as
 * they are submitted, many may be in flight, and their callbacks fire in
 * submission order.  Each query is its own implicit transaction, so one
 * failing query does not spoil the ones around it.
 *
 * Callback contract, for every db_* query function:
 *   - it returns 0 when it accepted the query; the callback then fires exactly
 *     once, later, from the loop (never from inside the submitting call;
 *     only db_conn_close runs pending callbacks inside itself);
 *   - it returns -1 when it refused the query (bad arguments, out of memory,
 *     connection closing); the callback never fires;
 *   - the callback gets err == NULL and a result it now owns (free it with the
 *     matching *_free), or err != NULL (valid during the call only) and a NULL
 *     result;
 *   - err->code is DB_UNAVAILABLE when PostgreSQL cannot be reached or the
 *     connection broke with the query pending: nothing can be assumed stored
 *     unless a later read shows it (an insert whose commit reply was lost may
 *     have committed);
 *   - callbacks may submit queries, and may close the connection.
 *
 * Connection loss: every pending query completes with DB_UNAVAILABLE.  With
 * DB_RECONNECT_AUTO (the default) the connection retries after 100 ms,
 * doubling to 5 s; queries submitted while it is down fail on the next loop
 * turn with DB_UNAVAILABLE, while it is connecting they wait for the outcome.
 *
 * Deadlines (issue 8 items 15, 16): a query that has been in the pipeline
 * for query_timeout_ms (DB_QUERY_TIMEOUT_MS) drops the connection: it and
 * every pending query complete with DB_UNAVAILABLE and the back-off
 * reconnects.  Each connection also asks the server for a lock_timeout of
 * 1/2 and a statement_timeout of 3/4 of that (a slow statement is cancelled
 * and rolled back, an error the connection survives), client_connection_check_interval
 * of 1 s (a backend whose client dropped it abandons its query), and TCP
 * keepalives (a silent peer is dead after 11 s; not on a Unix socket).  These
 * override `options` in the caller's conninfo.  Host names are resolved by libpq while
 * connecting, blocking the loop briefly; the development cluster's Unix
 * socket needs no resolution. */
#ifndef CHATTER_DB_H
#define CHATTER_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef enum db_state {
    DB_DOWN,        /* no connection; maybe a retry timer armed */
    DB_CONNECTING,  /* PQconnectPoll in progress */
    DB_CONNECTED,   /* ready; queries are sent at once */
} db_state;

typedef enum db_errcode {
    DB_OK = 0,
    DB_UNAVAILABLE,   /* PostgreSQL unreachable now, or the link broke */
    DB_QUERY_FAILED,  /* the server refused the statement: see sqlstate */
    DB_CLOSED,        /* db_conn_close ran while the query was pending */
    DB_BAD_RESULT,    /* the result had an unexpected shape, or no memory */
} db_errcode;

typedef struct db_error {
    db_errcode code;
    char sqlstate[6];   /* "23505" etc. for DB_QUERY_FAILED, else "" */
    char message[256];  /* one line, for logs */
} db_error;

typedef enum db_reconnect {
    DB_RECONNECT_AUTO = 0,  /* back-off timer retries by itself */
    DB_RECONNECT_MANUAL,    /* stays DB_DOWN until db_conn_reconnect() */
} db_reconnect;

typedef struct db_conn db_conn;

/* A query's deadline, from when it is sent.  Below the sessions' request
 * timeouts (15 s, inserts 30 s), so that the repo, which knows the outcome
 * is unknown, answers first. */
#define DB_QUERY_TIMEOUT_MS 5000

typedef struct db_conn_opts {
    const char *conninfo;           /* libpq URI or key=value; copied */
    db_reconnect reconnect;
    unsigned backoff_min_ms;        /* 0: 100 */
    unsigned backoff_max_ms;        /* 0: 5000 */
    unsigned connect_timeout_ms;    /* 0: 5000; an attempt longer fails */
    unsigned query_timeout_ms;      /* 0: DB_QUERY_TIMEOUT_MS (above) */
    const char *application_name;   /* NULL: "chatter"; shown in pg_stat_activity */
    /* Told of state changes from the loop, coalesced (a quick
     * DOWN->CONNECTING->DOWN may not be reported at all).  Never called
     * after db_conn_close.  May be NULL. */
    void (*on_state)(db_conn *c, db_state state, void *ud);
    void *ud;
} db_conn_opts;

/* Creates the connection and starts connecting at once.  NULL: no memory. */
db_conn *db_conn_open(uv_loop_t *loop, const db_conn_opts *opts);

/* Ends the connection.  The callbacks of pending queries run inside this call
 * with DB_CLOSED (they may not submit).  The memory goes once the loop has
 * closed the handles; on_closed (may be NULL) is called then. */
void db_conn_close(db_conn *c, void (*on_closed)(void *ud), void *ud);

/* When DB_DOWN: connect now (cancelling any back-off wait).  Else nothing. */
/* For tests only (test_db.c): nothing in app/ calls it. */
void db_conn_reconnect(db_conn *c);

db_state db_conn_state(const db_conn *c);
size_t db_conn_pending(const db_conn *c);      /* queries not yet completed */
/* For tests only (test_db.c): nothing in app/ calls it. */
uint64_t db_conn_last_rtt_us(const db_conn *c); /* of the last db_ping */
/* The server process serving this connection (pg_stat_activity.pid), or 0
 * when not connected. */
int db_conn_backend_pid(const db_conn *c);
/* How many times a missed deadline dropped this connection. */
/* For tests only (test_db.c): nothing in app/ calls it. */
unsigned db_conn_deadline_drops(const db_conn *c);
/* Drop the connection as if it broke (pending queries: DB_UNAVAILABLE, on a
 * later loop turn) and reconnect with back-off.  Nothing if already DOWN. */
void db_conn_reset(db_conn *c, const char *why);
const char *db_errcode_name(db_errcode e);

/* ---- records: plain C, strings owned (NUL-terminated, UTF-8) ---- */

typedef struct db_user {
    char *id;    /* UUID text */
    char *name;
    bool created; /* db_users_get_or_create only: this call created it */
} db_user;

typedef struct db_user_list {
    db_user *users;
    size_t n;
} db_user_list;

typedef struct db_message {
    char *id;           /* UUID text */
    int64_t seq;
    char *user_id;      /* UUID text */
    char *name;         /* the author's, joined from users */
    char *content;
    char *inserted_at;  /* "2026-11-24T01:02:03.123456Z" */
    bool existed;       /* insert only: (user_id, client_id) was already
                           stored; this is that stored message */
} db_message;

typedef struct db_message_list {
    db_message *messages;  /* always oldest first (increasing seq) */
    size_t n;
    bool more;             /* see each query */
} db_message_list;

typedef struct db_new_message {
    const char *user_id;   /* UUID text of an existing user */
    const char *content;   /* no NUL inside (PROTOCOL.md forbids U+0000) */
    const char *client_id; /* NULL or "" = none; else unique per user */
} db_new_message;

void db_user_free(db_user *u);
void db_user_list_free(db_user_list *l);
void db_message_list_free(db_message_list *l);

typedef void (*db_user_list_cb)(void *ud, const db_error *err, db_user_list *res);
typedef void (*db_user_cb)(void *ud, const db_error *err, db_user *user, bool created);
typedef void (*db_message_list_cb)(void *ud, const db_error *err, db_message_list *res);
typedef void (*db_ping_cb)(void *ud, const db_error *err, uint64_t rtt_us);
typedef void (*db_bool_cb)(void *ud, const db_error *err, bool value);

/* ---- typed queries (prepared on first use on each connection) ---- */

#define DB_MAX_LIMIT 10000      /* largest limit the message queries take */
#define DB_CATCH_UP_LIMIT 500   /* PROTOCOL.md's catch_up page */

/* Every user, ordered by name. */
int db_users_list(db_conn *c, db_user_list_cb cb, void *ud);

/* The user with this name, created if new (created tells which).  The name
 * must already be validated and trimmed by the caller. */
int db_user_get_or_create(db_conn *c, const char *name, db_user_cb cb, void *ud);

/* The same for names[0..n) (n >= 1; repeats allowed) in ONE statement and
 * one commit: one user per distinct name, in no particular order, each with
 * `created`.  A create is a commit, a WAL flush: a ramp of new users was
 * bound by one flush per name. */
int db_users_get_or_create(db_conn *c, const char *const *names, size_t n,
                           db_user_list_cb cb, void *ud);

/* Inserts msgs[0..n) (n >= 1) in ONE statement, so all or none commit, with
 * seq increasing in input order: res->n == n and res->messages[i] is msgs[i].
 * more=false.  A user_id that does not exist fails the batch with sqlstate
 * 23503.
 * client_id: a row whose (user_id, client_id) is already stored, or appears
 * earlier in the same batch, is not stored again: messages[i] is the stored
 * message with existed = true.  Rarely (another connection committed that
 * client_id while this statement ran) messages[i].id is NULL and every other
 * field of it zero: the message exists but this statement could not read
 * it; db_message_by_client_id can. */
int db_messages_insert(db_conn *c, const db_new_message *msgs, size_t n,
                       db_message_list_cb cb, void *ud);

/* The message this user stored with this client_id: a list of 0 or 1
 * (existed = false in it).  A user_id that is not a UUID fails (22P02). */
int db_message_by_client_id(db_conn *c, const char *user_id, const char *client_id,
                            db_message_list_cb cb, void *ud);

/* The newest `limit` messages (1..DB_MAX_LIMIT), oldest first; more = older
 * ones exist.  The `joined` reply's list. */
int db_messages_latest(db_conn *c, int limit, db_message_list_cb cb, void *ud);

/* history: the newest `limit` messages with seq < before, oldest first;
 * more = messages older than the first returned exist. */
int db_messages_before(db_conn *c, int64_t before, int limit,
                       db_message_list_cb cb, void *ud);

/* catch_up: the oldest `limit` messages with seq > after, oldest first;
 * more = messages newer than the last returned exist. */
int db_messages_after(db_conn *c, int64_t after, int limit,
                      db_message_list_cb cb, void *ud);

/* Ends the backend `pid` if it is still there with this application_name
 * (pg_terminate_backend) and waits up to wait_ms for it to exit: value is
 * true once it is gone, false if it still runs (a SIGSTOPped process only
 * handles the signal when it resumes).  The writer's fence: whatever that
 * backend was doing is final once it is gone. */
int db_backend_end(db_conn *c, int pid, const char *application_name, unsigned wait_ms,
                   db_bool_cb cb, void *ud);

/* SELECT 1; rtt_us from submission to reply (includes any queue ahead). */
int db_ping(db_conn *c, db_ping_cb cb, void *ud);

/* ---- migrations (BLOCKING: call at start-up, before actors run, or on a
 * worker thread; it uses its own short-lived connection, no loop) ---- */

/* Applies dir's NNN_*.sql files in name order, each in its own transaction,
 * recording NNN in schema_migrations(version, inserted_at) and skipping those
 * already there, so applying twice changes nothing.  Concurrent servers are
 * serialised by an advisory lock.  Returns 0 and sets *applied (may be NULL)
 * to the number newly applied, or -1 with a message in err. */
int db_migrate(const char *conninfo, const char *dir, int *applied,
               char *err, size_t errlen);

#endif
