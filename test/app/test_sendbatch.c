/*
 * test_sendbatch.c -- app/sendbatch.c, both ways it runs (each test loops
 * over them: 0 = one send(2) per entry, 1 = io_uring): every send of a run
 * gets send(2)'s own answer (bytes taken, 0 for a full socket, -errno),
 * in the order added, over real loopback TCP sockets; a full or broken
 * socket in a batch costs its neighbours nothing; bytes arrive whole and in
 * order; and with io_uring a full batch is one system call.
 */
#include "../lib/check_main.h"
#include "sendbatch.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAIRS SENDBATCH_MAX

static int wr[PAIRS], rd[PAIRS]; /* writer and reader ends of each pair */

/* PAIRS loopback TCP connections, writers non-blocking. */
static void pairs_open(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(ls, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(ls, (void *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(ls, PAIRS), 0);
    socklen_t al = sizeof a;
    ck_assert_int_eq(getsockname(ls, (void *)&a, &al), 0);
    for (int i = 0; i < PAIRS; i++) {
        rd[i] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_eq(connect(rd[i], (void *)&a, sizeof a), 0);
        wr[i] = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
        ck_assert_int_ge(wr[i], 0);
    }
    close(ls);
}

static void pairs_close(void)
{
    for (int i = 0; i < PAIRS; i++) {
        if (wr[i] >= 0) close(wr[i]);
        if (rd[i] >= 0) close(rd[i]);
        wr[i] = rd[i] = -1;
    }
}

/* Reads exactly n bytes from fd (blocking, bounded by the suite's timeout). */
static void read_exactly(int fd, char *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        ck_assert_msg(r > 0, "read: %zd (%s) after %zu of %zu bytes", r, strerror(errno), got, n);
        got += (size_t)r;
    }
}

/* Nothing more is waiting on fd. */
static void assert_drained(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 50), 0);
}

typedef struct result {
    int calls;
    void *tag[SENDBATCH_MAX];
    ssize_t res[SENDBATCH_MAX];
    size_t len[SENDBATCH_MAX]; /* what the iovecs handed back held */
} result_t;

static void on_done(void *tag, struct iovec *iov, size_t n, ssize_t res, void *arg)
{
    result_t *r = arg;
    r->tag[r->calls] = tag;
    r->res[r->calls] = res;
    r->len[r->calls] = 0;
    for (size_t i = 0; i < n; i++) r->len[r->calls] += iov[i].iov_len;
    r->calls++;
}

static sendbatch_t *batch_for(int mode)
{
    sendbatch_t *b = sendbatch_new(mode == 1);
    ck_assert_ptr_nonnull(b);
    const char *why;
    bool uring = sendbatch_uring(b, &why);
    if (mode == 0) {
        ck_assert(!uring);
        ck_assert_str_eq(why, "");
    } else if (uring) {
        fprintf(stderr, "test_sendbatch: io_uring in use\n");
    } else {
        /* only where the kernel itself refuses a ring (asked here the
         * plain way, no flags) may the batch go without: then the reason
         * is said, and the batch still works, one send(2) at a time */
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        int fd = (int)syscall(__NR_io_uring_setup, SENDBATCH_MAX, &p);
        if (fd >= 0) close(fd);
        ck_assert_msg(fd < 0, "the kernel grants an io_uring, but the batch runs without (%s)", why);
        fprintf(stderr, "test_sendbatch: io_uring unavailable here (%s)\n", why);
        ck_assert(why && *why);
    }
    return b;
}

/* Every send of a full batch taken whole, one and three buffers alike, the
 * answers in order with their tags; the readers get exactly the bytes. */
