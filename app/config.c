/*
 * config.c -- configuration from the environment, Phoenix-style, and the
 * one-line-per-event log.
 *
 *   PORT (4000)  DATABASE_URL  CHATTER_THREADS (cores)  CHATTER_DB_POOL (4)
 *   LOG_LEVEL (info)  CHATTER_CHAOS (0)  HOST (127.0.0.1; 0.0.0.0 for all)
 *   CHATTER_NEW_USERS_PER_MINUTE (20; 0 = no limit)
 *   CHATTER_WEB_ROOT, CHATTER_SQL_DIR (found beside the binary otherwise)
 */
#include "app.h"

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

/* env, then ./name, then <binary>/../../name (the binary is _build/<v>/chatter) */
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
    snprintf(out, PATH_MAX, "%.*s/../../%s", PATH_MAX - 16, exe, name);
    if (is_dir(out)) return;
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
  const char *url = getenv("DATABASE_URL");
  snprintf(g_cfg.database_url, sizeof g_cfg.database_url, "%s", url ? url : "");
  find_dir(g_cfg.web_root, "CHATTER_WEB_ROOT", "web");
  find_dir(g_cfg.sql_dir, "CHATTER_SQL_DIR", "sql");
}

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

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
  fprintf(stderr, "%s %-5s [%s] %s\n", when, level_names[level], who, text);
}
