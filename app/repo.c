/*
 * repo.c -- the Repo: a pool of connection actors over libpq (db.c), each
 * with one non-blocking connection on its scheduler's loop.
 *
 * repo.0 is the single writer.  Inserts queue there and go to PostgreSQL
 * as one multi-row INSERT per batch, one batch at a time, and each batch is
 * broadcast in commit order once it has committed.  Were two connections to
 * insert in parallel, a lower seq could commit after a higher one had been
 * pushed, and a client catching up from its highest seq would skip it for
 * ever (DESIGN.md).  Batching is what keeps one writer fast: while a batch
 * is in flight, the next one gathers.
 *
 * Reads (history, catch-up, the users list) go to the other connections,
 * round-robin.  Messages are encoded into JSON once, here, and travel as
 * fragments; the broadcast frame is built once and shared by pubsub.
 *
 * When PostgreSQL goes away, db.c fails what was pending and reconnects with
 * back-off; meanwhile every request is answered `unavailable` (rc < 0) at
 * once, and /healthz says 503.  Nothing restarts.
 */
#include "app.h"
#include "db.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 256 /* rows per INSERT; the queue itself is bounded by the
                         sessions, each of which has one request in flight */

typedef struct pending_insert {
  struct pending_insert *next;
  act_pid_t from;
  act_ref_t ref;
  char user_id[PROTO_UUID_LEN + 1];
  char *content;
} pending_insert_t;

typedef struct repo {
  int index;
  act_pid_t self;
  db_conn *db;
  pending_insert_t *qhead, *qtail; /* the writer's next batch */
  size_t qlen;
  bool batch_in_flight;
  bool migrating;
  uv_loop_t *loop;
  uv_work_t migrate_work;
} repo_t;

typedef struct req_ctx {
  repo_t *repo;
  act_pid_t from;
  act_ref_t ref;
  uint64_t t0;
  pending_insert_t *batch; /* inserts */
  size_t nbatch;
} req_ctx_t;

static _Atomic bool g_writer_up;
static _Atomic bool g_migrated;
static _Atomic unsigned g_rr;

bool repo_database_up(void) { return atomic_load(&g_writer_up); }

act_pid_t repo_writer(void) { return act_whereis("repo.0"); }

act_pid_t repo_reader(void) {
  int n = app_config()->db_pool;
  if (n <= 1) return repo_writer();
  char name[16];
  snprintf(name, sizeof name, "repo.%u", 1 + atomic_fetch_add(&g_rr, 1) % (unsigned)(n - 1));
  act_pid_t pid = act_whereis(name);
  return pid ? pid : repo_writer();
}

void repo_mark_migrated(void) { atomic_store(&g_migrated, true); }

/* ------------------------------------------------------------ replies */

static req_ctx_t *ctx_new(repo_t *r, act_msg_t *m) {
  req_ctx_t *x = calloc(1, sizeof *x);
  if (!x) act_crash("repo: out of memory");
  x->repo = r;
  x->from = m->from;
  x->ref = m->ref;
  x->t0 = uv_hrtime();
  return x;
}

static void reply(act_pid_t to, act_ref_t ref, int type, const void *data, size_t size) {
  act_msg_t req = {.from = to, .ref = ref};
  act_reply(&req, type, data, size);
}

static void count_query(req_ctx_t *x, const db_error *err) {
  tm_add(TM_DB_QUERIES, 1);
  tm_add(TM_DB_RTT_US_SUM, (long)((uv_hrtime() - x->t0) / 1000));
  if (err && err->code != DB_CLOSED)
    app_log(LOG_WARN, "query failed: %s %s %s", db_errcode_name(err->code), err->sqlstate,
            err->message);
}

static void reply_unavailable(act_pid_t to, act_ref_t ref, int type) {
  union {
    repo_user_reply_t u;
    repo_inserted_t i;
    repo_messages_t m;
    repo_users_t l;
  } none;
  memset(&none, 0, sizeof none);
  none.u.rc = -1; /* rc is the first field of every reply */
  size_t size = type == REPO_USER ? sizeof none.u : type == REPO_INSERTED ? sizeof none.i
              : type == REPO_MESSAGES ? sizeof none.m : sizeof none.l;
  reply(to, ref, type, &none, size);
}

