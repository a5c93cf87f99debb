/* db.c: the non-blocking PostgreSQL connection of db.h and the blocking
 * migration runner.
 *
 * One db_conn is one libpq connection in pipeline mode, watched by a uv_poll_t
 * on PQsocket.  Queries live in three FIFOs:
 *   waiting  accepted while connecting; sent when the connection is ready;
 *   sent     in the pipeline, awaiting results (each followed by a Sync, so
 *            each is its own transaction and an error spoils nothing else);
 *   done     completed (result or error), callbacks due.
 * Callbacks only ever run from dispatch(), which runs at the end of our own
 * libuv callbacks (and from a zero-delay timer when something completes
 * inside a submitting call), so a caller is never re-entered from a submit.
 * Because every completion goes through `done` in order, callbacks fire in
 * submission order even across a connection loss.
 *
 * Memory: the db_conn is freed only in the close callbacks of its two timers,
 * so it stays valid while dispatch() runs even if a callback closes it.
 * Every libpq call is guarded by the connection generation (`gen`) or by
 * doing all libpq work before any callback runs.
 *
 * Kind: a pure library -- no actor, no message, no registered name; the caller
 * owns whatever state it works on (README "Reading the app").
 */
#include "db.h"

#include "buf.h"
#include "queue.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ------------------------------------------------------------ statements */

/* inserted_at as PROTOCOL.md wants it: ISO 8601, UTC, microseconds. */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
/* Every message statement returns these six columns in this order. */
#define MSG_COLS(m) \
    m ".id::text, " m ".seq, " m ".user_id::text, u.name, " m ".content, " TS(m ".inserted_at")

enum stmt { ST_USERS_LIST, ST_USER_UPSERT, ST_MSG_INSERT, ST_MSG_BEFORE,
            ST_MSG_AFTER, ST_MSG_BY_CLIENT_ID, ST_BACKEND_END, ST_PING,
            ST_USERS_UPSERT, ST_COUNT };

static const struct { const char *name, *sql; int nparams; } STMTS[ST_COUNT] = {
    [ST_USERS_LIST] = {"chatter_users_list",
        "SELECT id::text, name FROM users ORDER BY name", 0},
    /* xmax = 0 only on a freshly inserted row: tells created from found.  The
     * DO UPDATE (not DO NOTHING) makes RETURNING yield the existing row. */
    [ST_USER_UPSERT] = {"chatter_user_upsert",
        "INSERT INTO users (name) VALUES ($1) "
        "ON CONFLICT (name) DO UPDATE SET updated_at = now() "
        "RETURNING id::text, name, (xmax = 0) AS created", 1},
    /* One statement for the whole batch: all or nothing, seq in input order
     * (rows are inserted in the ORDER BY ord order the SELECT produces).
     * A row whose (user_id, client_id) is already stored, before or earlier
     * in the same batch, is skipped by ON CONFLICT and answered with the
     * stored row (existed = true).  The ids come with the rows ($4, made by
     * message_ids below: time-ordered, so that the primary key's insertions
     * append at its right edge) and each inserted row finds its ordinal
     * again by its id (`input` is MATERIALIZED: evaluated once).  The
     * outer SELECT sees the statement's snapshot: a row another connection
     * committed while this one waited on the index is in neither `ins` nor
     * that snapshot, so its ordinal is missing from the result (db.h). */
    [ST_MSG_INSERT] = {"chatter_msg_insert",
        "WITH input AS MATERIALIZED ("
        " SELECT t.ord, t.user_id, t.content, t.client_id, t.id"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]) WITH ORDINALITY"
        " AS t(user_id, content, client_id, id, ord)),"
        " ins AS ("
        " INSERT INTO messages (id, user_id, content, client_id)"
        " SELECT id, user_id, content, client_id FROM input ORDER BY ord"
        " ON CONFLICT (user_id, client_id) DO NOTHING"
        " RETURNING id, seq, user_id, content, client_id, inserted_at),"
        " out AS ("
        " SELECT i.ord, false AS existed, x.id, x.seq, x.user_id, x.content, x.inserted_at"
        " FROM input i JOIN ins x ON x.id = i.id"
        " UNION ALL"
        " SELECT i.ord, true, s.id, s.seq, s.user_id, s.content, s.inserted_at FROM input i"
        " CROSS JOIN LATERAL ("
        " SELECT x.id, x.seq, x.user_id, x.content, x.inserted_at FROM ins x"
        " WHERE x.user_id = i.user_id AND x.client_id = i.client_id"
        " UNION ALL"
        " SELECT y.id, y.seq, y.user_id, y.content, y.inserted_at FROM messages y"
        " WHERE y.user_id = i.user_id AND y.client_id = i.client_id"
        " LIMIT 1) s"
        " WHERE i.client_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins z WHERE z.id = i.id))"
        " SELECT " MSG_COLS("o") ", o.ord, o.existed FROM out o JOIN users u ON u.id = o.user_id"
        " ORDER BY o.ord", 4},
    /* $2 is limit + 1: the extra row, if any, says `more`. */
    [ST_MSG_BEFORE] = {"chatter_msg_before",
        "SELECT * FROM (SELECT " MSG_COLS("m") " FROM messages m"
        " JOIN users u ON u.id = m.user_id WHERE m.seq < $1"
        " ORDER BY m.seq DESC LIMIT $2) page ORDER BY seq", 2},
    [ST_MSG_AFTER] = {"chatter_msg_after",
        "SELECT " MSG_COLS("m") " FROM messages m"
        " JOIN users u ON u.id = m.user_id WHERE m.seq > $1"
        " ORDER BY m.seq LIMIT $2", 2},
    /* The stored message of a client_id (the unique index finds it). */
    [ST_MSG_BY_CLIENT_ID] = {"chatter_msg_by_client_id",
        "SELECT " MSG_COLS("m") " FROM messages m JOIN users u ON u.id = m.user_id"
        " WHERE m.user_id = $1 AND m.client_id = $2", 2},
    /* Ends a backend of ours (same pid and application_name) and waits up
     * to $3 ms for it to exit: true once it is gone, false if it still runs
     * (a stopped process handles the signal only when it resumes). */
    [ST_BACKEND_END] = {"chatter_backend_end",
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_activity"
        " WHERE pid = $1 AND application_name = $2)"
        " THEN pg_terminate_backend($1, $3) ELSE true END", 3},
    [ST_PING] = {"chatter_ping", "SELECT 1", 0},
    /* Many names in one statement and one commit.  DISTINCT: a name twice
     * in one INSERT ... ON CONFLICT DO UPDATE is an error; ORDER BY: rows
     * are locked in name order, so two batches cannot deadlock. */
    [ST_USERS_UPSERT] = {"chatter_users_upsert",
        "INSERT INTO users (name) SELECT DISTINCT n FROM unnest($1::text[]) AS t(n) ORDER BY n "
        "ON CONFLICT (name) DO UPDATE SET updated_at = now() "
        "RETURNING id::text, name, (xmax = 0) AS created", 1},
};

