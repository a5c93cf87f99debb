/*
 * app.h -- the few things every app file shares: configuration (read once,
 * in config.c), logging, the registered names of the tree's actors.
 *
 * What each actor is told, and answers, is in its own header: repo.h,
 * pubsub.h, presence.h, session.h, endpoint.h (the acceptor and the socket
 * side), dashboard.h; telemetry.h holds the counters behind /metrics
 * (atomics any thread adds to: no actor).  The pure libraries -- no actor, no
 * global state, callable from any thread -- are http.h, ws.h, protocol.h,
 * db.h and unicode.h.
 *
 * The tree (DESIGN.md):
 *
 *   chatter (one_for_one)
 *   ├── repo        supervisor over the connection actors repo.0 .. repo.N-1
 *   │               (repo.0 is the single writer; reads go to the others)
 *   ├── pubsub      topic -> subscribers; frames shared by reference count
 *   ├── presence    who is online; the users list; versioned events
 *   ├── sessions    dynamic supervisor, one transient session per WebSocket
 *   └── endpoint    supervisor over one acceptor per scheduler (SO_REUSEPORT)
 *
 * DESIGN.md's tree has a telemetry actor too; here the counters are atomics
 * (telemetry.c) and /metrics is rendered by whoever serves it (metrics.c),
 * so an actor would handle nothing (issue 9: dead code removed).
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
  int chaos_restart_ms;     /* CHATTER_CHAOS_RESTART_MS (0, at most 10 s): a
                               session restarted after a crash waits this long
                               before it catches up, so that a test can make a
                               restart span several diff windows */
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
  bool io_uring;            /* CHATTER_IO_URING, default 1: pushes leave many
                               per system call (sendbatch.c); 0 = one send(2)
                               each, as where io_uring is refused */
  int ws_sndbuf;            /* CHATTER_WS_SNDBUF, default 256 KiB; 0 = the
                               kernel's autotuning (conn.c, upgrade) */
  char allowed_origins[2048]; /* CHATTER_ALLOWED_ORIGINS: comma list, "*" = any */
  char allowed_hosts[2048];   /* CHATTER_ALLOWED_HOSTS: comma list, "*" = any */
  int shutdown_ms;          /* CHATTER_SHUTDOWN_MS, default 10 s: the SIGTERM
                               drain's bound (main.c) */
  /* Operations */
  bool debug;               /* CHATTER_DEBUG set, not empty and not "0":
                               POST /debug/kill, and the dashboard's controls
                               for every peer under CHATTER_DASHBOARD=auto */
  char dashboard[16];       /* CHATTER_DASHBOARD: off|read|control|auto
                               ("" = auto); dashboard.c parses it */
  int db_timeout_ms;        /* CHATTER_DB_TIMEOUT_MS, 100 ms to 60 s, default
                               DB_QUERY_TIMEOUT_MS (db.h): a query's deadline */
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
#define APP_NAME_ENDPOINT "endpoint"

/* Message types: each actor's header numbers its own in a range of 100
 * (repo.h 100, pubsub.h 200, presence.h 300, session.h and endpoint.h 400),
 * so that a stray message is never mistaken for another actor's. */

/* ------------------------------------ the SIGTERM drain (main.c, issue 9 §2) */

/* main -> repo.0 when the drain time is up: drop the connection, so that
 * every insert queued or in flight is answered `unavailable` now. */
enum { REPO_ABANDON = 660 };
bool repo_writer_idle(void); /* no insert queued or in flight on the writer */
int repo_fence_pid(void);    /* a writer backend that may still commit, 0 if none */

#endif
