/*
 * sendbatch.c -- many non-blocking socket sends for one system call.
 *
 * Why.  A fan-out is one send per socket, and on this machine (AMD EPYC,
 * kernel page-table isolation on) the crossing into the kernel and back is
 * a large part of each: a writer like floor.c (2,000 loopback sockets, one
 * 230-byte frame each per round, rounds 250 ms apart as in chat) spent 1.27
 * to 1.40 CPU-s per 100,000 sends with one send(2) each, and 0.74 to 1.00
 * with the same sends handed to io_uring 256 at a time (five alternating
 * pairs); at rounds 2 ms apart 0.56 to 0.65 against 0.36 to 0.54.  Batches
 * of 1 cost what send(2) costs; 16 already take most of the gain.  The
 * kernel's work per send -- TCP, loopback, waking the reader -- is the same
 * either way: what goes is one entry and one exit per send.
 *
 * How.  One io_uring (no SQPOLL: the sends run on the caller's thread and
 * count as its CPU, as send(2) would) with SENDBATCH_MAX entries.  Each send
 * is IORING_OP_SEND (one buffer) or IORING_OP_SENDMSG with MSG_DONTWAIT, so
 * the kernel tries it inline during io_uring_enter and completes it there,
 * -EAGAIN included, instead of parking it on a poll: when io_uring_enter
 * returns, every completion is posted, so a run is as synchronous as the
 * send(2) calls it replaces and no buffer outlives it.  Should a kernel
 * park one anyway, the run cancels it (nothing was taken: the caller sees 0
 * and queues the bytes as for a full socket), waits for its completion, and
 * this batch goes back to send(2) from then on.
 *
 * Where io_uring cannot be had (kernel.io_uring_disabled, a seccomp filter
 * in a container, a kernel before 5.7, CHATTER_IO_URING=0) the same batch
 * makes one send(2) or sendmsg(2) per entry: the caller has one path.
 *
 * Memory: the ring's three mappings (128 SQEs of 64 bytes, 256 CQEs of 16,
 * the rings' heads) about 13 KiB, and the entries' copies of their iovecs
 * 32 KiB, per scheduler thread.
 */
#include "sendbatch.h"

#include <assert.h>
#include <errno.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CANCEL_TAG (1ull << 63) /* user_data of a cancel, not of a send */

typedef struct entry {
  int fd;
  unsigned niov;
  bool done;     /* its completion has been seen */
  ssize_t res;
  void *tag;
} entry_t;

struct sendbatch {
  unsigned n; /* entries added */
  int ring;   /* -1: send(2) per entry */
  const char *why_not;
  unsigned long long calls, sends;
  /* the ring: its head and tail words live in memory shared with the kernel */
  unsigned *sq_head, *sq_tail, *sq_array, sq_mask, sq_entries;
  unsigned *cq_head, *cq_tail, cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  void *sq_map, *cq_map;
  size_t sq_len, cq_len, sqes_len;
  entry_t ent[SENDBATCH_MAX];
  struct msghdr msg[SENDBATCH_MAX];
  struct iovec iov[SENDBATCH_MAX][SENDBATCH_IOV];
};

