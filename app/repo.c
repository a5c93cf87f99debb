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
 * once, and /healthz says 503.  Nothing restarts.  A hung PostgreSQL (a
 * stopped server, a stuck lock) is a query past db.c's deadline: the same.
 *
 * The writer's fence.  An insert answered `unavailable` because its
 * connection was dropped may still commit: the old backend, stopped or slow,
 * goes on when it resumes.  Were the writer to insert on a new connection
 * meanwhile, that late commit could carry a seq below one already pushed and
 * never be pushed itself.  So after any lost connection the writer (1) ends
 * the old backend and waits until it is gone (db_backend_end; while it
 * cannot, it stays down: unavailable, /healthz 503, retried with back-off),
 * then (2) reads every message above the highest seq it had pushed and
 * pushes those (the late commits, in seq order), and only then (3) takes new
 * inserts.  A client that was told `unavailable` and retries with its
 * client_id then finds the message (`existed`), and every stored message is
 * pushed exactly once.
 *
 * Kind: actors (repo.h): the supervisor "repo" and its connection actors.
 */
#include "app.h"
#include "db.h"
#include "pubsub.h"
#include "queue.h"
#include "repo.h"
#include "telemetry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BATCH 1024 /* rows per INSERT.  A commit costs one WAL flush
                          (0.6 to 6 ms on this machine's shared disk, the
                          serial rate of bench-repo), so rows per commit is
                          what the rate scales with; 1,024 rows are about
                          140 kB of parameters.  It is seldom the limit: the
                          next batch leaves as soon as the last one's answer
                          comes, so it holds what queued meanwhile, about
                          half of the senders (bench/RESULTS.md).  The queue
                          itself is bounded by the sessions, one request in
                          flight each */
#define RECENT_MAX 4096 /* messages kept encoded in memory (the recent ring
                          below): about 1 MB at 250 B each, enough for the
                          latest 500 of `joined` and for the catch-up of a
                          client away for 20 s at 200 messages/s */
#define MAX_USER_BATCH 512 /* names per users upsert: one commit for all
                             the joins of new names that queued meanwhile */
#define PING_MS 1000  /* the idle writer pings this often, so that a hung
                         server shows (/healthz) within PING_MS + the deadline */
#define FENCE_WAIT_MS 1000 /* how long one fence waits for the old backend (at
                              most half the deadline, inside statement_timeout) */

/* The writer's recovery states (above). */
enum { W_DOWN, W_FENCE, W_CATCH_UP, W_READY };

/* The writer's queue and a batch in flight are act_queue_t (runtime/queue.h)
 * of these.  Each session has one request in flight at a time, so the
 * sessions bound both queues (one entry per joined socket at most). */
typedef struct pending_insert {
  act_qnode_t node;
  act_pid_t from;
  act_ref_t ref;
  char user_id[PROTO_UUID_LEN + 1];
  char client_id[REPO_CLIENT_ID_MAX + 1];
  char *content;
} pending_insert_t;

/* A join's REPO_GET_USER waiting for the next users batch. */
typedef struct pending_user {
  act_qnode_t node;
  act_pid_t from;
  act_ref_t ref;
  char name[PROTO_NAME_MAX * 4 + 1];
} pending_user_t;

typedef struct repo {
  int index;
  act_queue_t users; /* pending_user_t: the next users batch */
  bool users_in_flight;
  act_pid_t self;
  db_conn *db;
  act_queue_t inserts; /* pending_insert_t: the writer's next batch */
  bool batch_in_flight;
  uv_loop_t *loop;
  int wstate;      /* writer only: W_* */
  int pid;         /* the backend of the current connection, 0 if none */
  char app_name[32];
  unsigned fence_wait_ms;
  bool fencing;    /* a db_backend_end is in flight */
} repo_t;

/* One query's context.  Freed by the trampoline (as_repo) after the body
 * ran, even if the body crashed, together with the insert batch it holds. */
typedef struct req_ctx {
  act_queue_t users; /* pending_user_t: a users batch */
  repo_t *repo;
  act_pid_t self; /* the repo actor the callback runs as */
  act_pid_t from;
  act_ref_t ref;
  uint64_t t0;
  act_queue_t batch; /* pending_insert_t: inserts */
  size_t nbatch;
} req_ctx_t;

static _Atomic bool g_writer_up;
static _Atomic bool g_migrated;
static _Atomic bool g_migrating; /* a migration work item is queued or running */
static _Atomic unsigned g_rr;
/* The writer's fence, kept across incarnations of repo.0: a killed writer's
 * backend may still commit too. */
