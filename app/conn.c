/*
 * conn.c -- one client socket: its reads and writes, its bounds and its
 * timers, from accept to close, in HTTP and then as a WebSocket; and the
 * session-facing calls of endpoint.h.
 *
 * Bounds held here (README "Bounds"; issue 7 items 2 to 4):
 *   CHATTER_IDLE_TIMEOUT_MS (10 s)      a new connection that sends nothing
 *   CHATTER_HEADER_TIMEOUT_MS (10 s)    from a request's first byte to its
 *                                       end (slowloris): 408, closed
 *   CHATTER_KEEPALIVE_TIMEOUT_MS (60 s) between requests on a kept-alive one
 *   CHATTER_SEND_TIMEOUT_MS (30 s)      bytes waiting for the peer with none
 *                                       taken for this long: closed (1008 on
 *                                       a WebSocket), whatever is queued --
 *                                       pushes, replies and snapshots alike
 *   CONN_HTTP_MAX_UNSENT (256 KiB)      HTTP response bytes not yet taken by
 *                                       the kernel; past it the conn stops
 *                                       reading (back-pressure), so pipelined
 *                                       requests wait in the peer's socket,
 *                                       not in our memory
 *   CONN_HTTP_MAX_STASH (64 KiB)        bytes read but not yet parsed while
 *                                       stopped: at most one read
 *   CONN_MAX_QUEUED_FRAMES/BYTES        WebSocket requests waiting for the
 *                                       session (endpoint.h): 1008
 *   WS_OUTBOUND_MAX (ws.h)              pushes queued: 1008
 *   CHATTER_WS_SNDBUF (256 KiB)         the kernel's send buffer of a
 *                                       WebSocket (SO_SNDBUF; the kernel
 *                                       doubles it for its bookkeeping).
 *                                       Autotuned, a socket that never reads
 *                                       holds 3.9 MB of 230-byte pushes in
 *                                       the kernel before one is queued here:
 *                                       kernel memory per slow reader, and
 *                                       at 92 KB/s 40 s before WS_OUTBOUND_MAX
 *                                       can close it.  256 KiB is two
 *                                       `joined` replies of 500 messages.
 *
 * Timers.  A WebSocket's ping is due PING_INTERVAL_MS after its last one,
 * always the same interval, so the acceptor keeps its WebSockets on one list
 * in the order their pings are due (a conn is appended when pinged: O(1),
 * no sorting) and one uv_timer_t per scheduler (the pinger) fires for the
 * head.  Every other deadline -- in HTTP the nearest of the conn's state
 * (http_rearm), as a WebSocket the send deadline while a write is stalled,
 * while closing the grace -- is one uv_timer_t per conn, allocated when set
 * and closed when no longer needed: an idle joined WebSocket holds no timer
 * (152 bytes each, plus malloc's 8, at 19,000 sockets 3 MB).
 *
 * The write path (issue 6): a frame sent to a WebSocket is not written at
 * once; the conn goes on its acceptor's dirty list, and one uv_prepare_t,
 * run by every uv_run of the scheduler (after a batch of actor turns, before
 * polling), writes each dirty conn's queue with one send: the frames of a
 * batch leave together, straight from their (shared) buffers, and the
 * sends of up to SENDBATCH_MAX conns leave in one system call (sendbatch.c,
 * io_uring).  A write the kernel takes whole costs no uv_write_t, no
 * callback and no epoll_ctl; only the rest goes to a uv_write.  Measured with bench/load.mjs
 * (300 sessions, 10 senders x 20 messages = 60,000 deliveries, 1 thread,
 * strace -c): see the commit that brought it.
 *
 * Thread rule (endpoint.h): a conn is touched only on its scheduler's thread.
 *
 * Kind: part of the acceptor actor (endpoint.c); runs in its callbacks.
 */
#include "act_debug.h"
#include "conn.h"
#include "dashboard.h"
#include "queue.h"
#include "presence.h"
#include "sendbatch.h"
#include "session.h"
#include "telemetry.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PING_INTERVAL_MS /* -D only to see the pinger at work quickly */
#define PING_INTERVAL_MS 30000 /* a ping every 30 s, close if no pong */
#endif
#define CLOSE_GRACE_MS 5000    /* a closing peer gets this long to answer */
#define DRAIN_CLOSE_REASON "server shutting down" /* with 1001 (main.c's drain) */
#define CONN_HTTP_MAX_UNSENT (256u * 1024)
#define CONN_READ_SLAB (64u * 1024) /* one read, per thread, shared by its conns */
#define CONN_HTTP_MAX_STASH CONN_READ_SLAB
#define CONN_WS_IOV SENDBATCH_IOV /* buffers per write */

typedef struct frame {
  act_qnode_t node;       /* in conn_t.frames (runtime/queue.h) */
  size_t len;
  char text[];
} frame_t;

/* An HTTP response the kernel did not take whole: the rest, in flight. */
typedef struct http_write {
  uv_write_t req;
  conn_t *conn;
  size_t len;
  char *bytes;
} http_write_t;

/* A conn's place in one of the acceptor's lists (conn.h conn_list_t). */
typedef struct conn_link {
  struct conn *prev, *next;
} conn_link_t;

