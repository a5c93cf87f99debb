/*
 * endpoint.c -- the HTTP listener: one acceptor actor per scheduler, each
 * with its own listening socket on the same port (SO_REUSEPORT), so the
 * kernel spreads connections over the cores and a socket's callbacks run on
 * the scheduler that owns it.
 *
 * A conn starts in HTTP: static files from web/, /healthz, /metrics (parsed
 * and answered by http.c).  GET /ws upgrades it (http.c for the handshake,
 * ws.c for framing) and asks the `sessions` supervisor for a session actor
 * on this scheduler.  From then on the conn queues the client's requests and
 * hands them to its session one at a time (conn_frame), and writes whatever
 * the session sends.  The conn keeps the session's durable state so that a
 * crashed session can be restarted on the same socket (endpoint.h).
 *
 * The acceptor owns its conns: its death closes them, and presence, which
 * monitors acceptors, ends their entries.
 */
#include "endpoint.h"

#include "dashboard.h"
#include "http.h"

#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PING_INTERVAL_MS 30000 /* issue: a ping every 30 s, close if no pong */
#define CLOSE_GRACE_MS 5000    /* a closing peer gets this long to answer */
#define MAX_SCHEDULERS 256
#define TABLE_BUCKETS 4096

typedef struct frame {
  struct frame *next;
  size_t len;
  char text[];
} frame_t;

struct conn {
  uint64_t id;
  struct conn *hnext; /* the acceptor's table */
  uv_tcp_t tcp;
  uv_timer_t timer; /* ping, then the close grace */
  act_pid_t acceptor;
  bool upgraded, closing, writing, timer_closed, tcp_closed;
  http_conn_t *http;  /* until the upgrade */
  ws_conn_t *ws;      /* after it */
  uv_write_t wreq;
  struct iovec iov[16];
  act_pid_t session;
  bool in_flight;     /* the head frame was handed to the session */
  frame_t *fhead, *ftail;
  size_t nframes, frame_bytes;
  conn_state_t st;
};

typedef struct acceptor {
  act_pid_t self;
  uv_tcp_t *listener; /* its own allocation: libuv holds it until the close
                          callback, after the acceptor's memory is gone */
  int sched;
  conn_t *table[TABLE_BUCKETS];
  size_t nconns;
} acceptor_t;

static acceptor_t *g_acceptors[MAX_SCHEDULERS]; /* each touched by its own thread */
static http_static_t g_static;
static bool g_static_open;
static _Atomic uint64_t g_conn_ids = 1;

static void conn_shutdown(conn_t *c);
static void flush_ws(conn_t *c);

/* ------------------------------------------------------------- table */

static acceptor_t *local_acceptor(void) {
  int s = act_scheduler_id();
  return s >= 0 && s < MAX_SCHEDULERS ? g_acceptors[s] : NULL;
}

static int sched_of(uint64_t id) { return (int)(id & 0xff); }

conn_t *conn_get(uint64_t id) {
  acceptor_t *a = local_acceptor();
  if (!a || sched_of(id) != a->sched) return NULL;
  for (conn_t *c = a->table[(id >> 8) % TABLE_BUCKETS]; c; c = c->hnext)
    if (c->id == id) return c->closing ? NULL : c;
  return NULL;
}

static void table_add(acceptor_t *a, conn_t *c) {
  conn_t **b = &a->table[(c->id >> 8) % TABLE_BUCKETS];
  c->hnext = *b;
  *b = c;
  a->nconns++;
}

static void table_del(acceptor_t *a, conn_t *c) {
  for (conn_t **pp = &a->table[(c->id >> 8) % TABLE_BUCKETS]; *pp; pp = &(*pp)->hnext)
    if (*pp == c) {
      *pp = c->hnext;
      a->nconns--;
      return;
    }
}

conn_state_t *conn_state(conn_t *c) { return &c->st; }
act_pid_t conn_acceptor(const conn_t *c) { return c->acceptor; }

/* ------------------------------------------------------------ frames */

/* The next request goes to the session only once the replies before it
 * have mostly left: replies are outside the push bound, and this is what
 * bounds them (a client that asks without reading stops being served). */
