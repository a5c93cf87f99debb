/*
 * pubsub.h -- the pubsub actor (pubsub.c): topics and their subscribers.
 *
 * A publish carries one WebSocket frame, encoded once (ws_shared_t); each
 * subscriber gets an app_event_t holding its own counted reference to it.
 */
#ifndef CHATTER_PUBSUB_H
#define CHATTER_PUBSUB_H

#include "act.h"
#include "ws.h"

#include <stdint.h>

enum {
  /* pubsub */
  PUBSUB_SUBSCRIBE = 200, /* pubsub_sub_t -> PUBSUB_OK (a request: the ack
                             says the subscription is in place) */
  PUBSUB_UNSUBSCRIBE,     /* pubsub_sub_t, no reply */
  PUBSUB_PUBLISH,         /* app_event_t, no reply */
  PUBSUB_OK,
  APP_EVENT,              /* app_event_t pushed to a subscriber */
};

/* The highest lobby seq pubsub has published (0 before the first): the
 * latest-messages cache of session.c is valid while it holds that seq. */
int64_t pubsub_latest_seq(void);
/* Which pubsub is running (+1 per start): a message published to a pubsub
 * that died was pushed to nobody, so a cache filled under an earlier one is
 * not trusted. */
int64_t pubsub_epoch(void);
/* Presence events pushed to subscribers and not yet handled (or dropped
 * with a dead subscriber's mailbox): while it is above 0, the last diff is
 * still being fanned out, and presence holds the next one (presence.c).
 * Only this topic is counted: an atomic per delivery of every message
 * would be paid for nothing. */
int64_t pubsub_presence_in_flight(void);

/* Pubsub topics and events.  A presence event's seq is presence's version;
 * a lobby event's seq is the message's seq. */
enum { TOPIC_LOBBY = 0, TOPIC_PRESENCE = 1, TOPIC_COUNT };
typedef struct pubsub_sub { int topic; } pubsub_sub_t;
typedef struct app_event {
  int topic;
  int64_t seq;
  ws_shared_t *frame; /* one reference, owned by whoever holds the event */
} app_event_t;
/* free_fn of every message that carries an app_event_t */
void app_event_release(void *data, size_t size);
/* Send an event with its own reference to the frame (retained here). */
int app_event_send(act_pid_t to, int type, int topic, int64_t seq, ws_shared_t *frame);

const act_behaviour_t *pubsub_behaviour(void);

#endif
