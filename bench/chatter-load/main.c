/*
 * main.c -- chatter-load's parent process: options, scenarios, the server it
 * may spawn, the worker processes, the phases, the progress line, the final
 * table and the JSON file.
 *
 *   chatter-load --scenario fanout --spawn _build/default/chatter --sessions 2000
 *   chatter-load --scenario chat --url ws://127.0.0.1:4000/ws --server-pid 1234
 *
 * Figures it cannot trust it says so: when its own processes use more than
 * HARNESS_BUSY of the CPUs they may run on during the send phase, the final
 * table says plainly that the harness, not the server, was the bottleneck.
 * Exit status: 0 clean; 1 on any loss, duplicate, order violation, failed
 * join or server close; 2 on bad options or a server that would not start.
 */
#include "load.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HARNESS_BUSY 0.85      /* above this share of its CPUs the harness is the limit */
#define P99_TARGET_US 50000    /* chat: a stage holds while p99 stays under 50 ms */
#define JOIN_STALL_S 15        /* joining gives up after this long without progress */
#define DRAIN_STALL_MS 3000    /* a gap or drain ends after this long without a delivery */
#define STORM_WAIT_S 20        /* storm: how long the dropped sessions have to come back */
#define HEALTH_WAIT_S 30       /* a spawned server must answer /healthz within this */
#define JOIN_MAX_S 60          /* joining ends this long after the ramp, progress or not */
#define DRAIN_MAX_S 30         /* a gap or drain ends after this long, progress or not */

/* ---------------------------------------------------------- histogram */

void hsum_merge(hsum_t *into, hist_t *h) {
  into->n += ctr_get(&h->n);
  into->sum += ctr_get(&h->sum);
  uint64_t mx = ctr_get(&h->max);
  if (mx > into->max) into->max = mx;
  for (int i = 0; i < HIST_BUCKETS; i++) into->b[i] += ctr_get(&h->b[i]);
}

double hsum_pct(const hsum_t *h, double p) {
  uint64_t total = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) total += h->b[i];
  if (!total) return 0;
  if (p >= 100) return (double)h->max;
  uint64_t want = (uint64_t)ceil((double)total * p / 100.0), seen = 0;
  if (!want) want = 1;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= want) {
      double v = (double)hist_value((unsigned)i);
      return v > (double)h->max ? (double)h->max : v;
    }
  }
  return (double)h->max;
}

/* ----------------------------------------------------------- self-test */

/* --self-test: what the figures rest on, checked without a server.  Each
 * check can fail; the first failure is printed and the exit status is 1. */
static int self_test(void) {
  int fails = 0;
#define CHECK(cond, ...) do { if (!(cond)) { fails++; fprintf(stderr, "self-test: " __VA_ARGS__); fputc('\n', stderr); } } while (0)
  /* the histogram: monotonic, relative error under 1/64 of the value */
  unsigned prev = 0;
  for (uint64_t v = 0; v < (1ull << 32); v = v < 1000 ? v + 1 : v + v / 97) {
    unsigned i = hist_index(v);
    CHECK(i >= prev, "hist_index not monotonic at %" PRIu64, v);
    prev = i;
    double back = (double)hist_value(i), err = v ? fabs(back - (double)v) / (double)v : back;
    CHECK(err <= 1.0 / 64 + 1e-9, "bucket of %" PRIu64 " reads back as %.0f", v, back);
    if (fails) break;
  }
  CHECK(hist_index(UINT64_MAX) == HIST_BUCKETS - 1, "the largest value is not in the last bucket");
  /* percentiles of 1..100,000 us */
  static hist_t h;
  static hsum_t hs;
  for (uint64_t v = 1; v <= 100000; v++) hist_add(&h, v);
  hsum_merge(&hs, &h);
  CHECK(fabs(hsum_pct(&hs, 50) - 50000) < 50000 / 64.0, "p50 of 1..100000 is %.0f", hsum_pct(&hs, 50));
  CHECK(fabs(hsum_pct(&hs, 99) - 99000) < 99000 / 64.0, "p99 of 1..100000 is %.0f", hsum_pct(&hs, 99));
  CHECK(hsum_pct(&hs, 100) == 100000, "max is %.0f", hsum_pct(&hs, 100));
  CHECK(hs.n == 100000, "n is %" PRIu64, hs.n);
  /* the scanners: a push as the server writes it, ours and someone else's */
  const char *push = "{\"type\":\"message\",\"message\":{\"id\":\"x\",\"seq\":4217,\"user_id\":\"u\","
                     "\"name\":\"n\",\"content\":\"L0badcafe 3 17 2 123456789\",\"inserted_at\":\"t\"}}";
  const char *end = push + strlen(push);
  CHECK(load_find_seq(push, end) == 4217, "seq read as %" PRId64, load_find_seq(push, end));
  const char *ct = strstr(push, "\"content\":\"") + 11;
  uint32_t s, k;
  int g;
  uint64_t t;
  CHECK(load_parse_content(0x0badcafe, 4, 100, ct, end, &s, &k, &g, &t) && s == 3 && k == 17 && g == 2 &&
            t == 123456789, "content not read back");
  CHECK(!load_parse_content(0x0badcaff, 4, 100, ct, end, &s, &k, &g, &t), "another run's content was taken");
  CHECK(!load_parse_content(0x0badcafe, 3, 100, ct, end, &s, &k, &g, &t), "a sender out of range was taken");
  CHECK(!load_parse_content(0x0badcafe, 4, 17, ct, end, &s, &k, &g, &t), "a k out of range was taken");
  const char *cut = "L0badcafe 3 17 2 12\"";
  CHECK(load_parse_content(0x0badcafe, 4, 100, cut, cut + strlen(cut), &s, &k, &g, &t) && t == 12, "short content");
  CHECK(!load_parse_content(0x0badcafe, 4, 100, cut, cut + strlen(cut) - 1, &s, &k, &g, &t), "unterminated content taken");
  const char *padded = "L0badcafe 3 17 2 12 xxxx\"";
  CHECK(load_parse_content(0x0badcafe, 4, 100, padded, padded + strlen(padded), &s, &k, &g, &t) && t == 12,
        "--pad's content not read back");
  const char *glued = "L0badcafe 3 17 2 12x\"";
  CHECK(!load_parse_content(0x0badcafe, 4, 100, glued, glued + strlen(glued), &s, &k, &g, &t), "a glued time taken");
  const char *user = "L0badcafe 3 17 hello\"";
  CHECK(!load_parse_content(0x0badcafe, 4, 100, user, user + strlen(user), &s, &k, &g, &t), "free text taken");
#undef CHECK
  printf("chatter-load self-test: %s\n", fails ? "FAILED" : "ok");
  return fails ? 1 : 0;
}

/* ------------------------------------------------------------ options */

typedef struct opts {
  const char *scenario, *url, *spawn, *json, *server_log, *cpus, *server_cpus;
  const char *server_env[16];
  int nserver_env;
  int server_threads, port, workers, threads, server_pid;
  long sessions, senders, slow, storm, pad;
  double rate, duration, ramp, drop_after;
  const char *rates;
  bool every_stage; /* chat: run every stage of --rates, even past p99 */
  bool quiet;
} opts_t;

static void usage(FILE *f) {
  fputs("usage: chatter-load [--scenario idle|fanout|chat|storm|slow|crash|kill]\n"
        "  [--url ws://127.0.0.1:PORT/ws | --spawn 'CMD' [--port P] [--server-cpus LIST]\n"
        "   [--server-threads N] [--server-env K=V]... [--server-log FILE]]\n"
        "  [--server-pid PID] [--sessions N] [--senders K] [--rate R | --rates R1,R2,... [--every-stage]]\n"
        "  [--duration S] [--ramp S] [--slow N] [--storm N] [--drop-after S] [--pad BYTES]\n"
        "  [--workers W] [--threads T] [--cpus LIST] [--json FILE] [--quiet]\n", f);
}