/* ------------------------------------------------------------ types */

enum qkind { Q_PREPARE, Q_USERS, Q_USER, Q_MSGS, Q_PING, Q_BOOL };
/* Which end of an over-long (limit + 1) message page to drop. */
enum trim { TRIM_NONE, TRIM_OLDEST, TRIM_NEWEST };

typedef struct db_query {
    act_qnode_t node;     /* in waiting, sent or done (runtime/queue.h) */
    enum qkind kind;
    enum stmt stmt;
    char *params[4];
    size_t ninput;        /* an insert's row count: its result is by ordinal */
    enum trim trim;
    int limit;
    union {
        db_user_list_cb users;
        db_user_cb user;
        db_message_list_cb msgs;
        db_ping_cb ping;
        db_bool_cb flag;
    } cb;
    void *ud;
    uint64_t t0;          /* uv_hrtime at submission, for ping's rtt */
    uint64_t t_sent;      /* uv_hrtime when it entered the pipeline */
    PGresult *res;        /* the statement's result, once received */
    bool expect_null;     /* libpq ends each statement's results with NULL */
    bool failed;          /* err below is set */
    db_error err;
} db_query;

typedef struct qlist { act_queue_t q; size_t n; } qlist;

/* A poll handle of its own: libpq may switch sockets while connecting, and
 * a closed handle's memory must outlive uv_close. */
typedef struct db_poll { uv_poll_t h; int events; } db_poll;

struct db_conn {
    uv_loop_t *loop;
    char *conninfo;
    db_reconnect reconnect;
    unsigned backoff_min, backoff_max, backoff, connect_timeout;
    void (*on_state)(db_conn *, db_state, void *);
    void *ud;

    db_state state, reported;
    PGconn *pg;
    unsigned gen;          /* bumped when pg goes away */
    uint64_t id_ms;        /* message_ids: the last id's millisecond */
    unsigned id_seq;       /* and its counter within that millisecond */
    db_poll *poll;
    uv_timer_t timer;      /* back-off wait, or connect timeout */
    uv_timer_t defer;      /* runs dispatch() on the next loop turn */
    uv_timer_t deadline;   /* the oldest sent query's deadline */
    unsigned query_timeout;
    char *app_name;
    char options[160];     /* the server settings sent at connect */
    int backend_pid;       /* of the current connection, 0 if none */
    unsigned deadline_drops;
    qlist waiting, sent, done;
    unsigned prepared;     /* bit per stmt prepared on this connection */
    uint64_t last_rtt_us;

    bool closing;
    int handles_open;
    void (*on_closed)(void *);
    void *closed_ud;
};

/* ------------------------------------------------------------ small helpers */

static void q_push(qlist *l, db_query *q)
{
    act_queue_push(&l->q, &q->node);
    l->n++;
}

static db_query *q_pop(qlist *l)
{
    act_qnode_t *n = act_queue_pop(&l->q);
    if (!n) return NULL;
    l->n--;
    return ACT_QUEUE_DATA(n, db_query, node);
}

/* The oldest query of l, left in place; NULL if l is empty. */
static db_query *q_first(const qlist *l)
{
    return l->q.head ? ACT_QUEUE_DATA(l->q.head, db_query, node) : NULL;
}

static void q_free(db_query *q)
{
    if (!q) return;
    PQclear(q->res);
    free(q->params[0]);
    free(q->params[1]);
    free(q->params[2]);
    free(q->params[3]);
    free(q);
}

/* Copies at most the first line of msg (libpq messages end in "\n"). */
static void set_err(db_error *e, db_errcode code, const char *sqlstate, const char *msg)
{
    e->code = code;
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", sqlstate ? sqlstate : "");
    snprintf(e->message, sizeof e->message, "%s", msg && *msg ? msg : db_errcode_name(code));
    e->message[strcspn(e->message, "\n")] = '\0';
}

static void q_fail(db_query *q, db_errcode code, const char *sqlstate, const char *msg)
{
    if (q->failed) return;  /* the first reason is the true one */
    q->failed = true;
    set_err(&q->err, code, sqlstate, msg);
}

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;  /* "relation exists, skipping" and shutdown notices */
}

/* ------------------------------------------------------------ names */

const char *db_errcode_name(db_errcode e)
{
    switch (e) {
    case DB_OK: return "ok";
    case DB_UNAVAILABLE: return "unavailable";
    case DB_QUERY_FAILED: return "query_failed";
    case DB_CLOSED: return "closed";
    case DB_BAD_RESULT: return "bad_result";
    }
    return "?";
}

/* ------------------------------------------------------------ results */

void db_user_free(db_user *u)
{
    if (!u) return;
    free(u->id);
    free(u->name);
    free(u);
}

void db_user_list_free(db_user_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->users[i].id);
        free(l->users[i].name);
    }
    free(l->users);
    free(l);
}

