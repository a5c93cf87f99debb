/*
 * presence.c -- who is online, with Phoenix.Presence's semantics, and the
 * list of every user.
 *
 * A name is online while it has a meta; a meta is one joined socket (conn),
 * carrying the token that lets a reconnecting tab take its name back.
 * Entries end when what they track ends: a session's `leave`, the socket's
 * close (the endpoint tells us), or the death of the acceptor that owns the
 * socket (monitored), whichever comes first.
 *
 * Changes are coalesced: joins and leaves gather for at most FLUSH_MS and go
 * out as one presence_diff, so a wave of N joins costs each socket a few
 * diffs, not N.  Every event published (diff or user_created) gets the next
 * `version`.  A snapshot (welcome, joined) is the *current* state, stamped
 * with the version of the last event published; the diff still pending
 * carries a higher version and is applied on top by the client.  That is
 * exact because diffs never cancel a join against a leave: metas are keyed by
 * phx_ref, so applying a diff whose first changes the snapshot already holds
 * gives the true state.  A welcome flushes the pending diff first (a connect
 * changes nothing, so this costs nothing in a connect wave), so that a new
 * socket never hears of a change its welcome already shows; a joined
 * snapshot does not, or a wave of N joins would cost N diffs.
 *
 * A session that restarted asks for the events after the last version its
 * socket saw; the last LOG_SIZE events are kept, as shared frames, for that.
 */
#include "app.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define FLUSH_MS 50        /* DESIGN.md: at most 50 ms per diff */
#define LOG_SIZE 1024      /* events kept for restarted sessions */
#define RELOAD_MS 1000     /* retry loading users while the database is away */

typedef struct user {
  char id[PROTO_UUID_LEN + 1];
  char *name;
  int metas;
  proto_str frag[2]; /* encoded once: [0] offline, [1] online */
} user_t;

typedef struct meta {
  uint64_t conn_id;
  act_pid_t acceptor;
  char user_id[PROTO_UUID_LEN + 1];
  char *name;
  char joined_at[PROTO_TIME_LEN + 1];
  char phx_ref[32];
  char token[64];
} meta_t;

typedef struct claim {
  uint64_t conn_id;
  act_pid_t acceptor;
  char *name;
} claim_t;

typedef struct watched { act_pid_t pid; act_ref_t mref; } watched_t;

typedef struct vec { void *v; size_t n, cap; } vec_t;

typedef struct presence {
  bool loaded;
  act_ref_t load_ref;
  vec_t users;    /* user_t, sorted by name */
  vec_t metas;    /* meta_t */
  vec_t claims;   /* claim_t */
  vec_t watched;  /* watched_t: acceptors we monitor */
  vec_t joins, leaves; /* meta_t copies pending the next diff */
  bool flush_armed;
  int64_t version;
  uint64_t next_ref;
  struct { int64_t version; ws_shared_t *frame; } log[LOG_SIZE];
  /* the snapshot, rebuilt only when the state changed */
  bool dirty;
  proto_str users_frag;
  bool welcome_stale;
  ws_shared_t *welcome;
  size_t online_count; /* names with a meta: kept as metas come and go */
} presence_t;

static _Atomic bool g_loaded; /* for /healthz: the users list is known */
bool presence_ready(void) { return atomic_load(&g_loaded); }

/* ------------------------------------------------------------- vectors */

static void *vec_push(vec_t *v, size_t elem) {
  if (v->n == v->cap) {
    size_t ncap = v->cap ? v->cap * 2 : 16;
    void *nv = realloc(v->v, ncap * elem);
    if (!nv) act_crash("presence: out of memory");
    v->v = nv;
    v->cap = ncap;
  }
  void *slot = (char *)v->v + v->n++ * elem;
  memset(slot, 0, elem);
  return slot;
}

static void vec_del(vec_t *v, size_t i, size_t elem) {
  memmove((char *)v->v + i * elem, (char *)v->v + (i + 1) * elem, (v->n - i - 1) * elem);
  v->n--;
}

#define AT(vec, T, i) (((T *)(vec).v)[i])

/* --------------------------------------------------------------- users */

static long user_find(presence_t *p, const char *name) {
  size_t lo = 0, hi = p->users.n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(AT(p->users, user_t, mid).name, name);
    if (c == 0) return (long)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -(long)lo - 1;
}