START_TEST(all_taken_in_order)
{
    pairs_open();
    sendbatch_t *b = batch_for(_i);
    char msg[PAIRS][64];
    struct iovec iov[3];
    for (int i = 0; i < PAIRS; i++) {
        int len = snprintf(msg[i], sizeof msg[i], "frame %03d of the batch", i);
        ck_assert(!sendbatch_full(b));
        if (i % 2 == 0) {
            iov[0] = (struct iovec){msg[i], (size_t)len};
            sendbatch_add(b, wr[i], iov, 1, &msg[i]);
        } else { /* the same bytes as three buffers: sendmsg's path */
            iov[0] = (struct iovec){msg[i], 5};
            iov[1] = (struct iovec){msg[i] + 5, 4};
            iov[2] = (struct iovec){msg[i] + 9, (size_t)len - 9};
            sendbatch_add(b, wr[i], iov, 3, &msg[i]);
        }
    }
    ck_assert(sendbatch_full(b));
    result_t r = {0};
    sendbatch_run(b, on_done, &r);
    ck_assert_int_eq(r.calls, PAIRS);
    ck_assert(!sendbatch_full(b)); /* empty again */
    for (int i = 0; i < PAIRS; i++) {
        size_t len = strlen(msg[i]);
        ck_assert_ptr_eq(r.tag[i], &msg[i]);
        ck_assert_int_eq(r.res[i], (ssize_t)len);
        ck_assert_uint_eq(r.len[i], len);
        char got[64] = {0};
        read_exactly(rd[i], got, len);
        ck_assert_str_eq(got, msg[i]);
        assert_drained(rd[i]);
    }
    unsigned long long calls, sends;
    sendbatch_counts(b, &calls, &sends);
    ck_assert_uint_eq(sends, PAIRS);
    if (sendbatch_uring(b, NULL)) ck_assert_uint_eq(calls, 1); /* the whole batch, one call */
    else ck_assert_uint_eq(calls, PAIRS);
    sendbatch_free(b);
    pairs_close();
}
END_TEST

/* Fills fd's send buffer (and the peer's receive buffer); bytes taken. */
static size_t fill(int fd)
{
    static char junk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t w = send(fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            ck_assert_int_eq(errno, EAGAIN);
            return total;
        }
        total += (size_t)w;
    }
}

/* A full socket answers 0 at once (it does not block the run, and it is
 * not parked to send later: after the run nothing more arrives), a partly
 * full one takes part of a large send, and the healthy ones beside them are
 * served whole. */
