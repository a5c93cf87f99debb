/* test_protocol.c: Check suite for the pure protocol layer (app/protocol.c) and
 * its Unicode helpers (app/unicode.c).
 *
 * Decoding is tested on every bad_request path and on the ref echo rules;
 * validation on names and content from many scripts and hostile inputs; the
 * UTF-8 validator on the classic vectors; and every encoder by parsing its
 * output back with cJSON, using strings that need escaping. Frames are handed
 * to proto_decode in exact-size heap copies, without a terminating NUL, so
 * that AddressSanitizer catches any read past the end.
 */
#include <check.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/check_main.h"
#include "protocol.h"
#include "unicode.h"

/* ------------------------------------------------------------------ helpers */

static proto_code decode_n(const char *text, size_t len, proto_request *req)
{
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, text, len);
    proto_code c = proto_decode(copy, len, req);
    free(copy);
    return c;
}

static proto_code decode(const char *text, proto_request *req)
{
    return decode_n(text, strlen(text), req);
}

/* Asserts text is bad_request and returns whether the error would carry a ref. */
static void expect_bad(const char *text, bool with_ref)
{
    proto_request req;
    proto_code c = decode(text, &req);
    ck_assert_msg(c == PROTO_BAD_REQUEST, "expected bad_request for %s", text);
    ck_assert_msg(req.why[0] != '\0', "no reason for %s", text);
    ck_assert_int_eq(req.type, PROTO_REQ_NONE);
    ck_assert_msg((req.ref != NULL) == with_ref, "ref %s for %s", req.ref ? req.ref : "(none)",
                  text);
    proto_request_free(&req);
}

static void expect_ok(const char *text, proto_req_type type)
{
    proto_request req;
    proto_code c = decode(text, &req);
    ck_assert_msg(c == PROTO_OK, "expected ok for %s: %s", text, req.why);
    ck_assert_int_eq(req.type, type);
    proto_request_free(&req);
}

/* Parses an encoded frame, asserting it is a JSON object of the given type. */
static cJSON *parse_frame(proto_str f, const char *type)
{
    ck_assert_ptr_nonnull(f.ptr);
    ck_assert_uint_eq(strlen(f.ptr), f.len);
    ck_assert(utf8_valid(f.ptr, f.len));
    cJSON *o = cJSON_ParseWithLength(f.ptr, f.len);
    ck_assert_msg(o != NULL, "unparseable: %s", f.ptr);
    ck_assert(cJSON_IsObject(o));
    if (type) {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
        ck_assert(cJSON_IsString(t));
        ck_assert_str_eq(t->valuestring, type);
    }
    return o;
}

static cJSON *get(const cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(v != NULL, "missing %s", key);
    return v;
}

static const char *sget(const cJSON *o, const char *key)
{
    cJSON *v = get(o, key);
    ck_assert_msg(cJSON_IsString(v), "%s not a string", key);
    return v->valuestring;
}

static double nget(const cJSON *o, const char *key)
{
    cJSON *v = get(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "%s not a number", key);
    return v->valuedouble;
}

static bool bget(const cJSON *o, const char *key)
{
    cJSON *v = get(o, key);
    ck_assert_msg(cJSON_IsBool(v), "%s not a bool", key);
    return cJSON_IsTrue(v);
}

static bool has(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key) != NULL;
}

/* A string holding every character that needs care in JSON, plus emoji,
 * non-ASCII and HTML (no NUL: the records are C strings). */
static const char AWKWARD[] = "q\"uo\\te/\n\r\t\b\f\x01\x1f\x7f </script><b>&amp; \xC3\xA9 "
                              "\xF0\x9F\x98\x80 \xE5\x90\x8D\xE5\x89\x8D \xE2\x80\xA8";

#define UUID_A "0b5c7b5e-3f3a-4c2e-9b1a-1d2e3f4a5b6c"
#define UUID_B "a0e1c2d3-b4f5-4a6b-8c7d-9e0f1a2b3c4d"
#define TIME_A "2026-11-24T01:02:03.123456Z"

static proto_message sample_message(int64_t seq, const char *content)
{
    proto_message m = {.seq = seq, .name = "Zo\xC3\xAB", .content = content};
    strcpy(m.id, UUID_A);
    strcpy(m.user_id, UUID_B);
    strcpy(m.inserted_at, TIME_A);
    return m;
}

static proto_user sample_user(const char *name, bool online)
{
    proto_user u = {.name = name, .online = online};
    strcpy(u.id, UUID_B);
    return u;
}

static void check_message(const cJSON *m, int64_t seq, const char *content)
{
    ck_assert_str_eq(sget(m, "id"), UUID_A);
    ck_assert(nget(m, "seq") == (double)seq);
    ck_assert_str_eq(sget(m, "user_id"), UUID_B);
    ck_assert_str_eq(sget(m, "name"), "Zo\xC3\xAB");
    ck_assert_str_eq(sget(m, "content"), content);
    ck_assert_str_eq(sget(m, "inserted_at"), TIME_A);
}

/* ------------------------------------------------------------------ decode: errors */

START_TEST(decode_not_json)
{
    expect_bad("", false);
    expect_bad("   ", false);
    expect_bad("{", false);
    expect_bad("nope", false);
    expect_bad("{'type':'ping'}", false);
    expect_bad("{\"type\":\"ping\",}", false);
    expect_bad("{\"type\":\"ping\"} x", false);
    expect_bad("{\"type\":\"ping\"}{}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":+1}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":01}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":.5}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":1.}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":-}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":1e}", false);
    expect_bad("{\"type\":\"pi\x01ng\"}", false);   /* raw control char in a string */
    expect_bad("{\"type\":\"send\",\"content\":\"a\tb\"}", false);
    expect_bad("{\x01\"type\":\"ping\"}", false);   /* cJSON would skip it as space */
    expect_bad("\xEF\xBB\xBF{\"type\":\"ping\"}", false); /* BOM */
    expect_bad("{\"type\":\"ping\",\"ref\":\"\\uD800\"}", false); /* lone surrogate */
    expect_bad("{\"type\":\"ping\",\"ref\":\"\\x\"}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":\"abc", false);
    expect_bad("{\"type\":\"ping\",\"ref\":\"abc\\", false);
    expect_bad("{\"type\":\"ping\",\"ref\":tru}", false);
    expect_bad("{\"type\":\"ping\" /* c */}", false);
    expect_bad("{\"type\":\"ping\" \"ref\":1}", false);  /* missing comma */
    expect_bad("{\"type\" \"ping\"}", false);             /* missing colon */
    expect_bad("{\"type\":\"ping\",\"ref\":True}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":nul}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":[1,]}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":1true}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":0x10}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":NaN}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":Infinity}", false);
    expect_bad("{\"type\",\"ping\"}", false);
    expect_bad("{,}", false);
    expect_bad("{type:\"ping\"}", false);
    /* Not UTF-8, even though the transport should have caught it. */
    expect_bad("{\"type\":\"ping\",\"ref\":\"\xC0\x80\"}", false);
    /* Trailing JSON white space is fine. */
    expect_ok(" \t\r\n{\"type\":\"ping\"} \t\r\n", PROTO_REQ_PING);
}
END_TEST

START_TEST(decode_embedded_nul_byte)
{
    static const char frame[] = "{\"type\":\"ping\"}\0";
    proto_request req;
    ck_assert_int_eq(decode_n(frame, sizeof frame - 1, &req), PROTO_BAD_REQUEST);
    proto_request_free(&req);
    static const char inner[] = "{\"type\":\"pi\0ng\"}";
    ck_assert_int_eq(decode_n(inner, sizeof inner - 1, &req), PROTO_BAD_REQUEST);
    proto_request_free(&req);
}
END_TEST