static int uring_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int uring_enter(int fd, unsigned submit, unsigned wait, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

static void ring_close(sendbatch_t *b) {
  if (b->sqes) munmap(b->sqes, b->sqes_len);
  if (b->cq_map && b->cq_map != b->sq_map) munmap(b->cq_map, b->cq_len);
  if (b->sq_map) munmap(b->sq_map, b->sq_len);
  if (b->ring >= 0) close(b->ring);
  b->sqes = NULL;
  b->sq_map = b->cq_map = NULL;
  b->ring = -1;
}

/* The ring, or why not (b->why_not; b->ring stays -1). */
static void ring_open(sendbatch_t *b) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  /* SUBMIT_ALL: one bad entry does not stop the rest of the run;
   * COOP_TASKRUN: no interrupt to post completions we collect at once */
  p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int fd = uring_setup(SENDBATCH_MAX, &p);
  if (fd < 0 && errno == EINVAL) { /* a kernel before 5.19: without them */
    memset(&p, 0, sizeof p);
    fd = uring_setup(SENDBATCH_MAX, &p);
  }
  if (fd < 0) {
    b->why_not = errno == ENOSYS ? "the kernel has no io_uring"
                 : errno == EPERM ? "io_uring is not permitted here"
                                  : "io_uring_setup failed";
    return;
  }
  b->ring = fd;
  if (!(p.features & IORING_FEAT_FAST_POLL)) { /* before 5.7: no IORING_OP_SEND */
    b->why_not = "the kernel's io_uring is too old";
    ring_close(b);
    return;
  }
  b->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  b->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if ((p.features & IORING_FEAT_SINGLE_MMAP) && b->cq_len > b->sq_len) b->sq_len = b->cq_len;
  b->sq_map = mmap(NULL, b->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   IORING_OFF_SQ_RING);
  if (b->sq_map == MAP_FAILED) b->sq_map = NULL;
  if (b->sq_map && (p.features & IORING_FEAT_SINGLE_MMAP)) {
    b->cq_map = b->sq_map;
  } else if (b->sq_map) {
    b->cq_map = mmap(NULL, b->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                     IORING_OFF_CQ_RING);
    if (b->cq_map == MAP_FAILED) b->cq_map = NULL;
  }
  b->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
  b->sqes = mmap(NULL, b->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                 IORING_OFF_SQES);
  if (b->sqes == MAP_FAILED) b->sqes = NULL;
  if (!b->sq_map || !b->cq_map || !b->sqes) {
    b->why_not = "cannot map the io_uring";
    ring_close(b);
    return;
  }
  char *sq = b->sq_map, *cq = b->cq_map;
  b->sq_head = (unsigned *)(sq + p.sq_off.head);
  b->sq_tail = (unsigned *)(sq + p.sq_off.tail);
  b->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
  b->sq_entries = p.sq_entries;
  b->sq_array = (unsigned *)(sq + p.sq_off.array);
  b->cq_head = (unsigned *)(cq + p.cq_off.head);
  b->cq_tail = (unsigned *)(cq + p.cq_off.tail);
  b->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
  b->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  for (unsigned i = 0; i < p.sq_entries; i++) b->sq_array[i] = i; /* slot i is SQE i */
  b->why_not = NULL;
}

sendbatch_t *sendbatch_new(bool use_uring) {
  sendbatch_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->ring = -1;
  b->why_not = "";
  if (use_uring) ring_open(b);
  return b;
}

void sendbatch_free(sendbatch_t *b) {
  if (!b) return;
  ring_close(b);
  free(b);
}

bool sendbatch_uring(const sendbatch_t *b, const char **why_not) {
  if (why_not) *why_not = b->why_not;
  return b->ring >= 0;
}

bool sendbatch_full(const sendbatch_t *b) { return b->n == SENDBATCH_MAX; }

void sendbatch_counts(const sendbatch_t *b, unsigned long long *calls, unsigned long long *sends) {
  *calls = b->calls;
  *sends = b->sends;
}

void sendbatch_add(sendbatch_t *b, int fd, const struct iovec *iov, size_t n, void *tag) {
  assert(b->n < SENDBATCH_MAX && n >= 1 && n <= SENDBATCH_IOV); /* the caller's bounds */
  entry_t *e = &b->ent[b->n];
  e->fd = fd;
  e->niov = (unsigned)n;
  e->done = false;
  e->res = 0;
  e->tag = tag;
  memcpy(b->iov[b->n], iov, n * sizeof *iov);
  b->n++;
}

/* ---------------------------------------------------- one call per entry */

/* send(2) rather than write(2)/writev(2): the socket call skips the VFS
 * layer (vfs_write, fdget_pos, 7% of the samples in a chat profile);
 * floor_gap.c with send() instead of write(), 2,000 sockets, rounds 250 ms
 * apart, nine runs of each, alternating: median 1.012 CPU-s per 100k
 * against 1.106.  One buffer, the usual case at chat's rates (one push per
 * socket per fan-out), goes by send(2), which does not copy and check a
 * msghdr and an iovec array: floor_gap.c at 2 ms rounds, twelve
 * alternating pairs, send() lower in ten, medians 0.781 against 0.795 for
 * sendmsg(). */
