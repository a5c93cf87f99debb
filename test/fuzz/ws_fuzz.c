/* ws_fuzz.c: libFuzzer harness for the WebSocket frame reader (app/ws.c)
 * feeding the protocol decoder (app/protocol.c), as a connection runs them:
 * client bytes arrive in reads of any size; each complete text message goes
 * to proto_decode; the answer (a pong with the request's ref) is sent from
 * inside the callback, and output is drained as the endpoint would write it.
 *
 * Input: the first byte picks the read size (1..256); the second byte's bit
 * 7 set means the "socket" is never drained (so the outbound bound is
 * crossed), bit 0 sends our ping after every read, bit 1 a shared push after
 * every read, bit 2 starts our close after the first read; the rest is what
 * the client sent.
 * Checks, beyond the sanitizers: every message delivered is valid UTF-8 of at
 * most WS_MAX_MESSAGE bytes; the reassembly buffer never exceeds the message
 * limit; what the server writes parses back into well-formed unmasked
 * frames of the kinds we send (nothing after a close frame), ending on a
 * frame boundary.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "unicode.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct harness {
    ws_conn_t *c;
    size_t messages;
} harness_t;

static void on_text(void *user, const char *msg, size_t len)
{
    harness_t *h = user;
    if (len > WS_MAX_MESSAGE || !utf8_valid(msg, len))
        abort();
    h->messages++;
    proto_request req;
    proto_code code = proto_decode(msg, len, &req);
    proto_str reply = code == PROTO_OK ? proto_enc_pong(req.ref)
                                       : proto_enc_error(req.ref, code, req.why);
    if (reply.ptr)
        ws_conn_send_reply(h->c, reply.ptr, reply.len);
    free(reply.ptr);
    proto_request_free(&req);
}

/* Output bytes across drains, parsed frame by frame as a client would. */
typedef struct out_parser {
    uint8_t hdr[10];
    size_t hdr_len;
    uint64_t left;      /* payload bytes of the current frame still to come */
    bool in_payload;
    bool closed;        /* a close frame went by: nothing may follow */
    unsigned opcode;
} out_parser_t;

static void out_bytes(out_parser_t *p, const uint8_t *b, size_t n)
{
    while (n > 0) {
        if (p->in_payload) {
            size_t take = p->left < n ? (size_t)p->left : n;
            p->left -= take;
            b += take;
            n -= take;
            if (p->left == 0)
                p->in_payload = false;
            continue;
        }
        if (p->closed)
            abort(); /* bytes after our close frame */
        p->hdr[p->hdr_len++] = *b++;
        n--;
        if (p->hdr_len < 2)
            continue;
        unsigned len7 = p->hdr[1] & 0x7F;
        size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
        if (p->hdr_len < need)
            continue;
        if (!(p->hdr[0] & 0x80) || (p->hdr[0] & 0x70) || (p->hdr[1] & 0x80))
            abort(); /* we send only final, unmasked frames without RSV bits */
        p->opcode = p->hdr[0] & 0x0F;
        uint64_t len = len7;
        if (len7 == 126)
            len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
        else if (len7 == 127)
            for (int i = 0; i < 8; i++)
                len = len << 8 | p->hdr[2 + i];
        if ((p->opcode & 0x8) && len > 125)
            abort();
        if (p->opcode != 0x1 && p->opcode != 0x8 && p->opcode != 0x9 && p->opcode != 0xA)
            abort();
        if (p->opcode == 0x8) {
            if (len == 1)
                abort();
            p->closed = true;
        }
        p->hdr_len = 0;
        p->left = len;
        p->in_payload = len > 0;
    }
}

static void drain(ws_conn_t *c, out_parser_t *p)
{
    struct iovec iov[16];
    size_t n;
    while ((n = ws_conn_output(c, iov, 16)) > 0) {
        for (size_t i = 0; i < n; i++)
            out_bytes(p, iov[i].iov_base, iov[i].iov_len);
        ws_conn_output_done(c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = (size_t)data[0] + 1;
    bool never_drain = data[1] & 0x80;
    bool pings = data[1] & 1, pushes = data[1] & 2, close_first = data[1] & 4;
    data += 2;
    size -= 2;
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);

    long live = ws_shared_live();
    ws_shared_t *push = ws_shared_text("{\"type\":\"presence_diff\"}", 24);
    harness_t h = {0};
    out_parser_t op = {0};
    h.c = ws_conn_new(on_text, &h, 0);
    if (!h.c || !push) {
        if (push)
            ws_shared_release(push);
        ws_conn_free(h.c);
        free(in);
        return 0;
    }
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        ws_status_t st = ws_conn_feed(h.c, in + off, n, off);
        if (ws_conn_input_bytes(h.c) > WS_MAX_MESSAGE)
            abort();
        if (st == WS_NOMEM)
            break;
        if (close_first && off == 0)
            ws_conn_close(h.c, WS_CLOSE_GOING_AWAY, "going away");
        if (pings)
            ws_conn_ping(h.c, off);
        if (pushes)
            ws_conn_send_shared(h.c, push);
        if (!never_drain)
            drain(h.c, &op);
        if (ws_conn_finished(h.c))
            break;
    }
    drain(h.c, &op);
    if (op.in_payload || op.hdr_len)
        abort(); /* the output ended inside a frame */
    ws_conn_free(h.c);
    ws_shared_release(push);
    if (ws_shared_live() != live)
        abort(); /* a shared frame kept or released once too often */
    free(in);
    return 0;
}
