/*
 * presence.c -- who is online, with Phoenix.Presence's semantics, and the
 * directory of every user (PROTOCOL.md version 2).
 *
 * A name is online while it has a meta; a meta is one joined socket (conn),
 * carrying the token that lets a reconnecting tab take its name back.
 * Entries end when what they track ends: a session's `leave`, the socket's
 * close (the endpoint tells us), or the death of the acceptor that owns the
 * socket (monitored), whichever comes first.
 *
 * Two states.  The *current* state (metas, claims) decides joins at once:
 * name_taken, take-overs.  The *published* state is what the sockets have
 * been told: the directory (every user in one of two name-ordered skip
 * lists, online and offline) and its counts move only when a diff goes out.
 * So a `users` page, a welcome and a joined carry exactly the state of the
 * last diff published (its `version`), and the session sends the page only
 * after that diff (PROTOCOL.md: a page reflects every diff sent before it
 * and none after it).
 *
 * Coalescing: changes gather for FLUSH_MS after the first one and go out as
 * one presence_diff to every socket (through pubsub), so two diffs leave
 * presence at least FLUSH_MS apart and a change waits at most FLUSH_MS; a
 * wave of N joins costs each socket one diff per window, not N.  Delivery
 * may bunch them again (a busy scheduler); the session spaces what it
 * writes to its socket.  A welcome asked while a window is open waits for
 * its flush (hold_welcome): the new socket starts after that diff instead
 * of being sent changes made before it connected.
 *
 * Flow: a window does not close while the last diff is still on its way to
 * the sessions (pubsub_presence_in_flight).  With 19,000 sockets joining, a
 * diff's fan-out is 19,000 session turns, longer than FLUSH_MS on one
 * core; closing on time regardless queued diffs faster than they left (the
 * server's RSS grew to 473 MB and its core stayed at 100% after the ramp),
 * so the window stretches to the fan-out instead, and a busy server sends
 * fewer, larger diffs.  Presence runs at high priority (main.c): a welcome,
 * claim or join does not wait behind those turns.
 *
 * Costs: a join or leave is O(1) (hash tables by conn id and by name,
 * intrusive lists of a user's metas); the move between indexes at the flush
 * is O(log n) per user whose state changed; a `users` page is O(log n + L).
 * Nothing is found by scanning metas, users or sockets, except when an
 * acceptor dies (every meta it owned must go anyway).
 *
 * Restarts (issue 8 item 12): versions carry an incarnation in their high
 * bits.  A restarted presence loads the users from the database and every
 * joined session re-tracks its meta (PRESENCE_TRACK, same phx_ref, token and
 * joined_at), silently: clients already hold those metas, so it is listed
 * online at once, with no diff, and nobody sees anyone leave; a session that
 * asks for the events after a version of the old incarnation gets every
 * event of the new one.  While the sessions re-track (milliseconds; each
 * re-tracks as soon as it sees the new presence registered), presence
 * answers nothing that depends on who is online: claims, joins, welcomes
 * and users pages wait (with the leaves behind them, in arrival order, at
 * most REBUILD_MAX_DEFERRED requests) and are answered once the rebuild is
 * over, so a name whose holder has not re-tracked yet is never granted to
 * another socket (issue 8 item 12: 34 and 46 of 150 names were, in 2 of 3
 * runs of test/protocol/rebuild.test.mjs before), and no page or count
 * shows a half-rebuilt state that no diff would correct.  The rebuild is
 * over by count, not by a quiet time: presence asks each acceptor which of
 * its joined sockets have not re-tracked yet (CONN_OWED_ASK, presence.h),
 * and waits until each of those re-tracked or left and the users are
 * loaded; REBUILD_MAX_MS only bounds a session that never answers (one
 * busy with a database request).  O(acceptors + sockets) once per restart,
 * O(1) per re-track or leave, nothing per claim.
 *
 * New users per source address: a sliding 60 s window of creation times per
 * peer (CHATTER_NEW_USERS_PER_MINUTE, 0 = no limit); a claim of a new name
 * takes a slot, a join that did not create the user gives it back, refused
 * claims take none.  Windows that emptied are dropped every minute.
 *
 * Kind: an actor (presence.h), registered "presence".
 */
#include "app.h"
#include "vec.h"
#include "presence.h"
#include "pubsub.h"
#include "repo.h"
#include "telemetry.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define REBUILD_MAX_MS 3000  /* a restarted presence stops waiting for the
                              sockets the acceptors listed (a session busy
                              with a database request re-tracks only after
                              it) this long after its start */
#define REBUILD_MAX_DEFERRED 4096 /* requests held while rebuilding (claims,
                              joins, welcomes, users pages); past it a claim
                              or join is answered unavailable, a welcome
                              retried (session.c), a page served at once */
#define FLUSH_MS 50        /* PROTOCOL.md: diffs >= 50 ms apart, no change
                              waits > 100 ms (each session also paces what
                              reaches its socket: session.c DIFF_GAP_MS) */
#define DRAIN_POLL_MS 2     /* the last diff still being fanned out: look
                              again this soon (a fan-out to 19,000 sessions
                              takes 50 to 100 ms of one core) */
#define MERGE_MAX (256 * 1024) /* a catch-up's diffs are merged into one up
                              to this many bytes (a parse and an encoding,
                              some 10 ms per MB); past it they go as they are */
#define LOG_SIZE 1024      /* events kept for restarted sessions */
#define RELOAD_MS 1000     /* retry loading users while the database is away */
#define SKIP_LEVELS 16     /* p = 1/4: enough for 4^16 users */
#define RATE_WINDOW_MS 60000
#define SWEEP_MS 60000

#define container_of(p, T, field) ((T *)((char *)(p) - offsetof(T, field)))

/* ------------------------------------------------------------ hashing */

/* An intrusive chained hash table: each item embeds an hlink_t, so insert
 * and remove allocate nothing per item; the bucket array doubles at load 1. */
typedef struct hlink { struct hlink *next; uint64_t hash; } hlink_t;
typedef struct htab { hlink_t **b; size_t nb, n; } htab_t;

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  return x ^ (x >> 33);
}

static void ht_insert(htab_t *t, hlink_t *l, uint64_t hash) {
  if (t->n >= t->nb) {
    size_t nb = t->nb ? t->nb * 2 : 64;
    hlink_t **b = calloc(nb, sizeof *b);
    if (!b) act_crash("presence: out of memory");
    for (size_t i = 0; i < t->nb; i++)
      for (hlink_t *e = t->b[i], *next; e; e = next) {
        next = e->next;
        e->next = b[e->hash & (nb - 1)];
        b[e->hash & (nb - 1)] = e;
      }
    free(t->b);
    t->b = b;
    t->nb = nb;
  }
  l->hash = hash;
  l->next = t->b[hash & (t->nb - 1)];
  t->b[hash & (t->nb - 1)] = l;
  t->n++;
}