START_TEST(decode_too_large_and_deep)
{
    size_t n = PROTO_MAX_FRAME + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    memcpy(big, "{\"type\":\"ping\"}", 15);
    proto_request req;
    ck_assert_int_eq(decode_n(big, n, &req), PROTO_BAD_REQUEST);
    proto_request_free(&req);
    ck_assert_int_eq(decode_n(big, PROTO_MAX_FRAME, &req), PROTO_OK);
    proto_request_free(&req);
    /* Nesting deeper than cJSON allows must fail cleanly, not crash. */
    size_t depth = 5000;
    memset(big, '[', depth);
    memset(big + depth, ']', depth);
    ck_assert_int_eq(decode_n(big, 2 * depth, &req), PROTO_BAD_REQUEST);
    proto_request_free(&req);
    free(big);
}
END_TEST

START_TEST(decode_not_object)
{
    expect_bad("[]", false);
    expect_bad("[{\"type\":\"ping\",\"ref\":1}]", false);
    expect_bad("\"ping\"", false);
    expect_bad("1", false);
    expect_bad("null", false);
    expect_bad("true", false);
}
END_TEST

START_TEST(decode_type_errors)
{
    expect_bad("{}", false);
    expect_bad("{\"ref\":1}", true);
    expect_bad("{\"type\":null,\"ref\":1}", true);
    expect_bad("{\"type\":1,\"ref\":1}", true);
    expect_bad("{\"type\":[\"ping\"],\"ref\":1}", true);
    expect_bad("{\"type\":\"PING\",\"ref\":1}", true);
    expect_bad("{\"type\":\"pong\",\"ref\":1}", true);
    expect_bad("{\"type\":\"welcome\"}", false);
    expect_bad("{\"type\":\"ping \",\"ref\":\"r\"}", true);
    expect_bad("{\"type\":\"\",\"ref\":\"r\"}", true);
    expect_bad("{\"type\":\"ping\\u0000\"}", false);
    expect_bad("{\"Type\":\"ping\"}", false); /* keys are case-sensitive */
    expect_bad("{\"type\\u0000\":\"ping\"}", false);
    expect_ok("{\"typ\\u0065\":\"p\\u0069ng\"}", PROTO_REQ_PING);
    expect_ok("{\"type\":\"ping\",\"extra\":{\"x\":[1,2]},\"ref\":3}", PROTO_REQ_PING);
    expect_ok("{\"type\":\"leave\"}", PROTO_REQ_LEAVE);
}
END_TEST

START_TEST(decode_join_fields)
{
    expect_bad("{\"type\":\"join\",\"ref\":1}", true);
    expect_bad("{\"type\":\"join\",\"ref\":1,\"name\":null}", true);
    expect_bad("{\"type\":\"join\",\"ref\":1,\"name\":42}", true);
    expect_bad("{\"type\":\"join\",\"ref\":1,\"name\":[\"a\"]}", true);
    expect_bad("{\"type\":\"join\",\"ref\":1,\"name\":\"a\",\"token\":5}", true);
    expect_bad("{\"type\":\"join\",\"ref\":1,\"name\":\"a\",\"token\":{}}", true);

    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"join\",\"ref\":1,\"name\":\"  bob \"}", &req), PROTO_OK);
    ck_assert_int_eq(req.type, PROTO_REQ_JOIN);
    ck_assert_str_eq(req.name.ptr, "  bob ");
    ck_assert_uint_eq(req.name.len, 6);
    ck_assert_ptr_null(req.token.ptr);
    ck_assert_str_eq(req.why, "");
    proto_request_free(&req);

    ck_assert_int_eq(decode("{\"type\":\"join\",\"name\":\"bob\",\"token\":null}", &req), PROTO_OK);
    ck_assert_ptr_null(req.token.ptr);
    proto_request_free(&req);

    ck_assert_int_eq(decode("{\"type\":\"join\",\"name\":\"b\",\"token\":\"t0k\\\"en\"}", &req),
                     PROTO_OK);
    ck_assert_str_eq(req.token.ptr, "t0k\"en");
    proto_request_free(&req);

    /* An empty or invalid name is not bad_request: it is name_invalid later. */
    ck_assert_int_eq(decode("{\"type\":\"join\",\"name\":\"\"}", &req), PROTO_OK);
    ck_assert_int_eq(proto_canon_name(&req.name), PROTO_NAME_INVALID);
    proto_request_free(&req);
}
END_TEST

START_TEST(decode_send_fields)
{
    expect_bad("{\"type\":\"send\",\"ref\":\"s\"}", true);
    expect_bad("{\"type\":\"send\",\"ref\":\"s\",\"content\":7}", true);
    expect_bad("{\"type\":\"send\",\"ref\":\"s\",\"content\":null}", true);
    expect_bad("{\"type\":\"send\",\"ref\":\"s\",\"content\":true}", true);

    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"send\",\"content\":\"a\\u0000b\\n\"}", &req), PROTO_OK);
    ck_assert_uint_eq(req.content.len, 4);
    ck_assert(memcmp(req.content.ptr, "a\0b\n", 4) == 0);
    ck_assert_int_eq(proto_canon_content(&req.content), PROTO_CONTENT_INVALID);
    proto_request_free(&req);

    /* "\\u0000" is a backslash and "u0000", not a NUL. */
    ck_assert_int_eq(decode("{\"type\":\"send\",\"content\":\"\\\\u0000\"}", &req), PROTO_OK);
    ck_assert_str_eq(req.content.ptr, "\\u0000");
    ck_assert_int_eq(proto_canon_content(&req.content), PROTO_OK);
    proto_request_free(&req);

    ck_assert_int_eq(decode("{\"type\":\"send\",\"content\":\"\\ud83d\\ude00 \\u00e9\"}", &req),
                     PROTO_OK);
    ck_assert_str_eq(req.content.ptr, "\xF0\x9F\x98\x80 \xC3\xA9");
    proto_request_free(&req);
}
END_TEST

static char *repeat(const char *unit, size_t times)
{
    size_t n = strlen(unit);
    char *s = malloc(n * times + 1);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * n, unit, n);
    s[n * times] = '\0';
    return s;
}

/* A string field at its bound: fmt (a request; its first %s is where a
 * "ref" goes, its second the field's value) decodes with unit repeated max
 * times, into req (the caller checks the field and frees req), and is
 * bad_request, with the ref, at max + 1. */
static void decode_at_bound(const char *fmt, const char *unit, size_t max, proto_request *req)
{
    char *at = repeat(unit, max), *over = repeat(unit, max + 1);
    char text[512];
    snprintf(text, sizeof text, fmt, "", at);
    ck_assert_int_eq(decode(text, req), PROTO_OK);
    snprintf(text, sizeof text, fmt, ",\"ref\":1", over);
    expect_bad(text, true);
    free(at);
    free(over);
}

