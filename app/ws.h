/* ws.h: one server-side WebSocket connection (RFC 6455: frames coded by
 * wslay's frame layer, messages by our own layer above it), and the shared
 * pre-framed buffer PubSub broadcasts with. Socket-free.
 *
 * What it is for: after http_ws_handshake() answered 101, the endpoint turns
 * the socket's bytes into complete text messages and the session's replies
 * and pushes into frames, applying PROTOCOL.md's close-code rules:
 *   a message over WS_MAX_MESSAGE bytes (after reassembly)  -> close 1009
 *   a binary frame                                          -> close 1003
 *   text that is not valid UTF-8                            -> close 1007
 *   a client that cannot keep up (WS_OUTBOUND_MAX queued)   -> close 1008
 *   a close frame with a bad code / a reason not UTF-8      -> close 1002 / 1007
 *   any other framing error (RSV bits, reserved opcode, unmasked, a control
 *     frame over 125 bytes or fragmented, a 64-bit length with the top bit,
 *     a continuation with nothing to continue, a new message inside one)
 *                                                           -> close 1002
 * Pings are answered, pongs timed, the close handshake completed (the
 * peer's close code is echoed).
 *
 * How the endpoint drives it (all on the connection's loop thread; the only
 * thread-safe part is ws_shared_t's reference count):
 *   - on read:    ws_conn_feed(c, buf, n, uv_now(loop)); each complete text
 *                 message arrives through the on_text callback, in order.
 *   - to send:    ws_conn_send_text() (copied) or ws_conn_send_shared()
 *                 (referenced); WS_OVERFLOW means the connection is now
 *                 closing with 1008 and the session should be told.
 *   - after any of the above: if no write is in flight and
 *                 ws_conn_output(c, iov, n) returns k > 0, uv_write those k
 *                 buffers (on Unix uv_buf_t and struct iovec have the same
 *                 layout: {base, len}); in the write callback call
 *                 ws_conn_output_done(c) and repeat.
 *   - ws_conn_finished(c): the close handshake is over (or failed) and every
 *                 byte is written: uv_close the socket, then ws_conn_free().
 *   - every 30 s: if ws_conn_awaiting_pong(c), the last ping went
 *                 unanswered: ws_conn_close(c, 1001, "ping timeout") and arm
 *                 a short timer to close the socket if finished never comes;
 *                 otherwise ws_conn_ping(c, now).
 */
#ifndef CHATTER_WS_H
#define CHATTER_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Largest message accepted from a client, after reassembling fragments. */
#define WS_MAX_MESSAGE   65536u
/* A message under way is reassembled into one buffer grown in steps of this
 * many bytes as its payload arrives: a connection holds at most its partial
 * payload + WS_RX_STEP - 1 bytes for it (whatever the number of fragments,
 * each of which costs nothing), and nothing between messages.  A message
 * that comes whole in one read is delivered from the decoder's buffer and
 * needs no reassembly buffer at all. */
#define WS_RX_STEP       4096u
/* What a connection holds, besides its reassembly buffer, while a frame is
 * part read: wslay's frame context (a 4 KiB input buffer and its state),
 * taken from a per-thread pool and given back at the next frame boundary.
 * An idle connection holds none (measured: README "Memory"). */
#define WS_DECODER_BYTES 4608u
/* Bytes a connection may hold for its peer, queued or in an unfinished
 * uv_write. A frame that would go beyond it closes the connection with 1008:
 * a slow client costs at most this much memory, never more. */
#define WS_OUTBOUND_MAX  (256u * 1024)
/* Shared frames larger than WS_OUTBOUND_MAX (presence diffs of a mass join
 * or leave) and replies a connection may hold besides: one such frame is
 * always taken while the pushes are under WS_OUTBOUND_MAX, more only up to
 * this.  They are shared by every socket, so what one slow socket pins is
 * mostly what the others are sending too. */
#define WS_OUTBOUND_BIG_MAX (4u * 1024 * 1024)

/* Close codes of RFC 6455 section 7.4.1 that this server sends. */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,      /* binary frame */
    WS_CLOSE_INVALID_DATA = 1007,     /* not UTF-8 */
    WS_CLOSE_POLICY = 1008,           /* cannot keep up */
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

typedef enum ws_status {
    WS_OK = 0,
    WS_CLOSING = 1,    /* a close was sent or received: nothing more is sent */
    WS_OVERFLOW = 2,   /* this send would exceed WS_OUTBOUND_MAX: closing with 1008 */
    WS_NOMEM = -1,     /* out of memory: the connection is finished */
} ws_status_t;

/* ---- shared frames: encode once, deliver many ----
 * A complete, unmasked text frame built once and
 * referenced by every connection it is queued on. Reference counts are atomic:
 * the last release, on whichever thread, frees it. */
typedef struct ws_shared ws_shared_t;

/* Frames payload (already-encoded JSON) as one text frame; refcount 1. */
ws_shared_t *ws_shared_text(const char *payload, size_t len);
/* n text frames back to back in one buffer (n >= 1; NULL when out of
 * memory), each part tagged by the caller (the app: a message's seq, in
 * increasing order).  Queued whole, they go out in one iovec entry: a
 * committed batch of k messages costs a subscriber one event and one
 * segment instead of k; ws_conn_send_shared_from() queues a suffix, for a
 * connection that already has the first parts. */