struct conn {
  uint64_t id;
  struct conn *hnext;          /* the acceptor's table */
  conn_link_t idle;            /* the acceptor's idle list */
  uv_tcp_t tcp;
  /* the nearest deadline but the ping (see the top): its own allocation,
   * held only while one is set -- an idle WebSocket has none */
  uv_timer_t *timer;
  conn_link_t ping;            /* the acceptor's ping list, by ping_due_ms */
  act_pid_t acceptor;
  /* the flags and small counts side by side: spread between the wider
   * fields they left 18 bytes of holes (gdb ptype /o), 16 once rounded */
  bool upgraded, closing, writing, ping_listed, tcp_closed, idle_listed;
  bool reading;                /* uv_read_start in force */
  bool dirty;                  /* on the acceptor's dirty list */
  bool close_after_write;      /* HTTP: Connection: close, then close */
  bool in_flight;              /* WebSocket: the head frame was handed to the session */
  bool diff_queued;            /* a presence_diff waits for the flush: stamp st.diff_at_ms */
  bool sending;                /* in the acceptor's send batch (flush_dirty) */
  uint32_t nrequests;          /* HTTP requests answered */
  conn_link_t dirty_link;      /* the acceptor's dirty list */
  http_conn_t *http;           /* until the upgrade */
  ws_conn_t *ws;               /* after it */
  /* HTTP state */
  size_t http_unsent;          /* bytes in uv_writes not yet completed */
  char *stash;                 /* read but not parsed while stopped */
  uint32_t stash_len;          /* <= CONN_HTTP_MAX_STASH (one read) */
  /* WebSocket requests waiting for the session: <= CONN_MAX_QUEUED_FRAMES
   * and CONN_MAX_QUEUED_BYTES (endpoint.h), so 32 bits each hold them */
  uint32_t nframes, frame_bytes;
  uint64_t opened_ms, req_started_ms, last_active_ms;
  /* output progress, both phases: when the kernel last took bytes */
  uint64_t progress_ms;
  uint64_t ping_due_ms;
  /* WebSocket (the uv_write_t, 192 bytes, exists only while the kernel
   * cannot take a write whole: nothing of it is held per idle socket) */
  act_pid_t session;
  act_queue_t frames;     /* frame_t waiting for the session, oldest first */
  conn_state_t st;
};

static void conn_shutdown(conn_t *c);
static void flush_ws(conn_t *c);
static void feed_http(conn_t *c, const char *data, size_t len);
static void on_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static uint64_t now_ms(const conn_t *c) { return uv_now(c->tcp.loop); }
uint64_t conn_id(const conn_t *c) { return c->id; }
size_t conn_record_bytes(void) { return sizeof(conn_t); }

/* ------------------------------------------------------------- table */

static int sched_of(uint64_t id) { return (int)(id & 0xff); }

conn_t *conn_get(uint64_t id) {
  acceptor_t *a = endpoint_local_acceptor();
  if (!a || sched_of(id) != a->sched) return NULL;
  for (conn_t *c = a->table[(id >> 8) % ENDPOINT_TABLE_BUCKETS]; c; c = c->hnext)
    if (c->id == id) return c->closing ? NULL : c;
  return NULL;
}

static void table_add(acceptor_t *a, conn_t *c) {
  conn_t **b = &a->table[(c->id >> 8) % ENDPOINT_TABLE_BUCKETS];
  c->hnext = *b;
  *b = c;
  a->nconns++;
}

static void table_del(acceptor_t *a, conn_t *c) {
  for (conn_t **pp = &a->table[(c->id >> 8) % ENDPOINT_TABLE_BUCKETS]; *pp; pp = &(*pp)->hnext)
    if (*pp == c) {
      *pp = c->hnext;
      a->nconns--;
      return;
    }
}

/* ------------------------------------------------- the acceptor's lists */

/* off: offsetof(conn_t, the list's link).  Push at the tail, remove from
 * anywhere, each O(1); the caller keeps the conn's "listed" flag. */
static conn_link_t *link_at(conn_t *c, size_t off) { return (conn_link_t *)((char *)c + off); }

static void clist_push(conn_list_t *l, conn_t *c, size_t off) {
  conn_link_t *k = link_at(c, off);
  k->prev = l->tail;
  k->next = NULL;
  if (l->tail) link_at(l->tail, off)->next = c;
  else l->head = c;
  l->tail = c;
}

static void clist_del(conn_list_t *l, conn_t *c, size_t off) {
  conn_link_t *k = link_at(c, off);
  if (k->prev) link_at(k->prev, off)->next = k->next;
  else l->head = k->next;
  if (k->next) link_at(k->next, off)->prev = k->prev;
  else l->tail = k->prev;
  k->prev = k->next = NULL;
}

/* The idle list: HTTP conns with no request under way and nothing unsent. */
static void idle_del(conn_t *c) {
  acceptor_t *a = endpoint_local_acceptor();
  if (!c->idle_listed || !a) return;
  clist_del(&a->idle, c, offsetof(conn_t, idle));
  c->idle_listed = false;
}

static void idle_add(conn_t *c) {
  acceptor_t *a = endpoint_local_acceptor();
  if (c->idle_listed || !a || c->closing || c->upgraded) return;
  clist_push(&a->idle, c, offsetof(conn_t, idle));
  c->idle_listed = true;
}

/* The ping list: the acceptor's open WebSockets, oldest ping_due_ms first.
 * Each is appended with now + PING_INTERVAL_MS, never earlier than the
 * tail's, so the order holds without a search. */
static void ping_del(acceptor_t *a, conn_t *c) {
  if (!c->ping_listed || !a) return;
  clist_del(&a->ping, c, offsetof(conn_t, ping));
  c->ping_listed = false;
}

static void on_pinger(uv_timer_t *t);

static void ping_add(acceptor_t *a, conn_t *c) {
  if (c->ping_listed || !a || c->closing) return;
  clist_push(&a->ping, c, offsetof(conn_t, ping));
  c->ping_listed = true;
  if (a->pinger && !uv_is_active((uv_handle_t *)a->pinger)) /* it was empty */
    uv_timer_start(a->pinger, on_pinger, PING_INTERVAL_MS, 0);
}

