/*
 * routes.c -- what each HTTP request is answered (PROTOCOL.md "Transport").
 *
 *   /ws        GET: the WebSocket upgrade (http.c's handshake) once Host and
 *              Origin pass; HEAD: the same status without a body; else 405
 *   /healthz   GET, HEAD: 200 "ok" or 503; else 405 with Allow
 *   /metrics   GET, HEAD: Prometheus text; else 405 with Allow
 *   /debug/kill  only with CHATTER_DEBUG=1 (see debug_kill)
 *   /dashboard, /dashboard/ws  the live tree (dashboard.c), unless
 *              CHATTER_DASHBOARD=off; the socket passes the same checks as /ws
 *   anything else: a static file under web/ (http.c)
 *
 * Two checks come first (issue 7 items 9 and 10):
 *   - Host (DNS rebinding): a page on evil.example whose name was re-pointed
 *     at 127.0.0.1 sends "Host: evil.example".  Accepted: localhost, any IP
 *     literal (a rebinding needs a name), the configured HOST, and the names
 *     in CHATTER_ALLOWED_HOSTS ("*": any).  Others: 403.  A request without
 *     Host (HTTP/1.0; HTTP/1.1 without one is 400 in http.c) passes.
 *   - Origin, on /ws only (cross-site WebSocket hijacking), as Phoenix's
 *     check_origin: same origin as Host by default, or one listed in
 *     CHATTER_ALLOWED_ORIGINS ("*": any); others 403 before the upgrade.  No
 *     Origin at all is a non-browser client (browsers always send one on a
 *     WebSocket): accepted.
 * Security headers go on every response (http.c's put_head).
 *
 * Kind: part of the acceptor actor (endpoint.c); runs in its callbacks.
 */
#include "conn.h"
#include "dashboard.h"
#include "metrics.h"
#include "telemetry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static http_static_t g_static;
static bool g_static_open;

int endpoint_static_open(const char *root) {
  int rc = http_static_open(&g_static, root);
  g_static_open = rc == 0;
  return rc;
}

/* ------------------------------------------------------ Host and Origin */

/* Splits "name:port", "[v6]:port" or "name" into a lower-case host (IPv6
 * keeps its brackets) and a port (NULL if none).  false if malformed. */
static bool split_authority(const char *a, char *host, size_t cap, const char **port) {
  const char *end;
  *port = NULL;
  if (a[0] == '[') {
    end = strchr(a, ']');
    if (!end) return false;
    end++;
    if (*end && *end != ':') return false;
  } else {
    end = strchr(a, ':');
    if (!end) end = a + strlen(a);
  }
  size_t n = (size_t)(end - a);
  if (n == 0 || n >= cap) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = a[i];
    host[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
  }
  host[n] = 0;
  if (*end == ':') {
    *port = end + 1;
    if (!**port || strspn(*port, "0123456789") != strlen(*port)) return false;
  }
  return true;
}

/* True if item is in the comma-separated list (case-insensitive, blanks
 * around items ignored), or the list holds "*". */
static bool in_list(const char *list, const char *item) {
  size_t ilen = strlen(item);
  for (const char *p = list; *p;) {
    while (*p == ' ' || *p == ',') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > p && t[-1] == ' ') t--;
    size_t n = (size_t)(t - p);
    if ((n == 1 && *p == '*') || (n == ilen && n && strncasecmp(p, item, n) == 0)) return true;
    p = e;
  }
  return false;
}

static bool is_ip_literal(const char *h) {
  if (h[0] == '[') return true; /* split_authority kept the brackets */
  return strspn(h, "0123456789.") == strlen(h);
}

static bool host_allowed(const http_req_t *r) {
  if (!r->host[0]) return r->http_major == 1 && r->http_minor == 0;
  char host[HTTP_HOST_MAX + 1];
  const char *port;
  if (!split_authority(r->host, host, sizeof host, &port)) return false;
  const app_config_t *cfg = app_config();
  return strcmp(host, "localhost") == 0 || is_ip_literal(host) ||
         strcasecmp(host, cfg->host) == 0 || in_list(cfg->allowed_hosts, host);
}

