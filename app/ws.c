/* ws.c: server WebSocket connections (RFC 6455) and shared pre-framed text
 * buffers (see ws.h for how the endpoint drives them).
 *
 * Two layers. wslay's FRAME layer (wslay_frame_recv/wslay_frame_send, one
 * wslay_frame_context per connection) is the frame codec: it decodes each
 * header, refuses what breaks framing itself (a fragmented or over-125-byte
 * control frame, a length not in its shortest form, a 64-bit length with the
 * top bit), unmasks payloads, and frames what we send. The MESSAGE layer
 * above it is ours: reassembly, the size limit, UTF-8, control frames, the
 * close handshake, the outbound queue and its bound.
 *
 * Why the message layer is not wslay's event layer: it keeps a malloc'd
 * chunk plus list node per fragment (about 95 bytes of overhead for a
 * one-byte fragment: 5.4 MiB for 60,000 of them), and 1.1.1 skips the first
 * two bytes of every chunk of a close payload when checking its UTF-8 (the
 * verdict depended on TCP segmentation).
 *
 * How the pieces fit:
 *   - input: ws_conn_feed() gives the caller's bytes to wslay_frame_recv()
 *     (through wslay_recv_cb) and acts on each report (rx_chunk): at a
 *     frame's first report its header is judged against the message under
 *     way (frame_start: 1002, 1003, and 1009 before a byte of its payload is
 *     copied); payload goes to where it belongs: a data frame's into the one
 *     reassembly buffer of the message under way, a control frame's into a
 *     fixed 125-byte array. Nothing is allocated per frame or per fragment,
 *     so a message of 60,000 one-byte fragments holds what one 60,000-byte
 *     frame holds: the payload, rounded up to WS_RX_STEP. Text is checked as
 *     UTF-8 as it arrives (1007), a close frame's reason once its whole
 *     payload is in, wherever TCP split it. wslay reports a header only with
 *     its first payload byte, so a header that arrives alone is read by us
 *     from the bytes wslay holds (rx_stalled): 1009 must not wait for a
 *     payload an attacker never sends.
 *   - output: every frame of ours is framed by put_header (the rule
 *     wslay_frame_send applies: FIN, unmasked, the shortest length) straight
 *     into our own queue of segments; a shared frame goes into the same
 *     queue by reference, without breaking a frame or reordering replies.
 *     The queue (pending + in flight) is what WS_OUTBOUND_MAX bounds.
 *     Framing our own frames needs no wslay context, so a ping, a pong or a
 *     close never makes an idle connection take one.
 *
 * Memory of an idle connection (issue 6): nothing but the ws_conn_t (360
 * bytes).  wslay's frame context (a 4 KiB input buffer and its state,
 * ~4.2 KB of heap) is needed only while a frame is part read: a connection
 * takes one from a small pool per thread when bytes arrive and gives it
 * back at the first frame boundary where wslay holds nothing (ctx_take,
 * ctx_give).  A message that arrives whole in one read (a request: the
 * usual case) is judged and handed to on_text straight from wslay's
 * buffer, with no copy; only a message split over frames or reads is
 * reassembled, and its buffer is freed once it is delivered.  Before
 * (measured with chatter-load --scenario idle, README "Memory"): the
 * context held for the connection's life plus a 4 KiB reassembly buffer
 * kept between messages, 8.5 KB of the 12.9 KB per joined session.
 * A segment that points at a shared frame is a 40-byte header taken from a
 * free list per thread (seg_take): a push costs no malloc.
 *
 * Cost: wslay copies each read into its context's buffer and unmasks it
 * there; a message split over frames or reads is copied once more, into
 * the reassembly buffer.
 *
 * Kind: a pure library -- no actor, no message, no registered name; the caller
 * owns whatever state it works on (README "Reading the app").
 */
#include "ws.h"

#include "queue.h"
#include "unicode.h"

#include <wslay/wslay.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Owned segments are allocated at least this large so the 2-10 byte frame
 * header and the payload after it, and runs of small frames, share one
 * buffer and one iovec. */
#define WS_SEG_MIN 2048u
/* Worst-case frame header for a server (unmasked) frame: 2 + 8 bytes. */
#define WS_HEADER_MAX 10u
/* Largest control frame payload (RFC 6455 section 5.5). */
#define WS_CONTROL_MAX 125u

enum {
    OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2,
    OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA,
};

/* Writes an unmasked frame header (FIN set, the length in its shortest form)
 * into h; returns its length. For every frame we send: shared frames are
 * built outside any connection, and a wslay context to build 2-10 bytes
 * would be a 4 KiB allocation per broadcast, per reply, and per idle
 * connection. */