bool conn_evict_idle(acceptor_t *a) {
  conn_t *c = a->idle.head;
  if (!c) return false;
  conn_shutdown(c); /* takes it off the list */
  return true;
}

void conn_close_all(acceptor_t *a) {
  for (size_t b = 0; b < ENDPOINT_TABLE_BUCKETS; b++)
    while (a->table[b]) conn_shutdown(a->table[b]);
}

conn_state_t *conn_state(conn_t *c) { return &c->st; }
act_pid_t conn_acceptor(const conn_t *c) { return c->acceptor; }

/* ------------------------------------------------------------ frames */

/* The next request goes to the session only once the replies before it
 * have mostly left: a client that asks without reading stops being served,
 * and the send timeout closes it. */
static void pump(conn_t *c) {
  if (c->in_flight || !c->session || act_queue_empty(&c->frames) || c->closing) return;
  if (c->ws && ws_conn_queued_bytes(c->ws) >= WS_OUTBOUND_MAX) return;
  c->in_flight = true;
  conn_frame_t f = {c->id};
  act_send(c->session, CONN_FRAME, &f, sizeof f);
}

static void on_text(void *user, const char *msg, size_t len) {
  conn_t *c = user;
  if (c->nframes >= CONN_MAX_QUEUED_FRAMES || c->frame_bytes + len > CONN_MAX_QUEUED_BYTES) {
    app_log(LOG_WARN, "conn %llx: too many requests queued, closing",
            (unsigned long long)c->id);
    conn_close(c, WS_CLOSE_POLICY, "too many requests in flight");
    return;
  }
  frame_t *f = malloc(sizeof *f + len + 1);
  if (!f) {
    conn_close(c, WS_CLOSE_INTERNAL, "out of memory");
    return;
  }
  f->len = len;
  memcpy(f->text, msg, len);
  f->text[len] = 0;
  act_queue_push(&c->frames, &f->node);
  c->nframes++;
  c->frame_bytes += (uint32_t)len;
  pump(c);
}

const char *conn_frame(conn_t *c, size_t *len) {
  if (act_queue_empty(&c->frames)) return NULL;
  frame_t *f = ACT_QUEUE_DATA(c->frames.head, frame_t, node);
  *len = f->len;
  return f->text;
}

void conn_frame_done(conn_t *c) {
  act_qnode_t *n = act_queue_pop(&c->frames);
  if (n) {
    frame_t *f = ACT_QUEUE_DATA(n, frame_t, node);
    c->nframes--;
    c->frame_bytes -= (uint32_t)f->len;
    free(f);
  }
  c->in_flight = false;
  c->st.head_crashed = false;
  acceptor_t *a = endpoint_local_acceptor();
  if (a && a->draining) { /* the reply is queued: the close frame follows it */
    conn_close(c, WS_CLOSE_GOING_AWAY, DRAIN_CLOSE_REASON);
    return;
  }
  pump(c);
}

void conn_attach(conn_t *c, act_pid_t session) {
  c->session = session;
  c->in_flight = false; /* a request a crashed session held is redelivered */
  c->st.session_starts++;
  pump(c);
}

void conn_detach(conn_t *c, act_pid_t session) {
  if (c->session != session) return;
  c->session = ACT_NOPID;
  c->in_flight = false;
}

/* ------------------------------------------------------- WebSocket output */

/* The tick: the next ping, or sooner the send deadline if bytes wait. */
static void on_ws_tick(uv_timer_t *t);

static void free_handle(uv_handle_t *h);
static void conn_shutdown(conn_t *c);

/* Sets the conn's timer (allocated on first use); false: out of memory, and
 * the conn is shut down. */
static bool timer_set(conn_t *c, uv_timer_cb cb, uint64_t delay) {
  if (!c->timer) {
    c->timer = malloc(sizeof *c->timer);
    if (!c->timer) {
      conn_shutdown(c);
      return false;
    }
    uv_timer_init(c->tcp.loop, c->timer);
    c->timer->data = c;
  }
  uv_timer_start(c->timer, cb, delay, 0);
  return true;
}

/* The conn needs no timer now: its handle is closed and freed (uv_close
 * stops it; its close callback never touches the conn). */
static void timer_drop(conn_t *c) {
  if (!c->timer) return;
  uv_close((uv_handle_t *)c->timer, free_handle);
  c->timer = NULL;
}

/* The send deadline, only while a write is stalled (the ping is the
 * pinger's): an idle WebSocket holds no timer. */
static void ws_rearm(conn_t *c) {
  if (c->closing || c->tcp_closed) return;
  if (!c->writing) { /* only a write the kernel would not take can stall */
    timer_drop(c);
    return;
  }
  uint64_t now = now_ms(c);
  uint64_t due = c->progress_ms + (uint64_t)app_config()->send_timeout_ms;
  timer_set(c, on_ws_tick, due > now ? due - now : 0);
}

static void on_ws_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  c->writing = false;
  ws_conn_output_done(c->ws);
  if (status < 0) {
    conn_shutdown(c);
    return;
  }
  c->progress_ms = now_ms(c);
  ws_rearm(c); /* no send deadline, unless flush_ws stalls again */
  flush_ws(c);
  pump(c); /* a request may have been waiting for the queue to drain */
}

/* The conn's descriptor, if bytes may go to it straight from here: only
 * while libuv holds no write of its own for this stream, so that bytes
 * leave in order (else the caller queues behind that write). */
