/* http.c: the endpoint's HTTP/1.1 layer (see http.h): request parsing over
 * libhttp-parser with hard bounds, static files confined to web/, response
 * builders and the RFC 6455 opening handshake with nettle's SHA-1/base64.
 *
 * No sockets and no globals besides the constant parser settings: the
 * endpoint feeds bytes in and writes the act_buf_t (runtime/buf.h) it gets
 * back; each builder checks the builder's sticky out-of-memory flag once, at
 * its end, and answers -1 then.
 *
 * Kind: a pure library -- no actor, no message, no registered name; the caller
 * owns whatever state it works on (README "Reading the app").
 */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <nettle/sha1.h>

/* ------------------------------------------------------------ parsing */

static int fail(http_conn_t *c, int status)
{
    c->error_status = status;
    return -1; /* makes http_parser stop with HPE_CB_* */
}

static http_conn_t *conn_of(http_parser *p)
{
    return p->data;
}

static int on_message_begin(http_parser *p)
{
    http_conn_t *c = conn_of(p);
    /* Only the strings' first bytes need clearing: the rest is written
     * before it is read, so a request costs no 10 KiB memset. */
    http_req_t *r = &c->req;
    r->url[0] = r->path[0] = r->query[0] = r->host[0] = r->connection[0] = '\0';
    r->upgrade_hdr[0] = r->ws_key[0] = r->ws_version[0] = r->if_none_match[0] = '\0';
    r->origin[0] = '\0';
    c->host_count = 0;
    r->body_len = 0;
    r->keep_alive = r->upgrade = false;
    c->header_bytes = 0;
    c->header_count = 0;
    c->in_value = false;
    c->field_len = 0;
    c->value_dst = NULL;
    c->error_status = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    size_t have = strlen(c->req.url);
    if (len > HTTP_LIMIT_URL - have)
        return fail(c, 414);
    memcpy(c->req.url + have, at, len);
    c->req.url[have + len] = '\0';
    return 0;
}

/* Counts header bytes against the total bound; 431 beyond it. */
static int count_header_bytes(http_conn_t *c, size_t len)
{
    c->header_bytes += len;
    return c->header_bytes > HTTP_LIMIT_HEADER_BYTES ? fail(c, 431) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    if (count_header_bytes(c, len))
        return -1;
    if (c->in_value || c->header_count == 0) { /* a new header line starts */
        if (++c->header_count > HTTP_LIMIT_HEADER_COUNT)
            return fail(c, 431);
        c->in_value = false;
        c->field_len = 0;
        c->field_overflow = false;
        c->value_dst = NULL;
    }
    /* libhttp-parser, built lenient, lets a blank into a name ("Host :"). */
    if (memchr(at, ' ', len) || memchr(at, '\t', len))
        return fail(c, 400);
    if (c->field_overflow)
        return 0;
    if (c->field_len + len >= sizeof c->field) {
        c->field_overflow = true; /* longer than any name we need */
        c->field_len = sizeof c->field - 1;
        return 0;
    }
    memcpy(c->field + c->field_len, at, len);
    c->field_len += len;
    return 0;
}

/* The buffer a needed header's value goes to, or NULL to drop it. */
static char *header_slot(http_conn_t *c, size_t *cap)
{
    static const struct { const char *name; size_t off, cap; } slots[] = {
        {"host", offsetof(http_req_t, host), HTTP_HOST_MAX + 1},
        {"connection", offsetof(http_req_t, connection), HTTP_CONNECTION_MAX + 1},
        {"upgrade", offsetof(http_req_t, upgrade_hdr), HTTP_UPGRADE_MAX + 1},
        {"sec-websocket-key", offsetof(http_req_t, ws_key), HTTP_WS_KEY_MAX + 1},
        {"sec-websocket-version", offsetof(http_req_t, ws_version), HTTP_WS_VERSION_MAX + 1},
        {"if-none-match", offsetof(http_req_t, if_none_match), HTTP_INM_MAX + 1},
        {"origin", offsetof(http_req_t, origin), HTTP_ORIGIN_MAX + 1},
    };
    if (c->field_overflow)
        return NULL;
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        if (strlen(slots[i].name) == c->field_len &&
            strncasecmp(slots[i].name, c->field, c->field_len) == 0) {
            *cap = slots[i].cap;
            return (char *)&c->req + slots[i].off;
        }
    }
    return NULL;
}