static bool parse_cpus(const char *s, cpu_set_t *set, int *count) {
  CPU_ZERO(set);
  *count = 0;
  while (*s) {
    char *e;
    long a = strtol(s, &e, 10), b = a;
    if (e == s || a < 0 || a >= CPU_SETSIZE) return false;
    if (*e == '-') {
      s = e + 1;
      b = strtol(s, &e, 10);
      if (e == s || b < a || b >= CPU_SETSIZE) return false;
    }
    for (long i = a; i <= b; i++) {
      CPU_SET((int)i, set);
      (*count)++;
    }
    s = e;
    if (*s == ',') s++;
    else if (*s) return false;
  }
  return *count > 0;
}

/* ------------------------------------------------------------- /proc */

static long ticks_per_s;

static double proc_cpu_s(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* fields after the comm: state(3) ... utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)ticks_per_s;
}

/* Seconds the process's threads spent runnable but waiting for a CPU
 * (/proc/PID/task/TID/schedstat, second field): on a shared machine this is
 * what tells "the machine was busy" from "this process was slow". */
static double proc_wait_s(int pid) {
  char path[64], line[128];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  double s = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char f[320];
    snprintf(f, sizeof f, "/proc/%d/task/%s/schedstat", pid, e->d_name);
    FILE *fp = fopen(f, "r");
    if (!fp) continue;
    unsigned long long run = 0, wait = 0;
    if (fgets(line, sizeof line, fp) && sscanf(line, "%llu %llu", &run, &wait) == 2) s += (double)wait / 1e9;
    fclose(fp);
  }
  closedir(d);
  return s;
}

static double proc_rss_kb(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  double kb = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = atof(line + 6);
  fclose(f);
  return kb;
}

/* ----------------------------------------------------------- the server */

static pid_t server_pid_spawned;

static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (s < 0 || bind(s, (void *)&a, sizeof a) || getsockname(s, (void *)&a, &l)) return -1;
  close(s);
  return ntohs(a.sin_port);
}

/* A blocking TCP connection to host:port whose reads give up after
 * timeout_s (the harness's few control requests; sessions use libuv), or
 * -1. */
static int control_connect(const char *host, int port, int timeout_s) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  struct timeval tv = {timeout_s, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(s, (void *)&a, sizeof a)) {
    close(s);
    return -1;
  }
  return s;
}

/* METHOD TARGET with no body, Connection: close: the HTTP status, or -1. */
static int control_request(const char *host, int port, int timeout_s, const char *method,
                           const char *target) {
  int s = control_connect(host, port, timeout_s), status = -1;
  if (s < 0) return -1;
  char req[320], buf[64];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n", method, target, host, port);
  if (n > 0 && (size_t)n < sizeof req && write(s, req, (size_t)n) == n) {
    ssize_t r = read(s, buf, sizeof buf - 1);
    if (r >= 12) {
      buf[r] = 0;
      status = atoi(buf + 9);
    }
  }
  close(s);
  return status;
}

static bool healthy(const char *host, int port) {
  return control_request(host, port, 2, "GET", "/healthz") == 200;
}

/* ------------------------------------------------------ scenario kill */

/* kill (issue 8 item 13): N joined sessions while one sender sends; after
 * --drop-after seconds POST /debug/kill kills pubsub, then presence (the
 * server needs CHATTER_DEBUG=1: --spawn sets it).  It passes when every
 * session stays open (no 1011), every acknowledged message reaches every
 * session once and in order (the usual checks), and a fresh socket's
 * welcome counts every joined session online again within
 * KILL_COUNTS_WAIT_S.  Figures: time from the kills to /healthz 200 and to
 * exact counts. */
#define KILL_COUNTS_WAIT_S 30

/* POST /debug/kill?name=NAME: the HTTP status, or -1. */
static int debug_kill(const char *host, int port, const char *name) {
  char target[128];
  snprintf(target, sizeof target, "/debug/kill?name=%s", name);
  return control_request(host, port, 5, "POST", target);
}

/* A fresh socket's welcome: its online_count, or -1. */
static long welcome_online(const char *host, int port, const char *path) {
  int s = control_connect(host, port, 5);
  if (s < 0) return -1;
  long online = -1;
  char req[512], buf[4096];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: a2lsbC1zY2VuYXJpby0wMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   path, host, port);
  size_t got = 0;
  if (write(s, req, (size_t)n) == n) {
    /* the 101 and the welcome frame: read until the count is in, 5 s at most */
    for (ssize_t r; got < sizeof buf - 1 && (r = read(s, buf + got, sizeof buf - 1 - got)) > 0;) {
      got += (size_t)r;
      buf[got] = 0;
      const char *k = memmem(buf, got, "\"online_count\":", 15);
      if (k && k + 15 < buf + got && memchr(k + 15, '}', (size_t)(buf + got - (k + 15)))) {
        online = atol(k + 15);
        break;
      }
    }
  }
  close(s);
  return online;
}

static void stop_server(void) {
  if (server_pid_spawned <= 0) return;
  kill(server_pid_spawned, SIGTERM);
  for (int i = 0; i < 100; i++) { /* 5 s for an orderly stop, then kill */
    if (waitpid(server_pid_spawned, NULL, WNOHANG) == server_pid_spawned) {
      server_pid_spawned = 0;
      return;
    }
    usleep(50000);
  }
  kill(server_pid_spawned, SIGKILL);
  waitpid(server_pid_spawned, NULL, 0);
  server_pid_spawned = 0;
}

static pid_t spawn_server(const opts_t *o, const char *host, int port, const char *scenario) {
  pid_t p = fork();
  if (p < 0) return -1;
  if (p) return p;
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGTERM); /* a killed harness takes its server with it */
  if (o->server_cpus) {
    cpu_set_t cs;
    int n;
    if (parse_cpus(o->server_cpus, &cs, &n)) sched_setaffinity(0, sizeof cs, &cs);
  }
  /* The server's own descriptor limit: 20,000, as the machine's hard one. */
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max < 20000 ? rl.rlim_max : 20000;
  setrlimit(RLIMIT_NOFILE, &rl);
  char b[32];
  snprintf(b, sizeof b, "%d", port);
  setenv("PORT", b, 1);
  setenv("HOST", host, 1);
  setenv("CHATTER_NEW_USERS_PER_MINUTE", "0", 1);
  if (!getenv("LOG_LEVEL")) setenv("LOG_LEVEL", "warn", 1);
  if (o->server_threads > 0) {
    snprintf(b, sizeof b, "%d", o->server_threads);
    setenv("CHATTER_THREADS", b, 1);
  }
  if (!strcmp(scenario, "crash")) setenv("CHATTER_CHAOS", "0.01", 1);
  if (!strcmp(scenario, "kill")) setenv("CHATTER_DEBUG", "1", 1); /* POST /debug/kill */
  for (int i = 0; i < o->nserver_env; i++) putenv((char *)o->server_env[i]);
  const char *log = o->server_log ? o->server_log : "/dev/null";
  FILE *f = freopen(log, "a", stdout);
  if (f) dup2(fileno(stdout), 2);
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "exec %s", o->spawn);
  execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
  _exit(127);
}

/* ------------------------------------------------------------ shared */

size_t load_shared_size(const load_cfg_t *c) {
  size_t words = (c->maxk + 63) / 64;
  size_t sz = sizeof(load_shared_t);
  sz += (size_t)c->senders * words * 8;                       /* ack */
  sz += (size_t)c->sessions * c->senders * words * 8;         /* recv */
  if (c->spread) sz += 2 * (size_t)c->senders * c->maxk * 8;  /* first, last */
  sz += c->sessions + 64;                                     /* joined */
  return sz;
}

void load_maps_set(load_maps_t *m, void *base) {
  load_shared_t *sh = base;
  const load_cfg_t *c = &sh->cfg;
  m->sh = sh;
  m->words = (c->maxk + 63) / 64;
  char *p = (char *)base + sizeof *sh;
  m->ack = (uint64_t *)p;
  p += (size_t)c->senders * m->words * 8;
  m->recv = (uint64_t *)p;
  p += (size_t)c->sessions * c->senders * m->words * 8;
  m->first_us = m->last_us = NULL;
  if (c->spread) {
    m->first_us = (_Atomic uint64_t *)p;
    p += (size_t)c->senders * c->maxk * 8;
    m->last_us = (_Atomic uint64_t *)p;
    p += (size_t)c->senders * c->maxk * 8;
  }
  m->joined = (uint8_t *)p;
}