static void message_clear(db_message *m)
{
    free(m->id);
    free(m->user_id);
    free(m->name);
    free(m->content);
    free(m->inserted_at);
}

void db_message_list_free(db_message_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) message_clear(&l->messages[i]);
    free(l->messages);
    free(l);
}

static bool user_from_row(db_user *u, const PGresult *r, int row)
{
    u->id = xstrdup(PQgetvalue(r, row, 0));
    u->name = xstrdup(PQgetvalue(r, row, 1));
    return u->id && u->name;
}

static db_user_list *parse_users(const PGresult *r)
{
    int nf = PQnfields(r); /* 3: the batch upsert's, with `created` */
    if (nf != 2 && nf != 3) return NULL;
    db_user_list *l = calloc(1, sizeof *l);
    int n = PQntuples(r);
    if (!l || (n > 0 && !(l->users = calloc((size_t)n, sizeof *l->users)))) {
        free(l);
        return NULL;
    }
    for (int i = 0; i < n; i++, l->n++) {
        if (!user_from_row(&l->users[i], r, i)) {
            l->n++;  /* so that the partly filled row is freed too */
            db_user_list_free(l);
            return NULL;
        }
        if (nf == 3) l->users[i].created = PQgetvalue(r, i, 2)[0] == 't';
    }
    return l;
}

static bool message_from_row(db_message *m, const PGresult *r, int row)
{
    m->id = xstrdup(PQgetvalue(r, row, 0));
    m->seq = strtoll(PQgetvalue(r, row, 1), NULL, 10);
    m->user_id = xstrdup(PQgetvalue(r, row, 2));
    m->name = xstrdup(PQgetvalue(r, row, 3));
    m->content = xstrdup(PQgetvalue(r, row, 4));
    m->inserted_at = xstrdup(PQgetvalue(r, row, 5));
    return m->id && m->user_id && m->name && m->content && m->inserted_at;
}

/* Rows [first, first + count) of r; `more` is decided by the caller's trim. */
static db_message_list *parse_messages(const PGresult *r, int first, int count, bool more)
{
    if (PQnfields(r) != 6) return NULL;
    db_message_list *l = calloc(1, sizeof *l);
    if (!l || (count > 0 && !(l->messages = calloc((size_t)count, sizeof *l->messages)))) {
        free(l);
        return NULL;
    }
    l->more = more;
    for (int i = 0; i < count; i++, l->n++) {
        if (!message_from_row(&l->messages[i], r, first + i)) {
            l->n++;
            db_message_list_free(l);
            return NULL;
        }
    }
    return l;
}

/* An insert's result: one row per input ordinal (column 6, from 1), with
 * column 7 saying whether it was already stored.  An ordinal with no row
 * keeps id == NULL (db.h). */
static db_message_list *parse_inserted(const db_query *q)
{
    const PGresult *r = q->res;
    int n = PQntuples(r);
    if (PQnfields(r) != 8 || (size_t)n > q->ninput) return NULL;
    db_message_list *l = calloc(1, sizeof *l);
    if (!l || !(l->messages = calloc(q->ninput, sizeof *l->messages))) {
        free(l);
        return NULL;
    }
    l->n = q->ninput;
    for (int i = 0; i < n; i++) {
        long long ord = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        db_message *m = ord >= 1 && (size_t)ord <= q->ninput ? &l->messages[ord - 1] : NULL;
        if (!m || m->id || !message_from_row(m, r, i)) {
            db_message_list_free(l);
            return NULL;
        }
        m->existed = PQgetvalue(r, i, 7)[0] == 't';
    }
    return l;
}

/* The page of a limit + 1 query: the extra row only tells `more`. */
static db_message_list *parse_page(const db_query *q)
{
    if (q->ninput) return parse_inserted(q);
    int n = PQntuples(q->res);
    bool more = q->trim != TRIM_NONE && n > q->limit;
    int count = more ? q->limit : n;
    int first = more && q->trim == TRIM_OLDEST ? n - q->limit : 0;
    return parse_messages(q->res, first, count, more);
}

/* ------------------------------------------------------------ callbacks */

static void deliver_error(db_query *q)
{
    switch (q->kind) {
    case Q_USERS: q->cb.users(q->ud, &q->err, NULL); break;
    case Q_USER: q->cb.user(q->ud, &q->err, NULL, false); break;
    case Q_MSGS: q->cb.msgs(q->ud, &q->err, NULL); break;
    case Q_PING: q->cb.ping(q->ud, &q->err, 0); break;
    case Q_BOOL: q->cb.flag(q->ud, &q->err, false); break;
    case Q_PREPARE: break;
    }
}

static void deliver_user(db_query *q)
{
    const PGresult *r = q->res;
    db_user *u = NULL;
    if (PQntuples(r) == 1 && PQnfields(r) == 3 && (u = calloc(1, sizeof *u)) &&
        user_from_row(u, r, 0)) {
        q->cb.user(q->ud, NULL, u, PQgetvalue(r, 0, 2)[0] == 't');
        return;
    }
    db_user_free(u);
    q_fail(q, DB_BAD_RESULT, NULL, "unexpected result for get-or-create");
    deliver_error(q);
}

/* Turns the PGresult into the typed record and calls the callback. */
static void deliver(db_conn *c, db_query *q)
{
    if (!q->failed) {
        switch (q->kind) {
        case Q_USERS: {
            db_user_list *l = parse_users(q->res);
            if (l) {
                q->cb.users(q->ud, NULL, l);
                return;
            }
            break;
        }
        case Q_USER:
            deliver_user(q);
            return;
        case Q_MSGS: {
            db_message_list *l = parse_page(q);
            if (l) {
                q->cb.msgs(q->ud, NULL, l);
                return;
            }
            break;
        }
        case Q_PING:
            c->last_rtt_us = (uv_hrtime() - q->t0) / 1000;
            q->cb.ping(q->ud, NULL, c->last_rtt_us);
            return;
        case Q_BOOL:
            if (PQntuples(q->res) == 1 && PQnfields(q->res) == 1) {
                q->cb.flag(q->ud, NULL, PQgetvalue(q->res, 0, 0)[0] == 't');
                return;
            }
            break;
        case Q_PREPARE:
            return;
        }
        q_fail(q, DB_BAD_RESULT, NULL, "unexpected result shape or out of memory");
    }
    deliver_error(q);
}