static bool send_fd(conn_t *c, uv_os_fd_t *fd) {
  return !c->tcp.write_queue_size && !uv_fileno((uv_handle_t *)&c->tcp, fd);
}

/* One non-blocking send of the queued frames (sendbatch_send_now), as
 * uv_try_write would do it with the socket call.  Returns bytes taken, 0
 * when the kernel took none or send_fd says wait, or a negative libuv
 * error. */
static int try_send(conn_t *c, struct iovec *iov, size_t n) {
  uv_os_fd_t fd;
  if (!send_fd(c, &fd)) return 0;
  ssize_t w = sendbatch_send_now(fd, iov, n);
  /* CONN_WS_IOV frames of a few MiB at most: far below INT_MAX */
  return w >= 0 ? (int)w : uv_translate_sys_error((int)-w);
}

/* diff_at_ms's clock: monotonic ms, kept mod 2^32 (differences of two
 * stamps are exact for 49 days) */
static uint32_t diff_clock_ms(void) { return (uint32_t)(uv_hrtime() / 1000000); }

uint32_t conn_ms_since_diff(conn_t *c) { return diff_clock_ms() - c->st.diff_at_ms; }

/* What a send of iov[0..n) that took w bytes (w < 0: a libuv error) leaves
 * to do: true when the kernel took it all and the conn may send on; false
 * when the conn is shut down or a uv_write now holds the rest. */
static bool after_try(conn_t *c, struct iovec *iov, size_t n, int w) {
  if (w < 0) {
    ws_conn_output_done(c->ws);
    conn_shutdown(c);
    return false;
  }
  size_t done = (size_t)w, i = 0;
  if (done > 0) c->progress_ms = now_ms(c);
  while (i < n && done >= iov[i].iov_len) done -= iov[i++].iov_len;
  if (i == n) {
    ws_conn_output_done(c->ws);
    return true;
  }
  iov[i].iov_base = (char *)iov[i].iov_base + done;
  iov[i].iov_len -= done;
  uv_write_t *req = malloc(sizeof *req);
  if (!req) {
    ws_conn_output_done(c->ws);
    conn_shutdown(c);
    return false;
  }
  c->writing = true;
  c->progress_ms = now_ms(c); /* the send timeout counts from here */
  req->data = c;
  if (uv_write(req, (uv_stream_t *)&c->tcp, (uv_buf_t *)&iov[i], (unsigned)(n - i),
               on_ws_written) < 0) {
    free(req);
    c->writing = false;
    ws_conn_output_done(c->ws);
    conn_shutdown(c);
    return false;
  }
  ws_rearm(c); /* the send deadline now counts */
  return false;
}

/* A presence_diff leaves now, maybe some ms after the session handed it
 * over: its window counts from here. */
static void stamp_diff(conn_t *c) {
  if (!c->diff_queued) return;
  c->diff_queued = false;
  c->st.diff_at_ms = diff_clock_ms();
}

/* After the last send: a conn whose close frame has left is shut down; a
 * request may have been waiting for the queue to drain. */
static void flush_end(conn_t *c) {
  if (!c->tcp_closed && !c->writing && ws_conn_finished(c->ws)) {
    conn_shutdown(c);
    return;
  }
  pump(c);
}

/* Writes what ws.c has queued: try_send first (the kernel usually takes a
 * push whole: no request, no callback, no change to the poll set), then one
 * uv_write for whatever it did not take. */
static void flush_ws(conn_t *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp) || c->sending) return;
  stamp_diff(c);
  while (!c->tcp_closed && !c->writing) {
    struct iovec iov[CONN_WS_IOV];
    size_t n = ws_conn_output(c->ws, iov, CONN_WS_IOV);
    if (n == 0) break;
    if (!after_try(c, iov, n, try_send(c, iov, n))) return;
  }
  flush_end(c);
}

static void dirty_del(conn_t *c) {
  acceptor_t *a = endpoint_local_acceptor();
  if (!c->dirty || !a) return;
  clist_del(&a->dirty, c, offsetof(conn_t, dirty_link));
  c->dirty = false;
}

static void on_flush(uv_prepare_t *h);

/* Written at the end of this batch of turns (on_flush), with the others. */
static void mark_dirty(conn_t *c) {
  acceptor_t *a = endpoint_local_acceptor();
  if (!a || !a->flusher) {
    flush_ws(c);
    return;
  }
  if (c->dirty || c->writing || c->sending) return; /* a write in flight flushes on completion */
  if (!a->dirty.head) uv_prepare_start(a->flusher, on_flush);
  clist_push(&a->dirty, c, offsetof(conn_t, dirty_link));
  c->dirty = true;
}

/* One send of a batch has its result: on as flush_ws would go on. */
static void on_batch_sent(void *tag, struct iovec *iov, size_t n, ssize_t res, void *arg) {
  (void)arg;
  conn_t *c = tag;
  c->sending = false;
  /* nothing that closes a conn runs between its add and its result: an
   * earlier entry's result shuts down only its own conn */
  ACT_DEBUG_ASSERT(!uv_is_closing((uv_handle_t *)&c->tcp));
  int w = res >= 0 ? (int)res : uv_translate_sys_error((int)-res);
  if (after_try(c, iov, n, w)) flush_ws(c); /* more than CONN_WS_IOV frames, or a close */
}

/* Every dirty conn's first CONN_WS_IOV frames go in batches of
 * SENDBATCH_MAX sends per system call (sendbatch.c: a third less CPU per
 * push at chat's rates); what a conn has beyond them, and a conn that
 * cannot be batched now, goes by flush_ws. */
