/*
 * app.h -- what the chat's actors say to each other, and the few things
 * every app file shares (configuration, logging, registered names).
 *
 * The tree (DESIGN.md):
 *
 *   chatter (one_for_one)
 *   ├── telemetry   counters for /metrics
 *   ├── repo        supervisor over the connection actors repo.0 .. repo.N-1
 *   │               (repo.0 is the single writer; reads go to the others)
 *   ├── pubsub      topic -> subscribers; frames shared by reference count
 *   ├── presence    who is online; the users list; versioned events
 *   ├── sessions    dynamic supervisor, one transient session per WebSocket
 *   └── endpoint    supervisor over one acceptor per scheduler (SO_REUSEPORT)
 *
 * Data flows one way: socket (endpoint's conn) -> session -> repo / pubsub /
 * presence -> sessions -> socket.  Every request below is sent with
 * act_request and answered with act_reply; payloads are plain structs copied
 * into the message, except frames, which travel as ws_shared_t pointers
 * whose reference the receiver owns (released by the message's free_fn).
 */
#ifndef CHATTER_APP_H
#define CHATTER_APP_H

#include "act.h"
#include "protocol.h"
#include "ws.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------ config */

typedef struct app_config {
  int port;                 /* PORT, default 4000 */
  char database_url[1024];  /* DATABASE_URL */
  int threads;              /* CHATTER_THREADS, default: cores */
  int db_pool;              /* CHATTER_DB_POOL, default 4 (1 writer + readers) */
  int log_level;            /* LOG_LEVEL: debug=0 info=1 warn=2 error=3 */
  double chaos;             /* CHATTER_CHAOS: session crash probability */
  int new_users_per_minute; /* CHATTER_NEW_USERS_PER_MINUTE (20): new names one
                               source address may create per sliding 60 s;
                               0 = no limit (PROTOCOL.md join rate_limited) */
  char web_root[PATH_MAX];  /* web/ */
  char sql_dir[PATH_MAX];   /* sql/ */
  bool log_logfmt;          /* LOG_FORMAT=logfmt (default when not a tty) */
  char log_file[PATH_MAX];  /* LOG_FILE, "" = stderr; reopened on SIGHUP */
  /* The endpoint's bounds (README "Bounds"; listener.c, conn.c, routes.c) */
  char host[256];           /* HOST, default 127.0.0.1 */
  int max_conns;            /* CHATTER_MAX_CONNS: 0 = descriptor limit - reserve */
  int fd_reserve;           /* CHATTER_FD_RESERVE, default 64 descriptors */
  int max_conns_per_addr;   /* CHATTER_MAX_CONNS_PER_ADDR, default 1024; 0 = none */
  bool cap_loopback;        /* CHATTER_CAP_LOOPBACK=1: the cap counts 127/8 too */
  int idle_timeout_ms;      /* CHATTER_IDLE_TIMEOUT_MS, default 10 s */
  int header_timeout_ms;    /* CHATTER_HEADER_TIMEOUT_MS, default 10 s */
  int keepalive_timeout_ms; /* CHATTER_KEEPALIVE_TIMEOUT_MS, default 60 s */
  int send_timeout_ms;      /* CHATTER_SEND_TIMEOUT_MS, default 30 s */
  char allowed_origins[2048]; /* CHATTER_ALLOWED_ORIGINS: comma list, "*" = any */
  char allowed_hosts[2048];   /* CHATTER_ALLOWED_HOSTS: comma list, "*" = any */
} app_config_t;

const app_config_t *app_config(void);
void app_config_load(const char *argv0); /* from the environment */

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
/* One line per event: time, level, the calling actor's name, the text. */
void app_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reopen LOG_FILE (SIGHUP, after logrotate moved it); 0 or -1. */
int app_log_reopen(void);

#define APP_NAME_REPO_SUP "repo"
#define APP_NAME_PUBSUB "pubsub"
#define APP_NAME_PRESENCE "presence"
#define APP_NAME_SESSIONS "sessions"
#define APP_NAME_TELEMETRY "telemetry"
#define APP_NAME_ENDPOINT "endpoint"