/* ------------------------------------------------------------ totals */

typedef struct totals {
  uint64_t connected, joined, join_failed, conn_failed, closed_by_server;
  uint64_t sends, acks, resends, deliveries, catchup_msgs, dups, order, bytes_in, frames_in, diff_bytes, diff_dropped;
  uint64_t other_pushes, storm_back, closed_unjoined, errors[ERR_COUNT], closes[CLOSE_KINDS];
  uint64_t slow_closed, slow_closed_1008, slow_pong;
  uint64_t stage_acks[LOAD_MAX_STAGES], stage_deliveries[LOAD_MAX_STAGES];
} totals_t;

static void sum_totals(load_shared_t *sh, totals_t *t) {
  memset(t, 0, sizeof *t);
  for (int w = 0; w < LOAD_MAX_WORKERS; w++)
    for (int s = 0; s < LOAD_MAX_THREADS; s++) {
      slot_stats_t *x = &sh->slots[w][s];
#define A(f) t->f += ctr_get(&x->f)
      A(connected); A(joined); A(join_failed); A(conn_failed); A(closed_by_server);
      A(sends); A(acks); A(resends); A(deliveries); A(catchup_msgs); A(dups); A(order);
      A(bytes_in); A(frames_in); A(diff_bytes); A(diff_dropped); A(other_pushes); A(storm_back); A(closed_unjoined);
      A(slow_closed); A(slow_closed_1008); A(slow_pong);
#undef A
      for (int i = 0; i < ERR_COUNT; i++) t->errors[i] += ctr_get(&x->errors[i]);
      for (int i = 0; i < CLOSE_KINDS; i++) t->closes[i] += ctr_get(&x->closes[i]);
      for (int i = 0; i < LOAD_MAX_STAGES; i++) {
        t->stage_acks[i] += ctr_get(&x->stage_acks[i]);
        t->stage_deliveries[i] += ctr_get(&x->stage_deliveries[i]);
      }
    }
}

enum { H_JOIN, H_WELCOME, H_RECOVERY, H_DELIVER, H_SENT };
static void sum_hist(load_shared_t *sh, int which, int stage, hsum_t *out) {
  memset(out, 0, sizeof *out);
  for (int w = 0; w < LOAD_MAX_WORKERS; w++)
    for (int s = 0; s < LOAD_MAX_THREADS; s++) {
      slot_stats_t *x = &sh->slots[w][s];
      hist_t *h = which == H_JOIN ? &x->join : which == H_WELCOME ? &x->welcome
                : which == H_RECOVERY ? &x->recovery : which == H_DELIVER ? &x->deliver[stage]
                : &x->sent[stage];
      hsum_merge(out, h);
    }
}

/* --------------------------------------------------------------- run */

static load_maps_t M;
static pid_t workers[LOAD_MAX_WORKERS];
static int nworkers;
static opts_t O;
static uint64_t t_begin;
static int srv_pid;

static double harness_wait_s(void) {
  double s = 0;
  for (int i = 0; i < nworkers; i++) {
    double w = proc_wait_s(workers[i]);
    if (w > 0) s += w;
  }
  return s;
}

static double harness_cpu_s(void) {
  double s = proc_cpu_s(getpid());
  for (int i = 0; i < nworkers; i++) {
    double w = proc_cpu_s(workers[i]);
    if (w > 0) s += w;
  }
  return s;
}

static hsum_t HS; /* scratch for the progress line */

/* SIGINT/SIGTERM: end the run early but in order (workers told, server
 * stopped, what was measured printed), so that nothing is left running. */
static volatile sig_atomic_t stopping;
static void on_stop_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static void progress(const char *what) {
  static uint64_t last_t, last_d;
  static double last_scpu, last_hcpu;
  if (O.quiet) return;
  totals_t t;
  sum_totals(M.sh, &t);
  uint64_t now = load_now_us();
  double dt = last_t ? (double)(now - last_t) / 1e6 : 0;
  uint64_t d = t.deliveries + t.catchup_msgs;
  double scpu = srv_pid ? proc_cpu_s(srv_pid) : 0, hcpu = harness_cpu_s();
  int g = atomic_load(&M.sh->stage);
  sum_hist(M.sh, H_DELIVER, g, &HS);
  uint64_t errs = 0;
  for (int i = 0; i < ERR_COUNT; i++) errs += t.errors[i];
  fprintf(stderr,
          "%s[%5.1fs %-7s] conn %" PRIu64 " joined %" PRIu64 "/%u  deliveries %" PRIu64 " (%.0f/s) p99 %.1f ms  errors %" PRIu64
          "  server cpu %.0f%% rss %.0f MB  harness cpu %.0f%%   ",
          isatty(2) ? "\r" : "", (double)(now - t_begin) / 1e6, what, t.connected, t.joined, M.sh->cfg.sessions + M.sh->cfg.slow, d,
          dt > 0 ? (double)(d - last_d) / dt : 0, hsum_pct(&HS, 99) / 1000, errs,
          dt > 0 && srv_pid ? (scpu - last_scpu) / dt * 100 : 0, srv_pid ? proc_rss_kb(srv_pid) / 1024 : 0,
          dt > 0 ? (hcpu - last_hcpu) / dt * 100 : 0);
  if (!isatty(2)) fputc('\n', stderr);
  last_t = now;
  last_d = d;
  last_scpu = scpu;
  last_hcpu = hcpu;
}

/* Wait up to seconds, printing progress every second; stop early when done()
 * says so. */
static void wait_for(double seconds, const char *what, bool (*done)(void)) {
  uint64_t end = load_now_us() + (uint64_t)(seconds * 1e6), next = 0;
  for (;;) {
    uint64_t now = load_now_us();
    if (now >= end || stopping || (done && done())) break;
    if (now >= next) {
      progress(what);
      next = now + 1000000;
    }
    usleep(20000);
  }
}

static uint64_t eligible; /* sessions joined when sending began */

static bool all_joined_or_stalled(void) {
  static uint64_t last, last_change;
  totals_t t;
  sum_totals(M.sh, &t);
  uint64_t done = t.joined + t.join_failed + t.conn_failed + t.closed_unjoined;
  uint64_t now = load_now_us();
  if (done != last || !last_change) {
    last = done;
    last_change = now;
  }
  if (done >= M.sh->cfg.sessions + M.sh->cfg.slow) return true;
  bool spawned = true;
  for (int w = 0; w < nworkers; w++) if (!ctr_get(&M.sh->ready[w])) spawned = false;
  uint64_t after_ramp = t_begin + (uint64_t)(M.sh->cfg.ramp_s * 1e6);
  if (spawned && now > after_ramp + JOIN_MAX_S * 1000000ull) return true;
  return spawned && now - last_change > JOIN_STALL_S * 1000000ull && now > after_ramp;
}

/* A stage lasts --duration, or longer when its rate is low: long enough
 * for STAGE_MIN_MSGS messages in all, so that its p99 is not the p99 of a
 * handful (0.02 msg/s x 200 senders is 4 msg/s: 25 s). */
#define STAGE_MIN_MSGS 100
static double stage_secs(const load_cfg_t *cf, int g, double duration) {
  double per_s = cf->stage_rate[g] * cf->senders;
  return per_s > 0 && STAGE_MIN_MSGS / per_s > duration ? STAGE_MIN_MSGS / per_s : duration;
}

