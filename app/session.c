/*
 * session.c -- one actor per WebSocket: PROTOCOL.md's home and chat states.
 *
 * The socket (endpoint.c's conn) hands the session one request at a time;
 * the session answers it, possibly after asking presence, the repo or
 * pubsub, and then takes the next one, so replies go out in request order.
 * Pushes (committed messages, presence diffs) come from pubsub as shared
 * frames and go to the socket as they are, unless the session is in the
 * middle of something that must reach the client first (the welcome, the
 * joined snapshot, a catch-up), in which case they wait in a bounded buffer.
 *
 * Crash and restart.  What must survive lives in the conn (conn_state_t).
 * A new session subscribes again, asks presence for the events after the
 * last version the socket saw and the repo for the messages after the last
 * seq it saw, and only then takes requests; the request a crashed session
 * was handling is delivered again.  Subscribing before reading is what
 * makes this exact: anything committed after the read arrives as a push,
 * anything before it is in the read, and duplicates are dropped by seq and
 * version.
 *
 * A users page and the joined reply carry presence's published state as of
 * some diff version V; they go to the client only once every diff up to V
 * has (the "sync" step), and diffs after V wait behind them, so a client that
 * applies later diffs to what it read has the true state (PROTOCOL.md).
 *
 * When pubsub or presence dies (issue 8 item 13), the session does not
 * crash: it starts over in place, as a restarted session would (re-subscribe,
 * events since, re-track its meta in a restarted presence, catch up), once
 * any database request in flight has been answered; a request that waited
 * on the dead actor is delivered again.
 *
 * The latest PROTO_HISTORY_MAX messages that `joined` carries are shared by
 * every session (one copy per insert, not one read and encoding per join):
 * valid while no message newer than its last has been published.
 *
 * CHATTER_CHAOS=p: with probability p the handler crashes when a request or
 * a push arrives while no database request is in flight -- before acting
 * on it, and each request at most once (its redelivery is spared).  Replies
 * of the repo are never crashed on: a crash there could not tell whether a
 * message had been committed.
 *
 * Kind: an actor (session.h says what it is told), one per WebSocket.
 */
#include "act_debug.h"
#include "endpoint.h"
#include "vec.h"
#include "presence.h"
#include "pubsub.h"
#include "repo.h"
#include "session.h"
#include "telemetry.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BUFFERED 4096        /* pushes held while the client must wait */
#define REPO_TIMEOUT_MS 15000
#define INSERT_TIMEOUT_MS 30000
#define RETRY_MS 1000            /* catch-up retry while the database is away */
#define SERVICE_WAIT_MS 100      /* pubsub or presence being restarted */
#define WELCOME_RETRY_MS 20      /* a restarted presence loads in a few ms ... */
#define WELCOME_RETRIES 250      /* ... so 5 s of asking is ample */
#define RATE_BURST 10.0          /* PROTOCOL.md: burst of 10 sends ... */
#define RATE_PER_SEC 5.0         /* ... and 5 a second sustained */
#define FIND_TIMEOUT_MS 5000     /* client_id look-up of a refused send */
#define DIFFQ_INLINE 2           /* diffs paced without an allocation (during a
                                    join ramp a socket gets one every ~50 ms: a
                                    malloc and free each, per socket, before) */
