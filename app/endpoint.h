/*
 * endpoint.h -- the socket side of a WebSocket, as the session sees it.
 *
 * A conn lives on one scheduler's loop, owned by that scheduler's acceptor
 * actor, and outlives the session actor that serves it: when a session
 * crashes, its supervisor starts a new one on the same scheduler with the
 * same conn id, and the new actor re-attaches.  What must survive a crash
 * is therefore kept here, in conn_state_t: who the user is, whether the
 * socket has joined, the last seq and presence version it was sent, the
 * rate limiter, and the request being handled.
 *
 * Thread rule: a conn is touched only on its scheduler's thread -- by the
 * acceptor's libuv callbacks and by the session attached to it, which runs
 * on the same scheduler.  Sessions hold the id, never the pointer, across
 * messages: conn_get() answers NULL once the socket is gone.
 */
#ifndef CHATTER_ENDPOINT_H
#define CHATTER_ENDPOINT_H

#include "app.h"
#include "protocol.h"
#include "ws.h"

/* One acceptor per scheduler (endpoint.c), under the supervisor "endpoint". */
const act_behaviour_t *acceptor_behaviour(void);

/* Requests a client may have queued while the previous one is handled, and
 * their bytes: past either, the client is not waiting for replies and the
 * socket is closed with 1008. */
#define CONN_MAX_QUEUED_FRAMES 512
#define CONN_MAX_QUEUED_BYTES (1024 * 1024)

typedef struct conn conn_t;

/* The longest rate-limit key listener.c makes, with its NUL: an IPv6 /64 is
 * at most "ffff:ffff:ffff:ffff::/64" (24 characters; the low 64 bits are
 * zeroed, so no dotted IPv4 tail), IPv4 at most 15.  32, not 48: 16 bytes
 * less in every conn_t (test_conn_mem checks a key of each kind fits). */
#define CONN_PEER_MAX 32

/* Widest fields first, flags together, strings last: as declared before
 * (flags between 8-byte fields) it had 11 bytes of holes (gdb ptype /o). */
typedef struct conn_state {
  int64_t presence_version;    /* last presence event the socket saw */
  int64_t last_seq;            /* highest message seq sent to the socket */
  uint64_t rl_at_ms;
  float rl_tokens;             /* rate limiter: burst 10, 5 per second (a
                                  float: 0 to 10 need no more, and its 4
                                  bytes pay for diff_at_ms) */
  /* when its last presence_diff left: monotonic ms mod 2^32 (read it with
   * conn_ms_since_diff, a difference), stamped when handed over (conn_send_diff) and again when
   * written, so that PROTOCOL.md's 50 ms between two diffs holds on the
   * wire, not only at the hand-off (a write waits for the end of the
   * scheduler's batch of turns), and across a session restart (this state
   * outlives the session) */
  uint32_t diff_at_ms;
  uint32_t session_starts;     /* > 1: a restart */
  bool welcomed;               /* the welcome frame went out */
  bool joined;
  bool head_crashed;           /* CHATTER_CHAOS: this request crashed us once */
  char user_id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
  char token[64];
  char phx_ref[32];
  char peer[CONN_PEER_MAX];    /* the source address as a rate-limit key:
                                  IPv4 dotted, IPv6 its /64 ("2001:db8::/64") */
} conn_state_t;

conn_t *conn_get(uint64_t conn_id);
conn_state_t *conn_state(conn_t *c);
act_pid_t conn_acceptor(const conn_t *c);

/* The session takes the socket: queued requests are delivered to it one at
 * a time as CONN_FRAME messages. */
void conn_attach(conn_t *c, act_pid_t session);
void conn_detach(conn_t *c, act_pid_t session);

/* The request being handled (valid until conn_frame_done). */
const char *conn_frame(conn_t *c, size_t *len);
/* Its reply was sent: drop it and deliver the next one. */
void conn_frame_done(conn_t *c);

/* Frames to the client.  false: the socket is closing (e.g. 1008 because
 * the client cannot keep up) and nothing more will be sent.  Replies and
 * snapshots (json, str, snapshot) are outside the 256 KiB push bound, since
 * one may be larger; pushes (shared) are inside it.  Both are under the send
 * timeout (CHATTER_SEND_TIMEOUT_MS, conn.c): bytes the client leaves unread
 * that long close it with 1008, whatever they are.  Frames leave at the end
 * of the scheduler's batch of turns, several in one write. */
bool conn_send_json(conn_t *c, const char *json, size_t len);
bool conn_send_str(conn_t *c, proto_str s); /* frees s */
bool conn_send_snapshot(conn_t *c, ws_shared_t *frame);
bool conn_send_shared(conn_t *c, ws_shared_t *frame, size_t from_part);
/* A presence_diff: conn_send_shared, and diff_at_ms stamped now and when
 * the frame is written. */
bool conn_send_diff(conn_t *c, ws_shared_t *frame);
/* Milliseconds since the socket's last presence_diff left (diff_at_ms). */
uint32_t conn_ms_since_diff(conn_t *c);
/* The client has not read what it was sent: hold further catch-up pages. */
bool conn_backlogged(conn_t *c);
void conn_close(conn_t *c, uint16_t code, const char *why);

/* ---- the SIGTERM drain (main.c, issue 9 §2) ----
 * ENDPOINT_DRAIN, a call from main to each acceptor, answered
 * ENDPOINT_DRAINING once its listening socket is closed (a new connect is
 * refused from then on, not queued): idle HTTP connections close at once,
 * busy ones after their response; a WebSocket closes with 1001 at once, or,
 * if its session is handling a request, right after that request's reply
 * (a `send` is answered `sent` or `unavailable` first).
 * ENDPOINT_DRAIN_FORCE: the drain time is up: every WebSocket 1001 now. */
enum { ENDPOINT_DRAIN = 650, ENDPOINT_DRAINING, ENDPOINT_DRAIN_FORCE };
/* Sockets held by the endpoint, process-wide (listener.c). */
long endpoint_open_conns(void);

#endif