/* ------------------------------------------------------- encoding */

static proto_message wire_message(const db_message *d) {
  proto_message m;
  memset(&m, 0, sizeof m);
  snprintf(m.id, sizeof m.id, "%s", d->id);
  m.seq = d->seq;
  snprintf(m.user_id, sizeof m.user_id, "%s", d->user_id);
  m.name = d->name;
  m.content = d->content;
  snprintf(m.inserted_at, sizeof m.inserted_at, "%s", d->inserted_at);
  return m;
}

/* REPO_MESSAGES: spans, then "[f0,f1,...]" as proto_frag_array lays it out. */
static repo_messages_t *encode_page(const db_message_list *l, size_t *size) {
  proto_str *frags = calloc(l->n + 1, sizeof *frags);
  if (!frags) return NULL;
  for (size_t i = 0; i < l->n; i++) {
    proto_message m = wire_message(&l->messages[i]);
    frags[i] = proto_frag_message(&m);
  }
  proto_str arr = proto_frag_array(frags, l->n);
  *size = sizeof(repo_messages_t) + l->n * sizeof(repo_msg_span_t) + arr.len + 1;
  repo_messages_t *out = arr.ptr ? calloc(1, *size) : NULL;
  if (out) {
    out->more = l->more;
    out->n = (uint32_t)l->n;
    out->array_len = arr.len;
    uint32_t off = 1;
    for (size_t i = 0; i < l->n; i++) {
      out->spans[i] = (repo_msg_span_t){l->messages[i].seq, off, (uint32_t)frags[i].len};
      off += (uint32_t)frags[i].len + 1;
    }
    memcpy((char *)repo_messages_array(out), arr.ptr, arr.len);
  }
  for (size_t i = 0; i < l->n; i++) free(frags[i].ptr);
  free(frags);
  free(arr.ptr);
  return out;
}

/* ------------------------------------------------------------- reads */

static void on_page(void *ud, const db_error *err, db_message_list *res) {
  req_ctx_t *x = ud;
  count_query(x, err);
  size_t size;
  repo_messages_t *page = res ? encode_page(res, &size) : NULL;
  if (page) reply(x->from, x->ref, REPO_MESSAGES, page, size);
  else reply_unavailable(x->from, x->ref, REPO_MESSAGES);
  free(page);
  if (res) db_message_list_free(res);
  free(x);
}

static void read_page(repo_t *r, act_msg_t *m) {
  const repo_page_req_t *rq = m->data;
  req_ctx_t *x = ctx_new(r, m);
  int limit = rq->limit > 0 && rq->limit <= PROTO_HISTORY_MAX ? rq->limit : PROTO_HISTORY_MAX;
  int rc;
  if (m->type == REPO_LATEST) rc = db_messages_latest(r->db, limit, on_page, x);
  else if (m->type == REPO_HISTORY) rc = db_messages_before(r->db, rq->before, limit, on_page, x);
  else rc = db_messages_after(r->db, rq->after, DB_CATCH_UP_LIMIT, on_page, x);
  if (rc < 0) {
    reply_unavailable(x->from, x->ref, REPO_MESSAGES);
    free(x);
  }
}

static void on_users(void *ud, const db_error *err, db_user_list *res) {
  req_ctx_t *x = ud;
  count_query(x, err);
  size_t size = sizeof(repo_users_t) + (res ? res->n : 0) * sizeof(repo_user_rec_t);
  repo_users_t *out = res ? calloc(1, size) : NULL;
  if (out) {
    out->n = (uint32_t)res->n;
    for (size_t i = 0; i < res->n; i++) {
      snprintf(out->users[i].id, sizeof out->users[i].id, "%s", res->users[i].id);
      snprintf(out->users[i].name, sizeof out->users[i].name, "%s", res->users[i].name);
    }
    reply(x->from, x->ref, REPO_USERS, out, size);
  } else {
    reply_unavailable(x->from, x->ref, REPO_USERS);
  }
  free(out);
  if (res) db_user_list_free(res);
  free(x);
}