START_TEST(decode_users_fields)
{
    expect_bad("{\"type\":\"users\",\"ref\":1}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true}", true);        /* no limit */
    expect_bad("{\"type\":\"users\",\"ref\":1,\"limit\":5}", true);            /* no online */
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":1,\"limit\":5}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":\"true\",\"limit\":5}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true,\"limit\":0}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true,\"limit\":501}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true,\"limit\":2.5}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true,\"limit\":5,\"after\":3}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true,\"limit\":5,\"prefix\":\"\"}", true);
    expect_bad("{\"type\":\"users\",\"ref\":1,\"online\":true,\"limit\":5,\"prefix\":[]}", true);

    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"users\",\"online\":false,\"limit\":500,\"after\":null,"
                            "\"prefix\":null}", &req), PROTO_OK);
    ck_assert_int_eq(req.type, PROTO_REQ_USERS);
    ck_assert(!req.online);
    ck_assert_int_eq(req.limit, 500);
    ck_assert_ptr_null(req.after_name.ptr);
    ck_assert_ptr_null(req.prefix.ptr);
    proto_request_free(&req);

    /* after: any string up to 128 bytes, a NUL included; 129 is refused */
    decode_at_bound("{\"type\":\"users\"%s,\"online\":true,\"limit\":1,\"after\":\"%s\"}", "z", 128,
                    &req);
    ck_assert_uint_eq(req.after_name.len, 128);
    proto_request_free(&req);
    ck_assert_int_eq(decode("{\"type\":\"users\",\"online\":true,\"limit\":1,\"after\":\"a\\u0000 \"}",
                            &req), PROTO_OK);
    ck_assert_uint_eq(req.after_name.len, 3);
    ck_assert(memcmp(req.after_name.ptr, "a\0 ", 3) == 0);
    proto_request_free(&req);

    /* prefix: 1 to 32 code points, kept exactly (no trimming) */
    decode_at_bound("{\"type\":\"users\"%s,\"online\":true,\"limit\":1,\"prefix\":\"%s\"}",
                    "\xE5\x90\x8D", 32, &req);
    ck_assert_uint_eq(req.prefix.len, 96);
    proto_request_free(&req);
    ck_assert_int_eq(decode("{\"type\":\"users\",\"online\":true,\"limit\":1,\"prefix\":\" A\"}", &req),
                     PROTO_OK);
    ck_assert_str_eq(req.prefix.ptr, " A");
    proto_request_free(&req);
}
END_TEST

START_TEST(decode_client_id)
{
    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"send\",\"content\":\"hi\"}", &req), PROTO_OK);
    ck_assert_ptr_null(req.client_id.ptr);
    proto_request_free(&req);
    ck_assert_int_eq(decode("{\"type\":\"send\",\"content\":\"hi\",\"client_id\":null}", &req), PROTO_OK);
    ck_assert_ptr_null(req.client_id.ptr);
    proto_request_free(&req);
    ck_assert_int_eq(decode("{\"type\":\"send\",\"content\":\"hi\",\"client_id\":\"aZ09_-\"}", &req),
                     PROTO_OK);
    ck_assert_str_eq(req.client_id.ptr, "aZ09_-");
    proto_request_free(&req);

    decode_at_bound("{\"type\":\"send\"%s,\"content\":\"hi\",\"client_id\":\"%s\"}", "x", 64, &req);
    proto_request_free(&req);
    expect_bad("{\"type\":\"send\",\"ref\":1,\"content\":\"hi\",\"client_id\":\"\"}", true);
    expect_bad("{\"type\":\"send\",\"ref\":1,\"content\":\"hi\",\"client_id\":\"a b\"}", true);
    expect_bad("{\"type\":\"send\",\"ref\":1,\"content\":\"hi\",\"client_id\":\"a.b\"}", true);
    expect_bad("{\"type\":\"send\",\"ref\":1,\"content\":\"hi\",\"client_id\":\"\\u00e9\"}", true);
    expect_bad("{\"type\":\"send\",\"ref\":1,\"content\":\"hi\",\"client_id\":7}", true);
    /* bad_request wins over content_invalid: a bad client_id with empty content */
    expect_bad("{\"type\":\"send\",\"ref\":1,\"content\":\"\",\"client_id\":\"!\"}", true);
}
END_TEST

START_TEST(decode_history_fields)
{
    expect_bad("{\"type\":\"history\",\"ref\":1}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"limit\":10}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":\"10\",\"limit\":10}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10,\"limit\":\"10\"}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":1.5,\"limit\":10}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":null,\"limit\":10}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":1e300,\"limit\":10}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10,\"limit\":0}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10,\"limit\":501}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10,\"limit\":-1}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10,\"limit\":2.5}", true);
    expect_bad("{\"type\":\"history\",\"ref\":1,\"before\":10,\"limit\":1e999}", true);

    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"history\",\"ref\":1,\"before\":123456789012,\"limit\":1}",
                            &req),
                     PROTO_OK);
    ck_assert_int_eq(req.type, PROTO_REQ_HISTORY);
    ck_assert_int_eq(req.before, 123456789012LL);
    ck_assert_int_eq(req.limit, 1);
    proto_request_free(&req);
    ck_assert_int_eq(decode("{\"type\":\"history\",\"before\":5.0,\"limit\":500}", &req), PROTO_OK);
    ck_assert_int_eq(req.before, 5);
    ck_assert_int_eq(req.limit, 500);
    proto_request_free(&req);
}
END_TEST

START_TEST(decode_catch_up_fields)
{
    expect_bad("{\"type\":\"catch_up\",\"ref\":1}", true);
    expect_bad("{\"type\":\"catch_up\",\"ref\":1,\"after\":\"3\"}", true);
    expect_bad("{\"type\":\"catch_up\",\"ref\":1,\"after\":3.25}", true);
    expect_bad("{\"type\":\"catch_up\",\"ref\":1,\"after\":[3]}", true);

    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"catch_up\",\"ref\":\"c\",\"after\":0}", &req), PROTO_OK);
    ck_assert_int_eq(req.type, PROTO_REQ_CATCH_UP);
    ck_assert_int_eq(req.after, 0);
    ck_assert_str_eq(req.ref, "\"c\"");
    proto_request_free(&req);
    ck_assert_int_eq(decode("{\"type\":\"catch_up\",\"after\":9007199254740992}", &req), PROTO_OK);
    ck_assert_int_eq(req.after, 9007199254740992LL);
    proto_request_free(&req);
}
END_TEST

/* ------------------------------------------------------------------ decode: ref */

static void expect_ref(const char *frame, const char *ref)
{
    proto_request req;
    ck_assert_int_eq(decode(frame, &req), PROTO_OK);
    if (!ref) {
        ck_assert_ptr_null(req.ref);
    } else {
        ck_assert_ptr_nonnull(req.ref);
        ck_assert_str_eq(req.ref, ref);
    }
    proto_request_free(&req);
}

START_TEST(ref_echo_forms)
{
    expect_ref("{\"type\":\"ping\"}", NULL);
    expect_ref("{\"type\":\"ping\",\"ref\":1}", "1");
    expect_ref("{\"type\":\"ping\",\"ref\":0}", "0");
    expect_ref("{\"type\":\"ping\",\"ref\":-17}", "-17");
    expect_ref("{\"type\":\"ping\",\"ref\":1.5}", "1.5");
    expect_ref("{\"type\":\"ping\",\"ref\":0.1}", "0.1");
    expect_ref("{\"type\":\"ping\",\"ref\":1e3}", "1000");
    expect_ref("{\"type\":\"ping\",\"ref\":1E+2}", "100");
    expect_ref("{\"type\":\"ping\",\"ref\":-0}", "0");
    expect_ref("{\"type\":\"ping\",\"ref\":25e-1}", "2.5");
    expect_ref("{\"type\":\"ping\",\"ref\":9007199254740993}", "9007199254740992");
    expect_ref("{\"type\":\"ping\",\"ref\":1e999}", "1e999");
    expect_ref("{\"type\":\"ping\",\"ref\":-1e999}", "-1e999");
    expect_ref("{\"type\":\"ping\",\"ref\":\"\"}", "\"\"");
    expect_ref("{\"type\":\"ping\",\"ref\":\"abc\"}", "\"abc\"");
    expect_ref("{\"type\":\"ping\",\"ref\":\"q\\\"b\\\\n\\n\\u0001\\u00e9\\ud83d\\ude00\"}",
               "\"q\\\"b\\\\n\\n\\u0001\xC3\xA9\xF0\x9F\x98\x80\"");
    expect_ref("{\"type\":\"ping\",\"ref\":\"a\\u0000b\"}", "\"a\\u0000b\"");
    expect_ref("{\"ref\":\"last\",\"type\":\"ping\"}", "\"last\"");
}
END_TEST