#define DIFF_GAP_MS 50           /* PROTOCOL.md: two diffs to one socket are at
                                    least 50 ms apart: from when the last one
                                    was written (conn_state's diff_at_ms) */

typedef enum {
  PH_WAITING,         /* a timer's SESSION_START begins: pubsub or presence
                         is being restarted, or CHATTER_CHAOS_RESTART_MS */
  PH_START_PRESENCE,  /* subscribing to presence events */
  PH_START_SNAPSHOT,  /* waiting for the welcome or the events since */
  PH_START_TRACK,     /* re-tracking our meta in a restarted presence */
  PH_START_WELCOME_WAIT, /* presence was loading: the welcome asked again soon */
  PH_START_LOBBY,     /* re-subscribing to the lobby after a restart */
  PH_START_CATCHUP,   /* catching up after a restart */
  PH_LIVE,            /* requests flow */
} phase_t;

typedef enum {
  RQ_NONE,
  RQ_CLAIM, RQ_GET_USER, RQ_PRESENCE_JOIN, RQ_SUB_LOBBY, RQ_LATEST, /* join */
  RQ_INSERT, RQ_FIND_CID, RQ_HISTORY,
  RQ_USERS,                    /* waiting for presence's page */
  RQ_SYNC                      /* a reply waits for the diffs before it */
} step_t;

typedef struct session {
  uint64_t conn_id;
  phase_t phase;
  uint32_t welcome_tries; /* a presence loading after its restart: retried */
  step_t step;            /* what the current request waits for */
  act_ref_t wait;         /* the act_request ref of that wait */
  char *ref;              /* the current request's ref, to echo */
  bool buffering;         /* pushes wait in buf */
  ACT_VEC(app_event_t) buf; /* runtime/vec.h */
  /* join in progress */
  bool joining;          /* the name and user id under way are kept in the
                             conn's state (meaningful once joined): 166 bytes
                             fewer per idle session than a copy here */
  act_msg_t *snapshot;    /* PRESENCE_SNAPSHOT kept until joined is sent */
  act_ref_t mon_pubsub, mon_presence;
  bool recover;           /* pubsub or presence died: start over in place */
  proto_code refused;     /* RQ_FIND_CID: the answer if the CID is unknown */
  /* RQ_SYNC: a reply held until the socket has every diff up to held_version */
  proto_str held;
  int64_t held_version;
  bool held_is_join;      /* sending it completes a join */
  /* the pacer: diffs waiting for DIFF_GAP_MS since the last one written */
  app_event_t *diffq;     /* NULL: diffq_inline; the heap past DIFFQ_INLINE */
  size_t ndiffq, capdiffq;
  app_event_t diffq_inline[DIFFQ_INLINE];
  int64_t diffq_last;     /* version of the last diff queued */
  bool pacer_armed;
  int64_t sub_epoch;      /* pubsub_epoch() when the lobby subscription was acked */
  int64_t join_version;   /* presence's version when this socket joined (0:
                             unknown, e.g. after a crash of the session) */
  int64_t held_last_seq;  /* ... with this last seq */
} session_t;

static void finish_request(session_t *s, conn_t *c);
static void restart_in_place(session_t *s, conn_t *c);
static void go_live(session_t *s, conn_t *c);
static void begin(session_t *s);

/* ---------------------------------------------------------- helpers */

static conn_t *my_conn(session_t *s) {
  conn_t *c = conn_get(s->conn_id);
  if (!c) act_stop(act_reason(ACT_NORMAL));
  return c;
}

static void await(session_t *s, step_t step, act_pid_t to, int type, const void *data,
                  size_t size, int timeout_ms) {
  s->step = step;
  s->wait = act_request(to, type, data, size, timeout_ms);
}

static void subscribe(session_t *s, step_t step, int topic) {
  pubsub_sub_t sub = {topic};
  await(s, step, act_whereis(APP_NAME_PUBSUB), PUBSUB_SUBSCRIBE, &sub, sizeof sub,
        REPO_TIMEOUT_MS);
}

static void unsubscribe(int topic) {
  pubsub_sub_t sub = {topic};
  act_send(act_whereis(APP_NAME_PUBSUB), PUBSUB_UNSUBSCRIBE, &sub, sizeof sub);
}

static void reply_error(session_t *s, conn_t *c, proto_code code, const char *why) {
  if (code == PROTO_UNAVAILABLE) tm_add(TM_DB_ERRORS, 1);
  if (code == PROTO_RATE_LIMITED) tm_add(TM_RATE_LIMITED, 1);
  conn_send_str(c, proto_enc_error(s->ref, code, why));
  finish_request(s, c);
}

static bool chaos_strikes(void) {
  double p = app_config()->chaos;
  return p > 0 && (double)random() / RAND_MAX < p;
}

/* ------------------------------------------- the shared latest messages */

/* One copy of the last REPO_LATEST answer, shared by every session on every
 * scheduler (a mutex held for a pointer swap or a reference count).  It is
 * valid while pubsub has published no message newer than its last: a
 * session checks after its lobby subscription is in place, so anything newer
 * than the copy reaches it as a push.  Cost: one memcpy of the page per
 * insert that a join follows, instead of a database read and an encoding of
 * 500 messages per join. */
typedef struct latest {
  atomic_int refs;
  int64_t last_seq;
  int64_t epoch;        /* pubsub_epoch() when the reader's subscription was acked */
  repo_messages_t msgs; /* followed by its spans and array bytes */
} latest_t;

static pthread_mutex_t g_latest_lock = PTHREAD_MUTEX_INITIALIZER;
static latest_t *g_latest;

static void latest_release(latest_t *l) {
  if (l && atomic_fetch_sub(&l->refs, 1) == 1) free(l);
}

static latest_t *latest_get(void) {
  pthread_mutex_lock(&g_latest_lock);
  latest_t *l = g_latest;
  if (l && l->epoch == pubsub_epoch() && l->last_seq >= pubsub_latest_seq())
    atomic_fetch_add(&l->refs, 1);
  else l = NULL;
  pthread_mutex_unlock(&g_latest_lock);
  return l;
}

static void latest_put(const repo_messages_t *r, int64_t epoch) {
  size_t size = sizeof(latest_t) + r->n * sizeof(repo_msg_span_t) + r->array_len;
  latest_t *l = malloc(size);
  if (!l) return; /* a cache: without it, the next join reads again */
  atomic_init(&l->refs, 1);
  l->last_seq = r->n ? r->spans[r->n - 1].seq : 0;
  l->epoch = epoch;
  memcpy(&l->msgs, r, sizeof *r + r->n * sizeof(repo_msg_span_t) + r->array_len);
  pthread_mutex_lock(&g_latest_lock);
  latest_t *old = g_latest;
  if (!old || old->epoch < l->epoch || old->last_seq <= l->last_seq) g_latest = l;
  else old = l; /* an older read finished later: keep the newer */
  pthread_mutex_unlock(&g_latest_lock);
  latest_release(old);
}

/* ------------------------------------------------------------- pushes */

static void buffer_event(session_t *s, const app_event_t *ev) {
  if (s->buf.n == MAX_BUFFERED) act_crash("session: push buffer full"); /* restart catches up */
  *act_vec_push_or_crash(&s->buf, "session") =
      (app_event_t){ev->topic, ev->seq, ws_shared_retain(ev->frame)};
}

static void try_sync(session_t *s, conn_t *c);

/* Write the oldest paced diff; the socket has seen its version from now on. */
static app_event_t *diffq(session_t *s) { return s->diffq ? s->diffq : s->diffq_inline; }

static void pace_out(session_t *s, conn_t *c) {
  app_event_t *q = diffq(s);
  app_event_t ev = q[0];
  memmove(q, q + 1, --s->ndiffq * sizeof *q);
  if (!s->ndiffq && s->diffq) { /* back to the inline slots: an idle session holds no heap */
    free(s->diffq);
    s->diffq = NULL;
    s->capdiffq = 0;
  }
  int64_t seen = s->ndiffq ? ev.seq : s->diffq_last; /* the last: all the catch-up it ends */
  if (conn_state(c)->presence_version < seen) conn_state(c)->presence_version = seen;
  conn_send_diff(c, ev.frame);
  ws_shared_release(ev.frame);
}

static void arm_pacer(session_t *s, conn_t *c) {
  if (s->pacer_armed || !s->ndiffq) return;
  uint32_t since = conn_ms_since_diff(c);
  act_send_after(since < DIFF_GAP_MS ? DIFF_GAP_MS - since : 0, act_self(), SESSION_DIFF, NULL, 0);
  s->pacer_armed = true;
}

/* SESSION_DIFF: the gap has passed. */
static void on_pacer(session_t *s) {
  s->pacer_armed = false;
  conn_t *c = my_conn(s);
  if (!c || !s->ndiffq) return;
  if (conn_ms_since_diff(c) < DIFF_GAP_MS) return arm_pacer(s, c);
  pace_out(s, c);
  arm_pacer(s, c);
  if (s->step == RQ_SYNC && s->phase == PH_LIVE) try_sync(s, c);
}

/* Send the event if the socket has not seen it yet.  Diffs go through the
 * pacer: written at once if the last one left DIFF_GAP_MS ago, else queued
 * (the shared frame's reference, no copy) for a timer. */
static void deliver(session_t *s, conn_t *c, const app_event_t *ev) {
  conn_state_t *st = conn_state(c);
  if (ev->topic == TOPIC_PRESENCE) {
    if (ev->seq <= st->presence_version || (s->ndiffq && ev->seq <= s->diffq_last)) return;
    if (s->ndiffq || conn_ms_since_diff(c) < DIFF_GAP_MS) {
      if (s->ndiffq == MAX_BUFFERED) act_crash("session: diff queue full"); /* restart catches up */
      size_t cap = s->diffq ? s->capdiffq : DIFFQ_INLINE;
      if (s->ndiffq == cap) {
        size_t ncap = cap * 2;
        app_event_t *nq = s->diffq ? realloc(s->diffq, ncap * sizeof *nq) : malloc(ncap * sizeof *nq);
        if (!nq) act_crash("session: out of memory");
        if (!s->diffq) memcpy(nq, s->diffq_inline, s->ndiffq * sizeof *nq);
        s->diffq = nq;
        s->capdiffq = ncap;
      }
      diffq(s)[s->ndiffq++] = (app_event_t){ev->topic, ev->seq, ws_shared_retain(ev->frame)};
      s->diffq_last = ev->seq;
      arm_pacer(s, c);
      return;
    }
    st->presence_version = ev->seq;
    conn_send_diff(c, ev->frame);
    return;
  }
  /* A lobby event is a committed batch: its frame's parts are messages
   * tagged by seq, ev->seq the last.  After a catch-up the socket may hold
   * the first few already: it gets the rest (the scan is over a batch, and
   * only on that rare overlap). */
  if ((!st->joined && !s->joining) || ev->seq <= st->last_seq) return;
  size_t from = 0;
  while (ws_shared_tag(ev->frame, from) <= st->last_seq) from++; /* stops: ev->seq is above */
  st->last_seq = ev->seq;
  conn_send_shared(c, ev->frame, from);
}

static void flush_buffer(session_t *s, conn_t *c) {
  s->buffering = false;
  for (size_t i = 0; i < s->buf.n; i++) {
    deliver(s, c, &s->buf.v[i]);
    ws_shared_release(s->buf.v[i].frame);
  }
  /* the buffer is for the moments a reply waits (a join, a users page):
     an idle session holds none (issue 6: 768 bytes each after a join) */
  act_vec_free(&s->buf);
}

/* ----------------------------------------------------------- the sync */

static void complete_join(session_t *s, conn_t *c);

/* RQ_SYNC: send the buffered diffs up to held_version (message pushes keep
 * waiting: they follow the reply), then, once the socket has them all, the
 * held reply, then everything else. */
static void try_sync(session_t *s, conn_t *c) {
  size_t keep = 0;
  for (size_t i = 0; i < s->buf.n; i++) {
    app_event_t *ev = &s->buf.v[i];
    if (ev->topic == TOPIC_PRESENCE && ev->seq <= s->held_version) {
      deliver(s, c, ev);
      ws_shared_release(ev->frame);
    } else {
      s->buf.v[keep++] = *ev;
    }
  }
  s->buf.n = keep;
  if (conn_state(c)->presence_version < s->held_version) return; /* a diff is on its way */
  if (s->held_is_join && act_whereis(APP_NAME_PRESENCE) != s->snapshot->from) {
    /* The presence that made our meta died: its successor may have asked
     * the acceptors whom to wait for while this socket was not yet joined,
     * and could give the name away before we re-track.  Join again (the
     * request is still at the head of the conn's queue). */
    unsubscribe(TOPIC_LOBBY);
    return restart_in_place(s, c);
  }
  proto_str reply = s->held;
  s->held = (proto_str){NULL, 0};
  if (s->held_is_join) complete_join(s, c);
  conn_send_str(c, reply);
  flush_buffer(s, c);
  finish_request(s, c);
}

static void hold_reply(session_t *s, conn_t *c, proto_str reply, int64_t version) {
  if (!reply.ptr) act_crash("session: out of memory");
  s->held = reply;
  s->held_version = version;
  s->step = RQ_SYNC;
  s->wait = 0;
  s->buffering = true;
  try_sync(s, c);
}

static void on_event(session_t *s, act_msg_t *m) {
  const app_event_t *ev = m->data;
  conn_t *c = my_conn(s);
  if (!c) return;
  if (ev->topic == TOPIC_LOBBY && !conn_state(c)->joined && !s->joining) return;
  if (s->buffering) {
    buffer_event(s, ev);
    if (s->step == RQ_SYNC && s->phase == PH_LIVE) try_sync(s, c);
    return;
  }
  if (s->phase == PH_LIVE && s->step == RQ_NONE && chaos_strikes())
    act_crash("chaos: crash on a push");
  deliver(s, c, ev);
}

/* -------------------------------------------------------- start-up */

static void start_lobby_or_live(session_t *s, conn_t *c) {
  if (conn_state(c)->joined) {
    s->phase = PH_START_LOBBY;
    subscribe(s, RQ_NONE, TOPIC_LOBBY);
  } else {
    go_live(s, c);
  }
}

static void request_catch_up(session_t *s, conn_t *c) {
  repo_page_req_t rq = {.after = conn_state(c)->last_seq};
  s->phase = PH_START_CATCHUP;
  s->wait = act_request(repo_reader(), REPO_CATCH_UP, &rq, sizeof rq, REPO_TIMEOUT_MS);
}

static void send_messages_as_pushes(conn_t *c, const repo_messages_t *r) {
  conn_state_t *st = conn_state(c);
  const char *arr = repo_messages_array(r);
  for (uint32_t i = 0; i < r->n; i++) {
    if (r->spans[i].seq <= st->last_seq) continue;
    proto_str frag = {(char *)arr + r->spans[i].off, r->spans[i].len};
    if (!conn_send_str(c, proto_enc_message(&frag))) return;
    st->last_seq = r->spans[i].seq;
  }
}

/* Our meta in a presence that did not know it (it restarted). */
static void retrack(session_t *s, conn_t *c, bool announce) {
  conn_state_t *st = conn_state(c);
  presence_track_t t;
  memset(&t, 0, sizeof t);
  t.conn_id = s->conn_id;
  t.acceptor = conn_acceptor(c);
  snprintf(t.user_id, sizeof t.user_id, "%s", st->user_id);
  snprintf(t.name, sizeof t.name, "%s", st->name);
  snprintf(t.token, sizeof t.token, "%s", st->token);
  snprintf(t.phx_ref, sizeof t.phx_ref, "%s", st->phx_ref);
  t.announce = announce;
  s->phase = PH_START_TRACK;
  s->wait = act_request(act_whereis(APP_NAME_PRESENCE), PRESENCE_TRACK, &t, sizeof t,
                        REPO_TIMEOUT_MS);
}

static void on_start_reply(session_t *s, conn_t *c, act_msg_t *m) {
  conn_state_t *st = conn_state(c);
  switch (s->phase) {
  case PH_START_PRESENCE:
    s->phase = PH_START_SNAPSHOT;
    if (!st->welcomed) {
      s->wait = act_request(act_whereis(APP_NAME_PRESENCE), PRESENCE_WELCOME, NULL, 0,
                            REPO_TIMEOUT_MS);
    } else {
      presence_since_t rq = {st->presence_version};
      s->wait = act_request(act_whereis(APP_NAME_PRESENCE), PRESENCE_SINCE, &rq, sizeof rq,
                            REPO_TIMEOUT_MS);
    }
    break;
  case PH_START_SNAPSHOT:
    if (m->type == PRESENCE_SNAPSHOT) {
      const presence_snapshot_t *snap = m->data;
      if (snap->rc < 0) {
        /* Presence knows nothing yet.  With the database up that is a
         * presence restarted a moment ago and loading the users (a few ms):
         * ask again every WELCOME_RETRY_MS, WELCOME_RETRIES times at most,
         * rather than close a socket the server could serve.  With the
         * database down, PROTOCOL.md's 1011 at once. */
        if (repo_database_up() && s->welcome_tries++ < WELCOME_RETRIES) {
          s->phase = PH_START_WELCOME_WAIT;
          act_send_after(WELCOME_RETRY_MS, act_self(), SESSION_RETRY, NULL, 0);
          return;
        }
        conn_close(c, WS_CLOSE_INTERNAL, "database unreachable");
        return;
      }
      conn_send_snapshot(c, snap->welcome);
      st->welcomed = true;
      st->presence_version = snap->version;
    } else {
      const presence_events_t *evs = m->data;
      if (!evs->ok) { /* the log no longer reaches back: let the client start over */
        conn_close(c, WS_CLOSE_INTERNAL, "missed presence events");
        return;
      }
      bool restarted = (st->presence_version >> PRESENCE_INCARNATION_SHIFT) !=
                       (evs->version >> PRESENCE_INCARNATION_SHIFT);
      /* our join went out if this socket got a diff after the snapshot of
         it (a flush publishes every pending change at once) */
      bool announced = s->join_version && st->presence_version > s->join_version;
      for (uint32_t i = 0; i < evs->n; i++) deliver(s, c, &evs->events[i]);
      /* every event up to evs->version was in the reply (several missed
         diffs merged into one by presence: on_since); later ones come
         from pubsub, to which we are subscribed.  What the pacer took
         leaves DIFF_GAP_MS apart like any diff, and the socket's version
         reaches evs->version when the last of them is written (pace_out):
         until then diffq_last keeps pubsub's copies out, and a held reply
         waits for them (try_sync) */
      if (s->ndiffq) {
        if (s->diffq_last < evs->version) s->diffq_last = evs->version;
      } else if (st->presence_version < evs->version) {
        st->presence_version = evs->version;
      }
      if (restarted && st->joined) return retrack(s, c, !announced);
    }
    start_lobby_or_live(s, c);
    break;
  case PH_START_TRACK: {
    const presence_tracked_t *r = m->data;
    if (r->code != PROTO_OK) { /* another socket took the name while presence was away */
      st->joined = false;
      st->token[0] = 0;
      unsubscribe(TOPIC_LOBBY);
      conn_send_str(c, proto_enc_error(NULL, PROTO_TAKEN_OVER, "another tab took this name over"));
    }
    start_lobby_or_live(s, c);
    break;
  }
  case PH_START_LOBBY:
    request_catch_up(s, c);
    break;
  case PH_START_CATCHUP: {
    const repo_messages_t *r = m->data;
    if (r->rc < 0) {
      act_send_after(RETRY_MS, act_self(), SESSION_RETRY, NULL, 0);
      return;
    }
    send_messages_as_pushes(c, r);
    if (!r->more) go_live(s, c);
    else if (conn_backlogged(c)) /* let the client read before the next page */
      act_send_after(100, act_self(), SESSION_RETRY, NULL, 0);
    else request_catch_up(s, c);
    break;
  }
  case PH_WAITING:
  case PH_START_WELCOME_WAIT: /* a timer, not a reply, ends this wait */
  case PH_LIVE:
    break;
  }
}

static void go_live(session_t *s, conn_t *c) {
  s->phase = PH_LIVE;
  s->wait = 0;
  flush_buffer(s, c);
  conn_attach(c, act_self());
}

/* ------------------------------------------------------------- join */

static void join_fail(session_t *s, conn_t *c, proto_code code) {
  presence_leave_t l = {s->conn_id};
  act_send(act_whereis(APP_NAME_PRESENCE),
           s->step == RQ_CLAIM || s->step == RQ_GET_USER ? PRESENCE_RELEASE : PRESENCE_LEAVE,
           &l, sizeof l);
  if (s->step == RQ_LATEST) unsubscribe(TOPIC_LOBBY);
  s->joining = false;
  if (s->snapshot) act_msg_free(s->snapshot);
  s->snapshot = NULL;
  flush_buffer(s, c);
  reply_error(s, c, code, NULL);
}

static void start_join(session_t *s, conn_t *c, proto_request *rq) {
  if (conn_state(c)->joined) return reply_error(s, c, PROTO_ALREADY_JOINED, NULL);
  if (proto_canon_name(&rq->name) != PROTO_OK || memchr(rq->name.ptr, 0, rq->name.len))
    return reply_error(s, c, PROTO_NAME_INVALID, NULL);
  presence_claim_t cl;
  memset(&cl, 0, sizeof cl);
  cl.conn_id = s->conn_id;
  cl.acceptor = conn_acceptor(c);
  conn_state_t *st = conn_state(c); /* not joined: its name and id are the join's */
  snprintf(st->name, sizeof st->name, "%.*s", (int)rq->name.len, rq->name.ptr);
  st->user_id[0] = 0;
  snprintf(cl.name, sizeof cl.name, "%s", st->name);
  snprintf(cl.peer, sizeof cl.peer, "%s", conn_state(c)->peer);
  if (rq->token.ptr) snprintf(cl.token, sizeof cl.token, "%.*s", (int)rq->token.len, rq->token.ptr);
  ACT_DEBUG_ASSERT(!s->joining && !s->snapshot); /* home -> joining, one at a time */
  s->joining = true;
  await(s, RQ_CLAIM, act_whereis(APP_NAME_PRESENCE), PRESENCE_CLAIM, &cl, sizeof cl,
        REPO_TIMEOUT_MS);
}

/* The joined reply, held until the socket has the diffs up to the
 * snapshot's version (its counts are as of that diff). */
static void send_joined(session_t *s, conn_t *c, const repo_messages_t *r) {
  const presence_snapshot_t *snap = s->snapshot->data;
  proto_user me;
  memset(&me, 0, sizeof me);
  snprintf(me.id, sizeof me.id, "%s", conn_state(c)->user_id);
  me.name = conn_state(c)->name;
  me.online = true;
  proto_str msgs = {(char *)repo_messages_array(r), r->array_len};
  proto_joined j = {s->ref, &me, snap->token, &msgs, r->more, snap->total_users,
                    snap->online_count};
  s->held_is_join = true;
  s->held_last_seq = r->n ? r->spans[r->n - 1].seq : 0;
  hold_reply(s, c, proto_enc_joined(&j), snap->version);
}

/* The joined reply is going out: the socket is joined from here on. */
static void complete_join(session_t *s, conn_t *c) {
  conn_state_t *st = conn_state(c);
  ACT_DEBUG_ASSERT(s->snapshot && !st->joined); /* joining -> joined, once */
  const presence_snapshot_t *snap = s->snapshot->data;
  st->joined = true;
  s->joining = false;
  s->held_is_join = false;
  snprintf(st->token, sizeof st->token, "%s", snap->token);
  snprintf(st->phx_ref, sizeof st->phx_ref, "%s", snap->phx_ref);
  st->last_seq = s->held_last_seq;
  s->join_version = snap->version;
  act_msg_free(s->snapshot);
  s->snapshot = NULL;
}

/* The user is known (from presence, or the repo found or created it): the
 * claim becomes a meta. */
static void join_presence(session_t *s, conn_t *c, const char *user_id, bool created) {
  snprintf(conn_state(c)->user_id, sizeof conn_state(c)->user_id, "%s", user_id);
  presence_join_t rq;
  memset(&rq, 0, sizeof rq);
  rq.conn_id = s->conn_id;
  rq.acceptor = conn_acceptor(c);
  snprintf(rq.user_id, sizeof rq.user_id, "%s", user_id);
  snprintf(rq.name, sizeof rq.name, "%s", conn_state(c)->name);
  rq.created = created;
  s->buffering = true; /* from the snapshot on, pushes follow `joined` */
  await(s, RQ_PRESENCE_JOIN, act_whereis(APP_NAME_PRESENCE), PRESENCE_JOIN, &rq, sizeof rq,
        REPO_TIMEOUT_MS);
}

static void on_join_reply(session_t *s, conn_t *c, act_msg_t *m) {
  switch (s->step) {
  case RQ_CLAIM: {
    const presence_claimed_t *r = m->data;
    if (r->code != PROTO_OK) {
      s->joining = false;
      return reply_error(s, c, (proto_code)r->code, NULL);
    }
    if (r->user_id[0]) { /* a user presence knows: no database round trip */
      join_presence(s, c, r->user_id, false);
      break;
    }
    /* A new name: the repo creates it.  On the read connections, round
     * robin, not the writer: each create is a commit of its own (a WAL
     * flush, 2 ms here), and on the one writer they queued behind each
     * other and behind the message batches; users need no seq order. */
    repo_name_req_t rq;
    snprintf(rq.name, sizeof rq.name, "%s", conn_state(c)->name);
    await(s, RQ_GET_USER, repo_reader(), REPO_GET_USER, &rq, sizeof rq, REPO_TIMEOUT_MS);
    break;
  }
  case RQ_GET_USER: {
    const repo_user_reply_t *r = m->data;
    if (r->rc < 0) return join_fail(s, c, PROTO_UNAVAILABLE);
    join_presence(s, c, r->id, r->created);
    break;
  }
  case RQ_PRESENCE_JOIN: {
    const presence_snapshot_t *snap = m->data;
    if (snap->rc < 0) return join_fail(s, c, PROTO_UNAVAILABLE);
    s->snapshot = act_msg_keep(m);
    subscribe(s, RQ_SUB_LOBBY, TOPIC_LOBBY);
    break;
  }
  case RQ_SUB_LOBBY: {
    s->sub_epoch = pubsub_epoch();
    latest_t *l = latest_get(); /* subscribed: anything newer will be pushed */
    if (l) {
      send_joined(s, c, &l->msgs);
      latest_release(l);
      break;
    }
    repo_page_req_t rq = {.limit = PROTO_HISTORY_MAX};
    await(s, RQ_LATEST, repo_reader(), REPO_LATEST, &rq, sizeof rq, REPO_TIMEOUT_MS);
    break;
  }
  case RQ_LATEST: {
    const repo_messages_t *r = m->data;
    if (r->rc < 0) return join_fail(s, c, PROTO_UNAVAILABLE);
    latest_put(r, s->sub_epoch);
    send_joined(s, c, r);
    break;
  }
  default:
    break;
  }
}

/* ------------------------------------------------------------- send */

static bool take_token(conn_state_t *st, uint64_t now, bool consume) {
  double elapsed = (double)(now - st->rl_at_ms) / 1000.0;
  double tokens = st->rl_tokens + elapsed * RATE_PER_SEC;
  if (tokens > RATE_BURST) tokens = RATE_BURST;
  if (tokens < 1.0) return false;
  if (consume) {
    st->rl_tokens = (float)(tokens - 1.0);
    st->rl_at_ms = now;
  }
  return true;
}

/* A valid send with a token is inserted at once (with its client_id: the
 * repo answers `existed` if this user stored it already).  A send that
 * would be refused asks the repo for its client_id first: a CID already
 * stored is answered `sent` whatever the content, without a token. */
static void start_send(session_t *s, conn_t *c, proto_request *rq) {
  conn_state_t *st = conn_state(c);
  if (!st->joined) return reply_error(s, c, PROTO_NOT_JOINED, NULL);
  proto_code refused = PROTO_OK;
  if (proto_canon_content(&rq->content) != PROTO_OK) refused = PROTO_CONTENT_INVALID;
  else if (!take_token(st, uv_now(act_loop()), false)) refused = PROTO_RATE_LIMITED;
  if (refused != PROTO_OK) {
    if (!rq->client_id.ptr) return reply_error(s, c, refused, NULL);
    repo_client_req_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.user_id, sizeof f.user_id, "%s", st->user_id);
    snprintf(f.client_id, sizeof f.client_id, "%.*s", (int)rq->client_id.len, rq->client_id.ptr);
    s->refused = refused;
    await(s, RQ_FIND_CID, repo_writer(), REPO_FIND_CLIENT_ID, &f, sizeof f, FIND_TIMEOUT_MS);
    return;
  }
  size_t size = sizeof(repo_insert_req_t) + rq->content.len + 1;
  repo_insert_req_t *ins = calloc(1, size);
  if (!ins) act_crash("session: out of memory");
  snprintf(ins->user_id, sizeof ins->user_id, "%s", st->user_id);
  snprintf(ins->name, sizeof ins->name, "%s", st->name);
  if (rq->client_id.ptr)
    snprintf(ins->client_id, sizeof ins->client_id, "%.*s", (int)rq->client_id.len,
             rq->client_id.ptr);
  ins->content_len = rq->content.len;
  memcpy(ins->content, rq->content.ptr, rq->content.len);
  await(s, RQ_INSERT, repo_writer(), REPO_INSERT, ins, size, INSERT_TIMEOUT_MS);
  free(ins);
}