static int drain_stage = -1;
static bool drain_cut; /* a drain ended at DRAIN_MAX_S with deliveries still missing */
static bool stage_drained(void) {
  static uint64_t last, last_change, started;
  static int for_stage = -2;
  totals_t t;
  sum_totals(M.sh, &t);
  uint64_t now = load_now_us();
  uint64_t d = t.deliveries + t.catchup_msgs;
  if (for_stage != drain_stage) started = now;
  if (now - started > DRAIN_MAX_S * 1000000ull) {
    drain_cut = true; /* what is missing now may be late rather than lost */
    return true;
  }
  if (for_stage != drain_stage || d != last) {
    for_stage = drain_stage;
    last = d;
    last_change = now;
  }
  bool storm_ok = !M.sh->cfg.storm || !atomic_load(&M.sh->drop) || t.storm_back >= M.sh->cfg.storm;
  uint64_t want = 0, got = 0;
  for (int g = 0; g <= drain_stage && g < LOAD_MAX_STAGES; g++) {
    want += t.stage_acks[g] * eligible;
    got += t.stage_deliveries[g];
  }
  if (got >= want && storm_ok && t.acks + 0 >= t.sends - 0) return true;
  uint64_t stall = M.sh->cfg.storm && !storm_ok ? STORM_WAIT_S * 1000000ull : DRAIN_STALL_MS * 1000ull;
  return now - last_change > stall;
}

#define SLOW_WAIT_S 20 /* for the slow sessions to read to their close or pong */
static bool slow_seen(void) {
  totals_t t;
  sum_totals(M.sh, &t);
  return t.slow_closed + t.slow_pong >= M.sh->cfg.slow;
}

static double cpu_count_of_harness(void) {
  cpu_set_t cs;
  if (sched_getaffinity(0, sizeof cs, &cs)) return 1;
  return CPU_COUNT(&cs);
}

static const char *loadavg(void) {
  static char b[64];
  FILE *f = fopen("/proc/loadavg", "r");
  b[0] = 0;
  if (f) {
    if (fgets(b, sizeof b, f)) {
      char *sp = b;
      for (int i = 0; i < 3 && sp; i++) sp = strchr(sp + 1, ' ');
      if (sp) *sp = 0;
    }
    fclose(f);
  }
  return b;
}

/* ------------------------------------------------------------- output */

