/*
 * fanout -- one-to-many delivery with acknowledgement.
 *
 * Measures: one publisher sends a message to each of 10,000 subscribers,
 * each subscriber acks, and the next round starts when all 10,000 acks are
 * in; 300 rounds (argv[1] = rounds).  rate = deliveries per second
 * (subscribers x rounds / seconds).  Peer: bench/peers/erlang/fanout.erl.
 *
 * Placement: ACT_SCHED_CALLER, publisher and subscribers on one scheduler:
 * every delivery and ack is then a local enqueue.  ACT_SCHED_NEXT (deal the
 * subscribers round-robin so the other core handles half the deliveries)
 * measured 2.5x slower here: each of the 10,000 acks per round crosses
 * threads into the publisher's one mailbox, and the publisher's core idles
 * while it waits.  $FANOUT_PLACEMENT=caller|next overrides it for experiments.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SUBS 10000
#ifndef PLACEMENT
#define PLACEMENT ACT_SCHED_CALLER
#endif

enum { MSG_GO = 1, MSG_DELIVER, MSG_ACK };

static uint64_t ROUNDS;
static double t0, t1;
static atomic_int done;
static int placement = PLACEMENT;

static int sub_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  return 0;
}

static void sub_handle(void *state, act_msg_t *msg) {
  (void)state;
  if (msg->type == MSG_DELIVER) act_send(msg->from, MSG_ACK, msg->data, msg->size);
}

static const act_behaviour_t sub_b = {"subscriber", sub_init, sub_handle, NULL};

typedef struct {
  uint64_t round, acks;
  act_pid_t subs[SUBS];
} pub_t;

static void publish(pub_t *s) {
  for (int i = 0; i < SUBS; i++) act_send(s->subs[i], MSG_DELIVER, &s->round, sizeof s->round);
}

static int pub_init(void *args, void **state) {
  (void)args;
  pub_t *s = malloc(sizeof *s);
  if (!s) return ACT_ENOMEM;
  s->round = s->acks = 0;
  act_spawn_opts_t o = placed(placement);
  for (int i = 0; i < SUBS; i++) {
    int err = 0;
    s->subs[i] = act_spawn(&sub_b, NULL, &o, &err);
    if (!s->subs[i]) die("spawn subscriber", err);
  }
  *state = s;
  return 0;
}

static void pub_handle(void *state, act_msg_t *msg) {
  pub_t *s = state;
  switch (msg->type) {
  case MSG_GO:
    t0 = now_s();
    publish(s);
    break;
  case MSG_ACK: {
    uint64_t r;
    memcpy(&r, msg->data, sizeof r);
    if (r != s->round) act_crash("ack for round %llu in round %llu", (unsigned long long)r,
                                 (unsigned long long)s->round);
    if (++s->acks < SUBS) break;
    s->acks = 0;
    if (++s->round == ROUNDS) {
      t1 = now_s();
      atomic_store(&done, 1);
      for (int i = 0; i < SUBS; i++) act_exit(s->subs[i], act_reason(ACT_SHUTDOWN));
      act_stop(act_reason(ACT_NORMAL));
      break;
    }
    publish(s);
    break;
  }
  }
}

static void pub_terminate(void *state, act_reason_t reason) {
  (void)reason;
  free(state);
}

static const act_behaviour_t pub_b = {"publisher", pub_init, pub_handle, pub_terminate};

int main(int argc, char **argv) {
  ROUNDS = arg_n(argc, argv, 300);
  const char *p = getenv("FANOUT_PLACEMENT");
  if (p && !strcmp(p, "caller")) placement = ACT_SCHED_CALLER;
  if (p && !strcmp(p, "next")) placement = ACT_SCHED_NEXT;
  start_runtime();
  int err = 0;
  act_pid_t pub = act_spawn(&pub_b, NULL, NULL, &err);
  if (!pub) die("spawn publisher", err);
  act_send(pub, MSG_GO, NULL, 0);
  await_driver(pub, &done);
  double s = t1 - t0;
  uint64_t d = ROUNDS * SUBS;
  printf("name=fanout n=%llu seconds=%.3f rate=%.0f subscribers=%d rounds=%llu placement=%s "
         "threads=%d\n",
         (unsigned long long)d, s, (double)d / s, SUBS, (unsigned long long)ROUNDS,
         placement == ACT_SCHED_NEXT ? "next" : "caller", act_scheduler_count());
  fflush(stdout);
  act_stop_system();
  return 0;
}
