/*
 * config.c -- configuration from the environment, Phoenix-style, and the
 * one-line-per-event log.
 *
 *   PORT (4000)  DATABASE_URL  CHATTER_THREADS (cores)  CHATTER_DB_POOL (4)
 *   LOG_LEVEL (info)  CHATTER_CHAOS (0)  CHATTER_CHAOS_RESTART_MS (0)
 *   HOST (127.0.0.1; 0.0.0.0 for all)
 *   CHATTER_NEW_USERS_PER_MINUTE (20; 0 = no limit)
 *   CHATTER_WEB_ROOT, CHATTER_SQL_DIR (found beside the binary otherwise)
 *   LOG_FORMAT (text on a terminal, logfmt otherwise)  LOG_FILE (stderr)
 *
 * The log is one event per line.  `text` is for a person at a terminal:
 *   2026-12-02T09:15:07.123Z INFO  [presence] loaded 12 users
 * `logfmt` is for a collector (Loki, Vector, journald's fields):
 *   ts=2026-12-02T09:15:07.123Z level=info actor=presence msg="loaded 12 users"
 * Callers write key=value pairs into the text where a figure matters; logfmt
 * keeps them inside msg, quoted, so that no caller can forge a field.
 * LOG_FILE is opened for appending and reopened on SIGHUP (logrotate).
 *   The endpoint's bounds: CHATTER_MAX_CONNS, CHATTER_FD_RESERVE (64),
 *   CHATTER_MAX_CONNS_PER_ADDR (1024), CHATTER_CAP_LOOPBACK (0),
 *   CHATTER_IDLE_TIMEOUT_MS (10000),
 *   CHATTER_HEADER_TIMEOUT_MS (10000), CHATTER_KEEPALIVE_TIMEOUT_MS (60000),
 *   CHATTER_SEND_TIMEOUT_MS (30000), CHATTER_ALLOWED_ORIGINS,
 *   CHATTER_ALLOWED_HOSTS (README "Bounds" and "Origins and hosts")
 *   CHATTER_SHUTDOWN_MS (10000): how long the SIGTERM drain may take (main.c)
 *   CHATTER_IO_URING (1): pushes many per system call; 0: one send(2) each
 */
#include "app.h"
#include "db.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static app_config_t g_cfg;

const app_config_t *app_config(void) { return &g_cfg; }

static int env_int(const char *name, int dflt, int lo, int hi) {
  const char *v = getenv(name);
  if (!v || !*v) return dflt;
  char *end;
  long n = strtol(v, &end, 10);
  if (*end || n < lo || n > hi) {
    fprintf(stderr, "ignoring %s=%s (expected %d..%d)\n", name, v, lo, hi);
    return dflt;
  }
  return (int)n;
}

