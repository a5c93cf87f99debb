/* ws.c: server WebSocket connections (RFC 6455) and shared pre-framed text
 * buffers (see ws.h for how the endpoint drives them).
 *
 * How the pieces fit:
 *   - input: ws_conn_feed() runs an incremental frame reader over the
 *     caller's bytes: a header of at most 14 bytes is gathered in place,
 *     payload bytes are unmasked straight into where they belong: a data
 *     frame's into the one reassembly buffer of the message under way, a
 *     control frame's into a fixed 125-byte array. Nothing is allocated per
 *     frame or per fragment, so a message of 60,000 one-byte fragments holds
 *     what one 60,000-byte frame holds: the payload, rounded up to
 *     WS_RX_STEP. Text is checked as UTF-8 as it arrives (1007), the size
 *     as soon as a header announces it (1009), a close frame's reason once
 *     its whole payload is in, wherever TCP split it.
 *   - output: every frame we send is appended, header and payload, to our own
 *     queue of segments (bytes we own, or a reference to a shared frame), so
 *     a shared frame goes into the same queue without breaking a frame or
 *     reordering replies. The queue (pending + in flight) is what
 *     WS_OUTBOUND_MAX bounds.
 *
 * wslay's event layer used to do the input side; it keeps a malloc'd chunk
 * plus list node per fragment (about 95 bytes of overhead for a one-byte
 * fragment: 5.4 MiB for 60,000 of them) and, in 1.1.1, skips the first two
 * bytes of every chunk of a close payload when checking its UTF-8 (so the
 * verdict depended on TCP segmentation). Owning the reader fixes both and
 * leaves nothing the fuzzer cannot reach.
 */
#include "ws.h"

#include "unicode.h"

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

/* Writes an unmasked frame header (FIN set) into h; returns its length. */
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

/* ------------------------------------------------------------ shared frames */

struct ws_shared {
    atomic_long refs;
    size_t frame_len;
    size_t payload_off, payload_len;
    uint8_t bytes[];   /* frame_len bytes of frame, then a NUL after the payload */
};

static atomic_long shared_live;