static void on_user(void *ud, const db_error *err, db_user *u, bool created) {
  req_ctx_t *x = ud;
  count_query(x, err);
  if (u) {
    repo_user_reply_t out;
    memset(&out, 0, sizeof out);
    out.created = created;
    snprintf(out.id, sizeof out.id, "%s", u->id);
    snprintf(out.name, sizeof out.name, "%s", u->name);
    reply(x->from, x->ref, REPO_USER, &out, sizeof out);
    db_user_free(u);
  } else {
    reply_unavailable(x->from, x->ref, REPO_USER);
  }
  free(x);
}

/* ------------------------------------------------------------ writes */

static void submit_batch(repo_t *r);

static void free_batch(pending_insert_t *p) {
  while (p) {
    pending_insert_t *next = p->next;
    free(p->content);
    free(p);
    p = next;
  }
}

static void broadcast(const proto_str *frag, int64_t seq) {
  proto_str push = proto_enc_message(frag);
  ws_shared_t *frame = push.ptr ? ws_shared_text(push.ptr, push.len) : NULL;
  free(push.ptr);
  if (!frame) return;
  app_event_t ev = {TOPIC_LOBBY, seq, frame}; /* our reference travels with it */
  if (act_send_ex(act_whereis(APP_NAME_PUBSUB), PUBSUB_PUBLISH, &ev, sizeof ev,
                  app_event_release) != ACT_OK)
    ws_shared_release(frame);
}

static void answer_inserted(const pending_insert_t *p, const proto_str *frag, int64_t seq) {
  size_t size = sizeof(repo_inserted_t) + frag->len + 1;
  repo_inserted_t *out = calloc(1, size);
  if (!out) return;
  out->seq = seq;
  out->frag_len = frag->len;
  memcpy(out->frag, frag->ptr, frag->len);
  reply(p->from, p->ref, REPO_INSERTED, out, size);
  free(out);
}

/* Committed: broadcast in seq order, then answer each sender. */
static void on_inserted(void *ud, const db_error *err, db_message_list *res) {
  req_ctx_t *x = ud;
  repo_t *r = x->repo;
  count_query(x, err);
  pending_insert_t *p = x->batch;
  if (res && res->n == x->nbatch) {
    tm_add(TM_MESSAGES, (long)res->n);
    for (size_t i = 0; i < res->n; i++, p = p->next) {
      proto_message m = wire_message(&res->messages[i]);
      proto_str frag = proto_frag_message(&m);
      if (!frag.ptr) {
        reply_unavailable(p->from, p->ref, REPO_INSERTED);
        continue;
      }
      broadcast(&frag, m.seq);
      answer_inserted(p, &frag, m.seq);
      free(frag.ptr);
    }
  } else {
    for (; p; p = p->next) reply_unavailable(p->from, p->ref, REPO_INSERTED);
  }
  if (res) db_message_list_free(res);
  free_batch(x->batch);
  free(x);
  r->batch_in_flight = false;
  submit_batch(r);
}

static void submit_batch(repo_t *r) {
  if (r->batch_in_flight || !r->qhead || !r->db) return;
  req_ctx_t *x = calloc(1, sizeof *x);
  db_new_message *rows = calloc(MAX_BATCH, sizeof *rows);
  if (!x || !rows) act_crash("repo: out of memory");
  x->repo = r;
  x->t0 = uv_hrtime();
  pending_insert_t **tail = &x->batch;
  while (r->qhead && x->nbatch < MAX_BATCH) {
    pending_insert_t *p = r->qhead;
    r->qhead = p->next;
    p->next = NULL;
    *tail = p;
    tail = &p->next;
    rows[x->nbatch].user_id = p->user_id;
    rows[x->nbatch].content = p->content;
    x->nbatch++;
    r->qlen--;
  }
  if (!r->qhead) r->qtail = NULL;
  r->batch_in_flight = true;
  if (db_messages_insert(r->db, rows, x->nbatch, on_inserted, x) < 0) {
    for (pending_insert_t *p = x->batch; p; p = p->next)
      reply_unavailable(p->from, p->ref, REPO_INSERTED);
    free_batch(x->batch);
    free(x);
    r->batch_in_flight = false;
  }
  free(rows);
}