static void pump(conn_t *c) {
  if (c->in_flight || !c->session || !c->fhead || c->closing) return;
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
  f->next = NULL;
  f->len = len;
  memcpy(f->text, msg, len);
  f->text[len] = 0;
  if (c->ftail) c->ftail->next = f;
  else c->fhead = f;
  c->ftail = f;
  c->nframes++;
  c->frame_bytes += len;
  pump(c);
}

const char *conn_frame(conn_t *c, size_t *len) {
  if (!c->fhead) return NULL;
  *len = c->fhead->len;
  return c->fhead->text;
}

void conn_frame_done(conn_t *c) {
  frame_t *f = c->fhead;
  if (f) {
    c->fhead = f->next;
    if (!c->fhead) c->ftail = NULL;
    c->nframes--;
    c->frame_bytes -= f->len;
    free(f);
  }
  c->in_flight = false;
  c->st.head_crashed = false;
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

/* ------------------------------------------------------------ output */

static void on_ws_written(uv_write_t *req, int status) {
  conn_t *c = req->data;
  c->writing = false;
  ws_conn_output_done(c->ws);
  if (status < 0) {
    conn_shutdown(c);
    return;
  }
  flush_ws(c);
  pump(c); /* a request may have been waiting for the queue to drain */
}

static void flush_ws(conn_t *c) {
  if (c->tcp_closed || c->writing) return;
  size_t n = ws_conn_output(c->ws, c->iov, sizeof c->iov / sizeof c->iov[0]);
  if (n > 0) {
    c->writing = true;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, (uv_buf_t *)c->iov, (unsigned)n,
                 on_ws_written) < 0) {
      c->writing = false;
      ws_conn_output_done(c->ws);
      conn_shutdown(c);
    }
    return;
  }
  if (ws_conn_finished(c->ws)) conn_shutdown(c);
}

