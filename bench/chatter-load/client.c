/*
 * client.c -- one simulated Chatter client per actor, in one worker process.
 *
 * Each client actor owns a libuv TCP handle on its scheduler's loop and speaks
 * protocol v2 over a WebSocket of its own framing (RFC 6455 client side: every
 * frame it sends is masked; the server's frames are unmasked).  It does the
 * handshake, `join`s with a name unique to the run, and, if it is a sender,
 * `send`s "L<run> <sender> <k> <stage> <t_us>" with client_id c<run>_<s>_<k>
 * on a timer whose rate the parent sets per stage.
 *
 * It reads only what it must: a frame's `"type":"` and, for a message push,
 * its `"seq":` and the content's prefix, with memmem; no JSON tree is built.
 * A presence_diff that spans reads is counted and skipped, not buffered.
 * The read buffer is one 64 KiB block per scheduler thread: a client keeps
 * bytes only for a frame that spans two reads (then in a buffer of its own,
 * freed once the frame is complete), so an idle client costs its struct
 * (about 200 bytes) plus libuv's handle.
 *
 * Per received message it sets bit k of its (session, sender) row in the
 * shared bitmap, so the parent can tell loss (acked but unset) and the client
 * itself tells duplicates (a push whose bit was set by an earlier push on the
 * same connection, with a seq not above the last) and order (seq not above
 * the last push's, bit unset).
 *
 * Storm: a dropped client resets its TCP connection (RST, as a dead network
 * would look), reconnects at once, joins with its token, catches up from the
 * highest seq it holds (paging while `more`), and re-sends the messages whose
 * `sent` it never got, with the same client_id.  It counts itself back when
 * all three are done.
 */
#include "load.h"

#include <act.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Messages from the worker's main thread (M_CONNECT, M_START_SENDING, M_DROP)
 * and from the actor to itself (ticks, delayed retries). */
enum { M_CONNECT = 1, M_START_SENDING, M_TICK, M_DROP, M_RETRY_JOIN, M_JOIN_NOW, M_RESEND, M_RESEND_NOW,
       M_SLOW_RESUME };
enum { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_JOINED, S_CLOSED };

#define REF_JOIN 4000000000u   /* refs of sends are k, below any of these */
#define REF_CATCHUP 4000000001u
#define REF_SLOW_PING 4000000002u /* a slow session's ping once it reads again */
#define SLOW_RCVBUF 4096 /* a slow session's SO_RCVBUF (the kernel doubles it) */
#define READ_BLOCK 65536
#define RETRY_MS 200           /* a join or send answered `unavailable` is retried after this */

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t conn;
  act_pid_t pid;
  load_maps_t *m;
  slot_stats_t *st;
  uint32_t idx;           /* session number in the run */
  int32_t sender;         /* -1 for a pure receiver */
  uint8_t state;
  bool slow, dropped, storm_pending, catching_up, reconnecting, closing;
  uint64_t t_connect, t_drop;
  int64_t last_seq;       /* highest seq held (pushes and catch-up) */
  int64_t last_push_seq;  /* on this connection */
  char token[LOAD_TOKEN_MAX];
  uint8_t *part;          /* a frame split across reads */
  size_t part_len, part_cap;
  uint64_t skip;          /* bytes still to come of a presence_diff being skipped */
  /* sender state */
  uint32_t next_k;
  uint64_t t_start;       /* the schedule's origin for this stage */
  uint32_t stage_k0;      /* k at the stage's origin */
  int tick_stage;
  uint64_t *sent_us;      /* [maxk]: when k was first sent; 0 = never */
  uint32_t unacked;
} client_t;

const char *const load_err_names[ERR_COUNT] = {
    "bad_request", "name_invalid", "name_taken", "already_joined", "taken_over",
    "not_joined", "content_invalid", "rate_limited", "unavailable", "other"};

const char *const load_close_names[CLOSE_KINDS] = {"1000", "1001", "1008", "1009", "1011", "other code",
                                                    "no close frame"};

static _Thread_local char read_block[READ_BLOCK];
static _Thread_local uint64_t rng_state;

uint64_t load_now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint32_t rnd(void) {
  if (!rng_state) rng_state = load_now_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)&rng_state;
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)rng_state;
}

static const load_cfg_t *cfg_of(client_t *c) { return &c->m->sh->cfg; }

/* ------------------------------------------------------------- writing */

typedef struct wreq { uv_write_t w; size_t len; char data[]; } wreq_t;

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

/* uv_try_write first: a write that completes at once needs no request and no
 * change to the poll set; only the rest is queued (one malloc). */