/* Origin's scheme://host[:port] against Host, default ports filled in. */
static bool same_origin(const char *origin, const char *host_hdr) {
  const char *dflt;
  if (strncasecmp(origin, "http://", 7) == 0) dflt = "80", origin += 7;
  else if (strncasecmp(origin, "https://", 8) == 0) dflt = "443", origin += 8;
  else return false;
  char oh[HTTP_ORIGIN_MAX + 1], hh[HTTP_HOST_MAX + 1];
  const char *op, *hp;
  if (strchr(origin, '/') || !split_authority(origin, oh, sizeof oh, &op) ||
      !split_authority(host_hdr, hh, sizeof hh, &hp))
    return false;
  return strcmp(oh, hh) == 0 && strcmp(op ? op : dflt, hp ? hp : dflt) == 0;
}

static bool origin_allowed(const http_req_t *r) {
  if (!r->origin[0]) return true; /* not a browser */
  if (in_list(app_config()->allowed_origins, r->origin)) return true;
  return r->host[0] && same_origin(r->origin, r->host);
}

/* ------------------------------------------------------------ routes */

static bool is_get_or_head(const http_req_t *r) {
  return r->method == HTTP_GET || r->method == HTTP_HEAD;
}

/* CHATTER_DEBUG=1 only: POST /debug/kill?name=NAME sends exit(kill) to a
 * registered actor, as observer's "kill process" would -- for the tests
 * and demos of what the supervisors do.  Never enabled by default. */
static void debug_kill(const http_req_t *r, act_buf_t *buf) {
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

static route_action_t answer_ws(const http_req_t *r, act_buf_t *buf) {
  if (!is_get_or_head(r)) {
    http_response_error_allow(buf, 405, "GET", false, false);
    return ROUTE_CLOSE;
  }
  if (!origin_allowed(r)) {
    app_log(LOG_WARN, "refusing a WebSocket from origin %.200s (Host %.200s)", r->origin, r->host);
    http_response_error(buf, 403, false, r->method == HTTP_HEAD);
    return ROUTE_CLOSE;
  }
  return http_ws_handshake(r, buf) == 101 ? ROUTE_UPGRADE : ROUTE_CLOSE;
}

route_action_t routes_answer(const http_req_t *r, act_buf_t *buf) {
  bool head = r->method == HTTP_HEAD;
  tm_add(TM_HTTP_REQUESTS, 1);
  if (!host_allowed(r)) {
    app_log(LOG_WARN, "refusing Host %.200s (CHATTER_ALLOWED_HOSTS)", r->host);
    http_response_error(buf, 403, false, head);
    return ROUTE_CLOSE;
  }
  if (strcmp(r->path, "/ws") == 0 || dashboard_is_ws(r->path)) return answer_ws(r, buf);
  if (strcmp(r->path, "/debug/kill") == 0 && app_config()->debug) {
    debug_kill(r, buf);
  } else if (strcmp(r->path, "/healthz") == 0 || strcmp(r->path, "/metrics") == 0) {
    if (!is_get_or_head(r)) {
      http_response_error(buf, 405, r->keep_alive, false);
    } else if (r->path[1] == 'h') {
      bool ok = metrics_healthy();
      http_response_text(buf, ok ? 200 : 503, "text/plain; charset=utf-8",
                         ok ? "ok" : "unavailable", ok ? 2 : 11, r->keep_alive, head);
    } else {
      size_t len;
      char *body = metrics_render(&len);
      http_response_text(buf, body ? 200 : 500, "text/plain; version=0.0.4; charset=utf-8",
                         body ? body : "", body ? len : 0, r->keep_alive, head);
      free(body);
    }
  } else if (g_static_open && dashboard_is_page(r->path)) {
    dashboard_serve_page(&g_static, r, buf); /* dashboard.c: /dashboard */
  } else if (!g_static_open) {
    http_response_error(buf, 404, r->keep_alive, head);
  } else {
    http_serve_static(&g_static, r, buf);
  }
  return r->keep_alive ? ROUTE_KEEP : ROUTE_CLOSE;
}
