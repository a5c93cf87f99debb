/* protocol.c: decoding client frames and encoding server frames (protocol.h).
 *
 * Decoding uses cJSON for the structure, behind a strict pre-scan that makes up
 * for cJSON's leniency (trailing garbage, "+1", raw control characters) and for
 * its one lossy spot: it would cut a string at "\u0000". Encoding is hand-written
 * into a growable buffer: frames are mostly fixed text around cached fragments,
 * and hand-writing lets us splice those fragments and the ref verbatim.
 *
 * Kind: a pure library -- no actor, no message, no registered name; the caller
 * owns whatever state it works on (README "Reading the app").
 */
#include "protocol.h"

#include "buf.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "unicode.h"

/* ------------------------------------------------------------------ codes */

static const struct {
    const char *str;
    const char *message;
} code_table[PROTO_CODE_COUNT] = {
    [PROTO_OK] = {"ok", "ok"},
    [PROTO_BAD_REQUEST] = {"bad_request", "malformed request"},
    [PROTO_NAME_INVALID] = {"name_invalid",
                            "a name is 1 to 32 letters, digits, _ - . and single inner spaces"},
    [PROTO_NAME_TAKEN] = {"name_taken", "that name is online elsewhere"},
    [PROTO_ALREADY_JOINED] = {"already_joined", "this socket has already joined"},
    [PROTO_TAKEN_OVER] = {"taken_over", "your name was taken over by another connection"},
    [PROTO_NOT_JOINED] = {"not_joined", "join first"},
    [PROTO_CONTENT_INVALID] = {"content_invalid", "a message is 1 to 2000 characters"},
    [PROTO_RATE_LIMITED] = {"rate_limited", "too many messages; slow down"},
    [PROTO_UNAVAILABLE] = {"unavailable", "the database is unavailable; nothing was stored; retry"},
};

const char *proto_code_str(proto_code code)
{
    return (unsigned)code < PROTO_CODE_COUNT ? code_table[code].str : "unavailable";
}

const char *proto_code_message(proto_code code)
{
    return (unsigned)code < PROTO_CODE_COUNT ? code_table[code].message : "internal error";
}

/* ------------------------------------------------------------------ buffer */

/* The output is the runtime's string builder (buf.h): an allocation failure
 * is sticky and surfaces once, at jb_finish, so encoders need not check
 * every append.  jb_init sizes the first block from what the encoder
 * expects, so most frames cost one malloc. */
static void jb_init(act_buf_t *b, size_t hint)
{
    *b = (act_buf_t)ACT_BUF_INIT;
    act_buf_reserve(b, hint);
}

static void jb_i64(act_buf_t *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    act_buf_put(b, tmp, (size_t)n);
}

static void jb_size(act_buf_t *b, size_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%zu", v);
    act_buf_put(b, tmp, (size_t)n);
}

static void jb_bool(act_buf_t *b, bool v)
{
    if (v)
        act_buf_lit(b, "true");
    else
        act_buf_lit(b, "false");
}

/* Appends s as a JSON string. Control characters are escaped, non-ASCII passes
 * through as UTF-8; bytes that are not well-formed UTF-8 (never expected, but
 * a frame with them would make the browser drop the socket) become U+FFFD. */
static void jb_str(act_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    act_buf_lit(b, "\"");
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && (unsigned char)s[run] >= 0x20 && (unsigned char)s[run] < 0x80
               && s[run] != '"' && s[run] != '\\')
            run++;
        act_buf_put(b, s + i, run - i);
        i = run;
        if (i >= n)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t len = utf8_seq_len(s + i, n - i);
            if (len)
                act_buf_put(b, s + i, len);
            else
                act_buf_lit(b, "\xEF\xBF\xBD");
            i += len ? len : 1;
            continue;
        }
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        act_buf_put(b, esc, elen);
        i++;
    }
    act_buf_lit(b, "\"");
}

static void jb_cstr(act_buf_t *b, const char *s)
{
    jb_str(b, s ? s : "", s ? strlen(s) : 0);
}