/* Appends to a bounded NUL-terminated string; -1 when it would not fit. */
static int append_bounded(char *dst, size_t cap, const char *at, size_t len)
{
    size_t have = strlen(dst);
    if (len >= cap - have)
        return -1;
    memcpy(dst + have, at, len);
    dst[have + len] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    if (count_header_bytes(c, len))
        return -1;
    if (!c->in_value) { /* first chunk of this header's value */
        c->in_value = true;
        c->value_dst = header_slot(c, &c->value_cap);
        if (c->value_dst == c->req.host && ++c->host_count > 1)
            return fail(c, 400); /* two Hosts: which one did a proxy route on? */
        if (c->value_dst == c->req.origin && c->value_dst[0])
            return fail(c, 400); /* two Origins */
        /* A repeated list header (Connection: a / Connection: b) joins. */
        if (c->value_dst && c->value_dst[0] &&
            append_bounded(c->value_dst, c->value_cap, ", ", 2))
            return fail(c, 400);
    }
    if (c->value_dst && append_bounded(c->value_dst, c->value_cap, at, len))
        return fail(c, 400);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_conn_t *c = conn_of(p);
    c->req.method = p->method;
    c->req.http_major = p->http_major;
    c->req.http_minor = p->http_minor;
    if (p->http_major != 1)
        return fail(c, 505);
    if (p->http_minor >= 1 && c->host_count != 1)
        return fail(c, 400);
    /* content_length is ULLONG_MAX when no Content-Length was sent. */
    if (p->content_length != ULLONG_MAX && p->content_length > HTTP_LIMIT_BODY)
        return fail(c, 413);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn_t *c = conn_of(p);
    (void)at; /* no route takes a body: count it, drop it */
    c->req.body_len += len;
    return c->req.body_len > HTTP_LIMIT_BODY ? fail(c, 413) : 0;
}