static FILE *jf;
static bool jfirst = true;
static void jnum(const char *k, double v) {
  if (!jf) return;
  fprintf(jf, "%s\n  \"%s\": %.6g", jfirst ? "{" : ",", k, isfinite(v) ? v : 0);
  jfirst = false;
}
static void jstr(const char *k, const char *v) {
  if (!jf) return;
  fprintf(jf, "%s\n  \"%s\": \"%s\"", jfirst ? "{" : ",", k, v);
  jfirst = false;
}
static void row(const char *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void row(const char *k, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("| %-34s | ", k);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

/* The kill scenario's phase and figures (see debug_kill above). */
typedef struct kill_figs {
  int status[2];       /* HTTP status of the kills of pubsub and presence */
  uint64_t at_us;      /* when they were sent */
  double healthy_ms;   /* until /healthz answered 200 again, -1 if never */
  double counts_ms;    /* until a welcome counted every joined session, -1 if never */
  long online, want;   /* the last welcome's online_count, the joined sessions */
  bool final_ok;       /* after the drain too */
} kill_figs_t;

static void kill_phase(const load_cfg_t *cfg, double rest_s, kill_figs_t *k) {
  k->at_us = load_now_us();
  k->status[0] = debug_kill(cfg->host, cfg->port, "pubsub");
  k->status[1] = debug_kill(cfg->host, cfg->port, "presence");
  k->healthy_ms = -1;
  while (!stopping && load_now_us() - k->at_us < KILL_COUNTS_WAIT_S * 1000000ull) {
    if (healthy(cfg->host, cfg->port)) {
      k->healthy_ms = (double)(load_now_us() - k->at_us) / 1e3;
      break;
    }
    usleep(10000); /* /healthz has no event to await: polled every 10 ms */
  }
  totals_t t;
  sum_totals(M.sh, &t);
  k->want = (long)(t.joined - t.closed_by_server);
  while (!stopping && k->healthy_ms >= 0 && load_now_us() - k->at_us < rest_s * 1e6) {
    k->online = welcome_online(cfg->host, cfg->port, cfg->path);
    if (k->online == k->want) {
      k->counts_ms = (double)(load_now_us() - k->at_us) / 1e3;
      break;
    }
    usleep(20000); /* the count converges with no event we can see: asked again */
  }
  double spent = (double)(load_now_us() - k->at_us) / 1e6;
  if (rest_s > spent) wait_for(rest_s - spent, "after the kills", NULL);
}

/* After the drain, while every session is still connected. */
static void kill_counts(const load_cfg_t *cfg, kill_figs_t *k) {
  totals_t t;
  sum_totals(M.sh, &t);
  k->want = (long)(t.joined - t.closed_by_server);
  uint64_t until = load_now_us() + KILL_COUNTS_WAIT_S * 1000000ull;
  while (!stopping) {
    k->online = welcome_online(cfg->host, cfg->port, cfg->path);
    if (k->online == k->want) {
      if (k->counts_ms < 0) k->counts_ms = (double)(load_now_us() - k->at_us) / 1e3;
      k->final_ok = true;
      return;
    }
    if (load_now_us() > until) return;
    usleep(50000); /* as in kill_phase */
  }
}

static bool kill_ok(const kill_figs_t *k) {
  return k->status[0] == 200 && k->status[1] == 200 && k->healthy_ms >= 0 && k->final_ok;
}

static void kill_rows(const kill_figs_t *k) {
  row("kill: pubsub, presence killed", "HTTP %d, %d", k->status[0], k->status[1]);
  row("kill: /healthz 200 again after", "%.0f ms", k->healthy_ms);
  if (k->counts_ms >= 0) row("kill: online count exact after", "%.0f ms (%ld online)", k->counts_ms, k->online);
  else row("kill: online count NOT exact", "welcome says %ld online, %ld sessions joined", k->online, k->want);
  jnum("kill_healthy_ms", k->healthy_ms);
  jnum("kill_counts_ms", k->counts_ms);
  jnum("kill_online", (double)k->online);
  jnum("kill_want", (double)k->want);
}

static void hist_rows(const char *name, const char *key, hsum_t *h) {
  char k[80];
  row(name, "n=%" PRIu64 "  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms", h->n,
      hsum_pct(h, 50) / 1e3, hsum_pct(h, 90) / 1e3, hsum_pct(h, 99) / 1e3, hsum_pct(h, 99.9) / 1e3,
      (double)h->max / 1e3);
  const char *suf[] = {"p50", "p90", "p99", "p999", "max"};
  double ps[] = {50, 90, 99, 99.9, 100};
  for (int i = 0; i < 5; i++) {
    snprintf(k, sizeof k, "%s_%s_ms", key, suf[i]);
    jnum(k, hsum_pct(h, ps[i]) / 1e3);
  }
  snprintf(k, sizeof k, "%s_n", key);
  jnum(k, (double)h->n);
}

/* ------------------------------------------------------------- main */

int main(int argc, char **argv) {
  ticks_per_s = sysconf(_SC_CLK_TCK);
  opts_t *o = &O;
  memset(o, 0, sizeof *o);
  o->scenario = "fanout";
  o->sessions = o->senders = o->slow = o->storm = o->pad = -1;
  o->rate = o->duration = o->ramp = o->drop_after = -1;
  o->server_threads = 1;
  enum { O_URL = 256, O_SPAWN, O_PORT, O_SERVER_CPUS, O_SERVER_THREADS, O_SERVER_ENV, O_SERVER_LOG,
         O_SERVER_PID, O_SESSIONS, O_SENDERS, O_RATE, O_RATES, O_DURATION, O_RAMP, O_SLOW, O_STORM,
         O_DROP_AFTER, O_PAD, O_EVERY_STAGE, O_WORKERS, O_THREADS, O_CPUS, O_JSON, O_QUIET, O_SCENARIO, O_HELP, O_SELF_TEST };
  static const struct option lo[] = {
      {"url", 1, 0, O_URL}, {"spawn", 1, 0, O_SPAWN}, {"port", 1, 0, O_PORT},
      {"server-cpus", 1, 0, O_SERVER_CPUS}, {"server-threads", 1, 0, O_SERVER_THREADS},
      {"server-env", 1, 0, O_SERVER_ENV}, {"server-log", 1, 0, O_SERVER_LOG},
      {"server-pid", 1, 0, O_SERVER_PID}, {"sessions", 1, 0, O_SESSIONS}, {"senders", 1, 0, O_SENDERS},
      {"rate", 1, 0, O_RATE}, {"rates", 1, 0, O_RATES}, {"duration", 1, 0, O_DURATION},
      {"ramp", 1, 0, O_RAMP}, {"slow", 1, 0, O_SLOW}, {"storm", 1, 0, O_STORM},
      {"drop-after", 1, 0, O_DROP_AFTER}, {"pad", 1, 0, O_PAD}, {"every-stage", 0, 0, O_EVERY_STAGE}, {"workers", 1, 0, O_WORKERS}, {"threads", 1, 0, O_THREADS},
      {"cpus", 1, 0, O_CPUS}, {"json", 1, 0, O_JSON}, {"quiet", 0, 0, O_QUIET},
      {"scenario", 1, 0, O_SCENARIO}, {"help", 0, 0, O_HELP}, {"self-test", 0, 0, O_SELF_TEST}, {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (ch) {
    case O_URL: o->url = optarg; break;
    case O_SPAWN: o->spawn = optarg; break;
    case O_PORT: o->port = atoi(optarg); break;
    case O_SERVER_CPUS: o->server_cpus = optarg; break;
    case O_SERVER_THREADS: o->server_threads = atoi(optarg); break;
    case O_SERVER_ENV:
      if (o->nserver_env < 16 && strchr(optarg, '=')) o->server_env[o->nserver_env++] = optarg;
      else { fprintf(stderr, "chatter-load: --server-env wants K=V (at most 16)\n"); return 2; }
      break;
    case O_SERVER_LOG: o->server_log = optarg; break;
    case O_SERVER_PID: o->server_pid = atoi(optarg); break;
    case O_SESSIONS: o->sessions = atol(optarg); break;
    case O_SENDERS: o->senders = atol(optarg); break;
    case O_RATE: o->rate = atof(optarg); break;
    case O_RATES: o->rates = optarg; break;
    case O_DURATION: o->duration = atof(optarg); break;
    case O_RAMP: o->ramp = atof(optarg); break;
    case O_SLOW: o->slow = atol(optarg); break;
    case O_STORM: o->storm = atol(optarg); break;
    case O_DROP_AFTER: o->drop_after = atof(optarg); break;
    case O_PAD: o->pad = atol(optarg); break;
    case O_EVERY_STAGE: o->every_stage = true; break;
    case O_WORKERS: o->workers = atoi(optarg); break;
    case O_THREADS: o->threads = atoi(optarg); break;
    case O_CPUS: o->cpus = optarg; break;
    case O_JSON: o->json = optarg; break;
    case O_QUIET: o->quiet = true; break;
    case O_SCENARIO: o->scenario = optarg; break;
    case O_HELP: usage(stdout); return 0;
    case O_SELF_TEST: return self_test();
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) { usage(stderr); return 2; }

  /* Scenario defaults (issue 6 §2); every one can be overridden. */
  load_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  const char *sc = o->scenario;
  long sessions, senders, slow = 0, storm = 0, pad = 0;
  double duration, ramp, rate = 2, drop_after = 3;
  bool rising = false;
  bool kill_sc = !strcmp(sc, "kill");
  kill_figs_t kf = {{0, 0}, 0, -1, -1, -1, 0, false};
  if (!strcmp(sc, "idle")) { sessions = 19000; senders = 0; duration = 5; ramp = 40; }
  else if (!strcmp(sc, "fanout")) { sessions = 10000; senders = 1; duration = 10; ramp = 20; cfg.spread = true; }
  else if (!strcmp(sc, "chat")) { sessions = 2000; senders = 200; duration = 8; ramp = 10; rising = true; }
  else if (!strcmp(sc, "storm")) { sessions = 5200; senders = 200; duration = 12; ramp = 15; rate = 1; storm = 5000; }
  /* slow: 20 msg/s of long lines (about 2.1 kB a frame, 43 kB/s to each
   * socket), so that a reader that stops fills the server's bounds (the
   * kernel's send buffer, CHATTER_WS_SNDBUF, then WS_OUTBOUND_MAX: about
   * 800 kB) in about 20 s; the readers' server then runs at about 40% of a
   * core, the harness well under its own */
  else if (!strcmp(sc, "slow")) { sessions = 2000; senders = 200; duration = 25; ramp = 10; slow = 100; rate = 0.1; pad = 1900; }
  else if (!strcmp(sc, "crash")) { sessions = 2000; senders = 200; duration = 10; ramp = 10; }
  /* as many as one server process holds under its 20,000 descriptors */
  else if (!strcmp(sc, "kill")) { sessions = 19500; senders = 1; duration = 10; ramp = 60; cfg.spread = true; }
  else { fprintf(stderr, "chatter-load: unknown scenario '%s'\n", sc); return 2; }
  if (o->sessions >= 0) sessions = o->sessions;
  if (o->senders >= 0) senders = o->senders;
  if (o->slow >= 0) slow = o->slow;
  if (o->storm >= 0) storm = o->storm;
  if (o->pad >= 0) pad = o->pad;
  if (o->duration > 0) duration = o->duration;
  if ((!strcmp(sc, "idle") || !strcmp(sc, "fanout")) && o->ramp < 0) {
    /* presence diffs: n^2/2 metas whatever the ramp (load.h) */
    ramp = (double)sessions * (double)sessions * LOAD_META_BYTES / (2 * LOAD_RAMP_BPS);
    if (ramp < 2) ramp = 2;
  }
  if (o->ramp >= 0) ramp = o->ramp;
  if (o->rate > 0) rate = o->rate;
  if (o->drop_after >= 0) drop_after = o->drop_after;
  if (sessions < 1 || senders < 0 || senders > sessions || storm > sessions || slow < 0 ||
      sessions + slow > (long)LOAD_MAX_WORKERS * 19000 || pad > LOAD_MAX_PAD) {
    fprintf(stderr, "chatter-load: need 1 <= sessions, 0 <= senders <= sessions, storm <= sessions, "
                    "sessions + slow <= %d, pad <= %d\n", LOAD_MAX_WORKERS * 19000, LOAD_MAX_PAD);
    return 2;
  }
  if (!strcmp(sc, "storm") && !storm) storm = sessions;
  cfg.sessions = (uint32_t)sessions;
  cfg.senders = (uint32_t)senders;
  cfg.slow = (uint32_t)slow;
  cfg.storm = (uint32_t)storm;
  cfg.pad = (uint32_t)pad;
  cfg.sender_stride = senders ? (uint32_t)(sessions / senders) : 1;
  cfg.ramp_s = ramp;
  /* 200 senders x 0.1/s is already 20 msg/s, 40,000 deliveries/s at 2,000
   * sessions: about 40% of a core at the floor's one write per delivery, where
   * both servers' p99 passed 50 ms (bench-chat, 2026-12-02).  Two stages
   * below it give the rate a resolution there. */
  if (rising && !o->rates && o->rate <= 0) o->rates = "0.02,0.05,0.1,0.2,0.5,1,2,3,4,5";
  if (o->rates && senders) {
    char *dup = strdup(o->rates), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t && cfg.nstages < LOAD_MAX_STAGES; t = strtok_r(NULL, ",", &save))
      cfg.stage_rate[cfg.nstages++] = atof(t);
    free(dup);
  } else {
    cfg.nstages = 1;
    cfg.stage_rate[0] = rate;
  }
  double kmax = 16;
  for (int i = 0; i < cfg.nstages; i++) {
    if (!(cfg.stage_rate[i] > 0 && cfg.stage_rate[i] <= 1000)) {
      fprintf(stderr, "chatter-load: a rate must be in (0, 1000] messages/s per sender\n");
      return 2;
    }
    kmax += ceil(cfg.stage_rate[i] * stage_secs(&cfg, i, duration)) + 2;
  }
  cfg.maxk = (uint32_t)kmax;
  if (cfg.spread && senders > 8) cfg.spread = false;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  cfg.run_id = (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 12) ^ (getpid() << 20));

  /* Where the server is. */
  const char *host = "127.0.0.1";
  snprintf(cfg.host, sizeof cfg.host, "%s", host);
  snprintf(cfg.path, sizeof cfg.path, "/ws");
  if (o->url) {
    char h[64] = {0}, p[128] = "/ws";
    int port = 0;
    if (sscanf(o->url, "ws://%63[^:/]:%d%127s", h, &port, p) < 2) {
      fprintf(stderr, "chatter-load: --url must be ws://HOST:PORT/PATH with a numeric IPv4 host\n");
      return 2;
    }
    if (!strcmp(h, "localhost")) snprintf(h, sizeof h, "127.0.0.1");
    struct in_addr ia;
    if (inet_pton(AF_INET, h, &ia) != 1) {
      fprintf(stderr, "chatter-load: --url host must be a numeric IPv4 address\n");
      return 2;
    }
    snprintf(cfg.host, sizeof cfg.host, "%s", h);
    snprintf(cfg.path, sizeof cfg.path, "%s", p);
    cfg.port = port;
  } else if (o->spawn) {
    cfg.port = o->port ? o->port : free_port();
  } else {
    fprintf(stderr, "chatter-load: give --url or --spawn\n");
    usage(stderr);
    return 2;
  }

  /* Where the harness runs, and with how many processes and threads. */
  if (o->cpus) {
    cpu_set_t cs;
    int n;
    if (!parse_cpus(o->cpus, &cs, &n)) { fprintf(stderr, "chatter-load: bad --cpus\n"); return 2; }
    if (sched_setaffinity(0, sizeof cs, &cs)) perror("chatter-load: sched_setaffinity");
  }
  double ncpu = cpu_count_of_harness();
  uint32_t total = cfg.sessions + cfg.slow;
  cfg.workers = o->workers > 0 ? o->workers : (int)((total + LOAD_WORKER_SESSIONS - 1) / LOAD_WORKER_SESSIONS);
  if (cfg.workers > LOAD_MAX_WORKERS) cfg.workers = LOAD_MAX_WORKERS;
  if (total / (uint32_t)cfg.workers > 19000) {
    fprintf(stderr, "chatter-load: more than 19,000 sessions per worker would pass the descriptor limit\n");
    return 2;
  }
  cfg.threads = o->threads > 0 ? o->threads : (int)(ncpu < 2 ? 1 : ncpu);
  if (cfg.threads > LOAD_MAX_THREADS) cfg.threads = LOAD_MAX_THREADS;

  if (o->spawn) {
    server_pid_spawned = spawn_server(o, cfg.host, cfg.port, sc);
    if (server_pid_spawned < 0) { perror("chatter-load: fork"); return 2; }
    srv_pid = server_pid_spawned;
    uint64_t until = load_now_us() + HEALTH_WAIT_S * 1000000ull;
    while (!healthy(cfg.host, cfg.port)) {
      int st;
      if (waitpid(server_pid_spawned, &st, WNOHANG) == server_pid_spawned) {
        fprintf(stderr, "chatter-load: the server exited at start (status %d); see --server-log\n", st);
        return 2;
      }
      if (load_now_us() > until) {
        fprintf(stderr, "chatter-load: the server did not answer /healthz in %d s\n", HEALTH_WAIT_S);
        stop_server();
        return 2;
      }
      usleep(50000);
    }
  } else if (o->server_pid) {
    srv_pid = o->server_pid;
  }
  if (!strcmp(sc, "crash") && !o->spawn)
    fprintf(stderr, "chatter-load: crash wants a server started with CHATTER_CHAOS=0.01 (--spawn sets it)\n");

  struct sigaction sa = {.sa_handler = on_stop_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  size_t sz = load_shared_size(&cfg);
  void *base = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) { perror("chatter-load: mmap"); stop_server(); return 2; }
  memcpy(base, &cfg, sizeof cfg);
  load_maps_set(&M, base);
  if (o->json) jf = fopen(o->json, "w");

  double rss0 = srv_pid ? proc_rss_kb(srv_pid) : 0;
  double scpu_j0 = srv_pid ? proc_cpu_s(srv_pid) : 0;
  t_begin = load_now_us();
  nworkers = cfg.workers;
  uint32_t per = (total + (uint32_t)nworkers - 1) / (uint32_t)nworkers, first = 0;
  for (int w = 0; w < nworkers; w++) {
    uint32_t count = first + per > total ? total - first : per;
    pid_t p = fork();
    if (p == 0) {
      signal(SIGINT, SIG_IGN); /* the parent ends the run; a terminal's ^C reaches the group */
      signal(SIGTERM, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent */
      if (getppid() == 1) _exit(1);
      struct rlimit rl;
      getrlimit(RLIMIT_NOFILE, &rl);
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      server_pid_spawned = 0;
      _exit(worker_main(&M, w, first, count));
    }
    workers[w] = p;
    first += count;
  }

  /* Connect and join. */
  wait_for(1e9, "join", all_joined_or_stalled);
  totals_t t;
  sum_totals(M.sh, &t);
  eligible = t.joined > cfg.slow ? t.joined - cfg.slow : 0; /* slow ones never read */
  uint64_t t_joined = load_now_us();
  double join_s = (double)(t_joined - t_begin) / 1e6;
  double scpu_join = srv_pid ? proc_cpu_s(srv_pid) - scpu_j0 : 0, hcpu_join = harness_cpu_s();
  double rss_joined = srv_pid ? proc_rss_kb(srv_pid) : 0;
  double hold_rss = rss_joined;
  if (!senders) { /* idle: hold them, then look at the server again */
    wait_for(duration, "hold", NULL);
    hold_rss = srv_pid ? proc_rss_kb(srv_pid) : 0;
  }

  /* Send, stage by stage. */
  double scpu0 = srv_pid ? proc_cpu_s(srv_pid) : 0, hcpu0 = harness_cpu_s();
  double swait0 = srv_pid ? proc_wait_s(srv_pid) : 0, hwait0 = harness_wait_s();
  uint64_t ts0 = load_now_us();
  int held = -1, ran = 0;
  double stage_p99[LOAD_MAX_STAGES] = {0}, stage_wall[LOAD_MAX_STAGES] = {0};
  /* the server's CPU from a stage's start to the end of its drain: per
   * stage, so that two servers are compared at the same rate (a server
   * that held more stages ran higher rates, where batching is cheaper) */
  double stage_cpu[LOAD_MAX_STAGES] = {0};
  double rss_peak = rss_joined;
  uint64_t send_us = 0;
  if (senders) {
    for (int g = 0; g < cfg.nstages && !stopping; g++) {
      atomic_store(&M.sh->stage, g);
      atomic_store(&M.sh->phase, PH_SEND);
      uint64_t g0 = load_now_us();
      double cpu0 = srv_pid ? proc_cpu_s(srv_pid) : 0;
      char what[32];
      snprintf(what, sizeof what, "send %g", cfg.stage_rate[g]);
      if (kill_sc && g == 0) {
        wait_for(drop_after, what, NULL);
        kill_phase(&cfg, duration - drop_after, &kf);
      } else if (storm && g == 0) {
        wait_for(drop_after, what, NULL);
        atomic_store(&M.sh->drop_us, load_now_us());
        atomic_store(&M.sh->drop, 1);
        wait_for(duration - drop_after, "storm", NULL);
      } else {
        for (double left = stage_secs(&cfg, g, duration); left > 0; left -= 1) {
          wait_for(left < 1 ? left : 1, what, NULL);
          double r = srv_pid ? proc_rss_kb(srv_pid) : 0;
          if (r > rss_peak) rss_peak = r;
        }
      }
      send_us += load_now_us() - g0;
      stage_wall[g] = (double)(load_now_us() - g0) / 1e6;
      atomic_store(&M.sh->phase, PH_GAP);
      drain_stage = g;
      wait_for(1e9, "drain", stage_drained);
      stage_cpu[g] = srv_pid ? proc_cpu_s(srv_pid) - cpu0 : 0;
      ran = g + 1;
      hsum_t h;
      sum_hist(M.sh, H_DELIVER, g, &h);
      stage_p99[g] = hsum_pct(&h, 99);
      sum_totals(M.sh, &t);
      bool complete = t.stage_deliveries[g] >= t.stage_acks[g] * eligible;
      /* held: the last of the stages that held from the first on; with
       * --every-stage the rest still run (each server's CPU at every rate
       * of the ladder, the Node peer's too), until one is incomplete */
      if (stage_p99[g] <= P99_TARGET_US && complete) {
        if (held == g - 1) held = g;
      } else if (rising && (!o->every_stage || !complete)) break;
    }
  }
  if (kill_sc) kill_counts(&cfg, &kf);
  atomic_store(&M.sh->phase, PH_DRAIN);
  uint64_t ts1 = load_now_us();
  double scpu1 = srv_pid ? proc_cpu_s(srv_pid) : 0, hcpu1 = harness_cpu_s();
  double swait = srv_pid ? proc_wait_s(srv_pid) - swait0 : 0, hwait = harness_wait_s() - hwait0;
  double rss_end = srv_pid ? proc_rss_kb(srv_pid) : 0;
  /* The slow sessions read again from PH_DRAIN (after the figures above):
   * each sees its close or its ping's pong. */
  if (cfg.slow) wait_for(SLOW_WAIT_S, "slow", slow_seen);
  progress("done");
  if (!o->quiet && isatty(2)) fputc('\n', stderr);
  atomic_store(&M.sh->phase, PH_DONE);
  for (int w = 0; w < nworkers; w++) waitpid(workers[w], NULL, 0);
  (void)t_joined;

  /* Loss: every (joined receiver, acknowledged message) pair not received. */
  sum_totals(M.sh, &t);
  uint64_t lost = 0, acked_bits = 0;
  for (uint32_t s = 0; s < cfg.senders; s++)
    for (size_t w = 0; w < M.words; w++) acked_bits += (uint64_t)__builtin_popcountll(M.ack[s * M.words + w]);
  /* where it is: receivers that were dropped (storm) or not, and how many */
  uint64_t lost_dropped = 0, lost_receivers = 0;
  for (uint32_t r = 0; r < cfg.sessions; r++) {
    if (!M.joined[r]) continue;
    uint64_t mine = 0;
    for (uint32_t s = 0; s < cfg.senders; s++) {
      uint64_t *row_ = recv_row(&M, r, s), *a = M.ack + (size_t)s * M.words;
      for (size_t w = 0; w < M.words; w++) mine += (uint64_t)__builtin_popcountll(a[w] & ~row_[w]);
    }
    lost += mine;
    lost_receivers += mine != 0;
    if (r < cfg.storm) lost_dropped += mine;
  }
  stop_server();

  /* The table. */
  /* Rates and CPU shares over the whole window in which deliveries happen:
   * the stages and the drains after them (an overloaded server delivers
   * long after the senders stopped). */
  double send_s = (double)send_us / 1e6, window_s = (double)(ts1 - ts0) / 1e6;
  double sdcpu = scpu1 - scpu0, hdcpu = hcpu1 - hcpu0;
  uint64_t deliv = t.deliveries + t.catchup_msgs;
  printf("\nchatter-load: scenario %s, %u sessions (+%u slow), %u senders, %d worker(s) x %d thread(s) on %.0f CPU(s)\n",
         sc, cfg.sessions, cfg.slow, cfg.senders, cfg.workers, cfg.threads, ncpu);
  printf("| %-34s | %s\n|%s|%s\n", "figure", "value", "------------------------------------", "------------------------------------------");
  jstr("scenario", sc);
  jstr("loadavg", loadavg());
  jnum("sessions", cfg.sessions);
  jnum("senders", cfg.senders);
  jnum("slow", cfg.slow);
  jnum("pad", cfg.pad);
  row("sessions joined / failed", "%" PRIu64 " / %" PRIu64 " (connect failed %" PRIu64 ", closed by server %" PRIu64 ")",
      t.joined, t.join_failed, t.conn_failed, t.closed_by_server);
  jnum("joined", (double)t.joined);
  jnum("join_failed", (double)t.join_failed);
  jnum("conn_failed", (double)t.conn_failed);
  jnum("closed_by_server", (double)t.closed_by_server);
  row("joining phase", "%.1f s; server CPU %.2f s (%.0f%% of a core), harness CPU %.2f s (%.0f%% of its %.0f CPU(s))",
      join_s, scpu_join, join_s > 0 ? scpu_join / join_s * 100 : 0, hcpu_join,
      join_s > 0 ? hcpu_join / join_s / ncpu * 100 : 0, ncpu);
  jnum("join_phase_s", join_s);
  jnum("join_server_cpu_s", scpu_join);
  jnum("join_harness_cpu_s", hcpu_join);
  row("received", "%.1f MB in %" PRIu64 " frames, %.1f MB of them presence diffs (%.1f MB of those dropped "
      "unread in the kernel) (%" PRIu64 " pushes not from this run)", (double)t.bytes_in / 1e6, t.frames_in,
      (double)t.diff_bytes / 1e6, (double)t.diff_dropped / 1e6, t.other_pushes);
  jnum("diff_bytes", (double)t.diff_bytes);
  jnum("diff_dropped_bytes", (double)t.diff_dropped);
  hsum_t h;
  sum_hist(M.sh, H_WELCOME, 0, &h);
  hist_rows("connect to welcome", "welcome", &h);
  sum_hist(M.sh, H_JOIN, 0, &h);
  hist_rows("connect to joined", "join", &h);
  if (srv_pid) {
    double per_session = t.joined ? (hold_rss - rss0) * 1024 / (double)t.joined : 0;
    row("server RSS before / joined / end", "%.1f / %.1f / %.1f MB (peak while sending %.1f MB)", rss0 / 1024,
        hold_rss / 1024, rss_end / 1024, rss_peak / 1024);
    row("server RSS per joined session", "%.0f bytes", per_session);
    jnum("server_rss_before_kb", rss0);
    jnum("server_rss_joined_kb", hold_rss);
    jnum("server_rss_end_kb", rss_end);
    jnum("server_rss_peak_kb", rss_peak);
    jnum("server_rss_per_session_b", per_session);
  }
  if (senders) {
    row("messages sent / acked / re-sent", "%" PRIu64 " / %" PRIu64 " / %" PRIu64, t.sends, t.acks, t.resends);
    jnum("sends", (double)t.sends);
    jnum("acks", (double)t.acks);
    jnum("resends", (double)t.resends);
    row("deliveries (push / catch-up)", "%" PRIu64 " / %" PRIu64 " in %.1f s (%.1f s sending, the rest draining): %.0f/s",
        t.deliveries, t.catchup_msgs, window_s, send_s, window_s > 0 ? (double)deliv / window_s : 0);
    jnum("deliveries", (double)deliv);
    jnum("deliveries_per_s", window_s > 0 ? (double)deliv / window_s : 0);
    jnum("window_s", window_s);
    hsum_t all;
    memset(&all, 0, sizeof all);
    for (int g = 0; g < ran; g++) {
      sum_hist(M.sh, H_DELIVER, g, &h);
      for (int i = 0; i < HIST_BUCKETS; i++) all.b[i] += h.b[i];
      all.n += h.n;
      all.sum += h.sum;
      if (h.max > all.max) all.max = h.max;
      if (cfg.nstages > 1) {
        char k[64], v[200], cpu[48] = "";
        double per100k = t.stage_deliveries[g] ? stage_cpu[g] / (double)t.stage_deliveries[g] * 1e5 : 0;
        if (srv_pid) snprintf(cpu, sizeof cpu, ", server %.3f CPU-s/100k", per100k);
        snprintf(k, sizeof k, "stage %d: %g msg/s per sender", g, cfg.stage_rate[g]);
        snprintf(v, sizeof v, "%.0f msg/s, %.0f deliveries/s, p50 %.2f p99 %.2f max %.2f ms, %s%s",
                 cfg.stage_rate[g] * cfg.senders, stage_wall[g] > 0 ? (double)t.stage_deliveries[g] / stage_wall[g] : 0,
                 hsum_pct(&h, 50) / 1e3, stage_p99[g] / 1e3, (double)h.max / 1e3,
                 t.stage_deliveries[g] >= t.stage_acks[g] * eligible ? "complete" : "INCOMPLETE", cpu);
        row(k, "%s", v);
        snprintf(k, sizeof k, "stage%d_msgs_per_s", g);
        jnum(k, cfg.stage_rate[g] * cfg.senders);
        snprintf(k, sizeof k, "stage%d_p99_ms", g);
        jnum(k, stage_p99[g] / 1e3);
        if (srv_pid) {
          snprintf(k, sizeof k, "stage%d_server_cpu_per_100k", g);
          jnum(k, per100k);
        }
      }
    }
    hist_rows("delivery latency (send to push)", "deliver", &all);
    hsum_t sent;
    memset(&sent, 0, sizeof sent);
    for (int g = 0; g < ran; g++) {
      sum_hist(M.sh, H_SENT, g, &h);
      for (int i = 0; i < HIST_BUCKETS; i++) sent.b[i] += h.b[i];
      sent.n += h.n;
      if (h.max > sent.max) sent.max = h.max;
    }
    hist_rows("send to `sent` reply", "sent", &sent);
    if (rising) {
      double r = held >= 0 ? cfg.stage_rate[held] : 0;
      row("highest rate that held (p99<50ms)", "%g msg/s per sender = %.0f msg/s, %.0f deliveries/s", r,
          r * cfg.senders, r * cfg.senders * (double)eligible);
      jnum("held_rate_per_sender", r);
      jnum("held_msgs_per_s", r * cfg.senders);
      jnum("held_deliveries_per_s", r * cfg.senders * (double)eligible);
    }
    if (cfg.spread) {
      /* burst spread: first to last copy of each message */
      hsum_t sp;
      memset(&sp, 0, sizeof sp);
      for (size_t i = 0; i < (size_t)cfg.senders * cfg.maxk; i++) {
        uint64_t f = atomic_load(&M.first_us[i]), l = atomic_load(&M.last_us[i]);
        if (!f || !l) continue;
        uint64_t v = l - f;
        sp.b[hist_index(v)]++;
        sp.n++;
        if (v > sp.max) sp.max = v;
      }
      hist_rows("burst spread (first to last copy)", "spread", &sp);
    }
    if (storm) {
      sum_hist(M.sh, H_RECOVERY, 0, &h);
      row("storm: sessions back and caught up", "%" PRIu64 " / %u", t.storm_back, cfg.storm);
      jnum("storm_back", (double)t.storm_back);
      hist_rows("storm: drop to caught up", "recovery", &h);
    }
  }
  uint64_t errs = 0;
  char ebuf[512] = "";
  for (int i = 0; i < ERR_COUNT; i++) {
    char k[48];
    snprintf(k, sizeof k, "err_%s", load_err_names[i]);
    jnum(k, (double)t.errors[i]);
    if (!t.errors[i]) continue;
    errs += t.errors[i];
    size_t n = strlen(ebuf);
    snprintf(ebuf + n, sizeof ebuf - n, "%s %s=%" PRIu64, n ? "," : "", load_err_names[i], t.errors[i]);
  }
  row("errors by code", "%" PRIu64 "%s%s", errs, errs ? ":" : "", ebuf);
  ebuf[0] = 0;
  for (int i = 0; i < CLOSE_KINDS; i++) {
    char k[48];
    snprintf(k, sizeof k, "close_%s", load_close_names[i]);
    for (char *q = k; *q; q++) if (*q == ' ') *q = '_';
    jnum(k, (double)t.closes[i]);
    if (!t.closes[i]) continue;
    size_t n = strlen(ebuf);
    snprintf(ebuf + n, sizeof ebuf - n, "%s %s: %" PRIu64, n ? "," : "", load_close_names[i], t.closes[i]);
  }
  row("closed by the server", "%" PRIu64 "%s%s", t.closed_by_server, t.closed_by_server ? ":" : "", ebuf);
  if (cfg.slow) {
    /* A reader that never reads cannot take the close frame either: when
     * it reads again after the close grace (5 s), the stream just ends. */
    row("slow sessions (never read)", "%" PRIu64 " of %u closed by the server (%" PRIu64 " with a 1008 frame, the rest "
        "a stream that ends), %" PRIu64 " kept (read to a pong once they read again), %" PRIu64 " not seen",
        t.slow_closed, cfg.slow, t.slow_closed_1008, t.slow_pong,
        cfg.slow > t.slow_closed + t.slow_pong ? cfg.slow - t.slow_closed - t.slow_pong : 0);
    jnum("slow_closed", (double)t.slow_closed);
    jnum("slow_closed_1008", (double)t.slow_closed_1008);
    jnum("slow_kept", (double)t.slow_pong);
  }
  row("lost / duplicated / out of order", "%" PRIu64 " / %" PRIu64 " / %" PRIu64 " (of %" PRIu64 " acked x %" PRIu64 " receivers)",
      lost, t.dups, t.order, acked_bits, eligible);
  if (lost)
    row("", "missing at %" PRIu64 " receivers; %" PRIu64 " of the pairs at receivers the storm dropped, "
            "%" PRIu64 " at the others", lost_receivers, lost_dropped, lost - lost_dropped);
  if (drain_cut)
    row("", "INCOMPLETE: a drain ended at its %d s bound while deliveries were still arriving: the missing ones "
            "were late by more than that, not necessarily lost", DRAIN_MAX_S);
  jnum("drain_cut", drain_cut);
  jnum("lost", (double)lost);
  jnum("dups", (double)t.dups);
  jnum("order", (double)t.order);
  jnum("bytes_in", (double)t.bytes_in);
  jnum("frames_in", (double)t.frames_in);
  /* The harness is the bottleneck when its threads wanted a CPU (ran or
   * waited in the run queue) nearly all the time: then the server waited
   * for it, not it for the server. */
  double hthreads = (double)cfg.workers * cfg.threads < ncpu ? (double)cfg.workers * cfg.threads : ncpu;
  double hbusy = window_s > 0 ? (hdcpu + hwait) / window_s / hthreads : 0;
  if (senders && deliv) {
    if (srv_pid) {
      row("server CPU", "%.2f s over %.1f s (%.0f%% of a core); %.3f CPU-s per 100,000 deliveries", sdcpu, window_s,
          window_s > 0 ? sdcpu / window_s * 100 : 0, sdcpu / (double)deliv * 1e5);
      jnum("server_cpu_s", sdcpu);
      jnum("server_cpu_per_100k", sdcpu / (double)deliv * 1e5);
    }
    row("harness CPU", "%.2f s (%.0f%% of its %.0f CPU(s), runnable %.0f%% of the time); %.3f CPU-s per 100,000 deliveries",
        hdcpu, window_s > 0 ? hdcpu / window_s / ncpu * 100 : 0, ncpu, hbusy * 100, hdcpu / (double)deliv * 1e5);
    jnum("harness_cpu_s", hdcpu);
    jnum("harness_cpu_per_100k", hdcpu / (double)deliv * 1e5);
    jnum("harness_busy", hbusy);
  }
  const char *verdict = hbusy > HARNESS_BUSY
      ? "THE HARNESS was the bottleneck (it was runnable over 85% of the time): these figures are a floor for the server, not its ceiling"
      : "the harness had CPU to spare: the figures are the server's";
  if (senders) {
    row("waiting for a CPU (run queue)", "server %.2f s, harness %.2f s over %.1f s", swait, hwait, window_s);
    jnum("server_runq_wait_s", swait);
    jnum("harness_runq_wait_s", hwait);
    row("bottleneck", "%s", verdict);
    if (window_s > 0 && (swait > 0.25 * window_s || hwait > 0.25 * window_s))
      row("", "THE MACHINE was busy: the server or the harness waited for a CPU more than a quarter of the time "
              "(load average %s)", loadavg());
  }
  jnum("harness_bound", senders && hbusy > HARNESS_BUSY);
  if (kill_sc) kill_rows(&kf);
  bool bad = lost || t.dups || t.order || t.join_failed || t.conn_failed ||
             (t.closed_by_server && !storm) || t.joined < cfg.sessions + cfg.slow ||
             (kill_sc && !kill_ok(&kf));
  jnum("ok", !bad);
  if (jf) {
    fprintf(jf, "\n}\n");
    fclose(jf);
  }
  if (bad) printf("chatter-load: FAILED (loss, duplicates, order, or sessions that did not join)\n");
  return bad ? 1 : 0;
}