static void flush_dirty(void *arg) {
  acceptor_t *a = arg;
  unsigned long long calls0, sends0, calls, sends;
  sendbatch_counts(a->batch, &calls0, &sends0);
  while (a->dirty.head) {
    while (a->dirty.head && !sendbatch_full(a->batch)) {
      conn_t *c = a->dirty.head;
      dirty_del(c);
      uv_os_fd_t fd;
      if (uv_is_closing((uv_handle_t *)&c->tcp) || c->tcp_closed || c->writing || !send_fd(c, &fd)) {
        flush_ws(c);
        continue;
      }
      stamp_diff(c);
      struct iovec iov[CONN_WS_IOV];
      size_t n = ws_conn_output(c->ws, iov, CONN_WS_IOV);
      if (n == 0) {
        flush_end(c);
        continue;
      }
      c->sending = true;
      sendbatch_add(a->batch, fd, iov, n, c);
    }
    sendbatch_run(a->batch, on_batch_sent, a);
  }
  sendbatch_counts(a->batch, &calls, &sends);
  if (sends != sends0) {
    tm_add(TM_PUSH_SENDS, (long)(sends - sends0));
    tm_add(TM_PUSH_SYSCALLS, (long)(calls - calls0));
  }
  uv_prepare_stop(a->flusher);
}

static void on_flush(uv_prepare_t *h) {
  acceptor_t *a = h->data;
  if (!a) return;
  if (act_run_as(a->self, flush_dirty, a) != ACT_OK) flush_dirty(a);
}

static void free_handle(uv_handle_t *h) { free(h); }

int conn_flusher_open(acceptor_t *a) {
  a->batch = sendbatch_new(app_config()->io_uring);
  if (!a->batch) return ACT_ENOMEM;
  const char *why_not;
  if (sendbatch_uring(a->batch, &why_not))
    app_log(LOG_DEBUG, "pushes leave by io_uring, up to %d sends per system call", SENDBATCH_MAX);
  else
    app_log(*why_not ? LOG_INFO : LOG_DEBUG, "pushes leave by one send(2) each%s%s",
            *why_not ? ": " : " (CHATTER_IO_URING=0)", why_not);
  a->flusher = malloc(sizeof *a->flusher);
  if (!a->flusher) return ACT_ENOMEM;
  uv_prepare_init(act_loop(), a->flusher);
  a->flusher->data = a;
  a->pinger = malloc(sizeof *a->pinger);
  if (!a->pinger) return ACT_ENOMEM; /* the flusher is closed on exit */
  uv_timer_init(act_loop(), a->pinger);
  a->pinger->data = a;
  /* started by ping_add when the list gains its first WebSocket */
  return ACT_OK;
}

void conn_flusher_close(acceptor_t *a) {
  sendbatch_free(a->batch);
  a->batch = NULL;
  if (!a->flusher) return;
  a->flusher->data = NULL;
  uv_close((uv_handle_t *)a->flusher, free_handle);
  a->flusher = NULL;
  if (!a->pinger) return;
  a->pinger->data = NULL;
  uv_close((uv_handle_t *)a->pinger, free_handle);
  a->pinger = NULL;
}

static bool after_send(conn_t *c, ws_status_t st) {
  if (st == WS_OVERFLOW) {
    tm_add(TM_SLOW_CLIENTS, 1);
    app_log(LOG_WARN, "conn %llx: client cannot keep up, closing with 1008",
            (unsigned long long)c->id);
    conn_close(c, WS_CLOSE_POLICY, NULL);
    return false;
  }
  mark_dirty(c);
  return st == WS_OK;
}

bool conn_send_json(conn_t *c, const char *json, size_t len) {
  if (!c->ws || c->closing) return false;
  return after_send(c, ws_conn_send_reply(c->ws, json, len));
}

bool conn_send_snapshot(conn_t *c, ws_shared_t *frame) {
  if (!c->ws || c->closing) return false;
  return after_send(c, ws_conn_send_reply_shared(c->ws, frame));
}

bool conn_backlogged(conn_t *c) {
  return c->ws && ws_conn_queued_bytes(c->ws) >= WS_OUTBOUND_MAX;
}

bool conn_send_str(conn_t *c, proto_str s) {
  if (!s.ptr) {
    conn_close(c, WS_CLOSE_INTERNAL, "out of memory");
    return false;
  }
  bool ok = conn_send_json(c, s.ptr, s.len);
  free(s.ptr);
  return ok;
}

bool conn_send_shared(conn_t *c, ws_shared_t *frame, size_t from_part) {
  if (!c->ws || c->closing) return false;
  return after_send(c, ws_conn_send_shared_from(c->ws, frame, from_part));
}

bool conn_send_diff(conn_t *c, ws_shared_t *frame) {
  c->st.diff_at_ms = diff_clock_ms();
  c->diff_queued = true;
  return conn_send_shared(c, frame, 0);
}

/* ------------------------------------------------------------- close */

static void free_frames(conn_t *c) {
  for (act_qnode_t *n; (n = act_queue_pop(&c->frames));) free(ACT_QUEUE_DATA(n, frame_t, node));
}

static void on_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->tcp_closed = true;
  if (c->ws) ws_conn_free(c->ws);
  free(c->http);
  free(c->stash);
  free_frames(c);
  free(c);
}

/* The socket is done: tell the session and presence, give the descriptor
 * back to the accept policy, and free it all. */