/* Splits the request target into raw path and query. */
static int split_url(http_req_t *r, bool is_connect)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url, strlen(r->url), is_connect, &u) != 0)
        return -1;
    if (u.field_set & (1u << UF_PATH)) {
        memcpy(r->path, r->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        r->path[u.field_data[UF_PATH].len] = '\0';
    } else {
        strcpy(r->path, "/"); /* "http://host" names the root */
    }
    if (u.field_set & (1u << UF_QUERY)) {
        memcpy(r->query, r->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        r->query[u.field_data[UF_QUERY].len] = '\0';
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn_t *c = conn_of(p);
    c->req.upgrade = p->upgrade;
    /* After an Upgrade we did not switch on, the bytes that follow are not
     * HTTP: answer, then close. */
    c->req.keep_alive = http_should_keep_alive(p) && !p->upgrade;
    if (split_url(&c->req, p->method == HTTP_CONNECT))
        return fail(c, 400);
    http_parser_pause(p, 1); /* one request at a time: pipelining stays in order */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_conn_init(http_conn_t *c)
{
    memset(c, 0, sizeof *c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

size_t http_conn_feed(http_conn_t *c, const char *data, size_t len,
                      http_feed_result_t *res)
{
    *res = HTTP_FEED_MORE;
    if (c->req.upgrade && c->paused) { /* misuse: the connection left HTTP */
        c->error_status = 400;
        *res = HTTP_FEED_ERROR;
        return 0;
    }
    if (c->paused) {
        http_parser_pause(&c->parser, 0);
        c->paused = false;
    }
    if (len == 0) /* http_parser reads 0 bytes as EOF; the endpoint closes instead */
        return 0;
    size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        c->paused = true;
        *res = HTTP_FEED_REQUEST;
    } else if (e != HPE_OK) {
        if (c->error_status == 0)
            c->error_status = 400;
        *res = HTTP_FEED_ERROR;
    }
    return n;
}

/* ------------------------------------------------------------ responses */

const char *http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 408: return "Request Timeout";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 505: return "HTTP Version Not Supported";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "";
    }
}

/* The status line and common headers; content_length < 0 omits it (304). */
static int put_head(act_buf_t *b, int status, const char *content_type,
                    long long content_length, const char *etag, bool keep_alive,
                    const char *extra)
{
    char date[64];
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    act_buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: chatter\r\n", status,
                   http_reason(status), date);
    act_buf_lit(b, HTTP_SECURITY_HEADERS);
    if (content_type)
        act_buf_printf(b, "Content-Type: %s\r\n", content_type);
    if (content_length >= 0)
        act_buf_printf(b, "Content-Length: %lld\r\n", content_length);
    if (etag) /* no-cache: revalidate with the ETag each time */
        act_buf_printf(b, "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    if (extra)
        act_buf_puts(b, extra);
    act_buf_printf(b, "Connection: %s\r\n\r\n", keep_alive ? "keep-alive" : "close");
    return b->oom ? -1 : 0;
}

int http_response_text(act_buf_t *out, int status, const char *content_type,
                       const char *body, size_t body_len, bool keep_alive,
                       bool head_only)
{
    if (put_head(out, status, content_type, (long long)body_len, NULL, keep_alive, NULL))
        return -1;
    if (!head_only)
        act_buf_put(out, body, body_len);
    return out->oom ? -1 : 0;
}

int http_response_error_allow(act_buf_t *out, int status, const char *allow,
                              bool keep_alive, bool head_only)
{
    char body[80], extra[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, http_reason(status));
    if (allow)
        snprintf(extra, sizeof extra, "Allow: %.40s\r\n", allow);
    if (put_head(out, status, "text/plain; charset=utf-8", n, NULL, keep_alive,
                 allow ? extra : NULL))
        return -1;
    if (!head_only)
        act_buf_put(out, body, (size_t)n);
    return out->oom ? -1 : 0;
}

int http_response_error(act_buf_t *out, int status, bool keep_alive, bool head_only)
{
    return http_response_error_allow(out, status, status == 405 ? "GET, HEAD" : NULL,
                                     keep_alive, head_only);
}

/* ------------------------------------------------------------ static files */

int http_static_open(http_static_t *st, const char *root_dir)
{
    st->root_fd = open(root_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return st->root_fd < 0 ? -errno : 0;
}

void http_static_close(http_static_t *st)
{
    if (st->root_fd >= 0)
        close(st->root_fd);
    st->root_fd = -1;
}

const char *http_content_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(name, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes a raw path into out (never longer than in). 400 for a bad
 * escape, a NUL or control byte, a backslash, or an encoded '/': none has a
 * place in a path under web/, and refusing them here means the segment
 * checks below see exactly the names the file system will see. */
static int decode_path(const char *in, char *out)
{
    size_t o = 0;
    for (size_t i = 0; in[i]; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%') {
            int hi = hex_value(in[i + 1]), lo = hi < 0 ? -1 : hex_value(in[i + 2]);
            if (hi < 0 || lo < 0)
                return 400;
            ch = (unsigned char)(hi * 16 + lo);
            if (ch == '/')
                return 400;
            i += 2;
        }
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            return 400;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

/* A path segment we may open: not empty, no leading dot (".", "..", hidden
 * files like .git), not longer than a file name can be. */
static bool segment_ok(const char *seg, size_t len)
{
    return len > 0 && len <= NAME_MAX && seg[0] != '.';
}

/* Opens decoded path ("/a/b.css") under the root one component at a time with
 * O_NOFOLLOW: a symlink anywhere, even one pointing back inside, ends the walk,
 * so nothing can be reached that is not physically under web/, and there is no
 * window between a check and the open. Returns an fd or -1. */
static int open_beneath(int root_fd, char *path)
{
    int dir = root_fd;
    char *seg = path + 1;
    for (;;) {
        char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (!segment_ok(seg, len))
            break;
        if (slash)
            *slash = '\0';
        int flags = O_NOFOLLOW | O_CLOEXEC | (slash ? O_DIRECTORY | O_RDONLY
                                                    : O_RDONLY | O_NONBLOCK);
        int fd = openat(dir, seg, flags); /* O_NONBLOCK: a FIFO must not hang us */
        if (slash)
            *slash = '/';
        if (dir != root_fd)
            close(dir);
        if (fd < 0 || !slash)
            return fd;
        dir = fd;
        seg = slash + 1;
    }
    if (dir != root_fd)
        close(dir);
    return -1;
}

static void make_etag(const struct stat *sb, char *out, size_t cap)
{
    snprintf(out, cap, "\"%llx-%llx-%lx\"", (unsigned long long)sb->st_size,
             (unsigned long long)sb->st_mtim.tv_sec, (unsigned long)sb->st_mtim.tv_nsec);
}

int http_static_lookup(const http_static_t *st, const char *path, http_file_t *out)
{
    char decoded[HTTP_LIMIT_URL + 1];
    out->fd = -1;
    if (path[0] != '/' || strlen(path) > HTTP_LIMIT_URL)
        return 400;
    if (strcmp(path, "/") == 0 || strcmp(path, "/chat") == 0)
        path = "/index.html"; /* the single-page client serves both views */
    int r = decode_path(path, decoded);
    if (r)
        return r;
    const char *base = strrchr(decoded, '/') + 1;
    out->content_type = http_content_type(base);
    if (!out->content_type)
        return 404;
    int fd = open_beneath(st->root_fd, decoded);
    if (fd < 0)
        return 404;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return 404;
    }
    if (sb.st_size > (off_t)HTTP_LIMIT_STATIC_FILE) {
        close(fd);
        return 500;
    }
    out->fd = fd;
    out->size = sb.st_size;
    make_etag(&sb, out->etag, sizeof out->etag);
    return 0;
}

bool http_etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return false;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0) /* If-None-Match compares weakly */
            p += 2;
        if (*p != '"')
            return false; /* malformed list: no match, send the file */
        const char *q = strchr(p + 1, '"');
        if (!q)
            return false;
        if ((size_t)(q + 1 - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = q + 1;
    }
}

/* Appends exactly size bytes of fd; -1 if the file changed under us. */
static int append_file(act_buf_t *out, int fd, size_t size)
{
    if (!act_buf_reserve(out, size))
        return -1;
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, out->p + out->len + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    out->len += size;
    out->p[out->len] = '\0';
    return 0;
}

int http_serve_static(const http_static_t *st, const http_req_t *req, act_buf_t *out)
{
    bool head = req->method == HTTP_HEAD;
    if (req->method != HTTP_GET && !head)
        return http_response_error(out, 405, req->keep_alive, false) ? -1 : 405;
    http_file_t f;
    int status = http_static_lookup(st, req->path, &f);
    if (status == 400)
        status = 404; /* PROTOCOL.md: anything that is not a file under web/ is 404 */
    if (status)
        return http_response_error(out, status, req->keep_alive, head) ? -1 : status;
    if (req->if_none_match[0] && http_etag_matches(req->if_none_match, f.etag)) {
        close(f.fd);
        return put_head(out, 304, NULL, -1, f.etag, req->keep_alive, NULL) ? -1 : 304;
    }
    size_t mark = out->len;
    int r = put_head(out, 200, f.content_type, (long long)f.size, f.etag,
                     req->keep_alive, NULL);
    if (!r && !head && append_file(out, f.fd, (size_t)f.size)) {
        out->len = mark; /* drop the half-built 200 */
        if (out->p)
            out->p[mark] = '\0';
        r = out->oom ? -1 : (http_response_error(out, 500, false, false) ? -1 : 0);
        status = 500;
    }
    close(f.fd);
    return r ? -1 : (status ? status : 200);
}

/* ------------------------------------------------------------ WebSocket handshake */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 */

void http_ws_accept(const char *key, char out[HTTP_WS_ACCEPT_LEN + 1])
{
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, strlen(key), (const uint8_t *)key);
    sha1_update(&sha, sizeof ws_guid - 1, (const uint8_t *)ws_guid);
    sha1_digest(&sha, sizeof digest, digest);
    base64_encode_raw(out, sizeof digest, digest);
    out[HTTP_WS_ACCEPT_LEN] = '\0';
}

/* Copies s without leading/trailing blanks into out[cap]; false if too long. */
static bool trim_copy(const char *s, char *out, size_t cap)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= cap)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* True if the comma-separated header value holds token (case-insensitive). */
static bool has_token(const char *list, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - p) == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p = end;
    }
    return false;
}