static _Atomic int g_fence_pid;        /* a former writer backend, 0 if none */
static _Atomic int64_t g_last_seq;     /* the highest seq the writer pushed */
static _Atomic bool g_last_seq_known;
/* The SIGTERM drain (main.c) waits until the writer holds no insert. */
static _Atomic bool g_writer_busy;

bool repo_database_up(void) { return atomic_load(&g_writer_up); }
bool repo_writer_idle(void) { return !atomic_load(&g_writer_busy); }
int repo_fence_pid(void) { return atomic_load(&g_fence_pid); }

/* Published after the replies it follows, so that a drain that sees the
 * writer idle knows every sender has been answered (seq_cst, the default:
 * the replies' sends are ordered before the store). */
static void publish_busy(const repo_t *r) {
  if (r->index == 0) atomic_store(&g_writer_busy, !act_queue_empty(&r->inserts) || r->batch_in_flight);
}

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

#define INSERT_OF(n) ACT_QUEUE_DATA((n), pending_insert_t, node)
#define USER_OF(n) ACT_QUEUE_DATA((n), pending_user_t, node)

static void free_inserts(act_queue_t *q) {
  for (act_qnode_t *n; (n = act_queue_pop(q));) {
    free(INSERT_OF(n)->content);
    free(INSERT_OF(n));
  }
}

static void free_users_batch(act_queue_t *q) {
  for (act_qnode_t *n; (n = act_queue_pop(q));) free(USER_OF(n));
}