static void on_inserted(session_t *s, conn_t *c, act_msg_t *m) {
  const repo_inserted_t *r = m->data;
  if (r->rc < 0) return reply_error(s, c, PROTO_UNAVAILABLE, NULL);
  if (!r->existed) /* only accepted sends count; a CID already stored uses none */
    take_token(conn_state(c), uv_now(act_loop()), true);
  proto_str frag = {(char *)r->frag, r->frag_len};
  conn_send_str(c, proto_enc_sent(s->ref, &frag));
  finish_request(s, c);
}

/* The look-up of a refused send's client_id: stored -> sent; otherwise (not
 * found, or the database cannot say) the refusal stands. */
static void on_found(session_t *s, conn_t *c, act_msg_t *m) {
  const repo_inserted_t *r = m->type == REPO_INSERTED ? m->data : NULL;
  if (!r || r->rc != 0 || !r->existed) return reply_error(s, c, s->refused, NULL);
  proto_str frag = {(char *)r->frag, r->frag_len};
  conn_send_str(c, proto_enc_sent(s->ref, &frag));
  finish_request(s, c);
}

/* ------------------------------------------------------------ history */

static void start_history(session_t *s, conn_t *c, proto_request *rq) {
  if (!conn_state(c)->joined) return reply_error(s, c, PROTO_NOT_JOINED, NULL);
  repo_page_req_t pr = {.before = rq->before, .after = rq->after, .limit = (int)rq->limit};
  int type = rq->type == PROTO_REQ_HISTORY ? REPO_HISTORY : REPO_CATCH_UP;
  await(s, RQ_HISTORY, repo_reader(), type, &pr, sizeof pr, REPO_TIMEOUT_MS);
}