static void queue_insert(repo_t *r, act_msg_t *m) {
  const repo_insert_req_t *rq = m->data;
  pending_insert_t *p = calloc(1, sizeof *p);
  char *content = malloc(rq->content_len + 1);
  if (!p || !content) act_crash("repo: out of memory");
  p->from = m->from;
  p->ref = m->ref;
  snprintf(p->user_id, sizeof p->user_id, "%s", rq->user_id);
  memcpy(content, rq->content, rq->content_len);
  content[rq->content_len] = 0;
  p->content = content;
  if (r->qtail) r->qtail->next = p;
  else r->qhead = p;
  r->qtail = p;
  r->qlen++;
  submit_batch(r);
}

/* ---------------------------------------------------- migrations */

static void migrate_work(uv_work_t *w) {
  repo_t *r = w->data;
  char err[256];
  int applied = 0;
  if (db_migrate(app_config()->database_url, app_config()->sql_dir, &applied, err,
                 sizeof err) == 0)
    atomic_store(&g_migrated, true);
  (void)r;
}

static void migrate_done(uv_work_t *w, int status) {
  (void)status;
  repo_t *r = w->data;
  r->migrating = false;
}

static void on_db_state(db_conn *c, db_state state, void *ud) {
  (void)c;
  repo_t *r = ud;
  if (r->index != 0) return;
  bool up = state == DB_CONNECTED;
  if (up != atomic_load(&g_writer_up))
    app_log(up ? LOG_INFO : LOG_WARN, "database %s", up ? "connected" : "unreachable");
  atomic_store(&g_writer_up, up);
  /* The database was away at start: migrate now, off the loop thread. */
  if (up && !atomic_load(&g_migrated) && !r->migrating) {
    r->migrating = true;
    r->migrate_work.data = r;
    uv_queue_work(r->loop, &r->migrate_work, migrate_work, migrate_done);
  }
}

/* ----------------------------------------------------------- behaviour */

static int repo_init(void *args, void **state) {
  repo_t *r = calloc(1, sizeof *r);
  if (!r) return ACT_ENOMEM;
  *state = r;
  r->index = (int)(intptr_t)args;
  r->self = act_self();
  r->loop = act_loop();
  db_conn_opts o = {.conninfo = app_config()->database_url, .on_state = on_db_state, .ud = r};
  r->db = db_conn_open(act_loop(), &o);
  return r->db ? ACT_OK : ACT_ENOMEM;
}

static void repo_handle(void *state, act_msg_t *m) {
  repo_t *r = state;
  switch (m->type) {
  case REPO_GET_USER: {
    repo_name_req_t *rq = m->data;
    rq->name[sizeof rq->name - 1] = 0;
    req_ctx_t *x = ctx_new(r, m);
    if (db_user_get_or_create(r->db, rq->name, on_user, x) < 0) {
      reply_unavailable(x->from, x->ref, REPO_USER);
      free(x);
    }
    break;
  }
  case REPO_INSERT: queue_insert(r, m); break;
  case REPO_LATEST:
  case REPO_HISTORY:
  case REPO_CATCH_UP: read_page(r, m); break;
  case REPO_LIST_USERS: {
    req_ctx_t *x = ctx_new(r, m);
    if (db_users_list(r->db, on_users, x) < 0) {
      reply_unavailable(x->from, x->ref, REPO_USERS);
      free(x);
    }
    break;
  }
  default: break;
  }
}

/* Closing the connection completes its pending queries (with DB_CLOSED),
 * whose callbacks answer `unavailable`: it must happen while the state is
 * still here, so in terminate, not in a deferred cleanup. */
static void repo_terminate(void *state, act_reason_t why) {
  (void)why;
  repo_t *r = state;
  if (!r) return;
  if (r->index == 0) atomic_store(&g_writer_up, false);
  db_conn *db = r->db;
  r->db = NULL; /* callbacks run inside the close: they must not submit */
  if (db) db_conn_close(db, NULL, NULL);
  for (pending_insert_t *p = r->qhead; p; p = p->next)
    reply_unavailable(p->from, p->ref, REPO_INSERTED);
  free_batch(r->qhead);
  free(r);
}

static const act_behaviour_t behaviour = {"repo_conn", repo_init, repo_handle, repo_terminate};
const act_behaviour_t *repo_conn_behaviour(void) { return &behaviour; }