/* A key is base64 of exactly 16 bytes (RFC 6455 4.1): 24 characters. */
static bool ws_key_valid(const char *key)
{
    if (strlen(key) != 24)
        return false;
    for (int i = 0; i < 22; i++) {
        char ch = key[i];
        bool b64 = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
        if (!b64)
            return false;
    }
    if (key[22] != '=' || key[23] != '=')
        return false;
    struct base64_decode_ctx ctx;
    uint8_t raw[BASE64_DECODE_LENGTH(24)];
    size_t n = sizeof raw;
    base64_decode_init(&ctx);
    return base64_decode_update(&ctx, &n, raw, 24, key) && base64_decode_final(&ctx) &&
           n == 16;
}

/* 101 for a valid handshake, 426 for one in another version, else 400. */
static int ws_request_check(const http_req_t *req, char *key, size_t key_cap)
{
    char version[HTTP_WS_VERSION_MAX + 1];
    bool valid = req->method == HTTP_GET &&
           (req->http_major > 1 || (req->http_major == 1 && req->http_minor >= 1)) &&
           has_token(req->upgrade_hdr, "websocket") &&
           has_token(req->connection, "upgrade") &&
           trim_copy(req->ws_key, key, key_cap) && ws_key_valid(key);
    if (!valid)
        return 400;
    if (!trim_copy(req->ws_version, version, sizeof version) || strcmp(version, "13") != 0)
        return 426;
    return 101;
}

int http_ws_handshake(const http_req_t *req, act_buf_t *out)
{
    char key[HTTP_WS_KEY_MAX + 1];
    int status = ws_request_check(req, key, sizeof key);
    if (status != 101) {
        static const char bad[] = "400 Bad Request: not a WebSocket handshake\n";
        static const char old[] = "426 Upgrade Required: WebSocket version 13 only\n";
        const char *body = status == 400 ? bad : old;
        size_t len = status == 400 ? sizeof bad - 1 : sizeof old - 1;
        /* The version header tells a client speaking another version ours. */
        if (put_head(out, status, "text/plain; charset=utf-8", (long long)len, NULL, false,
                     status == 426 ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                   : "Sec-WebSocket-Version: 13\r\n") ||
            (req->method != HTTP_HEAD && (act_buf_put(out, body, len), out->oom)))
            return -1;
        return status;
    }
    char accept[HTTP_WS_ACCEPT_LEN + 1];
    http_ws_accept(key, accept);
    act_buf_printf(out, "HTTP/1.1 101 Switching Protocols\r\n%sUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   HTTP_SECURITY_HEADERS, accept);
    if (out->oom)
        return -1;
    return 101;
}
