/*
 * conn.h -- private to the endpoint's files: the connection record and the
 * calls between the four of them.  Sessions use endpoint.h, never this.
 *
 *   listener.c  the listening socket and the accept policy: descriptors
 *               reserved below RLIMIT_NOFILE, connections per process and
 *               per source address, what happens at EMFILE (no spinning)
 *   conn.c      one socket's I/O, its bounds and its timers: HTTP header,
 *               idle, keep-alive and send timeouts, unsent HTTP bytes and
 *               pipelining (back-pressure), the WebSocket stall bound, and
 *               the session-facing calls of endpoint.h
 *   routes.c    what an HTTP request is answered: static files, /healthz,
 *               /metrics, the /ws upgrade with its Host and Origin checks
 *   endpoint.c  the acceptor actor that owns a scheduler's conns, and the
 *               glue to the sessions supervisor
 */
#ifndef CHATTER_CONN_H
#define CHATTER_CONN_H

#include "endpoint.h"
#include "http.h"
#include "ws.h"

#include <sys/socket.h>

#define ENDPOINT_MAX_SCHEDULERS 256
/* conns by id: ids are sequential, so a chain holds conns / buckets; 16,384
 * buckets (128 KiB per scheduler) keep it at about one at 19,000 sockets.
 * conn_get runs once per push per socket: with 4,096 buckets it was 2.7% of
 * the server's cycles during a 19,000-session join ramp (perf), the largest
 * user-space symbol. */
#define ENDPOINT_TABLE_BUCKETS 16384

typedef struct listener listener_t;

/* One scheduler's acceptor: its listener, its conns by id, and the list of
 * idle HTTP conns (accepted or kept alive, no request under way, nothing
 * unsent), oldest first: the ones given up when descriptors run short, as
 * nginx drains its "reusable" connections. */
/* The acceptor's lists of conns (idle, dirty, ping): intrusive and doubly
 * linked, since a conn leaves any of them from the middle in O(1), which
 * queue.h (singly linked on purpose) does not give.  Each goes through its
 * own conn_link_t in the conn (conn.c: clist_push, clist_del). */
typedef struct conn_list {
  conn_t *head, *tail;
} conn_list_t;

typedef struct acceptor {
  act_pid_t self;
  listener_t *listener;
  int sched;
  conn_t *table[ENDPOINT_TABLE_BUCKETS];
  size_t nconns;
  conn_list_t idle;         /* HTTP conns with no request under way */
  conn_list_t dirty;        /* WebSockets with frames queued since the last flush */
  uv_prepare_t *flusher;    /* flushes them once per loop turn (own allocation) */
  struct sendbatch *batch;  /* their sends, many per system call (sendbatch.h) */
  /* open WebSockets by ping due, oldest first, and the one timer that
   * pings them (own allocation; conn.c "Timers") */
  conn_list_t ping;
  uv_timer_t *pinger;
  act_pid_t sessions_pid;   /* the sessions supervisor our sessions live under */
  act_ref_t sessions_mon;   /* its monitor */
  bool draining;            /* SIGTERM: no listener; conns close when done */
} acceptor_t;

/* ---- endpoint.c ---- */
acceptor_t *endpoint_local_acceptor(void);
/* Asks the sessions supervisor for this conn's session (answer: acc_handle). */
void endpoint_start_session(conn_t *c);

/* ---- conn.c ---- */
/* Takes an accepted socket (non-blocking); peer is its rate-limit key. The
 * caller has counted it in (listener_admit); the conn counts it out. */
void conn_open(acceptor_t *a, int fd, const char *peer);
uint64_t conn_id(const conn_t *c);
/* sizeof the conn record, which every socket holds from accept to close
 * (test_conn_mem keeps it at or under CONN_RECORD_MAX_BYTES). */
size_t conn_record_bytes(void);
/* What a socket's conn_t may cost, in bytes before malloc's 8-byte header
 * and 16-byte rounding.  968 (a 976-byte chunk) before the branch memory2;
 * 920 once flags no longer sat between wider fields (29 bytes of holes in
 * conn_t and conn_state_t) and the peer key had 32 bytes, not 48 (it uses
 * at most 25); 792 (an 800-byte chunk) once the uv_timer_t (152 bytes) left
 * the record: an idle WebSocket is pinged by its scheduler's one pinger, and
 * a conn's own timer is allocated only while a deadline is set (conn.c
 * "Timers").  Its largest parts now: uv_tcp_t 248, conn_state_t 336. */
#define CONN_RECORD_MAX_BYTES 792
/* Closes the oldest idle HTTP conn of a; false if there is none. */
bool conn_evict_idle(acceptor_t *a);
/* Every conn of a, at once (the acceptor exits). */
void conn_close_all(acceptor_t *a);
/* The write coalescer: started with the acceptor, closed with it. */
int conn_flusher_open(acceptor_t *a);
void conn_flusher_close(acceptor_t *a);
/* The sessions supervisor could not start this conn's session: 1011. */
void conn_session_failed(uint64_t conn_id, int err);
/* Every WebSocket of a, closed with code (their sessions are gone). */
void conn_close_upgraded(acceptor_t *a, uint16_t code, const char *why);
/* Presence says another socket took this conn's name over. */
void conn_take_over(uint64_t conn_id);
/* The drain (endpoint.h): close what is idle now, the rest when done;
 * force: every WebSocket now, request in flight or not. */
void conn_drain(acceptor_t *a, bool force);
/* Presence's rebuild (presence.h CONN_OWED_ASK): the ids of a's joined,
 * open sockets whose session has not seen presence `incarnation` yet, up
 * to cap into out; returns how many there are.  O(buckets + conns). */
size_t conn_owed_retrack(acceptor_t *a, int64_t incarnation, uint64_t *out, size_t cap);

/* ---- routes.c ---- */
typedef enum route_action {
  ROUTE_KEEP,    /* answered; the connection stays open for the next request */
  ROUTE_CLOSE,   /* answered with Connection: close */
  ROUTE_UPGRADE, /* 101 written into the buffer: the conn becomes a WebSocket */
} route_action_t;
route_action_t routes_answer(const http_req_t *r, act_buf_t *out);
int endpoint_static_open(const char *root);

/* ---- listener.c ---- */
/* Listens on the configured HOST:PORT (SO_REUSEPORT, one per scheduler);
 * accepted sockets go to conn_open on this acceptor. NULL and *err on error. */
listener_t *listener_open(acceptor_t *a, int *err);
void listener_close(listener_t *l);
/* A descriptor came back: accept again if accepting was paused at EMFILE. */
void listener_resume(listener_t *l);
/* A conn's descriptor and its source address are given back. */
void listener_release(const char *peer);
/* The source address as a rate-limit key, at most CONN_PEER_MAX with its NUL
 * (endpoint.h): IPv4 as is, IPv6 as its /64. */
void listener_peer_key(const struct sockaddr_storage *ss, char *out, size_t cap);
/* The process-wide connection cap in force (descriptor limit - reserve). */
long listener_max_conns(void);

#endif