static user_t *user_add(presence_t *p, const char *id, const char *name) {
  long at = user_find(p, name);
  if (at >= 0) return &AT(p->users, user_t, at);
  size_t pos = (size_t)(-at - 1);
  vec_push(&p->users, sizeof(user_t));
  user_t *u = p->users.v;
  memmove(&u[pos + 1], &u[pos], (p->users.n - pos - 1) * sizeof *u);
  memset(&u[pos], 0, sizeof *u);
  snprintf(u[pos].id, sizeof u[pos].id, "%s", id);
  u[pos].name = strdup(name);
  if (!u[pos].name) act_crash("presence: out of memory");
  for (int online = 0; online < 2; online++) {
    proto_user pu = {.name = u[pos].name, .online = online};
    memcpy(pu.id, u[pos].id, sizeof pu.id);
    u[pos].frag[online] = proto_frag_user(&pu);
    if (!u[pos].frag[online].ptr) act_crash("presence: out of memory");
  }
  p->dirty = true;
  return &u[pos];
}

/* A name comes online with its first meta and goes offline with its last. */
static void add_meta_to(presence_t *p, user_t *u) {
  if (u->metas++ == 0) p->online_count++;
}

static void drop_meta_from(presence_t *p, user_t *u) {
  if (--u->metas == 0) p->online_count--;
}

/* ------------------------------------------------------------- events */

static void publish(presence_t *p, proto_str json) {
  if (!json.ptr) act_crash("presence: out of memory");
  ws_shared_t *frame = ws_shared_text(json.ptr, json.len);
  free(json.ptr);
  if (!frame) act_crash("presence: out of memory");
  p->version++;
  size_t slot = (size_t)(p->version % LOG_SIZE);
  if (p->log[slot].frame) ws_shared_release(p->log[slot].frame);
  p->log[slot].version = p->version;
  p->log[slot].frame = frame; /* the log keeps this reference */
  app_event_t ev = {TOPIC_PRESENCE, p->version, ws_shared_retain(frame)};
  act_send_ex(act_whereis(APP_NAME_PUBSUB), PUBSUB_PUBLISH, &ev, sizeof ev, app_event_release);
}

static proto_meta wire_meta(const meta_t *m) {
  proto_meta w;
  memset(&w, 0, sizeof w);
  memcpy(w.user_id, m->user_id, sizeof w.user_id);
  w.name = m->name;
  memcpy(w.joined_at, m->joined_at, sizeof w.joined_at);
  w.phx_ref = m->phx_ref;
  return w;
}

static void free_meta_copies(vec_t *v) {
  for (size_t i = 0; i < v->n; i++) free(AT(*v, meta_t, i).name);
  v->n = 0;
}

static void flush(presence_t *p) {
  p->flush_armed = false;
  if (!p->joins.n && !p->leaves.n) return;
  proto_meta *j = calloc(p->joins.n + 1, sizeof *j), *l = calloc(p->leaves.n + 1, sizeof *l);
  if (!j || !l) act_crash("presence: out of memory");
  for (size_t i = 0; i < p->joins.n; i++) j[i] = wire_meta(&AT(p->joins, meta_t, i));
  for (size_t i = 0; i < p->leaves.n; i++) l[i] = wire_meta(&AT(p->leaves, meta_t, i));
  publish(p, proto_enc_presence_diff(j, p->joins.n, l, p->leaves.n, p->users.n, p->online_count));
  free(j);
  free(l);
  free_meta_copies(&p->joins);
  free_meta_copies(&p->leaves);
}

static void note_change(presence_t *p, vec_t *pending, const meta_t *m) {
  meta_t *c = vec_push(pending, sizeof(meta_t));
  *c = *m;
  c->name = strdup(m->name);
  if (!c->name) act_crash("presence: out of memory");
  p->dirty = true;
  if (!p->flush_armed) {
    act_send_after(FLUSH_MS, act_self(), PRESENCE_FLUSH, NULL, 0);
    p->flush_armed = true;
  }
}

/* ------------------------------------------------------------ snapshot */

/* The users array, assembled from each user's two cached fragments: a
 * copy per user, not an encoding, so a join wave costs memcpy. */
static void rebuild_users(presence_t *p) {
  if (!p->dirty && p->users_frag.ptr) return;
  size_t len = 2;
  for (size_t i = 0; i < p->users.n; i++) {
    user_t *u = &AT(p->users, user_t, i);
    len += u->frag[u->metas > 0].len + 1;
  }
  char *buf = malloc(len + 1);
  if (!buf) act_crash("presence: out of memory");
  size_t at = 0;
  buf[at++] = '[';
  for (size_t i = 0; i < p->users.n; i++) {
    user_t *u = &AT(p->users, user_t, i);
    const proto_str *f = &u->frag[u->metas > 0];
    if (i) buf[at++] = ',';
    memcpy(buf + at, f->ptr, f->len);
    at += f->len;
  }
  buf[at++] = ']';
  buf[at] = 0;
  free(p->users_frag.ptr);
  p->users_frag = (proto_str){buf, at};
  p->dirty = false;
  p->welcome_stale = true;
}