static void on_history(session_t *s, conn_t *c, act_msg_t *m) {
  const repo_messages_t *r = m->data;
  if (r->rc < 0) return reply_error(s, c, PROTO_UNAVAILABLE, NULL);
  proto_str msgs = {(char *)repo_messages_array(r), r->array_len};
  conn_send_str(c, proto_enc_history(s->ref, &msgs, r->more));
  finish_request(s, c);
}

/* -------------------------------------------------------------- users */

static void start_users(session_t *s, proto_request *rq) {
  presence_users_req_t u;
  memset(&u, 0, sizeof u);
  u.online = rq->online;
  u.limit = (int)rq->limit;
  if (rq->after_name.ptr) { /* the decoder bounded both lengths */
    u.has_after = true;
    u.after_len = (uint32_t)rq->after_name.len;
    memcpy(u.after, rq->after_name.ptr, rq->after_name.len);
  }
  if (rq->prefix.ptr) {
    u.has_prefix = true;
    u.prefix_len = (uint32_t)rq->prefix.len;
    memcpy(u.prefix, rq->prefix.ptr, rq->prefix.len);
  }
  s->buffering = true; /* diffs after the page's version wait behind it */
  await(s, RQ_USERS, act_whereis(APP_NAME_PRESENCE), PRESENCE_USERS, &u, sizeof u,
        REPO_TIMEOUT_MS);
}

