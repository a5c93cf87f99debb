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
  char client_id[REPO_CLIENT_ID_MAX + 1];
  char *content;
} pending_insert_t;

typedef struct repo {
  int index;
  act_pid_t self;
  db_conn *db;
  pending_insert_t *qhead, *qtail; /* the writer's next batch */
  size_t qlen;
  bool batch_in_flight;
  uv_loop_t *loop;
} repo_t;

/* One query's context.  Freed by the trampoline (as_repo) after the body
 * ran, even if the body crashed, together with the insert batch it holds. */
typedef struct req_ctx {
  repo_t *repo;
  act_pid_t self; /* the repo actor the callback runs as */
  act_pid_t from;
  act_ref_t ref;
  uint64_t t0;
  pending_insert_t *batch; /* inserts */
  size_t nbatch;
} req_ctx_t;

static _Atomic bool g_writer_up;
static _Atomic bool g_migrated;
static _Atomic bool g_migrating; /* a migration work item is queued or running */
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

bool repo_migration_idle(void) { return !atomic_load(&g_migrating); }

/* ------------------------------------------------------------ replies */

static void free_batch(pending_insert_t *p) {
  while (p) {
    pending_insert_t *next = p->next;
    free(p->content);
    free(p);
    p = next;
  }
}

static void ctx_free(req_ctx_t *x) {
  if (!x) return;
  free_batch(x->batch);
  free(x);
}

/* NULL when out of memory: the caller answers `unavailable`. */
static req_ctx_t *ctx_make(repo_t *r, act_pid_t from, act_ref_t ref) {
  req_ctx_t *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  x->repo = r;
  x->self = r->self;
  x->from = from;
  x->ref = ref;
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

static void reply_rc(act_pid_t to, act_ref_t ref, int type, int rc) {
  union {
    repo_user_reply_t u;
    repo_inserted_t i;
    repo_messages_t m;
    repo_users_t l;
  } none;
  memset(&none, 0, sizeof none);
  none.u.rc = rc; /* rc is the first field of every reply */
  size_t size = type == REPO_USER ? sizeof none.u : type == REPO_INSERTED ? sizeof none.i
              : type == REPO_MESSAGES ? sizeof none.m : sizeof none.l;
  reply(to, ref, type, &none, size);
}

static void reply_unavailable(act_pid_t to, act_ref_t ref, int type) {
  reply_rc(to, ref, type, -1);
}

/* ------------------------------------------- callbacks as the repo actor */

/* db.c calls back from libuv callbacks, outside any actor: an act_crash
 * there (say, out of memory) would abort the process.  Every callback
 * therefore runs its body through act_run_as, as the repo actor: a crash
 * ends that actor (its supervisor restarts it) and nothing else.  The
 * context and the result are freed here whether or not the body finished,
 * so a crash leaks nothing.  Cost: one act_run_as per query, a slot pin and
 * a sigsetjmp, well under a microsecond. */
typedef struct cb_call {
  void (*body)(struct cb_call *);
  req_ctx_t *x;
  const db_error *err;
  void *res;
  void (*res_free)(void *);
  bool created;
} cb_call_t;

static void cb_trampoline(void *arg) {
  cb_call_t *c = arg;
  c->body(c);
}

static void as_repo(cb_call_t *c) {
  /* Inside the actor already (terminate's db_conn_close runs the pending
   * callbacks), or, should the actor be gone, from here: the body never
   * needs more than act_reply, which works from anywhere. */
  if (act_self() == c->x->self || act_run_as(c->x->self, cb_trampoline, c) != ACT_OK)
    c->body(c);
  if (c->res && c->res_free) c->res_free(c->res);
  ctx_free(c->x);
}

static void free_msgs(void *p) { db_message_list_free(p); }
static void free_users(void *p) { db_user_list_free(p); }
static void free_user(void *p) { db_user_free(p); }

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

static void page_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  count_query(x, c->err);
  size_t size;
  repo_messages_t *page = c->res ? encode_page(c->res, &size) : NULL;
  if (page) reply(x->from, x->ref, REPO_MESSAGES, page, size);
  else reply_unavailable(x->from, x->ref, REPO_MESSAGES);
  free(page);
}

