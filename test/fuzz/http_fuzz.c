/* http_fuzz.c: libFuzzer harness for the HTTP request parser (app/http.c's
 * http_conn_feed), as the endpoint drives it: bytes arrive in reads of any
 * size, each complete request is handled (a WebSocket upgrade is answered by
 * http_ws_handshake), then the rest is fed, until an error or an upgrade.
 *
 * Input: the first byte picks the read size (1..256 bytes), the rest is what
 * the client sent. Requests that are not upgrades are answered from web/
 * (http_serve_static) when run from the repository root. Checks, beyond
 * the sanitizers: feed never claims more bytes than it was given nor stops
 * early without a reason, each request
 * consumes at least one byte (else the endpoint's feed loop would spin), an
 * error names a 4xx/5xx status, the URL stays within HTTP_LIMIT_URL.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static http_static_t root;
static bool root_ok;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    root_ok = http_static_open(&root, "web") == 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    /* a private copy of exactly size bytes: any overread is ASan's to see */
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);

    http_conn_t *c = malloc(sizeof *c);
    if (!c) {
        free(in);
        return 0;
    }
    http_conn_init(c);
    size_t off = 0;
    int requests = 0;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        http_feed_result_t res;
        size_t used = http_conn_feed(c, in + off, n, &res);
        if (used > n)
            abort(); /* consumed bytes it was never given */
        off += used;
        if (res == HTTP_FEED_ERROR) {
            if (c->error_status < 400 || c->error_status > 505)
                abort();
            break;
        }
        if (res == HTTP_FEED_REQUEST) {
            if (used == 0)
                abort(); /* a request of no bytes: the endpoint's loop would spin */
            requests++;
            act_buf_t out = ACT_BUF_INIT;
            if (strlen(c->req.url) > HTTP_LIMIT_URL)
                abort();
            if (c->req.upgrade) {
                int st = http_ws_handshake(&c->req, &out);
                if (st != 101 && st != 400 && st != 426 && st != -1)
                    abort();
                act_buf_free(&out);
                break; /* the connection has left HTTP */
            }
            /* static files from web/ (the harness runs from the repository
             * root): path mapping, %-escapes, ETags, HEAD and 405 */
            if (root_ok) {
                int st = http_serve_static(&root, &c->req, &out);
                if (st != 200 && st != 304 && st != 400 && st != 404 && st != 405 &&
                    st != 500 && st != -1)
                    abort();
            } else {
                http_response_error(&out, 404, c->req.keep_alive, false);
            }
            act_buf_free(&out);
            if (!c->req.keep_alive)
                break;
            continue; /* the next pipelined request, from where it stopped */
        }
        if (used < n && res == HTTP_FEED_MORE)
            abort(); /* wanted more yet left bytes unread */
    }
    (void)requests;
    free(c);
    free(in);
    return 0;
}