static void conn_shutdown(conn_t *c) {
  if (c->tcp_closed || uv_is_closing((uv_handle_t *)&c->tcp)) return;
  acceptor_t *a = endpoint_local_acceptor();
  c->closing = true;
  idle_del(c);
  dirty_del(c);
  if (a) table_del(a, c);
  if (c->upgraded) tm_add(TM_WS_OPEN, -1);
  if (c->session) act_send(c->session, CONN_CLOSED, NULL, 0);
  if (c->st.joined || c->upgraded) {
    presence_leave_t l = {c->id};
    act_send(act_whereis(APP_NAME_PRESENCE), PRESENCE_LEAVE, &l, sizeof l);
  }
  c->session = ACT_NOPID;
  ping_del(a, c);
  timer_drop(c);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  listener_release(c->st.peer);
  if (a) listener_resume(a->listener); /* a descriptor is coming back */
}

static void on_grace_over(uv_timer_t *t) { conn_shutdown(t->data); }

/* The close handshake began (ours or the peer's): the session is done with
 * the socket, and the peer gets CLOSE_GRACE_MS to answer before we cut it.
 * The grace timer replaces the tick on the same handle. */
static void begin_closing(conn_t *c) {
  ACT_DEBUG_ASSERT(c->ws && !c->closing); /* WebSocket -> closing, once */
  c->closing = true;
  if (c->session) act_send(c->session, CONN_CLOSED, NULL, 0);
  c->session = ACT_NOPID;
  ping_del(endpoint_local_acceptor(), c);
  timer_set(c, on_grace_over, CLOSE_GRACE_MS);
}

void conn_close(conn_t *c, uint16_t code, const char *why) {
  if (!c->ws) {
    conn_shutdown(c);
    return;
  }
  if (!c->closing) {
    ws_conn_close(c->ws, code, why);
    begin_closing(c);
  }
  flush_ws(c);
}

void conn_session_failed(uint64_t id, int err) {
  conn_t *c = conn_get(id);
  if (!c) return;
  app_log(LOG_ERROR, "conn %llx: no session could be started (%s), closing with 1011",
          (unsigned long long)id, act_strerror(err));
  conn_close(c, WS_CLOSE_INTERNAL, "no session");
}

void conn_close_upgraded(acceptor_t *a, uint16_t code, const char *why) {
  for (size_t b = 0; b < ENDPOINT_TABLE_BUCKETS; b++)
    for (conn_t *c = a->table[b], *next; c; c = next) {
      next = c->hnext; /* conn_close may take c out of the table */
      if (c->upgraded && !c->closing) conn_close(c, code, why);
    }
}

/* The SIGTERM drain.  HTTP: a conn whose response is still being written
 * closes once it is, or CLOSE_GRACE_MS later if the peer does not read it
 * (close_after_write also stops parsing what follows; closing keeps
 * http_rearm off the timer); any other closes now (idle, or a request not
 * yet complete: nobody was promised an answer).  WebSocket: 1001 now unless
 * its session holds a request, whose reply conn_frame_done sends first;
 * force: 1001 now. */
void conn_drain(acceptor_t *a, bool force) {
  for (size_t b = 0; b < ENDPOINT_TABLE_BUCKETS; b++)
    for (conn_t *c = a->table[b], *next; c; c = next) {
      next = c->hnext; /* closing takes c out of the table */
      if (c->closing) continue;
      if (!c->upgraded && !c->http_unsent) {
        conn_shutdown(c);
      } else if (!c->upgraded) {
        c->close_after_write = true;
        c->closing = true;
        timer_set(c, on_grace_over, CLOSE_GRACE_MS);
      } else if (force || !c->in_flight) {
        conn_close(c, WS_CLOSE_GOING_AWAY, DRAIN_CLOSE_REASON);
      }
    }
}

size_t conn_owed_retrack(acceptor_t *a, int64_t incarnation, uint64_t *out, size_t cap) {
  size_t n = 0;
  for (size_t b = 0; b < ENDPOINT_TABLE_BUCKETS; b++)
    for (conn_t *c = a->table[b]; c; c = c->hnext)
      if (!c->closing && c->st.joined &&
          (c->st.presence_version >> PRESENCE_INCARNATION_SHIFT) < incarnation) {
        if (n < cap) out[n] = c->id;
        n++;
      }
  return n;
}

void conn_take_over(uint64_t id) {
  conn_t *c = conn_get(id);
  if (!c) return;
  c->st.joined = false;
  c->st.token[0] = 0;
  conn_send_str(c, proto_enc_error(NULL, PROTO_TAKEN_OVER, "another tab took this name over"));
  if (c->session) act_send(c->session, CONN_TAKEN_OVER, NULL, 0);
}

static void on_ws_tick(uv_timer_t *t) {
  conn_t *c = t->data;
  uint64_t now = now_ms(c);
  /* Not writing: whatever is queued leaves in this loop turn (on_flush). */
  if (c->writing && now - c->progress_ms >= (uint64_t)app_config()->send_timeout_ms) {
    tm_add(TM_SLOW_CLIENTS, 1);
    app_log(LOG_WARN, "conn %llx: %zu bytes unread for %d ms, closing with 1008",
            (unsigned long long)c->id, ws_conn_queued_bytes(c->ws),
            app_config()->send_timeout_ms);
    conn_close(c, WS_CLOSE_POLICY, "not reading");
    return;
  }
  ws_rearm(c);
}

/* The pinger's sweep: every WebSocket whose ping is due, from the head of
 * the list; one unanswered since the last is closed, the others pinged and
 * moved to the tail.  Then the pinger waits for the new head. */
