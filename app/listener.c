/*
 * listener.c -- the listening socket and the accept policy (issue 7 item 1).
 *
 * Each acceptor listens on its own socket bound to the same port
 * (SO_REUSEPORT), watched with a uv_poll_t so that accepting is ours: libuv's
 * own accept loop keeps one spare descriptor per loop for EMFILE and, with
 * several loops, spins in accept4() once the process runs out (measured: two
 * threads at 150% CPU, 53,809 failed accept4() calls in 3 s, never
 * recovering).  The policy, the same on every loop:
 *
 *   - LISTENER_MAX_CONNS: at most listener_max_conns() sockets are held,
 *     process-wide: CHATTER_MAX_CONNS, by default RLIMIT_NOFILE minus
 *     CHATTER_FD_RESERVE (64) descriptors kept for the database pool, static
 *     files and /healthz.  Past it, a new connection takes the place of the
 *     oldest idle HTTP connection (no request under way) on this loop, or,
 *     if there is none, is answered 503 and closed at once.
 *   - CHATTER_MAX_CONNS_PER_ADDR (1024; 0 = no cap): connections held per
 *     source address (IPv6 by /64); past it, 429 and closed at once.
 *     Loopback (127/8) is not counted unless CHATTER_CAP_LOOPBACK=1: a
 *     reverse proxy and a local load test both come from there, and a cap
 *     on them would be a cap on everyone.
 *   - accept4() failing with EMFILE/ENFILE (the reserve was not enough): up
 *     to LISTENER_EVICT_BATCH idle conns are given up and polling stops until
 *     their descriptors are back (1 ms); with none to give up, until the next
 *     conn closes on this loop or LISTENER_RETRY_MS: at most 10 failed
 *     accept4() calls per second per loop when nothing can be freed.
 *   - at most LISTENER_ACCEPT_BATCH accepts per wake-up, so that a flood of
 *     connections cannot starve the loop's reads.
 *
 * Kind: part of the acceptor actor (endpoint.c); runs in its callbacks.
 */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Kernel queue of connections not yet accepted; Linux caps it at
 * net.core.somaxconn (4,096 on Debian 12's kernels).  A connection that
 * finds it full is not refused: its handshake's last ACK is dropped and the
 * client sees its request answered 1, 3 or 7 s later (SYN-ACK
 * retransmissions).  Issue 6's storm (5,000 clients back at once) measured
 * exactly that with 1,024: half of them waited 7 s. */
#define LISTENER_BACKLOG 4096
/* Accepts per wake-up before the loop's other work: about 10 us each (the
 * descriptor, a conn, its read start), so 512 cost about 5 ms, and a
 * storm of 5,000 reconnects is taken in 10 loop turns instead of 78 (each
 * turn may be a fan-out of 50 ms or more when the server is loaded). */
#define LISTENER_ACCEPT_BATCH 512
#define LISTENER_RETRY_MS 100     /* after EMFILE, try again this much later */
#define LISTENER_EVICT_BATCH 32   /* idle conns given up per EMFILE (nginx: 32) */
#define ADDR_BUCKETS 4096         /* per-address counts: hash buckets */

struct listener {
  uv_poll_t poll;
  uv_timer_t retry;
  int fd;
  acceptor_t *acc;
  bool paused, poll_closed, timer_closed;
  uint64_t last_warn_ms; /* refusals are logged at most once a second */
};

/* ------------------------------------------------------- process counts */

static _Atomic long g_open;       /* sockets held by conns, all loops */
static _Atomic long g_max_conns;  /* computed once, at the first listener */

/* Relaxed: a count polled by the drain (main.c); nothing is read through it. */
long endpoint_open_conns(void) { return atomic_load_explicit(&g_open, memory_order_relaxed); }

long listener_max_conns(void) {
  long m = atomic_load_explicit(&g_max_conns, memory_order_relaxed);
  if (m) return m;
  const app_config_t *cfg = app_config();
  if (cfg->max_conns > 0) {
    m = cfg->max_conns;
  } else {
    struct rlimit rl;
    long lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                   ? (long)rl.rlim_cur : 1L << 20;
    m = lim - cfg->fd_reserve;
    if (m < 1) m = 1; /* a limit below the reserve still serves someone */
  }
  atomic_store_explicit(&g_max_conns, m, memory_order_relaxed);
  return m;
}

/* One source address's connections, in a chained hash under one mutex: it is
 * taken twice per connection (accept, close), never per message. */
typedef struct addr_count {
  struct addr_count *next;
  int n;
  char key[48];
} addr_count_t;

static addr_count_t *g_addrs[ADDR_BUCKETS];
static pthread_mutex_t g_addrs_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t addr_hash(const char *k) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ull;
  return (size_t)(h % ADDR_BUCKETS);
}

