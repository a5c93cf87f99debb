/*
 * floor_gap.c -- the kernel's floor for one write() per delivery, at a given
 * cadence: what ../shared/floor/floor.c measures, with the time between two
 * rounds as a parameter instead of its fixed 2 ms.
 *
 * Why a cadence changes the floor: when a socket's data arrives after the
 * receiver has been idle longer than its retransmission timeout (200 ms at
 * least), the receiving kernel acknowledges it at once, from the softirq
 * that delivers it -- on loopback, the sender's core -- and the ACK is
 * processed there too (tcp_ack, the socket's backlog at release_sock).  At
 * floor.c's 2 ms rounds the receiver is never idle that long; its ACKs go
 * out when it reads, on its own core.  Measured on this machine (2,000
 * sockets, perf on the writer): tcp_ack and __release_sock take 0.9% and
 * 0.1% of the writer at 2 ms, 6.6% and 8% at 400 ms, and the CPU per write
 * rises from about 0.55-0.66 to 1.0-1.14 CPU-s per 100,000.  A chat server
 * delivering one message every 250 ms (the chat scenario's first stage) or
 * 500 ms (fanout) to each socket pays the second figure, whatever its code.
 *
 *   floor-gap N ROUNDS GAP_MS [poisson] [batched]
 *                                  (writer on the calling CPU; bench-chat
 *                                   pins it with taskset, the reader forks
 *                                   onto CPU 1 when there are two)
 *
 * With "poisson" the rounds start at random times, GAP_MS apart on average
 * (exponential gaps, start to start; a round that runs past the next start
 * is followed at once): what a socket of the chat scenario sees, where 200
 * senders' timers, each at its own phase, merge into random arrivals.  The
 * kernel charges for those: at a mean of 100 ms some 13% of a socket's gaps
 * are over the receiver's 200 ms, each answered by an immediate ACK, and the
 * short gaps gain nothing.  Measured here, 2,000 sockets, three runs each:
 * 1.025 to 1.064 CPU-s per 100k at a mean of 100 ms against 0.791 to 0.844
 * for fixed rounds the same distance apart.  The random gaps come from a
 * fixed seed, so two runs draw the same ones.
 *
 * With "batched" the writes of a round leave as the server's do since
 * issue 6's stop 20: SENDBATCH_MAX at a time in one system call, through
 * app/sendbatch.c itself (io_uring; one send(2) each where it is refused).
 * Still one send per delivery, and the same kernel work for each: what goes
 * is the crossing into the kernel and back, one per send without it.  A
 * server that batches is measured against this as well as against floor.c.
 *
 * Prints one line of key=value, the same keys as floor.c, plus gap_ms,
 * arrivals (fixed or poisson) and batch (sends per system call asked for: 1
 * or SENDBATCH_MAX; uring=0 when io_uring was refused).
 */
#include "sendbatch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME_BYTES 230 /* a message push of the size floor.c writes */

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(const struct rusage *r) {
  return (double)(r->ru_utime.tv_sec + r->ru_stime.tv_sec) +
         (double)(r->ru_utime.tv_usec + r->ru_stime.tv_usec) * 1e-6;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Exponential gaps of mean 1: -ln(U), U uniform in (0, 1] from xorshift64*
 * with a fixed seed (reproducible from run to run). */
static double exp_gap(void) {
  static uint64_t x = 0x9e3779b97f4a7c15u;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  double u = (double)((x * 0x2545f4914f6cdd1du) >> 11) / 9007199254740992.0; /* [0, 1) */
  return -log(1.0 - u);
}

/* The reader: n connections, drained until each reaches EOF. */
static void reader(const struct sockaddr_in *to, int n) {
  if (sysconf(_SC_NPROCESSORS_ONLN) > 1) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  for (int i = 0; i < n; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (const struct sockaddr *)to, sizeof *to)) die("connect");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev)) die("epoll_ctl");
  }
  static char sink[65536];
  struct epoll_event ready[256];
  for (int left = n; left > 0;) {
    int k = epoll_wait(ep, ready, 256, -1);
    for (int i = 0; i < k; i++)
      if (read(ready[i].data.fd, sink, sizeof sink) <= 0) {
        close(ready[i].data.fd);
        left--;
      }
  }
  _exit(0);
}

