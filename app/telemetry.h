/*
 * telemetry.h -- the counters behind /metrics (telemetry.c).
 *
 * Counters are process-wide atomics that any thread bumps (tm_add, one
 * relaxed fetch_add); metrics.c renders them for /metrics with what the
 * runtime tells of its actors.
 */
#ifndef CHATTER_TELEMETRY_H
#define CHATTER_TELEMETRY_H

#include "act.h"

#include <stdbool.h>
#include <stddef.h>

enum {
  TM_HTTP_REQUESTS,       /* counter */
  TM_WS_CONNECTIONS,      /* counter: upgrades */
  TM_WS_OPEN,             /* gauge */
  TM_SESSION_RESTARTS,    /* counter: session actors restarted on a live socket */
  TM_MESSAGES,            /* counter: messages committed */
  TM_SLOW_CLIENTS,        /* counter: closed with 1008 */
  TM_RATE_LIMITED,        /* counter */
  TM_DB_ERRORS,           /* counter: requests answered `unavailable` */
  TM_DB_QUERIES,          /* counter */
  TM_DB_RTT_US_SUM,       /* counter: microseconds spent in queries */
  TM_DASH_SWEEPS,         /* counter: dashboard snapshots that walked every actor */
  TM_DASH_REFRESHES,      /* counter: dashboard snapshots that read the drawn ones only */
  TM_PRESENCE_DIFFS,      /* counter: presence diffs published */
  TM_CATCHUPS_MERGED,     /* counter: restarted sessions' catch-ups sent as one merged diff */
  TM_PUSH_SENDS,          /* counter: sends of sockets' queued frames by the flush's batches */
  TM_PUSH_SYSCALLS,       /* counter: system calls those took (sendbatch.c) */
  TM_COUNT
};
void tm_add(int metric, long delta);
long tm_get(int metric);


#endif