static bool addr_counted(const char *key) {
  const app_config_t *cfg = app_config();
  return cfg->max_conns_per_addr > 0 && (cfg->cap_loopback || strncmp(key, "127.", 4) != 0);
}

/* Counts one more connection from key; false (and nothing counted) past the cap. */
static bool addr_acquire(const char *key) {
  int cap = app_config()->max_conns_per_addr;
  if (!addr_counted(key)) return true;
  bool ok = true;
  pthread_mutex_lock(&g_addrs_lock);
  addr_count_t **b = &g_addrs[addr_hash(key)], *e = *b;
  while (e && strcmp(e->key, key) != 0) e = e->next;
  if (!e && (e = calloc(1, sizeof *e)) != NULL) {
    snprintf(e->key, sizeof e->key, "%s", key);
    e->next = *b;
    *b = e;
  }
  if (!e || e->n >= cap) ok = false;
  else e->n++;
  pthread_mutex_unlock(&g_addrs_lock);
  return ok;
}

static void addr_release(const char *key) {
  if (!addr_counted(key)) return;
  pthread_mutex_lock(&g_addrs_lock);
  for (addr_count_t **pp = &g_addrs[addr_hash(key)]; *pp; pp = &(*pp)->next) {
    addr_count_t *e = *pp;
    if (strcmp(e->key, key) != 0) continue;
    if (--e->n <= 0) {
      *pp = e->next;
      free(e);
    }
    break;
  }
  pthread_mutex_unlock(&g_addrs_lock);
}

void listener_release(const char *peer) {
  atomic_fetch_sub_explicit(&g_open, 1, memory_order_relaxed);
  addr_release(peer);
}

/* ------------------------------------------------------------ accepting */

/* The source address as PROTOCOL.md's rate-limit key: an IPv4 address as is,
 * an IPv6 address as its /64 (one subscriber usually holds a whole /64). */
void listener_peer_key(const struct sockaddr_storage *ss, char *out, size_t cap) {
  snprintf(out, cap, "?");
  if (ss->ss_family == AF_INET) {
    uv_ip4_name((const struct sockaddr_in *)ss, out, cap);
  } else if (ss->ss_family == AF_INET6) {
    struct sockaddr_in6 s6 = *(const struct sockaddr_in6 *)ss;
    memset(&s6.sin6_addr.s6_addr[8], 0, 8);
    char a[64];
    uv_ip6_name(&s6, a, sizeof a);
    size_t n = strnlen(a, sizeof a);
    if (n + 4 > cap) return;
    memcpy(out, a, n);
    memcpy(out + n, "/64", 4);
  }
}

/* Answers a connection we will not keep, without reading from it, and closes
 * it: one send() on the fresh socket, whose buffer is empty. */