static void raw_write(client_t *c, const char *p, size_t n) {
  if (c->state == S_CLOSED || c->closing) return;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)n) return;
  if (r < 0 && r != UV_EAGAIN) return; /* the read side will see the error */
  size_t done = r > 0 ? (size_t)r : 0;
  wreq_t *q = malloc(sizeof *q + n - done);
  if (!q) return;
  q->len = n - done;
  memcpy(q->data, p + done, q->len);
  b = uv_buf_init(q->data, (unsigned)q->len);
  if (uv_write(&q->w, (uv_stream_t *)&c->tcp, &b, 1, on_written)) free(q);
}

/* One masked frame (FIN set).  Payloads here are small, so one stack buffer. */
static void ws_send(client_t *c, int opcode, const char *p, size_t n) {
  char f[4096 + 14];
  if (n > 4096) return;
  size_t h = 0;
  f[h++] = (char)(0x80 | opcode);
  if (n < 126) {
    f[h++] = (char)(0x80 | n);
  } else {
    f[h++] = (char)(0x80 | 126);
    f[h++] = (char)(n >> 8);
    f[h++] = (char)(n & 0xff);
  }
  uint32_t key = rnd();
  uint8_t mk[4];
  memcpy(mk, &key, 4);
  memcpy(f + h, mk, 4);
  h += 4;
  for (size_t i = 0; i < n; i++) f[h + i] = (char)(p[i] ^ mk[i & 3]);
  raw_write(c, f, h + n);
}

static void ws_text(client_t *c, const char *p, size_t n) { ws_send(c, 1, p, n); }

/* ------------------------------------------------------------ protocol */

static void send_join(client_t *c) {
  char b[256];
  int n;
  if (c->token[0])
    n = snprintf(b, sizeof b, "{\"type\":\"join\",\"ref\":%u,\"name\":\"L%08x_%u\",\"token\":\"%s\"}",
                 REF_JOIN, cfg_of(c)->run_id, c->idx, c->token);
  else
    n = snprintf(b, sizeof b, "{\"type\":\"join\",\"ref\":%u,\"name\":\"L%08x_%u\"}", REF_JOIN,
                 cfg_of(c)->run_id, c->idx);
  ws_text(c, b, (size_t)n);
}

/* --pad bytes of filler, " xxx...", after the fields, so that a message
 * weighs what a long chat line does (the slow scenario fills a socket sooner). */
static void send_msg(client_t *c, uint32_t k, int stage, uint64_t t_us) {
  char b[256 + LOAD_MAX_PAD];
  uint32_t run = cfg_of(c)->run_id, pad = cfg_of(c)->pad;
  size_t n = (size_t)snprintf(b, sizeof b, "{\"type\":\"send\",\"ref\":%u,\"content\":\"L%08x %d %u %d %" PRIu64,
                              k, run, c->sender, k, stage, t_us);
  if (pad) {
    b[n++] = ' ';
    memset(b + n, 'x', pad);
    n += pad;
  }
  n += (size_t)snprintf(b + n, sizeof b - n, "\",\"client_id\":\"c%08x_%d_%u\"}", run, c->sender, k);
  ws_text(c, b, n);
}

/* From `after`: after a drop, the highest seq held; then each page's last.
 * Not c->last_seq then: a push that came in meanwhile has raised it past
 * messages the next page must still bring (PROTOCOL.md lets pushes and the
 * `history` reply interleave; web/js/app.js catchUp does the same). */
static void send_catch_up(client_t *c, int64_t after) {
  char b[128];
  int n = snprintf(b, sizeof b, "{\"type\":\"catch_up\",\"ref\":%u,\"after\":%" PRId64 "}",
                   REF_CATCHUP, after);
  c->catching_up = true;
  ws_text(c, b, (size_t)n);
}

static bool bit_test_set(uint64_t *row, uint32_t k) {
  uint64_t m = 1ull << (k & 63);
  bool was = row[k >> 6] & m;
  row[k >> 6] |= m;
  return was;
}

static void storm_check_back(client_t *c) {
  if (!c->storm_pending || c->state != S_JOINED || c->catching_up || c->unacked) return;
  c->storm_pending = false;
  ctr_add(&c->st->storm_back, 1);
  hist_add(&c->st->recovery, load_now_us() - c->t_drop);
}

static int64_t parse_i64(const char *p, const char *end) {
  int64_t v = 0;
  bool neg = p < end && *p == '-';
  if (neg) p++;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
  return neg ? -v : v;
}

static const char *find(const char *p, const char *end, const char *lit, size_t n) {
  if (p >= end) return NULL;
  const char *f = memmem(p, (size_t)(end - p), lit, n);
  return f ? f + n : NULL;
}
#define FIND(p, end, lit) find((p), (end), lit, sizeof lit - 1)