/* ,"key":value -- key is a string literal, so the key costs no strlen */
#define jb_kv_cstr(b, key, v) (act_buf_lit((b), ",\"" key "\":"), jb_cstr((b), (v)))
#define jb_kv_size(b, key, v) (act_buf_lit((b), ",\"" key "\":"), jb_size((b), (v)))
#define jb_kv_bool(b, key, v) (act_buf_lit((b), ",\"" key "\":"), jb_bool((b), (v)))
#define jb_kv_i64(b, key, v) (act_buf_lit((b), ",\"" key "\":"), jb_i64((b), (v)))

static void jb_frag(act_buf_t *b, const proto_str *f, const char *empty)
{
    if (f && f->ptr)
        act_buf_put(b, f->ptr, f->len);
    else
        act_buf_puts(b, empty);
}

/* `,"ref":R` when there is a ref: every reply puts it right after "type". */
static void jb_ref(act_buf_t *b, const char *ref)
{
    if (ref) {
        act_buf_lit(b, ",\"ref\":");
        act_buf_puts(b, ref);
    }
}

static proto_str jb_finish(act_buf_t *b)
{
    size_t len;
    char *p = act_buf_take(b, &len);
    return (proto_str){p, p ? len : 0};
}

/* ------------------------------------------------------------------ strict pre-scan */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_digits(const char *s, size_t i, size_t n)
{
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* RFC 8259 number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const char *s, size_t n)
{
    size_t i = 0, d;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        i = skip_digits(s, i, n);
    else
        return false;
    if (i < n && s[i] == '.') {
        d = ++i;
        if ((i = skip_digits(s, i, n)) == d)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        d = i;
        if ((i = skip_digits(s, i, n)) == d)
            return false;
    }
    return i == n;
}