static void report_state(db_conn *c)
{
    if (c->reported == c->state || c->closing) return;
    c->reported = c->state;
    if (c->on_state) c->on_state(c, c->state, c->ud);
}

/* Runs due callbacks in order.  Each is popped before it runs, so callbacks
 * may submit, and a db_conn_close inside one just drains the rest. */
static void dispatch(db_conn *c)
{
    for (;;) {
        report_state(c);  /* each turn: a callback may have changed it */
        db_query *q = q_pop(&c->done);
        if (!q) break;
        deliver(c, q);
        q_free(q);
    }
    if (!c->closing) uv_timer_stop(&c->defer);
}

static void on_defer(uv_timer_t *t)
{
    dispatch(t->data);
}

/* Callbacks never run from inside a submitting call: completions made there
 * wait for this zero-delay timer. */
static void arm_defer(db_conn *c)
{
    if (!c->closing) uv_timer_start(&c->defer, on_defer, 0, 0);
}

/* A query is over: internal prepares vanish, the rest await dispatch(). */
static void complete(db_conn *c, db_query *q)
{
    if (q->kind == Q_PREPARE) {
        if (q->failed) {
            c->prepared &= ~(1u << q->stmt);  /* prepare again next time */
            /* Its execute, next in the pipeline, will fail for want of the
             * statement; the prepare's error (say, a missing table before
             * migrations ran) is the one worth reporting. */
            if (q_first(&c->sent))
                q_fail(q_first(&c->sent), q->err.code, q->err.sqlstate, q->err.message);
        }
        q_free(q);
        return;
    }
    q_push(&c->done, q);
    arm_defer(c);
}

static void fail_all(db_conn *c, qlist *l, db_errcode code, const char *msg)
{
    db_query *q;
    while ((q = q_pop(l))) {
        q_fail(q, code, NULL, msg);
        complete(c, q);
    }
}

static void set_state(db_conn *c, db_state s)
{
    c->state = s;
    if (c->on_state) arm_defer(c);
}

/* ------------------------------------------------------------ the socket */

static void on_poll_closed(uv_handle_t *h)
{
    free(h);  /* h is the first member of db_poll */
}

static void poll_close(db_conn *c)
{
    if (!c->poll) return;
    uv_close((uv_handle_t *)&c->poll->h, on_poll_closed);
    c->poll = NULL;
}

static void on_poll(uv_poll_t *h, int status, int events);
static void arm_deadline(db_conn *c);

/* A fresh handle for PQsocket: used at every connect step, because libpq may
 * have closed the old socket and a new one may even reuse its fd number,
 * which an existing uv_poll_t cannot notice. */
static int poll_open(db_conn *c, int events)
{
    poll_close(c);
    int fd = PQsocket(c->pg);
    db_poll *p = calloc(1, sizeof *p);
    if (fd < 0 || !p || uv_poll_init(c->loop, &p->h, fd) != 0) {
        free(p);
        return -1;
    }
    p->h.data = c;
    p->events = events;
    c->poll = p;
    return uv_poll_start(&p->h, events, on_poll);
}

/* Same socket, different interest (writable only while output is queued). */
static int poll_set(db_conn *c, int events)
{
    if (!c->poll) return -1;
    if (c->poll->events == events) return 0;
    c->poll->events = events;
    return uv_poll_start(&c->poll->h, events, on_poll);
}

/* ------------------------------------------------------------ connection */

static void conn_start(db_conn *c);

static void on_retry(uv_timer_t *t)
{
    db_conn *c = t->data;
    if (c->state == DB_DOWN) conn_start(c);
    dispatch(c);
}

static void schedule_retry(db_conn *c)
{
    if (c->reconnect != DB_RECONNECT_AUTO || c->closing) return;
    uv_timer_start(&c->timer, on_retry, c->backoff, 0);
    c->backoff = c->backoff * 2 > c->backoff_max ? c->backoff_max : c->backoff * 2;
}

static void pg_drop(db_conn *c)
{
    poll_close(c);  /* before PQfinish closes the fd under it */
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    c->gen++;
    c->prepared = 0;
    c->backend_pid = 0;
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->deadline);
}

/* The connection failed or broke: everything pending is `unavailable`. */
static void conn_down(db_conn *c, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s", why && *why ? why : "connection lost");
    pg_drop(c);
    fail_all(c, &c->sent, DB_UNAVAILABLE, msg);
    fail_all(c, &c->waiting, DB_UNAVAILABLE, msg);
    set_state(c, DB_DOWN);
    schedule_retry(c);
}

static void conn_down_pg(db_conn *c)
{
    conn_down(c, c->pg ? PQerrorMessage(c->pg) : NULL);
}

static int send_one(db_conn *c, db_query *q);

/* Sends what waited for the connection, then watches for results. */
static void conn_ready(db_conn *c)
{
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        conn_down_pg(c);
        return;
    }
    uv_timer_stop(&c->timer);
    c->backoff = c->backoff_min;
    c->backend_pid = PQbackendPID(c->pg);
    set_state(c, DB_CONNECTED);
    if (poll_open(c, UV_READABLE) != 0) {
        conn_down(c, "cannot watch the socket");
        return;
    }
    unsigned gen = c->gen;
    db_query *q;
    while (c->gen == gen && (q = q_pop(&c->waiting))) send_one(c, q);
}

static void on_connect_timeout(uv_timer_t *t)
{
    db_conn *c = t->data;
    if (c->state == DB_CONNECTING) conn_down(c, "connect timeout");
    dispatch(c);
}