static void ht_remove(htab_t *t, hlink_t *l) {
  for (hlink_t **pp = &t->b[l->hash & (t->nb - 1)]; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      t->n--;
      return;
    }
}

static hlink_t *ht_bucket(const htab_t *t, uint64_t hash) {
  return t->nb ? t->b[hash & (t->nb - 1)] : NULL;
}

/* ------------------------------------------------------------- records */

typedef struct meta meta_t;

typedef struct user {
  hlink_t by_name;
  char id[PROTO_UUID_LEN + 1];
  char *name;
  size_t name_len;
  meta_t *metas;             /* current metas, linked through meta->next_of_user */
  int nmetas;
  bool listed;               /* in the directory (published) */
  bool listed_online;        /* ... in the online index */
  bool dirty;                /* its state changed since the last flush */
  struct user *next_dirty;
  proto_str frag[2];         /* encoded once: [0] offline, [1] online */
  int level;
  struct user *next[];       /* skip-list links, `level` of them */
} user_t;

struct meta {
  hlink_t by_conn;
  meta_t *prev_of_user, *next_of_user;
  user_t *user;
  uint64_t conn_id;
  act_pid_t acceptor;
  char joined_at[PROTO_TIME_LEN + 1];
  char phx_ref[32];
  char token[64];
};

typedef struct claim {
  hlink_t by_conn, by_name;
  uint64_t conn_id;
  act_pid_t acceptor;
  char name[PROTO_NAME_MAX * 4 + 1];
  char peer[PRESENCE_PEER_MAX];
  uint64_t stamp;            /* != 0: took a new-user slot at this time */
} claim_t;

/* A sliding window of creation times: a ring of `limit` slots. */
typedef struct peer {
  hlink_t link;
  char addr[PRESENCE_PEER_MAX];
  uint32_t head, n;
  uint64_t stamps[];
} peer_t;

/* A change pending for the next diff: what its meta said on the wire. */
typedef struct change {
  char user_id[PROTO_UUID_LEN + 1];
  const char *name;          /* the user's name: users live as long as presence */
  char joined_at[PROTO_TIME_LEN + 1];
  char phx_ref[32];
} change_t;

typedef ACT_VEC(change_t) change_vec_t; /* runtime/vec.h */

/* A joined socket an acceptor listed, that the rebuild waits for. */
typedef struct owed { hlink_t link; uint64_t conn_id; } owed_t;

typedef struct skiplist { user_t *head[SKIP_LEVELS]; } skiplist_t;

typedef struct watched { act_pid_t pid; act_ref_t mref; } watched_t;
typedef ACT_VEC(watched_t) watched_vec_t;

typedef struct presence {
  bool loaded;
  act_ref_t load_ref;
  int64_t incarnation;
  htab_t users;              /* user_t by name */
  htab_t metas;              /* meta_t by conn id */
  htab_t claims_by_conn, claims_by_name;
  htab_t peers;              /* peer_t by address */
  skiplist_t index[2];       /* [0] offline, [1] online: published */
  size_t total_users, online_count; /* published counts */
  watched_vec_t watched;     /* acceptors monitored: one per scheduler */
  change_vec_t joins, leaves; /* pending for the next diff */
  user_t *dirty;             /* users whose state changed since the flush */
  bool flush_armed;
  bool rebuilding;           /* a restarted presence, sessions re-tracking */
  ACT_VEC(act_msg_t *) deferred; /* requests held meanwhile, in arrival order */
  ACT_VEC(act_msg_t *) welcomes; /* held until the pending window's flush */
  ACT_VEC(act_ref_t) asked;  /* CONN_OWED_ASK requests not answered yet */
  htab_t owed;               /* owed_t by conn id: listed, not yet re-tracked or left */
  uint64_t rebuild_since_ms;
  int64_t version;
  uint64_t rng;
  struct { int64_t version; ws_shared_t *frame; } log[LOG_SIZE];
  ws_shared_t *welcome;      /* rebuilt when the published counts change */
  size_t welcome_total, welcome_online;
  struct { int64_t from, to; ws_shared_t *frame; } merged; /* the last catch-up merged */
} presence_t;

static _Atomic bool g_loaded;          /* for /healthz: the users are known */
static _Atomic int64_t g_incarnation;  /* survives restarts: module static */
static _Atomic uint64_t g_next_ref;    /* phx_ref counter, unique across restarts */
bool presence_ready(void) { return atomic_load(&g_loaded); }

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Names and `after` compared by their UTF-8 bytes (PROTOCOL.md). */
static int bytes_cmp(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c) return c;
  return an < bn ? -1 : an > bn;
}

/* ---------------------------------------------------------- skip lists */

/* upd[i] := the link at level i after which key belongs (strict: after
 * every name equal to key too). */
static void sl_find(skiplist_t *l, const char *k, size_t kn, bool strict,
                    user_t **upd[SKIP_LEVELS]) {
  user_t *x = NULL;
  for (int i = SKIP_LEVELS - 1; i >= 0; i--) {
    user_t **cell = x ? &x->next[i] : &l->head[i];
    while (*cell) {
      int c = bytes_cmp((*cell)->name, (*cell)->name_len, k, kn);
      if (c > 0 || (c == 0 && !strict)) break;
      x = *cell;
      cell = &x->next[i];
    }
    upd[i] = cell;
  }
}

static void sl_insert(skiplist_t *l, user_t *u) {
  user_t **upd[SKIP_LEVELS];
  sl_find(l, u->name, u->name_len, false, upd);
  for (int i = 0; i < u->level; i++) {
    u->next[i] = *upd[i];
    *upd[i] = u;
  }
}

static void sl_remove(skiplist_t *l, user_t *u) {
  user_t **upd[SKIP_LEVELS];
  sl_find(l, u->name, u->name_len, false, upd);
  for (int i = 0; i < u->level; i++)
    if (*upd[i] == u) *upd[i] = u->next[i];
}

static int random_level(presence_t *p) {
  p->rng ^= p->rng << 13; /* xorshift64 */
  p->rng ^= p->rng >> 7;
  p->rng ^= p->rng << 17;
  uint64_t r = p->rng;
  int level = 1;
  while (level < SKIP_LEVELS && (r & 3) == 0) {
    level++;
    r >>= 2;
  }
  return level;
}

/* --------------------------------------------------------------- users */

static user_t *user_get(presence_t *p, const char *name, size_t n) {
  uint64_t h = hash_bytes(name, n);
  for (hlink_t *e = ht_bucket(&p->users, h); e; e = e->next) {
    user_t *u = container_of(e, user_t, by_name);
    if (e->hash == h && u->name_len == n && memcmp(u->name, name, n) == 0) return u;
  }
  return NULL;
}