static bool number_char(char c)
{
    return is_digit(c) || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* Private stand-in for an escaped U+0000 while cJSON parses: 0xFF never
 * occurs in UTF-8, so it cannot collide with real text. */
#define NUL_STANDIN '\xFF'

/* Scans the string literal opening at s[*i]; copies it to out (if any) with
 * each "\u0000" replaced by NUL_STANDIN, counting those in *nuls. */
static bool scan_string(const char *s, size_t n, size_t *i, char *out, size_t *o, size_t *nuls)
{
    size_t k = *i + 1;
    for (;;) {
        if (k >= n || (unsigned char)s[k] < 0x20)
            return false;
        if (s[k] == '"')
            break;
        if (s[k] == '\\') {
            if (k + 1 >= n)
                return false;
            if (s[k + 1] == 'u' && k + 6 <= n && memcmp(s + k + 2, "0000", 4) == 0) {
                (*nuls)++;
                if (out) {
                    memcpy(out + *o, s + *i, k - *i);
                    *o += k - *i;
                    out[(*o)++] = NUL_STANDIN;
                }
                *i = k + 6;
                k += 6;
                continue;
            }
            k += 2;
            continue;
        }
        k++;
    }
    k++; /* closing quote */
    if (out) {
        memcpy(out + *o, s + *i, k - *i);
        *o += k - *i;
    }
    *i = k;
    return true;
}

/* The checks cJSON does not make. With out == NULL it only counts escaped
 * NULs; with out (len bytes) it also writes the text cJSON should parse. */
static bool prescan(const char *s, size_t n, char *out, size_t *out_len, size_t *nuls)
{
    size_t i = 0, o = 0;
    *nuls = 0;
    while (i < n) {
        char c = s[i];
        size_t start = i;
        if (c == '"') {
            if (!scan_string(s, n, &i, out, &o, nuls))
                return false;
            continue;
        }
        if (is_digit(c) || c == '-' || c == '+' || c == '.') {
            while (i < n && number_char(s[i]))
                i++;
            if (!json_number_ok(s + start, i - start))
                return false;
        } else if ((unsigned char)c >= 0x80
                   || ((unsigned char)c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')) {
            return false; /* cJSON would skip these as white space or a BOM */
        } else {
            i++;
        }
        if (out) {
            memcpy(out + o, s + start, i - start);
            o += i - start;
        }
    }
    if (out_len)
        *out_len = o;
    return true;
}

static bool only_ws(const char *s, const char *end)
{
    for (; s < end; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* Parses text as exactly one JSON value, or returns NULL. */
static cJSON *strict_parse(const char *text, size_t len)
{
    size_t nuls;
    if (!prescan(text, len, NULL, NULL, &nuls))
        return NULL;
    char *copy = NULL;
    if (nuls) {
        if (!(copy = malloc(len)))
            return NULL;
        prescan(text, len, copy, &len, &nuls);
        text = copy;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root && (!end || !only_ws(end, text + len))) {
        cJSON_Delete(root);
        root = NULL;
    }
    free(copy);
    return root;
}

/* ------------------------------------------------------------------ decoding */

static proto_code fail(proto_request *req, const char *fmt, const char *field)
{
    snprintf(req->why, sizeof req->why, fmt, field);
    return PROTO_BAD_REQUEST;
}

/* Copies a parsed string, restoring escaped NULs from their stand-in. */
static bool take_string(const cJSON *item, proto_str *out)
{
    size_t n = strlen(item->valuestring);
    char *p = malloc(n + 1);
    if (!p)
        return false;
    for (size_t i = 0; i < n; i++)
        p[i] = item->valuestring[i] == NUL_STANDIN ? '\0' : item->valuestring[i];
    p[n] = '\0';
    *out = (proto_str){p, n};
    return true;
}

/* The shortest decimal text that reads back as d; JSON has no infinity, but
 * 1e999 is a number every JSON reader maps back to the same overflow. */
static void format_number(double d, char *out, size_t cap)
{
    if (d != d) {
        snprintf(out, cap, "0");
    } else if (d > 1.7976931348623157e308 || d < -1.7976931348623157e308) {
        snprintf(out, cap, d > 0 ? "1e999" : "-1e999");
    } else if (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(int64_t)d) {
        snprintf(out, cap, "%" PRId64, (int64_t)d);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, cap, "%.*g", prec, d);
            if (strtod(out, NULL) == d)
                break;
        }
    }
}

/* Sets req->ref from the ref member; returns false if it is unusable. */
static bool decode_ref(const cJSON *item, proto_request *req)
{
    if (!item)
        return true;
    act_buf_t b;
    if (cJSON_IsNumber(item)) {
        char tmp[40];
        format_number(item->valuedouble, tmp, sizeof tmp);
        jb_init(&b, sizeof tmp);
        act_buf_puts(&b, tmp);
    } else if (cJSON_IsString(item)) {
        proto_str s;
        if (!take_string(item, &s))
            return true; /* out of memory: answer without a ref rather than lie */
        jb_init(&b, s.len + 8);
        jb_str(&b, s.ptr, s.len);
        free(s.ptr);
    } else {
        return false;
    }
    req->ref = jb_finish(&b).ptr;
    return true;
}

static const struct {
    const char *name;
    proto_req_type type;
} req_types[] = {
    {"join", PROTO_REQ_JOIN},         {"send", PROTO_REQ_SEND},
    {"history", PROTO_REQ_HISTORY},   {"catch_up", PROTO_REQ_CATCH_UP},
    {"leave", PROTO_REQ_LEAVE},       {"ping", PROTO_REQ_PING},
    {"users", PROTO_REQ_USERS},
};

static proto_req_type lookup_type(const cJSON *item)
{
    if (!cJSON_IsString(item))
        return PROTO_REQ_NONE;
    for (size_t i = 0; i < sizeof req_types / sizeof req_types[0]; i++)
        if (strcmp(item->valuestring, req_types[i].name) == 0)
            return req_types[i].type;
    return PROTO_REQ_NONE;
}

/* A string member: required, or optional where null counts as absent. */
static proto_code get_string(const cJSON *obj, const char *key, bool required,
                             proto_str *out, proto_request *req)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || (!required && cJSON_IsNull(item))) {
        if (required)
            return fail(req, "missing field \"%s\"", key);
        return PROTO_OK;
    }
    if (!cJSON_IsString(item))
        return fail(req, "field \"%s\" must be a string", key);
    if (!take_string(item, out))
        return fail(req, "out of memory decoding \"%s\"", key);
    return PROTO_OK;
}