static void on_users_page(session_t *s, conn_t *c, act_msg_t *m) {
  const presence_page_t *pg = m->data;
  proto_str arr = {(char *)pg->users, pg->len};
  s->held_is_join = false;
  hold_reply(s, c, proto_enc_users(s->ref, &arr, pg->more), pg->version);
}

/* -------------------------------------------------------------- leave */

static void do_leave(session_t *s, conn_t *c) {
  conn_state_t *st = conn_state(c);
  if (!st->joined) return reply_error(s, c, PROTO_NOT_JOINED, NULL);
  presence_leave_t l = {s->conn_id};
  act_send(act_whereis(APP_NAME_PRESENCE), PRESENCE_LEAVE, &l, sizeof l);
  unsubscribe(TOPIC_LOBBY);
  st->joined = false;
  st->token[0] = 0;
  conn_send_str(c, proto_enc_left(s->ref));
  finish_request(s, c);
}

/* ------------------------------------------------------ recovery in place */

/* Steps that wait on pubsub or presence: their answer died with it. */
static bool waits_on_service(step_t step) {
  return step == RQ_CLAIM || step == RQ_PRESENCE_JOIN || step == RQ_SUB_LOBBY ||
         step == RQ_USERS || step == RQ_SYNC;
}

/* Start over as a restarted session would, on the same socket, without
 * crashing (a crash of every session at once could exceed the sessions
 * supervisor's intensity and orphan every socket).  The request being
 * handled stays at the head of the conn's queue and is delivered again. */
