/* http.h: the endpoint's HTTP/1.1 layer, socket-free.
 *
 * What it is for: everything the endpoint says in HTTP before a socket
 * becomes a WebSocket (PROTOCOL.md "Transport"): an incremental request
 * parser over Debian's libhttp-parser with keep-alive, pipelining and hard
 * size bounds; static files from web/ that can never resolve outside it;
 * response builders; and the RFC 6455 opening handshake (SHA-1 and base64
 * from nettle).
 *
 * How it fits: the endpoint actor owns the libuv TCP handle. On each read it
 * calls http_conn_feed() in a loop; every complete request comes back in
 * conn->req, which it routes (/ws -> http_ws_handshake(), /healthz and
 * /metrics -> http_response_text(), anything else -> http_serve_static()).
 * Every builder appends a complete response to an act_buf_t (the runtime's
 * string builder, buf.h) that the endpoint hands to uv_write and frees in
 * the write callback. Nothing here
 * touches a socket, a loop or a global, so it is safe on any scheduler thread.
 */
#ifndef CHATTER_HTTP_H
#define CHATTER_HTTP_H

#include "buf.h"

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- bounds: a request beyond any of these is refused, never buffered ---- */
#define HTTP_LIMIT_URL           2048u        /* request target: else 414 */
#define HTTP_LIMIT_HEADER_BYTES  (16u * 1024) /* names + values, total: else 431 */
#define HTTP_LIMIT_HEADER_COUNT  64u          /* header lines: else 431 */
#define HTTP_LIMIT_BODY          1024u        /* request body (we expect none): else 413 */
#define HTTP_LIMIT_STATIC_FILE   (8u * 1024 * 1024) /* larger files under web/: 500 */

/* Bounds on the header values we keep. A needed header longer than its
 * buffer makes the request 400: none of them is legitimately that long. */
#define HTTP_HOST_MAX       255u
#define HTTP_CONNECTION_MAX 255u
#define HTTP_UPGRADE_MAX    127u
#define HTTP_WS_KEY_MAX     63u   /* a valid key is exactly 24 characters */
#define HTTP_WS_VERSION_MAX 15u
#define HTTP_INM_MAX        1023u /* If-None-Match */
#define HTTP_ORIGIN_MAX     511u  /* Origin: scheme://host[:port] */

/* Headers sent with every response (issue 7 item 10): the client loads
 * nothing from elsewhere and has no inline script or style, so the policy
 * can be this strict (images may also be data: URLs: the favicon is one,
 * and an image cannot run code); no page may frame us (clickjacking), and
 * no Referer leaves for the links users post. */
#define HTTP_SECURITY_HEADERS                                                     \
    "Content-Security-Policy: default-src 'self'; connect-src 'self'; "          \
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "            \
    "form-action 'self'\r\n"                                                      \
    "X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"                 \
    "X-Content-Type-Options: nosniff\r\n"

/* One parsed request. Strings are NUL-terminated; path and query are the raw
 * (still percent-encoded) parts of the URL. Valid until the next feed. */
typedef struct http_req {
    unsigned method;                 /* enum http_method (HTTP_GET, HTTP_HEAD, ...) */
    unsigned short http_major, http_minor;
    bool keep_alive;                 /* false: answer with Connection: close, then close */
    bool upgrade;                    /* the parser stopped at an Upgrade: the rest of
                                        the bytes are not HTTP (see http_conn_feed) */
    char url[HTTP_LIMIT_URL + 1];
    char path[HTTP_LIMIT_URL + 1];
    char query[HTTP_LIMIT_URL + 1];
    char host[HTTP_HOST_MAX + 1];
    char connection[HTTP_CONNECTION_MAX + 1];
    char upgrade_hdr[HTTP_UPGRADE_MAX + 1];
    char ws_key[HTTP_WS_KEY_MAX + 1];
    char ws_version[HTTP_WS_VERSION_MAX + 1];
    char if_none_match[HTTP_INM_MAX + 1];
    char origin[HTTP_ORIGIN_MAX + 1];
    size_t body_len;                 /* body bytes seen (discarded; <= HTTP_LIMIT_BODY) */
} http_req_t;

/* Per-connection parser state; embed it in the endpoint's connection. */
typedef struct http_conn {
    http_parser parser;
    http_req_t req;
    int error_status;      /* HTTP status to answer once HTTP_FEED_ERROR is returned */
    size_t header_bytes;   /* running total against HTTP_LIMIT_HEADER_BYTES */
    unsigned header_count;
    bool in_value;         /* last header callback was a value: the next field is new */
    char field[32];        /* current header name; longer names are none we need */
    size_t field_len;
    bool field_overflow;
    char *value_dst;       /* where the current header's value goes, or NULL */
    size_t value_cap;
    bool paused;           /* stopped after a complete request */
    unsigned host_count;   /* Host lines: RFC 9112 3.2 wants exactly one in 1.1 */
} http_conn_t;

