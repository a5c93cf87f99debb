/*
 * presence.h -- the presence actor (presence.c): who is online, the users
 * directory, versioned diffs published through pubsub, and the new-user
 * rate limit per source address.
 */
#ifndef CHATTER_PRESENCE_H
#define CHATTER_PRESENCE_H

#include "act.h"
#include "protocol.h"
#include "pubsub.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
  /* presence */
  PRESENCE_CLAIM = 300,   /* presence_claim_t -> PRESENCE_CLAIMED */
  PRESENCE_JOIN,          /* presence_join_t -> PRESENCE_SNAPSHOT */
  PRESENCE_LEAVE,         /* presence_leave_t (conn id), no reply */
  PRESENCE_RELEASE,       /* presence_leave_t: drop a claim that failed */
  PRESENCE_WELCOME,       /* no payload -> PRESENCE_SNAPSHOT */
  PRESENCE_SINCE,         /* presence_since_t -> PRESENCE_EVENTS */
  PRESENCE_USERS_LOADED,  /* internal: REPO_USERS arrived */
  PRESENCE_CLAIMED,
  PRESENCE_SNAPSHOT,
  PRESENCE_EVENTS,
  PRESENCE_FLUSH,         /* internal: the coalescing window closed */
  PRESENCE_USERS,         /* presence_users_req_t -> PRESENCE_PAGE */
  PRESENCE_PAGE,
  PRESENCE_TRACK,         /* presence_track_t -> PRESENCE_TRACKED: a joined
                             session re-tracks itself in a restarted presence */
  PRESENCE_TRACKED,
  PRESENCE_SWEEP,         /* internal: forget idle rate-limit windows */
  PRESENCE_REBUILD_TICK,  /* internal: is a restarted presence rebuilt? */
};

/* Presence */
/* Presence versions carry the incarnation of the presence that issued them
 * in their high bits, so every version of a restarted presence is above
 * every version of the one before (sessions drop events by version). */
#define PRESENCE_INCARNATION_SHIFT 40
#define PRESENCE_PEER_MAX 48 /* conn_state_t.peer */

typedef struct presence_claim {
  uint64_t conn_id;
  act_pid_t acceptor; /* presence monitors it: its death ends its entries */
  char name[PROTO_NAME_MAX * 4 + 1];
  char token[64];     /* "" if none */
  char peer[PRESENCE_PEER_MAX]; /* source address: new users per minute */
} presence_claim_t;
typedef struct presence_claimed {
  int code;           /* PROTO_OK, PROTO_NAME_TAKEN, PROTO_RATE_LIMITED,
                         PROTO_UNAVAILABLE */
  char user_id[PROTO_UUID_LEN + 1]; /* OK and a user presence knows: its id
                         (the join needs no database round trip); else "" */
} presence_claimed_t;
typedef struct presence_join {
  uint64_t conn_id;
  act_pid_t acceptor;
  char user_id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
  bool created;       /* the repo created the user (else the claim's
                         new-user count is given back) */
} presence_join_t;
typedef struct presence_leave { uint64_t conn_id; } presence_leave_t;
typedef struct presence_since { int64_t version; } presence_since_t;

/* PRESENCE_TRACK: the meta a joined socket holds, as its session kept it
 * (phx_ref encodes joined_at), so that a restarted presence rebuilds the
 * same metas and nobody sees the name go offline. */
typedef struct presence_track {
  uint64_t conn_id;
  act_pid_t acceptor;
  char user_id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
  char token[64];
  char phx_ref[32];
  bool announce;      /* the dead presence may not have published this join
                         (its diff was pending): publish it again; a join of
                         a phx_ref a client holds already changes nothing */
} presence_track_t;
typedef struct presence_tracked {
  int code;           /* PROTO_OK, or PROTO_TAKEN_OVER: another socket holds
                         the name now */
} presence_tracked_t;

/* PRESENCE_USERS: one page of the directory (PROTOCOL.md `users`).  after
 * and prefix are byte strings with lengths (after may hold a 0 byte). */
typedef struct presence_users_req {
  bool online;
  int limit;
  bool has_after, has_prefix;
  uint32_t after_len, prefix_len;
  char after[PROTO_AFTER_MAX + 1];
  char prefix[PROTO_PREFIX_MAX * 4 + 1];
} presence_users_req_t;

/* PRESENCE_PAGE: the page as of presence's `version` (the session sends it
 * once the socket has been sent every diff up to that version). */
typedef struct presence_page {
  int64_t version;
  bool more;
  size_t len;          /* bytes of the "[...]" array fragment that follows */
  char users[];
} presence_page_t;

/* PRESENCE_SNAPSHOT: the published state at `version`.  rc < 0: presence
 * knows nothing yet (the database never answered). */
typedef struct presence_snapshot {
  int rc;
  int64_t version;
  ws_shared_t *welcome;    /* PRESENCE_WELCOME only: the whole welcome frame */
  char token[64];          /* PRESENCE_JOIN only: the holder's token */
  char phx_ref[32];
  size_t total_users, online_count;
} presence_snapshot_t;
void presence_snapshot_release(void *data, size_t size);

/* PRESENCE_EVENTS: events after a version, and presence's version now.
 * A version of an earlier incarnation gets every event of this one.
 * ok=false when the log no longer reaches back that far. */
typedef struct presence_events {
  bool ok;
  int64_t version;
  uint32_t n;
  app_event_t events[];
} presence_events_t;
void presence_events_release(void *data, size_t size);

/* presence -> the acceptor that holds a socket whose name another socket
 * took over (numbered with the conn -> session messages, session.h) */
enum { CONN_TAKE_OVER_NOTICE = 403 };
typedef struct conn_notice { uint64_t conn_id; } conn_notice_t;

/* A restarted presence -> each acceptor (acceptor.N): which of its joined
 * sockets have not re-tracked in this incarnation yet, i.e. whose session
 * has not yet seen its events (conn_state_t.presence_version).  The
 * sessions run on their acceptor's thread, so each listed socket's
 * re-track or leave reaches presence after the list: the rebuild is over
 * once every listed socket has done one or the other (presence.c). */
enum { CONN_OWED_ASK = 420, CONN_OWED };
typedef struct conn_owed_ask { int64_t incarnation; } conn_owed_ask_t;
typedef struct conn_owed { uint32_t n; uint64_t conn_ids[]; } conn_owed_t;

const act_behaviour_t *presence_behaviour(void);
bool presence_ready(void); /* the users list is loaded: for /healthz */

#endif