/* Parse our content "L<run> s k g t[ pad]" at p (just after the opening quote):
 * sender, message number, stage, send time.  Returns false when it is not
 * this run's, or malformed, or out of the run's range. */
bool load_parse_content(uint32_t run, uint32_t senders, uint32_t maxk, const char *p, const char *end,
                        uint32_t *s, uint32_t *k, int *g, uint64_t *t) {
  static const char hex[] = "0123456789abcdef";
  char want[10]; /* "L%08x " without snprintf: once a delivery */
  want[0] = 'L';
  for (int i = 0; i < 8; i++) want[1 + i] = hex[(run >> (28 - 4 * i)) & 15];
  want[9] = ' ';
  if (end - p < 10 || memcmp(p, want, 10)) return false;
  p += 10;
  int64_t v[4];
  for (int i = 0; i < 4; i++) {
    if (p >= end || *p < '0' || *p > '9') return false;
    v[i] = parse_i64(p, end);
    while (p < end && *p >= '0' && *p <= '9') p++;
    if (i < 3) {
      if (p >= end || *p != ' ') return false;
      p++;
    } else if (p >= end || (*p != '"' && *p != ' ')) { /* ' ': --pad's filler follows */
      return false;
    }
  }
  if (v[0] < 0 || (uint64_t)v[0] >= senders || v[1] < 0 || (uint64_t)v[1] >= maxk || v[2] < 0) return false;
  *s = (uint32_t)v[0];
  *k = (uint32_t)v[1];
  *g = (int)(v[2] < LOAD_MAX_STAGES ? v[2] : LOAD_MAX_STAGES - 1);
  *t = (uint64_t)v[3];
  return true;
}

static bool parse_content(client_t *c, const char *p, const char *end, uint32_t *s, uint32_t *k,
                          int *g, uint64_t *t) {
  const load_cfg_t *cf = cfg_of(c);
  return load_parse_content(cf->run_id, cf->senders, cf->maxk, p, end, s, k, g, t);
}

/* A message push's seq, without parsing the JSON: the first "seq": in it. */
int64_t load_find_seq(const char *p, const char *end) {
  const char *q = FIND(p, end, "\"seq\":");
  return q ? parse_i64(q, end) : -1;
}

static void on_message_push(client_t *c, const char *p, const char *end) {
  int64_t seq = load_find_seq(p, end);
  const char *ct = FIND(p, end, "\"content\":\"");
  uint32_t s, k;
  int g;
  uint64_t t;
  if (seq > c->last_seq) c->last_seq = seq;
  if (!ct || !parse_content(c, ct, end, &s, &k, &g, &t)) {
    ctr_add(&c->st->other_pushes, 1);
    c->last_push_seq = seq > c->last_push_seq ? seq : c->last_push_seq;
    return;
  }
  if (c->idx >= cfg_of(c)->sessions) return; /* slow sessions keep no row */
  bool in_order = seq > c->last_push_seq;
  if (in_order) c->last_push_seq = seq;
  bool had = bit_test_set(recv_row(c->m, c->idx, s), k);
  if (had) {
    if (!in_order) ctr_add(&c->st->dups, 1);
    return; /* else: already caught up through history; the client dedups by id */
  }
  if (!in_order) ctr_add(&c->st->order, 1);
  uint64_t now = load_now_us();
  hist_add(&c->st->deliver[g], now > t ? now - t : 0);
  ctr_add(&c->st->deliveries, 1);
  ctr_add(&c->st->stage_deliveries[g], 1);
  if (cfg_of(c)->spread) {
    size_t i = (size_t)s * cfg_of(c)->maxk + k;
    _Atomic uint64_t *f = &c->m->first_us[i], *l = &c->m->last_us[i];
    uint64_t o = atomic_load_explicit(f, RELAXED);
    while ((o == 0 || now < o) && !atomic_compare_exchange_weak_explicit(f, &o, now, RELAXED, RELAXED)) {}
    o = atomic_load_explicit(l, RELAXED);
    while (now > o && !atomic_compare_exchange_weak_explicit(l, &o, now, RELAXED, RELAXED)) {}
  }
}

/* A catch_up's `history` reply: every message in it goes into the bitmap. */
static void on_history(client_t *c, const char *p, const char *end) {
  const char *q = p;
  int64_t page_last = -1;
  while ((q = FIND(q, end, "\"seq\":"))) {
    int64_t seq = parse_i64(q, end);
    if (seq > c->last_seq) c->last_seq = seq;
    if (seq > page_last) page_last = seq;
  }
  q = p;
  while ((q = FIND(q, end, "\"content\":\""))) {
    uint32_t s, k;
    int g;
    uint64_t t;
    if (c->idx < cfg_of(c)->sessions && parse_content(c, q, end, &s, &k, &g, &t) &&
        !bit_test_set(recv_row(c->m, c->idx, s), k)) {
      ctr_add(&c->st->catchup_msgs, 1);
      ctr_add(&c->st->stage_deliveries[g], 1);
    }
  }
  const char *more = FIND(p, end, "\"more\":");
  if (more && end - more >= 4 && !memcmp(more, "true", 4) && page_last >= 0) {
    send_catch_up(c, page_last);
    return;
  }
  c->catching_up = false;
  storm_check_back(c);
}