START_TEST(ref_numbers_round_trip)
{
    static const char *nums[] = {"3.141592653589793", "1e-300", "-2.5e+200", "123456789.125",
                                 "5e-324", "1.7976931348623157e308"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        char frame[128];
        snprintf(frame, sizeof frame, "{\"type\":\"ping\",\"ref\":%s}", nums[i]);
        proto_request req;
        ck_assert_int_eq(decode(frame, &req), PROTO_OK);
        ck_assert_ptr_nonnull(req.ref);
        ck_assert_msg(strtod(req.ref, NULL) == strtod(nums[i], NULL), "%s -> %s", nums[i],
                      req.ref);
        proto_request_free(&req);
    }
}
END_TEST

START_TEST(ref_invalid_gives_no_ref)
{
    expect_bad("{\"type\":\"ping\",\"ref\":null}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":true}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":false}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":[1]}", false);
    expect_bad("{\"type\":\"ping\",\"ref\":{\"a\":1}}", false);
    /* An invalid ref wins over other faults: still no ref. */
    expect_bad("{\"type\":\"nope\",\"ref\":null}", false);
    expect_bad("{\"type\":\"join\",\"ref\":[]}", false);
    /* A usable ref is echoed on bad_request of another field. */
    expect_bad("{\"type\":\"nope\",\"ref\":7}", true);
    expect_bad("{\"type\":\"send\",\"ref\":\"x\",\"content\":1}", true);

    proto_request req;
    ck_assert_int_eq(decode("{\"type\":\"history\",\"ref\":42,\"before\":1,\"limit\":0}", &req),
                     PROTO_BAD_REQUEST);
    ck_assert_str_eq(req.ref, "42");
    proto_str e = proto_enc_error(req.ref, PROTO_BAD_REQUEST, req.why);
    cJSON *o = parse_frame(e, "error");
    ck_assert(nget(o, "ref") == 42);
    ck_assert_str_eq(sget(o, "code"), "bad_request");
    ck_assert_str_eq(sget(o, "message"), req.why);
    cJSON_Delete(o);
    free(e.ptr);
    proto_request_free(&req);
    proto_request_free(&req); /* idempotent */
}
END_TEST

/* ------------------------------------------------------------------ names */

static void expect_name(const char *in, const char *canonical)
{
    proto_str s = {strdup(in), strlen(in)};
    proto_code c = proto_canon_name(&s);
    if (canonical) {
        ck_assert_msg(c == PROTO_OK, "name \"%s\" rejected", in);
        ck_assert_str_eq(s.ptr, canonical);
        ck_assert_uint_eq(s.len, strlen(canonical));
    } else {
        ck_assert_msg(c == PROTO_NAME_INVALID, "name \"%s\" accepted", in);
        ck_assert_str_eq(s.ptr, in); /* untouched on failure */
    }
    free(s.ptr);
}

START_TEST(name_valid)
{
    expect_name("alice", "alice");
    expect_name("a", "a");
    expect_name("Zo\xC3\xAB", "Zo\xC3\xAB");                       /* Zoë */
    expect_name("\xE5\x90\x8D\xE5\x89\x8D", "\xE5\x90\x8D\xE5\x89\x8D"); /* 名前 */
    expect_name("\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",
                "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7"); /* مرحبا */
    expect_name("\xCE\xA9\xCE\xBC\xCE\xAD\xCE\xB3\xCE\xB1", "\xCE\xA9\xCE\xBC\xCE\xAD\xCE\xB3\xCE\xB1");
    expect_name("\xD9\xA1\xD9\xA2\xD9\xA3", "\xD9\xA1\xD9\xA2\xD9\xA3"); /* Arabic-Indic 123 */
    expect_name("\xE0\xA5\xA6\xE0\xA5\xA7", "\xE0\xA5\xA6\xE0\xA5\xA7"); /* Devanagari 01 */
    expect_name("x\xF0\x9D\x9F\x98", "x\xF0\x9D\x9F\x98");               /* math digit 0 (Nd) */
    expect_name("a.b-c_d 9", "a.b-c_d 9");
    expect_name("Mary Jane Doe", "Mary Jane Doe");
    expect_name("...", "...");
    expect_name("  bob  ", "bob");
    expect_name("\t\n\v\f\r bob \r\n", "bob");
    expect_name("\xE3\x80\x80" "bob" "\xE3\x80\x80", "bob");             /* U+3000 */
    expect_name("\xC2\xA0" "bob" "\xC2\x85", "bob");                      /* U+00A0, U+0085 */
    expect_name("\xE2\x80\x83\xE2\x80\xA8 a b \xE1\x9A\x80", "a b");    /* U+2003 U+2028 U+1680 */
    char *n32 = repeat("a", 32);
    expect_name(n32, n32);
    free(n32);
    char *cjk32 = repeat("\xE5\x90\x8D", 32);
    expect_name(cjk32, cjk32);
    free(cjk32);
    char *padded = malloc(64);
    snprintf(padded, 64, "   %s   ", "abcdefghijklmnopqrstuvwxyz012345");
    expect_name(padded, "abcdefghijklmnopqrstuvwxyz012345");
    free(padded);
}
END_TEST

START_TEST(name_invalid)
{
    expect_name("", NULL);
    expect_name("   ", NULL);
    expect_name("\xE3\x80\x80\xC2\xA0\t", NULL);
    char *n33 = repeat("a", 33);
    expect_name(n33, NULL);
    free(n33);
    char *cjk33 = repeat("\xE5\x90\x8D", 33);
    expect_name(cjk33, NULL);
    free(cjk33);
    expect_name("a  b", NULL);
    expect_name("a b  c", NULL);
    expect_name("a\tb", NULL);
    expect_name("a\nb", NULL);
    expect_name("a\xE3\x80\x80" "b", NULL); /* inner U+3000 */
    expect_name("a\xC2\xA0" "b", NULL);     /* inner no-break space */
    expect_name("a\xE2\x80\x8B" "b", NULL); /* zero-width space (Cf) */
    expect_name("<script>alert(1)</script>", NULL);
    expect_name("<b>", NULL);
    expect_name("a&b", NULL);
    expect_name("bob!", NULL);
    expect_name("o'brien", NULL);
    expect_name("a\"b", NULL);
    expect_name("a/b", NULL);
    expect_name("a\x01" "b", NULL);
    expect_name("a\x7f" "b", NULL);
    expect_name("\x1b[31mred", NULL);
    expect_name("\xF0\x9F\x98\x80", NULL);  /* emoji (So) */
    expect_name("\xE2\x85\xAB", NULL);      /* Roman numeral twelve (Nl) */
    expect_name("x\xC2\xB2", NULL);         /* superscript two (No) */
    expect_name("e\xCC\x81", NULL);         /* combining acute (Mn) */
    expect_name("a\xE2\x80\xAE" "b", NULL); /* right-to-left override */
    expect_name("\xC3\x28", NULL);          /* not UTF-8 */

    proto_str nul = {malloc(4), 3};
    memcpy(nul.ptr, "a\0b", 4);
    ck_assert_int_eq(proto_canon_name(&nul), PROTO_NAME_INVALID);
    free(nul.ptr);
    proto_str absent = {NULL, 0};
    ck_assert_int_eq(proto_canon_name(&absent), PROTO_NAME_INVALID);
}
END_TEST

/* ------------------------------------------------------------------ content */

static proto_code content_code(const char *s, size_t n, char **canonical)
{
    proto_str c = {malloc(n + 1), n};
    memcpy(c.ptr, s, n);
    c.ptr[n] = '\0';
    proto_code code = proto_canon_content(&c);
    if (canonical)
        *canonical = c.ptr;
    else
        free(c.ptr);
    return code;
}

/* Names that render blank (issue 7 item 11): refused when every character
 * is invisible; a visible character among them is enough. */