ssize_t sendbatch_send_now(int fd, const struct iovec *iov, size_t n) {
  ssize_t w;
  do {
    if (n == 1) {
      w = send(fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
      struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
      w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  } while (w < 0 && errno == EINTR);
  return w >= 0 ? w : (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
}

static void run_plain(sendbatch_t *b) {
  for (unsigned i = 0; i < b->n; i++) {
    entry_t *e = &b->ent[i];
    if (e->done) continue;
    b->calls++;
    e->res = sendbatch_send_now(e->fd, b->iov[i], e->niov);
    e->done = true;
  }
}

/* --------------------------------------------------------------- io_uring */

static struct io_uring_sqe *sqe_next(sendbatch_t *b, unsigned *tail) {
  struct io_uring_sqe *q = &b->sqes[*tail & b->sq_mask];
  memset(q, 0, sizeof *q);
  (*tail)++;
  return q;
}

/* Takes the completions posted so far; the number of sends among them. */
static unsigned reap(sendbatch_t *b) {
  unsigned head = *b->cq_head, got = 0;
  unsigned tail = __atomic_load_n(b->cq_tail, __ATOMIC_ACQUIRE);
  for (; head != tail; head++) {
    const struct io_uring_cqe *c = &b->cqes[head & b->cq_mask];
    if (c->user_data & CANCEL_TAG || c->user_data == 0 || c->user_data > b->n) continue;
    entry_t *e = &b->ent[c->user_data - 1];
    if (e->done) continue;
    e->done = true;
    /* -EAGAIN: the buffer was full; -ECANCELED: parked and cancelled, so
     * nothing was taken either */
    e->res = c->res >= 0 ? c->res : (c->res == -EAGAIN || c->res == -ECANCELED) ? 0 : c->res;
    got++;
  }
  __atomic_store_n(b->cq_head, head, __ATOMIC_RELEASE);
  return got;
}

/* Some of the first `submitted` sends did not complete inline: cancel each
 * (a parked send took nothing), wait for all, and use send(2) from now on. */
static void cancel_rest(sendbatch_t *b, unsigned submitted, unsigned missing) {
  unsigned tail = *b->sq_tail, queued = 0;
  for (unsigned i = 0; i < submitted; i++) {
    if (b->ent[i].done) continue;
    struct io_uring_sqe *q = sqe_next(b, &tail);
    q->opcode = IORING_OP_ASYNC_CANCEL;
    q->fd = -1;
    q->addr = i + 1;
    q->user_data = CANCEL_TAG | (i + 1);
    queued++;
  }
  __atomic_store_n(b->sq_tail, tail, __ATOMIC_RELEASE);
  int rc;
  do rc = uring_enter(b->ring, queued, 0, 0);
  while (rc < 0 && errno == EINTR);
  b->calls++;
  while (missing > 0) {
    missing -= reap(b);
    if (missing == 0) break;
    do rc = uring_enter(b->ring, 0, 1, IORING_ENTER_GETEVENTS);
    while (rc < 0 && errno == EINTR);
    b->calls++;
    if (rc < 0) break;
  }
  /* Could not wait for these: one may still send its bytes some time after
   * this, so nobody may send behind it -- an error, and the caller closes. */
  for (unsigned i = 0; i < submitted; i++)
    if (!b->ent[i].done) {
      b->ent[i].done = true;
      b->ent[i].res = -EIO;
    }
  b->why_not = "sends did not complete inline";
  ring_close(b); /* closing the ring cancels anything still in it */
}

static void run_uring(sendbatch_t *b) {
  unsigned tail = *b->sq_tail;
  for (unsigned i = 0; i < b->n; i++) {
    const entry_t *e = &b->ent[i];
    struct io_uring_sqe *q = sqe_next(b, &tail);
    q->fd = e->fd;
    q->user_data = i + 1;
    q->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    if (e->niov == 1) {
      q->opcode = IORING_OP_SEND;
      q->addr = (uint64_t)(uintptr_t)b->iov[i][0].iov_base;
      q->len = (uint32_t)b->iov[i][0].iov_len;
    } else {
      b->msg[i] = (struct msghdr){.msg_iov = b->iov[i], .msg_iovlen = e->niov};
      q->opcode = IORING_OP_SENDMSG;
      q->addr = (uint64_t)(uintptr_t)&b->msg[i];
      q->len = 1;
    }
  }
  __atomic_store_n(b->sq_tail, tail, __ATOMIC_RELEASE);
  int rc;
  do rc = uring_enter(b->ring, b->n, 0, 0);
  while (rc < 0 && errno == EINTR);
  b->calls++;
  if (rc < 0) { /* nothing was consumed (EAGAIN, EBUSY: no room): take them back */
    __atomic_store_n(b->sq_tail, __atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    run_plain(b);
    return;
  }
  unsigned submitted = (unsigned)rc, got = reap(b);
  if (submitted < b->n) { /* the rest never reached the kernel */
    __atomic_store_n(b->sq_tail, __atomic_load_n(b->sq_head, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
  }
  if (got < submitted) cancel_rest(b, submitted, submitted - got);
  run_plain(b); /* any not submitted */
}

void sendbatch_run(sendbatch_t *b, sendbatch_cb *done, void *arg) {
  unsigned n = b->n;
  if (n == 0) return;
  b->sends += n;
  if (b->ring >= 0) run_uring(b);
  else run_plain(b);
  b->n = 0;
  for (unsigned i = 0; i < n; i++)
    done(b->ent[i].tag, b->iov[i], b->ent[i].niov, b->ent[i].res, arg);
}