ws_shared_t *ws_shared_text(const char *payload, size_t len)
{
    ws_shared_t *s = malloc(sizeof *s + WS_HEADER_MAX + len + 1);
    if (!s)
        return NULL;
    size_t hn = put_header(s->bytes, OP_TEXT, len);
    if (len)
        memcpy(s->bytes + hn, payload, len);
    atomic_init(&s->refs, 1);
    s->frame_len = hn + len;
    s->payload_len = len;
    s->payload_off = hn;
    s->bytes[hn + len] = '\0';
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

/* Where the frame reader is within the current frame. */
typedef enum rx_state { RX_HEADER, RX_PAYLOAD } rx_state_t;

struct ws_conn {
    ws_on_text_fn on_text;
    void *user;
    uint64_t now_ms, last_pong_ms;
    bool awaiting_pong;
    bool failed;            /* out of memory: finish now */
    bool reading;           /* false once the peer's stream is over or bad */
    bool close_sent, close_received;
    uint16_t sent_code, received_code; /* 1005: the close frame had none */

    /* the frame being read */
    rx_state_t rx;
    uint8_t hdr[14];        /* 2 + 8 (length) + 4 (mask) */
    size_t hdr_len;
    bool fin;
    unsigned opcode;
    uint8_t mask[4];
    uint64_t frame_len, frame_got;

    /* the data message being reassembled: one buffer, grown in WS_RX_STEP
     * steps as bytes arrive (never per fragment), at most WS_MAX_MESSAGE */
    unsigned msg_opcode;    /* OP_TEXT while a message is under way, else 0 */
    uint8_t *msg;
    size_t msg_len, msg_cap;
    size_t msg_checked;     /* a prefix already known to be valid UTF-8 */

    uint8_t ctl[WS_CONTROL_MAX]; /* the control frame being read */

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
    if (len)
        memcpy(t->bytes + t->len, data, len);
    t->len += len;
    c->pending.bytes += len;
    return 0;
}

/* Queues one whole frame of ours (owned bytes). Header and payload go in one
 * call pair with nothing between them, so frames never interleave. */
static void out_frame(ws_conn_t *c, unsigned opcode, const void *payload, size_t len)
{
    uint8_t h[WS_HEADER_MAX];
    size_t hn = put_header(h, opcode, len);
    if (out_append(c, h, hn) != 0 || out_append(c, payload, len) != 0)
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

/* The control frame in c->ctl is complete. */
static void on_control(ws_conn_t *c)
{
    size_t n = (size_t)c->frame_len;
    if (c->opcode == OP_PONG) {
        c->last_pong_ms = c->now_ms;
        c->awaiting_pong = false;
    } else if (c->opcode == OP_PING) {
        if (!c->close_sent) {
            out_frame(c, OP_PONG, c->ctl, n);
            check_bound(c);
        }
    } else { /* OP_CLOSE: validated whole, however TCP split it */
        uint16_t code = n >= 2 ? (uint16_t)(c->ctl[0] << 8 | c->ctl[1]) : 0;
        if (n == 1 || (n >= 2 && !close_code_valid(code))) {
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return;
        }
        if (n > 2 && !utf8_valid((const char *)c->ctl + 2, n - 2)) {
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

/* The whole frame header is in c->hdr: check it against the message state. */
static void on_header(ws_conn_t *c)
{
    const uint8_t *h = c->hdr;
    size_t len7 = h[1] & 0x7F;
    uint64_t len = len7;
    size_t at = 2;
    if (len7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        if (len >> 63) { /* RFC 6455 5.2: the most significant bit must be 0 */
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return;
        }
    }
    memcpy(c->mask, h + at, 4);
    c->frame_len = len;
    c->frame_got = 0;
    c->rx = RX_PAYLOAD;
    if (!(c->opcode & 0x8) && len > WS_MAX_MESSAGE - c->msg_len) {
        fail_with(c, WS_CLOSE_TOO_BIG, NULL); /* at the header: no byte more is read */
        return;
    }
}

/* Checks what the first two header bytes allow, before the rest arrives;
 * returns the header's full length, or 0 once the connection failed. */
static size_t header_start(ws_conn_t *c)
{
    uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
    unsigned op = b0 & 0x0F;
    c->fin = b0 & 0x80;
    c->opcode = op;
    if (b0 & 0x70) { /* RSV1-3: no extension was negotiated */
        fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
        return 0;
    }
    if (!(b1 & 0x80)) { /* client frames must be masked (5.1) */
        fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
        return 0;
    }
    if (op & 0x8) {
        if (op != OP_CLOSE && op != OP_PING && op != OP_PONG) {
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return 0;
        }
        if (!c->fin || (b1 & 0x7F) > WS_CONTROL_MAX) { /* 5.5 */
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return 0;
        }
    } else if (op == OP_CONT) {
        if (!c->msg_opcode) {
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return 0;
        }
    } else if (op == OP_TEXT || op == OP_BINARY) {
        if (c->msg_opcode) { /* a new message inside a fragmented one */
            fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL);
            return 0;
        }
        if (op == OP_BINARY) { /* refused at its first frame, before any payload */
            fail_with(c, WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
            return 0;
        }
        c->msg_opcode = OP_TEXT;
    } else {
        fail_with(c, WS_CLOSE_PROTOCOL_ERROR, NULL); /* reserved opcodes 3..7 */
        return 0;
    }
    size_t len7 = b1 & 0x7F;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
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
    /* Keep a small buffer for the next message; give a large one back, so
     * an idle connection holds at most WS_RX_STEP. */
    if (c->msg_cap > WS_RX_STEP) {
        msg_reset(c);
    } else {
        c->msg_len = c->msg_checked = 0;
        c->msg_opcode = 0;
    }
}

/* Unmasks n payload bytes of a data frame into the reassembly buffer. */
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
    uint8_t *dst = c->msg + c->msg_len;
    size_t k = (size_t)(c->frame_got & 3);
    for (size_t i = 0; i < n; i++)
        dst[i] = p[i] ^ c->mask[(k + i) & 3];
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

/* Runs the frame reader over len bytes; stops early once reading is over. */
static void rx_run(ws_conn_t *c, const uint8_t *in, size_t len)
{
    while (len > 0 && c->reading && !c->failed) {
        if (c->rx == RX_HEADER) {
            /* two bytes first: they say how long the rest of the header is */
            size_t want = c->hdr_len < 2 ? 2 : 0;
            if (c->hdr_len >= 2) {
                size_t len7 = c->hdr[1] & 0x7F;
                want = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
            }
            size_t take = want - c->hdr_len < len ? want - c->hdr_len : len;
            memcpy(c->hdr + c->hdr_len, in, take);
            c->hdr_len += take;
            in += take;
            len -= take;
            if (c->hdr_len < want)
                break;
            if (want == 2) {
                if (header_start(c) == 0)
                    break;
                continue; /* now gather the rest of the header */
            }
            c->hdr_len = 0;
            on_header(c);
            if (!c->reading)
                break;
        } else {
            uint64_t left = c->frame_len - c->frame_got;
            size_t take = left < len ? (size_t)left : len;
            if (c->opcode & 0x8) {
                for (size_t i = 0; i < take; i++)
                    c->ctl[c->frame_got + i] = in[i] ^ c->mask[(c->frame_got + i) & 3];
            } else {
                on_data(c, in, take);
            }
            in += take;
            len -= take;
            c->frame_got += take;
            if (!c->reading || c->failed)
                break;
        }
        /* A frame whose payload is all in (possibly an empty one, straight
         * after its header) ends here. */
        if (c->rx == RX_PAYLOAD && c->frame_got == c->frame_len) {
            c->rx = RX_HEADER;
            if (c->opcode & 0x8)
                on_control(c);
            else
                on_data_end(c);
        }
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
    c->rx = RX_HEADER;
    c->now_ms = c->last_pong_ms = now_ms;
    return c;
}

void ws_conn_free(ws_conn_t *c)
{
    if (!c)
        return;
    list_clear(&c->pending);
    list_clear(&c->inflight);
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

/* Frame size of a text payload: header (2, 4 or 10 bytes) + payload. */
static size_t frame_size(size_t len)
{
    return len + (len < 126 ? 2 : len <= 0xFFFF ? 4 : 10);
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

static ws_status_t queue_shared(ws_conn_t *c, ws_shared_t *s, bool exempt)
{
    ws_status_t st = exempt ? WS_OK : admit(c, s->frame_len);
    if (exempt && ws_conn_closing(c))
        return c->failed ? WS_NOMEM : WS_CLOSING;
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
    list_push(&c->pending, g);
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
    if (c->pending.head || c->inflight.head || !c->close_sent)
        return false;
    /* Either the peer answered our close (or started it), or we stopped
     * reading because its stream was bad: no close is coming. */
    return c->close_received || !c->reading;
}