/* The welcome frame, rebuilt only when a new socket asks after a change. */
static void rebuild_welcome(presence_t *p) {
  rebuild_users(p);
  if (!p->welcome_stale && p->welcome) return;
  proto_str w = proto_enc_welcome(&p->users_frag, p->users.n, p->online_count);
  if (!w.ptr) act_crash("presence: out of memory");
  if (p->welcome) ws_shared_release(p->welcome);
  p->welcome = ws_shared_text(w.ptr, w.len);
  free(w.ptr);
  if (!p->welcome) act_crash("presence: out of memory");
  p->welcome_stale = false;
}

static void reply_snapshot(presence_t *p, act_msg_t *req, const meta_t *m) {
  if (!p->loaded) {
    presence_snapshot_t none = {.rc = -1};
    act_reply(req, PRESENCE_SNAPSHOT, &none, sizeof none);
    return;
  }
  if (m) rebuild_users(p); /* a joined reply carries the users, not the welcome */
  else rebuild_welcome(p);
  size_t size = sizeof(presence_snapshot_t) + (m ? p->users_frag.len + 1 : 0);
  presence_snapshot_t *s = calloc(1, size);
  if (!s) act_crash("presence: out of memory");
  s->version = p->version;
  s->welcome = m ? NULL : ws_shared_retain(p->welcome);
  if (m) {
    snprintf(s->token, sizeof s->token, "%s", m->token);
    snprintf(s->phx_ref, sizeof s->phx_ref, "%s", m->phx_ref);
  }
  s->total_users = p->users.n;
  s->online_count = p->online_count;
  if (m) {
    s->users_len = p->users_frag.len;
    memcpy(s->users, p->users_frag.ptr, p->users_frag.len);
  }
  act_reply_ex(req, PRESENCE_SNAPSHOT, s, size, presence_snapshot_release);
  free(s);
}

void presence_snapshot_release(void *data, size_t size) {
  (void)size;
  presence_snapshot_t *s = data;
  if (s->welcome) ws_shared_release(s->welcome);
}

void presence_events_release(void *data, size_t size) {
  (void)size;
  presence_events_t *e = data;
  for (uint32_t i = 0; i < e->n; i++) ws_shared_release(e->events[i].frame);
}

/* -------------------------------------------------------------- metas */

static long meta_by_conn(presence_t *p, uint64_t conn_id) {
  for (size_t i = 0; i < p->metas.n; i++)
    if (AT(p->metas, meta_t, i).conn_id == conn_id) return (long)i;
  return -1;
}

static long meta_by_name(presence_t *p, const char *name) {
  for (size_t i = 0; i < p->metas.n; i++)
    if (strcmp(AT(p->metas, meta_t, i).name, name) == 0) return (long)i;
  return -1;
}

static long claim_by_name(presence_t *p, const char *name) {
  for (size_t i = 0; i < p->claims.n; i++)
    if (strcmp(AT(p->claims, claim_t, i).name, name) == 0) return (long)i;
  return -1;
}

static void drop_claims_of(presence_t *p, uint64_t conn_id) {
  for (size_t i = 0; i < p->claims.n; i++) {
    if (AT(p->claims, claim_t, i).conn_id != conn_id) continue;
    free(AT(p->claims, claim_t, i).name);
    vec_del(&p->claims, i--, sizeof(claim_t));
  }
}

static void remove_meta(presence_t *p, size_t i) {
  meta_t *m = &AT(p->metas, meta_t, i);
  long u = user_find(p, m->name);
  if (u >= 0) drop_meta_from(p, &AT(p->users, user_t, u));
  note_change(p, &p->leaves, m);
  free(m->name);
  vec_del(&p->metas, i, sizeof(meta_t));
}

static void watch(presence_t *p, act_pid_t acceptor) {
  for (size_t i = 0; i < p->watched.n; i++)
    if (AT(p->watched, watched_t, i).pid == acceptor) return;
  watched_t *w = vec_push(&p->watched, sizeof(watched_t));
  w->pid = acceptor;
  w->mref = act_monitor(acceptor);
}