static void on_page(void *ud, const db_error *err, db_message_list *res) {
  as_repo(&(cb_call_t){page_body, ud, err, res, free_msgs, false});
}

static void read_page(repo_t *r, act_msg_t *m) {
  const repo_page_req_t *rq = m->data;
  req_ctx_t *x = ctx_make(r, m->from, m->ref);
  int limit = rq->limit > 0 && rq->limit <= PROTO_HISTORY_MAX ? rq->limit : PROTO_HISTORY_MAX;
  int rc = -1;
  if (!x) rc = -1;
  else if (m->type == REPO_LATEST) rc = db_messages_latest(r->db, limit, on_page, x);
  else if (m->type == REPO_HISTORY) rc = db_messages_before(r->db, rq->before, limit, on_page, x);
  else rc = db_messages_after(r->db, rq->after, DB_CATCH_UP_LIMIT, on_page, x);
  if (rc < 0) {
    reply_unavailable(m->from, m->ref, REPO_MESSAGES);
    free(x);
  }
}

static void users_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  db_user_list *res = c->res;
  count_query(x, c->err);
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
}

static void on_users(void *ud, const db_error *err, db_user_list *res) {
  as_repo(&(cb_call_t){users_body, ud, err, res, free_users, false});
}

static void user_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  db_user *u = c->res;
  count_query(x, c->err);
  if (u) {
    repo_user_reply_t out;
    memset(&out, 0, sizeof out);
    out.created = c->created;
    snprintf(out.id, sizeof out.id, "%s", u->id);
    snprintf(out.name, sizeof out.name, "%s", u->name);
    reply(x->from, x->ref, REPO_USER, &out, sizeof out);
  } else {
    reply_unavailable(x->from, x->ref, REPO_USER);
  }
}

static void on_user(void *ud, const db_error *err, db_user *u, bool created) {
  as_repo(&(cb_call_t){user_body, ud, err, u, free_user, created});
}

/* ------------------------------------------------------------ writes */

static void submit_batch(repo_t *r);

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

static void answer_inserted(act_pid_t to, act_ref_t ref, const proto_str *frag, int64_t seq,
                            bool existed) {
  size_t size = sizeof(repo_inserted_t) + frag->len + 1;
  repo_inserted_t *out = calloc(1, size);
  if (!out) {
    reply_unavailable(to, ref, REPO_INSERTED);
    return;
  }
  out->seq = seq;
  out->existed = existed;
  out->frag_len = frag->len;
  memcpy(out->frag, frag->ptr, frag->len);
  reply(to, ref, REPO_INSERTED, out, size);
  free(out);
}

/* REPO_FIND_CLIENT_ID's answer, and an insert's whose stored row this
 * statement could not read (db.h): existed, REPO_NOT_FOUND or unavailable. */
static void found_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  db_message_list *res = c->res;
  count_query(x, c->err);
  if (!res) {
    reply_unavailable(x->from, x->ref, REPO_INSERTED);
    return;
  }
  if (res->n == 0) {
    reply_rc(x->from, x->ref, REPO_INSERTED, REPO_NOT_FOUND);
    return;
  }
  proto_message m = wire_message(&res->messages[0]);
  proto_str frag = proto_frag_message(&m);
  if (frag.ptr) answer_inserted(x->from, x->ref, &frag, m.seq, true);
  else reply_unavailable(x->from, x->ref, REPO_INSERTED);
  free(frag.ptr);
}

static void on_found(void *ud, const db_error *err, db_message_list *res) {
  as_repo(&(cb_call_t){found_body, ud, err, res, free_msgs, false});
}