typedef enum http_feed_result {
    HTTP_FEED_MORE = 0,    /* every byte consumed, request not complete yet */
    HTTP_FEED_REQUEST,     /* conn->req holds a complete request */
    HTTP_FEED_ERROR,       /* malformed or too large: answer conn->error_status, close */
} http_feed_result_t;

void http_conn_init(http_conn_t *c);

/* Feeds received bytes. Returns how many were consumed; it stops right after
 * each complete request (*res = HTTP_FEED_REQUEST) so pipelined requests are
 * answered one at a time and in order: handle conn->req, then feed the rest.
 * When req.upgrade is set the connection has left HTTP: the bytes after the
 * returned count belong to the next protocol (give them to ws_conn_feed after
 * a 101), and the conn must not be fed again. After HTTP_FEED_ERROR answer
 * conn->error_status (400, 413, 414, 431 or 505) with Connection: close.
 * Besides the size bounds, 400 for HTTP/1.1 without exactly one Host and
 * for blanks between a header's name and its colon (RFC 9112 5.1: a
 * smuggling vector), 505 for a version other than HTTP/1.x. */
size_t http_conn_feed(http_conn_t *c, const char *data, size_t len,
                      http_feed_result_t *res);

/* ---- output buffer: one or more complete responses for uv_write ---- */
/* ---- responses ---- */
const char *http_reason(int status);   /* "Not Found"; "" for unknown codes */

/* A complete response with a body, e.g. /healthz ("ok") and /metrics.
 * head_only: HEAD, headers only (Content-Length still the body's). Returns 0,
 * -1 when out of memory. */
int http_response_text(act_buf_t *out, int status, const char *content_type,
                       const char *body, size_t body_len, bool keep_alive,
                       bool head_only);

/* A short text/plain error (400, 404, 405 adds "Allow: GET, HEAD", 413, 503...). */
int http_response_error(act_buf_t *out, int status, bool keep_alive, bool head_only);
/* The same with the Allow header given (a 405 for a resource with other methods). */
int http_response_error_allow(act_buf_t *out, int status, const char *allow,
                              bool keep_alive, bool head_only);

/* ---- static files under the web root ---- */
typedef struct http_static {
    int root_fd;           /* O_PATH directory fd of web/; every lookup is relative to it */
} http_static_t;

/* Opens the web root once at start; 0, or -errno. */
int http_static_open(http_static_t *st, const char *root_dir);
/* For tests only (test_http.c): nothing in app/ calls it. */
void http_static_close(http_static_t *st);

typedef struct http_file {
    int fd;                        /* open, O_RDONLY; the caller closes it */
    off_t size;
    char etag[64];                 /* quoted, from size + mtime */
    const char *content_type;
} http_file_t;

/* Maps a raw URL path ("/", "/chat", "/app.js") to a regular file under the
 * root and opens it. "/" and "/chat" are index.html. Returns 0, 400 for a path
 * that is not well-formed (bad %-escape, NUL or control byte, backslash,
 * encoded '/'), or 404 for one that names no servable file ("." or ".."
 * segments, hidden names, symlinks, non-regular files, unknown types). */
int http_static_lookup(const http_static_t *st, const char *path, http_file_t *out);

/* Content-Type for a file name by its extension, or NULL if we do not serve it. */
const char *http_content_type(const char *name);

/* True if the If-None-Match value matches etag (weak comparison, "*" too). */
bool http_etag_matches(const char *if_none_match, const char *etag);

/* Answers req from the web root: 200 (GET), headers only (HEAD), 304 on a
 * matching If-None-Match, 404, 405 for other methods, 400, 500. Returns the
 * status sent, or -1 when out of memory. */
int http_serve_static(const http_static_t *st, const http_req_t *req, act_buf_t *out);

/* ---- WebSocket opening handshake (RFC 6455 section 4.2) ---- */
#define HTTP_WS_ACCEPT_LEN 28   /* base64 of a 20-byte SHA-1 */

/* Sec-WebSocket-Accept for a client key: base64(SHA1(key + GUID)) into
 * out[HTTP_WS_ACCEPT_LEN + 1]. */
void http_ws_accept(const char *key, char out[HTTP_WS_ACCEPT_LEN + 1]);

/* Validates a WebSocket upgrade request (GET, HTTP/1.1, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version: 13, a key that is base64 of 16
 * bytes) and appends the 101 response, or a 426 for another version (RFC
 * 6455 4.4), or a 400, both with Connection: close and
 * Sec-WebSocket-Version: 13 (no body for HEAD). Returns 101, 400, 426, or
 * -1 when out of memory. */
int http_ws_handshake(const http_req_t *req, act_buf_t *out);

#endif