/* ------------------------------------------------------- message types */

enum {
  /* repo: requests (payloads below) and their replies */
  REPO_GET_USER = 100,  /* repo_name_req_t -> REPO_USER */
  REPO_INSERT,          /* repo_insert_req_t -> REPO_INSERTED */
  REPO_LATEST,          /* repo_page_req_t (limit) -> REPO_MESSAGES */
  REPO_HISTORY,         /* repo_page_req_t (before, limit) -> REPO_MESSAGES */
  REPO_CATCH_UP,        /* repo_page_req_t (after) -> REPO_MESSAGES */
  REPO_LIST_USERS,      /* no payload -> REPO_USERS */
  REPO_FIND_CLIENT_ID,  /* repo_client_req_t -> REPO_INSERTED (existed, or
                           rc == REPO_NOT_FOUND): a send whose client_id this
                           user may already have stored (PROTOCOL.md) */
  REPO_USER,
  REPO_INSERTED,
  REPO_MESSAGES,
  REPO_USERS,
  REPO_TICK,            /* internal: the writer's idle ping is due */

  /* pubsub */
  PUBSUB_SUBSCRIBE = 200, /* pubsub_sub_t -> PUBSUB_OK (a request: the ack
                             says the subscription is in place) */
  PUBSUB_UNSUBSCRIBE,     /* pubsub_sub_t, no reply */
  PUBSUB_PUBLISH,         /* app_event_t, no reply */
  PUBSUB_OK,
  APP_EVENT,              /* app_event_t pushed to a subscriber */

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

  /* endpoint <-> session (same scheduler) */
  CONN_FRAME = 400,       /* conn_frame_t: the conn has a request for you */
  CONN_CLOSED,            /* the socket is gone: stop */
  CONN_TAKEN_OVER,        /* another socket took this name over */
  CONN_TAKE_OVER_NOTICE,  /* presence -> acceptor: conn_notice_t */
  SESSION_RETRY,      /* a retry timer (catch-up, back-pressure) */
  SESSION_START,          /* retry the start once pubsub and presence are back */
  SESSION_DIFF,           /* the next paced presence_diff may go out */

  TELEMETRY_TICK = 500
};

/* ------------------------------------------------------------ payloads */

#define REPO_CLIENT_ID_MAX 64 /* PROTOCOL.md: 1 to 64 of A-Z a-z 0-9 _ - */

typedef struct repo_name_req { char name[PROTO_NAME_MAX * 4 + 1]; } repo_name_req_t;

/* A negative rc is unavailable (the database is down or failed). */
typedef struct repo_user_reply {
  int rc;
  bool created;
  char id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
} repo_user_reply_t;

typedef struct repo_insert_req {
  char user_id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
  char client_id[REPO_CLIENT_ID_MAX + 1]; /* "" = none */
  size_t content_len;
  char content[]; /* PROTO_CONTENT_MAX code points, at most 4 bytes each */
} repo_insert_req_t;

/* REPO_FIND_CLIENT_ID */
typedef struct repo_client_req {
  char user_id[PROTO_UUID_LEN + 1];
  char client_id[REPO_CLIENT_ID_MAX + 1];
} repo_client_req_t;

/* REPO_INSERTED: rc, the new seq, and the message's JSON fragment (encoded
 * once by the writer and also used for the broadcast). */
#define REPO_NOT_FOUND 1 /* REPO_FIND_CLIENT_ID: no such message */
typedef struct repo_inserted {
  int rc;
  bool existed;   /* the client_id was already stored: frag is that stored
                     message, and nothing was broadcast again */
  int64_t seq;
  size_t frag_len;
  char frag[];
} repo_inserted_t;

typedef struct repo_page_req {
  int64_t before; /* REPO_HISTORY */
  int64_t after;  /* REPO_CATCH_UP */
  int limit;      /* REPO_LATEST, REPO_HISTORY; catch_up uses PROTO_HISTORY_MAX */
} repo_page_req_t;