static void find_client_id(repo_t *r, act_pid_t from, act_ref_t ref, const char *user_id,
                           const char *client_id) {
  req_ctx_t *x = ctx_make(r, from, ref);
  if (!x || db_message_by_client_id(r->db, user_id, client_id, on_found, x) < 0) {
    reply_unavailable(from, ref, REPO_INSERTED);
    free(x);
  }
}

/* Committed: broadcast the new rows in seq order, then answer each sender.
 * A row that already existed is answered with the stored message and not
 * broadcast again: it was when it was first stored. */
static void inserted_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  repo_t *r = x->repo;
  db_message_list *res = c->res;
  count_query(x, c->err);
  pending_insert_t *p = x->batch;
  if (res && res->n == x->nbatch) {
    for (size_t i = 0; i < res->n; i++, p = p->next) {
      const db_message *d = &res->messages[i];
      if (!d->id) { /* stored by someone else meanwhile: read it */
        if (r->db) find_client_id(r, p->from, p->ref, p->user_id, p->client_id);
        else reply_unavailable(p->from, p->ref, REPO_INSERTED);
        continue;
      }
      proto_message m = wire_message(d);
      proto_str frag = proto_frag_message(&m);
      if (!d->existed) tm_add(TM_MESSAGES, 1);
      if (!frag.ptr) { /* committed, but we cannot say it: the retry finds it */
        reply_unavailable(p->from, p->ref, REPO_INSERTED);
        continue;
      }
      if (!d->existed) broadcast(&frag, m.seq);
      answer_inserted(p->from, p->ref, &frag, m.seq, d->existed);
      free(frag.ptr);
    }
  } else {
    for (; p; p = p->next) reply_unavailable(p->from, p->ref, REPO_INSERTED);
  }
  r->batch_in_flight = false;
  submit_batch(r);
}

static void on_inserted(void *ud, const db_error *err, db_message_list *res) {
  as_repo(&(cb_call_t){inserted_body, ud, err, res, free_msgs, false});
}

/* Answers every queued insert `unavailable` and empties the queue. */
static void fail_queue(repo_t *r) {
  for (pending_insert_t *p = r->qhead; p; p = p->next)
    reply_unavailable(p->from, p->ref, REPO_INSERTED);
  free_batch(r->qhead);
  r->qhead = r->qtail = NULL;
  r->qlen = 0;
}

static void submit_batch(repo_t *r) {
  if (r->batch_in_flight || !r->qhead || !r->db) return;
  req_ctx_t *x = ctx_make(r, 0, 0);
  db_new_message *rows = calloc(MAX_BATCH, sizeof *rows);
  if (!x || !rows) { /* out of memory: nobody waits for ever */
    free(x);
    free(rows);
    fail_queue(r);
    return;
  }
  pending_insert_t **tail = &x->batch;
  while (r->qhead && x->nbatch < MAX_BATCH) {
    pending_insert_t *p = r->qhead;
    r->qhead = p->next;
    p->next = NULL;
    *tail = p;
    tail = &p->next;
    rows[x->nbatch].user_id = p->user_id;
    rows[x->nbatch].content = p->content;
    rows[x->nbatch].client_id = p->client_id;
    x->nbatch++;
    r->qlen--;
  }
  if (!r->qhead) r->qtail = NULL;
  r->batch_in_flight = true;
  if (db_messages_insert(r->db, rows, x->nbatch, on_inserted, x) < 0) {
    for (pending_insert_t *p = x->batch; p; p = p->next)
      reply_unavailable(p->from, p->ref, REPO_INSERTED);
    ctx_free(x);
    r->batch_in_flight = false;
  }
  free(rows);
}