static void restart_in_place(session_t *s, conn_t *c) {
  conn_detach(c, act_self());
  s->joining = false; /* a redelivered join finds its meta, if presence kept it */
  if (s->snapshot) act_msg_free(s->snapshot);
  s->snapshot = NULL;
  free(s->held.ptr);
  s->held = (proto_str){NULL, 0};
  s->held_is_join = false;
  free(s->ref);
  s->ref = NULL;
  s->step = RQ_NONE;
  s->wait = 0;
  s->recover = false;
  s->buffering = true;
  if (s->mon_pubsub) act_demonitor(s->mon_pubsub);
  if (s->mon_presence) act_demonitor(s->mon_presence);
  s->mon_pubsub = s->mon_presence = 0;
  s->phase = PH_WAITING;
  app_log(LOG_DEBUG, "session for conn %llx starts over in place",
          (unsigned long long)s->conn_id);
  begin(s);
}

/* Recover now if nothing is in flight, or if what is in flight waited on
 * the dead actor; a database request is let finish first (finish_request
 * comes back here), so that its outcome reaches the client. */
static void maybe_recover(session_t *s, conn_t *c) {
  if (!s->recover) return;
  if (s->phase == PH_LIVE && s->step != RQ_NONE && !waits_on_service(s->step)) return;
  restart_in_place(s, c);
}

