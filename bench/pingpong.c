/*
 * pingpong -- message round-trip latency/throughput between two actors.
 *
 * Measures: two actors bounce one small message (an 8-byte counter) back and
 * forth N times (default 10,000,000); rate = round trips per second.  Peer:
 * bench/peers/erlang/pingpong.erl.
 *
 * Placement: both actors on one scheduler (the pong is spawned by the ping
 * with ACT_SCHED_CALLER).  Across two threads every hop would cost a wake-up
 * of the other scheduler; on one thread a send is a local enqueue, which is
 * also what the BEAM ends up doing with its two processes on one run queue.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum { MSG_GO = 1, MSG_PING, MSG_PONG };

static uint64_t N;
static double t0, t1;
static atomic_int done;

static int pong_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  return 0;
}

static void pong_handle(void *state, act_msg_t *msg) {
  (void)state;
  if (msg->type == MSG_PING) act_send(msg->from, MSG_PONG, msg->data, msg->size);
}

static const act_behaviour_t pong_b = {"pong", pong_init, pong_handle, NULL};

typedef struct {
  act_pid_t pong;
  uint64_t left;
} ping_t;

static int ping_init(void *args, void **state) {
  (void)args;
  ping_t *s = malloc(sizeof *s);
  if (!s) return ACT_ENOMEM;
  act_spawn_opts_t o = placed(ACT_SCHED_CALLER);
  int err = 0;
  s->pong = act_spawn(&pong_b, NULL, &o, &err);
  if (!s->pong) die("spawn pong", err);
  s->left = N;
  *state = s;
  return 0;
}

static void ping_handle(void *state, act_msg_t *msg) {
  ping_t *s = state;
  uint64_t k;
  switch (msg->type) {
  case MSG_GO:
    t0 = now_s();
    k = s->left;
    act_send(s->pong, MSG_PING, &k, sizeof k);
    break;
  case MSG_PONG:
    if (--s->left == 0) {
      t1 = now_s();
      atomic_store(&done, 1);
      act_exit(s->pong, act_reason(ACT_SHUTDOWN));
      act_stop(act_reason(ACT_NORMAL));
      break;
    }
    k = s->left;
    act_send(s->pong, MSG_PING, &k, sizeof k);
    break;
  }
}

static void ping_terminate(void *state, act_reason_t reason) {
  (void)reason;
  free(state);
}

static const act_behaviour_t ping_b = {"ping", ping_init, ping_handle, ping_terminate};

int main(int argc, char **argv) {
  N = arg_n(argc, argv, 10000000);
  start_runtime();
  int err = 0;
  act_pid_t ping = act_spawn(&ping_b, NULL, NULL, &err);
  if (!ping) die("spawn ping", err);
  act_send(ping, MSG_GO, NULL, 0);
  await_driver(ping, &done);
  double s = t1 - t0;
  printf("name=pingpong n=%llu seconds=%.3f rate=%.0f threads=%d\n",
         (unsigned long long)N, s, (double)N / s, act_scheduler_count());
  fflush(stdout);
  act_stop_system();
  return 0;
}