/* A required integer member within [lo, hi]; 5.0 counts as 5 (JSON has only
 * numbers), 5.5 does not. Seq values are exact only up to 2^53 (cJSON keeps
 * doubles), far beyond what the database will reach. */
static proto_code get_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                          int64_t *out, proto_request *req)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return fail(req, "missing field \"%s\"", key);
    if (!cJSON_IsNumber(item))
        return fail(req, "field \"%s\" must be an integer", key);
    double d = item->valuedouble;
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double)(int64_t)d)
        return fail(req, "field \"%s\" must be an integer", key);
    int64_t v = (int64_t)d;
    if (v < lo || v > hi)
        return fail(req, "field \"%s\" is out of range", key);
    *out = v;
    return PROTO_OK;
}

/* A required JSON boolean member. */
static proto_code get_bool(const cJSON *obj, const char *key, bool *out, proto_request *req)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return fail(req, "missing field \"%s\"", key);
    if (!cJSON_IsBool(item))
        return fail(req, "field \"%s\" must be a boolean", key);
    *out = cJSON_IsTrue(item);
    return PROTO_OK;
}

static size_t count_code_points(const char *s, size_t n)
{
    size_t i = 0, count = 0;
    while (i < n) {
        utf8_next(s, &i);
        count++;
    }
    return count;
}

/* users: online, limit, and the optional after (bytes) and prefix (code points). */
static proto_code decode_users(const cJSON *obj, proto_request *req)
{
    proto_code c;
    if ((c = get_bool(obj, "online", &req->online, req)) != PROTO_OK)
        return c;
    if ((c = get_int(obj, "limit", 1, PROTO_USERS_MAX, &req->limit, req)) != PROTO_OK)
        return c;
    if ((c = get_string(obj, "after", false, &req->after_name, req)) != PROTO_OK)
        return c;
    if (req->after_name.ptr && req->after_name.len > PROTO_AFTER_MAX)
        return fail(req, "field \"%s\" is longer than 128 bytes", "after");
    if ((c = get_string(obj, "prefix", false, &req->prefix, req)) != PROTO_OK)
        return c;
    if (req->prefix.ptr) {
        size_t n = count_code_points(req->prefix.ptr, req->prefix.len);
        if (n < 1 || n > PROTO_PREFIX_MAX)
            return fail(req, "field \"%s\" must be 1 to 32 characters", "prefix");
    }
    return PROTO_OK;
}

/* send: content, and the optional client_id of 1 to 64 [A-Za-z0-9_-]. */
static proto_code decode_send(const cJSON *obj, proto_request *req)
{
    proto_code c;
    if ((c = get_string(obj, "content", true, &req->content, req)) != PROTO_OK)
        return c;
    if ((c = get_string(obj, "client_id", false, &req->client_id, req)) != PROTO_OK)
        return c;
    if (!req->client_id.ptr)
        return PROTO_OK;
    if (req->client_id.len < 1 || req->client_id.len > PROTO_CLIENT_ID_MAX)
        return fail(req, "field \"%s\" must be 1 to 64 characters", "client_id");
    for (size_t i = 0; i < req->client_id.len; i++) {
        char ch = req->client_id.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_'
              || ch == '-'))
            return fail(req, "field \"%s\" allows only A-Z a-z 0-9 _ -", "client_id");
    }
    return PROTO_OK;
}

static proto_code decode_fields(const cJSON *obj, proto_request *req)
{
    proto_code c = PROTO_OK;
    switch (req->type) {
    case PROTO_REQ_JOIN:
        if ((c = get_string(obj, "name", true, &req->name, req)) != PROTO_OK)
            return c;
        return get_string(obj, "token", false, &req->token, req);
    case PROTO_REQ_SEND:
        return decode_send(obj, req);
    case PROTO_REQ_USERS:
        return decode_users(obj, req);
    case PROTO_REQ_HISTORY:
        if ((c = get_int(obj, "before", INT64_MIN, INT64_MAX, &req->before, req)) != PROTO_OK)
            return c;
        return get_int(obj, "limit", 1, PROTO_HISTORY_MAX, &req->limit, req);
    case PROTO_REQ_CATCH_UP:
        return get_int(obj, "after", INT64_MIN, INT64_MAX, &req->after, req);
    default:
        return PROTO_OK;
    }
}