typedef struct ws_text { const char *ptr; size_t len; int64_t tag; } ws_text_t;
typedef struct ws_shared_part { size_t off; int64_t tag; } ws_shared_part_t;
ws_shared_t *ws_shared_texts(const ws_text_t *texts, size_t n);
size_t ws_shared_nparts(const ws_shared_t *s);
int64_t ws_shared_tag(const ws_shared_t *s, size_t part);
ws_shared_t *ws_shared_retain(ws_shared_t *s);
/* Drops one reference; true when this call freed the buffer. */
bool ws_shared_release(ws_shared_t *s);
/* For tests only (test_ws.c): nothing in app/ calls it. */
const uint8_t *ws_shared_frame(const ws_shared_t *s, size_t *len); /* the wire bytes */
/* For tests only (test_ws.c): nothing in app/ calls it. */
const char *ws_shared_payload(const ws_shared_t *s, size_t *len);  /* NUL-terminated */
long ws_shared_live(void); /* buffers alive in the process (metrics, tests) */

/* ---- a connection ---- */
typedef struct ws_conn ws_conn_t;

/* A complete text message (valid UTF-8, at most WS_MAX_MESSAGE bytes). msg is
 * NOT NUL-terminated and is only valid during the call. The callback may
 * send or close on the connection, but must not free it. */
typedef void (*ws_on_text_fn)(void *user, const char *msg, size_t len);

ws_conn_t *ws_conn_new(ws_on_text_fn on_text, void *user, uint64_t now_ms);
/* Frees the connection and releases the shared frames it still holds. Only
 * once no uv_write of its buffers is outstanding (e.g. in the uv_close cb). */
void ws_conn_free(ws_conn_t *c);

/* Bytes read from the socket (after the handshake; include whatever followed
 * the HTTP request in the same read). Returns WS_OK, WS_CLOSING once a close
 * is under way (a code of ours: ws_conn_close_code) or WS_NOMEM. */
ws_status_t ws_conn_feed(ws_conn_t *c, const void *data, size_t len, uint64_t now_ms);

/* For tests only (test_ws.c): nothing in app/ calls it. */
ws_status_t ws_conn_send_text(ws_conn_t *c, const char *msg, size_t len);
/* Queues s by reference (retained here, released once written or freed).
 * WS_OVERFLOW (and a close with 1008) when it would take the queue past
 * WS_OUTBOUND_MAX; a frame larger than the bound is taken outside it, as a
 * reply, while the pushes queued are under it and within
 * WS_OUTBOUND_BIG_MAX of such frames (one is always taken). */
ws_status_t ws_conn_send_shared(ws_conn_t *c, ws_shared_t *s);
/* The parts of s from `part` on (0: all of it), counted against the bound. */
ws_status_t ws_conn_send_shared_from(ws_conn_t *c, ws_shared_t *s, size_t part);
/* Replies (and snapshots) are not counted against WS_OUTBOUND_MAX: one may
 * legitimately be larger (500 messages of 2,000 characters).  They are
 * bounded by the caller instead: the endpoint gives the session no new
 * request while ws_conn_queued_bytes() is at or above WS_OUTBOUND_MAX. */
ws_status_t ws_conn_send_reply(ws_conn_t *c, const char *msg, size_t len);
ws_status_t ws_conn_send_reply_shared(ws_conn_t *c, ws_shared_t *s);
/* Sends a ping; ws_conn_awaiting_pong() is true until a pong arrives. */
ws_status_t ws_conn_ping(ws_conn_t *c, uint64_t now_ms);
/* Starts the close handshake (reason: at most 123 bytes of UTF-8, or NULL). */
ws_status_t ws_conn_close(ws_conn_t *c, uint16_t code, const char *reason);

bool ws_conn_closing(const ws_conn_t *c);
/* Code of the close frame we sent: 0 before one is sent, 1005 if it had none. */
/* For tests only (test_ws.c): nothing in app/ calls it. */
uint16_t ws_conn_close_code(const ws_conn_t *c);
/* Code of the close frame the peer sent: 0 if none, 1005 if it had none. */
/* For tests only (test_ws.c): nothing in app/ calls it. */
uint16_t ws_conn_peer_close_code(const ws_conn_t *c);
/* For tests only (test_ws.c): nothing in app/ calls it. */
uint64_t ws_conn_last_pong(const ws_conn_t *c);  /* ms; creation time until a pong */
bool ws_conn_awaiting_pong(const ws_conn_t *c);
size_t ws_conn_queued_bytes(const ws_conn_t *c); /* counted against WS_OUTBOUND_MAX */
/* Heap bytes the receiving side holds (the reassembly buffer's capacity):
 * at most the partial message's payload + WS_RX_STEP - 1. */
/* For tests only (test_ws.c, ws_fuzz.c): nothing in app/ calls it. */
size_t ws_conn_input_bytes(const ws_conn_t *c);

/* Moves up to max queued buffers into the write in flight and describes them
 * in iov; returns how many (0: nothing to write, or a write is in flight).
 * The buffers stay valid until ws_conn_output_done(). */
size_t ws_conn_output(ws_conn_t *c, struct iovec *iov, size_t max);
/* The write in flight completed: its buffers are released. */
void ws_conn_output_done(ws_conn_t *c);
/* True when the socket should be closed: close frames exchanged (or the
 * connection failed) and every queued byte written. */
bool ws_conn_finished(const ws_conn_t *c);

#endif