static void ping_due(void *arg) {
  acceptor_t *a = arg;
  uint64_t now = uv_now(a->pinger->loop);
  for (conn_t *c; (c = a->ping.head) && c->ping_due_ms <= now;) {
    ping_del(a, c);
    if (ws_conn_awaiting_pong(c->ws)) {
      app_log(LOG_INFO, "conn %llx: no pong in %d ms, closing", (unsigned long long)c->id,
              PING_INTERVAL_MS);
      conn_close(c, WS_CLOSE_GOING_AWAY, "ping timeout");
      continue;
    }
    ws_conn_ping(c->ws, now);
    c->ping_due_ms = now + PING_INTERVAL_MS;
    ping_add(a, c);
    flush_ws(c); /* may close it, which takes it off the list */
  }
  if (a->ping.head) {
    uint64_t due = a->ping.head->ping_due_ms;
    uv_timer_start(a->pinger, on_pinger, due > now ? due - now : 0, 0);
  }
}

static void on_pinger(uv_timer_t *t) {
  acceptor_t *a = t->data;
  if (!a) return;
  if (act_run_as(a->self, ping_due, a) != ACT_OK) ping_due(a);
}

/* ------------------------------------------------------------- HTTP */

static void on_http_timer(uv_timer_t *t);

/* Arms the timer for the nearest deadline of the conn's HTTP state. */
static void http_rearm(conn_t *c) {
  if (c->closing || c->upgraded) return;
  const app_config_t *cfg = app_config();
  uint64_t due;
  if (c->http_unsent) due = c->progress_ms + (uint64_t)cfg->send_timeout_ms;
  else if (c->req_started_ms) due = c->req_started_ms + (uint64_t)cfg->header_timeout_ms;
  else if (c->nrequests == 0) due = c->opened_ms + (uint64_t)cfg->idle_timeout_ms;
  else due = c->last_active_ms + (uint64_t)cfg->keepalive_timeout_ms;
  uint64_t now = now_ms(c);
  timer_set(c, on_http_timer, due > now ? due - now : 0);
}

static void write_http(conn_t *c, act_buf_t *buf, bool close_after);

static void on_http_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  const app_config_t *cfg = app_config();
  uint64_t now = now_ms(c);
  if (c->http_unsent) {
    if (now - c->progress_ms < (uint64_t)cfg->send_timeout_ms) goto rearm;
    app_log(LOG_INFO, "conn %llx: %zu response bytes unread for %d ms, closing",
            (unsigned long long)c->id, c->http_unsent, cfg->send_timeout_ms);
  } else if (c->req_started_ms) {
    if (now - c->req_started_ms < (uint64_t)cfg->header_timeout_ms) goto rearm;
    app_log(LOG_INFO, "conn %llx: request not complete in %d ms, 408",
            (unsigned long long)c->id, cfg->header_timeout_ms);
    act_buf_t buf = ACT_BUF_INIT;
    http_response_error(&buf, 408, false, false);
    write_http(c, &buf, true);
    return;
  } else {
    uint64_t since = c->nrequests ? c->last_active_ms : c->opened_ms;
    int limit = c->nrequests ? cfg->keepalive_timeout_ms : cfg->idle_timeout_ms;
    if (now - since < (uint64_t)limit) goto rearm;
  }
  conn_shutdown(c);
  return;
rearm:
  http_rearm(c);
}

/* The kernel took every byte of the conn's responses (or some: progress). */
static void http_output_progress(conn_t *c, size_t sent) {
  c->http_unsent -= sent;
  c->progress_ms = now_ms(c);
  if (c->http_unsent) return;
  c->last_active_ms = c->progress_ms;
  if (c->close_after_write) {
    conn_shutdown(c);
    return;
  }
  if (!c->req_started_ms) idle_add(c);
}

/* Below the bound again: parse what was stashed, then read again. */
static void http_resume(conn_t *c) {
  if (c->closing || c->upgraded || c->reading || c->http_unsent >= CONN_HTTP_MAX_UNSENT)
    return;
  char *s = c->stash;
  size_t n = c->stash_len;
  c->stash = NULL;
  c->stash_len = 0;
  if (s) {
    feed_http(c, s, n);
    free(s);
  }
  if (!c->closing && !c->upgraded && !c->stash && !c->reading) {
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read_cb);
  }
}

static void on_http_written(uv_write_t *req, int status) {
  http_write_t *w = (http_write_t *)req;
  conn_t *c = w->conn;
  size_t len = w->len;
  free(w->bytes);
  free(w);
  if (c->tcp_closed || uv_is_closing((uv_handle_t *)&c->tcp)) return;
  if (status < 0) {
    conn_shutdown(c);
    return;
  }
  http_output_progress(c, len);
  if (!c->closing) {
    http_resume(c);
    http_rearm(c);
  }
}

static void write_http(conn_t *c, act_buf_t *buf, bool close_after) {
  size_t len;
  char *bytes = act_buf_take(buf, &len);
  if (!bytes) {
    conn_shutdown(c);
    return;
  }
  if (close_after) c->close_after_write = true;
  idle_del(c);
  if (!c->http_unsent) c->progress_ms = now_ms(c); /* the send timeout counts from here */
  c->http_unsent += len;
  uv_buf_t b = uv_buf_init(bytes, (unsigned)len);
  int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (w == UV_EAGAIN) w = 0;
  if (w < 0) {
    free(bytes);
    conn_shutdown(c);
    return;
  }
  if ((size_t)w == len) {
    free(bytes);
    http_output_progress(c, len);
    return;
  }
  http_write_t *wr = malloc(sizeof *wr);
  if (!wr) {
    free(bytes);
    conn_shutdown(c);
    return;
  }
  if (w > 0) {
    c->http_unsent -= (size_t)w;
    c->progress_ms = now_ms(c);
  }
  wr->conn = c;
  wr->len = len - (size_t)w;
  wr->bytes = bytes;
  b = uv_buf_init(bytes + w, (unsigned)(len - (size_t)w));
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_http_written) < 0) {
    free(bytes);
    free(wr);
    conn_shutdown(c);
  }
}