static proto_code decode_object(const cJSON *obj, proto_request *req)
{
    if (!cJSON_IsObject(obj))
        return fail(req, "a frame must be a JSON %s", "object");
    if (!decode_ref(cJSON_GetObjectItemCaseSensitive(obj, "ref"), req))
        return fail(req, "field \"%s\" must be a number or a string", "ref");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
    if (!type)
        return fail(req, "missing field \"%s\"", "type");
    if ((req->type = lookup_type(type)) == PROTO_REQ_NONE)
        return fail(req, "unknown %s", "type");
    return decode_fields(obj, req);
}

proto_code proto_decode(const char *frame, size_t len, proto_request *req)
{
    memset(req, 0, sizeof *req);
    if (len > PROTO_MAX_FRAME)
        return fail(req, "frame larger than %s bytes", "65536");
    if (!utf8_valid(frame, len))
        return fail(req, "frame is not %s", "UTF-8");
    cJSON *root = strict_parse(frame, len);
    if (!root)
        return fail(req, "frame is not %s", "JSON");
    proto_code c = decode_object(root, req);
    cJSON_Delete(root);
    if (c != PROTO_OK)
        req->type = PROTO_REQ_NONE;
    return c;
}

static void str_free(proto_str *s)
{
    free(s->ptr);
    *s = (proto_str){NULL, 0};
}

void proto_request_free(proto_request *req)
{
    free(req->ref);
    req->ref = NULL;
    str_free(&req->name);
    str_free(&req->token);
    str_free(&req->content);
    str_free(&req->after_name);
    str_free(&req->prefix);
    str_free(&req->client_id);
}

/* ------------------------------------------------------------------ validity */

/* Narrows [*off, *off + *n) to exclude White_Space at both ends. */
static void trim_span(const char *s, size_t *off, size_t *n)
{
    size_t i = *off, end = *off + *n;
    while (i < end) {
        size_t next = i;
        if (!uni_is_space(utf8_next(s, &next)))
            break;
        i = next;
    }
    while (end > i) {
        size_t prev = end;
        if (!uni_is_space(utf8_prev(s, &prev)))
            break;
        end = prev;
    }
    *off = i;
    *n = end - i;
}

/* Replaces s by its sub-span in place, keeping it NUL-terminated. */
static void keep_span(proto_str *s, size_t off, size_t n)
{
    memmove(s->ptr, s->ptr + off, n);
    s->ptr[n] = '\0';
    s->len = n;
}

static bool name_char(uint32_t cp)
{
    return cp == '_' || cp == '-' || cp == '.' || uni_is_letter(cp) || uni_is_digit(cp);
}

static bool name_ok(const char *s, size_t n)
{
    size_t i = 0, count = 0;
    bool prev_space = false, visible = false;
    while (i < n) {
        uint32_t cp = utf8_next(s, &i);
        if (++count > PROTO_NAME_MAX)
            return false;
        if (cp == ' ') {
            if (prev_space)
                return false;
            prev_space = true; /* never leading or trailing: trimmed */
        } else if (name_char(cp)) {
            prev_space = false;
            visible = visible || !uni_is_invisible(cp);
        } else {
            return false;
        }
    }
    return count >= 1 && visible;
}

/* Trim, check the trimmed span with ok(), keep it: the shape both join
 * names and send contents go through. */
static proto_code canon_trimmed(proto_str *s, bool (*ok)(const char *, size_t),
                                proto_code invalid)
{
    if (!s->ptr || !utf8_valid(s->ptr, s->len))
        return invalid;
    size_t off = 0, n = s->len;
    trim_span(s->ptr, &off, &n);
    if (!ok(s->ptr + off, n))
        return invalid;
    keep_span(s, off, n);
    return PROTO_OK;
}

proto_code proto_canon_name(proto_str *s)
{
    return canon_trimmed(s, name_ok, PROTO_NAME_INVALID);
}

