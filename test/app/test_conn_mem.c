/*
 * test_conn_mem.c -- what every socket's record costs stays where issue 6's
 * memory work left it: the conn record (conn_t, held from accept to close
 * by every idle joined session) is at most CONN_RECORD_MAX_BYTES, and the
 * rate-limit key it keeps fits its CONN_PEER_MAX bytes for the longest IPv4
 * and IPv6 addresses.  A field added to conn_t or conn_state_t, or a hole
 * left between them, fails the first test; the bytes are counted as malloc
 * hands them out (malloc_usable_size), not timed.
 */
#include "../lib/check_main.h"
#include "conn.h"

#include <arpa/inet.h>
#include <check.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* glibc's chunk for n bytes, without its 8-byte header: what a calloc of
 * the record really takes from the heap. */
static size_t chunk_of(size_t n)
{
    void *p = malloc(n);
    ck_assert_ptr_nonnull(p);
    size_t usable = malloc_usable_size(p);
    free(p);
    return usable;
}

START_TEST(conn_record_within_bound)
{
    size_t bytes = conn_record_bytes();
    fprintf(stderr, "conn_record_within_bound: conn_t %zu bytes, %zu usable in its chunk "
            "(bound %d)\n", bytes, chunk_of(bytes), CONN_RECORD_MAX_BYTES);
    ck_assert_msg(bytes <= CONN_RECORD_MAX_BYTES,
                  "conn_t is %zu bytes, over CONN_RECORD_MAX_BYTES (%d): every idle "
                  "session pays it", bytes, CONN_RECORD_MAX_BYTES);
    ck_assert_uint_le(sizeof(conn_state_t), 336);
}
END_TEST

static void key_of(int family, const char *addr, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
    }
    listener_peer_key(&ss, out, cap);
}

/* The longest keys fit CONN_PEER_MAX whole (a cut one would count a
 * different address against the per-address cap), and a buffer one byte
 * short is refused rather than cut. */
START_TEST(peer_keys_fit)
{
    char k[CONN_PEER_MAX];
    key_of(AF_INET, "255.255.255.255", k, sizeof k);
    ck_assert_str_eq(k, "255.255.255.255");
    key_of(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", k, sizeof k);
    ck_assert_str_eq(k, "ffff:ffff:ffff:ffff::/64");
    key_of(AF_INET6, "::ffff:255.255.255.255", k, sizeof k); /* v4-mapped: /64 is :: */
    ck_assert_str_eq(k, "::/64");
    char shortk[sizeof "ffff:ffff:ffff:ffff::/64" - 1];
    key_of(AF_INET6, "ffff:ffff:ffff:ffff:1:2:3:4", shortk, sizeof shortk);
    ck_assert_str_eq(shortk, "?");
}
END_TEST

static Suite *conn_mem_suite(void)
{
    Suite *s = suite_create("conn_mem");
    TCase *t = tcase_create("records");
    tcase_add_test(t, conn_record_within_bound);
    tcase_add_test(t, peer_keys_fit);
    suite_add_tcase(s, t);
    return s;
}

CHECK_MAIN(conn_mem_suite, CK_NORMAL)