static int level_of(const char *v) {
  if (!v) return LOG_INFO;
  if (!strcasecmp(v, "debug")) return LOG_DEBUG;
  if (!strcasecmp(v, "warn") || !strcasecmp(v, "warning")) return LOG_WARN;
  if (!strcasecmp(v, "error")) return LOG_ERROR;
  return LOG_INFO;
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* env, then ./name, then <binary>/../../name (the binary is
 * _build/<v>/chatter), then <binary>/../share/chatter/name (`make install`). */
static void find_dir(char *out, const char *env, const char *name) {
  const char *v = getenv(env);
  if (v && *v) {
    snprintf(out, PATH_MAX, "%s", v);
    return;
  }
  if (is_dir(name)) {
    snprintf(out, PATH_MAX, "%s", name);
    return;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    static const char *const beside[] = {"../..", "../share/chatter"};
    for (size_t i = 0; i < sizeof beside / sizeof beside[0]; i++) {
      snprintf(out, PATH_MAX, "%.*s/%s/%s", PATH_MAX - 40, exe, beside[i], name);
      if (is_dir(out)) return;
    }
  }
  snprintf(out, PATH_MAX, "%s", name);
}

void app_config_load(const char *argv0) {
  (void)argv0;
  memset(&g_cfg, 0, sizeof g_cfg);
  g_cfg.port = env_int("PORT", 4000, 0, 65535);
  g_cfg.threads = env_int("CHATTER_THREADS", 0, 0, 256);
  g_cfg.db_pool = env_int("CHATTER_DB_POOL", 4, 1, 64);
  g_cfg.log_level = level_of(getenv("LOG_LEVEL"));
  /* 20: a family behind one NAT joining at once, not a script filling the
     directory (issue 7 item 6 saw 10,000 names from one socket) */
  g_cfg.new_users_per_minute = env_int("CHATTER_NEW_USERS_PER_MINUTE", 20, 0, 1000000000);
  const char *chaos = getenv("CHATTER_CHAOS");
  g_cfg.chaos = chaos ? atof(chaos) : 0.0;
  if (g_cfg.chaos < 0) g_cfg.chaos = 0;
  if (g_cfg.chaos > 1) g_cfg.chaos = 1;
  g_cfg.chaos_restart_ms = env_int("CHATTER_CHAOS_RESTART_MS", 0, 0, 10000);
  const char *url = getenv("DATABASE_URL");
  snprintf(g_cfg.database_url, sizeof g_cfg.database_url, "%s", url ? url : "");
  const char *host = getenv("HOST");
  snprintf(g_cfg.host, sizeof g_cfg.host, "%s", host && *host ? host : "127.0.0.1");
  g_cfg.max_conns = env_int("CHATTER_MAX_CONNS", 0, 0, 10000000);
  g_cfg.fd_reserve = env_int("CHATTER_FD_RESERVE", 64, 0, 100000);
  g_cfg.max_conns_per_addr = env_int("CHATTER_MAX_CONNS_PER_ADDR", 1024, 0, 10000000);
  g_cfg.cap_loopback = env_int("CHATTER_CAP_LOOPBACK", 0, 0, 1) == 1;
  g_cfg.idle_timeout_ms = env_int("CHATTER_IDLE_TIMEOUT_MS", 10000, 100, 3600000);
  g_cfg.header_timeout_ms = env_int("CHATTER_HEADER_TIMEOUT_MS", 10000, 100, 3600000);
  g_cfg.keepalive_timeout_ms = env_int("CHATTER_KEEPALIVE_TIMEOUT_MS", 60000, 100, 3600000);
  g_cfg.send_timeout_ms = env_int("CHATTER_SEND_TIMEOUT_MS", 30000, 100, 3600000);
  g_cfg.io_uring = env_int("CHATTER_IO_URING", 1, 0, 1) == 1;
  g_cfg.ws_sndbuf = env_int("CHATTER_WS_SNDBUF", 256 * 1024, 0, 64 * 1024 * 1024);
  /* 10 s: systemd's TimeoutStopSec is 90 s, Kubernetes' grace period 30 s */
  g_cfg.shutdown_ms = env_int("CHATTER_SHUTDOWN_MS", 10000, 100, 3600000);
  const char *origins = getenv("CHATTER_ALLOWED_ORIGINS");
  snprintf(g_cfg.allowed_origins, sizeof g_cfg.allowed_origins, "%s", origins ? origins : "");
  const char *hosts = getenv("CHATTER_ALLOWED_HOSTS");
  snprintf(g_cfg.allowed_hosts, sizeof g_cfg.allowed_hosts, "%s", hosts ? hosts : "");
  const char *debug = getenv("CHATTER_DEBUG");
  g_cfg.debug = debug && *debug && strcmp(debug, "0") != 0;
  const char *dash = getenv("CHATTER_DASHBOARD");
  snprintf(g_cfg.dashboard, sizeof g_cfg.dashboard, "%s", dash ? dash : "");
  if (dash && strlen(dash) >= sizeof g_cfg.dashboard) /* no mode is that long */
    snprintf(g_cfg.dashboard, sizeof g_cfg.dashboard, "?");
  g_cfg.db_timeout_ms = env_int("CHATTER_DB_TIMEOUT_MS", DB_QUERY_TIMEOUT_MS, 100, 60000);
  find_dir(g_cfg.web_root, "CHATTER_WEB_ROOT", "web");
  find_dir(g_cfg.sql_dir, "CHATTER_SQL_DIR", "sql");
  const char *fmt = getenv("LOG_FORMAT");
  if (fmt && !strcasecmp(fmt, "logfmt")) g_cfg.log_logfmt = true;
  else if (fmt && !strcasecmp(fmt, "text")) g_cfg.log_logfmt = false;
  else g_cfg.log_logfmt = !isatty(STDERR_FILENO);
  const char *file = getenv("LOG_FILE");
  snprintf(g_cfg.log_file, sizeof g_cfg.log_file, "%s", file ? file : "");
  app_log_reopen();
}

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_keys[] = {"debug", "info", "warn", "error"};

/* The log's stream: stderr, or LOG_FILE.  The lock covers the swap on SIGHUP
 * against writers on every scheduler thread (a line is one fprintf, which
 * stdio already locks; the mutex only keeps the FILE alive while in use). */
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *g_log;

int app_log_reopen(void) {
  if (!g_cfg.log_file[0]) return 0;
  FILE *f = fopen(g_cfg.log_file, "a");
  if (!f) {
    fprintf(stderr, "cannot open LOG_FILE %s; logging to stderr\n", g_cfg.log_file);
    return -1;
  }
  setvbuf(f, NULL, _IOLBF, 0);
  pthread_mutex_lock(&g_log_lock);
  FILE *old = g_log;
  g_log = f;
  pthread_mutex_unlock(&g_log_lock);
  if (old) fclose(old);
  return 0;
}

/* logfmt's quoted value: backslash, quote and control characters escaped. */
static void put_quoted(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p == '\n') fputs("\\n", f);
    else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

void app_log(int level, const char *fmt, ...) {
  if (level < g_cfg.log_level) return;
  char when[32], who[ACT_NAME_MAX + 8] = "main", text[1024];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);
  act_info_t info;
  if (act_self() && act_info_of(act_self(), &info) == ACT_OK)
    snprintf(who, sizeof who, "%s", info.name[0] ? info.name : info.behaviour);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_log_lock);
  FILE *f = g_log ? g_log : stderr;
  flockfile(f);
  if (g_cfg.log_logfmt) {
    fprintf(f, "ts=%s level=%s actor=", when, level_keys[level]);
    put_quoted(f, who);
    fputs(" msg=", f);
    put_quoted(f, text);
    fputc('\n', f);
  } else {
    fprintf(f, "%s %-5s [%s] %s\n", when, level_names[level], who, text);
  }
  funlockfile(f);
  pthread_mutex_unlock(&g_log_lock);
}
