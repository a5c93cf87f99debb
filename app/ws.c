/* ws.c: server WebSocket connections over wslay's event API, and shared
 * pre-framed text buffers (see ws.h for how the endpoint drives them).
 *
 * How the pieces fit:
 *   - input: ws_conn_feed() points wslay's recv callback at the caller's
 *     bytes and runs wslay_event_recv(); wslay unmasks, reassembles fragments,
 *     enforces WS_MAX_MESSAGE (1009), checks UTF-8 (1007), answers pings and
 *     closes; we refuse binary frames (1003) and time pongs.
 *   - output: wslay's send callback always accepts everything, appending to
 *     our own queue of segments, and we run wslay_event_send() after every
 *     queueing call. So wslay never holds a half-sent frame between calls and
 *     a shared frame can go into the same queue without breaking a frame or
 *     reordering replies. The queue (pending + in flight) is what
 *     WS_OUTBOUND_MAX bounds.
 */
#include "ws.h"

#include "unicode.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <wslay/wslay.h>

/* Owned segments are allocated at least this large so the 2-10 byte frame
 * header wslay sends and the payload after it, and runs of small replies,
 * share one buffer and one iovec. */
#define WS_SEG_MIN 2048u
/* Worst-case frame header for a server (unmasked) frame: 2 + 8 bytes. */
#define WS_HEADER_MAX 10u

/* ------------------------------------------------------------ shared frames */

struct ws_shared {
    atomic_long refs;
    size_t frame_len;
    size_t payload_off, payload_len;
    uint8_t bytes[];   /* frame_len bytes of frame, then a NUL after the payload */
};

static atomic_long shared_live;

/* Where wslay's frame layer writes while we build a shared frame. */
typedef struct frame_sink {
    uint8_t *buf;
    size_t len, cap;
} frame_sink_t;

static ssize_t sink_send(const uint8_t *data, size_t len, int flags, void *user)
{
    frame_sink_t *s = user;
    (void)flags;
    if (len > s->cap - s->len)
        return WSLAY_ERR_INVALID_ARGUMENT; /* cannot happen: cap = header max + payload */
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    return (ssize_t)len;
}

/* Frames payload as one unmasked text frame into sink with wslay_frame_send. */
static int build_text_frame(frame_sink_t *sink, const char *payload, size_t len)
{
    struct wslay_frame_callbacks cbs = {.send_callback = sink_send};
    wslay_frame_context_ptr fctx;
    if (wslay_frame_context_init(&fctx, &cbs, sink) != 0)
        return -1;
    struct wslay_frame_iocb iocb = {
        .fin = 1, .opcode = WSLAY_TEXT_FRAME, .mask = 0,
        .payload_length = len, .data = (const uint8_t *)payload, .data_length = len,
    };
    /* Our sink takes everything, so one call normally sends the whole frame;
     * the loop only guards against wslay sending it in pieces. */
    size_t sent = 0;
    int rc = 0;
    do {
        ssize_t r = wslay_frame_send(fctx, &iocb);
        if (r < 0 || (r == 0 && len > 0)) {
            rc = -1;
            break;
        }
        sent += (size_t)r;
        iocb.data += r;
        iocb.data_length -= (size_t)r;
    } while (sent < len);
    wslay_frame_context_free(fctx);
    return rc;
}