static int err_code(const char *p, const char *end) {
  const char *q = FIND(p, end, "\"code\":\"");
  if (!q) return ERR_OTHER;
  for (int i = 0; i < ERR_OTHER; i++) {
    size_t n = strlen(load_err_names[i]);
    if (end - q > (ptrdiff_t)n && !memcmp(q, load_err_names[i], n) && q[n] == '"') return i;
  }
  return ERR_OTHER;
}

static int64_t ref_of(const char *p, const char *end) {
  const char *q = FIND(p, end, "\"ref\":");
  return q ? parse_i64(q, end) : -1;
}

static void on_joined(client_t *c, const char *p, const char *end) {
  const char *t = FIND(p, end, "\"token\":\"");
  if (t) {
    const char *e = memchr(t, '"', (size_t)(end - t));
    size_t n = e ? (size_t)(e - t) : 0;
    if (n < sizeof c->token) {
      memcpy(c->token, t, n);
      c->token[n] = 0;
    }
  }
  bool first = c->state != S_JOINED && !c->reconnecting;
  c->state = S_JOINED;
  if (first) {
    ctr_add(&c->st->joined, 1);
    if (c->idx < cfg_of(c)->sessions) c->m->joined[c->idx] = 1;
    hist_add(&c->st->join, load_now_us() - c->t_connect);
    if (c->slow) uv_read_stop((uv_stream_t *)&c->tcp); /* never reads again */
    return;
  }
  /* back after a drop: catch up, then re-send what was never acknowledged */
  c->reconnecting = false;
  send_catch_up(c, c->last_seq);
  if (c->sender >= 0 && c->unacked) {
    for (uint32_t k = 0; k < c->next_k; k++) {
      if (!c->sent_us[k]) continue;
      uint64_t *ack = c->m->ack + (size_t)c->sender * c->m->words;
      if (ack[k >> 6] & (1ull << (k & 63))) continue;
      send_msg(c, k, atomic_load_explicit(&c->m->sh->stage, RELAXED), c->sent_us[k]);
      ctr_add(&c->st->resends, 1);
    }
  }
}

static void on_sent(client_t *c, const char *p, const char *end) {
  int64_t k = ref_of(p, end);
  if (c->sender < 0 || k < 0 || (uint64_t)k >= c->next_k) return;
  uint64_t *ack = c->m->ack + (size_t)c->sender * c->m->words;
  if (bit_test_set(ack, (uint32_t)k)) return; /* a re-send's second answer */
  c->unacked--;
  ctr_add(&c->st->acks, 1);
  /* the stage is the one the message was sent in, read back from its content */
  const char *ct = FIND(p, end, "\"content\":\"");
  uint32_t s, kk;
  int g = 0;
  uint64_t t;
  if (!ct || !parse_content(c, ct, end, &s, &kk, &g, &t)) g = 0;
  ctr_add(&c->st->stage_acks[g], 1);
  hist_add(&c->st->sent[g], load_now_us() - c->sent_us[k]);
  storm_check_back(c);
}

static void on_error(client_t *c, const char *p, const char *end) {
  int code = err_code(p, end);
  ctr_add(&c->st->errors[code], 1);
  int64_t ref = ref_of(p, end);
  if (ref == REF_JOIN) {
    if (code == ERR_UNAVAILABLE) {
      act_send(c->pid, M_RETRY_JOIN, NULL, 0);
    } else if (c->state != S_JOINED) {
      ctr_add(&c->st->join_failed, 1);
    }
  } else if (ref >= 0 && ref < (int64_t)c->next_k && code == ERR_UNAVAILABLE) {
    uint32_t k = (uint32_t)ref;
    act_send(c->pid, M_RESEND, &k, sizeof k);
  }
}