START_TEST(full_and_partial)
{
    pairs_open();
    sendbatch_t *b = batch_for(_i);
    int small = 4096;
    ck_assert_int_eq(setsockopt(wr[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    ck_assert_int_eq(setsockopt(rd[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    size_t filled = fill(wr[1]);
    ck_assert_uint_gt(filled, 0);

    static char big[4 << 20];
    memset(big, 'b', sizeof big);
    const char *hello = "hello";
    struct iovec one = {(void *)hello, 5}, large = {big, sizeof big};
    sendbatch_add(b, wr[0], &one, 1, (void *)0);
    sendbatch_add(b, wr[1], &one, 1, (void *)1);   /* full */
    sendbatch_add(b, wr[2], &large, 1, (void *)2); /* more than any buffer holds */
    sendbatch_add(b, wr[3], &one, 1, (void *)3);
    result_t r = {0};
    sendbatch_run(b, on_done, &r);
    ck_assert_int_eq(r.calls, 4);
    ck_assert_int_eq(r.res[0], 5);
    ck_assert_int_eq(r.res[1], 0);
    ck_assert_int_gt(r.res[2], 0);
    ck_assert_int_lt(r.res[2], (ssize_t)sizeof big);
    ck_assert_int_eq(r.res[3], 5);

    /* the full one: only the filler arrives, nothing of the refused send */
    char *sink = malloc(filled + 16);
    read_exactly(rd[1], sink, filled);
    assert_drained(rd[1]);
    /* the partial one: exactly what it said it took */
    char *part = malloc((size_t)r.res[2]);
    read_exactly(rd[2], part, (size_t)r.res[2]);
    ck_assert(part[0] == 'b' && part[r.res[2] - 1] == 'b');
    assert_drained(rd[2]);
    free(part);
    free(sink);
    sendbatch_free(b);
    pairs_close();
}
END_TEST

/* A descriptor that is not open and a connection the peer has reset each
 * answer their own -errno; the sends around them are unaffected. */
START_TEST(errors_are_their_own)
{
    pairs_open();
    sendbatch_t *b = batch_for(_i);
    /* reset by the peer: SO_LINGER 0 then close sends an RST */
    struct linger lg = {1, 0};
    ck_assert_int_eq(setsockopt(rd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(rd[1]);
    rd[1] = -1;
    struct pollfd p = {.fd = wr[1], .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 5000), 1); /* the RST has arrived */
    int gone = dup(wr[2]);
    ck_assert_int_ge(gone, 0);
    close(gone); /* a descriptor number nobody holds */

    struct iovec one = {(void *)"abc", 3};
    sendbatch_add(b, wr[0], &one, 1, NULL);
    sendbatch_add(b, wr[1], &one, 1, NULL);
    sendbatch_add(b, gone, &one, 1, NULL);
    sendbatch_add(b, wr[3], &one, 1, NULL);
    result_t r = {0};
    sendbatch_run(b, on_done, &r);
    ck_assert_int_eq(r.calls, 4);
    ck_assert_int_eq(r.res[0], 3);
    ck_assert_msg(r.res[1] == -ECONNRESET || r.res[1] == -EPIPE, "reset: %zd", r.res[1]);
    ck_assert_int_eq(r.res[2], -EBADF);
    ck_assert_int_eq(r.res[3], 3);
    char got[4] = {0};
    read_exactly(rd[0], got, 3);
    ck_assert_str_eq(got, "abc");
    read_exactly(rd[3], got, 3);
    ck_assert_str_eq(got, "abc");
    sendbatch_free(b);
    pairs_close();
}
END_TEST

/* Runs back to back reuse the ring: many more sends than it has entries,
 * each socket's bytes in the order sent. */
START_TEST(many_runs_keep_order)
{
    pairs_open();
    sendbatch_t *b = batch_for(_i);
    enum { RUNS = 40 };
    static char msg[RUNS][PAIRS][32];
    for (int k = 0; k < RUNS; k++) {
        for (int i = 0; i < PAIRS; i++) {
            snprintf(msg[k][i], sizeof msg[k][i], "%02u:%03u;", (unsigned)k % 100, (unsigned)i % 1000);
            struct iovec v = {msg[k][i], 7};
            sendbatch_add(b, wr[i], &v, 1, NULL);
        }
        result_t r = {0};
        sendbatch_run(b, on_done, &r);
        for (int i = 0; i < PAIRS; i++) ck_assert_int_eq(r.res[i], 7);
    }
    for (int i = 0; i < PAIRS; i++) {
        char got[RUNS * 7 + 1] = {0};
        read_exactly(rd[i], got, RUNS * 7);
        for (int k = 0; k < RUNS; k++) ck_assert(memcmp(got + k * 7, msg[k][i], 7) == 0);
    }
    unsigned long long calls, sends;
    sendbatch_counts(b, &calls, &sends);
    ck_assert_uint_eq(sends, (unsigned long long)RUNS * PAIRS);
    if (sendbatch_uring(b, NULL)) ck_assert_uint_eq(calls, RUNS);
    sendbatch_free(b);
    pairs_close();
}
END_TEST

static void setup(void)
{
    for (int i = 0; i < PAIRS; i++) wr[i] = rd[i] = -1;
}

static Suite *sendbatch_suite(void)
{
    Suite *s = suite_create("sendbatch");
    TCase *c = checked_case(s, "sendbatch", setup, pairs_close, 30);
    tcase_add_loop_test(c, all_taken_in_order, 0, 2);
    tcase_add_loop_test(c, full_and_partial, 0, 2);
    tcase_add_loop_test(c, errors_are_their_own, 0, 2);
    tcase_add_loop_test(c, many_runs_keep_order, 0, 2);
    return s;
}

CHECK_MAIN(sendbatch_suite, CK_NORMAL)