ws_shared_t *ws_shared_text(const char *payload, size_t len)
{
    size_t cap = WS_HEADER_MAX + len;
    ws_shared_t *s = malloc(sizeof *s + cap + 1);
    if (!s)
        return NULL;
    frame_sink_t sink = {.buf = s->bytes, .len = 0, .cap = cap};
    if (build_text_frame(&sink, payload, len) != 0) {
        free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->frame_len = sink.len;
    s->payload_len = len;
    s->payload_off = sink.len - len;
    s->bytes[sink.len] = '\0';
    atomic_fetch_add_explicit(&shared_live, 1, memory_order_relaxed);
    return s;
}

ws_shared_t *ws_shared_retain(ws_shared_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

bool ws_shared_release(ws_shared_t *s)
{
    /* acq_rel: every holder's last use happens before the free. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return false;
    free(s);
    atomic_fetch_sub_explicit(&shared_live, 1, memory_order_relaxed);
    return true;
}

const uint8_t *ws_shared_frame(const ws_shared_t *s, size_t *len)
{
    *len = s->frame_len;
    return s->bytes;
}

const char *ws_shared_payload(const ws_shared_t *s, size_t *len)
{
    *len = s->payload_len;
    return (const char *)s->bytes + s->payload_off;
}

long ws_shared_live(void)
{
    return atomic_load_explicit(&shared_live, memory_order_relaxed);
}

/* ------------------------------------------------------------ output queue */

/* Whole frames waiting for the socket: either bytes we own or a reference to
 * a shared frame. */
typedef struct seg {
    struct seg *next;
    ws_shared_t *shared;  /* non-NULL: the bytes are the shared frame's */
    bool exempt;          /* a reply: outside the WS_OUTBOUND_MAX bound */
    size_t len, cap;
    uint8_t bytes[];
} seg_t;

typedef struct seg_list {
    seg_t *head, *tail;
    size_t bytes;
    size_t exempt_bytes; /* of which replies */
} seg_list_t;

struct ws_conn {
    wslay_event_context_ptr ctx;
    ws_on_text_fn on_text;
    void *user;
    const uint8_t *in;      /* the bytes of the feed under way */
    size_t in_len;
    uint64_t now_ms, last_pong_ms;
    bool awaiting_pong;
    bool close_queued;      /* we queued a close (ours, not wslay's own) */
    bool failed;            /* out of memory or wslay failed: finish now */
    seg_list_t pending;     /* not yet handed to the endpoint */
    seg_list_t inflight;    /* in the endpoint's uv_write */
};

static const uint8_t *seg_data(const seg_t *s)
{
    return s->shared ? s->shared->bytes : s->bytes;
}

static void seg_free(seg_t *s)
{
    if (s->shared)
        ws_shared_release(s->shared);
    free(s);
}

static void list_push(seg_list_t *l, seg_t *s)
{
    s->next = NULL;
    if (l->tail)
        l->tail->next = s;
    else
        l->head = s;
    l->tail = s;
    l->bytes += s->len;
    if (s->exempt)
        l->exempt_bytes += s->len;
}

static void list_clear(seg_list_t *l)
{
    for (seg_t *s = l->head, *next; s; s = next) {
        next = s->next;
        seg_free(s);
    }
    l->head = l->tail = NULL;
    l->bytes = 0;
    l->exempt_bytes = 0;
}

/* Appends bytes we own to the pending queue, into the tail segment if it
 * has room. */
static int out_append(ws_conn_t *c, const uint8_t *data, size_t len)
{
    seg_t *t = c->pending.tail;
    if (!t || t->shared || t->cap - t->len < len) {
        size_t cap = len > WS_SEG_MIN ? len : WS_SEG_MIN;
        t = malloc(sizeof *t + cap);
        if (!t)
            return -1;
        t->shared = NULL;
        t->exempt = false;
        t->len = 0;
        t->cap = cap;
        list_push(&c->pending, t);
    }
    memcpy(t->bytes + t->len, data, len);
    t->len += len;
    c->pending.bytes += len;
    return 0;
}

size_t ws_conn_queued_bytes(const ws_conn_t *c)
{
    return c->pending.bytes + c->inflight.bytes;
}

/* What counts against WS_OUTBOUND_MAX: everything but replies.  Replies
 * are bounded by their requester instead (the endpoint hands the session
 * no new request while the queue is full). */
static size_t bounded_bytes(const ws_conn_t *c)
{
    return ws_conn_queued_bytes(c) - c->pending.exempt_bytes - c->inflight.exempt_bytes;
}

/* ------------------------------------------------------------ wslay callbacks */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user)
{
    ws_conn_t *c = user;
    (void)flags;
    if (c->in_len == 0) { /* this feed is used up: wslay keeps its partial state */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->in_len ? len : c->in_len;
    memcpy(buf, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *user)
{
    ws_conn_t *c = user;
    (void)flags;
    if (out_append(c, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        c->failed = true;
        return -1;
    }
    return (ssize_t)len;
}

/* Fails the connection from the receiving side: send code, read no more. */
static void fail_with(ws_conn_t *c, uint16_t code, const char *reason)
{
    wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason,
                            reason ? strlen(reason) : 0);
    c->close_queued = true;
    wslay_event_shutdown_read(c->ctx);
}


/* Refuses a binary message at its first frame, before wslay buffers it. */
static void on_frame_start_cb(wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_start_arg *arg,
                              void *user)
{
    (void)ctx;
    if (arg->opcode == WSLAY_BINARY_FRAME)
        fail_with(user, WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
}

static void on_msg_cb(wslay_event_context_ptr ctx,
                      const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    ws_conn_t *c = user;
    (void)ctx;
    if (arg->opcode == WSLAY_PONG) {
        c->last_pong_ms = c->now_ms;
        c->awaiting_pong = false;
        return;
    }
    if (c->close_queued || arg->opcode != WSLAY_TEXT_FRAME)
        return; /* after our close, data is discarded; pings/closes are wslay's */
    /* wslay checks text too; this re-check (unicode.c's strict validator,
     * the protocol's own) keeps the 1007 rule from resting on a library
     * detail, for one pass over at most WS_MAX_MESSAGE bytes. */
    if (!utf8_valid((const char *)arg->msg, arg->msg_length)) {
        fail_with(c, WS_CLOSE_INVALID_DATA, NULL);
        return;
    }
    /* wslay gives NULL for an empty message; callers get a valid pointer. */
    c->on_text(c->user, arg->msg ? (const char *)arg->msg : "", arg->msg_length);
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start_cb,
    .on_msg_recv_callback = on_msg_cb,
};

/* ------------------------------------------------------------ connection */

ws_conn_t *ws_conn_new(ws_on_text_fn on_text, void *user, uint64_t now_ms)
{
    ws_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (wslay_event_context_server_init(&c->ctx, &wslay_cbs, c) != 0) {
        free(c);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, WS_MAX_MESSAGE);
    c->on_text = on_text;
    c->user = user;
    c->now_ms = c->last_pong_ms = now_ms;
    return c;
}

void ws_conn_free(ws_conn_t *c)
{
    if (!c)
        return;
    list_clear(&c->pending);
    list_clear(&c->inflight);
    wslay_event_context_free(c->ctx);
    free(c);
}

bool ws_conn_closing(const ws_conn_t *c)
{
    return c->failed || c->close_queued || wslay_event_get_close_sent(c->ctx) ||
           wslay_event_get_close_received(c->ctx);
}

/* A slow client: drop the frames it has not started receiving (whole frames,
 * so the stream stays valid), tell it 1008, and read no more. */
static void overflow(ws_conn_t *c)
{
    list_clear(&c->pending);
    fail_with(c, WS_CLOSE_POLICY, "cannot keep up");
    if (wslay_event_send(c->ctx) != 0)
        c->failed = true;
}

/* Moves everything wslay has queued into our queue, then enforces the bound
 * on what wslay produced by itself (pongs to a ping flood). Once closing,
 * nothing is dropped: the close frame is already in the queue, and nothing
 * more can be added to it. */
static void flush(ws_conn_t *c)
{
    if (wslay_event_send(c->ctx) != 0)
        c->failed = true;
    if (!ws_conn_closing(c) && bounded_bytes(c) > WS_OUTBOUND_MAX)
        overflow(c);
}

ws_status_t ws_conn_feed(ws_conn_t *c, const void *data, size_t len, uint64_t now_ms)
{
    c->now_ms = now_ms;
    c->in = data;
    c->in_len = len;
    /* Once reading is off (a close either way), later bytes are dropped. On a
     * framing error wslay has queued a close itself and stopped reading; only
     * running out of memory leaves nothing to say to the peer. */
    if (!c->failed && wslay_event_get_read_enabled(c->ctx) &&
        wslay_event_recv(c->ctx) == WSLAY_ERR_NOMEM)
        c->failed = true;
    c->in = NULL;
    c->in_len = 0;
    flush(c);
    if (c->failed)
        return WS_NOMEM;
    return ws_conn_closing(c) ? WS_CLOSING : WS_OK;
}

/* Frame size of a text payload: header (2, 4 or 10 bytes) + payload. */
static size_t frame_size(size_t len)
{
    return len + (len < 126 ? 2 : len <= 0xFFFF ? 4 : 10);
}

/* Checks that a frame of n bytes may still be queued. Flushes wslay first,
 * so whatever it queued by itself (a pong, its own close) is ahead of the new
 * frame and the closing state is current. */
static ws_status_t admit(ws_conn_t *c, size_t n)
{
    flush(c);
    if (ws_conn_closing(c))
        return c->failed ? WS_NOMEM : WS_CLOSING;
    size_t queued = bounded_bytes(c);
    if (queued > WS_OUTBOUND_MAX || n > WS_OUTBOUND_MAX - queued) {
        overflow(c);
        return WS_OVERFLOW;
    }
    return WS_OK;
}

ws_status_t ws_conn_send_text(ws_conn_t *c, const char *msg, size_t len)
{
    ws_status_t st = admit(c, frame_size(len));
    if (st != WS_OK)
        return st;
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, len};
    int r = wslay_event_queue_msg(c->ctx, &m);
    if (r == WSLAY_ERR_NOMEM) {
        c->failed = true;
        return WS_NOMEM;
    }
    if (r != 0)
        return WS_CLOSING;
    flush(c);
    return c->failed ? WS_NOMEM : WS_OK;
}

static ws_status_t queue_shared(ws_conn_t *c, ws_shared_t *s, bool exempt)
{
    ws_status_t st = exempt ? WS_OK : admit(c, s->frame_len);
    if (exempt) {
        flush(c);
        if (ws_conn_closing(c))
            return c->failed ? WS_NOMEM : WS_CLOSING;
    }
    if (st != WS_OK)
        return st;
    seg_t *g = malloc(sizeof *g);
    if (!g) {
        c->failed = true;
        return WS_NOMEM;
    }
    g->exempt = exempt;
    g->shared = ws_shared_retain(s);
    g->len = g->cap = s->frame_len;
    list_push(&c->pending, g); /* wslay's queue is empty: order is kept */
    return WS_OK;
}

ws_status_t ws_conn_send_shared(ws_conn_t *c, ws_shared_t *s)
{
    return queue_shared(c, s, false);
}

ws_status_t ws_conn_send_reply_shared(ws_conn_t *c, ws_shared_t *s)
{
    return queue_shared(c, s, true);
}

ws_status_t ws_conn_send_reply(ws_conn_t *c, const char *msg, size_t len)
{
    ws_shared_t *s = ws_shared_text(msg, len);
    if (!s) {
        c->failed = true;
        return WS_NOMEM;
    }
    ws_status_t st = queue_shared(c, s, true);
    ws_shared_release(s);
    return st;
}

ws_status_t ws_conn_ping(ws_conn_t *c, uint64_t now_ms)
{
    if (ws_conn_closing(c))
        return c->failed ? WS_NOMEM : WS_CLOSING;
    uint8_t stamp[8]; /* the send time: handy when reading a capture */
    for (int i = 0; i < 8; i++)
        stamp[i] = (uint8_t)(now_ms >> (56 - 8 * i));
    struct wslay_event_msg m = {WSLAY_PING, stamp, sizeof stamp};
    if (wslay_event_queue_msg(c->ctx, &m) != 0)
        return WS_CLOSING;
    c->awaiting_pong = true;
    flush(c);
    return c->failed ? WS_NOMEM : WS_OK;
}

ws_status_t ws_conn_close(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (ws_conn_closing(c))
        return c->failed ? WS_NOMEM : WS_CLOSING;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > 123) /* a control frame carries at most 125 bytes: code + 123 */
        rlen = 123;
    /* Reading stays on: the peer's close ends the handshake. */
    if (wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason, rlen) != 0)
        return WS_CLOSING;
    c->close_queued = true;
    flush(c);
    return c->failed ? WS_NOMEM : WS_OK;
}

uint16_t ws_conn_close_code(const ws_conn_t *c)
{
    return wslay_event_get_close_sent(c->ctx) ? wslay_event_get_status_code_sent(c->ctx) : 0;
}

uint16_t ws_conn_peer_close_code(const ws_conn_t *c)
{
    return wslay_event_get_close_received(c->ctx)
               ? wslay_event_get_status_code_received(c->ctx) : 0;
}

uint64_t ws_conn_last_pong(const ws_conn_t *c)
{
    return c->last_pong_ms;
}

bool ws_conn_awaiting_pong(const ws_conn_t *c)
{
    return c->awaiting_pong;
}

size_t ws_conn_output(ws_conn_t *c, struct iovec *iov, size_t max)
{
    if (c->inflight.head || !c->pending.head)
        return 0;
    size_t n = 0;
    while (n < max && c->pending.head) {
        seg_t *s = c->pending.head;
        c->pending.head = s->next;
        if (!c->pending.head)
            c->pending.tail = NULL;
        c->pending.bytes -= s->len;
        if (s->exempt)
            c->pending.exempt_bytes -= s->len;
        list_push(&c->inflight, s);
        iov[n].iov_base = (void *)seg_data(s);
        iov[n].iov_len = s->len;
        n++;
    }
    return n;
}

void ws_conn_output_done(ws_conn_t *c)
{
    list_clear(&c->inflight);
}

bool ws_conn_finished(const ws_conn_t *c)
{
    if (c->failed)
        return true;
    if (c->pending.head || c->inflight.head || !wslay_event_get_close_sent(c->ctx))
        return false;
    /* Either the peer answered our close (or started it), or we stopped
     * reading because its stream was bad: no close is coming. */
    return wslay_event_get_close_received(c->ctx) || !wslay_event_get_read_enabled(c->ctx);
}