static void on_sent(void *tag, struct iovec *iov, size_t n, ssize_t res, void *arg) {
  (void)tag, (void)iov, (void)n, (void)arg;
  if (res != FRAME_BYTES) {
    fprintf(stderr, "floor-gap: a batched send took %zd of %d bytes\n", res, FRAME_BYTES);
    exit(1);
  }
}

int main(int argc, char **argv) {
  bool poisson = false, batched = false, usage = argc < 4;
  for (int i = 4; i < argc; i++) {
    if (strcmp(argv[i], "poisson") == 0) poisson = true;
    else if (strcmp(argv[i], "batched") == 0) batched = true;
    else usage = true;
  }
  if (usage) {
    fprintf(stderr, "usage: floor-gap N ROUNDS GAP_MS [poisson] [batched]\n");
    return 2;
  }
  int n = atoi(argv[1]), rounds = atoi(argv[2]);
  double gap_ms = atof(argv[3]);
  if (n < 1 || rounds < 1 || gap_ms < 0) {
    fprintf(stderr, "floor-gap: N and ROUNDS >= 1, GAP_MS >= 0\n");
    return 2;
  }
  struct rlimit rl;
  if (!getrlimit(RLIMIT_NOFILE, &rl)) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof addr;
  if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 4096) ||
      getsockname(ls, (struct sockaddr *)&addr, &alen))
    die("listen");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) reader(&addr, n);

  int *fds = malloc((size_t)n * sizeof *fds);
  if (!fds) die("malloc");
  for (int i = 0; i < n; i++) {
    if ((fds[i] = accept(ls, NULL, NULL)) < 0) die("accept");
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  sendbatch_t *batch = batched ? sendbatch_new(true) : NULL;
  if (batched && !batch) die("sendbatch_new");
  char frame[FRAME_BYTES];
  memset(frame, 'y', sizeof frame);
  frame[0] = (char)0x81; /* FIN + text, as a server frame starts */
  frame[1] = 126;
  long long gap_ns = (long long)(gap_ms * 1e6);
  struct timespec gap = {(time_t)(gap_ns / 1000000000), (long)(gap_ns % 1000000000)};
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  double total = 0, worst = 0, t0 = mono_s();
  for (int r = 0; r < rounds; r++) {
    double start = mono_s();
    if (batched) {
      struct iovec one = {frame, sizeof frame};
      for (int i = 0; i < n; i++) {
        if (sendbatch_full(batch)) sendbatch_run(batch, on_sent, NULL);
        sendbatch_add(batch, fds[i], &one, 1, NULL);
      }
      sendbatch_run(batch, on_sent, NULL);
    } else {
      for (int i = 0; i < n; i++)
        if (write(fds[i], frame, sizeof frame) != (ssize_t)sizeof frame) die("write");
    }
    double took = mono_s() - start;
    total += took;
    if (took > worst) worst = took;
    if (!poisson) {
      nanosleep(&gap, NULL);
      continue;
    }
    double wait = exp_gap() * gap_ms * 1e-3 - took; /* start to start */
    if (wait > 0) {
      struct timespec w = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
      nanosleep(&w, NULL);
    }
  }
  double wall = mono_s() - t0;
  getrusage(RUSAGE_SELF, &after);
  double deliveries = (double)n * rounds, cpu = cpu_s(&after) - cpu_s(&before);
  printf("floor-gap n=%d rounds=%d gap_ms=%g arrivals=%s batch=%d uring=%d deliveries=%.0f cpu_s_per_100k=%.3f "
         "round_ms_mean=%.2f round_ms_max=%.2f wall_s=%.2f\n",
         n, rounds, gap_ms, poisson ? "poisson" : "fixed", batched ? SENDBATCH_MAX : 1,
         batched && sendbatch_uring(batch, NULL), deliveries, cpu / deliveries * 1e5, total / rounds * 1e3,
         worst * 1e3, wall);
  sendbatch_free(batch);
  for (int i = 0; i < n; i++) close(fds[i]);
  waitpid(child, NULL, 0);
  free(fds);
  return 0;
}
