/*
 * sendbatch.h -- many non-blocking socket sends for one system call
 * (io_uring), or one send(2) each where io_uring is not to be had.
 *
 * A batch is filled with sends (a descriptor and up to SENDBATCH_IOV
 * buffers each), then run: every send is tried once, without blocking, and
 * its result handed back in the order they were added.  The results are
 * exactly those of send(2)/sendmsg(2) with MSG_DONTWAIT: bytes taken, 0 when
 * the socket's buffer was full, or -errno.  No buffer outlives the run.
 *
 * Thread rule: a batch belongs to the thread that uses it; one per scheduler.
 */
#ifndef CHATTER_SENDBATCH_H
#define CHATTER_SENDBATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SENDBATCH_MAX 128 /* sends per system call: 16 already take most of the gain */
#define SENDBATCH_IOV 16  /* buffers per send */

typedef struct sendbatch sendbatch_t;

/* The result of one send: iov is the batch's copy of the caller's buffers
 * (the caller may advance it past what was taken and hand it on, e.g. to a
 * uv_write, which copies it); res as above. */
typedef void sendbatch_cb(void *tag, struct iovec *iov, size_t n, ssize_t res, void *arg);

/* A batch; use_uring false (or io_uring refused by the kernel: too old,
 * kernel.io_uring_disabled, a seccomp filter) runs one send(2) per entry.
 * NULL: out of memory. */
sendbatch_t *sendbatch_new(bool use_uring);
void sendbatch_free(sendbatch_t *b);
/* Whether runs go through io_uring; why not, if not ("" when asked not to). */
bool sendbatch_uring(const sendbatch_t *b, const char **why_not);
/* Room for another send? */
bool sendbatch_full(const sendbatch_t *b);
/* Adds a send of iov[0..n) on fd (1 <= n <= SENDBATCH_IOV, !full): the
 * iovecs are copied, the bytes they point at must stay put until the run. */
void sendbatch_add(sendbatch_t *b, int fd, const struct iovec *iov, size_t n, void *tag);
/* Tries every send added, then calls done for each, in order; the batch is
 * empty again when it returns.  done must not add to the batch. */
void sendbatch_run(sendbatch_t *b, sendbatch_cb *done, void *arg);
/* One non-blocking send of iov[0..n) on fd, now, by itself: send(2) for
 * one buffer, sendmsg(2) for more; the answer as a run's (bytes taken, 0
 * when the socket is full, -errno).  What a run without io_uring makes
 * per entry, and what a caller with a single send uses directly. */
ssize_t sendbatch_send_now(int fd, const struct iovec *iov, size_t n);
/* System calls made and sends run since the batch was made. */
void sendbatch_counts(const sendbatch_t *b, unsigned long long *calls, unsigned long long *sends);

#endif