static size_t put_header(uint8_t *h, unsigned opcode, size_t len)
{
    h[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* Frame size of a text payload: header (2, 4 or 10 bytes) + payload. */
static size_t frame_size(size_t len)
{
    return len + (len < 126 ? 2 : len <= 0xFFFF ? 4 : 10);
}

/* ------------------------------------------------------------ shared frames */

struct ws_shared {
    atomic_long refs;
    size_t frame_len;               /* every part's frame, back to back */
    size_t payload_off, payload_len; /* a single frame's payload */
    uint8_t *bytes;                 /* after parts[] */
    size_t nparts;
    ws_shared_part_t parts[];       /* where each frame starts, and its tag */
};

static atomic_long shared_live;

ws_shared_t *ws_shared_texts(const ws_text_t *texts, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += frame_size(texts[i].len);
    if (!n)
        return NULL;
    ws_shared_t *s = malloc(sizeof *s + n * sizeof(ws_shared_part_t) + total + 1);
    if (!s)
        return NULL;
    s->bytes = (uint8_t *)(s->parts + n);
    s->nparts = n;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        s->parts[i] = (ws_shared_part_t){at, texts[i].tag};
        size_t hn = put_header(s->bytes + at, OP_TEXT, texts[i].len);
        if (texts[i].len)
            memcpy(s->bytes + at + hn, texts[i].ptr, texts[i].len);
        if (i == 0) {
            s->payload_off = hn;
            s->payload_len = texts[i].len;
        }
        at += hn + texts[i].len;
    }
    s->bytes[at] = '\0'; /* after the last payload: a single frame's is a C string */
    atomic_init(&s->refs, 1);
    s->frame_len = at;
    atomic_fetch_add_explicit(&shared_live, 1, memory_order_relaxed);
    return s;
}

ws_shared_t *ws_shared_text(const char *payload, size_t len)
{
    return ws_shared_texts(&(ws_text_t){payload, len, 0}, 1);
}

size_t ws_shared_nparts(const ws_shared_t *s)
{
    return s->nparts;
}

int64_t ws_shared_tag(const ws_shared_t *s, size_t part)
{
    return s->parts[part].tag;
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
    act_qnode_t node;     /* in a seg_list_t (runtime/queue.h) */
    ws_shared_t *shared;  /* non-NULL: the bytes are the shared frame's ... */
    bool exempt;          /* a reply, or a lone frame over the bound: outside it */
    uint32_t off;         /* ... from this offset (a suffix of its parts) */
    size_t len, cap;
    uint8_t bytes[];
} seg_t;

typedef struct seg_list {
    act_queue_t q;       /* seg_t, oldest first */
    size_t bytes;
    size_t exempt_bytes; /* of which replies */
} seg_list_t;

/* The last bytes handed to wslay, enough for the longest header: 2 + 8
 * (length) + 4 (mask). */
#define WS_TAIL 14u

/* What only a connection in the middle of a frame needs (see the top:
 * taken from a per-thread pool, given back at a frame boundary): wslay's
 * frame decoder, the bytes last handed to it, the control frame being read. */
typedef struct rx {
    wslay_frame_context_ptr wslay; /* a 4 KiB input buffer and its state */
    uint8_t tail[WS_TAIL];  /* the last WS_TAIL bytes given to wslay */
    uint8_t ctl[WS_CONTROL_MAX]; /* the control frame being read */
} rx_t;

struct ws_conn {
    ws_on_text_fn on_text;
    void *user;
    uint64_t now_ms, last_pong_ms;
    bool awaiting_pong;
    bool failed;            /* out of memory: finish now */
    bool reading;           /* false once the peer's stream is over or bad */
    bool close_sent, close_received;
    uint16_t sent_code, received_code; /* 1005: the close frame had none */

    /* wslay's frame decoder and what goes with it, held only while a frame
     * is part read (NULL at a frame boundary: see ctx_take) */
    rx_t *rx;
    const uint8_t *in;      /* bytes of this ws_conn_feed() not yet given to wslay */
    size_t in_len;
    /* Offsets in the peer's byte stream: given to wslay, and accounted for by
     * frames it reported (headers + payload). Between the two, at most a
     * header wslay holds without having said so yet (see rx_stalled). */
    uint64_t handed, reported;

    /* the frame being read (as of its first report) */
    bool frame_started;
    bool fin;
    unsigned opcode;
    uint64_t frame_len, frame_got;

    /* the data message being reassembled: one buffer, grown in WS_RX_STEP
     * steps as bytes arrive (never per fragment), at most WS_MAX_MESSAGE */
    unsigned msg_opcode;    /* OP_TEXT while a message is under way, else 0 */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    size_t msg_checked;     /* a prefix already known to be valid UTF-8 */

    seg_list_t pending;     /* not yet handed to the endpoint */
    seg_list_t inflight;    /* in the endpoint's uv_write */
};

static const uint8_t *seg_data(const seg_t *s)
{
    return s->shared ? s->shared->bytes + s->off : s->bytes;
}

/* ------------------------------------------------------------ per-thread pools
 *
 * Two things every connection needs only now and then, kept per thread
 * (a connection is only touched on its loop's thread):
 *   - segment headers that point at a shared frame (40 bytes): one per push
 *     queued, back on the list once written; at most WS_SEG_SPARE spare;
 *   - wslay frame contexts (~4.2 KB): one per connection in the middle of a
 *     frame, back in the pool at the next frame boundary; at most
 *     WS_CTX_SPARE spare.
 * A thread's spares are freed when it exits (pool_key's destructor). */
#define WS_SEG_SPARE 4096u  /* 160 KiB per thread at most */
#define WS_CTX_SPARE 4u     /* 17 KB per thread at most */

typedef struct pools {
    act_queue_t segs;       /* spare shared-segment headers */
    unsigned nsegs;
    rx_t *ctx[WS_CTX_SPARE];
    unsigned nctx;
    bool keyed;             /* pool_key set for this thread */
} pools_t;

static _Thread_local pools_t t_pools;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void rx_free(rx_t *rx)
{
    wslay_frame_context_free(rx->wslay);
    free(rx);
}

static void pools_drain(void *arg)
{
    pools_t *p = arg;
    for (act_qnode_t *n; (n = act_queue_pop(&p->segs));)
        free(ACT_QUEUE_DATA(n, seg_t, node));
    p->nsegs = 0;
    while (p->nctx)
        rx_free(p->ctx[--p->nctx]);
}

static void pool_key_init(void)
{
    (void)pthread_key_create(&pool_key, pools_drain);
}

static pools_t *pools(void)
{
    pools_t *p = &t_pools;
    if (!p->keyed) {
        pthread_once(&pool_once, pool_key_init);
        p->keyed = pthread_setspecific(pool_key, p) == 0;
    }
    return p;
}

/* A header for a segment that references a shared frame. */
static seg_t *seg_take(void)
{
    pools_t *p = pools();
    act_qnode_t *n = act_queue_pop(&p->segs);
    if (n) {
        p->nsegs--;
        return ACT_QUEUE_DATA(n, seg_t, node);
    }
    return malloc(sizeof(seg_t));
}

static void seg_free(seg_t *s)
{
    if (s->shared) {
        ws_shared_release(s->shared);
        pools_t *p = pools();
        if (p->nsegs < WS_SEG_SPARE) {
            act_queue_push(&p->segs, &s->node);
            p->nsegs++;
            return;
        }
    }
    free(s);
}

static void list_push(seg_list_t *l, seg_t *s)
{
    act_queue_push(&l->q, &s->node);
    l->bytes += s->len;
    if (s->exempt)
        l->exempt_bytes += s->len;
}

static void list_clear(seg_list_t *l)
{
    for (act_qnode_t *n; (n = act_queue_pop(&l->q));)
        seg_free(ACT_QUEUE_DATA(n, seg_t, node));
    l->bytes = 0;
    l->exempt_bytes = 0;
}

/* Appends a frame of ours (header h of hn bytes, then len bytes of
 * payload) to the pending queue, into the tail segment if it has room: one
 * buffer and one iovec for runs of small frames, a frame never split. */
static int out_append(ws_conn_t *c, const uint8_t *h, size_t hn, const void *data, size_t len)
{
    seg_t *t = c->pending.q.tail ? ACT_QUEUE_DATA(c->pending.q.tail, seg_t, node) : NULL;
    size_t need = hn + len;
    if (!t || t->shared || t->cap - t->len < need) {
        size_t cap = need > WS_SEG_MIN ? need : WS_SEG_MIN;
        t = malloc(sizeof *t + cap);
        if (!t)
            return -1;
        t->shared = NULL;
        t->exempt = false;
        t->len = 0;
        t->cap = cap;
        list_push(&c->pending, t);
    }
    memcpy(t->bytes + t->len, h, hn);
    if (len)
        memcpy(t->bytes + t->len + hn, data, len);
    t->len += need;
    c->pending.bytes += need;
    return 0;
}

/* Queues one whole frame of ours (owned bytes): FIN set, unmasked (a
 * server's frames are never masked), the length in its shortest form --
 * what wslay_frame_send would write, without a wslay context. */
static void out_frame(ws_conn_t *c, unsigned opcode, const void *payload, size_t len)
{
    if (c->failed)
        return; /* out of memory: the connection is finished */
    uint8_t h[WS_HEADER_MAX];
    size_t hn = put_header(h, opcode, len);
    if (out_append(c, h, hn, payload, len) != 0)
        c->failed = true;
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

/* ------------------------------------------------------------ closing */

/* Queues our close frame: code (0: none, recorded as 1005) and a reason. */
static void send_close(ws_conn_t *c, uint16_t code, const char *reason, size_t rlen)
{
    uint8_t p[WS_CONTROL_MAX] = {0}; /* = {0}: gcc -O1 under ASan cannot see n == 0 reads none */
    size_t n = 0;
    if (code) {
        if (rlen > WS_CONTROL_MAX - 2) { /* cut at a character boundary */
            rlen = WS_CONTROL_MAX - 2;
            while (rlen > 0 && ((uint8_t)reason[rlen] & 0xC0) == 0x80)
                rlen--;
        }
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        if (rlen)
            memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    out_frame(c, OP_CLOSE, p, n);
    c->close_sent = true;
    c->sent_code = code ? code : 1005;
}

static void msg_reset(ws_conn_t *c)
{
    free(c->msg);
    c->msg = NULL;
    c->msg_len = c->msg_cap = c->msg_checked = 0;
    c->msg_opcode = 0;
}

/* Fails the connection from the receiving side: send code (unless a close
 * of ours already went out), read no more, drop the partial message. */
static void fail_with(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (!c->close_sent)
        send_close(c, code, reason, reason ? strlen(reason) : 0);
    c->reading = false;
    /* The partial message stays allocated (at most WS_MAX_MESSAGE, freed
     * with the connection): this may run inside on_text, whose msg
     * points into it. */
}

bool ws_conn_closing(const ws_conn_t *c)
{
    return c->failed || c->close_sent || c->close_received;
}

/* A slow client: drop the frames it has not started receiving (whole frames,
 * so the stream stays valid), tell it 1008, and read no more. */
static void overflow(ws_conn_t *c)
{
    list_clear(&c->pending);
    fail_with(c, WS_CLOSE_POLICY, "cannot keep up");
}

/* Enforces the bound on what the connection produced by itself (pongs to a
 * ping flood). Once closing, nothing is dropped: the close frame is already
 * in the queue, and nothing more can be added to it. */
static void check_bound(ws_conn_t *c)
{
    if (!ws_conn_closing(c) && bounded_bytes(c) > WS_OUTBOUND_MAX)
        overflow(c);
}

/* ------------------------------------------------------------ frame reader */

/* Close codes a peer may send (RFC 6455 section 7.4, and the IANA registry's
 * 1012..1014); 1004..1006 and 1015 must never be on the wire. */
static bool close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* Bytes at the end of buf[0, len) that begin a UTF-8 sequence not yet
 * complete but still able to become valid (0..3): they are checked once the
 * rest arrives. A prefix that can never become valid (a bad lead byte, or a
 * second byte out of its lead's range: overlong, surrogate, above U+10FFFF)
 * counts 0, so the validator fails on it at once. */
static size_t utf8_incomplete_tail(const uint8_t *buf, size_t len)
{
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        const uint8_t *lead = buf + len - back;
        if ((*lead & 0xC0) == 0x80)
            continue; /* a continuation byte: look further back */
        uint8_t b = *lead;
        size_t need = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
                    : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (need <= back)
            return 0; /* complete, or no valid lead: the validator decides */
        if (back >= 2) { /* the second byte's range depends on the lead (RFC 3629) */
            uint8_t lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
            uint8_t hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
            if (lead[1] < lo || lead[1] > hi)
                return 0;
        }
        return back;
    }
    return 0; /* ASCII, or invalid anyway: let the validator say so */
}

/* The control frame in c->rx->ctl is complete. */
static void on_control(ws_conn_t *c)
{
    size_t n = (size_t)c->frame_len;
    if (c->opcode == OP_PONG) {
        c->last_pong_ms = c->now_ms;
        c->awaiting_pong = false;
    } else if (c->opcode == OP_PING) {
        if (!c->close_sent) {
            out_frame(c, OP_PONG, c->rx->ctl, n);
            check_bound(c);
        }
    } else { /* OP_CLOSE: validated whole, however TCP split it */
        uint16_t code = n >= 2 ? (uint16_t)(c->rx->ctl[0] << 8 | c->rx->ctl[1]) : 0;
        if (n == 1 || (n >= 2 && !close_code_valid(code))) {
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return;
        }
        if (n > 2 && !utf8_valid((const char *)c->rx->ctl + 2, n - 2)) {
            fail_with(c, WS_CLOSE_INVALID_DATA, NULL);
            return;
        }
        c->close_received = true;
        c->received_code = n >= 2 ? code : 1005;
        /* Echo the peer's code (none if it sent none): the handshake is
         * complete once that is written. */
        if (!c->close_sent)
            send_close(c, n >= 2 ? code : 0, NULL, 0);
        c->reading = false;
        msg_reset(c);
    }
}

/* A new frame: its header as wslay decoded it, or as rx_stalled read it when
 * its payload has not begun. Applies the rules wslay leaves to its user
 * against the message under way; false once the connection failed.
 * wslay itself has already refused (WSLAY_ERR_PROTO, our 1002) a control
 * frame that is fragmented or over 125 bytes, a 64-bit length with the top
 * bit set, and a length not in its shortest form (RFC 6455 5.2). */
static bool frame_start(ws_conn_t *c, bool fin, unsigned rsv, unsigned op, bool masked,
                        uint64_t len)
{
    if (rsv) { /* RSV1-3: no extension was negotiated */
        fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
        return false;
    }
    if (!masked) { /* client frames must be masked (5.1) */
        fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
        return false;
    }
    if (op & 0x8) {
        if (op != OP_CLOSE && op != OP_PING && op != OP_PONG) {
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return false;
        }
        /* wslay refused these already; rx->ctl's size depends on it */
        if (!fin || len > WS_CONTROL_MAX) {
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return false;
        }
    } else if (op == OP_CONT) {
        if (!c->msg_opcode) { /* nothing to continue */
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return false;
        }
    } else if (op == OP_TEXT || op == OP_BINARY) {
        if (c->msg_opcode) { /* a new message inside a fragmented one */
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return false;
        }
        if (op == OP_BINARY) { /* refused at its first frame, before any payload */
            fail_with(c, WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
            return false;
        }
        c->msg_opcode = OP_TEXT;
    } else {
        fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL); /* reserved opcodes 3..7 */
        return false;
    }
    /* The size at the header: the payload of a frame that would take the
     * message past the limit is never copied (nor, from the header alone,
     * waited for). */
    if (!(op & 0x8) && len > WS_MAX_MESSAGE - c->msg_len) {
        fail_with(c, WS_CLOSE_TOO_BIG, NULL);
        return false;
    }
    c->fin = fin;
    c->opcode = op;
    c->frame_len = len;
    c->frame_got = 0;
    c->frame_started = true;
    return true;
}

/* Bytes of the header of a frame of len payload bytes, as wslay accepts it:
 * the length in its shortest form (wslay refuses any other), the mask. */
static uint64_t header_size(uint64_t len, bool masked)
{
    return 2 + (len < 126 ? 0 : len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
}

/* The data frame just read is complete; if it was the last one, delivers. */
static void on_data_end(ws_conn_t *c)
{
    if (!c->fin)
        return;
    if (c->msg_len > c->msg_checked &&
        !utf8_valid((const char *)c->msg + c->msg_checked, c->msg_len - c->msg_checked)) {
        fail_with(c, WS_CLOSE_INVALID_DATA, NULL);
        return;
    }
    /* After our own close, data is read (to reach the peer's close) but
     * not delivered. */
    if (!c->close_sent)
        c->on_text(c->user, c->msg ? (const char *)c->msg : "", c->msg_len);
    /* Nothing is kept for the next message: an idle connection holds no
     * input buffer (most messages never need one: deliver_whole). */
    msg_reset(c);
}

/* A whole message in one report of wslay (one unfragmented frame, all its
 * payload in this read: every request of the protocol, as a client sends
 * it): judged and delivered straight from wslay's buffer, no copy. */
static void deliver_whole(ws_conn_t *c, const uint8_t *p, size_t n)
{
    c->msg_opcode = 0;
    if (n && !utf8_valid((const char *)p, n)) {
        fail_with(c, WS_CLOSE_INVALID_DATA, NULL);
        return;
    }
    if (!c->close_sent)
        c->on_text(c->user, n ? (const char *)p : "", n);
}

/* Appends n payload bytes of a data frame (unmasked by wslay) to the
 * reassembly buffer. */
static void on_data(ws_conn_t *c, const uint8_t *p, size_t n)
{
    size_t need = c->msg_len + n; /* <= WS_MAX_MESSAGE: checked at the header */
    if (need > c->msg_cap) {
        /* Grow to the bytes present, rounded up to a step: at most
         * WS_MAX_MESSAGE / WS_RX_STEP = 16 reallocations per message, and
         * never more than WS_RX_STEP - 1 bytes beyond the payload. */
        size_t cap = (need + WS_RX_STEP - 1) / WS_RX_STEP * WS_RX_STEP;
        uint8_t *m = realloc(c->msg, cap);
        if (!m) {
            c->failed = true;
            c->reading = false;
            return;
        }
        c->msg = m;
        c->msg_cap = cap;
    }
    if (n)
        memcpy(c->msg + c->msg_len, p, n);
    c->msg_len = need;
    /* Check what is complete now, so bad text fails at the frame that
     * carries it rather than at the end of a long message. */
    size_t upto = c->msg_len - utf8_incomplete_tail(c->msg, c->msg_len);
    if (upto > c->msg_checked) {
        if (!utf8_valid((const char *)c->msg + c->msg_checked, upto - c->msg_checked)) {
            fail_with(c, WS_CLOSE_INVALID_DATA, NULL);
            return;
        }
        c->msg_checked = upto;
    }
}

/* wslay_frame_recv()'s way in: gives wslay as much of this feed as its
 * buffer takes; nothing left reads as "want read". */
/* The connection wslay_frame_recv() reads for on this thread: pooled
 * contexts are shared, so their callbacks find it here, not in user_data. */
static _Thread_local ws_conn_t *t_rx;

static ssize_t wslay_recv_cb(uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    (void)user;
    ws_conn_t *c = t_rx;
    size_t n = len < c->in_len ? len : c->in_len;
    if (n == 0)
        return -1; /* wslay_frame_recv() returns WSLAY_ERR_WANT_READ */
    memcpy(buf, c->in, n);
    if (n >= WS_TAIL) {
        memcpy(c->rx->tail, c->in + n - WS_TAIL, WS_TAIL);
    } else {
        memmove(c->rx->tail, c->rx->tail + n, WS_TAIL - n);
        memcpy(c->rx->tail + WS_TAIL - n, c->in, n);
    }
    c->in += n;
    c->in_len -= n;
    c->handed += n;
    return (ssize_t)n;
}

/* One report of wslay_frame_recv(): a frame's header with its first payload
 * bytes, or more payload of the frame under way, or (data_length 0) an
 * empty frame. */
static void rx_chunk(ws_conn_t *c, const struct wslay_frame_iocb *io)
{
    if (!c->frame_started) {
        c->reported += header_size(io->payload_length, io->mask);
        if (!frame_start(c, io->fin, io->rsv, io->opcode, io->mask, io->payload_length))
            return;
    }
    size_t n = io->data_length;
    c->reported += n;
    if (c->opcode & 0x8) {
        if (n) /* frame_got + n <= frame_len <= WS_CONTROL_MAX */
            memcpy(c->rx->ctl + c->frame_got, io->data, n);
    } else if (c->fin && c->frame_got == 0 && n == c->frame_len && c->msg_len == 0) {
        c->frame_started = false;
        deliver_whole(c, io->data, n);
        return;
    } else {
        on_data(c, io->data, n);
    }
    if (!c->reading || c->failed)
        return;
    c->frame_got += n;
    if (c->frame_got == c->frame_len) {
        c->frame_started = false;
        if (c->opcode & 0x8)
            on_control(c);
        else
            on_data_end(c);
    }
}

/* wslay has every byte of this feed and wants more. wslay_frame_recv()
 * reports a header only together with the first bytes of its payload (or
 * at once for an empty frame), so a header that arrived alone is not
 * reported: this is the one rule our layer cannot leave to wslay's, since
 * a frame whose announced length crosses WS_MAX_MESSAGE must be refused
 * (1009) at its header, whatever follows (an attacker announcing 1 TiB
 * sends nothing after it). The bytes wslay holds unreported are then the
 * last handed - reported given it (at most a header, WS_TAIL): when they
 * are a whole header, we read its fields ourselves and judge them by the
 * same rules as a reported one. */
static void rx_stalled(ws_conn_t *c)
{
    if (c->frame_started || !c->reading)
        return; /* in the payload of a frame already judged */
    uint64_t u = c->handed - c->reported;
    if (u < 2 || u > WS_TAIL)
        return;
    const uint8_t *h = c->rx->tail + WS_TAIL - u;
    unsigned len7 = h[1] & 0x7F;
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (u != 2 + ext + (h[1] & 0x80 ? 4 : 0))
        return; /* the header is not complete yet: neither wslay nor we judge it */
    uint64_t len = len7;
    if (ext) {
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = len << 8 | h[2 + i];
    }
    c->reported += u;
    frame_start(c, h[0] & 0x80, (h[0] >> 4) & 7, h[0] & 0x0F, h[1] & 0x80, len);
}

static const struct wslay_frame_callbacks wslay_cbs = {
    /* no send callback: our frames are framed by put_header, and a server
     * never masks, so no mask generator either */
    .recv_callback = wslay_recv_cb,
};

/* The connection gets a wslay context: a spare of this thread's, else a
 * new one.  Contexts are interchangeable at a frame boundary (nothing
 * buffered, the reader at a header), which is the only state one is in
 * when given back. */
static bool ctx_take(ws_conn_t *c)
{
    if (c->rx)
        return true;
    pools_t *p = pools();
    if (p->nctx) {
        c->rx = p->ctx[--p->nctx];
        return true;
    }
    rx_t *rx = malloc(sizeof *rx);
    if (!rx)
        return false;
    if (wslay_frame_context_init(&rx->wslay, &wslay_cbs, NULL) != 0) {
        free(rx);
        return false;
    }
    c->rx = rx;
    return true;
}

static void ctx_give(ws_conn_t *c)
{
    if (!c->rx)
        return;
    pools_t *p = pools();
    if (p->nctx < WS_CTX_SPARE)
        p->ctx[p->nctx++] = c->rx;
    else
        rx_free(c->rx);
    c->rx = NULL;
}

/* Runs wslay's frame reader over len bytes, acting on every report; stops
 * early once reading is over (the rest of the bytes are dropped).  The
 * context is held across calls only while wslay holds part of a frame:
 * bytes given to it but not yet reported (handed > reported: a partial
 * header), or a frame whose payload has not all come (frame_started). */
static void rx_run(ws_conn_t *c, const uint8_t *in, size_t len)
{
    if (!c->reading || c->failed)
        return;
    if (!ctx_take(c)) {
        c->failed = true;
        c->reading = false;
        return;
    }
    ws_conn_t *outer = t_rx;
    t_rx = c;
    c->in = in;
    c->in_len = len;
    while (c->reading && !c->failed) {
        struct wslay_frame_iocb io;
        ssize_t r = wslay_frame_recv(c->rx->wslay, &io);
        if (r >= 0) {
            rx_chunk(c, &io);
        } else if (r == WSLAY_ERR_WANT_READ) {
            if (c->in_len > 0)
                continue; /* it took bytes but wants more: give them */
            rx_stalled(c);
            break;
        } else { /* WSLAY_ERR_PROTO: see frame_start for what wslay refuses */
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            break;
        }
    }
    t_rx = outer;
    c->in = NULL;
    c->in_len = 0;
    if (c->reading && !c->failed && !c->frame_started && c->handed == c->reported) {
        ctx_give(c); /* a frame boundary: back to the pool */
    } else if (!c->reading || c->failed) {
        /* reading is over, maybe mid-frame (a header refused before its
         * payload): this context's state may not be a boundary's, and it
         * is never used again */
        rx_free(c->rx);
        c->rx = NULL;
    }
}

/* ------------------------------------------------------------ connection */

ws_conn_t *ws_conn_new(ws_on_text_fn on_text, void *user, uint64_t now_ms)
{
    ws_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->on_text = on_text;
    c->user = user;
    c->reading = true;
    c->now_ms = c->last_pong_ms = now_ms;
    return c; /* no wslay context until bytes arrive (rx_run) */
}

void ws_conn_free(ws_conn_t *c)
{
    if (!c)
        return;
    list_clear(&c->pending);
    list_clear(&c->inflight);
    if (c->rx) /* mid-frame: not a boundary's state, never pooled */
        rx_free(c->rx);
    free(c->msg);
    free(c);
}

size_t ws_conn_input_bytes(const ws_conn_t *c)
{
    return c->msg_cap;
}

ws_status_t ws_conn_feed(ws_conn_t *c, const void *data, size_t len, uint64_t now_ms)
{
    c->now_ms = now_ms;
    /* Once reading is off (a close either way), later bytes are dropped. */
    rx_run(c, data, len);
    check_bound(c);
    if (c->failed)
        return WS_NOMEM;
    return ws_conn_closing(c) ? WS_CLOSING : WS_OK;
}

/* Checks that a frame of n bytes may still be queued. */
static ws_status_t admit(ws_conn_t *c, size_t n)
{
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
    out_frame(c, OP_TEXT, msg, len);
    return c->failed ? WS_NOMEM : WS_OK;
}

static ws_status_t queue_shared(ws_conn_t *c, ws_shared_t *s, size_t part, bool exempt)
{
    size_t off = s->parts[part].off, len = s->frame_len - off;
    /* A shared frame larger than the bound (a presence_diff of thousands
     * of leaves: 5,000 are about 850 kB, one copy for every socket) is
     * taken outside the bound, as a reply is, while the socket's pushes
     * are under it and the big frames it already holds stay within
     * WS_OUTBOUND_BIG_MAX (or it holds none).  So a socket keeping up is
     * never closed for one churn wave: issue 6's storm closed all 200
     * survivors when such a diff had to be alone on an empty queue, then
     * 257 whose queue held a few messages behind a slow reader. */
    if (!exempt && len > WS_OUTBOUND_MAX && bounded_bytes(c) < WS_OUTBOUND_MAX) {
        size_t held = c->pending.exempt_bytes + c->inflight.exempt_bytes;
        exempt = !held || (held < WS_OUTBOUND_BIG_MAX && len <= WS_OUTBOUND_BIG_MAX - held);
    }
    ws_status_t st = exempt ? WS_OK : admit(c, len);
    if (exempt && ws_conn_closing(c))
        return c->failed ? WS_NOMEM : WS_CLOSING;
    if (st != WS_OK)
        return st;
    seg_t *g = seg_take(); /* a spare header: no malloc per delivery */
    if (!g) {
        c->failed = true;
        return WS_NOMEM;
    }
    g->exempt = exempt;
    g->shared = ws_shared_retain(s);
    g->off = (uint32_t)off;
    g->len = g->cap = len;
    list_push(&c->pending, g);
    return WS_OK;
}

ws_status_t ws_conn_send_shared(ws_conn_t *c, ws_shared_t *s)
{
    return queue_shared(c, s, 0, false);
}

ws_status_t ws_conn_send_shared_from(ws_conn_t *c, ws_shared_t *s, size_t part)
{
    return queue_shared(c, s, part, false);
}

ws_status_t ws_conn_send_reply_shared(ws_conn_t *c, ws_shared_t *s)
{
    return queue_shared(c, s, 0, true);
}

ws_status_t ws_conn_send_reply(ws_conn_t *c, const char *msg, size_t len)
{
    ws_shared_t *s = ws_shared_text(msg, len);
    if (!s) {
        c->failed = true;
        return WS_NOMEM;
    }
    ws_status_t st = queue_shared(c, s, 0, true);
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
    out_frame(c, OP_PING, stamp, sizeof stamp);
    c->awaiting_pong = true;
    check_bound(c);
    return c->failed ? WS_NOMEM : ws_conn_closing(c) ? WS_CLOSING : WS_OK;
}

ws_status_t ws_conn_close(ws_conn_t *c, uint16_t code, const char *reason)
{
    if (ws_conn_closing(c))
        return c->failed ? WS_NOMEM : WS_CLOSING;
    /* A control frame carries at most 125 bytes: code + 123 (send_close cuts). */
    send_close(c, code, reason, reason ? strlen(reason) : 0);
    /* Reading stays on: the peer's close ends the handshake. */
    return c->failed ? WS_NOMEM : WS_OK;
}

uint16_t ws_conn_close_code(const ws_conn_t *c)
{
    return c->close_sent ? c->sent_code : 0;
}

uint16_t ws_conn_peer_close_code(const ws_conn_t *c)
{
    return c->close_received ? c->received_code : 0;
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
    if (!act_queue_empty(&c->inflight.q) || act_queue_empty(&c->pending.q))
        return 0;
    size_t n = 0;
    while (n < max && !act_queue_empty(&c->pending.q)) {
        seg_t *s = ACT_QUEUE_DATA(act_queue_pop(&c->pending.q), seg_t, node);
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
    if (!act_queue_empty(&c->pending.q) || !act_queue_empty(&c->inflight.q) || !c->close_sent)
        return false;
    /* Either the peer answered our close (or started it), or we stopped
     * reading because its stream was bad: no close is coming. */
    return c->close_received || !c->reading;
}