/* ----------------------------------------------------------- requests */

static void finish_request(session_t *s, conn_t *c) {
  free(s->ref);
  s->ref = NULL;
  s->step = RQ_NONE;
  s->wait = 0;
  conn_frame_done(c);
  maybe_recover(s, c);
}

static void on_frame(session_t *s, act_msg_t *m) {
  (void)m;
  conn_t *c = my_conn(s);
  if (!c || s->phase != PH_LIVE || s->step != RQ_NONE) return;
  conn_state_t *st = conn_state(c);
  size_t len;
  const char *text = conn_frame(c, &len);
  if (!text) return;
  if (!st->head_crashed && chaos_strikes()) {
    st->head_crashed = true; /* the redelivery is spared */
    act_crash("chaos: crash on a request");
  }
  proto_request rq;
  proto_code code = proto_decode(text, len, &rq);
  s->ref = rq.ref;
  rq.ref = NULL;
  if (code != PROTO_OK) {
    reply_error(s, c, PROTO_BAD_REQUEST, rq.why[0] ? rq.why : NULL);
  } else {
    switch (rq.type) {
    case PROTO_REQ_PING:
      conn_send_str(c, proto_enc_pong(s->ref));
      finish_request(s, c);
      break;
    case PROTO_REQ_JOIN: start_join(s, c, &rq); break;
    case PROTO_REQ_SEND: start_send(s, c, &rq); break;
    case PROTO_REQ_HISTORY:
    case PROTO_REQ_CATCH_UP: start_history(s, c, &rq); break;
    case PROTO_REQ_LEAVE: do_leave(s, c); break;
    case PROTO_REQ_USERS: start_users(s, &rq); break;
    default: reply_error(s, c, PROTO_BAD_REQUEST, NULL); break;
    }
  }
  proto_request_free(&rq);
}

static void on_reply(session_t *s, act_msg_t *m) {
  conn_t *c = my_conn(s);
  if (!c || !s->wait || m->ref != s->wait) return;
  if (s->phase != PH_LIVE) return on_start_reply(s, c, m);
  switch (s->step) {
  case RQ_INSERT: on_inserted(s, c, m); break;
  case RQ_FIND_CID: on_found(s, c, m); break;
  case RQ_HISTORY: on_history(s, c, m); break;
  case RQ_USERS: on_users_page(s, c, m); break;
  case RQ_NONE:
  case RQ_SYNC: break;
  default: on_join_reply(s, c, m); break;
  }
}

static void on_timeout(session_t *s, act_msg_t *m) {
  conn_t *c = my_conn(s);
  if (!c || !s->wait || m->ref != s->wait) return;
  if (s->phase != PH_LIVE) { /* start-up could not finish: start over */
    act_crash("session: start-up timed out");
  }
  if (s->step == RQ_FIND_CID) return on_found(s, c, m);
  if (s->step == RQ_USERS) act_crash("session: presence did not answer a users page");
  if (s->joining) return join_fail(s, c, PROTO_UNAVAILABLE);
  reply_error(s, c, PROTO_UNAVAILABLE, NULL);
}

static void on_taken_over(session_t *s) {
  unsubscribe(TOPIC_LOBBY);
  (void)s; /* the acceptor already told the client and cleared the state */
}

/* ---------------------------------------------------------- behaviour */