static void mark_dirty(presence_t *p, user_t *u) {
  if (u->dirty) return;
  u->dirty = true;
  u->next_dirty = p->dirty;
  p->dirty = u;
}

static void arm_flush_after(presence_t *p, unsigned ms) {
  if (p->flush_armed) return;
  act_send_after(ms, act_self(), PRESENCE_FLUSH, NULL, 0);
  p->flush_armed = true;
}

static void arm_flush(presence_t *p) { arm_flush_after(p, FLUSH_MS); }

/* A user presence did not know: listed at the next flush (or at once when
 * it comes from the database load, which clients count from the start). */
static user_t *user_add(presence_t *p, const char *id, const char *name) {
  size_t n = strlen(name);
  user_t *u = user_get(p, name, n);
  if (u) return u;
  int level = random_level(p);
  u = calloc(1, sizeof *u + (size_t)level * sizeof(user_t *));
  if (!u) act_crash("presence: out of memory");
  u->level = level;
  snprintf(u->id, sizeof u->id, "%s", id);
  u->name = strdup(name);
  u->name_len = n;
  if (!u->name) act_crash("presence: out of memory");
  for (int online = 0; online < 2; online++) {
    proto_user pu = {.name = u->name, .online = online};
    memcpy(pu.id, u->id, sizeof pu.id);
    u->frag[online] = proto_frag_user(&pu);
    if (!u->frag[online].ptr) act_crash("presence: out of memory");
  }
  ht_insert(&p->users, &u->by_name, hash_bytes(name, n));
  return u;
}

static void user_list(presence_t *p, user_t *u, bool online) {
  sl_insert(&p->index[online], u);
  u->listed = true;
  u->listed_online = online;
  p->total_users++;
  if (online) p->online_count++;
}

/* ------------------------------------------------------------- events */

static void publish(presence_t *p, proto_str json) {
  if (!json.ptr) act_crash("presence: out of memory");
  ws_shared_t *frame = ws_shared_text(json.ptr, json.len);
  free(json.ptr);
  if (!frame) act_crash("presence: out of memory");
  p->version++;
  tm_add(TM_PRESENCE_DIFFS, 1);
  size_t slot = (size_t)(p->version % LOG_SIZE);
  if (p->log[slot].frame) ws_shared_release(p->log[slot].frame);
  p->log[slot].version = p->version;
  p->log[slot].frame = frame; /* the log keeps this reference */
  app_event_t ev = {TOPIC_PRESENCE, p->version, ws_shared_retain(frame)};
  if (act_send_ex(act_whereis(APP_NAME_PUBSUB), PUBSUB_PUBLISH, &ev, sizeof ev,
                  app_event_release) != ACT_OK)
    ws_shared_release(frame); /* pubsub is being restarted: sessions will ask
                                 for the events since, from the log */
}

static proto_meta wire_change(const change_t *c) {
  proto_meta w;
  memset(&w, 0, sizeof w);
  memcpy(w.user_id, c->user_id, sizeof w.user_id);
  w.name = c->name;
  memcpy(w.joined_at, c->joined_at, sizeof w.joined_at);
  w.phx_ref = c->phx_ref;
  return w;
}

static void answer_welcomes(presence_t *p);

/* The window closed: move every changed user to the index its metas say,
 * then publish the net change with the counts it leads to, and answer the
 * welcomes that waited for it. */
static void flush(presence_t *p) {
  p->flush_armed = false;
  if (!p->joins.n && !p->leaves.n && !p->dirty) {
    answer_welcomes(p);
    return;
  }
  if (p->rebuilding) { /* a diff now would carry the counts of a rebuild
                          half done: rebuild_tick() ends it, then flushes */
    arm_flush(p);
    return;
  }
  if (pubsub_presence_in_flight() > 0) /* see "Flow" above */
    return arm_flush_after(p, DRAIN_POLL_MS);
  for (user_t *u = p->dirty, *next; u; u = next) {
    next = u->next_dirty;
    u->dirty = false;
    u->next_dirty = NULL;
    bool online = u->nmetas > 0;
    if (!u->listed) {
      user_list(p, u, online);
    } else if (u->listed_online != online) {
      sl_remove(&p->index[u->listed_online], u);
      sl_insert(&p->index[online], u);
      u->listed_online = online;
      if (online) p->online_count++;
      else p->online_count--;
    }
  }
  p->dirty = NULL;
  proto_meta *j = calloc(p->joins.n + 1, sizeof *j), *l = calloc(p->leaves.n + 1, sizeof *l);
  if (!j || !l) act_crash("presence: out of memory");
  for (size_t i = 0; i < p->joins.n; i++) j[i] = wire_change(&p->joins.v[i]);
  for (size_t i = 0; i < p->leaves.n; i++) l[i] = wire_change(&p->leaves.v[i]);
  publish(p, proto_enc_presence_diff(j, p->joins.n, l, p->leaves.n, p->total_users,
                                     p->online_count));
  free(j);
  free(l);
  p->joins.n = 0;
  p->leaves.n = 0;
  answer_welcomes(p);
}

static void note_change(presence_t *p, change_vec_t *pending, const meta_t *m) {
  change_t *c = act_vec_push_or_crash(pending, "presence");
  memcpy(c->user_id, m->user->id, sizeof c->user_id);
  c->name = m->user->name;
  memcpy(c->joined_at, m->joined_at, sizeof c->joined_at);
  memcpy(c->phx_ref, m->phx_ref, sizeof c->phx_ref);
  mark_dirty(p, m->user);
  arm_flush(p);
}

/* ------------------------------------------------------------ snapshot */

static void reply_snapshot(presence_t *p, act_msg_t *req, const meta_t *m) {
  presence_snapshot_t s;
  memset(&s, 0, sizeof s);
  if (!p->loaded) {
    s.rc = -1;
    act_reply(req, PRESENCE_SNAPSHOT, &s, sizeof s);
    return;
  }
  s.version = p->version;
  s.total_users = p->total_users;
  s.online_count = p->online_count;
  if (m) {
    snprintf(s.token, sizeof s.token, "%s", m->token);
    snprintf(s.phx_ref, sizeof s.phx_ref, "%s", m->phx_ref);
  } else {
    if (!p->welcome || p->welcome_total != p->total_users || p->welcome_online != p->online_count) {
      proto_str w = proto_enc_welcome(p->total_users, p->online_count);
      if (!w.ptr) act_crash("presence: out of memory");
      if (p->welcome) ws_shared_release(p->welcome);
      p->welcome = ws_shared_text(w.ptr, w.len);
      free(w.ptr);
      if (!p->welcome) act_crash("presence: out of memory");
      p->welcome_total = p->total_users;
      p->welcome_online = p->online_count;
    }
    s.welcome = ws_shared_retain(p->welcome);
  }
  act_reply_ex(req, PRESENCE_SNAPSHOT, &s, sizeof s, presence_snapshot_release);
}

