/*
 * pubsub.c -- topics and their subscribers: "chat:lobby" (committed
 * messages, in seq order) and "chat:presence" (presence diffs, in version
 * order).
 *
 * Encode once, deliver many: a publisher hands over one ws_shared_t frame
 * (already JSON-encoded and WebSocket-framed); every subscriber gets a small
 * message holding a counted reference to that same buffer, never a copy.
 * Subscribing is a request so the subscriber knows when it is in place: a
 * session subscribes first and then reads history, and nothing committed in
 * between can slip past it.  Subscribers are monitored, so a dead session
 * leaves its topics by itself.
 *
 * Kind: an actor (pubsub.h), registered "pubsub".
 */
#include "app.h"
#include "vec.h"
#include "pubsub.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* A subscriber: found by pid through a hash table, and it remembers where
 * it sits in each topic's array, so subscribe, unsubscribe and DOWN are
 * O(1) and a publish walks only that topic's subscribers. */
typedef struct sub {
  struct sub *next;         /* hash chain */
  act_pid_t pid;
  act_ref_t mref;
  long at[TOPIC_COUNT];     /* index in topics[t].v, or -1 */
} sub_t;

/* A topic's subscribers, dense (runtime/vec.h): a publish sends to each
 * pid with no lookup; sub says who sits at each index. */
typedef struct member {
  act_pid_t pid;
  sub_t *sub;
} member_t;
typedef ACT_VEC(member_t) topic_t;

typedef struct pubsub {
  sub_t **b;                /* hash buckets by pid */
  size_t nb, n;
  topic_t topics[TOPIC_COUNT];
} pubsub_t;

static _Atomic int64_t g_latest_seq;
static _Atomic int64_t g_epoch;
static _Atomic int64_t g_presence_in_flight;
int64_t pubsub_latest_seq(void) { return atomic_load(&g_latest_seq); }
int64_t pubsub_epoch(void) { return atomic_load(&g_epoch); }
/* relaxed: a gauge for pacing, nothing is published through it */
int64_t pubsub_presence_in_flight(void) {
  return atomic_load_explicit(&g_presence_in_flight, memory_order_relaxed);
}

void app_event_release(void *data, size_t size) {
  (void)size;
  app_event_t *ev = data;
  if (ev->frame) ws_shared_release(ev->frame);
}

/* free_fn of a presence event pushed to a subscriber: handled or dropped,
 * it is no longer on its way. */
static void presence_push_release(void *data, size_t size) {
  atomic_fetch_sub_explicit(&g_presence_in_flight, 1, memory_order_relaxed);
  app_event_release(data, size);
}

/* An event with its own reference to the frame; fn runs when the message
 * is freed, or here if it could not be made. */
static int event_send(act_pid_t to, int type, int topic, int64_t seq, ws_shared_t *frame,
                      act_payload_free_fn fn) {
  app_event_t ev = {topic, seq, ws_shared_retain(frame)};
  int rc = act_send_ex(to, type, &ev, sizeof ev, fn);
  if (rc != ACT_OK) fn(&ev, sizeof ev);
  return rc;
}

int app_event_send(act_pid_t to, int type, int topic, int64_t seq, ws_shared_t *frame) {
  return event_send(to, type, topic, seq, frame, app_event_release);
}

static size_t bucket(const pubsub_t *ps, act_pid_t pid) {
  uint64_t x = pid;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  return (size_t)(x ^ (x >> 33)) & (ps->nb - 1);
}

static sub_t *find(pubsub_t *ps, act_pid_t pid) {
  if (!ps->nb) return NULL;
  for (sub_t *s = ps->b[bucket(ps, pid)]; s; s = s->next)
    if (s->pid == pid) return s;
  return NULL;
}

static void grow(pubsub_t *ps) {
  size_t nb = ps->nb ? ps->nb * 2 : 64;
  sub_t **b = calloc(nb, sizeof *b);
  if (!b) act_crash("pubsub: out of memory");
  size_t old = ps->nb;
  sub_t **ob = ps->b;
  ps->b = b;
  ps->nb = nb;
  for (size_t i = 0; i < old; i++)
    for (sub_t *s = ob[i], *next; s; s = next) {
      next = s->next;
      size_t k = bucket(ps, s->pid);
      s->next = b[k];
      b[k] = s;
    }
  free(ob);
}