static bool content_ok(const char *s, size_t n)
{
    size_t i = 0, count = 0;
    while (i < n) {
        if (utf8_next(s, &i) == 0 || ++count > PROTO_CONTENT_MAX)
            return false;
    }
    return count >= 1;
}

proto_code proto_canon_content(proto_str *s)
{
    return canon_trimmed(s, content_ok, PROTO_CONTENT_INVALID);
}

/* ------------------------------------------------------------------ fragments */

static void put_user(act_buf_t *b, const proto_user *u)
{
    act_buf_lit(b, "{\"id\":");
    jb_cstr(b, u->id);
    jb_kv_cstr(b, "name", u->name);
    jb_kv_bool(b, "online", u->online);
    act_buf_lit(b, "}");
}

proto_str proto_frag_user(const proto_user *u)
{
    act_buf_t b;
    jb_init(&b, 96);
    put_user(&b, u);
    return jb_finish(&b);
}

proto_str proto_frag_message(const proto_message *m)
{
    act_buf_t b;
    jb_init(&b, 192 + (m->content ? strlen(m->content) : 0));
    act_buf_lit(&b, "{\"id\":");
    jb_cstr(&b, m->id);
    jb_kv_i64(&b, "seq", m->seq);
    jb_kv_cstr(&b, "user_id", m->user_id);
    jb_kv_cstr(&b, "name", m->name);
    jb_kv_cstr(&b, "content", m->content);
    jb_kv_cstr(&b, "inserted_at", m->inserted_at);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

proto_str proto_frag_array(const proto_str *frags, size_t n)
{
    size_t total = 2 + n;
    for (size_t i = 0; i < n; i++)
        total += frags[i].len;
    act_buf_t b;
    jb_init(&b, total + 1);
    act_buf_lit(&b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            act_buf_lit(&b, ",");
        act_buf_put(&b, frags[i].ptr, frags[i].len);
    }
    act_buf_lit(&b, "]");
    return jb_finish(&b);
}

/* ------------------------------------------------------------------ frames */

static size_t frag_len(const proto_str *f)
{
    return f && f->ptr ? f->len : 2;
}

static size_t ref_len(const char *ref)
{
    return ref ? strlen(ref) : 0;
}

proto_str proto_enc_welcome(size_t total_users, size_t online_count)
{
    act_buf_t b;
    jb_init(&b, 96);
    act_buf_lit(&b, "{\"type\":\"welcome\",\"protocol\":");
    jb_i64(&b, PROTO_VERSION);
    jb_kv_size(&b, "total_users", total_users);
    jb_kv_size(&b, "online_count", online_count);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

proto_str proto_enc_joined(const proto_joined *j)
{
    act_buf_t b;
    jb_init(&b, frag_len(j->messages) + ref_len(j->ref)
                    + ref_len(j->token) + 256);
    act_buf_lit(&b, "{\"type\":\"joined\"");
    jb_ref(&b, j->ref);
    act_buf_lit(&b, ",\"user\":");
    put_user(&b, j->user);
    jb_kv_cstr(&b, "token", j->token);
    act_buf_lit(&b, ",\"messages\":");
    jb_frag(&b, j->messages, "[]");
    jb_kv_bool(&b, "more", j->more);
    jb_kv_size(&b, "total_users", j->total_users);
    jb_kv_size(&b, "online_count", j->online_count);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

proto_str proto_enc_sent(const char *ref, const proto_str *message)
{
    act_buf_t b;
    jb_init(&b, frag_len(message) + ref_len(ref) + 48);
    act_buf_lit(&b, "{\"type\":\"sent\"");
    jb_ref(&b, ref);
    act_buf_lit(&b, ",\"message\":");
    jb_frag(&b, message, "null");
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

/* A page reply: {"type":TYPE,"ref":..,FIELD:[items],"more":bool}; head is
 * `{"type":"history"`, field `,"messages":` (both JSON, written as given). */
static proto_str enc_page(const char *head, const char *field, const char *ref,
                          const proto_str *items, bool more)
{
    act_buf_t b;
    jb_init(&b, frag_len(items) + ref_len(ref) + 64);
    act_buf_puts(&b, head);
    jb_ref(&b, ref);
    act_buf_puts(&b, field);
    jb_frag(&b, items, "[]");
    jb_kv_bool(&b, "more", more);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

proto_str proto_enc_history(const char *ref, const proto_str *messages, bool more)
{
    return enc_page("{\"type\":\"history\"", ",\"messages\":", ref, messages, more);
}

proto_str proto_enc_users(const char *ref, const proto_str *users, bool more)
{
    return enc_page("{\"type\":\"users\"", ",\"users\":", ref, users, more);
}

/* Frames that are only a type and the echoed ref. */
static proto_str type_and_ref(const char *type_json, const char *ref)
{
    act_buf_t b;
    jb_init(&b, ref_len(ref) + 32);
    act_buf_lit(&b, "{\"type\":");
    act_buf_puts(&b, type_json);
    jb_ref(&b, ref);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

proto_str proto_enc_left(const char *ref)
{
    return type_and_ref("\"left\"", ref);
}

proto_str proto_enc_pong(const char *ref)
{
    return type_and_ref("\"pong\"", ref);
}

proto_str proto_enc_error(const char *ref, proto_code code, const char *message)
{
    act_buf_t b;
    if (!message)
        message = proto_code_message(code);
    jb_init(&b, ref_len(ref) + strlen(message) + 64);
    act_buf_lit(&b, "{\"type\":\"error\"");
    jb_ref(&b, ref);
    jb_kv_cstr(&b, "code", proto_code_str(code));
    jb_kv_cstr(&b, "message", message);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

proto_str proto_enc_message(const proto_str *message)
{
    act_buf_t b;
    jb_init(&b, frag_len(message) + 32);
    act_buf_lit(&b, "{\"type\":\"message\",\"message\":");
    jb_frag(&b, message, "null");
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

/* Sorting key for grouping metas by name while keeping their given order. */
typedef struct {
    const proto_meta *m;
    size_t idx;
} meta_ref;

static int name_cmp(const proto_meta *x, const proto_meta *y)
{
    return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

static int meta_cmp(const void *a, const void *b)
{
    const meta_ref *x = a, *y = b;
    int c = name_cmp(x->m, y->m);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void put_meta(act_buf_t *b, const proto_meta *m)
{
    act_buf_lit(b, "{\"user_id\":");
    jb_cstr(b, m->user_id);
    jb_kv_cstr(b, "name", m->name);
    jb_kv_cstr(b, "joined_at", m->joined_at);
    jb_kv_cstr(b, "phx_ref", m->phx_ref);
    act_buf_lit(b, "}");
}

/* {NAME:{"metas":[...]},...}: sorting groups equal names so that no key is
 * written twice (a JSON object with duplicate keys would lose metas). */
static void put_meta_map(act_buf_t *b, const proto_meta *metas, size_t n)
{
    meta_ref *order = n ? malloc(n * sizeof *order) : NULL;
    if (n && !order) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (meta_ref){&metas[i], i};
    if (n > 1)
        qsort(order, n, sizeof *order, meta_cmp);
    act_buf_lit(b, "{");
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || name_cmp(order[i].m, order[i - 1].m) != 0) {
            if (i)
                act_buf_lit(b, "]},");
            jb_cstr(b, order[i].m->name);
            act_buf_lit(b, ":{\"metas\":[");
        } else {
            act_buf_lit(b, ",");
        }
        put_meta(b, order[i].m);
    }
    if (n)
        act_buf_lit(b, "]}");
    act_buf_lit(b, "}");
    free(order);
}

proto_str proto_enc_presence_diff(const proto_meta *joins, size_t n_joins,
                                  const proto_meta *leaves, size_t n_leaves,
                                  size_t total_users, size_t online_count)
{
    act_buf_t b;
    jb_init(&b, 96 + (n_joins + n_leaves) * 200);
    act_buf_lit(&b, "{\"type\":\"presence_diff\",\"joins\":");
    put_meta_map(&b, joins, n_joins);
    act_buf_lit(&b, ",\"leaves\":");
    put_meta_map(&b, leaves, n_leaves);
    jb_kv_size(&b, "total_users", total_users);
    jb_kv_size(&b, "online_count", online_count);
    act_buf_lit(&b, "}");
    return jb_finish(&b);
}

/* The union of field ("joins" or "leaves") over d[0..n), names in byte
 * order as the encoder wrote them: take the smallest name at the n
 * cursors; a name equal to the last one taken gives its metas to it. */
static cJSON *merge_meta_maps(cJSON **d, size_t n, const char *field)
{
    cJSON *out = cJSON_CreateObject(), *last = NULL;
    cJSON **maps = calloc(n, sizeof *maps);
    if (!out || !maps)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        maps[i] = cJSON_GetObjectItemCaseSensitive(d[i], field);
        if (!cJSON_IsObject(maps[i]))
            goto fail;
    }
    for (;;) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (maps[i]->child && (best == n ||
                                   strcmp(maps[i]->child->string, maps[best]->child->string) < 0))
                best = i;
        if (best == n)
            break;
        cJSON *item = cJSON_DetachItemViaPointer(maps[best], maps[best]->child);
        cJSON *metas = cJSON_GetObjectItemCaseSensitive(item, "metas");
        if (!item->string || !cJSON_IsArray(metas)) {
            cJSON_Delete(item);
            goto fail;
        }
        if (last && !strcmp(last->string, item->string)) {
            cJSON *to = cJSON_GetObjectItemCaseSensitive(last, "metas");
            while (metas->child)
                cJSON_AddItemToArray(to, cJSON_DetachItemViaPointer(metas, metas->child));
            cJSON_Delete(item);
            continue;
        }
        if (!cJSON_AddItemToObject(out, item->string, item)) {
            cJSON_Delete(item);
            goto fail;
        }
        last = item;
    }
    free(maps);
    return out;
fail:
    free(maps);
    cJSON_Delete(out);
    return NULL;
}

proto_str proto_merge_presence_diffs(const proto_str *diffs, size_t n)
{
    proto_str res = {NULL, 0};
    cJSON **d = n ? calloc(n, sizeof *d) : NULL;
    cJSON *m = cJSON_CreateObject();
    if (!d || !m)
        goto done;
    for (size_t i = 0; i < n; i++)
        if (!(d[i] = cJSON_ParseWithLength(diffs[i].ptr, diffs[i].len)))
            goto done;
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(d[n - 1], "total_users");
    const cJSON *online = cJSON_GetObjectItemCaseSensitive(d[n - 1], "online_count");
    if (!cJSON_IsNumber(total) || !cJSON_IsNumber(online) ||
        !cJSON_AddStringToObject(m, "type", "presence_diff"))
        goto done;
    const char *fields[] = {"joins", "leaves"};
    for (size_t f = 0; f < 2; f++) {
        cJSON *map = merge_meta_maps(d, n, fields[f]);
        if (!map || !cJSON_AddItemToObject(m, fields[f], map)) {
            cJSON_Delete(map);
            goto done;
        }
    }
    if (!cJSON_AddNumberToObject(m, "total_users", total->valuedouble) ||
        !cJSON_AddNumberToObject(m, "online_count", online->valuedouble))
        goto done;
    res.ptr = cJSON_PrintUnformatted(m); /* cJSON's default hooks: malloc */
    res.len = res.ptr ? strlen(res.ptr) : 0;
done:
    for (size_t i = 0; d && i < n; i++)
        cJSON_Delete(d[i]);
    free(d);
    cJSON_Delete(m);
    return res;
}

/* ------------------------------------------------------------------ time */

void proto_format_time(int64_t unix_us, char out[PROTO_TIME_LEN + 1])
{
    int64_t secs = unix_us / 1000000, us = unix_us % 1000000;
    if (us < 0) { /* floor division, so times before 1970 stay well-formed */
        us += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1000 || tm.tm_year + 1900 > 9999) {
        memcpy(out, "1970-01-01T00:00:00.000000Z", PROTO_TIME_LEN + 1);
        return;
    }
    size_t n = strftime(out, PROTO_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, PROTO_TIME_LEN + 1 - n, ".%06dZ", (int)us);
}
