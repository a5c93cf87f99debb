/* test_http.c: check suite for app/http.c, the endpoint's HTTP layer.
 *
 * Drives the parser with split, pipelined, keep-alive and oversized input;
 * serves a temporary web root (mkdtemp under /tmp) holding one file of each
 * type, a secret beside the root, symlinks out of it, a FIFO and hidden
 * files, and throws hostile paths at it; checks ETag/304, HEAD, 405 and the
 * RFC 6455 handshake. No sockets: bytes in, response bytes out.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/check_main.h"
#include "http.h"

/* ------------------------------------------------------------ helpers */

/* Feeds all of raw; expects exactly one complete request. */
static void parse_one(http_conn_t *c, const char *raw)
{
    http_feed_result_t res;
    http_conn_init(c);
    size_t n = http_conn_feed(c, raw, strlen(raw), &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_uint_eq(n, strlen(raw));
}

/* Feeds raw and returns the result; *status gets error_status. */
static http_feed_result_t parse_status(const char *raw, size_t len, int *status)
{
    static http_conn_t c;
    http_feed_result_t res;
    http_conn_init(&c);
    http_conn_feed(&c, raw, len, &res);
    *status = c.error_status;
    return res;
}

/* raw[0..len) is refused: the parser stops with an error, and status want. */
static void expect_refused(const char *raw, size_t len, int want)
{
    int st;
    ck_assert_msg(parse_status(raw, len, &st) == HTTP_FEED_ERROR, "not refused: %.*s", (int)len, raw);
    ck_assert_msg(st == want, "status %d, not %d: %.*s", st, want, (int)len, raw);
}

static int resp_status(const char *resp)
{
    int st = 0;
    ck_assert_msg(sscanf(resp, "HTTP/1.1 %d ", &st) == 1, "no status line: %s", resp);
    return st;
}

/* Value of header name in a response, copied into out; false if absent. */
static bool resp_header(const char *resp, const char *name, char *out, size_t cap)
{
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nlen = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = (size_t)(strstr(v, "\r\n") - v);
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
    }
    return false;
}

static const char *resp_body(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    ck_assert_ptr_nonnull(p);
    return p + 4;
}

/* The lowest free descriptor: unchanged after a test means nothing leaked. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    close(fd);
    return fd;
}

/* ------------------------------------------------------------ parser */

START_TEST(parses_fields)
{
    http_conn_t c;
    parse_one(&c, "GET /chat?name=ann&x=1 HTTP/1.1\r\n"
                  "Host: localhost:4000\r\n"
                  "X-Ignored: yes\r\n"
                  "if-none-match: \"abc\"\r\n"
                  "Connection: keep-alive\r\n\r\n");
    ck_assert_uint_eq(c.req.method, HTTP_GET);
    ck_assert_str_eq(c.req.path, "/chat");
    ck_assert_str_eq(c.req.query, "name=ann&x=1");
    ck_assert_str_eq(c.req.host, "localhost:4000");
    ck_assert_str_eq(c.req.if_none_match, "\"abc\"");
    ck_assert_str_eq(c.req.connection, "keep-alive");
    ck_assert(c.req.keep_alive);
    ck_assert(!c.req.upgrade);
}
END_TEST