static void queue_insert(repo_t *r, act_msg_t *m) {
  const repo_insert_req_t *rq = m->data;
  if (m->size < sizeof *rq || rq->content_len > m->size - sizeof *rq) {
    reply_unavailable(m->from, m->ref, REPO_INSERTED); /* a malformed request */
    return;
  }
  pending_insert_t *p = calloc(1, sizeof *p);
  char *content = malloc(rq->content_len + 1);
  if (!p || !content) {
    free(p);
    free(content);
    reply_unavailable(m->from, m->ref, REPO_INSERTED);
    return;
  }
  p->from = m->from;
  p->ref = m->ref;
  snprintf(p->user_id, sizeof p->user_id, "%.*s", (int)sizeof p->user_id - 1, rq->user_id);
  snprintf(p->client_id, sizeof p->client_id, "%.*s", (int)sizeof p->client_id - 1,
           rq->client_id);
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

/* The work item is its own allocation, never part of the repo's state: a
 * repo.0 killed while the migration runs on the thread pool frees its state
 * at once, and the pool still writes to the item when it finishes (the use
 * after free of issue 8 item 10).  Only globals are touched from here. */
static void migrate_work(uv_work_t *w) {
  (void)w;
  char err[256];
  int applied = 0;
  if (db_migrate(app_config()->database_url, app_config()->sql_dir, &applied, err,
                 sizeof err) == 0)
    atomic_store(&g_migrated, true);
}

static void migrate_done(uv_work_t *w, int status) {
  (void)status;
  free(w);
  atomic_store(&g_migrating, false);
}

static void on_db_state(db_conn *c, db_state state, void *ud) {
  (void)c;
  repo_t *r = ud;
  if (r->index != 0) return;
  bool up = state == DB_CONNECTED;
  if (up != atomic_load(&g_writer_up))
    app_log(up ? LOG_INFO : LOG_WARN, "database %s", up ? "connected" : "unreachable");
  atomic_store(&g_writer_up, up);
  /* The database was away at start: migrate now, off the loop thread.  One
   * at a time, whichever incarnation of repo.0 asked. */
  if (up && !atomic_load(&g_migrated) && !atomic_exchange(&g_migrating, true)) {
    uv_work_t *w = calloc(1, sizeof *w);
    if (!w || uv_queue_work(r->loop, w, migrate_work, migrate_done) != 0) {
      free(w);
      atomic_store(&g_migrating, false); /* the next connect tries again */
    }
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
    if (m->size < sizeof *rq) {
      reply_unavailable(m->from, m->ref, REPO_USER);
      break;
    }
    rq->name[sizeof rq->name - 1] = 0;
    req_ctx_t *x = ctx_make(r, m->from, m->ref);
    if (!x || db_user_get_or_create(r->db, rq->name, on_user, x) < 0) {
      reply_unavailable(m->from, m->ref, REPO_USER);
      free(x);
    }
    break;
  }
  case REPO_FIND_CLIENT_ID: {
    repo_client_req_t *rq = m->data;
    if (m->size < sizeof *rq) {
      reply_unavailable(m->from, m->ref, REPO_INSERTED);
      break;
    }
    rq->user_id[sizeof rq->user_id - 1] = 0;
    rq->client_id[sizeof rq->client_id - 1] = 0;
    find_client_id(r, m->from, m->ref, rq->user_id, rq->client_id);
    break;
  }
  case REPO_INSERT: queue_insert(r, m); break;
  case REPO_LATEST:
  case REPO_HISTORY:
  case REPO_CATCH_UP: read_page(r, m); break;
  case REPO_LIST_USERS: {
    req_ctx_t *x = ctx_make(r, m->from, m->ref);
    if (!x || db_users_list(r->db, on_users, x) < 0) {
      reply_unavailable(m->from, m->ref, REPO_USERS);
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
  fail_queue(r);
  free(r);
}

static const act_behaviour_t behaviour = {"repo_conn", repo_init, repo_handle, repo_terminate};
const act_behaviour_t *repo_conn_behaviour(void) { return &behaviour; }