START_TEST(name_invisible)
{
    expect_name("\xE3\x85\xA4", NULL);                 /* U+3164 HANGUL FILLER (Lo) */
    expect_name("\xE1\x85\x9F", NULL);                 /* U+115F (Lo) */
    expect_name("\xE1\x85\xA0\xE1\x85\xA0", NULL);     /* U+1160 x2 */
    expect_name("\xEF\xBE\xA0", NULL);                 /* U+FFA0 halfwidth filler */
    expect_name("\xE3\x85\xA4 \xE3\x85\xA4", NULL);    /* fillers around a space */
    expect_name("\xE2\x80\x8B", NULL);                 /* U+200B */
    expect_name("\xE2\x80\xAE" "abc", NULL);           /* U+202E RLO: not a name char */
    expect_name("\xE2\x81\xA6" "a", NULL);             /* U+2066 LRI */
    expect_name("a\xE3\x85\xA4", "a\xE3\x85\xA4");     /* one visible letter: kept */
    expect_name("\xE3\x85\xA4.", "\xE3\x85\xA4.");     /* '.' is visible */
}
END_TEST

START_TEST(content_rules)
{
    char *out;
    ck_assert_int_eq(content_code("hi", 2, NULL), PROTO_OK);
    ck_assert_int_eq(content_code("  hi there \n\t", 13, &out), PROTO_OK);
    ck_assert_str_eq(out, "hi there");
    free(out);
    ck_assert_int_eq(content_code("line1\n\nline2", 12, &out), PROTO_OK);
    ck_assert_str_eq(out, "line1\n\nline2");
    free(out);
    ck_assert_int_eq(content_code("\xE3\x80\x80x\xE3\x80\x80", 7, &out), PROTO_OK);
    ck_assert_str_eq(out, "x");
    free(out);
    ck_assert_int_eq(content_code("<script>&</script>", 18, NULL), PROTO_OK);
    ck_assert_int_eq(content_code("a\x01" "b", 3, NULL), PROTO_OK);
    ck_assert_int_eq(content_code("", 0, NULL), PROTO_CONTENT_INVALID);
    ck_assert_int_eq(content_code(" \n\t\r\xE3\x80\x80\xC2\xA0", 9, NULL), PROTO_CONTENT_INVALID);
    ck_assert_int_eq(content_code("\0", 1, NULL), PROTO_CONTENT_INVALID);
    ck_assert_int_eq(content_code("a\0b", 3, NULL), PROTO_CONTENT_INVALID);
    ck_assert_int_eq(content_code(" a \0", 4, NULL), PROTO_CONTENT_INVALID);
    ck_assert_int_eq(content_code("\xED\xA0\x80", 3, NULL), PROTO_CONTENT_INVALID);
    proto_str absent = {NULL, 0};
    ck_assert_int_eq(proto_canon_content(&absent), PROTO_CONTENT_INVALID);
}
END_TEST

START_TEST(content_limits)
{
    static const char *units[] = {"a", "\xC3\xA9", "\xE5\x90\x8D", "\xF0\x9F\x98\x80"};
    for (size_t u = 0; u < 4; u++) {
        char *s2000 = repeat(units[u], 2000), *s2001 = repeat(units[u], 2001);
        ck_assert_int_eq(content_code(s2000, strlen(s2000), NULL), PROTO_OK);
        ck_assert_int_eq(content_code(s2001, strlen(s2001), NULL), PROTO_CONTENT_INVALID);
        free(s2000);
        free(s2001);
    }
    /* Surrounding white space does not count. */
    char *s = repeat("b", 2000);
    size_t n = strlen(s);
    char *padded = malloc(n + 10);
    memcpy(padded, "  \n", 3);
    memcpy(padded + 3, s, n);
    memcpy(padded + 3 + n, "\xE3\x80\x80 ", 4);
    char *out;
    ck_assert_int_eq(content_code(padded, n + 7, &out), PROTO_OK);
    ck_assert_str_eq(out, s);
    free(out);
    free(padded);
    free(s);
}
END_TEST

/* ------------------------------------------------------------------ UTF-8 and classes */

#define VALID(lit) ck_assert_msg(utf8_valid(lit, sizeof(lit) - 1), "rejected %s", #lit)
#define INVALID(lit) ck_assert_msg(!utf8_valid(lit, sizeof(lit) - 1), "accepted %s", #lit)

START_TEST(utf8_vectors)
{
    VALID("");
    VALID("plain ascii");
    VALID("\0");
    VALID("\x7f");
    VALID("\xC2\x80");         /* U+0080 */
    VALID("\xC3\xA9");         /* é */
    VALID("\xDF\xBF");         /* U+07FF */
    VALID("\xE0\xA0\x80");     /* U+0800 */
    VALID("\xE2\x82\xAC");     /* € */
    VALID("\xED\x9F\xBF");     /* U+D7FF */
    VALID("\xEE\x80\x80");     /* U+E000 */
    VALID("\xEF\xBF\xBF");     /* U+FFFF */
    VALID("\xF0\x90\x80\x80"); /* U+10000 */
    VALID("\xF0\x9F\x98\x80"); /* 😀 */
    VALID("\xF4\x8F\xBF\xBF"); /* U+10FFFF */

    INVALID("\xC0\x80");         /* overlong NUL */
    INVALID("\xC0\xAF");         /* overlong '/' */
    INVALID("\xC1\xBF");
    INVALID("\xE0\x80\x80");
    INVALID("\xE0\x80\xAF");
    INVALID("\xE0\x9F\xBF");     /* overlong U+07FF */
    INVALID("\xF0\x80\x80\x80");
    INVALID("\xF0\x8F\xBF\xBF"); /* overlong U+FFFF */
    INVALID("\xED\xA0\x80");     /* U+D800 */
    INVALID("\xED\xAD\xBF");     /* U+DB7F */
    INVALID("\xED\xBF\xBF");     /* U+DFFF */
    INVALID("\xED\xA0\xBD\xED\xB8\x80"); /* CESU-8 surrogate pair */
    INVALID("\xF4\x90\x80\x80"); /* U+110000 */
    INVALID("\xF5\x80\x80\x80");
    INVALID("\xF7\xBF\xBF\xBF");
    INVALID("\xF8\x88\x80\x80\x80");
    INVALID("\xFC\x84\x80\x80\x80\x80");
    INVALID("\xFE");
    INVALID("\xFF");
    INVALID("\x80");             /* lone continuation */
    INVALID("\xBF");
    INVALID("a\x80" "b");
    INVALID("\xC3");             /* truncated */
    INVALID("\xE2\x82");
    INVALID("\xF0\x9F\x98");
    INVALID("abc\xF0");
    INVALID("\xC3\x28");         /* bad continuation */
    INVALID("\xE2\x28\xA1");
    INVALID("\xE2\x82\x28");
    INVALID("\xF0\x28\x8C\xBC");
    INVALID("\xF0\x9F\x98\x28");
}
END_TEST

