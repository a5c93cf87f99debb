/* test_ws.c: check suite for app/ws.c, WebSocket connections over wslay.
 *
 * Plays the client by hand: builds masked frames (text, fragments, binary,
 * ping, pong, close, bad UTF-8, oversized), feeds them to a ws_conn_t, and
 * parses the server's output bytes back into frames to check messages,
 * pongs and close codes; checks the 256 KiB outbound bound (1008) and that a
 * shared frame's reference count reaches zero exactly once; that a
 * fragmented message costs its payload and no more per fragment, that a
 * close frame's reason is judged whole wherever the bytes are split, and
 * that a header is judged as soon as it is whole, payload or not.
 */
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/check_main.h"
#include "ws.h"

/* ------------------------------------------------------------ client side */

/* Appends one masked client frame to a growing buffer. */
typedef struct bytes {
    uint8_t *data;
    size_t len, cap;
} bytes_t;

static void bytes_put(bytes_t *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
        ck_assert_ptr_nonnull(b->data);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void frame_masked(bytes_t *b, int fin, int opcode, const void *payload, size_t len,
                         int masked)
{
    uint8_t h[14];
    size_t hn = 0;
    h[hn++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        h[hn++] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        h[hn++] = m | 126;
        h[hn++] = (uint8_t)(len >> 8);
        h[hn++] = (uint8_t)len;
    } else {
        h[hn++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[hn++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    if (masked)
        for (int i = 0; i < 4; i++)
            h[hn++] = key[i];
    bytes_put(b, h, hn);
    uint8_t *p = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        p[i] = ((const uint8_t *)payload)[i] ^ (masked ? key[i % 4] : 0);
    bytes_put(b, p, len);
    free(p);
}

static void frame(bytes_t *b, int fin, int opcode, const void *payload, size_t len)
{
    frame_masked(b, fin, opcode, payload, len, 1);
}

static void frame_close(bytes_t *b, uint16_t code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    frame(b, 1, 0x8, p, 2);
}

/* ------------------------------------------------------------ server side */

/* What the on_text callback saw. */
typedef struct seen {
    int count;
    char last[70000];
    size_t last_len;
    ws_conn_t *echo_to; /* non-NULL: reply from inside the callback */
} seen_t;

static void on_text(void *user, const char *msg, size_t len)
{
    seen_t *s = user;
    s->count++;
    ck_assert_uint_le(len, sizeof s->last);
    memcpy(s->last, msg, len);
    s->last_len = len;
    if (s->echo_to)
        ck_assert_int_eq(ws_conn_send_text(s->echo_to, msg, len), WS_OK);
}

/* Collects everything the connection wants written, as the endpoint would
 * (output, "uv_write", output_done), into out. */
static void drain(ws_conn_t *c, bytes_t *out)
{
    struct iovec iov[8];
    size_t n;
    while ((n = ws_conn_output(c, iov, 8)) > 0) {
        ck_assert_uint_eq(ws_conn_output(c, iov, 8), 0); /* one write in flight */
        for (size_t i = 0; i < n; i++)
            bytes_put(out, iov[i].iov_base, iov[i].iov_len);
        ws_conn_output_done(c);
    }
}

typedef struct sframe {
    int fin, opcode;
    const uint8_t *payload;
    size_t len;
} sframe_t;

/* Parses server frames out of b (unmasked, as RFC 6455 requires); returns
 * how many were found, into f[max]. The whole buffer must be whole frames. */
static size_t parse_frames(const bytes_t *b, sframe_t *f, size_t max)
{
    size_t off = 0, n = 0;
    while (off < b->len) {
        ck_assert_uint_ge(b->len - off, 2);
        const uint8_t *h = b->data + off;
        ck_assert_msg((h[1] & 0x80) == 0, "server frames are never masked");
        uint64_t len = h[1] & 0x7f;
        size_t hn = 2;
        if (len == 126) {
            len = (uint64_t)h[2] << 8 | h[3];
            hn = 4;
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hn = 10;
        }
        ck_assert_uint_ge(b->len - off - hn, len);
        ck_assert_uint_lt(n, max);
        f[n].fin = h[0] >> 7;
        f[n].opcode = h[0] & 0x0f;
        f[n].payload = h + hn;
        f[n].len = (size_t)len;
        n++;
        off += hn + (size_t)len;
    }
    return n;
}

static uint16_t close_code_of(const sframe_t *f)
{
    ck_assert_int_eq(f->opcode, 0x8);
    ck_assert_uint_ge(f->len, 2);
    return (uint16_t)(f->payload[0] << 8 | f->payload[1]);
}

/* A fresh connection with its own observer. */
typedef struct fixture {
    ws_conn_t *c;
    seen_t *seen;
    bytes_t in, out;
} fixture_t;

static fixture_t fx_new(void)
{
    fixture_t fx = {0};
    fx.seen = calloc(1, sizeof *fx.seen);
    fx.c = ws_conn_new(on_text, fx.seen, 1000);
    ck_assert_ptr_nonnull(fx.c);
    return fx;
}

static void fx_free(fixture_t *fx)
{
    ws_conn_free(fx->c);
    free(fx->seen);
    free(fx->in.data);
    free(fx->out.data);
}

/* Feeds fx->in in one go and drains the output; returns feed's status. */
static ws_status_t fx_feed(fixture_t *fx)
{
    ws_status_t st = ws_conn_feed(fx->c, fx->in.data, fx->in.len, 2000);
    fx->in.len = 0;
    drain(fx->c, &fx->out);
    return st;
}

/* Expects the output to be exactly one close frame with code. */
static void expect_only_close(fixture_t *fx, uint16_t code)
{
    sframe_t f[4];
    ck_assert_uint_eq(parse_frames(&fx->out, f, 4), 1);
    ck_assert_uint_eq(close_code_of(&f[0]), code);
    ck_assert_uint_eq(ws_conn_close_code(fx->c), code);
    ck_assert(ws_conn_closing(fx->c));
}

/* ------------------------------------------------------------ receiving */

START_TEST(masked_text)
{
    fixture_t fx = fx_new();
    frame(&fx.in, 1, 0x1, "hello", 5);
    frame(&fx.in, 1, 0x1, "", 0);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    ck_assert_int_eq(fx.seen->count, 2);
    ck_assert_uint_eq(fx.seen->last_len, 0);
    ck_assert_uint_eq(fx.out.len, 0);
    ck_assert(!ws_conn_closing(fx.c));
    ck_assert(!ws_conn_finished(fx.c));
    fx_free(&fx);
}
END_TEST

START_TEST(fragmented_text_byte_by_byte)
{
    fixture_t fx = fx_new();
    frame(&fx.in, 0, 0x1, "hel", 3);
    frame(&fx.in, 1, 0x9, "p!", 2); /* a ping between fragments */
    frame(&fx.in, 0, 0x0, "lo \xe2\x82", 5); /* "€" split across fragments */
    frame(&fx.in, 1, 0x0, "\xac", 1);
    for (size_t i = 0; i < fx.in.len; i++) {
        ck_assert_int_eq(fx.seen->count, 0);
        ck_assert_int_eq(ws_conn_feed(fx.c, fx.in.data + i, 1, 2000), WS_OK);
    }
    ck_assert_int_eq(fx.seen->count, 1);
    ck_assert_uint_eq(fx.seen->last_len, 9);
    ck_assert(memcmp(fx.seen->last, "hello \xe2\x82\xac", 9) == 0);
    drain(fx.c, &fx.out);
    sframe_t f[4];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 4), 1);
    ck_assert_int_eq(f[0].opcode, 0xA);
    ck_assert_uint_eq(f[0].len, 2);
    ck_assert(memcmp(f[0].payload, "p!", 2) == 0);
    fx_free(&fx);
}
END_TEST

START_TEST(binary_closes_1003)
{
    fixture_t fx = fx_new();
    uint8_t bin[3] = {1, 2, 3};
    frame(&fx.in, 1, 0x2, bin, 3);
    frame(&fx.in, 1, 0x1, "after", 5);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    expect_only_close(&fx, 1003);
    ck_assert(ws_conn_finished(fx.c)); /* failed: no close reply awaited */
    ck_assert_int_eq(ws_conn_send_text(fx.c, "x", 1), WS_CLOSING);
    fx_free(&fx);
}
END_TEST

START_TEST(fragmented_binary_closes_1003)
{
    fixture_t fx = fx_new();
    frame(&fx.in, 0, 0x2, "ab", 2);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    expect_only_close(&fx, 1003);
    fx_free(&fx);
}
END_TEST

START_TEST(invalid_utf8_closes_1007)
{
    static const char *bad[] = {
        "\xc3\x28", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xff", "abc\xe2\x82", "\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fixture_t fx = fx_new();
        frame(&fx.in, 1, 0x1, bad[i], strlen(bad[i]));
        ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
        ck_assert_msg(fx.seen->count == 0, "case %zu delivered", i);
        expect_only_close(&fx, 1007);
        fx_free(&fx);
    }
    /* bad bytes in the middle fragment of an otherwise fine message */
    fixture_t fx = fx_new();
    frame(&fx.in, 0, 0x1, "ok", 2);
    frame(&fx.in, 0, 0x0, "\xed\xbf\xbf", 3);
    frame(&fx.in, 1, 0x0, "ok", 2);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    expect_only_close(&fx, 1007);
    fx_free(&fx);
}
END_TEST

START_TEST(size_limit_1009)
{
    char *big = malloc(WS_MAX_MESSAGE + 1);
    memset(big, 'a', WS_MAX_MESSAGE + 1);
    /* exactly the limit: delivered */
    fixture_t fx = fx_new();
    frame(&fx.in, 1, 0x1, big, WS_MAX_MESSAGE);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    ck_assert_int_eq(fx.seen->count, 1);
    ck_assert_uint_eq(fx.seen->last_len, WS_MAX_MESSAGE);
    fx_free(&fx);
    /* one byte more in one frame: 1009 */
    fx = fx_new();
    frame(&fx.in, 1, 0x1, big, WS_MAX_MESSAGE + 1);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    expect_only_close(&fx, 1009);
    fx_free(&fx);
    /* one byte more over two fragments: 1009 */
    fx = fx_new();
    frame(&fx.in, 0, 0x1, big, 40000);
    frame(&fx.in, 1, 0x0, big, WS_MAX_MESSAGE + 1 - 40000);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    expect_only_close(&fx, 1009);
    fx_free(&fx);
    free(big);
}
END_TEST

START_TEST(unmasked_is_protocol_error)
{
    fixture_t fx = fx_new();
    frame_masked(&fx.in, 1, 0x1, "hi", 2, 0);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    expect_only_close(&fx, 1002);
    ck_assert(ws_conn_finished(fx.c));
    fx_free(&fx);
}
END_TEST

/* Frames that break RFC 6455 close the connection with 1002. */
START_TEST(protocol_errors_close)
{
    static const struct { uint8_t bytes[16]; size_t len; uint16_t code; } cases[] = {
        {{0x83, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* reserved opcode 3 */
        {{0xc1, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* RSV1 without extension */
        {{0x80, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* continuation first */
        {{0x01, 0x81, 0, 0, 0, 0, 'a', 0x81, 0x81, 0, 0, 0, 0, 'b'}, 14, 1002}, /* text inside */
        {{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed}, 8, 1002},          /* close code 1005 on the wire */
        {{0x09, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* fragmented ping */
        {{0x89, 0xfe, 0, 126}, 4, 1002},                          /* ping over 125 bytes */
        {{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, 1002}, /* 64-bit length, top bit */
        {{0xa1, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* RSV2 */
        {{0x91, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* RSV3 */
        {{0x8b, 0x80, 0, 0, 0, 0}, 6, 1002},                      /* reserved control opcode */
        {{0x88, 0x81, 0, 0, 0, 0, 0x03}, 7, 1002},                /* close with one byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t fx = fx_new();
        bytes_put(&fx.in, cases[i].bytes, cases[i].len);
        ck_assert_msg(fx_feed(&fx) == WS_CLOSING, "case %zu", i);
        ck_assert_int_eq(fx.seen->count, 0);
        sframe_t f[2];
        ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
        ck_assert_msg(close_code_of(&f[0]) == cases[i].code, "case %zu", i);
        ck_assert(ws_conn_finished(fx.c));
        fx_free(&fx);
    }
}
END_TEST

START_TEST(ping_answered)
{
    fixture_t fx = fx_new();
    frame(&fx.in, 1, 0x9, "stamp", 5);
    frame(&fx.in, 1, 0x9, "", 0);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    sframe_t f[4];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 4), 2);
    ck_assert_int_eq(f[0].opcode, 0xA);
    ck_assert_uint_eq(f[0].len, 5);
    ck_assert(memcmp(f[0].payload, "stamp", 5) == 0);
    ck_assert_int_eq(f[1].opcode, 0xA);
    ck_assert_uint_eq(f[1].len, 0);
    fx_free(&fx);
}
END_TEST

START_TEST(our_ping_and_pong_time)
{
    fixture_t fx = fx_new();
    ck_assert_uint_eq(ws_conn_last_pong(fx.c), 1000);
    ck_assert(!ws_conn_awaiting_pong(fx.c));
    ck_assert_int_eq(ws_conn_ping(fx.c, 31000), WS_OK);
    ck_assert(ws_conn_awaiting_pong(fx.c));
    drain(fx.c, &fx.out);
    sframe_t f[2];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
    ck_assert_int_eq(f[0].opcode, 0x9);
    frame(&fx.in, 1, 0xA, f[0].payload, f[0].len);
    ck_assert_int_eq(ws_conn_feed(fx.c, fx.in.data, fx.in.len, 31050), WS_OK);
    ck_assert(!ws_conn_awaiting_pong(fx.c));
    ck_assert_uint_eq(ws_conn_last_pong(fx.c), 31050);
    fx_free(&fx);
}
END_TEST

START_TEST(peer_close_handshake)
{
    fixture_t fx = fx_new();
    frame(&fx.in, 1, 0x1, "bye", 3);
    frame_close(&fx.in, 1000);
    frame(&fx.in, 1, 0x1, "ignored", 7);
    ck_assert_int_eq(ws_conn_feed(fx.c, fx.in.data, fx.in.len, 2000), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 1);
    ck_assert_uint_eq(ws_conn_peer_close_code(fx.c), 1000);
    ck_assert(!ws_conn_finished(fx.c)); /* the echoed close is not written yet */
    drain(fx.c, &fx.out);
    ck_assert(ws_conn_finished(fx.c));
    expect_only_close(&fx, 1000);
    ck_assert_int_eq(ws_conn_send_text(fx.c, "late", 4), WS_CLOSING);
    fx_free(&fx);
}
END_TEST

START_TEST(our_close_handshake)
{
    fixture_t fx = fx_new();
    ck_assert_int_eq(ws_conn_close(fx.c, 1001, "going away"), WS_OK);
    ck_assert(ws_conn_closing(fx.c));
    drain(fx.c, &fx.out);
    sframe_t f[2];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
    ck_assert_uint_eq(close_code_of(&f[0]), 1001);
    ck_assert(memcmp(f[0].payload + 2, "going away", 10) == 0);
    ck_assert(!ws_conn_finished(fx.c)); /* waiting for the peer's close */
    frame(&fx.in, 1, 0x1, "in flight", 9); /* data after our close is dropped */
    frame_close(&fx.in, 1001);
    fx.out.len = 0;
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    ck_assert_uint_eq(fx.out.len, 0); /* no second close */
    ck_assert_uint_eq(ws_conn_peer_close_code(fx.c), 1001);
    ck_assert(ws_conn_finished(fx.c));
    ck_assert_int_eq(ws_conn_close(fx.c, 1000, NULL), WS_CLOSING);
    fx_free(&fx);
    /* a reason over 123 bytes is cut, at a character boundary */
    char reason[200] = "";
    for (int i = 0; i < 60; i++)
        strcat(reason, "\xc3\xa9"); /* 120 bytes of é */
    strcat(reason, "ab\xe2\x82\xac-tail"); /* the euro sign straddles byte 123 */
    fx = fx_new();
    ck_assert_int_eq(ws_conn_close(fx.c, 1000, reason), WS_OK);
    drain(fx.c, &fx.out);
    sframe_t g[2];
    ck_assert_uint_eq(parse_frames(&fx.out, g, 2), 1);
    ck_assert_uint_eq(g[0].len, 2 + 122);
    fx_free(&fx);
}
END_TEST

START_TEST(echo_from_callback)
{
    fixture_t fx = fx_new();
    fx.seen->echo_to = fx.c;
    frame(&fx.in, 1, 0x1, "one", 3);
    frame(&fx.in, 1, 0x9, "pg", 2);
    frame(&fx.in, 1, 0x1, "two", 3);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    sframe_t f[4];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 4), 3);
    ck_assert_int_eq(f[0].opcode, 0x1);
    ck_assert(f[0].len == 3 && memcmp(f[0].payload, "one", 3) == 0);
    ck_assert_int_eq(f[1].opcode, 0xA);
    ck_assert(f[2].len == 3 && memcmp(f[2].payload, "two", 3) == 0);
    fx_free(&fx);
}
END_TEST

/* ------------------------------------------------------------ reassembly bound */

/* Heap bytes in use in this process (Check runs each test in its own fork):
 * the sanitizer allocator's count under ASan, glibc's otherwise. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes)
        return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* Issue 7 item 5: 60,000 one-byte fragments of an unfinished message used to
 * cost 5.4 MiB (a chunk and a list node per fragment); now they cost what
 * the 60,000 bytes of payload cost, rounded up to WS_RX_STEP. */
START_TEST(fragments_cost_only_their_payload)
{
    enum { FRAGS = 60000 };
    fixture_t fx = fx_new();
    bytes_t all = {0};
    frame(&all, 0, 0x1, "[", 1);
    for (int i = 1; i < FRAGS; i++)
        frame(&all, 0, 0x0, " ", 1);
    size_t before = heap_in_use();
    /* fed in 4 KiB reads, as a socket would deliver them */
    for (size_t off = 0; off < all.len; off += 4096) {
        size_t n = all.len - off < 4096 ? all.len - off : 4096;
        ck_assert_int_eq(ws_conn_feed(fx.c, all.data + off, n, 2000), WS_OK);
    }
    size_t held = heap_in_use() - before;
    ck_assert_uint_le(ws_conn_input_bytes(fx.c), FRAGS + WS_RX_STEP - 1);
    ck_assert_uint_ge(ws_conn_input_bytes(fx.c), FRAGS);
    /* the payload, its rounding, and the decoder of the frame part read */
    ck_assert_msg(held <= FRAGS + WS_RX_STEP + WS_DECODER_BYTES,
                  "%zu bytes held for %d bytes of payload", held, FRAGS);
    ck_assert_int_eq(fx.seen->count, 0);
    /* the last fragment completes it: one message of 60,001 bytes */
    fx.in.len = 0;
    frame(&fx.in, 1, 0x0, "]", 1);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    ck_assert_int_eq(fx.seen->count, 1);
    ck_assert_uint_eq(fx.seen->last_len, FRAGS + 1);
    ck_assert_int_eq(fx.seen->last[0], '[');
    ck_assert_int_eq(fx.seen->last[FRAGS], ']');
    /* between messages a connection keeps no buffer at all */
    ck_assert_uint_eq(ws_conn_input_bytes(fx.c), 0);
    free(all.data);
    fx_free(&fx);
}
END_TEST

/* Crossing the bound with fragments: the one that would take the message
 * past WS_MAX_MESSAGE closes 1009 at its header, with the buffer at most
 * the limit. */
START_TEST(fragments_past_the_limit_1009)
{
    fixture_t fx = fx_new();
    char *chunk = malloc(WS_MAX_MESSAGE);
    memset(chunk, 'a', WS_MAX_MESSAGE);
    frame(&fx.in, 0, 0x1, chunk, WS_MAX_MESSAGE - 1);
    frame(&fx.in, 0, 0x0, "b", 1);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    ck_assert_uint_le(ws_conn_input_bytes(fx.c), WS_MAX_MESSAGE);
    /* an empty fragment is fine; one more byte is not */
    frame(&fx.in, 0, 0x0, "", 0);
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    /* only the header of the fragment that crosses: no payload is needed */
    uint8_t h[6] = {0x00, 0x81, 1, 2, 3, 4};
    bytes_put(&fx.in, h, sizeof h);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    ck_assert_int_eq(fx.seen->count, 0);
    expect_only_close(&fx, 1009);
    ck_assert_uint_le(ws_conn_input_bytes(fx.c), WS_MAX_MESSAGE);
    /* an announced length over the limit is refused before its payload */
    fixture_t fy = fx_new();
    uint8_t big[14] = {0x81, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    bytes_put(&fy.in, big, sizeof big);
    ck_assert_int_eq(fx_feed(&fy), WS_CLOSING);
    expect_only_close(&fy, 1009);
    ck_assert_uint_eq(ws_conn_input_bytes(fy.c), 0);
    fx_free(&fy);
    free(chunk);
    fx_free(&fx);
}
END_TEST

/* A header that arrives without its payload is judged at once, by the same
 * rules as one that comes with payload (wslay reports a header only with
 * its first payload byte; ws.c reads such a header from what it gave
 * wslay): nothing waits for a payload the client may never send. */
START_TEST(header_alone_is_judged)
{
    static const struct { uint8_t bytes[14]; size_t len; uint16_t code; } cases[] = {
        {{0x81, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4}, 14, 1009}, /* 1 TiB announced */
        {{0x81, 0xff, 0, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4}, 14, 1009}, /* 65,537 */
        {{0x82, 0xe4, 1, 2, 3, 4}, 6, 1003},                          /* binary */
        {{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4}, 14, 1003}, /* binary, too big */
        {{0x80, 0x85, 1, 2, 3, 4}, 6, 1002},                          /* continuation first */
        {{0xc1, 0x85, 1, 2, 3, 4}, 6, 1002},                          /* RSV1 */
        {{0x83, 0x85, 1, 2, 3, 4}, 6, 1002},                          /* reserved opcode */
        {{0x81, 0x05}, 2, 1002},                                      /* unmasked */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t fx = fx_new();
        /* byte by byte: nothing is decided before the header is whole */
        for (size_t k = 0; k + 1 < cases[i].len; k++) {
            ck_assert_msg(ws_conn_feed(fx.c, cases[i].bytes + k, 1, 2000) == WS_OK,
                          "case %zu byte %zu", i, k);
            ck_assert(!ws_conn_closing(fx.c));
        }
        ck_assert_msg(ws_conn_feed(fx.c, cases[i].bytes + cases[i].len - 1, 1, 2000) ==
                          WS_CLOSING, "case %zu", i);
        drain(fx.c, &fx.out);
        sframe_t f[2];
        ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
        ck_assert_msg(close_code_of(&f[0]) == cases[i].code, "case %zu: %u", i,
                      close_code_of(&f[0]));
        ck_assert_uint_eq(ws_conn_input_bytes(fx.c), 0);
        ck_assert(ws_conn_finished(fx.c));
        fx_free(&fx);
    }
    /* a good header alone is accepted, and its payload, when it comes,
     * completes the message; the frames after it are read as usual */
    static const size_t sizes[] = {1, 125, 126, 300, 65535, 65536};
    char *body = malloc(65536);
    for (size_t i = 0; i < 65536; i++)
        body[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        fixture_t fx = fx_new();
        bytes_t one = {0};
        frame(&one, 1, 0x1, body, sizes[i]);
        size_t hn = sizes[i] < 126 ? 6 : sizes[i] <= 0xFFFF ? 8 : 14;
        ck_assert_int_eq(ws_conn_feed(fx.c, one.data, hn, 2000), WS_OK);
        ck_assert_int_eq(ws_conn_feed(fx.c, one.data + hn, one.len - hn, 2000), WS_OK);
        ck_assert_int_eq(fx.seen->count, 1);
        ck_assert_uint_eq(fx.seen->last_len, sizes[i]);
        ck_assert(memcmp(fx.seen->last, body, sizes[i]) == 0);
        frame(&fx.in, 1, 0x9, "p", 1);
        frame(&fx.in, 1, 0x1, "after", 5);
        ck_assert_int_eq(fx_feed(&fx), WS_OK);
        ck_assert_int_eq(fx.seen->count, 2);
        ck_assert(fx.seen->last_len == 5 && memcmp(fx.seen->last, "after", 5) == 0);
        sframe_t f[2];
        ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
        ck_assert_int_eq(f[0].opcode, 0xA);
        free(one.data);
        fx_free(&fx);
    }
    free(body);
}
END_TEST

/* RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the
 * length". wslay's frame layer refuses any other form; so do we (1002). */
START_TEST(length_not_shortest_1002)
{
    static const struct { uint8_t bytes[14]; size_t len; } cases[] = {
        {{0x81, 0xfe, 0, 5, 1, 2, 3, 4}, 8},                        /* 5 in 16 bits */
        {{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4}, 14},   /* 200 in 64 bits */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t fx = fx_new();
        bytes_put(&fx.in, cases[i].bytes, cases[i].len);
        ck_assert_msg(fx_feed(&fx) == WS_CLOSING, "case %zu", i);
        expect_only_close(&fx, 1002);
        ck_assert_int_eq(fx.seen->count, 0);
        fx_free(&fx);
    }
}
END_TEST

/* Bad UTF-8 fails at the fragment that carries it, not at the message's end. */
START_TEST(invalid_utf8_fails_fast)
{
    fixture_t fx = fx_new();
    frame(&fx.in, 0, 0x1, "ok \xce", 4);  /* a sequence left open: fine so far */
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    frame(&fx.in, 0, 0x0, "\xba ok", 4);   /* completes it: κ */
    ck_assert_int_eq(fx_feed(&fx), WS_OK);
    frame(&fx.in, 0, 0x0, "\xf5", 1);      /* never valid */
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    expect_only_close(&fx, 1007);
    fx_free(&fx);
    /* open sequences that can no longer become valid fail at once too:
     * overlong (E0 80), surrogate (ED A0), above U+10FFFF (F4 90) */
    static const char *dead[] = {"a\xe0\x80", "a\xed\xa0", "a\xf4\x90\x80", "a\xc1"};
    for (size_t i = 0; i < sizeof dead / sizeof dead[0]; i++) {
        fx = fx_new();
        frame(&fx.in, 0, 0x1, dead[i], strlen(dead[i]));
        ck_assert_msg(fx_feed(&fx) == WS_CLOSING, "case %zu", i);
        expect_only_close(&fx, 1007);
        fx_free(&fx);
    }
}
END_TEST

/* ------------------------------------------------------------ close frames */

/* A close frame with code and reason, masked, as the client sends it. */
static void frame_close_reason(bytes_t *b, uint16_t code, const char *reason, size_t rlen)
{
    uint8_t p[125];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rlen);
    frame(b, 1, 0x8, p, 2 + rlen);
}

/* Feeds b in two reads split at `at`, drains, returns the close code the
 * server sent (0 if none). */
static uint16_t close_answer_split(const bytes_t *b, size_t at)
{
    fixture_t fx = fx_new();
    ws_conn_feed(fx.c, b->data, at, 2000);
    ws_conn_feed(fx.c, b->data + at, b->len - at, 2000);
    drain(fx.c, &fx.out);
    sframe_t f[2];
    size_t n = parse_frames(&fx.out, f, 2);
    ck_assert_uint_eq(n, 1);
    uint16_t code = close_code_of(&f[0]);
    ck_assert(ws_conn_finished(fx.c));
    fx_free(&fx);
    return code;
}

/* Issue 7 item 7: the reason is checked over the whole payload, wherever
 * TCP splits the frame (before, a split inside the payload shifted what was
 * checked by two bytes: é-ok split inside é was 1007, a bad byte in the
 * second packet was echoed with 1000). */
START_TEST(close_reason_utf8_any_split)
{
    bytes_t good = {0}, bad = {0}, bad_end = {0};
    frame_close_reason(&good, 1000, "\xc3\xa9-ok", 5);
    frame_close_reason(&bad, 1000, "ok-\xff-ok", 7);
    frame_close_reason(&bad_end, 1000, "ok-ok\xc3", 6); /* truncated at the end */
    for (size_t at = 0; at <= good.len; at++)
        ck_assert_msg(close_answer_split(&good, at) == 1000, "valid reason split at %zu", at);
    for (size_t at = 0; at <= bad.len; at++)
        ck_assert_msg(close_answer_split(&bad, at) == 1007, "bad reason split at %zu", at);
    for (size_t at = 0; at <= bad_end.len; at++)
        ck_assert_msg(close_answer_split(&bad_end, at) == 1007, "truncated split at %zu", at);
    /* and byte by byte */
    fixture_t fx = fx_new();
    for (size_t i = 0; i < good.len; i++)
        ws_conn_feed(fx.c, good.data + i, 1, 2000);
    drain(fx.c, &fx.out);
    expect_only_close(&fx, 1000);
    ck_assert_uint_eq(ws_conn_peer_close_code(fx.c), 1000);
    fx_free(&fx);
    free(good.data);
    free(bad.data);
    free(bad_end.data);
}
END_TEST

/* Codes the peer may send are echoed; the others are a protocol error. */
START_TEST(close_codes)
{
    static const uint16_t ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                                   2999, 5000, 65535};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bytes_t b = {0};
        frame_close_reason(&b, ok[i], "bye", 3);
        ck_assert_msg(close_answer_split(&b, b.len) == ok[i], "code %u", ok[i]);
        free(b.data);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bytes_t b = {0};
        frame_close_reason(&b, bad[i], "", 0);
        ck_assert_msg(close_answer_split(&b, 3) == 1002, "code %u", bad[i]);
        free(b.data);
    }
    /* an empty close is answered with an empty close; its code reads 1005 */
    fixture_t fx = fx_new();
    frame(&fx.in, 1, 0x8, "", 0);
    ck_assert_int_eq(fx_feed(&fx), WS_CLOSING);
    sframe_t f[2];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
    ck_assert_int_eq(f[0].opcode, 0x8);
    ck_assert_uint_eq(f[0].len, 0);
    ck_assert_uint_eq(ws_conn_peer_close_code(fx.c), 1005);
    ck_assert_uint_eq(ws_conn_close_code(fx.c), 1005);
    ck_assert(ws_conn_finished(fx.c));
    fx_free(&fx);
}
END_TEST

/* ------------------------------------------------------------ sending */

START_TEST(order_text_and_shared)
{
    fixture_t fx = fx_new();
    ws_shared_t *s = ws_shared_text("{\"type\":\"message\"}", 18);
    ck_assert_int_eq(ws_conn_send_text(fx.c, "A", 1), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_text(fx.c, "C", 1), WS_OK);
    drain(fx.c, &fx.out);
    sframe_t f[4];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 4), 3);
    ck_assert(f[0].len == 1 && f[0].payload[0] == 'A');
    ck_assert(f[1].fin && f[1].opcode == 0x1 && f[1].len == 18);
    ck_assert(memcmp(f[1].payload, "{\"type\":\"message\"}", 18) == 0);
    ck_assert(f[2].len == 1 && f[2].payload[0] == 'C');
    ck_assert_uint_eq(ws_conn_queued_bytes(fx.c), 0);
    ck_assert(ws_shared_release(s)); /* the connection let go once written */
    fx_free(&fx);
}
END_TEST

/* A batch: three frames in one buffer, tagged; one connection takes them
 * all, another (which had the first already) the suffix from part 1. */
START_TEST(shared_batch_and_suffix)
{
    fixture_t a = fx_new(), b = fx_new();
    char big[300];
    memset(big, 'x', sizeof big);
    const ws_text_t t[3] = {{"{\"seq\":7}", 10, 7}, {big, sizeof big, 9}, {"{}", 2, 12}};
    ws_shared_t *s = ws_shared_texts(t, 3);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(ws_shared_nparts(s), 3);
    ck_assert(ws_shared_tag(s, 0) == 7 && ws_shared_tag(s, 1) == 9 && ws_shared_tag(s, 2) == 12);
    ck_assert_int_eq(ws_conn_send_shared(a.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared_from(b.c, s, 1), WS_OK);
    /* only the suffix counts against b's bound: 300 + 4 and 2 + 2 bytes */
    ck_assert_uint_eq(ws_conn_queued_bytes(b.c), 308);
    ck_assert_uint_eq(ws_conn_queued_bytes(a.c), 320);
    drain(a.c, &a.out);
    drain(b.c, &b.out);
    sframe_t f[4];
    ck_assert_uint_eq(parse_frames(&a.out, f, 4), 3);
    ck_assert(f[0].fin && f[0].opcode == 0x1 && f[0].len == 10 && !memcmp(f[0].payload, "{\"seq\":7}", 10));
    ck_assert(f[1].len == 300 && f[1].payload[299] == 'x');
    ck_assert(f[2].len == 2 && !memcmp(f[2].payload, "{}", 2));
    ck_assert_uint_eq(parse_frames(&b.out, f, 4), 2);
    ck_assert(f[0].fin && f[0].opcode == 0x1 && f[0].len == 300);
    ck_assert(f[1].len == 2 && !memcmp(f[1].payload, "{}", 2));
    ck_assert(ws_shared_release(s)); /* both connections let go once written */
    fx_free(&a);
    fx_free(&b);
}
END_TEST

START_TEST(shared_frame_sizes)
{
    static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 70000};
    char *payload = malloc(70000);
    for (size_t i = 0; i < 70000; i++)
        payload[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ws_shared_t *s = ws_shared_text(payload, sizes[i]);
        ck_assert_ptr_nonnull(s);
        size_t flen, plen;
        const uint8_t *fb = ws_shared_frame(s, &flen);
        const char *pb = ws_shared_payload(s, &plen);
        ck_assert_uint_eq(plen, sizes[i]);
        ck_assert_int_eq(pb[plen], '\0');
        bytes_t b = {(uint8_t *)fb, flen, flen};
        sframe_t f[1];
        ck_assert_uint_eq(parse_frames(&b, f, 1), 1);
        ck_assert(f[0].fin && f[0].opcode == 0x1);
        ck_assert_uint_eq(f[0].len, sizes[i]);
        ck_assert(memcmp(f[0].payload, payload, sizes[i]) == 0);
        ck_assert(ws_shared_release(s));
    }
    free(payload);
}
END_TEST

START_TEST(outbound_bound_1008)
{
    fixture_t fx = fx_new();
    char msg[1000];
    memset(msg, 'm', sizeof msg);
    size_t frame_len = sizeof msg + 4; /* 126..65535 bytes: 4-byte header */
    size_t fit = WS_OUTBOUND_MAX / frame_len;
    /* A write in flight counts too: take the first frames out first. */
    ck_assert_int_eq(ws_conn_send_text(fx.c, msg, sizeof msg), WS_OK);
    struct iovec iov[4];
    ck_assert_uint_gt(ws_conn_output(fx.c, iov, 4), 0);
    for (size_t i = 1; i < fit; i++)
        ck_assert_int_eq(ws_conn_send_text(fx.c, msg, sizeof msg), WS_OK);
    ck_assert_uint_eq(ws_conn_queued_bytes(fx.c), fit * frame_len);
    ck_assert_uint_le(ws_conn_queued_bytes(fx.c), WS_OUTBOUND_MAX);
    ck_assert(!ws_conn_closing(fx.c));
    ck_assert_int_eq(ws_conn_send_text(fx.c, msg, sizeof msg), WS_OVERFLOW);
    ck_assert(ws_conn_closing(fx.c));
    ck_assert_uint_eq(ws_conn_close_code(fx.c), 1008);
    ck_assert_int_eq(ws_conn_send_text(fx.c, "x", 1), WS_CLOSING);
    /* The write in flight completes; then only the close is left to write:
     * the frames the client never started receiving were dropped. */
    ck_assert(!ws_conn_finished(fx.c));
    ws_conn_output_done(fx.c);
    drain(fx.c, &fx.out);
    sframe_t f[2];
    ck_assert_uint_eq(parse_frames(&fx.out, f, 2), 1);
    ck_assert_uint_eq(close_code_of(&f[0]), 1008);
    ck_assert(memcmp(f[0].payload + 2, "cannot keep up", 14) == 0);
    ck_assert(ws_conn_finished(fx.c));
    fx_free(&fx);
}
END_TEST

/* A shared frame of len bytes of 'x' (ws_shared_text copies the payload). */
static ws_shared_t *x_shared(size_t len)
{
    char *payload = malloc(len);
    ck_assert_ptr_nonnull(payload);
    memset(payload, 'x', len);
    ws_shared_t *s = ws_shared_text(payload, len);
    free(payload);
    return s;
}

/* The connection overflowed: 1008 sent, nothing after it, then freed. */
static void assert_overflowed(fixture_t *fx)
{
    ck_assert_uint_eq(ws_conn_close_code(fx->c), 1008);
    drain(fx->c, &fx->out);
    ck_assert(ws_conn_finished(fx->c));
    fx_free(fx);
}

START_TEST(outbound_bound_shared)
{
    fixture_t fx = fx_new();
    ws_shared_t *s = x_shared(100000);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OVERFLOW);
    ck_assert_uint_eq(ws_conn_close_code(fx.c), 1008);
    ck_assert(ws_shared_release(s)); /* the dropped frames let go: ours was the last */
    assert_overflowed(&fx);
}
END_TEST

/* A shared frame over the bound (a presence_diff of thousands of leaves)
 * is taken outside the bound while the pushes queued are under it: pushes
 * and pings go on behind it, and more such frames are taken up to
 * WS_OUTBOUND_BIG_MAX; the next one overflows. */
START_TEST(outbound_bound_big_frame_alone)
{
    fixture_t fx = fx_new();
    size_t big_len = WS_OUTBOUND_MAX + 50000;
    ws_shared_t *s = x_shared(big_len), *small = ws_shared_text("{}", 2);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OK);
    ck_assert_uint_gt(ws_conn_queued_bytes(fx.c), WS_OUTBOUND_MAX);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, small), WS_OK);
    ck_assert_int_eq(ws_conn_ping(fx.c, 1), WS_OK);
    ck_assert_uint_eq(ws_conn_close_code(fx.c), 0);
    size_t taken = 1, frame = big_len + 10; /* the header of a 64-bit length */
    while (ws_conn_send_shared(fx.c, s) == WS_OK)
        taken++;
    ck_assert_uint_eq(taken, WS_OUTBOUND_BIG_MAX / frame);
    assert_overflowed(&fx);
    ck_assert(ws_shared_release(s));
    ck_assert(ws_shared_release(small));
}
END_TEST

/* Behind pushes that fill the bound, a big frame overflows like any push. */
START_TEST(outbound_bound_big_frame_behind_full_queue)
{
    fixture_t fx = fx_new();
    /* two of mid fill the bound exactly (10 bytes of header each) */
    size_t big_len = WS_OUTBOUND_MAX + 50000, mid_len = WS_OUTBOUND_MAX / 2 - 10;
    ws_shared_t *s = x_shared(big_len), *mid = x_shared(mid_len);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, mid), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OK); /* under the bound: taken */
    ck_assert_int_eq(ws_conn_send_shared(fx.c, mid), WS_OK);
    ck_assert_uint_eq(ws_conn_queued_bytes(fx.c) - (big_len + 10), WS_OUTBOUND_MAX);
    ck_assert_int_eq(ws_conn_send_shared(fx.c, s), WS_OVERFLOW); /* the pushes fill it */
    assert_overflowed(&fx);
    ck_assert(ws_shared_release(s));
    ck_assert(ws_shared_release(mid));
}
END_TEST

START_TEST(ping_flood_is_bounded)
{
    fixture_t fx = fx_new();
    char p[125];
    memset(p, 'p', sizeof p);
    size_t pings = WS_OUTBOUND_MAX / (sizeof p + 2) + 10;
    for (size_t i = 0; i < pings; i++)
        frame(&fx.in, 1, 0x9, p, sizeof p);
    /* never drained: the client does not read its pongs */
    ck_assert_int_eq(ws_conn_feed(fx.c, fx.in.data, fx.in.len, 2000), WS_CLOSING);
    ck_assert_uint_le(ws_conn_queued_bytes(fx.c), WS_OUTBOUND_MAX);
    ck_assert_uint_eq(ws_conn_close_code(fx.c), 1008);
    fx_free(&fx);
}
END_TEST

START_TEST(shared_refcount_zero_once)
{
    long base = ws_shared_live();
    ws_shared_t *s = ws_shared_text("{\"type\":\"presence_diff\"}", 24);
    ck_assert_int_eq(ws_shared_live(), base + 1);
    fixture_t a = fx_new(), b = fx_new(), c = fx_new();
    ck_assert_int_eq(ws_conn_send_shared(a.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(b.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(c.c, s), WS_OK);
    ck_assert_int_eq(ws_conn_send_shared(c.c, s), WS_OK);
    int frees = 0;
    ws_shared_retain(s); /* the test's second reference, dropped last */
    frees += ws_shared_release(s); /* the "PubSub" reference */
    drain(a.c, &a.out);            /* written: released */
    struct iovec iov[4];
    ck_assert_uint_eq(ws_conn_output(b.c, iov, 4), 1); /* in flight when freed */
    fx_free(&b);
    fx_free(&c);                   /* never written: released at free */
    ck_assert_int_eq(ws_shared_live(), base + 1);
    frees += ws_shared_release(s);
    ck_assert_int_eq(frees, 1);
    ck_assert_int_eq(ws_shared_live(), base);
    sframe_t f[2];
    ck_assert_uint_eq(parse_frames(&a.out, f, 2), 1);
    fx_free(&a);
}
END_TEST

/* Many threads drop references to one buffer at once (PubSub's deliveries
 * finish on several schedulers): exactly one release frees it. */
enum { REL_THREADS = 4, REL_EACH = 20000 };
static ws_shared_t *rel_buf;
static atomic_int rel_frees;

static void *release_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < REL_EACH; i++)
        if (ws_shared_release(rel_buf))
            atomic_fetch_add(&rel_frees, 1);
    return NULL;
}

START_TEST(shared_release_across_threads)
{
    long base = ws_shared_live();
    rel_buf = ws_shared_text("{}", 2);
    for (int i = 1; i < REL_THREADS * REL_EACH; i++)
        ws_shared_retain(rel_buf);
    atomic_store(&rel_frees, 0);
    pthread_t t[REL_THREADS];
    for (int i = 0; i < REL_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, release_many, NULL), 0);
    for (int i = 0; i < REL_THREADS; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(atomic_load(&rel_frees), 1);
    ck_assert_int_eq(ws_shared_live(), base);
}
END_TEST

/* ------------------------------------------------------------ idle memory */

/* Issue 6: an idle connection holds nothing but its record.  IDLE_CONNS
 * connections each get a request (whole, in one read), a ping, a push and a
 * reply, and answer; afterwards the heap holds their records and at most
 * the thread's spare decoders (WS_DECODER_BYTES each, 4 at most) and spare
 * segment headers, however many connections there are.  Before: 5,296
 * bytes per connection from its creation, 4 KiB more after its first
 * message (the reassembly buffer kept between messages). */
START_TEST(idle_connections_hold_nothing)
{
    enum { IDLE_CONNS = 200 };
    static fixture_t fx[IDLE_CONNS];
    static const char diff[] = "{\"type\":\"presence_diff\"}";
    static const char join[] = "{\"type\":\"join\",\"name\":\"ada\"}";
    static const char joined[] = "{\"type\":\"joined\"}";
    ws_shared_t *push = ws_shared_text(diff, strlen(diff));
    for (int i = 0; i < IDLE_CONNS; i++) { /* the test's observers first */
        fx[i] = (fixture_t){0};
        fx[i].seen = calloc(1, sizeof *fx[i].seen);
    }
    size_t before_new = heap_in_use();
    for (int i = 0; i < IDLE_CONNS; i++) {
        fx[i].c = ws_conn_new(on_text, fx[i].seen, 1000);
        ck_assert_ptr_nonnull(fx[i].c);
    }
    size_t fresh = heap_in_use() - before_new;
    for (int i = 0; i < IDLE_CONNS; i++) {
        frame(&fx[i].in, 1, 0x1, join, strlen(join));
        frame(&fx[i].in, 1, 0x9, "p", 1);
        ck_assert_int_eq(fx_feed(&fx[i]), WS_OK);
        ck_assert_int_eq(fx[i].seen->count, 1);
        ck_assert_int_eq(ws_conn_send_shared(fx[i].c, push), WS_OK);
        ck_assert_int_eq(ws_conn_send_reply(fx[i].c, joined, strlen(joined)), WS_OK);
        drain(fx[i].c, &fx[i].out);
        ck_assert_uint_eq(ws_conn_input_bytes(fx[i].c), 0);
        ck_assert_uint_eq(ws_conn_queued_bytes(fx[i].c), 0);
        free(fx[i].out.data); /* the test's own copies, not the server's */
        fx[i].out = (bytes_t){0};
        free(fx[i].in.data);
        fx[i].in = (bytes_t){0};
    }
    fprintf(stderr, "idle_connections_hold_nothing: %zu bytes per new connection, "
            "%zu after a request, a ping, a push and a reply (%d connections)\n",
            fresh / IDLE_CONNS, (heap_in_use() - before_new) / IDLE_CONNS, IDLE_CONNS);
    size_t used = heap_in_use() - before_new;
    ck_assert_msg(used <= fresh + 4 * WS_DECODER_BYTES + 64 * 1024,
                  "%d idle connections hold %zu bytes, %zu when new", IDLE_CONNS, used, fresh);
    ck_assert_msg(fresh / IDLE_CONNS < 512, "a new connection holds %zu bytes",
                  fresh / IDLE_CONNS);
    for (int i = 0; i < IDLE_CONNS; i++)
        fx_free(&fx[i]);
    ws_shared_release(push);
}
END_TEST

/* A frame part read holds a decoder; the rest of it, read later, completes
 * it and gives the decoder back; interleaved with other connections that
 * use (pooled) decoders in between, nothing is mixed up. */
START_TEST(split_frames_across_connections)
{
    enum { N = 8 };
    fixture_t fx[N];
    bytes_t all[N];
    memset(all, 0, sizeof all);
    for (int i = 0; i < N; i++) {
        fx[i] = fx_new();
        char msg[300];
        memset(msg, 'a' + i, sizeof msg);
        frame(&all[i], 1, 0x1, msg, sizeof msg); /* a 2-byte extended length */
    }
    /* every connection gets its frame cut at a different byte, in turn */
    for (size_t cut = 1; cut < 9; cut++) {
        for (int i = 0; i < N; i++)
            ck_assert_int_eq(ws_conn_feed(fx[i].c, all[i].data, cut, 2000), WS_OK);
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(ws_conn_feed(fx[i].c, all[i].data + cut, all[i].len - cut, 2000),
                             WS_OK);
            ck_assert_int_eq(fx[i].seen->count, (int)cut);
            ck_assert_uint_eq(fx[i].seen->last_len, 300);
            ck_assert_int_eq(fx[i].seen->last[0], 'a' + i);
            ck_assert_int_eq(fx[i].seen->last[299], 'a' + i);
        }
    }
    for (int i = 0; i < N; i++) {
        free(all[i].data);
        fx_free(&fx[i]);
    }
}
END_TEST

static Suite *ws_suite(void)
{
    Suite *s = suite_create("ws");
    TCase *r = tcase_create("receive");
    tcase_add_test(r, masked_text);
    tcase_add_test(r, fragmented_text_byte_by_byte);
    tcase_add_test(r, binary_closes_1003);
    tcase_add_test(r, fragmented_binary_closes_1003);
    tcase_add_test(r, invalid_utf8_closes_1007);
    tcase_add_test(r, size_limit_1009);
    tcase_add_test(r, unmasked_is_protocol_error);
    tcase_add_test(r, protocol_errors_close);
    tcase_add_test(r, ping_answered);
    tcase_add_test(r, our_ping_and_pong_time);
    tcase_add_test(r, peer_close_handshake);
    tcase_add_test(r, our_close_handshake);
    tcase_add_test(r, echo_from_callback);
    tcase_add_test(r, fragments_cost_only_their_payload);
    tcase_add_test(r, fragments_past_the_limit_1009);
    tcase_add_test(r, invalid_utf8_fails_fast);
    tcase_add_test(r, header_alone_is_judged);
    tcase_add_test(r, length_not_shortest_1002);
    tcase_add_test(r, close_reason_utf8_any_split);
    tcase_add_test(r, close_codes);
    tcase_add_test(r, idle_connections_hold_nothing);
    tcase_add_test(r, split_frames_across_connections);
    suite_add_tcase(s, r);
    TCase *w = tcase_create("send");
    tcase_add_test(w, order_text_and_shared);
    tcase_add_test(w, shared_frame_sizes);
    tcase_add_test(w, shared_batch_and_suffix);
    tcase_add_test(w, outbound_bound_1008);
    tcase_add_test(w, outbound_bound_shared);
    tcase_add_test(w, outbound_bound_big_frame_alone);
    tcase_add_test(w, outbound_bound_big_frame_behind_full_queue);
    tcase_add_test(w, ping_flood_is_bounded);
    tcase_add_test(w, shared_refcount_zero_once);
    tcase_add_test(w, shared_release_across_threads);
    suite_add_tcase(s, w);
    return s;
}

CHECK_MAIN(ws_suite, CK_NORMAL)