static bool after_send(conn_t *c, ws_status_t st) {
  if (st == WS_OVERFLOW) {
    tm_add(TM_SLOW_CLIENTS, 1);
    app_log(LOG_WARN, "conn %llx: client cannot keep up, closing with 1008",
            (unsigned long long)c->id);
    conn_close(c, WS_CLOSE_POLICY, NULL);
  }
  flush_ws(c);
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

bool conn_send_shared(conn_t *c, ws_shared_t *frame) {
  if (!c->ws || c->closing) return false;
  return after_send(c, ws_conn_send_shared(c->ws, frame));
}

/* ------------------------------------------------------------- close */

static void free_frames(conn_t *c) {
  while (c->fhead) {
    frame_t *f = c->fhead;
    c->fhead = f->next;
    free(f);
  }
  c->ftail = NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (h == (uv_handle_t *)&c->tcp) c->tcp_closed = true;
  else c->timer_closed = true;
  if (!c->tcp_closed || !c->timer_closed) return;
  if (c->ws) ws_conn_free(c->ws);
  free(c->http);
  free_frames(c);
  free(c);
}

/* The socket is done: tell the session and presence, and free it all. */
static void conn_shutdown(conn_t *c) {
  if (c->tcp_closed || uv_is_closing((uv_handle_t *)&c->tcp)) return;
  acceptor_t *a = local_acceptor();
  if (!c->closing) c->closing = true;
  if (a) table_del(a, c);
  if (c->upgraded) tm_add(TM_WS_OPEN, -1);
  if (c->session) act_send(c->session, CONN_CLOSED, NULL, 0);
  if (c->st.joined || c->upgraded) {
    presence_leave_t l = {c->id};
    act_send(act_whereis(APP_NAME_PRESENCE), PRESENCE_LEAVE, &l, sizeof l);
  }
  c->session = ACT_NOPID;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_grace_over(uv_timer_t *t) { conn_shutdown(t->data); }

/* The close handshake began (ours or the peer's): the session is done with
 * the socket, and the peer gets CLOSE_GRACE_MS to answer before we cut it.
 * The grace timer replaces the ping timer on the same handle. */
static void begin_closing(conn_t *c) {
  c->closing = true;
  if (c->session) act_send(c->session, CONN_CLOSED, NULL, 0);
  c->session = ACT_NOPID;
  uv_timer_start(&c->timer, on_grace_over, CLOSE_GRACE_MS, 0);
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

/* ------------------------------------------------------------- HTTP */

typedef struct http_write {
  uv_write_t req;
  conn_t *conn;
  bool close_after;
  char *bytes;
} http_write_t;

static void on_http_written(uv_write_t *req, int status) {
  http_write_t *w = (http_write_t *)req;
  conn_t *c = w->conn;
  bool close_after = w->close_after;
  free(w->bytes);
  free(w);
  if (status < 0 || close_after) conn_shutdown(c);
}

static void write_http(conn_t *c, http_buf_t *buf, bool close_after) {
  size_t len;
  char *bytes = http_buf_take(buf, &len);
  http_write_t *w = malloc(sizeof *w);
  if (!bytes || !w) {
    free(bytes);
    free(w);
    conn_shutdown(c);
    return;
  }
  if (close_after) c->closing = true;
  w->conn = c;
  w->close_after = close_after;
  w->bytes = bytes;
  uv_buf_t b = uv_buf_init(bytes, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_http_written) < 0) {
    free(bytes);
    free(w);
    conn_shutdown(c);
  }
}

static void start_session(conn_t *c) {
  act_child_spec_t spec;
  memset(&spec, 0, sizeof spec);
  spec.behaviour = session_behaviour();
  spec.args = (void *)(uintptr_t)c->id;
  spec.restart = ACT_TRANSIENT;
  spec.shutdown_ms = 1000;
  spec.scheduler = ACT_SCHED_ON(sched_of(c->id));
  spec.max_mailbox = 10000; /* pushes a slow session may hold; past it, restart */
  act_supervisor_start_child_async(act_whereis(APP_NAME_SESSIONS), &spec);
}

static void on_ping_tick(uv_timer_t *t) {
  conn_t *c = t->data;
  if (ws_conn_awaiting_pong(c->ws)) {
    app_log(LOG_INFO, "conn %llx: no pong in %d ms, closing", (unsigned long long)c->id,
            PING_INTERVAL_MS);
    conn_close(c, WS_CLOSE_GOING_AWAY, "ping timeout");
    return;
  }
  ws_conn_ping(c->ws, uv_now(t->loop));
  flush_ws(c);
}

static void upgrade(conn_t *c, const char *rest, size_t rest_len, bool dashboard) {
  c->upgraded = true;
  free(c->http);
  c->http = NULL;
  c->ws = ws_conn_new(on_text, c, uv_now(c->tcp.loop));
  if (!c->ws) {
    conn_shutdown(c);
    return;
  }
  tm_add(TM_WS_CONNECTIONS, 1);
  tm_add(TM_WS_OPEN, 1);
  uv_timer_start(&c->timer, on_ping_tick, PING_INTERVAL_MS, PING_INTERVAL_MS);
  if (dashboard) dashboard_start(c->id);
  else start_session(c);
  if (rest_len) {
    ws_conn_feed(c->ws, rest, rest_len, uv_now(c->tcp.loop));
    flush_ws(c);
  }
}

static bool is_head(const http_req_t *r) { return r->method == HTTP_HEAD; }

/* CHATTER_DEBUG=1 only: POST /debug/kill?name=NAME sends exit(kill) to a
 * registered actor, as observer's "kill process" would -- for the tests
 * and demos of what the supervisors do.  Never enabled by default. */
static void debug_kill(const http_req_t *r, http_buf_t *buf) {
  const char *name = strncmp(r->query, "name=", 5) == 0 ? r->query + 5 : "";
  bool ok = r->method == HTTP_POST && strlen(name) < ACT_NAME_MAX &&
            strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._") == strlen(name);
  act_pid_t pid = ok ? act_whereis(name) : ACT_NOPID;
  if (pid) {
    app_log(LOG_WARN, "debug: killing %s", name);
    act_exit(pid, act_reason(ACT_KILL));
  }
  static const char body[] = "killed\n";
  if (pid) http_response_text(buf, 200, "text/plain; charset=utf-8", body, sizeof body - 1,
                              r->keep_alive, false);
  else http_response_error(buf, ok ? 404 : 400, r->keep_alive, false);
}

/* One complete request.  Returns false when the conn left HTTP or closed. */
static bool route(conn_t *c, const char *rest, size_t rest_len) {
  http_req_t *r = &c->http->req;
  http_buf_t buf;
  http_buf_init(&buf);
  tm_add(TM_HTTP_REQUESTS, 1);
  bool dashboard = dashboard_is_ws(r->path); /* dashboard.c: /dashboard/ws */
  if (dashboard && !dash_origin_ok(r->origin, r->host)) { /* another site's page */
    http_response_error(&buf, 403, false, false);
    write_http(c, &buf, true);
    return false;
  }
  if (strcmp(r->path, "/ws") == 0 || dashboard) {
    int st = http_ws_handshake(r, &buf);
    write_http(c, &buf, st != 101);
    if (st == 101) upgrade(c, rest, rest_len, dashboard);
    return false;
  }
  if (dashboard_is_page(r->path)) strcpy(r->path, DASHBOARD_PAGE);
  if (strcmp(r->path, "/debug/kill") == 0 && getenv("CHATTER_DEBUG")) {
    debug_kill(r, &buf);
  } else if (strcmp(r->path, "/healthz") == 0) {
    bool ok = app_healthy();
    http_response_text(&buf, ok ? 200 : 503, "text/plain; charset=utf-8",
                       ok ? "ok" : "unavailable", ok ? 2 : 11, r->keep_alive, is_head(r));
  } else if (strcmp(r->path, "/metrics") == 0) {
    size_t len;
    char *body = telemetry_render(&len);
    http_response_text(&buf, body ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8",
                       body ? body : "", body ? len : 0, r->keep_alive, is_head(r));
    free(body);
  } else {
    http_serve_static(&g_static, r, &buf);
  }
  write_http(c, &buf, !r->keep_alive);
  return r->keep_alive;
}

static void feed_http(conn_t *c, const char *data, size_t len) {
  while (len > 0 && c->http && !c->closing) {
    http_feed_result_t res;
    size_t n = http_conn_feed(c->http, data, len, &res);
    data += n;
    len -= n;
    if (res == HTTP_FEED_ERROR) {
      http_buf_t buf;
      http_buf_init(&buf);
      http_response_error(&buf, c->http->error_status, false, false);
      write_http(c, &buf, true);
      return;
    }
    if (res != HTTP_FEED_REQUEST) return;
    if (!route(c, data, len)) return;
  }
}

/* ------------------------------------------------------------- reads */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static _Thread_local char slab[64 * 1024]; /* one read at a time per thread */
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

static void on_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* The source address as PROTOCOL.md's rate-limit key: an IPv4 address as is,
 * an IPv6 address as its /64 (one subscriber usually holds a whole /64). */
static void peer_key(uv_tcp_t *t, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  snprintf(out, cap, "?");
  if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) {
    uv_ip4_name((struct sockaddr_in *)&ss, out, cap);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 s6 = *(struct sockaddr_in6 *)&ss;
    memset(&s6.sin6_addr.s6_addr[8], 0, 8);
    char a[INET6_ADDRSTRLEN];
    uv_ip6_name(&s6, a, sizeof a);
    size_t n = strnlen(a, sizeof a);
    if (n + 4 > cap) return;
    memcpy(out, a, n);
    memcpy(out + n, "/64", 4);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  acceptor_t *a = server->data;
  if (status < 0) return;
  conn_t *c = calloc(1, sizeof *c);
  http_conn_t *h = c ? malloc(sizeof *h) : NULL;
  if (!c || !h) {
    free(c);
    free(h);
    return;
  }
  c->http = h;
  http_conn_init(h);
  c->id = (atomic_fetch_add(&g_conn_ids, 1) << 8) | (uint64_t)a->sched;
  c->acceptor = act_self();
  c->st.rl_tokens = 10;
  uv_tcp_init(server->loop, &c->tcp);
  uv_timer_init(server->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    c->closing = true;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  peer_key(&c->tcp, c->st.peer, sizeof c->st.peer);
  table_add(a, c);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read_cb);
}

/* libuv callbacks run outside any actor turn: run them as the acceptor, so
 * that requests carry its pid and a crash ends only the acceptor. */
typedef struct { uv_stream_t *stream; ssize_t n; const uv_buf_t *buf; int status; } io_ev_t;

static void connection_as_acceptor(void *arg) {
  io_ev_t *ev = arg;
  on_connection(ev->stream, ev->status);
}

static void on_connection_cb(uv_stream_t *server, int status) {
  io_ev_t ev = {server, 0, NULL, status};
  act_run_as(((acceptor_t *)server->data)->self, connection_as_acceptor, &ev);
}

static void read_as_acceptor(void *arg) {
  io_ev_t *ev = arg;
  on_read(ev->stream, ev->n, ev->buf);
}

static void on_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  io_ev_t ev = {s, n, buf, 0};
  conn_t *c = s->data;
  if (act_run_as(c->acceptor, read_as_acceptor, &ev) != ACT_OK) on_read(s, n, buf);
}

/* ---------------------------------------------------------- acceptor */

static int listen_fd(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  const char *host = getenv("HOST");
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (host && strcmp(host, "0.0.0.0") == 0) sa.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

static void free_handle(uv_handle_t *h) { free(h); }

static void close_all(void *arg) {
  acceptor_t *a = arg;
  for (size_t b = 0; b < TABLE_BUCKETS; b++)
    while (a->table[b]) conn_shutdown(a->table[b]);
  if (a->listener) uv_close((uv_handle_t *)a->listener, free_handle);
  g_acceptors[a->sched] = NULL;
}

static int acc_init(void *args, void **state) {
  (void)args;
  acceptor_t *a = act_alloc(sizeof *a);
  if (!a) return ACT_ENOMEM;
  memset(a, 0, sizeof *a);
  *state = a;
  a->sched = act_scheduler_id();
  a->self = act_self();
  if (!g_static_open) return ACT_EINVAL;
  int fd = listen_fd(app_config()->port);
  if (fd < 0) {
    app_log(LOG_ERROR, "cannot listen on port %d: %s", app_config()->port, strerror(-fd));
    return ACT_EINVAL;
  }
  a->listener = malloc(sizeof *a->listener);
  if (!a->listener) {
    close(fd);
    return ACT_ENOMEM;
  }
  uv_tcp_init(act_loop(), a->listener);
  a->listener->data = a;
  g_acceptors[a->sched] = a;
  act_defer(close_all, a); /* from here on, the listener is closed on exit */
  uv_tcp_open(a->listener, fd);
  if (uv_listen((uv_stream_t *)a->listener, 1024, on_connection_cb) < 0) return ACT_EINVAL;
  return ACT_OK;
}

static void notice_take_over(act_msg_t *m) {
  const conn_notice_t *n = m->data;
  conn_t *c = conn_get(n->conn_id);
  if (!c) return;
  c->st.joined = false;
  c->st.token[0] = 0;
  conn_send_str(c, proto_enc_error(NULL, PROTO_TAKEN_OVER, "another tab took this name over"));
  if (c->session) act_send(c->session, CONN_TAKEN_OVER, NULL, 0);
}

static void acc_handle(void *state, act_msg_t *m) {
  (void)state;
  if (m->type == CONN_TAKE_OVER_NOTICE) notice_take_over(m);
  /* ACT_MSG_SUP_REPLY: a session was started (or not: the conn's first
   * request will then wait; the supervisor logs why) */
}

static const act_behaviour_t behaviour = {"acceptor", acc_init, acc_handle, NULL};
const act_behaviour_t *acceptor_behaviour(void) { return &behaviour; }

int endpoint_static_open(const char *root) {
  int rc = http_static_open(&g_static, root);
  g_static_open = rc == 0;
  return rc;
}