/* PH_WAITING: begin in ms milliseconds. */
static void begin_after(session_t *s, unsigned ms) {
  s->phase = PH_WAITING;
  act_send_after(ms, act_self(), SESSION_START, NULL, 0);
}

/* Start (or wait for) the services.  A session watches pubsub and
 * presence: if either dies, its subscriptions or its entry died with it,
 * and the session starts over in place.  While one of them is being
 * restarted by its supervisor, wait a little. */
static void begin(session_t *s) {
  act_pid_t ps = act_whereis(APP_NAME_PUBSUB), pr = act_whereis(APP_NAME_PRESENCE);
  if (!ps || !pr) return begin_after(s, SERVICE_WAIT_MS);
  s->mon_pubsub = act_monitor(ps);
  s->mon_presence = act_monitor(pr);
  s->phase = PH_START_PRESENCE;
  subscribe(s, RQ_NONE, TOPIC_PRESENCE);
}

static void on_down(session_t *s, act_msg_t *m) {
  const act_down_msg_t *d = m->data;
  if (d->ref != s->mon_pubsub && d->ref != s->mon_presence) return;
  if (d->ref == s->mon_pubsub) s->mon_pubsub = 0;
  else s->mon_presence = 0;
  conn_t *c = my_conn(s);
  if (!c) return;
  s->recover = true;
  maybe_recover(s, c);
}

/* High priority while the client waits on this session (act.h,
 * act_set_priority): from its start until it has joined (a home socket's
 * every frame is a step towards that), and from a request's first round
 * trip (presence, the repo, pubsub) to its reply.  A join is a welcome and
 * some six round trips; at normal priority each waited behind every
 * session turn of the diff or message being fanned out, up to 19,000 of
 * them (join p99 553 ms with 19,000 joining, against the Node peer's 346).
 * Joined and idle, a session's pushes are work nobody waits on for a reply:
 * normal.  Called after every message: a store, a few ns. */
static void set_priority(session_t *s) {
  bool waited_on = s->phase != PH_LIVE || s->step != RQ_NONE || s->joining;
  if (!waited_on) { /* the lookup the handler just made: in cache */
    conn_t *c = conn_get(s->conn_id);
    waited_on = c && !conn_state(c)->joined;
  }
  act_set_priority(waited_on ? ACT_PRIORITY_HIGH : ACT_PRIORITY_NORMAL);
}

static int se_init(void *args, void **state) {
  session_t *s = act_alloc(sizeof *s);
  if (!s) return ACT_ENOMEM;
  memset(s, 0, sizeof *s);
  *state = s;
  s->conn_id = (uint64_t)(uintptr_t)args;
  conn_t *c = conn_get(s->conn_id);
  if (!c) { /* the socket went away before we (re)started */
    act_stop(act_reason(ACT_NORMAL));
    return ACT_OK;
  }
  if (conn_state(c)->session_starts > 0) {
    tm_add(TM_SESSION_RESTARTS, 1);
    app_log(LOG_INFO, "session for conn %llx restarted (%s)", (unsigned long long)s->conn_id,
            conn_state(c)->joined ? conn_state(c)->name : "home");
  }
  s->buffering = true;
  if (conn_state(c)->session_starts > 0 && app_config()->chaos_restart_ms > 0)
    begin_after(s, (unsigned)app_config()->chaos_restart_ms);
  else
    begin(s);
  set_priority(s);
  return ACT_OK;
}

static void se_dispatch(session_t *s, act_msg_t *m) {
  switch (m->type) {
  case CONN_FRAME: on_frame(s, m); break;
  case APP_EVENT: on_event(s, m); break;
  case CONN_CLOSED: act_stop(act_reason(ACT_NORMAL)); break;
  case SESSION_START:
    if (s->phase == PH_WAITING) begin(s);
    break;
  case SESSION_DIFF: on_pacer(s); break;
  case ACT_MSG_DOWN: on_down(s, m); break;
  case CONN_TAKEN_OVER: on_taken_over(s); break;
  case SESSION_RETRY: { /* catch-up retry */
    conn_t *c = my_conn(s);
    if (c && s->phase == PH_START_CATCHUP) request_catch_up(s, c);
    if (c && s->phase == PH_START_WELCOME_WAIT) {
      s->phase = PH_START_SNAPSHOT;
      s->wait = act_request(act_whereis(APP_NAME_PRESENCE), PRESENCE_WELCOME, NULL, 0,
                            REPO_TIMEOUT_MS);
    }
    break;
  }
  case ACT_MSG_TIMEOUT: on_timeout(s, m); break;
  case PUBSUB_OK:
  case PRESENCE_CLAIMED:
  case PRESENCE_SNAPSHOT:
  case PRESENCE_EVENTS:
  case PRESENCE_PAGE:
  case PRESENCE_TRACKED:
  case REPO_USER:
  case REPO_INSERTED:
  case REPO_MESSAGES: on_reply(s, m); break;
  default: break;
  }
}

static void se_handle(void *state, act_msg_t *m) {
  session_t *s = state;
  se_dispatch(s, m);
  set_priority(s);
}

static void se_terminate(void *state, act_reason_t r) {
  session_t *s = state;
  if (!s) return;
  conn_t *c = conn_get(s->conn_id);
  if (c) {
    conn_detach(c, act_self());
    if (r.kind != ACT_NORMAL && r.kind != ACT_SHUTDOWN)
      app_log(LOG_WARN, "session for conn %llx crashed: %s", (unsigned long long)s->conn_id,
              r.text);
  }
  for (size_t i = 0; i < s->buf.n; i++) ws_shared_release(s->buf.v[i].frame);
  act_vec_free(&s->buf);
  free(s->ref);
  free(s->held.ptr);
  for (size_t i = 0; i < s->ndiffq; i++) ws_shared_release(diffq(s)[i].frame);
  free(s->diffq);
  if (s->snapshot) act_msg_free(s->snapshot);
}

static const act_behaviour_t behaviour = {"session", se_init, se_handle, se_terminate};
const act_behaviour_t *session_behaviour(void) { return &behaviour; }