static void upgrade(conn_t *c, const char *rest, size_t rest_len) {
  ACT_DEBUG_ASSERT(!c->upgraded && !c->closing && c->http); /* HTTP -> WebSocket, once */
  bool dashboard = dashboard_is_ws(c->http->req.path); /* dashboard.c */
  c->upgraded = true;
  idle_del(c);
  free(c->http);
  c->http = NULL;
  c->ws = ws_conn_new(on_text, c, now_ms(c));
  if (!c->ws) {
    conn_shutdown(c);
    return;
  }
  int sndbuf = app_config()->ws_sndbuf;
  if (sndbuf > 0) (void)uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf); /* best effort */
  tm_add(TM_WS_CONNECTIONS, 1);
  tm_add(TM_WS_OPEN, 1);
  c->ping_due_ms = now_ms(c) + PING_INTERVAL_MS;
  c->progress_ms = now_ms(c);
  timer_drop(c); /* HTTP's deadlines are over */
  ping_add(endpoint_local_acceptor(), c);
  if (dashboard) dashboard_start(conn_id(c));
  else endpoint_start_session(c);
  if (rest_len) {
    ws_conn_feed(c->ws, rest, rest_len, now_ms(c));
    flush_ws(c);
  }
}

/* Keeps the unparsed rest of a read while output is over its bound. */
static void stash(conn_t *c, const char *data, size_t len) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
  if (!len) return;
  c->stash = malloc(len); /* at most one read: CONN_HTTP_MAX_STASH */
  if (!c->stash) {
    conn_shutdown(c);
    return;
  }
  memcpy(c->stash, data, len);
  c->stash_len = (uint32_t)len;
}

static void feed_http(conn_t *c, const char *data, size_t len) {
  while (len > 0 && c->http && !c->closing && !c->close_after_write) {
    if (c->http_unsent >= CONN_HTTP_MAX_UNSENT) {
      stash(c, data, len); /* back-pressure: the peer must read first */
      break;
    }
    if (!c->req_started_ms) {
      c->req_started_ms = now_ms(c);
      idle_del(c);
    }
    http_feed_result_t res;
    size_t n = http_conn_feed(c->http, data, len, &res);
    data += n;
    len -= n;
    if (res == HTTP_FEED_ERROR) {
      act_buf_t buf = ACT_BUF_INIT;
      http_response_error(&buf, c->http->error_status, false, false);
      write_http(c, &buf, true);
      return;
    }
    if (res != HTTP_FEED_REQUEST) break;
    c->req_started_ms = 0;
    c->nrequests++;
    c->last_active_ms = now_ms(c);
    act_buf_t buf = ACT_BUF_INIT;
    route_action_t act = routes_answer(&c->http->req, &buf);
    write_http(c, &buf, act == ROUTE_CLOSE);
    if (act == ROUTE_UPGRADE) {
      if (!c->closing) {
        c->close_after_write = false;
        upgrade(c, data, len);
      }
      return;
    }
  }
  http_rearm(c);
}

/* ------------------------------------------------------------- reads */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static _Thread_local char slab[CONN_READ_SLAB]; /* one read at a time per thread */
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (n < 0) {
    conn_shutdown(c);
    return;
  }
  if (n == 0) return;
  if (!c->upgraded) {
    feed_http(c, buf->base, (size_t)n);
    return;
  }
  if (!c->ws) return;
  ws_status_t st = ws_conn_feed(c->ws, buf->base, (size_t)n, uv_now(s->loop));
  if (st == WS_NOMEM) {
    conn_shutdown(c);
    return;
  }
  if (st == WS_CLOSING && !c->closing) begin_closing(c); /* the peer's close, or 1009... */
  flush_ws(c);
}

/* libuv callbacks run outside any actor turn: run them as the acceptor. */
typedef struct { uv_stream_t *stream; ssize_t n; const uv_buf_t *buf; } read_ev_t;

static void read_as_acceptor(void *arg) {
  read_ev_t *ev = arg;
  on_read(ev->stream, ev->n, ev->buf);
}

static void on_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  read_ev_t ev = {s, n, buf};
  conn_t *c = s->data;
  if (act_run_as(c->acceptor, read_as_acceptor, &ev) != ACT_OK) on_read(s, n, buf);
}

static _Atomic uint64_t g_conn_ids = 1;

void conn_open(acceptor_t *a, int fd, const char *peer) {
  conn_t *c = calloc(1, sizeof *c);
  http_conn_t *h = c ? malloc(sizeof *h) : NULL;
  if (!c || !h || uv_tcp_init(act_loop(), &c->tcp) < 0) {
    free(c);
    free(h);
    close(fd);
    listener_release(peer);
    return;
  }
  c->http = h;
  http_conn_init(h);
  c->id = (atomic_fetch_add(&g_conn_ids, 1) << 8) | (uint64_t)a->sched;
  c->acceptor = a->self;
  c->st.rl_tokens = 10;
  snprintf(c->st.peer, sizeof c->st.peer, "%s", peer);
  c->tcp.data = c;
  table_add(a, c);
  if (uv_tcp_open(&c->tcp, fd) < 0) {
    close(fd);
    conn_shutdown(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->opened_ms = c->last_active_ms = now_ms(c);
  idle_add(c);
  c->reading = true;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read_cb);
  http_rearm(c);
}
