/*
 * metrics.c -- /metrics and /healthz: the counters (telemetry.c) and what
 * the runtime tells of the live actors (act_list: mailbox depths, the
 * restarts each supervisor made), in Prometheus's text format 0.0.4; and
 * whether the tree's named actors live and the database answers.
 *
 * Kind: plain functions, called by the acceptor (routes.c) on a request;
 * they read, from any thread, what the actors publish.
 */
#include "metrics.h"

#include "app.h"
#include "buf.h"
#include "presence.h"
#include "repo.h"
#include "telemetry.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

static void metric(act_buf_t *o, const char *name, const char *type, const char *help, long v) {
  act_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %ld\n", name, help, name, type, name, v);
}

static void actors(act_buf_t *o) {
  size_t n = act_list(NULL, 0) + 256;
  act_info_t *all = malloc(n * sizeof *all);
  if (!all) return;
  size_t live = act_list(all, n);
  if (live > n) live = n;
  size_t sessions = 0, max_session_mailbox = 0;
  for (size_t i = 0; i < live; i++)
    if (!strcmp(all[i].behaviour, "session")) {
      sessions++;
      if (all[i].mailbox_len > max_session_mailbox) max_session_mailbox = all[i].mailbox_len;
    }
  metric(o, "chatter_actors", "gauge", "Live actors.", (long)live);
  metric(o, "chatter_sessions", "gauge", "Live session actors.", (long)sessions);
  act_buf_printf(o, "# HELP chatter_mailbox_depth Messages queued per named actor (sessions: the deepest).\n"
         "# TYPE chatter_mailbox_depth gauge\n");
  for (size_t i = 0; i < live; i++)
    if (all[i].name[0]) act_buf_printf(o, "chatter_mailbox_depth{actor=\"%s\"} %zu\n", all[i].name, all[i].mailbox_len);
  act_buf_printf(o, "chatter_mailbox_depth{actor=\"session_max\"} %zu\n", max_session_mailbox);
  act_buf_printf(o, "# HELP chatter_supervisor_restarts_total Children restarted, per supervisor.\n"
         "# TYPE chatter_supervisor_restarts_total counter\n");
  for (size_t i = 0; i < live; i++)
    if (!strcmp(all[i].behaviour, "supervisor"))
      act_buf_printf(o, "chatter_supervisor_restarts_total{supervisor=\"%s\"} %u\n",
          all[i].name[0] ? all[i].name : "anonymous", all[i].restarts);
  free(all);
}

char *metrics_render(size_t *len) {
  act_buf_t o = ACT_BUF_INIT;
  metric(&o, "chatter_http_requests_total", "counter", "HTTP requests parsed.", tm_get(TM_HTTP_REQUESTS));
  metric(&o, "chatter_ws_connections_total", "counter", "WebSocket upgrades.", tm_get(TM_WS_CONNECTIONS));
  metric(&o, "chatter_ws_open", "gauge", "Open WebSockets.", tm_get(TM_WS_OPEN));
  metric(&o, "chatter_session_restarts_total", "counter", "Session actors restarted on a live socket.", tm_get(TM_SESSION_RESTARTS));
  metric(&o, "chatter_messages_total", "counter", "Messages committed.", tm_get(TM_MESSAGES));
  metric(&o, "chatter_presence_diffs_total", "counter", "Presence diffs published.", tm_get(TM_PRESENCE_DIFFS));
  metric(&o, "chatter_presence_catchups_merged_total", "counter",
         "Restarted sessions' catch-ups of several diffs sent as one.", tm_get(TM_CATCHUPS_MERGED));
  metric(&o, "chatter_push_sends_total", "counter",
         "Sends of sockets' queued frames by the end-of-turn flush (one per socket per turn).",
         tm_get(TM_PUSH_SENDS));
  metric(&o, "chatter_push_syscalls_total", "counter",
         "System calls those sends took: one per batch of up to 128 with io_uring.",
         tm_get(TM_PUSH_SYSCALLS));
  metric(&o, "chatter_slow_client_closes_total", "counter", "Sockets closed with 1008.", tm_get(TM_SLOW_CLIENTS));
  metric(&o, "chatter_rate_limited_total", "counter", "Sends refused by the rate limit.", tm_get(TM_RATE_LIMITED));
  metric(&o, "chatter_db_unavailable_total", "counter", "Requests answered unavailable.", tm_get(TM_DB_ERRORS));
  metric(&o, "chatter_db_queries_total", "counter", "Database round trips.", tm_get(TM_DB_QUERIES));
  long q = tm_get(TM_DB_QUERIES), us = tm_get(TM_DB_RTT_US_SUM);
  act_buf_printf(&o, "# HELP chatter_db_round_trip_seconds Time spent in database round trips.\n"
          "# TYPE chatter_db_round_trip_seconds summary\n"
          "chatter_db_round_trip_seconds_sum %.6f\nchatter_db_round_trip_seconds_count %ld\n",
      (double)us / 1e6, q);
  metric(&o, "chatter_db_up", "gauge", "1 when the repo's writer is connected.", repo_database_up());
  metric(&o, "chatter_shared_frames", "gauge", "Broadcast frames alive.", ws_shared_live());
  metric(&o, "chatter_dashboard_sweeps_total", "counter",
         "Dashboard snapshots that walked every actor.", tm_get(TM_DASH_SWEEPS));
  metric(&o, "chatter_dashboard_refreshes_total", "counter",
         "Dashboard snapshots that read only the actors drawn.", tm_get(TM_DASH_REFRESHES));
  actors(&o);
  return act_buf_take(&o, len); /* NULL if an append failed */
}

bool metrics_healthy(void) {
  static const char *const names[] = {APP_NAME_REPO_SUP, APP_NAME_PUBSUB,
                                      APP_NAME_PRESENCE, APP_NAME_SESSIONS, APP_NAME_ENDPOINT};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!act_whereis(names[i])) return false;
  return repo_database_up() && presence_ready();
}