static sub_t *find_or_add(pubsub_t *ps, act_pid_t pid) {
  sub_t *s = find(ps, pid);
  if (s) return s;
  if (ps->n >= ps->nb) grow(ps);
  s = calloc(1, sizeof *s);
  if (!s) act_crash("pubsub: out of memory");
  s->pid = pid;
  for (int t = 0; t < TOPIC_COUNT; t++) s->at[t] = -1;
  s->mref = act_monitor(pid);
  size_t k = bucket(ps, pid);
  s->next = ps->b[k];
  ps->b[k] = s;
  ps->n++;
  return s;
}

static void topic_add(topic_t *t, sub_t *s, int topic) {
  if (s->at[topic] >= 0) return;
  *act_vec_push_or_crash(t, "pubsub") = (member_t){s->pid, s};
  s->at[topic] = (long)t->n - 1;
}

/* Swap-remove: the last subscriber takes the hole and learns its new place. */
static void topic_del(topic_t *t, sub_t *s, int topic) {
  long i = s->at[topic];
  if (i < 0) return;
  act_vec_swap_remove(t, i);
  if ((size_t)i != t->n) t->v[i].sub->at[topic] = i;
  s->at[topic] = -1;
}

static void drop(pubsub_t *ps, sub_t *s) {
  for (int t = 0; t < TOPIC_COUNT; t++) topic_del(&ps->topics[t], s, t);
  for (sub_t **pp = &ps->b[bucket(ps, s->pid)]; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  ps->n--;
  free(s);
}

static void subscribe(pubsub_t *ps, act_msg_t *m) {
  const pubsub_sub_t *rq = m->data;
  if (rq->topic >= 0 && rq->topic < TOPIC_COUNT)
    topic_add(&ps->topics[rq->topic], find_or_add(ps, m->from), rq->topic);
  act_reply(m, PUBSUB_OK, NULL, 0);
}

static void unsubscribe(pubsub_t *ps, act_msg_t *m) {
  const pubsub_sub_t *rq = m->data;
  sub_t *s = find(ps, m->from);
  if (!s || rq->topic < 0 || rq->topic >= TOPIC_COUNT) return;
  topic_del(&ps->topics[rq->topic], s, rq->topic);
  for (int t = 0; t < TOPIC_COUNT; t++)
    if (s->at[t] >= 0) return;
  act_demonitor(s->mref);
  drop(ps, s);
}

/* One small envelope per subscriber holding a counted reference to the one
 * frame: no copy, no encoding, no allocation beyond the runtime's recycled
 * envelope. */
static void publish(pubsub_t *ps, act_msg_t *m) {
  const app_event_t *ev = m->data;
  if (ev->topic < 0 || ev->topic >= TOPIC_COUNT) return;
  if (ev->topic == TOPIC_LOBBY && ev->seq > atomic_load(&g_latest_seq))
    atomic_store(&g_latest_seq, ev->seq); /* before any subscriber hears of it */
  const topic_t *t = &ps->topics[ev->topic];
  act_payload_free_fn fn = app_event_release;
  if (ev->topic == TOPIC_PRESENCE) {
    atomic_fetch_add_explicit(&g_presence_in_flight, (int64_t)t->n, memory_order_relaxed);
    fn = presence_push_release;
  }
  for (size_t i = 0; i < t->n; i++)
    event_send(t->v[i].pid, APP_EVENT, ev->topic, ev->seq, ev->frame, fn);
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
  atomic_fetch_add(&g_epoch, 1);
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
  for (size_t i = 0; i < ps->nb; i++)
    for (sub_t *s = ps->b[i], *next; s; s = next) {
      next = s->next;
      free(s);
    }
  free(ps->b);
  for (int t = 0; t < TOPIC_COUNT; t++) act_vec_free(&ps->topics[t]);
  free(ps);
}

static const act_behaviour_t behaviour = {"pubsub", ps_init, ps_handle, ps_terminate};
const act_behaviour_t *pubsub_behaviour(void) { return &behaviour; }