/* One PQconnectPoll step, then wait for what it asks for. */
static void connect_step(db_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (poll_open(c, UV_READABLE) != 0) conn_down(c, "cannot watch the socket");
        break;
    case PGRES_POLLING_WRITING:
        if (poll_open(c, UV_WRITABLE) != 0) conn_down(c, "cannot watch the socket");
        break;
    case PGRES_POLLING_OK:
        conn_ready(c);
        break;
    default:
        conn_down_pg(c);
        break;
    }
}

static void conn_start(db_conn *c)
{
    /* The caller's conninfo is expanded first; the keywords after it win.
     * Keepalives only matter over TCP (libpq ignores them on a Unix
     * socket): a silent peer is declared dead after 5 + 3 * 2 s, and an
     * unacknowledged write after 10 s. */
    const char *keys[] = {"dbname", "options", "application_name", "keepalives",
                          "keepalives_idle", "keepalives_interval", "keepalives_count",
                          "tcp_user_timeout", NULL};
    const char *vals[] = {c->conninfo, c->options, c->app_name ? c->app_name : "chatter",
                          "1", "5", "2", "3", "10000", NULL};
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg) {
        conn_down(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_down_pg(c);
        return;
    }
    PQsetNoticeProcessor(c->pg, notice_ignore, NULL);
    set_state(c, DB_CONNECTING);
    uv_timer_start(&c->timer, on_connect_timeout, c->connect_timeout, 0);
    c->backend_pid = 0;
    /* libpq: before the first PQconnectPoll, act as if it said WRITING. */
    if (poll_open(c, UV_WRITABLE) != 0) conn_down(c, "cannot watch the socket");
}

/* ------------------------------------------------------------ the pipeline */

/* Sends what libpq buffered; watches for writability only while some is left. */
static int flush(db_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0 || poll_set(c, UV_READABLE | (r == 1 ? UV_WRITABLE : 0)) != 0) {
        conn_down_pg(c);
        return -1;
    }
    return 0;
}

/* A query that has waited in the pipeline for query_timeout gets no more
 * time: the server is hung (stopped, swapping, a lock it does not time out)
 * or the link is silently gone.  The connection is dropped, every pending
 * query completes as DB_UNAVAILABLE, and the usual back-off reconnects.  The
 * server's own statement_timeout (3/4 of ours) normally ends a slow query
 * first, with an error and a rollback; this catches what it cannot. */
static void on_deadline(uv_timer_t *t)
{
    db_conn *c = t->data;
    if (c->state == DB_CONNECTED && q_first(&c->sent)) {
        uint64_t age_ms = (uv_hrtime() - q_first(&c->sent)->t_sent) / 1000000;
        if (age_ms >= c->query_timeout) {
            c->deadline_drops++;
            conn_down(c, "query deadline missed");
        } else {
            uv_timer_start(&c->deadline, on_deadline, c->query_timeout - age_ms, 0);
        }
    }
    dispatch(c);
}

/* Armed for the oldest sent query; re-armed by on_deadline for the next. */
static void arm_deadline(db_conn *c)
{
    if (c->closing || uv_is_active((uv_handle_t *)&c->deadline) || !q_first(&c->sent)) return;
    uint64_t age_ms = (uv_hrtime() - q_first(&c->sent)->t_sent) / 1000000;
    uv_timer_start(&c->deadline, on_deadline,
                   age_ms >= c->query_timeout ? 0 : c->query_timeout - age_ms, 0);
}

static int send_prepare(db_conn *c, enum stmt st)
{
    db_query *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->kind = Q_PREPARE;
    p->stmt = st;
    if (!PQsendPrepare(c->pg, STMTS[st].name, STMTS[st].sql, STMTS[st].nparams, NULL) ||
        !PQpipelineSync(c->pg)) {
        free(p);
        return -1;
    }
    c->prepared |= 1u << st;
    p->t_sent = uv_hrtime();
    q_push(&c->sent, p);
    arm_deadline(c);
    return 0;
}

/* Puts q in the pipeline (after its statement's PREPARE the first time on
 * this connection).  On failure the connection is dropped and q, like every
 * pending query, completes as unavailable. */
static int send_one(db_conn *c, db_query *q)
{
    const char *params[4] = {q->params[0], q->params[1], q->params[2], q->params[3]};
    bool ok = (c->prepared & (1u << q->stmt)) || send_prepare(c, q->stmt) == 0;
    ok = ok && PQsendQueryPrepared(c->pg, STMTS[q->stmt].name, STMTS[q->stmt].nparams,
                                   params, NULL, NULL, 0) && PQpipelineSync(c->pg);
    q->t_sent = uv_hrtime();
    q_push(&c->sent, q);
    arm_deadline(c);
    if (!ok) {
        conn_down_pg(c);
        return -1;
    }
    return flush(c);
}

/* Keeps the first result, or the first error if one comes later. */
static void keep_result(db_query *q, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    bool bad = st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK;
    if (bad && !q->failed) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        /* No sqlstate: libpq's own error, i.e. the link broke.  Class 08 and
         * the 57P0x shutdown codes also mean "the server went away". */
        bool gone = !state || strncmp(state, "08", 2) == 0 ||
                    strncmp(state, "57P0", 4) == 0 || strcmp(state, "53300") == 0;
        q_fail(q, gone ? DB_UNAVAILABLE : DB_QUERY_FAILED, state,
               msg ? msg : PQresultErrorMessage(r));
    }
    if (!q->res) {
        q->res = r;
    } else {
        PQclear(r);
    }
}

/* Reads every complete result; a query is complete at its Sync.  libpq gives
 * per statement: result(s), NULL, then PGRES_PIPELINE_SYNC. */
static void read_results(db_conn *c)
{
    while (q_first(&c->sent) && !PQisBusy(c->pg)) {
        db_query *q = q_first(&c->sent);
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            if (!q->expect_null) break;
            q->expect_null = false;
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            q_pop(&c->sent);
            if (!q->res) q_fail(q, DB_BAD_RESULT, NULL, "no result before sync");
            complete(c, q);
            continue;
        }
        keep_result(q, r);
        q->expect_null = true;
    }
}