START_TEST(utf8_decode_and_classes)
{
    static const char s[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
    size_t i = 0;
    ck_assert_uint_eq(utf8_next(s, &i), 'a');
    ck_assert_uint_eq(utf8_next(s, &i), 0xE9);
    ck_assert_uint_eq(utf8_next(s, &i), 0x20AC);
    ck_assert_uint_eq(utf8_next(s, &i), 0x1F600);
    ck_assert_uint_eq(i, sizeof s - 1);
    size_t end = sizeof s - 1;
    ck_assert_uint_eq(utf8_prev(s, &end), 0x1F600);
    ck_assert_uint_eq(utf8_prev(s, &end), 0x20AC);
    ck_assert_uint_eq(utf8_prev(s, &end), 0xE9);
    ck_assert_uint_eq(utf8_prev(s, &end), 'a');
    ck_assert_uint_eq(end, 0);
    ck_assert_uint_eq(utf8_seq_len("\xF0\x9F\x98\x80", 3), 0);
    ck_assert_uint_eq(utf8_seq_len("\xF0\x9F\x98\x80", 4), 4);

    ck_assert(uni_is_letter('A') && uni_is_letter('z') && !uni_is_letter('0'));
    ck_assert(uni_is_letter(0xE9) && uni_is_letter(0x540D) && uni_is_letter(0x0645));
    ck_assert(uni_is_letter(0x02B0));  /* Lm */
    ck_assert(uni_is_letter(0x01C5));  /* Lt */
    ck_assert(uni_is_letter(0x20000)); /* CJK extension B */
    ck_assert(!uni_is_letter(0x0301) && !uni_is_letter(0x1F600) && !uni_is_letter(0x216B));
    ck_assert(!uni_is_letter(0xD800) && !uni_is_letter(0x10FFFF));
    ck_assert(uni_is_digit('0') && uni_is_digit('9') && !uni_is_digit('a'));
    ck_assert(uni_is_digit(0x0661) && uni_is_digit(0x0966) && uni_is_digit(0xFF10));
    ck_assert(!uni_is_digit(0xB2) && !uni_is_digit(0x216B) && !uni_is_digit(0x00BD));
    ck_assert(uni_is_space(' ') && uni_is_space('\t') && uni_is_space(0x0B));
    ck_assert(uni_is_space(0x85) && uni_is_space(0xA0) && uni_is_space(0x3000));
    ck_assert(uni_is_space(0x2028) && uni_is_space(0x202F) && uni_is_space(0x205F));
    ck_assert(!uni_is_space(0x200B) && !uni_is_space(0xFEFF) && !uni_is_space(0x180E));
    ck_assert(!uni_is_space('a') && !uni_is_space(0));
}
END_TEST

/* ------------------------------------------------------------------ encoding */

START_TEST(codes_table)
{
    static const char *expect[] = {"ok", "bad_request", "name_invalid", "name_taken",
                                   "already_joined", "taken_over", "not_joined",
                                   "content_invalid", "rate_limited", "unavailable"};
    for (int c = 0; c < PROTO_CODE_COUNT; c++) {
        ck_assert_str_eq(proto_code_str((proto_code)c), expect[c]);
        ck_assert(strlen(proto_code_message((proto_code)c)) > 0);
    }
}
END_TEST

START_TEST(encode_fragments)
{
    proto_message m = sample_message(42, AWKWARD);
    proto_str f = proto_frag_message(&m);
    cJSON *o = parse_frame(f, NULL);
    check_message(o, 42, AWKWARD);
    cJSON_Delete(o);

    /* Control characters are escaped, non-ASCII passes through as UTF-8. */
    ck_assert_ptr_null(memchr(f.ptr, '\n', f.len));
    ck_assert_ptr_null(memchr(f.ptr, '\x01', f.len));
    ck_assert_ptr_nonnull(strstr(f.ptr, "\\u0001"));
    ck_assert_ptr_nonnull(strstr(f.ptr, "\xF0\x9F\x98\x80"));

    proto_str empty = proto_frag_array(NULL, 0);
    ck_assert_str_eq(empty.ptr, "[]");
    free(empty.ptr);

    proto_message m2 = sample_message(43, "second");
    proto_str frags[2] = {f, proto_frag_message(&m2)};
    proto_str arr = proto_frag_array(frags, 2);
    cJSON *a = cJSON_ParseWithLength(arr.ptr, arr.len);
    ck_assert(cJSON_IsArray(a));
    ck_assert_int_eq(cJSON_GetArraySize(a), 2);
    check_message(cJSON_GetArrayItem(a, 0), 42, AWKWARD);
    check_message(cJSON_GetArrayItem(a, 1), 43, "second");
    cJSON_Delete(a);
    free(arr.ptr);
    free(frags[1].ptr);
    free(f.ptr);

    proto_user u = sample_user(AWKWARD, true);
    proto_str uf = proto_frag_user(&u);
    o = parse_frame(uf, NULL);
    ck_assert_str_eq(sget(o, "id"), UUID_B);
    ck_assert_str_eq(sget(o, "name"), AWKWARD);
    ck_assert(bget(o, "online"));
    cJSON_Delete(o);
    free(uf.ptr);
}
END_TEST

START_TEST(encode_repairs_bad_utf8)
{
    proto_message m = sample_message(1, "a\xC0\x80" "b\xED\xA0\x80" "c\xF0\x9F");
    proto_str f = proto_frag_message(&m);
    cJSON *o = parse_frame(f, NULL);
    ck_assert_str_eq(sget(o, "content"),
                     "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                     "c\xEF\xBF\xBD\xEF\xBF\xBD");
    cJSON_Delete(o);
    free(f.ptr);
}
END_TEST

/* A users page: user fragments side by side, as presence.c assembles it. */
static proto_str users_fragment(void)
{
    proto_user users[3] = {sample_user("alice", true), sample_user(AWKWARD, false),
                           sample_user("\xE5\x90\x8D\xE5\x89\x8D", true)};
    proto_str f[3];
    for (int i = 0; i < 3; i++)
        f[i] = proto_frag_user(&users[i]);
    proto_str arr = proto_frag_array(f, 3);
    for (int i = 0; i < 3; i++)
        free(f[i].ptr);
    return arr;
}

START_TEST(encode_welcome)
{
    proto_str w = proto_enc_welcome(9300, 12);
    cJSON *o = parse_frame(w, "welcome");
    ck_assert(nget(o, "protocol") == 2);
    ck_assert(nget(o, "total_users") == 9300);
    ck_assert(nget(o, "online_count") == 12);
    ck_assert(!has(o, "users")); /* version 2: counts, not lists */
    ck_assert(!has(o, "ref"));
    ck_assert_uint_lt(w.len, 100); /* v1's was 776 KB at 9,300 users */
    cJSON_Delete(o);
    free(w.ptr);
}
END_TEST

START_TEST(encode_joined)
{
    proto_message m = sample_message(7, AWKWARD);
    proto_str mf = proto_frag_message(&m);
    proto_str msgs = proto_frag_array(&mf, 1);
    proto_user me = sample_user("Zo\xC3\xAB", true);
    proto_joined j = {.ref = "\"r\\\"1\"", .user = &me, .token = "tok\"en\\",
                      .messages = &msgs, .more = true, .total_users = 3, .online_count = 2};
    proto_str f = proto_enc_joined(&j);
    cJSON *o = parse_frame(f, "joined");
    ck_assert_str_eq(sget(o, "ref"), "r\"1");
    ck_assert_str_eq(sget(get(o, "user"), "name"), "Zo\xC3\xAB");
    ck_assert(bget(get(o, "user"), "online"));
    ck_assert_str_eq(sget(o, "token"), "tok\"en\\");
    ck_assert_int_eq(cJSON_GetArraySize(get(o, "messages")), 1);
    check_message(cJSON_GetArrayItem(get(o, "messages"), 0), 7, AWKWARD);
    ck_assert(bget(o, "more"));
    ck_assert(nget(o, "total_users") == 3);
    ck_assert(nget(o, "online_count") == 2);
    ck_assert(!has(o, "users"));
    ck_assert_ptr_nonnull(strstr(f.ptr, msgs.ptr)); /* spliced, not re-encoded */
    cJSON_Delete(o);
    free(f.ptr);

    j.ref = NULL;
    j.messages = NULL;
    j.more = false;
    f = proto_enc_joined(&j);
    o = parse_frame(f, "joined");
    ck_assert(!has(o, "ref"));
    ck_assert_int_eq(cJSON_GetArraySize(get(o, "messages")), 0);
    ck_assert(!bget(o, "more"));
    cJSON_Delete(o);
    free(f.ptr);
    free(msgs.ptr);
    free(mf.ptr);
}
END_TEST

START_TEST(encode_users)
{
    proto_str users = users_fragment();
    proto_str f = proto_enc_users("5", &users, true);
    cJSON *o = parse_frame(f, "users");
    ck_assert(nget(o, "ref") == 5);
    ck_assert(bget(o, "more"));
    cJSON *us = get(o, "users");
    ck_assert_int_eq(cJSON_GetArraySize(us), 3);
    ck_assert_str_eq(sget(cJSON_GetArrayItem(us, 0), "name"), "alice");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(us, 1), "name"), AWKWARD);
    ck_assert(!bget(cJSON_GetArrayItem(us, 1), "online"));
    ck_assert(bget(cJSON_GetArrayItem(us, 2), "online"));
    ck_assert_ptr_nonnull(strstr(f.ptr, users.ptr));
    cJSON_Delete(o);
    free(f.ptr);
    free(users.ptr);

    f = proto_enc_users(NULL, NULL, false);
    o = parse_frame(f, "users");
    ck_assert(!has(o, "ref"));
    ck_assert(!bget(o, "more"));
    ck_assert_int_eq(cJSON_GetArraySize(get(o, "users")), 0);
    cJSON_Delete(o);
    free(f.ptr);
}
END_TEST