/* A welcome asked while a window is open waits for its flush (FLUSH_MS, or
 * longer while the last diff is still being fanned out) and carries the
 * counts after it: the socket then never gets
 * the diff of changes made before it connected.  What it buys is fewer
 * diffs in a wave.  5,000 sockets reconnecting at once (issue 6's storm,
 * bench/RESULTS.md): welcomed one by one, they were sent the leaves they
 * had caused, and their joins, slowed by the diffs being written, spread
 * over 140 windows, each a diff every returning socket is paced through
 * 50 ms apart (its joined reply waits for them): 9 s to catch up.  Held,
 * the welcomes are answered together after the leaves' flush, the joins
 * land in one or two windows, and all are back within 4 s -- though each
 * returning socket now gets all 5,000 joins in that diff.
 * Bounded by the sockets: one welcome in flight per socket. */
static void hold_welcome(presence_t *p, act_msg_t *m) {
  act_msg_t **slot = act_vec_push_or_crash(&p->welcomes, "presence");
  *slot = act_msg_keep(m);
  if (!*slot) act_crash("presence: out of memory");
}

static void answer_welcomes(presence_t *p) {
  for (size_t i = 0; i < p->welcomes.n; i++) {
    reply_snapshot(p, p->welcomes.v[i], NULL);
    act_msg_free(p->welcomes.v[i]);
  }
  act_vec_free(&p->welcomes);
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

/* --------------------------------------------------------- users pages */

static bool has_prefix(const user_t *u, const presence_users_req_t *rq) {
  return !rq->has_prefix ||
         (u->name_len >= rq->prefix_len && memcmp(u->name, rq->prefix, rq->prefix_len) == 0);
}

/* O(log n) to the first name > after and >= prefix, then O(L) copies. */
static void on_users_page(presence_t *p, act_msg_t *m) {
  presence_users_req_t *rq = m->data;
  if (rq->after_len > PROTO_AFTER_MAX) rq->after_len = PROTO_AFTER_MAX;
  if (rq->prefix_len > sizeof rq->prefix - 1) rq->prefix_len = sizeof rq->prefix - 1;
  int limit = rq->limit < 1 ? 1 : rq->limit > PROTO_USERS_MAX ? PROTO_USERS_MAX : rq->limit;
  skiplist_t *l = &p->index[rq->online ? 1 : 0];
  user_t **upd[SKIP_LEVELS];
  if (rq->has_prefix &&
      (!rq->has_after || bytes_cmp(rq->prefix, rq->prefix_len, rq->after, rq->after_len) > 0))
    sl_find(l, rq->prefix, rq->prefix_len, false, upd); /* first >= prefix */
  else if (rq->has_after)
    sl_find(l, rq->after, rq->after_len, true, upd);    /* first > after */
  else
    sl_find(l, "", 0, false, upd);
  user_t *first = *upd[0], *u = first;
  size_t len = 2;
  int n = 0;
  for (; u && n < limit && has_prefix(u, rq); u = u->next[0], n++)
    len += u->frag[rq->online ? 1 : 0].len + 1;
  bool more = u && has_prefix(u, rq);
  size_t size = sizeof(presence_page_t) + len + 1;
  presence_page_t *pg = malloc(size);
  if (!pg) act_crash("presence: out of memory");
  pg->version = p->version;
  pg->more = more;
  char *out = pg->users;
  size_t at = 0;
  out[at++] = '[';
  u = first;
  for (int i = 0; i < n; i++, u = u->next[0]) {
    const proto_str *f = &u->frag[rq->online ? 1 : 0];
    if (i) out[at++] = ',';
    memcpy(out + at, f->ptr, f->len);
    at += f->len;
  }
  out[at++] = ']';
  out[at] = 0;
  pg->len = at;
  act_reply(m, PRESENCE_PAGE, pg, sizeof(presence_page_t) + at + 1);
  free(pg);
}

/* -------------------------------------------------------------- metas */

static meta_t *meta_by_conn(presence_t *p, uint64_t conn_id) {
  uint64_t h = hash_u64(conn_id);
  for (hlink_t *e = ht_bucket(&p->metas, h); e; e = e->next) {
    meta_t *m = container_of(e, meta_t, by_conn);
    if (m->conn_id == conn_id) return m;
  }
  return NULL;
}

static meta_t *meta_add(presence_t *p, user_t *u, uint64_t conn_id, act_pid_t acceptor) {
  meta_t *m = calloc(1, sizeof *m);
  if (!m) act_crash("presence: out of memory");
  m->user = u;
  m->conn_id = conn_id;
  m->acceptor = acceptor;
  m->next_of_user = u->metas;
  if (u->metas) u->metas->prev_of_user = m;
  u->metas = m;
  u->nmetas++;
  ht_insert(&p->metas, &m->by_conn, hash_u64(conn_id));
  return m;
}

static void meta_remove(presence_t *p, meta_t *m, bool announce) {
  user_t *u = m->user;
  if (announce) note_change(p, &p->leaves, m);
  if (m->prev_of_user) m->prev_of_user->next_of_user = m->next_of_user;
  else u->metas = m->next_of_user;
  if (m->next_of_user) m->next_of_user->prev_of_user = m->prev_of_user;
  u->nmetas--;
  mark_dirty(p, u);
  arm_flush(p);
  ht_remove(&p->metas, &m->by_conn);
  free(m);
}

/* -------------------------------------------------------------- claims */

static claim_t *claim_by_conn(presence_t *p, uint64_t conn_id) {
  uint64_t h = hash_u64(conn_id);
  for (hlink_t *e = ht_bucket(&p->claims_by_conn, h); e; e = e->next) {
    claim_t *c = container_of(e, claim_t, by_conn);
    if (c->conn_id == conn_id) return c;
  }
  return NULL;
}

static claim_t *claim_by_name(presence_t *p, const char *name) {
  uint64_t h = hash_bytes(name, strlen(name));
  for (hlink_t *e = ht_bucket(&p->claims_by_name, h); e; e = e->next) {
    claim_t *c = container_of(e, claim_t, by_name);
    if (e->hash == h && strcmp(c->name, name) == 0) return c;
  }
  return NULL;
}

/* ---------------------------------------------- new users per address */

static peer_t *peer_get(presence_t *p, const char *addr, bool create) {
  uint64_t h = hash_bytes(addr, strlen(addr));
  for (hlink_t *e = ht_bucket(&p->peers, h); e; e = e->next) {
    peer_t *pe = container_of(e, peer_t, link);
    if (e->hash == h && strcmp(pe->addr, addr) == 0) return pe;
  }
  if (!create) return NULL;
  int limit = app_config()->new_users_per_minute;
  peer_t *pe = calloc(1, sizeof *pe + (size_t)limit * sizeof(uint64_t));
  if (!pe) act_crash("presence: out of memory");
  snprintf(pe->addr, sizeof pe->addr, "%s", addr);
  ht_insert(&p->peers, &pe->link, h);
  return pe;
}

static void peer_expire(peer_t *pe, uint64_t now, uint32_t cap) {
  while (pe->n && pe->stamps[pe->head] + RATE_WINDOW_MS <= now) {
    pe->head = (pe->head + 1) % cap;
    pe->n--;
  }
}

/* A slot for a new user, or false: the address made `limit` in 60 s. */
static bool peer_take(presence_t *p, const char *addr, uint64_t now) {
  int limit = app_config()->new_users_per_minute;
  if (limit <= 0) return true;
  peer_t *pe = peer_get(p, addr, true);
  peer_expire(pe, now, (uint32_t)limit);
  if (pe->n >= (uint32_t)limit) return false;
  pe->stamps[(pe->head + pe->n) % (uint32_t)limit] = now;
  pe->n++;
  return true;
}

/* Give back a slot (the join failed or did not create the user): the
 * window's times are in order, so drop the one equal to stamp. */
static void peer_give_back(presence_t *p, const char *addr, uint64_t stamp) {
  int limit = app_config()->new_users_per_minute;
  peer_t *pe = limit > 0 ? peer_get(p, addr, false) : NULL;
  if (!pe) return;
  uint32_t cap = (uint32_t)limit;
  for (uint32_t i = pe->n; i-- > 0;) {
    if (pe->stamps[(pe->head + i) % cap] != stamp) continue;
    for (uint32_t k = i; k + 1 < pe->n; k++)
      pe->stamps[(pe->head + k) % cap] = pe->stamps[(pe->head + k + 1) % cap];
    pe->n--;
    return;
  }
}

static void sweep_peers(presence_t *p) {
  int limit = app_config()->new_users_per_minute;
  uint64_t now = now_ms();
  for (size_t i = 0; i < p->peers.nb; i++)
    for (hlink_t *e = p->peers.b[i], *next; e; e = next) {
      next = e->next;
      peer_t *pe = container_of(e, peer_t, link);
      if (limit > 0) peer_expire(pe, now, (uint32_t)limit);
      if (pe->n == 0) {
        ht_remove(&p->peers, e);
        free(pe);
      }
    }
  act_send_after(SWEEP_MS, act_self(), PRESENCE_SWEEP, NULL, 0);
}

static void claim_drop(presence_t *p, claim_t *c, bool give_back) {
  if (give_back && c->stamp) peer_give_back(p, c->peer, c->stamp);
  ht_remove(&p->claims_by_conn, &c->by_conn);
  ht_remove(&p->claims_by_name, &c->by_name);
  free(c);
}

/* --------------------------------------------------------------- misc */

static void watch(presence_t *p, act_pid_t acceptor) {
  for (size_t i = 0; i < p->watched.n; i++) /* one acceptor per scheduler */
    if (p->watched.v[i].pid == acceptor) return;
  watched_t *w = act_vec_push_or_crash(&p->watched, "presence");
  w->pid = acceptor;
  w->mref = act_monitor(acceptor);
}

static void random_hex(char *out, size_t bytes) {
  unsigned char buf[32];
  if (bytes > sizeof buf) bytes = sizeof buf;
  if (getrandom(buf, bytes, 0) != (ssize_t)bytes) act_crash("presence: no randomness");
  for (size_t i = 0; i < bytes; i++) sprintf(out + 2 * i, "%02x", buf[i]);
}

/* phx_ref = hex(joined_at in us) "." hex(counter): unique, and it carries
 * joined_at, so a session can re-track the exact meta after a restart. */
static void new_phx_ref(meta_t *m) {
  int64_t us = now_us();
  proto_format_time(us, m->joined_at);
  snprintf(m->phx_ref, sizeof m->phx_ref, "%llx.%llx", (unsigned long long)us,
           (unsigned long long)atomic_fetch_add(&g_next_ref, 1) + 1);
}

static void joined_at_of(const char *phx_ref, char out[PROTO_TIME_LEN + 1]) {
  proto_format_time((int64_t)strtoull(phx_ref, NULL, 16), out);
}

/* ------------------------------------------------------------- rebuild */

/* A listed socket re-tracked or left: one fewer to wait for.  O(1). */
static void owed_settle(presence_t *p, uint64_t conn_id) {
  if (!p->rebuilding) return;
  uint64_t h = hash_u64(conn_id);
  for (hlink_t *e = ht_bucket(&p->owed, h); e; e = e->next) {
    owed_t *o = container_of(e, owed_t, link);
    if (o->conn_id == conn_id) {
      ht_remove(&p->owed, e);
      free(o);
      return;
    }
  }
}

static void free_owed(presence_t *p) {
  for (size_t i = 0; i < p->owed.nb; i++)
    for (hlink_t *e = p->owed.b[i], *next; e; e = next) {
      next = e->next;
      free(container_of(e, owed_t, link));
    }
  free(p->owed.b);
  memset(&p->owed, 0, sizeof p->owed);
}

/* Ask every acceptor which joined sockets to wait for: O(acceptors). */
static void ask_acceptors(presence_t *p) {
  conn_owed_ask_t q = {p->incarnation};
  for (int i = 0; i < act_scheduler_count(); i++) {
    char name[24];
    snprintf(name, sizeof name, "acceptor.%d", i & 0xff); /* main.c's names */
    act_pid_t a = act_whereis(name);
    if (!a) continue; /* no endpoint yet (a whole tree restarting): no sockets */
    act_ref_t ref = act_request(a, CONN_OWED_ASK, &q, sizeof q, REBUILD_MAX_MS);
    if (ref) *act_vec_push_or_crash(&p->asked, "presence") = ref;
  }
}

/* An acceptor's list (or, m->type ACT_MSG_TIMEOUT, its death or silence).
 * A listed socket that re-tracked already is not waited for: by the
 * ordering above none can have, but it costs one look-up. */
static bool on_owed(presence_t *p, act_msg_t *m) {
  size_t i = 0;
  while (i < p->asked.n && p->asked.v[i] != m->ref) i++;
  if (i == p->asked.n) return false;
  p->asked.v[i] = p->asked.v[--p->asked.n];
  if (m->type != CONN_OWED || !p->rebuilding) return true;
  const conn_owed_t *r = m->data;
  for (uint32_t k = 0; k < r->n; k++) {
    if (meta_by_conn(p, r->conn_ids[k])) continue;
    owed_t *o = calloc(1, sizeof *o);
    if (!o) act_crash("presence: out of memory");
    o->conn_id = r->conn_ids[k];
    ht_insert(&p->owed, &o->link, hash_u64(o->conn_id));
  }
  return true;
}

/* ------------------------------------------------------------ requests */

/* Reserve a name for a joining socket: taken if another socket holds it
 * (unless the token is the holder's) or is joining with it right now;
 * rate_limited if it is new and the address made too many users. */
static void on_claim(presence_t *p, act_msg_t *m) {
  presence_claim_t *rq = m->data;
  rq->name[sizeof rq->name - 1] = 0;
  rq->token[sizeof rq->token - 1] = 0;
  rq->peer[sizeof rq->peer - 1] = 0;
  presence_claimed_t r = {PROTO_OK};
  user_t *u = user_get(p, rq->name, strlen(rq->name));
  claim_t *other = claim_by_name(p, rq->name);
  meta_t *held = NULL;
  if (u)
    for (meta_t *x = u->metas; x; x = x->next_of_user)
      if (x->conn_id != rq->conn_id) held = x;
  uint64_t now = now_ms();
  /* PROTOCOL.md precedence: name_taken (known from the metas even before
     the users are loaded), then rate_limited, then unavailable -- except
     that whether a name is new is known only once they are loaded */
  if (held && (!rq->token[0] || strcmp(held->token, rq->token) != 0)) {
    r.code = PROTO_NAME_TAKEN;
  } else if (other && other->conn_id != rq->conn_id) {
    r.code = PROTO_NAME_TAKEN;
  } else if (!p->loaded) {
    r.code = PROTO_UNAVAILABLE;
  } else {
    claim_t *mine = claim_by_conn(p, rq->conn_id);
    if (mine) claim_drop(p, mine, true);
    bool fresh = !u;
    if (fresh && !peer_take(p, rq->peer, now)) {
      r.code = PROTO_RATE_LIMITED;
    } else {
      claim_t *c = calloc(1, sizeof *c);
      if (!c) act_crash("presence: out of memory");
      c->conn_id = rq->conn_id;
      c->acceptor = rq->acceptor;
      snprintf(c->name, sizeof c->name, "%s", rq->name);
      snprintf(c->peer, sizeof c->peer, "%s", rq->peer);
      c->stamp = fresh && app_config()->new_users_per_minute > 0 ? now : 0;
      ht_insert(&p->claims_by_conn, &c->by_conn, hash_u64(c->conn_id));
      ht_insert(&p->claims_by_name, &c->by_name, hash_bytes(c->name, strlen(c->name)));
      watch(p, rq->acceptor);
      /* A returning user: its id is known (every user is loaded at start
       * and added as it is created), so the session skips the repo's
       * upsert -- a write and a commit per join on the one writer
       * connection, which a storm of 5,000 reconnects queued past the
       * query deadline (measured: 2,106 of 5,000 back, 919 unavailable) */
      if (u) memcpy(r.user_id, u->id, sizeof r.user_id);
    }
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
  claim_t *c = claim_by_conn(p, rq->conn_id);
  bool claimed = c != NULL;
  if (c) claim_drop(p, c, !rq->created);
  meta_t *mine = meta_by_conn(p, rq->conn_id);
  if (mine) { /* a restarted session joining again: same meta */
    reply_snapshot(p, m, mine);
    return;
  }
  if (!claimed) { /* its claim died with an earlier presence: the name was never
               reserved here, and joining now could take it from a holder */
    presence_snapshot_t snap;
    memset(&snap, 0, sizeof snap);
    snap.rc = -1; /* unavailable: the client joins again */
    act_reply(m, PRESENCE_SNAPSHOT, &snap, sizeof snap);
    return;
  }
  user_t *u = user_add(p, rq->user_id, rq->name);
  for (meta_t *x = u->metas, *next; x; x = next) {
    next = x->next_of_user;
    tell_taken_over(x);
    meta_remove(p, x, true);
  }
  meta_t *nm = meta_add(p, u, rq->conn_id, rq->acceptor);
  new_phx_ref(nm);
  random_hex(nm->token, 16);
  watch(p, rq->acceptor);
  note_change(p, &p->joins, nm);
  reply_snapshot(p, m, nm);
}

/* A joined session re-tracks itself after a presence restart: the same
 * meta, silently (its clients hold it already). */
static void on_track(presence_t *p, act_msg_t *m) {
  presence_track_t *rq = m->data;
  rq->name[sizeof rq->name - 1] = 0;
  rq->token[sizeof rq->token - 1] = 0;
  rq->phx_ref[sizeof rq->phx_ref - 1] = 0;
  rq->user_id[sizeof rq->user_id - 1] = 0;
  presence_tracked_t r = {PROTO_OK};
  owed_settle(p, rq->conn_id);
  if (!meta_by_conn(p, rq->conn_id)) {
    user_t *u = user_add(p, rq->user_id, rq->name);
    if (u->metas) { /* someone joined with the name meanwhile: they keep it */
      r.code = PROTO_TAKEN_OVER;
    } else {
      meta_t *nm = meta_add(p, u, rq->conn_id, rq->acceptor);
      snprintf(nm->phx_ref, sizeof nm->phx_ref, "%s", rq->phx_ref);
      snprintf(nm->token, sizeof nm->token, "%s", rq->token);
      joined_at_of(nm->phx_ref, nm->joined_at);
      watch(p, rq->acceptor);
      /* listed online at once and without a diff: the clients hold this
         meta already, and a diff now would carry the counts of a rebuild
         half done -- unless its join may never have been published */
      if (rq->announce) {
        note_change(p, &p->joins, nm);
      } else if (!u->listed) {
        user_list(p, u, true);
      } else if (!u->listed_online) {
        sl_remove(&p->index[0], u);
        sl_insert(&p->index[1], u);
        u->listed_online = true;
        p->online_count++;
      }
    }
  }
  act_reply(m, PRESENCE_TRACKED, &r, sizeof r);
}

static void on_leave(presence_t *p, act_msg_t *m) {
  const presence_leave_t *rq = m->data;
  claim_t *c = claim_by_conn(p, rq->conn_id);
  if (c) claim_drop(p, c, true);
  if (m->type == PRESENCE_RELEASE) return;
  meta_t *mt = meta_by_conn(p, rq->conn_id);
  if (mt) meta_remove(p, mt, true);
}

/* The diffs after `from` as one (proto_merge_presence_diffs), NULL past
 * MERGE_MAX or out of memory.  Kept for the next session that restarted at
 * the same version (a chaos wave, a pubsub restart: all at once). */
static ws_shared_t *merged_since(presence_t *p, int64_t from) {
  if (p->merged.frame && p->merged.from == from && p->merged.to == p->version)
    return ws_shared_retain(p->merged.frame);
  size_t n = (size_t)(p->version - from), bytes = 0;
  proto_str *diffs = calloc(n, sizeof *diffs);
  if (!diffs) return NULL;
  for (size_t i = 0; i < n; i++) {
    ws_shared_t *f = p->log[(size_t)(from + 1 + (int64_t)i) % LOG_SIZE].frame;
    if (f) diffs[i].ptr = (char *)ws_shared_payload(f, &diffs[i].len);
    bytes += diffs[i].len;
    if (!f || bytes > MERGE_MAX) { /* the diffs go as they are */
      free(diffs);
      return NULL;
    }
  }
  proto_str one = proto_merge_presence_diffs(diffs, n);
  free(diffs);
  ws_shared_t *frame = one.ptr ? ws_shared_text(one.ptr, one.len) : NULL;
  free(one.ptr);
  if (!frame) return NULL;
  if (p->merged.frame) ws_shared_release(p->merged.frame);
  p->merged.from = from;
  p->merged.to = p->version;
  p->merged.frame = frame;
  return ws_shared_retain(frame);
}

/* A restarted session's catch-up: the diffs its socket missed, as one diff
 * when there are several.  Sent one by one, 50 ms apart (its pacer), they
 * kept a socket k x 50 ms behind; under CHATTER_CHAOS a session restarted
 * again before it had written them, and fell further behind with every
 * restart. */
static void on_since(presence_t *p, act_msg_t *m) {
  const presence_since_t *rq = m->data;
  int64_t from = rq->version;
  int64_t base = p->incarnation << PRESENCE_INCARNATION_SHIFT;
  if (from < base) from = base; /* an earlier incarnation: all of this one */
  int64_t oldest = p->version - LOG_SIZE + 1;
  bool ok = from >= oldest - 1 && from <= p->version;
  uint32_t n = ok ? (uint32_t)(p->version - from) : 0;
  ws_shared_t *one = n > 1 ? merged_since(p, from) : NULL;
  size_t size = sizeof(presence_events_t) + (one ? 1 : n) * sizeof(app_event_t);
  presence_events_t *e = calloc(1, size);
  if (!e) act_crash("presence: out of memory");
  e->ok = ok;
  e->version = p->version;
  e->n = one ? 1 : n;
  if (one) {
    tm_add(TM_CATCHUPS_MERGED, 1);
    e->events[0] = (app_event_t){TOPIC_PRESENCE, p->version, one};
  } else {
    for (uint32_t i = 0; i < n; i++) {
      int64_t v = from + 1 + i;
      e->events[i] = (app_event_t){TOPIC_PRESENCE, v,
                                   ws_shared_retain(p->log[(size_t)(v % LOG_SIZE)].frame)};
    }
  }
  act_reply_ex(m, PRESENCE_EVENTS, e, size, presence_events_release);
  free(e);
}

/* An acceptor died with its sockets: every meta and claim it owned goes
 * (a scan, but only on this rare event). */
static void on_down(presence_t *p, act_msg_t *m) {
  const act_down_msg_t *d = m->data;
  for (size_t i = 0; i < p->watched.n; i++)
    if (p->watched.v[i].mref == d->ref) {
      p->watched.v[i] = p->watched.v[p->watched.n - 1];
      p->watched.n--;
      break;
    }
  for (size_t i = 0; i < p->metas.nb; i++)
    for (hlink_t *e = p->metas.b[i], *next; e; e = next) {
      next = e->next;
      meta_t *mt = container_of(e, meta_t, by_conn);
      if (mt->acceptor == d->pid) meta_remove(p, mt, true);
    }
  for (size_t i = 0; i < p->claims_by_conn.nb; i++)
    for (hlink_t *e = p->claims_by_conn.b[i], *next; e; e = next) {
      next = e->next;
      claim_t *c = container_of(e, claim_t, by_conn);
      if (c->acceptor == d->pid) claim_drop(p, c, true);
    }
}

/* --------------------------------------------------------- loading */

static void load_users(presence_t *p) {
  p->load_ref = act_request(repo_reader(), REPO_LIST_USERS, NULL, 0, 5000);
}

static void on_users_loaded(presence_t *p, act_msg_t *m) {
  const repo_users_t *r = m->data;
  if (r->rc < 0) {
    act_send_after(RELOAD_MS, act_self(), PRESENCE_USERS_LOADED, NULL, 0);
    return;
  }
  for (uint32_t i = 0; i < r->n; i++) {
    user_t *u = user_add(p, r->users[i].id, r->users[i].name);
    if (!u->listed && !u->dirty) user_list(p, u, false); /* re-tracked ones wait for the flush */
  }
  p->loaded = true;
  atomic_store(&g_loaded, true);
  app_log(LOG_INFO, "presence: %zu users loaded (incarnation %lld)", p->users.n,
          (long long)p->incarnation);
}

/* ----------------------------------------------------------- behaviour */

static int pr_init(void *args, void **state) {
  (void)args;
  presence_t *p = calloc(1, sizeof *p);
  if (!p) return ACT_ENOMEM;
  *state = p;
  p->incarnation = atomic_fetch_add(&g_incarnation, 1) + 1;
  p->version = p->incarnation << PRESENCE_INCARNATION_SHIFT;
  p->rebuilding = p->incarnation > 1; /* a restart: see flush() */
  p->rebuild_since_ms = now_ms();
  if (getrandom(&p->rng, sizeof p->rng, 0) != sizeof p->rng || !p->rng) p->rng = 88172645463325252ull;
  atomic_store(&g_loaded, false); /* a restarted presence knows nothing yet */
  load_users(p);
  act_send_after(SWEEP_MS, act_self(), PRESENCE_SWEEP, NULL, 0);
  if (p->rebuilding) {
    ask_acceptors(p);
    act_send_after(REBUILD_MAX_MS, act_self(), PRESENCE_REBUILD_TICK, NULL, 0);
  }
  return ACT_OK;
}

/* The requests whose answer depends on who is online (a claim, a join's
 * snapshot, a welcome's counts, a users page), and the leaves that must stay
 * in order behind them. */
static bool depends_on_rebuild(int type) {
  return type == PRESENCE_CLAIM || type == PRESENCE_JOIN || type == PRESENCE_WELCOME ||
         type == PRESENCE_USERS || type == PRESENCE_LEAVE || type == PRESENCE_RELEASE;
}

/* true: m was kept (a welcome held for the flush), not to be freed by a
 * caller that owns it (rebuild_check's deferred requests). */
static bool serve(presence_t *p, act_msg_t *m) {
  switch (m->type) {
  case PRESENCE_CLAIM: on_claim(p, m); break;
  case PRESENCE_JOIN: on_join(p, m); break;
  case PRESENCE_LEAVE:
  case PRESENCE_RELEASE: on_leave(p, m); break;
  case PRESENCE_WELCOME:
    if (p->flush_armed && p->loaded) {
      hold_welcome(p, m);
      return true;
    }
    reply_snapshot(p, m, NULL);
    break;
  case PRESENCE_USERS: on_users_page(p, m); break;
  default: break;
  }
  return false;
}

/* While a restarted presence is rebuilt, a claim for a name whose holder
 * has not re-tracked yet would be granted (two sockets, one name), and a
 * welcome, joined or users page would show that holder offline with no
 * diff to follow (PROTOCOL.md's consistency rule).  So they wait, in
 * arrival order, with the leaves behind them (a leave served before its
 * socket's deferred claim would leave that claim holding the name for
 * ever).  Leaves are not refused: one per socket at most, so the sockets
 * bound them.  Past REBUILD_MAX_DEFERRED requests: refused, see there.
 * true: kept or answered. */
static bool defer(presence_t *p, act_msg_t *m) {
  bool leave = m->type == PRESENCE_LEAVE || m->type == PRESENCE_RELEASE;
  if (leave || p->deferred.n < REBUILD_MAX_DEFERRED) {
    act_msg_t **slot = act_vec_push_or_crash(&p->deferred, "presence");
    *slot = act_msg_keep(m);
    if (!*slot) act_crash("presence: out of memory");
    return true;
  }
  if (m->type == PRESENCE_CLAIM) {
    presence_claimed_t r = {PROTO_UNAVAILABLE, ""};
    act_reply(m, PRESENCE_CLAIMED, &r, sizeof r);
    return true;
  }
  if (m->type == PRESENCE_JOIN || m->type == PRESENCE_WELCOME) {
    presence_snapshot_t snap; /* rc < 0: the join fails unavailable, the
                                 welcome is asked again (session.c) */
    memset(&snap, 0, sizeof snap);
    snap.rc = -1;
    act_reply(m, PRESENCE_SNAPSHOT, &snap, sizeof snap);
    return true;
  }
  return false; /* a users page is never unavailable (PROTOCOL.md): now */
}

/* Is the rebuild over?  Every acceptor answered, every socket it listed
 * re-tracked or left, and the users are loaded -- or REBUILD_MAX_MS has
 * passed.  Then answer what waited, in order, and publish. */
static void rebuild_check(presence_t *p) {
  if (!p->rebuilding) return;
  uint64_t now = now_ms();
  if (now - p->rebuild_since_ms < REBUILD_MAX_MS &&
      (!p->loaded || p->asked.n || p->owed.n))
    return;
  p->rebuilding = false;
  app_log(LOG_INFO, "presence: rebuilt in %llu ms: %zu metas, %zu requests held, %zu sockets "
          "not re-tracked, %zu acceptors silent", (unsigned long long)(now - p->rebuild_since_ms),
          p->metas.n, p->deferred.n, p->owed.n, p->asked.n);
  free_owed(p);
  for (size_t i = 0; i < p->deferred.n; i++)
    if (!serve(p, p->deferred.v[i])) act_msg_free(p->deferred.v[i]);
  act_vec_free(&p->deferred);
  if (p->joins.n || p->leaves.n || p->dirty) arm_flush(p);
}

/* The bound's timer: REBUILD_MAX_MS after the start. */
static void rebuild_tick(presence_t *p) {
  rebuild_check(p);
}

static void pr_handle(void *state, act_msg_t *m) {
  presence_t *p = state;
  if (depends_on_rebuild(m->type)) {
    if (m->type == PRESENCE_LEAVE) { /* a listed socket closed or left */
      owed_settle(p, ((const presence_leave_t *)m->data)->conn_id);
      rebuild_check(p);
    }
    if (!p->rebuilding || !defer(p, m)) serve(p, m);
    return;
  }
  switch (m->type) {
  case PRESENCE_TRACK:
    on_track(p, m);
    rebuild_check(p);
    break;
  case CONN_OWED:
    if (on_owed(p, m)) rebuild_check(p);
    break;
  case PRESENCE_SINCE: on_since(p, m); break;
  case PRESENCE_FLUSH: flush(p); break;
  case PRESENCE_REBUILD_TICK: rebuild_tick(p); break;
  case PRESENCE_SWEEP: sweep_peers(p); break;
  case PRESENCE_USERS_LOADED: load_users(p); break; /* the retry timer */
  case REPO_USERS:
    on_users_loaded(p, m);
    rebuild_check(p);
    break;
  case ACT_MSG_TIMEOUT:
    if (m->ref == p->load_ref) act_send_after(RELOAD_MS, act_self(), PRESENCE_USERS_LOADED, NULL, 0);
    else if (on_owed(p, m)) rebuild_check(p);
    break;
  case ACT_MSG_DOWN: on_down(p, m); break;
  default: break;
  }
}

static void free_table(htab_t *t, size_t off, void (*each)(void *)) {
  for (size_t i = 0; i < t->nb; i++)
    for (hlink_t *e = t->b[i], *next; e; e = next) {
      next = e->next;
      each((char *)e - off);
    }
  free(t->b);
}

static void free_user(void *x) {
  user_t *u = x;
  free(u->name);
  free(u->frag[0].ptr);
  free(u->frag[1].ptr);
  free(u);
}

static void pr_terminate(void *state, act_reason_t r) {
  (void)r;
  presence_t *p = state;
  if (!p) return;
  atomic_store(&g_loaded, false);
  free_table(&p->metas, offsetof(meta_t, by_conn), free);
  free_table(&p->claims_by_conn, offsetof(claim_t, by_conn), free);
  free(p->claims_by_name.b);
  free_table(&p->peers, offsetof(peer_t, link), free);
  free_table(&p->users, offsetof(user_t, by_name), free_user);
  act_vec_free(&p->watched);
  for (size_t i = 0; i < p->deferred.n; i++) act_msg_free(p->deferred.v[i]);
  act_vec_free(&p->deferred);
  for (size_t i = 0; i < p->welcomes.n; i++) act_msg_free(p->welcomes.v[i]);
  act_vec_free(&p->welcomes);
  act_vec_free(&p->asked);
  free_owed(p);
  act_vec_free(&p->joins);
  act_vec_free(&p->leaves);
  for (size_t i = 0; i < LOG_SIZE; i++)
    if (p->log[i].frame) ws_shared_release(p->log[i].frame);
  if (p->welcome) ws_shared_release(p->welcome);
  if (p->merged.frame) ws_shared_release(p->merged.frame);
  free(p);
}

static const act_behaviour_t behaviour = {"presence", pr_init, pr_handle, pr_terminate};
const act_behaviour_t *presence_behaviour(void) { return &behaviour; }