static void on_io(db_conn *c, int events)
{
    if ((events & UV_READABLE) && !PQconsumeInput(c->pg)) {
        conn_down_pg(c);
        return;
    }
    read_results(c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_down_pg(c);
        return;
    }
    flush(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    db_conn *c = h->data;
    if (c->state == DB_CONNECTING) {
        connect_step(c);  /* on a socket error too: PQconnectPoll says why */
    } else if (status < 0) {
        /* EPOLLERR (e.g. the server reset the socket): libpq's own read
         * names the cause better than libuv's generic EBADF. */
        if (!PQconsumeInput(c->pg)) conn_down_pg(c);
        else conn_down(c, uv_strerror(status));
    } else {
        on_io(c, events);
    }
    dispatch(c);
}

/* ------------------------------------------------------------ lifecycle */

db_conn *db_conn_open(uv_loop_t *loop, const db_conn_opts *o)
{
    db_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->conninfo = strdup(o->conninfo ? o->conninfo : ""))) {
        free(c);
        return NULL;
    }
    c->loop = loop;
    c->reconnect = o->reconnect;
    c->backoff_min = o->backoff_min_ms ? o->backoff_min_ms : 100;
    c->backoff_max = o->backoff_max_ms ? o->backoff_max_ms : 5000;
    c->connect_timeout = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    c->query_timeout = o->query_timeout_ms ? o->query_timeout_ms : DB_QUERY_TIMEOUT_MS;
    if (o->application_name && !(c->app_name = strdup(o->application_name))) {
        free(c->conninfo);
        free(c);
        return NULL;
    }
    /* Server-side bounds, per connection: a lock wait longer than 1/2 of our
     * deadline, or a statement longer than 3/4, is cancelled and rolled back
     * by the server (an error reply, 55P03 or 57014; the connection stays);
     * a backend whose client went away notices within 1 s even mid-query and
     * abandons it uncommitted. */
    unsigned st = c->query_timeout * 3 / 4 ? c->query_timeout * 3 / 4 : 1;
    unsigned lt = c->query_timeout / 2 ? c->query_timeout / 2 : 1;
    snprintf(c->options, sizeof c->options,
             "-c statement_timeout=%u -c lock_timeout=%u -c client_connection_check_interval=1000",
             st, lt);
    c->backoff = c->backoff_min;
    c->on_state = o->on_state;
    c->ud = o->ud;
    c->state = c->reported = DB_DOWN;
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->defer);
    uv_timer_init(loop, &c->deadline);
    c->timer.data = c->defer.data = c->deadline.data = c;
    c->handles_open = 3;
    conn_start(c);
    return c;
}

static void on_handle_closed(uv_handle_t *h)
{
    db_conn *c = h->data;
    if (--c->handles_open > 0) return;
    void (*cb)(void *) = c->on_closed;
    void *ud = c->closed_ud;
    free(c->conninfo);
    free(c->app_name);
    free(c);
    if (cb) cb(ud);
}

void db_conn_close(db_conn *c, void (*on_closed)(void *), void *ud)
{
    if (!c || c->closing) return;
    c->closing = true;
    c->on_closed = on_closed;
    c->closed_ud = ud;
    pg_drop(c);
    fail_all(c, &c->sent, DB_CLOSED, "connection closed");
    fail_all(c, &c->waiting, DB_CLOSED, "connection closed");
    dispatch(c);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->defer, on_handle_closed);
    uv_close((uv_handle_t *)&c->deadline, on_handle_closed);
}

void db_conn_reconnect(db_conn *c)
{
    if (c->closing || c->state != DB_DOWN) return;
    uv_timer_stop(&c->timer);
    conn_start(c);
}

db_state db_conn_state(const db_conn *c) { return c->state; }

size_t db_conn_pending(const db_conn *c)
{
    return c->waiting.n + c->sent.n + c->done.n;
}

uint64_t db_conn_last_rtt_us(const db_conn *c) { return c->last_rtt_us; }

int db_conn_backend_pid(const db_conn *c) { return c->state == DB_CONNECTED ? c->backend_pid : 0; }

unsigned db_conn_deadline_drops(const db_conn *c) { return c->deadline_drops; }

void db_conn_reset(db_conn *c, const char *why)
{
    if (c->closing || c->state == DB_DOWN) return;
    conn_down(c, why);
    arm_defer(c);
}

/* ------------------------------------------------------------ submitting */

static db_query *q_new(enum qkind kind, enum stmt st, void *ud)
{
    db_query *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->kind = kind;
    q->stmt = st;
    q->ud = ud;
    q->t0 = uv_hrtime();
    return q;
}

/* Takes q over: sends it, queues it, or fails it (later) as unavailable. */
static int submit(db_conn *c, db_query *q)
{
    switch (c->state) {
    case DB_CONNECTED:
        send_one(c, q);
        break;
    case DB_CONNECTING:
        q_push(&c->waiting, q);
        break;
    case DB_DOWN:
        q_fail(q, DB_UNAVAILABLE, NULL, "database unavailable");
        complete(c, q);
        break;
    }
    return 0;
}

static bool can_submit(const db_conn *c, const void *cb)
{
    return c && !c->closing && cb;
}

int db_users_list(db_conn *c, db_user_list_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb)) return -1;
    db_query *q = q_new(Q_USERS, ST_USERS_LIST, ud);
    if (!q) return -1;
    q->cb.users = cb;
    return submit(c, q);
}

int db_user_get_or_create(db_conn *c, const char *name, db_user_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb) || !name) return -1;
    db_query *q = q_new(Q_USER, ST_USER_UPSERT, ud);
    if (!q || !(q->params[0] = strdup(name))) {
        q_free(q);
        return -1;
    }
    q->cb.user = cb;
    return submit(c, q);
}

int db_ping(db_conn *c, db_ping_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb)) return -1;
    db_query *q = q_new(Q_PING, ST_PING, ud);
    if (!q) return -1;
    q->cb.ping = cb;
    return submit(c, q);
}