static void on_text(client_t *c, const char *p, size_t n) {
  const char *end = p + n;
  ctr_add(&c->st->frames_in, 1);
  const char *t = FIND(p, end, "\"type\":\"");
  if (!t) return;
  size_t left = (size_t)(end - t);
#define IS(lit) (left > sizeof lit - 1 && !memcmp(t, lit "\"", sizeof lit))
  if (IS("message")) {
    on_message_push(c, p, end);
  } else if (IS("sent")) {
    on_sent(c, p, end);
  } else if (IS("history")) {
    if (ref_of(p, end) == REF_CATCHUP) on_history(c, p, end);
  } else if (IS("joined")) {
    on_joined(c, p, end);
  } else if (IS("error")) {
    on_error(c, p, end);
  } else if (IS("welcome")) {
    if (!c->reconnecting) hist_add(&c->st->welcome, load_now_us() - c->t_connect);
  } else if (IS("presence_diff")) {
    ctr_add(&c->st->diff_bytes, n);
  } else if (IS("pong")) {
    if (c->slow && ref_of(p, end) == REF_SLOW_PING) ctr_add(&c->st->slow_pong, 1);
  }
#undef IS
}

/* ------------------------------------------------------------- reading */

static void client_close(client_t *c, bool reset);

/* The server ended this socket (kind: a close code's CL_*, or CL_NO_FRAME
 * for a stream that just ended).  A slow session's closing is what the
 * slow scenario is about: counted apart, not as a failure. */
static void server_closed(client_t *c, int kind) {
  if (c->slow) {
    ctr_add(&c->st->slow_closed, 1);
    if (kind == CL_1008) ctr_add(&c->st->slow_closed_1008, 1);
    return;
  }
  ctr_add(&c->st->closes[kind], 1);
  ctr_add(&c->st->closed_by_server, 1);
  if (c->state != S_JOINED && !c->reconnecting) ctr_add(&c->st->closed_unjoined, 1);
}

/* Does a text frame's payload (avail bytes of it at least) begin as a
 * presence_diff?  The type is the first field of every server frame. */
static bool is_diff(const char *pl, size_t avail) {
  static const char diff[] = "{\"type\":\"presence_diff\"";
  return avail >= sizeof diff - 1 && !memcmp(pl, diff, sizeof diff - 1);
}

/* Consume whole frames from p[0..n); returns the bytes used. */
static size_t frames(client_t *c, const uint8_t *p, size_t n) {
  size_t used = 0;
  while (n - used >= 2) {
    const uint8_t *f = p + used;
    size_t avail = n - used, h = 2;
    uint64_t len = f[1] & 0x7f;
    if (len == 126) {
      if (avail < 4) break;
      len = ((uint64_t)f[2] << 8) | f[3];
      h = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
      h = 10;
    }
    if (f[1] & 0x80 || len > LOAD_MAX_FRAME) { /* a server must not mask */
      ctr_add(&c->st->errors[ERR_OTHER], 1);
      client_close(c, true);
      return n;
    }
    int op = f[0] & 0x0f;
    const char *pl = (const char *)f + h;
    if (avail - h < len) {
      /* A presence_diff split across reads (a storm's runs to 850 kB) is
       * not kept: nothing in it is checked, and buffering it would copy
       * every byte once more. */
      if (op == 1 && is_diff(pl, avail - h)) {
        ctr_add(&c->st->frames_in, 1);
        ctr_add(&c->st->diff_bytes, len);
        c->skip = len - (avail - h);
        return n;
      }
      break;
    }
    if (op == 1 || op == 0) {
      on_text(c, pl, (size_t)len);
    } else if (op == 9) {
      ws_send(c, 10, pl, (size_t)len);
    } else if (op == 8) {
      int code = len >= 2 ? (pl[0] & 0xff) << 8 | (pl[1] & 0xff) : 0;
      int kind = code == 1000 ? CL_1000 : code == 1001 ? CL_1001 : code == 1008 ? CL_1008
               : code == 1009 ? CL_1009 : code == 1011 ? CL_1011 : CL_OTHER_CODE;
      server_closed(c, kind);
      client_close(c, false);
      return n;
    }
    used += h + (size_t)len;
    if (c->state == S_CLOSED || c->closing) return n;
  }
  return used;
}

static bool part_append(client_t *c, const char *p, size_t n) {
  if (c->part_len + n > c->part_cap) {
    size_t cap = c->part_cap ? c->part_cap : 4096;
    while (cap < c->part_len + n) cap *= 2;
    uint8_t *b = realloc(c->part, cap);
    if (!b) return false;
    c->part = b;
    c->part_cap = cap;
  }
  memcpy(c->part + c->part_len, p, n);
  c->part_len += n;
  return true;
}

static void part_free(client_t *c) {
  free(c->part);
  c->part = NULL;
  c->part_len = c->part_cap = 0;
}