static void refuse(listener_t *l, int fd, int status, const char *why, const char *peer) {
  act_buf_t b = ACT_BUF_INIT;
  if (http_response_error(&b, status, false, false) == 0) {
    ssize_t n = send(fd, b.p, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n; /* best effort: the socket is closed either way */
  }
  act_buf_free(&b);
  close(fd);
  uint64_t now = uv_now(l->poll.loop);
  if (now - l->last_warn_ms >= 1000 || !l->last_warn_ms) {
    l->last_warn_ms = now;
    app_log(LOG_WARN, "refusing connections (%s, %d): e.g. from %s", why, status, peer);
  }
}

static void on_readable(uv_poll_t *p, int status, int events);

static void on_retry(uv_timer_t *t) { listener_resume(t->data); }

static void pause_accepting(listener_t *l, uint64_t ms) {
  if (l->paused) return;
  l->paused = true;
  uv_poll_stop(&l->poll);
  uv_timer_start(&l->retry, on_retry, ms, 0);
}

void listener_resume(listener_t *l) {
  if (!l || !l->paused || uv_is_closing((uv_handle_t *)&l->poll)) return;
  l->paused = false;
  uv_timer_stop(&l->retry);
  uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void accept_some(listener_t *l) {
  long max = listener_max_conns();
  for (int i = 0; i < LISTENER_ACCEPT_BATCH && !l->paused; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* Out of descriptors despite the reserve: give idle conns up and
         * wait for their descriptors (closed at the end of this loop turn)
         * instead of asking again at once; with none to give up, wait
         * LISTENER_RETRY_MS or for the next conn to close. */
        int evicted = 0;
        while (evicted < LISTENER_EVICT_BATCH && conn_evict_idle(l->acc)) evicted++;
        pause_accepting(l, evicted ? 1 : LISTENER_RETRY_MS);
        uint64_t now = uv_now(l->poll.loop);
        if (now - l->last_warn_ms >= 1000 || !l->last_warn_ms) {
          l->last_warn_ms = now;
          app_log(LOG_WARN, "accept: %s; pausing for %d ms", strerror(e), LISTENER_RETRY_MS);
        }
      }
      return; /* EAGAIN: the queue is empty */
    }
    char peer[CONN_PEER_MAX];
    listener_peer_key(&ss, peer, sizeof peer);
    if (atomic_load_explicit(&g_open, memory_order_relaxed) >= max &&
        !conn_evict_idle(l->acc)) {
      refuse(l, fd, 503, "connection limit reached", peer);
      continue;
    }
    if (!addr_acquire(peer)) {
      refuse(l, fd, 429, "too many connections from one address", peer);
      continue;
    }
    atomic_fetch_add_explicit(&g_open, 1, memory_order_relaxed);
    conn_open(l->acc, fd, peer);
  }
}

/* libuv callbacks run outside any actor turn: run them as the acceptor, so
 * that requests carry its pid and a crash ends only the acceptor. */
static void accept_as_acceptor(void *arg) { accept_some(arg); }

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  listener_t *l = p->data;
  if (status < 0) return;
  if (act_run_as(l->acc->self, accept_as_acceptor, l) != ACT_OK) accept_some(l);
}

/* ------------------------------------------------------------ the socket */

static int listen_fd(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (strcmp(app_config()->host, "0.0.0.0") == 0) sa.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, LISTENER_BACKLOG) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

listener_t *listener_open(acceptor_t *a, int *err) {
  listener_max_conns(); /* fix the cap before the first accept */
  int fd = listen_fd(app_config()->port);
  if (fd < 0) {
    *err = -fd;
    return NULL;
  }
  listener_t *l = calloc(1, sizeof *l);
  if (!l) {
    close(fd);
    *err = ENOMEM;
    return NULL;
  }
  l->fd = fd;
  l->acc = a;
  uv_loop_t *loop = act_loop();
  int rc = uv_poll_init_socket(loop, &l->poll, fd);
  if (rc < 0) {
    close(fd);
    free(l);
    *err = -rc;
    return NULL;
  }
  uv_timer_init(loop, &l->retry);
  l->poll.data = l;
  l->retry.data = l;
  uv_poll_start(&l->poll, UV_READABLE, on_readable);
  return l;
}

/* The listener lives in its own allocation until both handles' close
 * callbacks, which come after the acceptor's memory is gone. */
static void on_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  if (h == (uv_handle_t *)&l->poll) l->poll_closed = true;
  else l->timer_closed = true;
  if (!l->poll_closed || !l->timer_closed) return;
  free(l);
}

/* The socket is closed here, not in on_closed: from the moment this returns
 * a new connect is refused (the SIGTERM drain tells the log so), instead of
 * waiting in the backlog of a socket nobody accepts from.  uv_close has
 * taken the descriptor out of epoll synchronously (only the callback is
 * deferred) and a poll handle never closes it itself, so libuv is done with
 * the number before another thread can be given it again. */
void listener_close(listener_t *l) {
  if (!l) return;
  uv_poll_stop(&l->poll);
  uv_timer_stop(&l->retry);
  uv_close((uv_handle_t *)&l->poll, on_closed);
  uv_close((uv_handle_t *)&l->retry, on_closed);
  close(l->fd);
  l->fd = -1;
}