/* A message page query: $1 the seq bound, $2 limit + 1 to learn `more`. */
static int submit_page(db_conn *c, enum stmt st, enum trim trim, int64_t bound,
                       int limit, db_message_list_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb) || limit < 1 || limit > DB_MAX_LIMIT) return -1;
    db_query *q = q_new(Q_MSGS, st, ud);
    char b[24], l[16];
    snprintf(b, sizeof b, "%" PRId64, bound);
    snprintf(l, sizeof l, "%d", limit + 1);
    if (!q || !(q->params[0] = strdup(b)) || !(q->params[1] = strdup(l))) {
        q_free(q);
        return -1;
    }
    q->cb.msgs = cb;
    q->trim = trim;
    q->limit = limit;
    return submit(c, q);
}

int db_messages_latest(db_conn *c, int limit, db_message_list_cb cb, void *ud)
{
    return submit_page(c, ST_MSG_BEFORE, TRIM_OLDEST, INT64_MAX, limit, cb, ud);
}

int db_messages_before(db_conn *c, int64_t before, int limit, db_message_list_cb cb, void *ud)
{
    return submit_page(c, ST_MSG_BEFORE, TRIM_OLDEST, before, limit, cb, ud);
}

int db_messages_after(db_conn *c, int64_t after, int limit, db_message_list_cb cb, void *ud)
{
    return submit_page(c, ST_MSG_AFTER, TRIM_NEWEST, after, limit, cb, ud);
}

/* One element of a PostgreSQL array literal: always quoted (so "NULL" stays
 * text), with " and \ escaped. */
static void sb_array_elem(act_buf_t *b, const char *s, bool first)
{
    if (!first) act_buf_putc(b, ',');
    act_buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') act_buf_putc(b, '\\');
        act_buf_putc(b, *s);
    }
    act_buf_putc(b, '"');
}

/* {"a","b",...} of the user_ids (which = 0), the contents (1) or the
 * client_ids (2, NULL for none). */
static char *array_literal(const db_new_message *m, size_t n, int which)
{
    act_buf_t b = ACT_BUF_INIT; /* runtime/buf.h: OOM checked once, by take */
    act_buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        const char *v = which == 0 ? m[i].user_id : which == 1 ? m[i].content : m[i].client_id;
        if (which == 2 && (!v || !*v)) {
            if (i > 0) act_buf_putc(&b, ',');
            for (const char *k = "NULL"; *k; k++) act_buf_putc(&b, *k);
        } else {
            sb_array_elem(&b, v, i == 0);
        }
    }
    act_buf_putc(&b, '}');
    return act_buf_take(&b, NULL);
}

/* {"id","id",...}: n new message ids, UUID version 7 (RFC 9562): 48 bits of
 * Unix milliseconds, then a 12-bit counter that orders the ids made within
 * one millisecond (a later id is always greater, also when the clock steps
 * back), then 62 random bits from getrandom.  gen_random_uuid() in the
 * statement cost one getpid and one strong-random read per row (4% of the
 * writer backend's CPU, `perf record` of 1,024-row batches), and random ids
 * land all over the primary key's leaves: an increasing one goes to the
 * rightmost leaf, which btree insertion finds without a descent. */
static char *message_ids(db_conn *c, size_t n)
{
    uint8_t (*rnd)[8] = malloc(n * sizeof *rnd);
    if (!rnd) return NULL;
    size_t got = 0;
    while (got < n * sizeof *rnd) {
        ssize_t r = getrandom((uint8_t *)rnd + got, n * sizeof *rnd - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(rnd);
            return NULL;
        }
        got += (size_t)r;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    act_buf_t b = ACT_BUF_INIT; /* runtime/buf.h: OOM checked once, by take */
    act_buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        if (ms > c->id_ms) {
            c->id_ms = ms;
            c->id_seq = 0;
        } else if (++c->id_seq > 0xfff) { /* 4,096 ids this ms: borrow the next */
            c->id_ms++;
            c->id_seq = 0;
        }
        uint8_t u[16];
        for (int k = 0; k < 6; k++) u[k] = (uint8_t)(c->id_ms >> (40 - 8 * k));
        u[6] = (uint8_t)(0x70 | (c->id_seq >> 8));
        u[7] = (uint8_t)c->id_seq;
        memcpy(u + 8, rnd[i], 8);
        u[8] = (uint8_t)(0x80 | (u[8] & 0x3f)); /* the RFC 9562 variant */
        char hex[37];
        snprintf(hex, sizeof hex,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
                 u[12], u[13], u[14], u[15]);
        if (i > 0) act_buf_putc(&b, ',');
        for (const char *k = hex; *k; k++) act_buf_putc(&b, *k);
    }
    act_buf_putc(&b, '}');
    free(rnd);
    return act_buf_take(&b, NULL);
}

int db_users_get_or_create(db_conn *c, const char *const *names, size_t n,
                           db_user_list_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb) || !names || n == 0) return -1;
    act_buf_t b = ACT_BUF_INIT; /* runtime/buf.h: OOM checked once, by take */
    act_buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++) {
        if (!names[i]) {
            act_buf_free(&b);
            return -1;
        }
        sb_array_elem(&b, names[i], i == 0);
    }
    act_buf_putc(&b, '}');
    char *arr = act_buf_take(&b, NULL);
    db_query *q = arr ? q_new(Q_USERS, ST_USERS_UPSERT, ud) : NULL;
    if (!q) {
        free(arr);
        return -1;
    }
    q->params[0] = arr;
    q->cb.users = cb;
    return submit(c, q);
}

