/*
 * ring -- message passing around a ring of 1,000 actors.
 *
 * Measures: 1,000 actors linked in a ring pass one token N hops (default
 * 10,000,000); each hop is one message from an actor to the next; rate = hops
 * per second.  Peer: bench/peers/erlang/ring.erl.
 *
 * Placement: the whole ring on one scheduler (the driver spawns the nodes
 * with ACT_SCHED_CALLER).  Only one actor holds the token at any time, so a
 * second thread could add nothing but a cross-thread wake-up per hop.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define NODES 1000

enum { MSG_GO = 1, MSG_NEXT, MSG_TOKEN, MSG_DONE };

static uint64_t N;
static double t0, t1;
static atomic_int done;
static act_pid_t driver;

typedef struct { act_pid_t next; } node_t;

static int node_init(void *args, void **state) {
  (void)args;
  node_t *s = malloc(sizeof *s);
  if (!s) return ACT_ENOMEM;
  s->next = ACT_NOPID;
  *state = s;
  return 0;
}

static void node_handle(void *state, act_msg_t *msg) {
  node_t *s = state;
  uint64_t k;
  switch (msg->type) {
  case MSG_NEXT:
    memcpy(&s->next, msg->data, sizeof s->next);
    break;
  case MSG_TOKEN:
    memcpy(&k, msg->data, sizeof k);
    if (k == 0) {
      act_send(driver, MSG_DONE, NULL, 0);
    } else {
      k--;
      act_send(s->next, MSG_TOKEN, &k, sizeof k);
    }
    break;
  }
}

static void node_terminate(void *state, act_reason_t reason) {
  (void)reason;
  free(state);
}

static const act_behaviour_t node_b = {"ring_node", node_init, node_handle, node_terminate};

typedef struct { act_pid_t nodes[NODES]; } driver_t;

static int driver_init(void *args, void **state) {
  (void)args;
  driver_t *s = malloc(sizeof *s);
  if (!s) return ACT_ENOMEM;
  act_spawn_opts_t o = placed(ACT_SCHED_CALLER);
  for (int i = 0; i < NODES; i++) {
    int err = 0;
    s->nodes[i] = act_spawn(&node_b, NULL, &o, &err);
    if (!s->nodes[i]) die("spawn ring node", err);
  }
  for (int i = 0; i < NODES; i++)
    act_send(s->nodes[i], MSG_NEXT, &s->nodes[(i + 1) % NODES], sizeof(act_pid_t));
  *state = s;
  return 0;
}

static void driver_handle(void *state, act_msg_t *msg) {
  driver_t *s = state;
  switch (msg->type) {
  case MSG_GO: {
    uint64_t k = N;
    t0 = now_s();
    act_send(s->nodes[0], MSG_TOKEN, &k, sizeof k);
    break;
  }
  case MSG_DONE:
    t1 = now_s();
    atomic_store(&done, 1);
    for (int i = 0; i < NODES; i++) act_exit(s->nodes[i], act_reason(ACT_SHUTDOWN));
    act_stop(act_reason(ACT_NORMAL));
    break;
  }
}

static void driver_terminate(void *state, act_reason_t reason) {
  (void)reason;
  free(state);
}

static const act_behaviour_t driver_b = {"ring_driver", driver_init, driver_handle,
                                         driver_terminate};

int main(int argc, char **argv) {
  N = arg_n(argc, argv, 10000000);
  start_runtime();
  int err = 0;
  driver = act_spawn(&driver_b, NULL, NULL, &err);
  if (!driver) die("spawn driver", err);
  act_send(driver, MSG_GO, NULL, 0);
  await_driver(driver, &done);
  double s = t1 - t0;
  printf("name=ring n=%llu seconds=%.3f rate=%.0f nodes=%d threads=%d\n",
         (unsigned long long)N, s, (double)N / s, NODES, act_scheduler_count());
  fflush(stdout);
  act_stop_system();
  return 0;
}