START_TEST(keep_alive_rules)
{
    http_conn_t c;
    parse_one(&c, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    ck_assert(!c.req.keep_alive);
    parse_one(&c, "GET / HTTP/1.0\r\n\r\n");
    ck_assert(!c.req.keep_alive);
    parse_one(&c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert(c.req.keep_alive);
    parse_one(&c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert(c.req.keep_alive);
}
END_TEST

START_TEST(byte_by_byte)
{
    const char *raw = "GET /app.js?v=2 HTTP/1.1\r\nHost: h\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    http_conn_t c;
    http_conn_init(&c);
    http_feed_result_t res = HTTP_FEED_MORE;
    size_t len = strlen(raw);
    for (size_t i = 0; i < len; i++) {
        ck_assert_int_eq(res, HTTP_FEED_MORE);
        ck_assert_uint_eq(http_conn_feed(&c, raw + i, 1, &res), 1);
    }
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_str_eq(c.req.path, "/app.js");
    ck_assert_str_eq(c.req.query, "v=2");
    ck_assert_str_eq(c.req.ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
}
END_TEST

START_TEST(pipelined_and_keep_alive)
{
    const char *raw = "GET /a.css HTTP/1.1\r\nHost: h\r\n\r\n"
                      "HEAD /b.js HTTP/1.1\r\nHost: h\r\n\r\n"
                      "GET /c";
    http_conn_t c;
    http_conn_init(&c);
    http_feed_result_t res;
    size_t len = strlen(raw), off = 0;
    off += http_conn_feed(&c, raw, len, &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_str_eq(c.req.path, "/a.css");
    ck_assert_uint_eq(off, strlen("GET /a.css HTTP/1.1\r\nHost: h\r\n\r\n"));
    off += http_conn_feed(&c, raw + off, len - off, &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_uint_eq(c.req.method, HTTP_HEAD);
    ck_assert_str_eq(c.req.path, "/b.js");
    off += http_conn_feed(&c, raw + off, len - off, &res);
    ck_assert_int_eq(res, HTTP_FEED_MORE);
    ck_assert_uint_eq(off, len);
    const char *rest = ".txt HTTP/1.1\r\nHost: h\r\n\r\n"; /* the third one, later */
    http_conn_feed(&c, rest, strlen(rest), &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_str_eq(c.req.path, "/c.txt");
}
END_TEST

START_TEST(repeated_header_joins)
{
    http_conn_t c;
    parse_one(&c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n\r\n");
    ck_assert_str_eq(c.req.connection, "keep-alive, Upgrade");
}
END_TEST

START_TEST(upgrade_leaves_rest)
{
    const char *head = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    char raw[512];
    snprintf(raw, sizeof raw, "%s\x81\x85XXXX", head); /* a frame right behind */
    http_conn_t c;
    http_conn_init(&c);
    http_feed_result_t res;
    size_t n = http_conn_feed(&c, raw, strlen(raw), &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert(c.req.upgrade);
    ck_assert(!c.req.keep_alive);
    ck_assert_uint_eq(n, strlen(head));
    /* Feeding again is refused: the connection left HTTP. */
    http_conn_feed(&c, raw + n, strlen(raw) - n, &res);
    ck_assert_int_eq(res, HTTP_FEED_ERROR);
}
END_TEST

START_TEST(oversized_url)
{
    size_t ulen = HTTP_LIMIT_URL + 1;
    char *raw = malloc(ulen + 64);
    strcpy(raw, "GET /");
    memset(raw + 5, 'a', ulen - 1);
    strcpy(raw + 4 + ulen, " HTTP/1.1\r\nHost: h\r\n\r\n");
    int st;
    expect_refused(raw, strlen(raw), 414);
    /* exactly at the bound is fine */
    raw[4 + ulen - 1] = '\0';
    strcat(raw, " HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(parse_status(raw, strlen(raw), &st), HTTP_FEED_REQUEST);
    free(raw);
}
END_TEST

START_TEST(oversized_headers)
{
    size_t cap = HTTP_LIMIT_HEADER_BYTES + 1024;
    char *raw = malloc(cap);
    strcpy(raw, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    size_t n = strlen(raw);
    memset(raw + n, 'v', HTTP_LIMIT_HEADER_BYTES);
    strcpy(raw + n + HTTP_LIMIT_HEADER_BYTES, "\r\n\r\n");
    expect_refused(raw, strlen(raw), 431);
    free(raw);
}
END_TEST

START_TEST(too_many_headers)
{
    char raw[4096];
    int off = snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (unsigned i = 1; i < HTTP_LIMIT_HEADER_COUNT; i++) /* Host is the first */
        off += snprintf(raw + off, sizeof raw - (size_t)off, "X-%u: v\r\n", i);
    int st;
    char ok[4200];
    snprintf(ok, sizeof ok, "%s\r\n", raw);
    ck_assert_int_eq(parse_status(ok, strlen(ok), &st), HTTP_FEED_REQUEST);
    snprintf(raw + off, sizeof raw - (size_t)off, "X-last: v\r\n\r\n");
    expect_refused(raw, strlen(raw), 431);
}
END_TEST

START_TEST(needed_header_too_long)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: %0100d\r\n\r\n", 0);
    expect_refused(raw, strlen(raw), 400);
}
END_TEST

START_TEST(bodies)
{
    const char *big = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1025\r\n\r\n";
    expect_refused(big, strlen(big), 413);
    char chunked[3000];
    int off = snprintf(chunked, sizeof chunked,
                       "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        off += snprintf(chunked + off, sizeof chunked - (size_t)off, "190\r\n");
        memset(chunked + off, 'b', 0x190);
        off += 0x190;
        off += snprintf(chunked + off, sizeof chunked - (size_t)off, "\r\n");
    }
    expect_refused(chunked, (size_t)off, 413);
    const char *small = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    http_conn_t c;
    http_conn_init(&c);
    http_feed_result_t res;
    size_t n = http_conn_feed(&c, small, strlen(small), &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_uint_eq(c.req.body_len, 5);
    ck_assert_uint_eq(c.req.method, HTTP_POST);
    http_conn_feed(&c, small + n, strlen(small) - n, &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    ck_assert_uint_eq(c.req.method, HTTP_GET);
}
END_TEST

START_TEST(malformed)
{
    static const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nNo colon here\r\n\r\n",
        "GET  HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_refused(bad[i], strlen(bad[i]), 400);
    }
}
END_TEST

/* ------------------------------------------------------------ static files */

static char tmp_dir[64];
static char web_dir[128];
static http_static_t st;

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void web_setup(void)
{
    strcpy(tmp_dir, "/tmp/chatter_http_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    snprintf(web_dir, sizeof web_dir, "%s/web", tmp_dir);
    char p[512], q[512];
    ck_assert_int_eq(mkdir(web_dir, 0755), 0);
    snprintf(p, sizeof p, "%s/sub", web_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/dir", web_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/outside", tmp_dir);
    mkdir(p, 0755);
    write_file(tmp_dir, "secret.txt", "TOP-SECRET\n");
    write_file(p, "secret.txt", "TOP-SECRET\n");
    write_file(web_dir, "index.html", "<!doctype html><title>chatter</title>\n");
    static const char *names[] = {"app.js", "style.css", "data.json", "logo.svg", "a.png",
                                  "favicon.ico", "notes.txt", "font.woff2", "mod.mjs",
                                  ".hidden.html", "unknown.xyz", "sub/dir/deep.css"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        write_file(web_dir, names[i], names[i]);
    /* escapes: a file symlink, a directory symlink, even one staying inside */
    snprintf(p, sizeof p, "%s/evil.txt", web_dir);
    snprintf(q, sizeof q, "%s/secret.txt", tmp_dir);
    ck_assert_int_eq(symlink(q, p), 0);
    snprintf(p, sizeof p, "%s/linkdir", web_dir);
    snprintf(q, sizeof q, "%s/outside", tmp_dir);
    ck_assert_int_eq(symlink(q, p), 0);
    snprintf(p, sizeof p, "%s/passwd.txt", web_dir);
    ck_assert_int_eq(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof p, "%s/inside.html", web_dir);
    ck_assert_int_eq(symlink("index.html", p), 0);
    snprintf(p, sizeof p, "%s/fifo.txt", web_dir);
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    snprintf(p, sizeof p, "%s/dir.css", web_dir); /* a directory with a served extension */
    mkdir(p, 0755);
    ck_assert_int_eq(http_static_open(&st, web_dir), 0);
}

static void web_teardown(void)
{
    http_static_close(&st);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Parses raw (expected to be one request, or a parse error) and answers it
 * as the endpoint would for a static path; returns the response text. */
static char *serve(const char *raw)
{
    http_conn_t *c = malloc(sizeof *c);
    http_conn_init(c);
    http_feed_result_t res;
    http_conn_feed(c, raw, strlen(raw), &res);
    act_buf_t out = ACT_BUF_INIT;
    if (res == HTTP_FEED_REQUEST)
        ck_assert_int_ge(http_serve_static(&st, &c->req, &out), 200);
    else
        ck_assert_int_eq(http_response_error(&out, c->error_status, false, false), 0);
    free(c);
    size_t len;
    char *text = act_buf_take(&out, &len);
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

static char *get(const char *path, const char *extra_headers)
{
    char raw[4096];
    snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: h\r\n%s\r\n", path,
             extra_headers ? extra_headers : "");
    return serve(raw);
}

START_TEST(index_routes)
{
    static const char *paths[] = {"/", "/chat", "/chat?name=ann", "/index.html"};
    for (size_t i = 0; i < 4; i++) {
        char *r = get(paths[i], NULL);
        char v[128];
        ck_assert_int_eq(resp_status(r), 200);
        ck_assert(resp_header(r, "Content-Type", v, sizeof v));
        ck_assert_str_eq(v, "text/html; charset=utf-8");
        ck_assert_str_eq(resp_body(r), "<!doctype html><title>chatter</title>\n");
        ck_assert(resp_header(r, "Content-Length", v, sizeof v));
        ck_assert_int_eq(atoi(v), (int)strlen(resp_body(r)));
        ck_assert(resp_header(r, "Connection", v, sizeof v));
        ck_assert_str_eq(v, "keep-alive");
        free(r);
    }
}
END_TEST

START_TEST(content_types)
{
    static const char *cases[][2] = {
        {"/app.js", "text/javascript; charset=utf-8"},
        {"/mod.mjs", "text/javascript; charset=utf-8"},
        {"/style.css", "text/css; charset=utf-8"},
        {"/data.json", "application/json"},
        {"/logo.svg", "image/svg+xml"},
        {"/a.png", "image/png"},
        {"/favicon.ico", "image/x-icon"},
        {"/notes.txt", "text/plain; charset=utf-8"},
        {"/font.woff2", "font/woff2"},
        {"/sub/dir/deep.css", "text/css; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *r = get(cases[i][0], NULL);
        char v[128];
        ck_assert_msg(resp_status(r) == 200, "%s", cases[i][0]);
        ck_assert(resp_header(r, "Content-Type", v, sizeof v));
        ck_assert_str_eq(v, cases[i][1]);
        ck_assert_str_eq(resp_body(r), strrchr(cases[i][0], '/') == cases[i][0]
                                           ? cases[i][0] + 1 : "sub/dir/deep.css");
        free(r);
    }
    ck_assert_ptr_null(http_content_type("x.exe"));
    ck_assert_ptr_null(http_content_type("noext"));
    ck_assert_str_eq(http_content_type("A.HTML"), "text/html; charset=utf-8");
}
END_TEST

START_TEST(hostile_paths)
{
    static const char *paths[] = {
        "/../secret.txt", "/..%2fsecret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt",
        "/sub/../../secret.txt", "/sub/..%2f..%2fsecret.txt", "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt", "/sub/%2e%2e/%2e%2e/secret.txt", "/sub/dir/../../../secret.txt",
        "/%252e%252e/secret.txt", "/%c0%ae%c0%ae/secret.txt", "/..%c0%afsecret.txt",
        "/..%5csecret.txt", "/%5c..%5csecret.txt", "/..\\secret.txt",
        "/index.html%00.txt", "/%00", "/notes.txt%00", "/%0a", "/a%7fb.txt",
        "/evil.txt", "/passwd.txt", "/linkdir/secret.txt", "/linkdir/../secret.txt",
        "/inside.html", "/fifo.txt", "/dir.css", "/.hidden.html", "/%2ehidden.html",
        "/unknown.xyz", "/sub", "/sub/", "/sub/dir/", "//secret.txt", "/./index.html",
        "/sub/./dir/deep.css", "/etc/passwd", "//etc/passwd", "/%2fetc%2fpasswd",
        "/%", "/%2", "/%zz", "/nope.html", "http://evil/../secret.txt",
        "/web/../secret.txt", "/...", "/..../secret.txt",
    };
    int fd0 = lowest_free_fd();
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *r = get(paths[i], NULL);
        int s = resp_status(r);
        ck_assert_msg(s == 404 || s == 400, "%s -> %d", paths[i], s);
        ck_assert_msg(!strstr(r, "TOP-SECRET") && !strstr(r, "root:"), "%s leaked", paths[i]);
        free(r);
    }
    /* Direct lookups see the same (the endpoint may call them itself). */
    http_file_t f;
    ck_assert_int_eq(http_static_lookup(&st, "/%2e%2e/secret.txt", &f), 404);
    ck_assert_int_eq(http_static_lookup(&st, "/..%2fsecret.txt", &f), 400);
    ck_assert_int_eq(http_static_lookup(&st, "relative.txt", &f), 400);
    ck_assert_int_eq(f.fd, -1);
    ck_assert_int_eq(lowest_free_fd(), fd0);
}
END_TEST

START_TEST(etag_304)
{
    char *r = get("/app.js", NULL);
    char etag[64], v[128], hdr[256];
    ck_assert(resp_header(r, "ETag", etag, sizeof etag));
    ck_assert(etag[0] == '"' && etag[strlen(etag) - 1] == '"');
    free(r);
    const char *forms[] = {"%s", "W/%s", "\"nope\", %s", " %s ", "*"};
    for (size_t i = 0; i < 5; i++) {
        char inm[128];
        snprintf(inm, sizeof inm, forms[i], etag);
        snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", inm);
        r = get("/app.js", hdr);
        ck_assert_msg(resp_status(r) == 304, "%s", inm);
        ck_assert_str_eq(resp_body(r), "");
        ck_assert(resp_header(r, "ETag", v, sizeof v));
        ck_assert_str_eq(v, etag);
        free(r);
    }
    r = get("/app.js", "If-None-Match: \"other\"\r\n");
    ck_assert_int_eq(resp_status(r), 200);
    free(r);
    /* A changed file gets a new ETag: the old one no longer matches. */
    write_file(web_dir, "app.js", "app.js, version two");
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    r = get("/app.js", hdr);
    ck_assert_int_eq(resp_status(r), 200);
    ck_assert(resp_header(r, "ETag", v, sizeof v));
    ck_assert_str_ne(v, etag);
    ck_assert_str_eq(resp_body(r), "app.js, version two");
    free(r);
}
END_TEST

START_TEST(head_request)
{
    char *r = serve("HEAD /style.css HTTP/1.1\r\nHost: h\r\n\r\n");
    char v[64];
    ck_assert_int_eq(resp_status(r), 200);
    ck_assert(resp_header(r, "Content-Length", v, sizeof v));
    ck_assert_int_eq(atoi(v), (int)strlen("style.css"));
    ck_assert_str_eq(resp_body(r), "");
    free(r);
    r = serve("HEAD /missing.css HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(resp_status(r), 404);
    ck_assert_str_eq(resp_body(r), "");
    free(r);
}
END_TEST

START_TEST(method_not_allowed)
{
    static const char *raws[] = {
        "POST /index.html HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
        "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        "DELETE /app.js HTTP/1.1\r\nHost: h\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    };
    for (size_t i = 0; i < 4; i++) {
        char *r = serve(raws[i]);
        char v[64];
        int s = resp_status(r);
        /* "OPTIONS *" has no path: refused by the URL split as 400 */
        ck_assert_msg(s == 405 || (i == 3 && s == 400), "%s -> %d", raws[i], s);
        if (s == 405) {
            ck_assert(resp_header(r, "Allow", v, sizeof v));
            ck_assert_str_eq(v, "GET, HEAD");
        }
        free(r);
    }
}
END_TEST

START_TEST(errors_close_connection)
{
    char *r = serve("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999\r\n\r\n");
    char v[64];
    ck_assert_int_eq(resp_status(r), 413);
    ck_assert(resp_header(r, "Connection", v, sizeof v));
    ck_assert_str_eq(v, "close");
    free(r);
}
END_TEST

/* ------------------------------------------------------------ responses */

START_TEST(text_responses)
{
    act_buf_t b = ACT_BUF_INIT;
    ck_assert_int_eq(http_response_text(&b, 200, "text/plain; charset=utf-8", "ok", 2, true, false), 0);
    char v[64];
    ck_assert_int_eq(resp_status(b.p), 200);
    ck_assert(resp_header(b.p, "Content-Length", v, sizeof v));
    ck_assert_str_eq(v, "2");
    ck_assert_str_eq(resp_body(b.p), "ok");
    act_buf_free(&b);
    ck_assert_int_eq(http_response_text(&b, 503, "text/plain", "down\n", 5, false, true), 0);
    ck_assert_int_eq(resp_status(b.p), 503);
    ck_assert(strstr(b.p, "503 Service Unavailable\r\n"));
    ck_assert(resp_header(b.p, "Content-Length", v, sizeof v));
    ck_assert_str_eq(v, "5");
    ck_assert_str_eq(resp_body(b.p), "");
    act_buf_free(&b);
    static const int codes[] = {400, 404, 405, 413, 414, 431, 500, 503};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_int_eq(http_response_error(&b, codes[i], true, false), 0);
        ck_assert_int_eq(resp_status(b.p), codes[i]);
        ck_assert_str_ne(http_reason(codes[i]), "");
        act_buf_free(&b);
    }
}
END_TEST

/* ------------------------------------------------------------ handshake */

START_TEST(accept_key_rfc_example)
{
    char out[HTTP_WS_ACCEPT_LEN + 1];
    http_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", out);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

static const char *ws_ok =
    "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

static int handshake(const char *raw, char **resp)
{
    http_conn_t c;
    http_conn_init(&c);
    http_feed_result_t res;
    http_conn_feed(&c, raw, strlen(raw), &res);
    ck_assert_int_eq(res, HTTP_FEED_REQUEST);
    act_buf_t b = ACT_BUF_INIT;
    int s = http_ws_handshake(&c.req, &b);
    size_t len;
    *resp = act_buf_take(&b, &len);
    return s;
}

START_TEST(handshake_ok)
{
    char *r;
    ck_assert_int_eq(handshake(ws_ok, &r), 101);
    char v[64];
    ck_assert_int_eq(resp_status(r), 101);
    ck_assert(resp_header(r, "Sec-WebSocket-Accept", v, sizeof v));
    ck_assert_str_eq(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ck_assert(resp_header(r, "Upgrade", v, sizeof v));
    ck_assert_str_eq(v, "websocket");
    ck_assert_str_eq(resp_body(r), "");
    free(r);
    /* list forms and case are fine */
    ck_assert_int_eq(handshake("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n"
                               "Connection: keep-alive, upgrade\r\n"
                               "Sec-WebSocket-Key:  AQIDBAUGBwgJCgsMDQ4PEA== \r\n"
                               "Sec-WebSocket-Version: 13\r\n\r\n", &r), 101);
    free(r);
}
END_TEST

START_TEST(handshake_bad)
{
    static const char *bad[] = {
        /* no Upgrade */
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* wrong Upgrade */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* no Connection: upgrade */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* "upgraded" is not the token "upgrade" */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgraded\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* no key */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* key of 15 bytes */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* key not base64 */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* key whose padding bits are set: not the encoding of 16 bytes */
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* POST */
        "POST /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
        /* HTTP/1.0 */
        "GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *r;
        ck_assert_msg(handshake(bad[i], &r) == 400, "case %zu", i);
        char v[64];
        ck_assert_int_eq(resp_status(r), 400);
        ck_assert(resp_header(r, "Sec-WebSocket-Version", v, sizeof v));
        ck_assert_str_eq(v, "13");
        ck_assert(resp_header(r, "Connection", v, sizeof v));
        ck_assert_str_eq(v, "close");
        ck_assert(!strstr(r, "Sec-WebSocket-Accept"));
        free(r);
    }
}
END_TEST


/* ------------------------------------------------------------ conformance
 * Issue 7 items 8 and 10: RFC 9112/9110 and the security headers. */

START_TEST(host_exactly_once)
{
    int st;
    const char *none = "GET / HTTP/1.1\r\n\r\n";
    expect_refused(none, strlen(none), 400);
    const char *two = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    expect_refused(two, strlen(two), 400);
    /* HTTP/1.0 needs none; one is fine in both */
    const char *old = "GET / HTTP/1.0\r\n\r\n";
    ck_assert_int_eq(parse_status(old, strlen(old), &st), HTTP_FEED_REQUEST);
    const char *one = "GET / HTTP/1.1\r\nhost: a\r\n\r\n";
    ck_assert_int_eq(parse_status(one, strlen(one), &st), HTTP_FEED_REQUEST);
    const char *two_origins = "GET / HTTP/1.1\r\nHost: a\r\nOrigin: http://a\r\nOrigin: http://b\r\n\r\n";
    expect_refused(two_origins, strlen(two_origins), 400);
}
END_TEST

START_TEST(blank_before_colon)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_refused(bad[i], strlen(bad[i]), 400);
    }
}
END_TEST

START_TEST(version_not_supported)
{
    const char *h2 = "GET / HTTP/2.0\r\nHost: a\r\n\r\n";
    expect_refused(h2, strlen(h2), 505);
    act_buf_t b = ACT_BUF_INIT;
    http_response_error(&b, 505, false, false);
    ck_assert_int_eq(resp_status(b.p), 505);
    act_buf_free(&b);
}
END_TEST

START_TEST(security_headers_everywhere)
{
    act_buf_t b;
    char v[256];
    int statuses[] = {200, 400, 403, 404, 405, 408, 426, 429, 500, 503, 505};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        b = (act_buf_t)ACT_BUF_INIT;
        if (statuses[i] == 200)
            http_response_text(&b, 200, "text/plain", "ok", 2, true, false);
        else
            http_response_error(&b, statuses[i], false, false);
        ck_assert_msg(resp_header(b.p, "Content-Security-Policy", v, sizeof v), "%d", statuses[i]);
        ck_assert_str_eq(v, "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
        ck_assert(!strstr(v, "unsafe-inline"));
        ck_assert(resp_header(b.p, "X-Frame-Options", v, sizeof v));
        ck_assert_str_eq(v, "DENY");
        ck_assert(resp_header(b.p, "Referrer-Policy", v, sizeof v));
        ck_assert_str_eq(v, "no-referrer");
        ck_assert(resp_header(b.p, "X-Content-Type-Options", v, sizeof v));
        ck_assert_str_eq(v, "nosniff");
        ck_assert(http_reason(statuses[i])[0]);
        act_buf_free(&b);
    }
    char *r;
    ck_assert_int_eq(handshake(ws_ok, &r), 101);
    ck_assert(resp_header(r, "X-Frame-Options", v, sizeof v));
    free(r);
}
END_TEST

START_TEST(handshake_wrong_version_426)
{
    static const char *old[] = {
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
        char *r, v[64];
        ck_assert_msg(handshake(old[i], &r) == 426, "case %zu", i);
        ck_assert_int_eq(resp_status(r), 426);
        ck_assert(resp_header(r, "Sec-WebSocket-Version", v, sizeof v));
        ck_assert_str_eq(v, "13");
        ck_assert(!strstr(r, "Sec-WebSocket-Accept"));
        free(r);
    }
}
END_TEST

START_TEST(handshake_head_has_no_body)
{
    char *r, v[64];
    ck_assert_int_eq(handshake("HEAD /ws HTTP/1.1\r\nHost: h\r\n\r\n", &r), 400);
    ck_assert(resp_header(r, "Content-Length", v, sizeof v));
    ck_assert_str_ne(v, "0");
    ck_assert_str_eq(resp_body(r), "");
    free(r);
    act_buf_t b = ACT_BUF_INIT;
    http_response_error_allow(&b, 405, "GET", false, false);
    ck_assert(resp_header(b.p, "Allow", v, sizeof v));
    ck_assert_str_eq(v, "GET");
    act_buf_free(&b);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *p = tcase_create("parser");
    tcase_add_test(p, parses_fields);
    tcase_add_test(p, keep_alive_rules);
    tcase_add_test(p, byte_by_byte);
    tcase_add_test(p, pipelined_and_keep_alive);
    tcase_add_test(p, repeated_header_joins);
    tcase_add_test(p, upgrade_leaves_rest);
    tcase_add_test(p, oversized_url);
    tcase_add_test(p, oversized_headers);
    tcase_add_test(p, too_many_headers);
    tcase_add_test(p, needed_header_too_long);
    tcase_add_test(p, bodies);
    tcase_add_test(p, malformed);
    suite_add_tcase(s, p);
    TCase *f = tcase_create("static");
    tcase_add_checked_fixture(f, web_setup, web_teardown);
    tcase_add_test(f, index_routes);
    tcase_add_test(f, content_types);
    tcase_add_test(f, hostile_paths);
    tcase_add_test(f, etag_304);
    tcase_add_test(f, head_request);
    tcase_add_test(f, method_not_allowed);
    tcase_add_test(f, errors_close_connection);
    suite_add_tcase(s, f);
    TCase *r = tcase_create("responses");
    tcase_add_test(r, text_responses);
    tcase_add_test(r, accept_key_rfc_example);
    tcase_add_test(r, handshake_ok);
    tcase_add_test(r, handshake_bad);
    tcase_add_test(r, handshake_wrong_version_426);
    tcase_add_test(r, handshake_head_has_no_body);
    tcase_add_test(r, security_headers_everywhere);
    tcase_add_test(p, host_exactly_once);
    tcase_add_test(p, blank_before_colon);
    tcase_add_test(p, version_not_supported);
    suite_add_tcase(s, r);
    return s;
}

CHECK_MAIN(http_suite, CK_NORMAL)