/* REPO_MESSAGES: a JSON array fragment of messages, oldest first, and where
 * each one lies in it, so that a session can push them one by one. */
typedef struct repo_msg_span { int64_t seq; uint32_t off, len; } repo_msg_span_t;
typedef struct repo_messages {
  int rc;
  bool more;
  uint32_t n;
  size_t array_len;              /* bytes of "[...]" after the spans */
  repo_msg_span_t spans[];       /* n spans, then the array bytes */
} repo_messages_t;
static inline const char *repo_messages_array(const repo_messages_t *m) {
  return (const char *)&m->spans[m->n];
}

/* REPO_USERS: n records of (id, name) */
typedef struct repo_user_rec {
  char id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
} repo_user_rec_t;
typedef struct repo_users {
  int rc;
  uint32_t n;
  repo_user_rec_t users[];
} repo_users_t;

/* The highest lobby seq pubsub has published (0 before the first): the
 * latest-messages cache of session.c is valid while it holds that seq. */
int64_t pubsub_latest_seq(void);
/* Which pubsub is running (+1 per start): a message published to a pubsub
 * that died was pushed to nobody, so a cache filled under an earlier one is
 * not trusted. */
int64_t pubsub_epoch(void);

/* Pubsub topics and events.  A presence event's seq is presence's version;
 * a lobby event's seq is the message's seq. */
enum { TOPIC_LOBBY = 0, TOPIC_PRESENCE = 1, TOPIC_COUNT };
typedef struct pubsub_sub { int topic; } pubsub_sub_t;
typedef struct app_event {
  int topic;
  int64_t seq;
  ws_shared_t *frame; /* one reference, owned by whoever holds the event */
} app_event_t;
/* free_fn of every message that carries an app_event_t */
void app_event_release(void *data, size_t size);
/* Send an event with its own reference to the frame (retained here). */
int app_event_send(act_pid_t to, int type, int topic, int64_t seq, ws_shared_t *frame);

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

/* Endpoint -> session */
typedef struct conn_frame { uint64_t frame_no; } conn_frame_t;
typedef struct conn_notice { uint64_t conn_id; } conn_notice_t;

/* ------------------------------------------------------- telemetry */

enum {
  TM_HTTP_REQUESTS,       /* counter */
  TM_WS_CONNECTIONS,      /* counter: upgrades */
  TM_WS_OPEN,             /* gauge */
  TM_SESSION_RESTARTS,    /* counter: session actors restarted on a live socket */
  TM_MESSAGES,            /* counter: messages committed */
  TM_SLOW_CLIENTS,        /* counter: closed with 1008 */
  TM_RATE_LIMITED,        /* counter */
  TM_DB_ERRORS,           /* counter: requests answered `unavailable` */
  TM_DB_QUERIES,          /* counter */
  TM_DB_RTT_US_SUM,       /* counter: microseconds spent in queries */
  TM_COUNT
};
void tm_add(int metric, long delta);
long tm_get(int metric);
/* The Prometheus text exposition (version 0.0.4); malloc'd. */
char *telemetry_render(size_t *len);
/* For /healthz: the tree's named actors are alive and the database answers. */
bool app_healthy(void);

/* ------------------------------------------------------- the actors */

const act_behaviour_t *repo_conn_behaviour(void);   /* repo.c */
const act_behaviour_t *pubsub_behaviour(void);      /* pubsub.c */
const act_behaviour_t *presence_behaviour(void);    /* presence.c */
const act_behaviour_t *session_behaviour(void);     /* session.c */
const act_behaviour_t *acceptor_behaviour(void);    /* endpoint.c */
const act_behaviour_t *telemetry_behaviour(void);   /* telemetry.c */

/* The repo connection actor i (0 = writer) and a reader for round-robin. */
act_pid_t repo_writer(void);
act_pid_t repo_reader(void);
bool repo_database_up(void); /* the writer's view: for /healthz */
bool presence_ready(void);     /* the users list is loaded */
void repo_mark_migrated(void); /* main applied the migrations at start */
bool repo_migration_idle(void); /* no migration queued or running on the pool */

#endif