int db_messages_insert(db_conn *c, const db_new_message *msgs, size_t n,
                       db_message_list_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb) || !msgs || n == 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].user_id || !msgs[i].content) return -1;
    db_query *q = q_new(Q_MSGS, ST_MSG_INSERT, ud);
    if (!q || !(q->params[0] = array_literal(msgs, n, 0)) ||
        !(q->params[1] = array_literal(msgs, n, 1)) ||
        !(q->params[2] = array_literal(msgs, n, 2)) ||
        !(q->params[3] = message_ids(c, n))) {
        q_free(q);
        return -1;
    }
    q->cb.msgs = cb;
    q->trim = TRIM_NONE;
    q->ninput = n;
    return submit(c, q);
}

int db_backend_end(db_conn *c, int pid, const char *application_name, unsigned wait_ms,
                   db_bool_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb) || pid <= 0 || !application_name) return -1;
    db_query *q = q_new(Q_BOOL, ST_BACKEND_END, ud);
    char p[16], w[16];
    snprintf(p, sizeof p, "%d", pid);
    snprintf(w, sizeof w, "%u", wait_ms);
    if (!q || !(q->params[0] = strdup(p)) || !(q->params[1] = strdup(application_name)) ||
        !(q->params[2] = strdup(w))) {
        q_free(q);
        return -1;
    }
    q->cb.flag = cb;
    return submit(c, q);
}

int db_message_by_client_id(db_conn *c, const char *user_id, const char *client_id,
                            db_message_list_cb cb, void *ud)
{
    if (!can_submit(c, (const void *)cb) || !user_id || !client_id || !*client_id) return -1;
    db_query *q = q_new(Q_MSGS, ST_MSG_BY_CLIENT_ID, ud);
    if (!q || !(q->params[0] = strdup(user_id)) || !(q->params[1] = strdup(client_id))) {
        q_free(q);
        return -1;
    }
    q->cb.msgs = cb;
    q->trim = TRIM_NONE;
    return submit(c, q);
}

/* ------------------------------------------------------------ migrations */

#define MIGRATION_LOCK "7263541"  /* pg_advisory_lock key: "chatter" */

static void errf(char *err, size_t errlen, const char *what, const char *detail)
{
    if (!err || !errlen) return;
    snprintf(err, errlen, "%s: %s", what, detail ? detail : "");
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n') err[--n] = '\0';
}

/* PQexec that wants success; returns 0 or -1 with err set. */
static int exec_ok(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc) errf(err, errlen, what, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

static bool is_migration(const struct dirent *d)
{
    const char *s = d->d_name;
    size_t n = strlen(s);
    size_t digits = strspn(s, "0123456789");
    return digits > 0 && s[digits] == '_' && n > 4 && strcmp(s + n - 4, ".sql") == 0;
}

static int is_migration_cb(const struct dirent *d) { return is_migration(d); }

/* Numeric order of the NNN prefix (so 10_ follows 9_), then by name. */
static int migration_cmp(const struct dirent **a, const struct dirent **b)
{
    unsigned long long x = strtoull((*a)->d_name, NULL, 10);
    unsigned long long y = strtoull((*b)->d_name, NULL, 10);
    if (x != y) return x < y ? -1 : 1;
    return strcmp((*a)->d_name, (*b)->d_name);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len) {
        buf[len] = '\0';
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int migration_applied(PGconn *pg, const char *version, char *err, size_t errlen)
{
    const char *p[1] = {version};
    PGresult *r = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1",
                               1, NULL, p, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) > 0 : -1;
    if (rc < 0) errf(err, errlen, "schema_migrations", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* BEGIN; the file; the record; COMMIT -- or ROLLBACK and say which file. */
static int apply_one(PGconn *pg, const char *path, const char *file, const char *version,
                     char *err, size_t errlen)
{
    char *sql = read_file(path);
    if (!sql) {
        errf(err, errlen, path, strerror(errno));
        return -1;
    }
    const char *p[1] = {version};
    int rc = exec_ok(pg, "BEGIN", file, err, errlen);
    if (rc == 0) rc = exec_ok(pg, sql, file, err, errlen);
    if (rc == 0) {
        PGresult *r = PQexecParams(pg, "INSERT INTO schema_migrations (version) VALUES ($1)",
                                   1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            errf(err, errlen, file, PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    if (rc == 0) rc = exec_ok(pg, "COMMIT", file, err, errlen);
    if (rc != 0) PQclear(PQexec(pg, "ROLLBACK"));
    free(sql);
    return rc;
}

/* Walks the sorted files; the NNN prefix is the version. */
static int apply_all(PGconn *pg, const char *dir, int *applied, char *err, size_t errlen)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, is_migration_cb, migration_cmp);
    if (n < 0) {
        errf(err, errlen, dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    char prev[32] = "";
    for (int i = 0; i < n && rc == 0; i++) {
        const char *file = names[i]->d_name;
        char version[32], path[4096];
        snprintf(version, sizeof version, "%.*s", (int)strspn(file, "0123456789"), file);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        if (strcmp(version, prev) == 0) {
            errf(err, errlen, file, "two migrations share this number");
            rc = -1;
            break;
        }
        snprintf(prev, sizeof prev, "%s", version);
        int done = migration_applied(pg, version, err, errlen);
        if (done < 0) rc = -1;
        else if (!done && (rc = apply_one(pg, path, file, version, err, errlen)) == 0) (*applied)++;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int db_migrate(const char *conninfo, const char *dir, int *applied, char *err, size_t errlen)
{
    int count = 0;
    PGconn *pg = PQconnectdb(conninfo ? conninfo : "");
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        errf(err, errlen, "connect", pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        return -1;
    }
    PQsetNoticeProcessor(pg, notice_ignore, NULL);
    /* Several servers may start at once against one database. */
    int rc = exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATION_LOCK ")", "lock", err, errlen);
    if (rc == 0)
        rc = exec_ok(pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version text PRIMARY KEY,"
                         " inserted_at timestamptz NOT NULL DEFAULT now())",
                     "schema_migrations", err, errlen);
    if (rc == 0) rc = apply_all(pg, dir, &count, err, errlen);
    PQfinish(pg);  /* also releases the advisory lock */
    if (applied) *applied = count;
    return rc;
}