static void random_hex(char *out, size_t bytes) {
  unsigned char buf[32];
  if (bytes > sizeof buf) bytes = sizeof buf;
  if (getrandom(buf, bytes, 0) != (ssize_t)bytes) act_crash("presence: no randomness");
  for (size_t i = 0; i < bytes; i++) sprintf(out + 2 * i, "%02x", buf[i]);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------ requests */

/* Reserve a name for a joining socket: taken if another socket holds it
 * (unless the token is the holder's) or is joining with it right now. */
static void on_claim(presence_t *p, act_msg_t *m) {
  presence_claim_t *rq = m->data;
  rq->name[sizeof rq->name - 1] = 0;
  rq->token[sizeof rq->token - 1] = 0;
  presence_claimed_t r = {PROTO_OK};
  long held = meta_by_name(p, rq->name);
  long claimed = claim_by_name(p, rq->name);
  if (!p->loaded) {
    r.code = PROTO_UNAVAILABLE;
  } else if (held >= 0 && AT(p->metas, meta_t, held).conn_id != rq->conn_id &&
             (!rq->token[0] || strcmp(AT(p->metas, meta_t, held).token, rq->token) != 0)) {
    r.code = PROTO_NAME_TAKEN;
  } else if (claimed >= 0 && AT(p->claims, claim_t, claimed).conn_id != rq->conn_id) {
    r.code = PROTO_NAME_TAKEN;
  } else {
    drop_claims_of(p, rq->conn_id);
    claim_t *c = vec_push(&p->claims, sizeof(claim_t));
    c->conn_id = rq->conn_id;
    c->acceptor = rq->acceptor;
    c->name = strdup(rq->name);
    if (!c->name) act_crash("presence: out of memory");
    watch(p, rq->acceptor);
  }
  act_reply(m, PRESENCE_CLAIMED, &r, sizeof r);
}

static void tell_taken_over(const meta_t *old) {
  conn_notice_t n = {old->conn_id};
  act_send(old->acceptor, CONN_TAKE_OVER_NOTICE, &n, sizeof n);
}

/* The user exists now: the claim becomes a meta.  A take-over removes the
 * old holder's meta in the same window, so one diff carries both. */
static void on_join(presence_t *p, act_msg_t *m) {
  presence_join_t *rq = m->data;
  rq->name[sizeof rq->name - 1] = 0;
  drop_claims_of(p, rq->conn_id);
  long mine = meta_by_conn(p, rq->conn_id);
  if (mine >= 0) { /* a restarted session joining again: same meta */
    reply_snapshot(p, m, &AT(p->metas, meta_t, mine));
    return;
  }
  long held = meta_by_name(p, rq->name);
  if (held >= 0) {
    tell_taken_over(&AT(p->metas, meta_t, held));
    remove_meta(p, (size_t)held);
  }
  user_t *u = user_add(p, rq->user_id, rq->name);
  if (rq->created) {
    proto_user pu;
    memset(&pu, 0, sizeof pu);
    memcpy(pu.id, u->id, sizeof pu.id);
    pu.name = u->name;
    pu.online = false; /* the diff that follows brings it online */
    publish(p, proto_enc_user_created(&pu, p->users.n));
  }
  meta_t *nm = vec_push(&p->metas, sizeof(meta_t));
  nm->conn_id = rq->conn_id;
  nm->acceptor = rq->acceptor;
  memcpy(nm->user_id, rq->user_id, sizeof nm->user_id);
  nm->name = strdup(rq->name);
  if (!nm->name) act_crash("presence: out of memory");
  proto_format_time(now_us(), nm->joined_at);
  snprintf(nm->phx_ref, sizeof nm->phx_ref, "F%llx", (unsigned long long)++p->next_ref);
  random_hex(nm->token, 16);
  u = &AT(p->users, user_t, user_find(p, rq->name));
  add_meta_to(p, u);
  watch(p, rq->acceptor);
  note_change(p, &p->joins, nm);
  reply_snapshot(p, m, nm);
}

static void on_leave(presence_t *p, act_msg_t *m) {
  const presence_leave_t *rq = m->data;
  drop_claims_of(p, rq->conn_id);
  if (m->type == PRESENCE_RELEASE) return;
  long i = meta_by_conn(p, rq->conn_id);
  if (i >= 0) remove_meta(p, (size_t)i);
}

static void on_since(presence_t *p, act_msg_t *m) {
  const presence_since_t *rq = m->data;
  int64_t from = rq->version;
  int64_t oldest = p->version - LOG_SIZE + 1;
  bool ok = from >= oldest - 1 && from <= p->version;
  uint32_t n = ok ? (uint32_t)(p->version - from) : 0;
  size_t size = sizeof(presence_events_t) + n * sizeof(app_event_t);
  presence_events_t *e = calloc(1, size);
  if (!e) act_crash("presence: out of memory");
  e->ok = ok;
  e->n = n;
  for (uint32_t i = 0; i < n; i++) {
    int64_t v = from + 1 + i;
    size_t slot = (size_t)(v % LOG_SIZE);
    e->events[i] = (app_event_t){TOPIC_PRESENCE, v, ws_shared_retain(p->log[slot].frame)};
  }
  act_reply_ex(m, PRESENCE_EVENTS, e, size, presence_events_release);
  free(e);
}

static void on_down(presence_t *p, act_msg_t *m) {
  const act_down_msg_t *d = m->data;
  for (size_t i = 0; i < p->watched.n; i++)
    if (AT(p->watched, watched_t, i).mref == d->ref) vec_del(&p->watched, i--, sizeof(watched_t));
  for (size_t i = 0; i < p->metas.n; i++)
    if (AT(p->metas, meta_t, i).acceptor == d->pid) remove_meta(p, i--);
  for (size_t i = 0; i < p->claims.n; i++)
    if (AT(p->claims, claim_t, i).acceptor == d->pid) {
      free(AT(p->claims, claim_t, i).name);
      vec_del(&p->claims, i--, sizeof(claim_t));
    }
}

/* --------------------------------------------------------- loading */

static void load_users(presence_t *p) {
  p->load_ref = act_request(repo_reader(), REPO_LIST_USERS, NULL, 0, 5000);
}

static void on_users(presence_t *p, act_msg_t *m) {
  const repo_users_t *r = m->data;
  if (r->rc < 0) {
    act_send_after(RELOAD_MS, act_self(), PRESENCE_USERS_LOADED, NULL, 0);
    return;
  }
  for (uint32_t i = 0; i < r->n; i++) user_add(p, r->users[i].id, r->users[i].name);
  p->loaded = true;
  atomic_store(&g_loaded, true);
  p->dirty = true;
  app_log(LOG_INFO, "presence: %zu users loaded", p->users.n);
}

/* ----------------------------------------------------------- behaviour */

static int pr_init(void *args, void **state) {
  (void)args;
  presence_t *p = calloc(1, sizeof *p);
  if (!p) return ACT_ENOMEM;
  *state = p;
  atomic_store(&g_loaded, false); /* a restarted presence knows nothing yet */
  load_users(p);
  return ACT_OK;
}

static void pr_handle(void *state, act_msg_t *m) {
  presence_t *p = state;
  switch (m->type) {
  case PRESENCE_CLAIM: on_claim(p, m); break;
  case PRESENCE_JOIN: on_join(p, m); break;
  case PRESENCE_LEAVE:
  case PRESENCE_RELEASE: on_leave(p, m); break;
  case PRESENCE_WELCOME: /* a new socket should not hear of what its welcome already says */
    flush(p);
    reply_snapshot(p, m, NULL);
    break;
  case PRESENCE_SINCE: on_since(p, m); break;
  case PRESENCE_FLUSH: flush(p); break;
  case PRESENCE_USERS_LOADED: load_users(p); break; /* the retry timer */
  case REPO_USERS: on_users(p, m); break;
  case ACT_MSG_TIMEOUT:
    if (m->ref == p->load_ref) act_send_after(RELOAD_MS, act_self(), PRESENCE_USERS_LOADED, NULL, 0);
    break;
  case ACT_MSG_DOWN: on_down(p, m); break;
  default: break;
  }
}

static void pr_terminate(void *state, act_reason_t r) {
  (void)r;
  presence_t *p = state;
  if (!p) return;
  atomic_store(&g_loaded, false);
  for (size_t i = 0; i < p->users.n; i++) {
    user_t *u = &AT(p->users, user_t, i);
    free(u->name);
    free(u->frag[0].ptr);
    free(u->frag[1].ptr);
  }
  for (size_t i = 0; i < p->metas.n; i++) free(AT(p->metas, meta_t, i).name);
  for (size_t i = 0; i < p->claims.n; i++) free(AT(p->claims, claim_t, i).name);
  free_meta_copies(&p->joins);
  free_meta_copies(&p->leaves);
  free(p->users.v);
  free(p->metas.v);
  free(p->claims.v);
  free(p->watched.v);
  free(p->joins.v);
  free(p->leaves.v);
  for (size_t i = 0; i < LOG_SIZE; i++)
    if (p->log[i].frame) ws_shared_release(p->log[i].frame);
  free(p->users_frag.ptr);
  if (p->welcome) ws_shared_release(p->welcome);
  free(p);
}

static const act_behaviour_t behaviour = {"presence", pr_init, pr_handle, pr_terminate};
const act_behaviour_t *presence_behaviour(void) { return &behaviour; }