static void handshake_done(client_t *c) {
  const char *p = (const char *)c->part;
  if (c->part_len < 12 || memcmp(p, "HTTP/1.1 101", 12)) {
    ctr_add(&c->st->conn_failed, 1);
    client_close(c, false);
    return;
  }
  const char *e = memmem(p, c->part_len, "\r\n\r\n", 4);
  size_t rest = c->part_len - (size_t)(e + 4 - p);
  c->state = S_OPEN;
  if (!c->reconnecting) ctr_add(&c->st->connected, 1);
  send_join(c); /* requests may go before `welcome` arrives */
  if (rest) {
    memmove(c->part, e + 4, rest);
    c->part_len = rest;
    size_t used = frames(c, c->part, c->part_len);
    if (c->state == S_CLOSED || c->closing) return;
    memmove(c->part, c->part + used, c->part_len - used);
    c->part_len -= used;
  } else {
    c->part_len = 0;
  }
  if (!c->part_len) part_free(c);
}

/* The rest of a skipped presence_diff, discarded where it lies: recv(2)
 * with MSG_TRUNC on a TCP socket drops the bytes without copying them out.
 * A storm's returning sockets get 850 kB diffs, 6 to 8 GB in a run, which
 * the harness's one core otherwise spent copying.  Called before each of
 * libuv's reads (on_alloc): what the diff still owes and the kernel holds
 * never reaches the read buffer (epoll is level-triggered, so bytes left
 * after a read bring the next on_alloc). */