START_TEST(encode_sent_and_message)
{
    proto_message m = sample_message(9007199254740991LL, AWKWARD);
    proto_str mf = proto_frag_message(&m);
    proto_str s = proto_enc_sent("12", &mf);
    cJSON *o = parse_frame(s, "sent");
    ck_assert(nget(o, "ref") == 12);
    check_message(get(o, "message"), 9007199254740991LL, AWKWARD);
    cJSON_Delete(o);
    free(s.ptr);

    proto_str p = proto_enc_message(&mf);
    o = parse_frame(p, "message");
    ck_assert(!has(o, "ref"));
    check_message(get(o, "message"), 9007199254740991LL, AWKWARD);
    ck_assert_ptr_nonnull(strstr(p.ptr, mf.ptr));
    cJSON_Delete(o);
    free(p.ptr);
    free(mf.ptr);
}
END_TEST

START_TEST(encode_history)
{
    proto_message ms[3] = {sample_message(1, "one"), sample_message(2, AWKWARD),
                           sample_message(3, "three")};
    proto_str frags[3];
    for (int i = 0; i < 3; i++)
        frags[i] = proto_frag_message(&ms[i]);
    proto_str arr = proto_frag_array(frags, 3);
    proto_str h = proto_enc_history("\"h\"", &arr, true);
    cJSON *o = parse_frame(h, "history");
    ck_assert_str_eq(sget(o, "ref"), "h");
    ck_assert(bget(o, "more"));
    cJSON *list = get(o, "messages");
    ck_assert_int_eq(cJSON_GetArraySize(list), 3);
    check_message(cJSON_GetArrayItem(list, 1), 2, AWKWARD);
    ck_assert(nget(cJSON_GetArrayItem(list, 2), "seq") == 3);
    cJSON_Delete(o);
    free(h.ptr);

    h = proto_enc_history(NULL, NULL, false);
    o = parse_frame(h, "history");
    ck_assert(!has(o, "ref"));
    ck_assert_int_eq(cJSON_GetArraySize(get(o, "messages")), 0);
    ck_assert(!bget(o, "more"));
    cJSON_Delete(o);
    free(h.ptr);
    free(arr.ptr);
    for (int i = 0; i < 3; i++)
        free(frags[i].ptr);
}
END_TEST

START_TEST(encode_left_pong)
{
    proto_str f = proto_enc_left("5");
    ck_assert_str_eq(f.ptr, "{\"type\":\"left\",\"ref\":5}");
    free(f.ptr);
    f = proto_enc_pong("\"p\\n\"");
    cJSON *o = parse_frame(f, "pong");
    ck_assert_str_eq(sget(o, "ref"), "p\n");
    cJSON_Delete(o);
    free(f.ptr);
    f = proto_enc_pong(NULL);
    ck_assert_str_eq(f.ptr, "{\"type\":\"pong\"}");
    free(f.ptr);
}
END_TEST

START_TEST(encode_errors)
{
    for (int c = 1; c < PROTO_CODE_COUNT; c++) {
        proto_str f = proto_enc_error("3", (proto_code)c, NULL);
        cJSON *o = parse_frame(f, "error");
        ck_assert(nget(o, "ref") == 3);
        ck_assert_str_eq(sget(o, "code"), proto_code_str((proto_code)c));
        ck_assert_str_eq(sget(o, "message"), proto_code_message((proto_code)c));
        cJSON_Delete(o);
        free(f.ptr);
    }
    proto_str f = proto_enc_error(NULL, PROTO_TAKEN_OVER, NULL);
    cJSON *o = parse_frame(f, "error");
    ck_assert(!has(o, "ref"));
    ck_assert_str_eq(sget(o, "code"), "taken_over");
    cJSON_Delete(o);
    free(f.ptr);
    f = proto_enc_error("\"x\"", PROTO_BAD_REQUEST, AWKWARD);
    o = parse_frame(f, "error");
    ck_assert_str_eq(sget(o, "ref"), "x");
    ck_assert_str_eq(sget(o, "message"), AWKWARD);
    cJSON_Delete(o);
    free(f.ptr);
}
END_TEST

/* The whole path: decode a request, reply with its ref, parse the reply. */
START_TEST(encode_ref_round_trip)
{
    static const char *frames[] = {
        "{\"type\":\"ping\",\"ref\":\"q\\\"\\\\ \\n \\ud83d\\ude00 <b>\"}",
        "{\"type\":\"ping\",\"ref\":-0.25}",
        "{\"type\":\"ping\",\"ref\":123456}",
    };
    for (size_t i = 0; i < 3; i++) {
        proto_request req;
        ck_assert_int_eq(decode(frames[i], &req), PROTO_OK);
        cJSON *in = cJSON_Parse(frames[i]);
        proto_str f = proto_enc_pong(req.ref);
        cJSON *out = parse_frame(f, "pong");
        ck_assert(cJSON_Compare(get(in, "ref"), get(out, "ref"), 1));
        cJSON_Delete(in);
        cJSON_Delete(out);
        free(f.ptr);
        proto_request_free(&req);
    }
}
END_TEST

static proto_meta meta(const char *name, const char *phx_ref)
{
    proto_meta m = {.name = name, .phx_ref = phx_ref};
    strcpy(m.user_id, UUID_A);
    strcpy(m.joined_at, TIME_A);
    return m;
}

