/*
 * pubsub.c -- topics and their subscribers: "chat:lobby" (committed
 * messages, in seq order) and "chat:presence" (presence diffs and
 * user_created, in version order).
 *
 * Encode once, deliver many: a publisher hands over one ws_shared_t frame
 * (already JSON-encoded and WebSocket-framed); every subscriber gets a small
 * message holding a counted reference to that same buffer, never a copy.
 * Subscribing is a request so the subscriber knows when it is in place: a
 * session subscribes first and then reads history, and nothing committed in
 * between can slip past it.  Subscribers are monitored, so a dead session
 * leaves its topics by itself.
 */
#include "app.h"

#include <stdlib.h>
#include <string.h>

typedef struct sub {
  act_pid_t pid;
  act_ref_t mref;
  bool topics[TOPIC_COUNT];
} sub_t;

typedef struct pubsub {
  sub_t *subs;
  size_t n, cap;
} pubsub_t;

void app_event_release(void *data, size_t size) {
  (void)size;
  app_event_t *ev = data;
  if (ev->frame) ws_shared_release(ev->frame);
}

int app_event_send(act_pid_t to, int type, int topic, int64_t seq, ws_shared_t *frame) {
  app_event_t ev = {topic, seq, ws_shared_retain(frame)};
  int rc = act_send_ex(to, type, &ev, sizeof ev, app_event_release);
  if (rc != ACT_OK) ws_shared_release(frame);
  return rc;
}

static sub_t *find(pubsub_t *ps, act_pid_t pid) {
  for (size_t i = 0; i < ps->n; i++)
    if (ps->subs[i].pid == pid) return &ps->subs[i];
  return NULL;
}

static sub_t *find_or_add(pubsub_t *ps, act_pid_t pid) {
  sub_t *s = find(ps, pid);
  if (s) return s;
  if (ps->n == ps->cap) {
    size_t ncap = ps->cap ? ps->cap * 2 : 64;
    sub_t *ns = realloc(ps->subs, ncap * sizeof *ns);
    if (!ns) act_crash("pubsub: out of memory");
    ps->subs = ns;
    ps->cap = ncap;
  }
  s = &ps->subs[ps->n++];
  memset(s, 0, sizeof *s);
  s->pid = pid;
  s->mref = act_monitor(pid);
  return s;
}

static void drop(pubsub_t *ps, sub_t *s) {
  *s = ps->subs[--ps->n];
}

static void subscribe(pubsub_t *ps, act_msg_t *m) {
  const pubsub_sub_t *rq = m->data;
  if (rq->topic >= 0 && rq->topic < TOPIC_COUNT) find_or_add(ps, m->from)->topics[rq->topic] = true;
  act_reply(m, PUBSUB_OK, NULL, 0);
}

static void unsubscribe(pubsub_t *ps, act_msg_t *m) {
  const pubsub_sub_t *rq = m->data;
  sub_t *s = find(ps, m->from);
  if (!s || rq->topic < 0 || rq->topic >= TOPIC_COUNT) return;
  s->topics[rq->topic] = false;
  for (int t = 0; t < TOPIC_COUNT; t++)
    if (s->topics[t]) return;
  act_demonitor(s->mref);
  drop(ps, s);
}

static void publish(pubsub_t *ps, act_msg_t *m) {
  const app_event_t *ev = m->data;
  for (size_t i = 0; i < ps->n; i++)
    if (ps->subs[i].topics[ev->topic])
      app_event_send(ps->subs[i].pid, APP_EVENT, ev->topic, ev->seq, ev->frame);
}

static void on_down(pubsub_t *ps, act_msg_t *m) {
  const act_down_msg_t *d = m->data;
  sub_t *s = find(ps, d->pid);
  if (s && s->mref == d->ref) drop(ps, s);
}

static int ps_init(void *args, void **state) {
  (void)args;
  pubsub_t *ps = calloc(1, sizeof *ps);
  if (!ps) return ACT_ENOMEM;
  *state = ps;
  return ACT_OK;
}

static void ps_handle(void *state, act_msg_t *m) {
  pubsub_t *ps = state;
  switch (m->type) {
  case PUBSUB_SUBSCRIBE: subscribe(ps, m); break;
  case PUBSUB_UNSUBSCRIBE: unsubscribe(ps, m); break;
  case PUBSUB_PUBLISH: publish(ps, m); break;
  case ACT_MSG_DOWN: on_down(ps, m); break;
  default: break;
  }
}

static void ps_terminate(void *state, act_reason_t r) {
  (void)r;
  pubsub_t *ps = state;
  if (!ps) return;
  free(ps->subs);
  free(ps);
}

static const act_behaviour_t behaviour = {"pubsub", ps_init, ps_handle, ps_terminate};
const act_behaviour_t *pubsub_behaviour(void) { return &behaviour; }