static void skip_in_kernel(client_t *c) {
  uv_os_fd_t fd;
  if (!c->skip || c->closing || uv_fileno((uv_handle_t *)&c->tcp, &fd)) return;
  while (c->skip) {
    size_t want = c->skip < (1u << 30) ? (size_t)c->skip : (1u << 30);
    ssize_t r = recv(fd, NULL, want, MSG_TRUNC | MSG_DONTWAIT);
    if (r <= 0) return; /* EAGAIN: later; the end or an error: the next read sees it */
    c->skip -= (uint64_t)r;
    ctr_add(&c->st->bytes_in, (uint64_t)r);
    ctr_add(&c->st->diff_dropped, (uint64_t)r);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  skip_in_kernel(h->data); /* before libuv's read: a diff's rest is never copied */
  *b = uv_buf_init(read_block, sizeof read_block);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  client_t *c = s->data;
  if (nread < 0) {
    if (!c->closing) server_closed(c, CL_NO_FRAME);
    client_close(c, false);
    return;
  }
  if (nread == 0) return;
  ctr_add(&c->st->bytes_in, (uint64_t)nread);
  const char *base = b->base;
  if (c->skip) { /* the rest of a skipped presence_diff comes first */
    size_t k = c->skip < (uint64_t)nread ? (size_t)c->skip : (size_t)nread;
    c->skip -= k;
    base += k;
    nread -= (ssize_t)k;
    if (!nread) return;
  }
  if (c->state == S_HANDSHAKE) {
    if (!part_append(c, base, (size_t)nread)) return;
    if (memmem(c->part, c->part_len, "\r\n\r\n", 4)) handshake_done(c);
    else if (c->part_len > 16384) client_close(c, false);
    return;
  }
  if (c->part_len) { /* finish the split frame first: append, parse, keep the tail */
    if (!part_append(c, base, (size_t)nread)) return;
    size_t used = frames(c, c->part, c->part_len);
    if (c->state == S_CLOSED || c->closing) return;
    memmove(c->part, c->part + used, c->part_len - used);
    c->part_len -= used;
    if (!c->part_len) part_free(c);
    return;
  }
  size_t used = frames(c, (const uint8_t *)base, (size_t)nread);
  if (c->state == S_CLOSED || c->closing) return;
  if (used < (size_t)nread) part_append(c, base + used, (size_t)nread - used);
}

static void on_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  if (c->closing) return;
  if (status) {
    ctr_add(&c->st->conn_failed, 1);
    client_close(c, false);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  const load_cfg_t *cf = cfg_of(c);
  char key[25], req_b[512];
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 21; i++) key[i] = b64[rnd() & 63];
  key[21] = 'A';
  key[22] = '=';
  key[23] = '=';
  key[24] = 0;
  /* The accept hash is not checked: the server is ours, and a wrong one would
   * show at once as frames that do not parse. */
  int n = snprintf(req_b, sizeof req_b,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: http://%s:%d\r\n\r\n",
                   cf->path, cf->host, cf->port, key, cf->host, cf->port);
  c->state = S_HANDSHAKE;
  raw_write(c, req_b, (size_t)n);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void start_connect(client_t *c, uv_loop_t *loop) {
  const load_cfg_t *cf = cfg_of(c);
  struct sockaddr_in a;
  uv_ip4_addr(cf->host, cf->port, &a);
  uv_tcp_init_ex(loop, &c->tcp, AF_INET);
  /* A slow session is a reader that stops with a small window, as a phone
   * on a bad network does: set before the handshake, so the window the
   * server sees is small and its own buffers (not ours) fill. */
  int rcvbuf = SLOW_RCVBUF;
  if (c->slow) (void)uv_recv_buffer_size((uv_handle_t *)&c->tcp, &rcvbuf);
  c->tcp.data = c;
  c->conn.data = c;
  c->state = S_CONNECTING;
  c->closing = false;
  c->skip = 0;
  c->last_push_seq = 0;
  c->t_connect = load_now_us();
  if (uv_tcp_connect(&c->conn, &c->tcp, (const struct sockaddr *)&a, on_connect)) {
    ctr_add(&c->st->conn_failed, 1);
    client_close(c, false);
  }
}

static void on_closed(uv_handle_t *h) {
  client_t *c = h->data;
  part_free(c);
  if (c->dropped) { /* storm: back at once */
    c->dropped = false;
    c->reconnecting = true;
    start_connect(c, h->loop); /* a libuv callback: no act_loop() here */
    return;
  }
  c->state = S_CLOSED;
}

static void client_close(client_t *c, bool reset) {
  if (c->closing || c->state == S_CLOSED) return;
  c->closing = true;
  if (reset && c->state != S_CONNECTING && !uv_tcp_close_reset(&c->tcp, on_closed)) return;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ------------------------------------------------------------ the actor */

#define GAP_POLL_MS 20 /* between stages the schedule idles at this period */

static int client_init(void *args, void **state) {
  client_t *c = args;
  c->pid = act_self();
  *state = c;
  return 0;
}

/* Sends follow an absolute schedule (origin + k/rate) so that a late tick
 * does not lower the rate; each stage starts at a random phase in one
 * interval (1/rate) so that the senders do not fire together -- a sender
 * whose phase falls past the stage's end sends nothing in it, which is
 * what keeps the expected count rate x senders x length.  A tick waits at
 * most TICK_MAX_MS: at 0.02 msg/s the next send may be 50 s away, and the
 * sender must see the next stage begin (and start its own schedule) at
 * once, not sleep through it. */
#define TICK_MAX_MS 100

static uint64_t due_us(const client_t *c, double rate) {
  return c->t_start + (uint64_t)((double)(c->next_k - c->stage_k0) * 1e6 / rate);
}

static void schedule_tick(client_t *c) {
  load_shared_t *sh = c->m->sh;
  if (atomic_load_explicit(&sh->phase, RELAXED) != PH_SEND) {
    act_send_after(GAP_POLL_MS, c->pid, M_TICK, NULL, 0);
    return;
  }
  int g = atomic_load_explicit(&sh->stage, RELAXED);
  double rate = sh->cfg.stage_rate[g];
  uint64_t now = load_now_us();
  if (g != c->tick_stage) {
    c->tick_stage = g;
    c->t_start = now + (uint64_t)(rnd() % (uint32_t)(1e6 / rate));
    c->stage_k0 = c->next_k;
  }
  uint64_t due = due_us(c, rate);
  uint64_t ms = due > now ? (due - now + 999) / 1000 : 0;
  act_send_after(ms < TICK_MAX_MS ? ms : TICK_MAX_MS, c->pid, M_TICK, NULL, 0);
}

static void tick(client_t *c) {
  load_shared_t *sh = c->m->sh;
  int ph = atomic_load_explicit(&sh->phase, RELAXED);
  if (ph >= PH_DRAIN) return; /* the schedule ends */
  int g = atomic_load_explicit(&sh->stage, RELAXED);
  if (ph == PH_SEND && g == c->tick_stage && c->next_k < sh->cfg.maxk &&
      load_now_us() + 1000 >= due_us(c, sh->cfg.stage_rate[g])) {
    uint32_t k = c->next_k++;
    if (c->state == S_JOINED && !c->reconnecting) {
      c->sent_us[k] = load_now_us();
      c->unacked++;
      send_msg(c, k, c->tick_stage, c->sent_us[k]);
      ctr_add(&c->st->sends, 1);
    } /* else not joined now (storm): this slot of the schedule is skipped */
  }
  schedule_tick(c);
}

static void client_handle(void *state, act_msg_t *msg) {
  client_t *c = state;
  uint32_t k;
  switch (msg->type) {
  case M_CONNECT:
    c->st = &c->m->sh->slots[*(int *)msg->data][act_scheduler_id()];
    start_connect(c, act_loop());
    break;
  case M_START_SENDING:
    c->tick_stage = -1;
    schedule_tick(c);
    break;
  case M_TICK:
    tick(c);
    break;
  case M_DROP:
    if (c->state != S_JOINED) return;
    c->dropped = true;
    c->storm_pending = true;
    c->t_drop = load_now_us();
    client_close(c, true);
    break;
  case M_RETRY_JOIN:
    act_send_after(RETRY_MS, c->pid, M_JOIN_NOW, NULL, 0);
    break;
  case M_JOIN_NOW:
    if (c->state == S_OPEN) send_join(c);
    break;
  case M_RESEND:
    act_send_after(RETRY_MS, c->pid, M_RESEND_NOW, msg->data, msg->size);
    break;
  case M_SLOW_RESUME:
    /* The drain: read again, to see whether the server closed this session
     * (a close frame, or the end of the stream, after what was queued) or
     * kept it (a pong to this ping, after everything queued before it). */
    if (c->state == S_JOINED && !c->closing) {
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
      char b[64];
      int n = snprintf(b, sizeof b, "{\"type\":\"ping\",\"ref\":%u}", REF_SLOW_PING);
      ws_text(c, b, (size_t)n);
    }
    break;
  case M_RESEND_NOW:
    memcpy(&k, msg->data, sizeof k);
    if (c->state == S_JOINED && !(c->m->ack[(size_t)c->sender * c->m->words + (k >> 6)] & (1ull << (k & 63)))) {
      send_msg(c, k, c->tick_stage < 0 ? 0 : c->tick_stage, c->sent_us[k]);
      ctr_add(&c->st->resends, 1);
    }
    break;
  default:
    break;
  }
}

static const act_behaviour_t client_b = {"load_client", client_init, client_handle, NULL};

/* ------------------------------------------------------------- a worker */

int worker_main(load_maps_t *m, int worker, uint32_t first, uint32_t count) {
  load_shared_t *sh = m->sh;
  const load_cfg_t *cf = &sh->cfg;
  act_config_t ac = {.threads = cf->threads, .max_actors = count + 1024};
  if (act_start(&ac)) return 1;
  client_t *cs = calloc(count, sizeof *cs);
  if (!cs) return 1;
  uint64_t t0 = load_now_us();
  double per_us = cf->ramp_s > 0 ? cf->ramp_s * 1e6 / (double)(cf->sessions + cf->slow) : 0;
  act_spawn_opts_t so = {.scheduler = ACT_SCHED_NEXT};
  for (uint32_t i = 0; i < count; i++) {
    client_t *c = &cs[i];
    c->m = m;
    c->idx = first + i;
    c->slow = c->idx >= cf->sessions;
    c->sender = -1;
    if (!c->slow && cf->senders && c->idx % cf->sender_stride == 0 && c->idx / cf->sender_stride < cf->senders) {
      c->sender = (int32_t)(c->idx / cf->sender_stride);
      c->sent_us = calloc(cf->maxk, sizeof *c->sent_us);
    }
    /* The ramp spreads the whole run's sessions evenly; this worker's i-th
     * is the run's (first + i)-th, so every worker follows one clock. */
    if (per_us > 0) {
      uint64_t due = t0 + (uint64_t)(per_us * (double)c->idx);
      uint64_t now = load_now_us();
      if (due > now + 2000) usleep((useconds_t)(due - now));
    }
    c->pid = act_spawn(&client_b, c, &so, NULL);
    act_send(c->pid, M_CONNECT, &worker, sizeof worker);
    atomic_store_explicit(&sh->ready[worker], i + 1, RELAXED);
  }
  /* Follow the parent's phases: the workers' own threads only forward them. */
  int seen_phase = PH_CONNECT, seen_drop = 0;
  for (;;) {
    int ph = atomic_load_explicit(&sh->phase, memory_order_acquire);
    if (ph != seen_phase) {
      if (ph == PH_SEND && seen_phase == PH_CONNECT)
        for (uint32_t i = 0; i < count; i++)
          if (cs[i].sender >= 0) act_send(cs[i].pid, M_START_SENDING, NULL, 0);
      if (ph == PH_DRAIN && seen_phase < PH_DRAIN)
        for (uint32_t i = 0; i < count; i++)
          if (cs[i].slow) act_send(cs[i].pid, M_SLOW_RESUME, NULL, 0);
      seen_phase = ph;
      if (ph == PH_DONE) break;
    }
    int d = atomic_load_explicit(&sh->drop, memory_order_acquire);
    if (d && !seen_drop) {
      seen_drop = 1;
      for (uint32_t i = 0; i < count; i++)
        if (cs[i].idx < cf->storm) act_send(cs[i].pid, M_DROP, NULL, 0);
    }
    usleep(2000); /* a control loop, not a synchronisation: 2 ms of phase lag */
  }
  /* The kernel closes every socket when the process ends: faster than
   * closing 10,000 handles one by one, and the server sees the same. */
  _exit(0);
}