START_TEST(encode_presence_diff)
{
    proto_meta joins[4] = {meta("alice", "r1"), meta(AWKWARD, "r2"), meta("alice", "r3"),
                           meta("bob", "r\"4")};
    proto_meta leaves[1] = {meta("carol", "r0")};
    proto_str f = proto_enc_presence_diff(joins, 4, leaves, 1, 10, 3);
    cJSON *o = parse_frame(f, "presence_diff");
    cJSON *j = get(o, "joins");
    ck_assert(cJSON_IsObject(j));
    ck_assert_int_eq(cJSON_GetArraySize(j), 3); /* alice grouped once */
    cJSON *alice = get(get(j, "alice"), "metas");
    ck_assert_int_eq(cJSON_GetArraySize(alice), 2);
    ck_assert_str_eq(sget(cJSON_GetArrayItem(alice, 0), "phx_ref"), "r1");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(alice, 1), "phx_ref"), "r3");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(alice, 0), "user_id"), UUID_A);
    ck_assert_str_eq(sget(cJSON_GetArrayItem(alice, 0), "name"), "alice");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(alice, 0), "joined_at"), TIME_A);
    cJSON *awk = get(get(j, AWKWARD), "metas");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(awk, 0), "name"), AWKWARD);
    ck_assert_str_eq(sget(cJSON_GetArrayItem(get(get(j, "bob"), "metas"), 0), "phx_ref"), "r\"4");
    cJSON *l = get(o, "leaves");
    ck_assert_int_eq(cJSON_GetArraySize(l), 1);
    ck_assert_int_eq(cJSON_GetArraySize(get(get(l, "carol"), "metas")), 1);
    ck_assert(nget(o, "total_users") == 10);
    ck_assert(nget(o, "online_count") == 3);
    cJSON_Delete(o);
    free(f.ptr);

    f = proto_enc_presence_diff(NULL, 0, NULL, 0, 0, 0);
    o = parse_frame(f, "presence_diff");
    ck_assert(cJSON_IsObject(get(o, "joins")) && cJSON_GetArraySize(get(o, "joins")) == 0);
    ck_assert(cJSON_IsObject(get(o, "leaves")) && cJSON_GetArraySize(get(o, "leaves")) == 0);
    cJSON_Delete(o);
    free(f.ptr);

    /* Take-over: the same name leaves and joins in one diff. */
    proto_meta old = meta("bob", "old"), new = meta("bob", "new");
    f = proto_enc_presence_diff(&new, 1, &old, 1, 1, 1);
    o = parse_frame(f, "presence_diff");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(get(get(get(o, "joins"), "bob"), "metas"), 0),
                          "phx_ref"),
                     "new");
    ck_assert_str_eq(sget(cJSON_GetArrayItem(get(get(get(o, "leaves"), "bob"), "metas"), 0),
                          "phx_ref"),
                     "old");
    cJSON_Delete(o);
    free(f.ptr);
}
END_TEST

/* Diffs merged into one equal the one diff of their union (what presence
 * sends a restarted session that missed several), names still in byte
 * order; something that is not a diff is refused. */
START_TEST(merge_presence_diffs)
{
    proto_meta j1[2] = {meta("alice", "r1"), meta("bob", "r2")}, l1[1] = {meta("carol", "r0")};
    proto_meta j2[3] = {meta("alice", "r3"), meta("dave", "r5"), meta(AWKWARD, "r6")};
    proto_meta l2[1] = {meta("bob", "r2")}, l3[1] = {meta("alice", "r1")};
    proto_str d[3] = {proto_enc_presence_diff(j1, 2, l1, 1, 10, 3),
                      proto_enc_presence_diff(j2, 3, l2, 1, 11, 4),
                      proto_enc_presence_diff(NULL, 0, l3, 1, 11, 3)};
    proto_str m = proto_merge_presence_diffs(d, 3);
    cJSON *got = parse_frame(m, "presence_diff");
    proto_meta uj[5] = {j1[0], j1[1], j2[0], j2[1], j2[2]}, ul[3] = {l1[0], l2[0], l3[0]};
    proto_str e = proto_enc_presence_diff(uj, 5, ul, 3, 11, 3);
    cJSON *want = parse_frame(e, "presence_diff");
    ck_assert_msg(cJSON_Compare(got, want, 1), "merged %s\nwant %s", m.ptr, e.ptr);
    ck_assert_int_eq(cJSON_GetArraySize(get(get(get(got, "joins"), "alice"), "metas")), 2);
    ck_assert_str_eq(sget(cJSON_GetArrayItem(get(get(get(got, "joins"), "alice"), "metas"), 1),
                          "phx_ref"),
                     "r3"); /* a name's metas keep the diffs' order */
    for (const char *f = "joins"; f; f = strcmp(f, "joins") ? NULL : "leaves")
        for (cJSON *k = get(got, f)->child; k && k->next; k = k->next)
            ck_assert_msg(strcmp(k->string, k->next->string) < 0, "%s: %s before %s", f,
                          k->string, k->next->string);
    cJSON_Delete(got);
    cJSON_Delete(want);
    free(m.ptr);
    free(e.ptr);

    proto_str one = proto_merge_presence_diffs(d, 1); /* one diff: itself */
    got = parse_frame(one, "presence_diff");
    want = parse_frame(d[0], "presence_diff");
    ck_assert(cJSON_Compare(got, want, 1));
    cJSON_Delete(got);
    cJSON_Delete(want);
    free(one.ptr);

    proto_str bad[2] = {d[0], {"{\"type\":\"pong\"}", 15}};
    ck_assert_ptr_null(proto_merge_presence_diffs(bad, 2).ptr);
    proto_str junk[2] = {d[0], {"{\"joins\":", 9}};
    ck_assert_ptr_null(proto_merge_presence_diffs(junk, 2).ptr);
    for (int i = 0; i < 3; i++)
        free(d[i].ptr);
}
END_TEST

START_TEST(format_time)
{
    char t[PROTO_TIME_LEN + 1];
    proto_format_time(0, t);
    ck_assert_str_eq(t, "1970-01-01T00:00:00.000000Z");
    proto_format_time(1795482123123456LL, t);
    ck_assert_str_eq(t, TIME_A);
    proto_format_time(-1, t);
    ck_assert_str_eq(t, "1969-12-31T23:59:59.999999Z");
    proto_format_time(951782400000001LL, t); /* leap day 2000 */
    ck_assert_str_eq(t, "2000-02-29T00:00:00.000001Z");
}
END_TEST

/* ------------------------------------------------------------------ runner */

static Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    TCase *dec = tcase_create("decode");
    tcase_add_test(dec, decode_not_json);
    tcase_add_test(dec, decode_embedded_nul_byte);
    tcase_add_test(dec, decode_too_large_and_deep);
    tcase_add_test(dec, decode_not_object);
    tcase_add_test(dec, decode_type_errors);
    tcase_add_test(dec, decode_join_fields);
    tcase_add_test(dec, decode_send_fields);
    tcase_add_test(dec, decode_history_fields);
    tcase_add_test(dec, decode_catch_up_fields);
    tcase_add_test(dec, decode_users_fields);
    tcase_add_test(dec, decode_client_id);
    suite_add_tcase(s, dec);

    TCase *ref = tcase_create("ref");
    tcase_add_test(ref, ref_echo_forms);
    tcase_add_test(ref, ref_numbers_round_trip);
    tcase_add_test(ref, ref_invalid_gives_no_ref);
    suite_add_tcase(s, ref);

    TCase *val = tcase_create("validity");
    tcase_add_test(val, name_valid);
    tcase_add_test(val, name_invalid);
    tcase_add_test(val, name_invisible);
    tcase_add_test(val, content_rules);
    tcase_add_test(val, content_limits);
    suite_add_tcase(s, val);

    TCase *uni = tcase_create("unicode");
    tcase_add_test(uni, utf8_vectors);
    tcase_add_test(uni, utf8_decode_and_classes);
    suite_add_tcase(s, uni);

    TCase *enc = tcase_create("encode");
    tcase_add_test(enc, codes_table);
    tcase_add_test(enc, encode_fragments);
    tcase_add_test(enc, encode_repairs_bad_utf8);
    tcase_add_test(enc, encode_welcome);
    tcase_add_test(enc, encode_joined);
    tcase_add_test(enc, encode_sent_and_message);
    tcase_add_test(enc, encode_history);
    tcase_add_test(enc, encode_left_pong);
    tcase_add_test(enc, encode_errors);
    tcase_add_test(enc, encode_ref_round_trip);
    tcase_add_test(enc, encode_presence_diff);
    tcase_add_test(enc, merge_presence_diffs);
    tcase_add_test(enc, encode_users);
    tcase_add_test(enc, format_time);
    suite_add_tcase(s, enc);
    return s;
}

CHECK_MAIN(protocol_suite, CK_NORMAL)