static void ctx_free(req_ctx_t *x) {
  if (!x) return;
  free_inserts(&x->batch);
  free_users_batch(&x->users);
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

/* Set while repo_terminate runs: a crash there has nowhere to go. */
static _Thread_local bool tl_terminating;
static _Thread_local bool tl_reply_lost;

/* A reply that cannot be sent (no memory for the message) would leave its
 * caller waiting for its whole timeout, not knowing.  So the repo crashes,
 * once the handler or callback has freed what it holds (crash_if_reply_lost
 * at their ends, not here: a longjmp from here would leak their buffers): a
 * caller that monitors learns at once (noproc), and the supervisor starts a
 * fresh repo.0, whose fence pushes anything committed and not yet pushed. */
static void reply(act_pid_t to, act_ref_t ref, int type, const void *data, size_t size) {
  act_msg_t req = {.from = to, .ref = ref};
  if (act_reply(&req, type, data, size) != ACT_OK) tl_reply_lost = true;
}

static void crash_if_reply_lost(void) {
  bool lost = tl_reply_lost;
  tl_reply_lost = false;
  if (lost && !tl_terminating && act_self()) act_crash("repo: out of memory, a reply was lost");
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
  crash_if_reply_lost();
}

static void as_repo(cb_call_t *c) {
  /* Inside the actor already (terminate's db_conn_close runs the pending
   * callbacks), or, should the actor be gone, from here: the body never
   * needs more than act_reply, which works from anywhere. */
  if (act_self() == c->x->self) cb_trampoline(c);
  else if (act_run_as(c->x->self, cb_trampoline, c) != ACT_OK) c->body(c);
  if (c->res && c->res_free) c->res_free(c->res);
  ctx_free(c->x);
}

static void free_msgs(void *p) { db_message_list_free(p); }
static void free_users(void *p) { db_user_list_free(p); }

/* ------------------------------------------------- the recent ring */

/* The last RECENT_MAX messages pushed, encoded, in seq order, shared by the
 * repo actors of every scheduler (a mutex, held for a copy).  The writer
 * appends each message as it pushes it, before pubsub has it, and pushes
 * every stored message exactly once in seq order (the fence), so the ring
 * holds every message with a seq from its oldest to its newest, and every
 * message published so far.  A session subscribes before it asks for the
 * latest page or a catch-up, so the ring and the pushes after it are
 * complete; messages in both are dropped by seq, as with the database.
 *
 * Why: after a storm of reconnects every session asks for a catch-up and,
 * messages arriving meanwhile, nearly every join for the latest 500 (the
 * shared copy in session.c is stale after each insert): a query of up to
 * 500 rows and 500 encodes each, thousands at once, on the cores the
 * server shares with PostgreSQL.  From here each is one copy.
 *
 * Seeded once per process with the newest 500 from the database (the
 * writer's first baseline); `older` says messages older than the ring
 * exist.  Until then, and for what it cannot answer (history, a catch-up
 * from before its oldest), the database answers. */
typedef struct recent_ent { int64_t seq; char *frag; uint32_t len; } recent_ent_t;
static struct {
  pthread_mutex_t lock;
  recent_ent_t ent[RECENT_MAX];
  size_t head, n;   /* oldest at ent[head] */
  bool seeded, older;
} g_recent = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* False when out of memory: the ring is then unseeded (the database
 * answers) until the process restarts, never wrong. */
static void recent_append(int64_t seq, const proto_str *frag) {
  char *copy = malloc(frag->len + 1);
  pthread_mutex_lock(&g_recent.lock);
  if (!copy) {
    g_recent.seeded = false;
  } else if (!g_recent.n || g_recent.ent[(g_recent.head + g_recent.n - 1) % RECENT_MAX].seq < seq) {
    memcpy(copy, frag->ptr, frag->len);
    copy[frag->len] = 0;
    if (g_recent.n == RECENT_MAX) {
      free(g_recent.ent[g_recent.head].frag);
      g_recent.head = (g_recent.head + 1) % RECENT_MAX;
      g_recent.n--;
      g_recent.older = true;
    }
    g_recent.ent[(g_recent.head + g_recent.n) % RECENT_MAX] =
        (recent_ent_t){seq, copy, (uint32_t)frag->len};
    g_recent.n++;
    copy = NULL;
  }
  pthread_mutex_unlock(&g_recent.lock);
  free(copy);
}

/* The page of ring entries [from, from + count), laid out as encode_page's.
 * Called with the lock held. */
static repo_messages_t *recent_page(size_t from, size_t count, bool more, size_t *size) {
  size_t arr = 2 + (count ? count - 1 : 0);
  for (size_t i = 0; i < count; i++) arr += g_recent.ent[(g_recent.head + from + i) % RECENT_MAX].len;
  *size = sizeof(repo_messages_t) + count * sizeof(repo_msg_span_t) + arr + 1;
  repo_messages_t *out = calloc(1, *size);
  if (!out) return NULL;
  out->more = more;
  out->n = (uint32_t)count;
  out->array_len = arr;
  char *a = (char *)repo_messages_array(out);
  size_t off = 0;
  a[off++] = '[';
  for (size_t i = 0; i < count; i++) {
    const recent_ent_t *e = &g_recent.ent[(g_recent.head + from + i) % RECENT_MAX];
    if (i) a[off++] = ',';
    out->spans[i] = (repo_msg_span_t){e->seq, (uint32_t)off, e->len};
    memcpy(a + off, e->frag, e->len);
    off += e->len;
  }
  a[off++] = ']';
  return out;
}

/* REPO_LATEST (the newest `limit`) or REPO_CATCH_UP (the oldest
 * DB_CATCH_UP_LIMIT after `after`) from the ring, or NULL when the ring
 * cannot say (not seeded, out of memory, or it would need older ones). */
static repo_messages_t *recent_read(int type, int limit, int64_t after, size_t *size) {
  repo_messages_t *out = NULL;
  pthread_mutex_lock(&g_recent.lock);
  size_t n = g_recent.n;
  if (g_recent.seeded && type == REPO_LATEST) {
    if ((size_t)limit <= n || !g_recent.older) {
      size_t count = (size_t)limit < n ? (size_t)limit : n;
      out = recent_page(n - count, count, count < n || g_recent.older, size);
    }
  } else if (g_recent.seeded && type == REPO_CATCH_UP) {
    /* complete above `after` only if the ring holds everything above it:
     * its oldest is <= after, or nothing older exists at all */
    bool complete = !g_recent.older || (n && g_recent.ent[g_recent.head].seq <= after);
    if (complete) {
      size_t from = 0; /* the first entry above after: binary search */
      size_t hi = n;
      while (from < hi) {
        size_t mid = (from + hi) / 2;
        if (g_recent.ent[(g_recent.head + mid) % RECENT_MAX].seq <= after) from = mid + 1;
        else hi = mid;
      }
      size_t count = n - from < DB_CATCH_UP_LIMIT ? n - from : DB_CATCH_UP_LIMIT;
      out = recent_page(from, count, n - from > count, size);
    }
  }
  pthread_mutex_unlock(&g_recent.lock);
  return out;
}

/* The writer's baseline: the newest messages in the database, oldest
 * first; `more`: older ones exist. */
static void recent_seed(const db_message_list *l);

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

static void recent_seed(const db_message_list *l) {
  pthread_mutex_lock(&g_recent.lock);
  bool ok = !g_recent.seeded && !g_recent.n;
  pthread_mutex_unlock(&g_recent.lock);
  if (!ok) return;
  for (size_t i = 0; i < l->n; i++) {
    proto_message m = wire_message(&l->messages[i]);
    proto_str frag = proto_frag_message(&m);
    if (!frag.ptr) return; /* unseeded: the database answers */
    recent_append(m.seq, &frag);
    free(frag.ptr);
  }
  pthread_mutex_lock(&g_recent.lock);
  g_recent.older = g_recent.older || l->more;
  g_recent.seeded = g_recent.n == l->n;
  pthread_mutex_unlock(&g_recent.lock);
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
  int limit = rq->limit > 0 && rq->limit <= PROTO_HISTORY_MAX ? rq->limit : PROTO_HISTORY_MAX;
  if (m->type != REPO_HISTORY && r->db && db_conn_state(r->db) == DB_CONNECTED) {
    size_t size; /* the database being up, as it answers: else `unavailable` */
    repo_messages_t *page = recent_read(m->type, limit, rq->after, &size);
    if (page) {
      reply(m->from, m->ref, REPO_MESSAGES, page, size);
      free(page);
      return;
    }
  }
  req_ctx_t *x = ctx_make(r, m->from, m->ref);
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

/* New names of joins, batched: while one upsert commits, the next gathers
 * (as the writer's inserts do), so a ramp of N new users costs a handful of
 * commits, not N. */
static void submit_users(repo_t *r);

static void users_batch_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  db_user_list *res = c->res;
  count_query(x, c->err);
  x->repo->users_in_flight = false;
  ACT_QUEUE_FOREACH(n, &x->users) {
    const pending_user_t *p = USER_OF(n);
    const db_user *u = NULL;
    for (size_t i = 0; res && i < res->n && !u; i++)
      if (strcmp(res->users[i].name, p->name) == 0) u = &res->users[i];
    if (!u) {
      reply_unavailable(p->from, p->ref, REPO_USER);
      continue;
    }
    repo_user_reply_t out;
    memset(&out, 0, sizeof out);
    out.created = u->created;
    snprintf(out.id, sizeof out.id, "%s", u->id);
    snprintf(out.name, sizeof out.name, "%s", u->name);
    reply(p->from, p->ref, REPO_USER, &out, sizeof out);
  }
  submit_users(x->repo);
}

static void on_users_batch(void *ud, const db_error *err, db_user_list *res) {
  as_repo(&(cb_call_t){users_batch_body, ud, err, res, free_users, false});
}

static void fail_users(repo_t *r) {
  ACT_QUEUE_FOREACH(n, &r->users) reply_unavailable(USER_OF(n)->from, USER_OF(n)->ref, REPO_USER);
  free_users_batch(&r->users);
}

static void submit_users(repo_t *r) {
  if (r->users_in_flight || act_queue_empty(&r->users) || !r->db) return;
  req_ctx_t *x = ctx_make(r, 0, 0);
  const char **names = calloc(MAX_USER_BATCH, sizeof *names);
  if (!x || !names) {
    free(x);
    free(names);
    fail_users(r);
    return;
  }
  size_t n = 0;
  for (act_qnode_t *q; n < MAX_USER_BATCH && (q = act_queue_pop(&r->users));) {
    act_queue_push(&x->users, q);
    names[n++] = USER_OF(q)->name;
  }
  if (db_users_get_or_create(r->db, names, n, on_users_batch, x) < 0) {
    ACT_QUEUE_FOREACH(q, &x->users) reply_unavailable(USER_OF(q)->from, USER_OF(q)->ref, REPO_USER);
    ctx_free(x);
  } else {
    r->users_in_flight = true;
  }
  free(names);
}

static void queue_user(repo_t *r, act_msg_t *m) {
  repo_name_req_t *rq = m->data;
  pending_user_t *p = m->size >= sizeof *rq ? calloc(1, sizeof *p) : NULL;
  if (!p) {
    reply_unavailable(m->from, m->ref, REPO_USER);
    return;
  }
  p->from = m->from;
  p->ref = m->ref;
  snprintf(p->name, sizeof p->name, "%.*s", (int)sizeof p->name - 1, rq->name);
  act_queue_push(&r->users, &p->node);
  submit_users(r);
}

/* ------------------------------------------------------------ writes */

static void submit_batch(repo_t *r);
static void fail_queue(repo_t *r);
static void writer_retry(repo_t *r, const char *why);

/* Frame bytes per lobby event at most (a single larger message goes alone):
 * a quarter of WS_OUTBOUND_MAX, so that a socket a little behind is not
 * closed by one batch.  Within a group a fan-out costs each subscriber one
 * envelope, one session turn, one segment and one iovec, not one per
 * message: batches grow when the server is busy (the writer's next batch
 * gathers while it works), and the per-subscriber work shrinks with them. */
#define BROADCAST_GROUP_MAX (64u * 1024)

/* Messages to publish as one lobby event: their encoded pushes, each tagged
 * by its seq (ws_shared_texts), in seq order. */
typedef struct group {
  ws_text_t *texts;
  size_t n, bytes;
} group_t;

static void group_clear(group_t *g) {
  for (size_t i = 0; i < g->n; i++) free((char *)g->texts[i].ptr);
  g->n = g->bytes = 0;
}

/* Adds a stored message (into the recent ring first: before pubsub has it).
 * False when out of memory: it is stored but cannot be pushed. */
static bool group_add(group_t *g, const proto_str *frag, int64_t seq) {
  recent_append(seq, frag);
  proto_str push = proto_enc_message(frag);
  if (!push.ptr) return false;
  g->texts[g->n++] = (ws_text_t){push.ptr, push.len, seq};
  g->bytes += push.len;
  return true;
}

/* Publishes the group as one event (the subscribers' frame holds its
 * messages back to back) and empties it.  False when out of memory: none
 * of them was pushed. */
static bool group_publish(group_t *g) {
  if (!g->n) return true;
  ws_shared_t *frame = ws_shared_texts(g->texts, g->n);
  int64_t last = g->texts[g->n - 1].tag;
  size_t n = g->n;
  group_clear(g);
  if (!frame) return false;
  app_event_t ev = {TOPIC_LOBBY, last, frame}; /* our reference travels with it */
  if (act_send_ex(act_whereis(APP_NAME_PUBSUB), PUBSUB_PUBLISH, &ev, sizeof ev,
                  app_event_release) != ACT_OK) {
    ws_shared_release(frame);
    return false;
  }
  tm_add(TM_MESSAGES, (long)n);
  if (last > atomic_load(&g_last_seq)) atomic_store(&g_last_seq, last);
  return true;
}

/* One message alone (the fence's late commits come one by one): counted
 * and g_last_seq moved past it, as a group's. */
static bool broadcast(const proto_str *frag, int64_t seq) {
  ws_text_t t;
  group_t g = {&t, 0, 0};
  return group_add(&g, frag, seq) && group_publish(&g);
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
/* Answers `unavailable` to the insert at n and every one after it. */
static void unavailable_from(const act_qnode_t *n) {
  for (; n; n = n->next) reply_unavailable(INSERT_OF(n)->from, INSERT_OF(n)->ref, REPO_INSERTED);
}

/* A row of a committed batch, between its group's publish and its answer. */
typedef struct row_out {
  proto_str frag;  /* its JSON fragment; NULL: an old message we cannot say now */
  int64_t seq;
  bool fresh;      /* stored by this batch: pushed with its group */
  bool look_up;    /* stored by someone else meanwhile: read it by client_id */
} row_out_t;

/* Answers rows [from, to) of the batch, whose new messages are pushed. */
static void answer_rows(repo_t *r, const act_qnode_t *n, row_out_t *rows, size_t from,
                        size_t to) {
  for (size_t i = from; i < to; i++, n = n->next) {
    const pending_insert_t *p = INSERT_OF(n);
    if (rows[i].look_up) {
      if (r->db) find_client_id(r, p->from, p->ref, p->user_id, p->client_id);
      else reply_unavailable(p->from, p->ref, REPO_INSERTED);
    } else if (!rows[i].frag.ptr) { /* the retry finds it */
      reply_unavailable(p->from, p->ref, REPO_INSERTED);
    } else {
      answer_inserted(p->from, p->ref, &rows[i].frag, rows[i].seq, !rows[i].fresh);
    }
    free(rows[i].frag.ptr);
    rows[i].frag.ptr = NULL;
  }
}

static void inserted_body(cb_call_t *c) {
  req_ctx_t *x = c->x;
  repo_t *r = x->repo;
  db_message_list *res = c->res;
  count_query(x, c->err);
  act_qnode_t *n = x->batch.head;
  /* The next batch goes first, so that PostgreSQL executes it while this
   * one is broadcast and answered (1,024 encodes, pushes and replies):
   * otherwise the backend idles for that time and a round trip, about 10%
   * of its wall time at 2,000 senders (pg_stat_activity sampled).  Its
   * seqs are above this batch's all the same: one connection runs its
   * statements in order, so it commits after this one did. */
  r->batch_in_flight = false;
  if (!c->err) submit_batch(r);
  if (!res || res->n != x->nbatch) {
    unavailable_from(n);
    submit_batch(r); /* after an error: what queued meanwhile, if it can */
    return;
  }
  /* Rows are pushed in groups of up to BROADCAST_GROUP_MAX bytes, each one
   * lobby event, and a group's rows are answered once it is published (the
   * `sent` and the push may come in either order, PROTOCOL.md).  Stored,
   * each must be pushed, in seq order: if a group cannot be (no memory),
   * g_last_seq stays below it, its rows and the rest are told
   * `unavailable` (a retry finds each by client_id) and the connection is
   * dropped: the fence on the next one reads those messages back from the
   * database and pushes them. */
  row_out_t *rows = calloc(res->n ? res->n : 1, sizeof *rows);
  group_t g = {calloc(res->n ? res->n : 1, sizeof(ws_text_t)), 0, 0};
  size_t start = 0;           /* the group's first row */
  const act_qnode_t *gn = n;  /* ... and its node */
  bool ok = rows && g.texts;
  for (size_t i = 0; ok && i < res->n; i++) {
    const db_message *d = &res->messages[i];
    if (!d->id) {
      rows[i].look_up = true;
    } else {
      proto_message m = wire_message(d);
      rows[i].frag = proto_frag_message(&m);
      rows[i].seq = m.seq;
      rows[i].fresh = !d->existed;
      if (rows[i].fresh) {
        if (rows[i].frag.ptr && g.bytes && g.bytes + rows[i].frag.len > BROADCAST_GROUP_MAX) {
          ok = group_publish(&g);
          if (!ok) break;
          answer_rows(r, gn, rows, start, i);
          for (; start < i; start++) gn = gn->next;
        }
        ok = rows[i].frag.ptr && group_add(&g, &rows[i].frag, m.seq);
      }
    }
  }
  if (ok) ok = group_publish(&g);
  if (ok) {
    answer_rows(r, gn, rows, start, res->n);
    submit_batch(r); /* after an error: what queued meanwhile, if it can */
  } else {
    group_clear(&g);
    for (size_t i = start; rows && i < res->n; i++) free(rows[i].frag.ptr);
    unavailable_from(gn);
    /* the next batch, if sent, fails with the connection: a retry by
     * client_id finds whatever of it committed */
    writer_retry(r, "out of memory: a committed message will be pushed by the fence");
  }
  free(g.texts);
  free(rows);
}

static void on_inserted(void *ud, const db_error *err, db_message_list *res) {
  as_repo(&(cb_call_t){inserted_body, ud, err, res, free_msgs, false});
}

/* Answers every queued insert `unavailable` and empties the queue. */
static void fail_queue(repo_t *r) {
  unavailable_from(r->inserts.head);
  free_inserts(&r->inserts);
  publish_busy(r);
}

static void submit_batch_now(repo_t *r);
static void submit_batch(repo_t *r) {
  submit_batch_now(r);
  publish_busy(r);
}

static void submit_batch_now(repo_t *r) {
  if (r->batch_in_flight || act_queue_empty(&r->inserts) || !r->db) return;
  if (r->wstate != W_READY) { /* connecting or fencing: wait; down: tell */
    if (db_conn_state(r->db) == DB_DOWN) fail_queue(r);
    return;
  }
  req_ctx_t *x = ctx_make(r, 0, 0);
  db_new_message *rows = calloc(MAX_BATCH, sizeof *rows);
  if (!x || !rows) { /* out of memory: nobody waits for ever */
    free(x);
    free(rows);
    fail_queue(r);
    return;
  }
  for (act_qnode_t *n; x->nbatch < MAX_BATCH && (n = act_queue_pop(&r->inserts));) {
    act_queue_push(&x->batch, n);
    const pending_insert_t *p = INSERT_OF(n);
    rows[x->nbatch].user_id = p->user_id;
    rows[x->nbatch].content = p->content;
    rows[x->nbatch].client_id = p->client_id;
    x->nbatch++;
  }
  r->batch_in_flight = true;
  if (db_messages_insert(r->db, rows, x->nbatch, on_inserted, x) < 0) {
    unavailable_from(x->batch.head);
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
  act_queue_push(&r->inserts, &p->node);
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

/* ------------------------------------------------ the writer's fence */

static void writer_catch_up(repo_t *r);

static void writer_ready(repo_t *r) {
  r->wstate = W_READY;
  if (!atomic_load(&g_writer_up)) app_log(LOG_INFO, "database connected");
  atomic_store(&g_writer_up, true);
  submit_batch(r);
}

/* The connection failed inside the fence: drop it, the back-off retries. */
static void writer_retry(repo_t *r, const char *why) {
  app_log(LOG_WARN, "writer fence: %s", why);
  if (r->db) db_conn_reset(r->db, why);
}

static void caught_up_body(cb_call_t *c) {
  repo_t *r = c->x->repo;
  db_message_list *l = c->res;
  count_query(c->x, c->err);
  if (!r->db || r->wstate != W_CATCH_UP) return;
  if (!l) {
    writer_retry(r, "catch-up failed");
    return;
  }
  for (size_t i = 0; i < l->n; i++) { /* late commits, in seq order */
    proto_message m = wire_message(&l->messages[i]);
    proto_str frag = proto_frag_message(&m);
    bool pushed = frag.ptr && broadcast(&frag, m.seq);
    free(frag.ptr);
    if (!pushed) { /* from this one on, next time */
      writer_retry(r, "out of memory");
      return;
    }
  }
  if (l->n) app_log(LOG_INFO, "writer fence: pushed %zu late commits", l->n);
  if (l->more) writer_catch_up(r);
  else writer_ready(r);
}

static void on_caught_up(void *ud, const db_error *err, db_message_list *res) {
  as_repo(&(cb_call_t){caught_up_body, ud, err, res, free_msgs, false});
}

static void baseline_body(cb_call_t *c) {
  repo_t *r = c->x->repo;
  db_message_list *l = c->res;
  count_query(c->x, c->err);
  if (!r->db || r->wstate != W_CATCH_UP) return;
  if (!l) {
    writer_retry(r, "reading the newest seq failed");
    return;
  }
  atomic_store(&g_last_seq, l->n ? l->messages[l->n - 1].seq : 0);
  atomic_store(&g_last_seq_known, true);
  recent_seed(l);
  writer_ready(r);
}

static void on_baseline(void *ud, const db_error *err, db_message_list *res) {
  as_repo(&(cb_call_t){baseline_body, ud, err, res, free_msgs, false});
}

/* (2): push what committed above the last pushed seq; the first time in
 * this process, only learn that seq. */
static void writer_catch_up(repo_t *r) {
  r->wstate = W_CATCH_UP;
  req_ctx_t *x = ctx_make(r, 0, 0);
  int rc = -1;
  if (x && !atomic_load(&g_last_seq_known))
    rc = db_messages_latest(r->db, PROTO_HISTORY_MAX, on_baseline, x); /* seeds the ring */
  else if (x) rc = db_messages_after(r->db, atomic_load(&g_last_seq), DB_CATCH_UP_LIMIT,
                                     on_caught_up, x);
  if (rc < 0) {
    free(x);
    writer_retry(r, "cannot submit the catch-up");
  }
}

static void fenced_body(cb_call_t *c) {
  repo_t *r = c->x->repo;
  count_query(c->x, c->err);
  r->fencing = false;
  if (!r->db || r->wstate != W_FENCE) return;
  if (c->err) {
    writer_retry(r, c->err->message);
    return;
  }
  if (!c->created) { /* still there (stopped?): the next tick tries again */
    app_log(LOG_WARN, "writer fence: the previous writer backend %d still runs",
            atomic_load(&g_fence_pid));
    return;
  }
  atomic_store(&g_fence_pid, 0);
  writer_catch_up(r);
}

static void on_fenced(void *ud, const db_error *err, bool gone) {
  as_repo(&(cb_call_t){fenced_body, ud, err, NULL, NULL, gone});
}

/* (1): the former writer backend must be gone before anything else. */
static void writer_fence(repo_t *r) {
  r->wstate = W_FENCE;
  int old = atomic_load(&g_fence_pid);
  if (!old || old == r->pid) {
    writer_catch_up(r);
    return;
  }
  req_ctx_t *x = ctx_make(r, 0, 0);
  if (!x || db_backend_end(r->db, old, r->app_name, r->fence_wait_ms, on_fenced, x) < 0) {
    free(x);
    writer_retry(r, "cannot submit the fence");
    return;
  }
  r->fencing = true;
}

typedef struct state_call { repo_t *r; db_state state; } state_call_t;

static void db_state_as_repo(void *arg) {
  state_call_t *sc = arg;
  repo_t *r = sc->r;
  if (r->index != 0 || !r->db) return;
  if (sc->state == DB_CONNECTED) {
    int pid = db_conn_backend_pid(r->db);
    if (r->pid && r->pid != pid && r->wstate == W_READY)
      atomic_store(&g_fence_pid, r->pid); /* a DOWN we were not told of */
    r->pid = pid;
    if (r->wstate == W_DOWN) writer_fence(r);
  } else if (sc->state == DB_DOWN) {
    r->fencing = false;
    /* Only a backend that took inserts needs fencing; one lost during the
     * fence never did, and the one being fenced stays the one to end. */
    if (r->pid && r->wstate == W_READY) atomic_store(&g_fence_pid, r->pid);
    r->pid = 0;
    r->wstate = W_DOWN;
    if (atomic_exchange(&g_writer_up, false)) app_log(LOG_WARN, "database unreachable");
    fail_queue(r);
  }
  /* The database was away at start: migrate now, off the loop thread.  One
   * at a time, whichever incarnation of repo.0 asked. */
  if (sc->state == DB_CONNECTED && !atomic_load(&g_migrated) &&
      !atomic_exchange(&g_migrating, true)) {
    uv_work_t *w = calloc(1, sizeof *w);
    if (!w || uv_queue_work(r->loop, w, migrate_work, migrate_done) != 0) {
      free(w);
      atomic_store(&g_migrating, false); /* the next connect tries again */
    }
  }
  crash_if_reply_lost();
}

/* db.c reports from libuv callbacks, outside any actor: as the repo. */
static void on_db_state(db_conn *c, db_state state, void *ud) {
  (void)c;
  repo_t *r = ud;
  state_call_t sc = {r, state};
  if (act_self() == r->self || act_run_as(r->self, db_state_as_repo, &sc) != ACT_OK)
    db_state_as_repo(&sc);
}

static void on_tick_ping(void *ud, const db_error *err, uint64_t rtt_us) {
  (void)ud;
  (void)err;
  (void)rtt_us; /* a hung server shows as the deadline's drop, not here */
}

/* ----------------------------------------------------------- behaviour */

static int repo_init(void *args, void **state) {
  repo_t *r = calloc(1, sizeof *r);
  if (!r) return ACT_ENOMEM;
  *state = r;
  r->index = (int)(intptr_t)args;
  r->self = act_self();
  r->loop = act_loop();
  r->wstate = W_DOWN;
  /* In pg_stat_activity: which server process, which connection. */
  snprintf(r->app_name, sizeof r->app_name, "chatter.%d repo.%d", (int)getpid(), r->index);
  /* CHATTER_DB_TIMEOUT_MS (config.c): each query's deadline (db.h) */
  long timeout = app_config()->db_timeout_ms ? app_config()->db_timeout_ms : DB_QUERY_TIMEOUT_MS;
  db_conn_opts o = {.conninfo = app_config()->database_url, .on_state = on_db_state, .ud = r,
                    .query_timeout_ms = (unsigned)timeout, .application_name = r->app_name};
  r->fence_wait_ms = FENCE_WAIT_MS < timeout / 2 ? FENCE_WAIT_MS : (unsigned)timeout / 2;
  r->db = db_conn_open(act_loop(), &o);
  if (r->db && r->index == 0) act_send_after(PING_MS, r->self, REPO_TICK, NULL, 0);
  return r->db ? ACT_OK : ACT_ENOMEM;
}

static void repo_handle(void *state, act_msg_t *m) {
  repo_t *r = state;
  switch (m->type) {
  case REPO_GET_USER: queue_user(r, m); break;
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
  case REPO_ABANDON: /* the drain time is up (main.c): unavailable, now */
    if (r->index == 0 && r->db) db_conn_reset(r->db, "shutdown: the drain time is up");
    break;
  case REPO_TICK:
    if (r->db && r->wstate == W_READY && db_conn_pending(r->db) == 0)
      db_ping(r->db, on_tick_ping, NULL);
    else if (r->db && r->wstate == W_FENCE && !r->fencing)
      writer_fence(r); /* the old backend was still there last time */
    act_send_after(PING_MS, r->self, REPO_TICK, NULL, 0);
    break;
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
  crash_if_reply_lost();
}

/* Closing the connection completes its pending queries (with DB_CLOSED),
 * whose callbacks answer `unavailable`: it must happen while the state is
 * still here, so in terminate, not in a deferred cleanup. */
static void repo_terminate(void *state, act_reason_t why) {
  (void)why;
  repo_t *r = state;
  if (!r) return;
  tl_terminating = true;
  if (r->index == 0) {
    atomic_store(&g_writer_up, false);
    if (r->pid && r->wstate == W_READY)
      atomic_store(&g_fence_pid, r->pid); /* it may still commit */
  }
  db_conn *db = r->db;
  r->db = NULL; /* callbacks run inside the close: they must not submit */
  if (db) db_conn_close(db, NULL, NULL);
  fail_queue(r);
  fail_users(r);
  free(r);
  tl_terminating = false;
}

static const act_behaviour_t behaviour = {"repo_conn", repo_init, repo_handle, repo_terminate};
const act_behaviour_t *repo_conn_behaviour(void) { return &behaviour; }
