/*
 * session.h -- the session actor (session.c): one per WebSocket, under the
 * dynamic supervisor "sessions", serving the socket's requests (PROTOCOL.md)
 * and pushing it what pubsub publishes.  What it is told by its connection
 * (conn.c), and by itself.
 */
#ifndef CHATTER_SESSION_H
#define CHATTER_SESSION_H

#include "act.h"

#include <stdint.h>

enum {
  /* conn -> session (same scheduler) */
  CONN_FRAME = 400,       /* conn_frame_t: the conn has a request for you */
  CONN_CLOSED,            /* the socket is gone: stop */
  CONN_TAKEN_OVER,        /* another socket took this name over */
  /* 403 is CONN_TAKE_OVER_NOTICE (presence.h) */
  SESSION_RETRY = 404,    /* a retry timer (catch-up, back-pressure) */
  SESSION_START,          /* retry the start once pubsub and presence are back */
  SESSION_DIFF,           /* the next paced presence_diff may go out */
};

typedef struct conn_frame { uint64_t frame_no; } conn_frame_t;

const act_behaviour_t *session_behaviour(void);

#endif
