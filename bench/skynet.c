/*
 * skynet -- spawn cost and tree-shaped fan-in at scale.
 *
 * Measures: a 10-ary tree of 1,111,111 actors down to 1,000,000 leaves.  Each
 * inner actor spawns 10 children and sums their replies; a leaf replies with
 * its id.  rate = actors per second (spawn, run, reply, exit); the sum must
 * be 499999500000 (checked; exit status 1 if not).  argv[1] = number of
 * leaves (a power of 10) for quick runs.  Peer: bench/peers/erlang/skynet.erl.
 *
 * Placement: the first three levels (the root, its 10 children and their 100
 * children) are spawned with ACT_SCHED_NEXT so that the 100 subtrees of
 * 10,000 leaves are dealt round-robin over the schedulers and both cores
 * work; below that ACT_SCHED_CALLER keeps each subtree on one thread, so its
 * 11,111 spawns and replies never cross threads.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define SPREAD_MIN_SIZE 10000 /* subtrees at least this big go round-robin */

enum { MSG_SUM = 1 };

typedef struct {
  act_pid_t parent;
  uint64_t num;  /* first leaf id of this subtree */
  uint64_t size; /* leaves under it */
} sk_args_t;

/* Inner nodes keep their children's args in their state: init runs
 * asynchronously, and a child's init has surely run before its reply. */
typedef struct {
  act_pid_t parent;
  uint64_t sum;
  int pending;
  sk_args_t kids[10];
} sk_node_t;

static uint64_t LEAVES, ACTORS;
static double t0, t1;
static uint64_t result;
static atomic_int done;

static const act_behaviour_t sk_b;

static int sk_init(void *args, void **state) {
  const sk_args_t *a = args;
  if (a->size == 1) { /* leaf: answer and go */
    act_send(a->parent, MSG_SUM, &a->num, sizeof a->num);
    act_stop(act_reason(ACT_NORMAL));
    *state = NULL;
    return 0;
  }
  sk_node_t *s = malloc(sizeof *s);
  if (!s) return ACT_ENOMEM;
  s->parent = a->parent;
  s->sum = 0;
  s->pending = 10;
  uint64_t sub = a->size / 10;
  act_spawn_opts_t o = placed(sub >= SPREAD_MIN_SIZE ? ACT_SCHED_NEXT : ACT_SCHED_CALLER);
  act_pid_t self = act_self();
  *state = s;
  for (int i = 0; i < 10; i++) {
    s->kids[i] = (sk_args_t){self, a->num + (uint64_t)i * sub, sub};
    int err = 0;
    if (!act_spawn(&sk_b, &s->kids[i], &o, &err)) die("spawn skynet node", err);
  }
  return 0;
}

static void sk_handle(void *state, act_msg_t *msg) {
  sk_node_t *s = state;
  if (msg->type != MSG_SUM || !s) return;
  uint64_t v;
  memcpy(&v, msg->data, sizeof v);
  s->sum += v;
  if (--s->pending == 0) {
    act_send(s->parent, MSG_SUM, &s->sum, sizeof s->sum);
    act_stop(act_reason(ACT_NORMAL));
  }
}

static void sk_terminate(void *state, act_reason_t reason) {
  (void)reason;
  free(state);
}

static const act_behaviour_t sk_b = {"skynet", sk_init, sk_handle, sk_terminate};

/* The driver starts the root and collects its sum. */
static sk_args_t root_args;

static int drv_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  return 0;
}

static void drv_handle(void *state, act_msg_t *msg) {
  (void)state;
  if (msg->type == 0) { /* go */
    root_args = (sk_args_t){act_self(), 0, LEAVES};
    act_spawn_opts_t o = placed(LEAVES >= SPREAD_MIN_SIZE ? ACT_SCHED_NEXT : ACT_SCHED_CALLER);
    int err = 0;
    t0 = now_s();
    if (!act_spawn(&sk_b, &root_args, &o, &err)) die("spawn skynet root", err);
  } else if (msg->type == MSG_SUM) {
    t1 = now_s();
    memcpy(&result, msg->data, sizeof result);
    atomic_store(&done, 1);
    act_stop(act_reason(ACT_NORMAL));
  }
}

static const act_behaviour_t drv_b = {"skynet_driver", drv_init, drv_handle, NULL};

int main(int argc, char **argv) {
  LEAVES = arg_n(argc, argv, 1000000);
  for (uint64_t l = LEAVES; l >= 1; l /= 10) {
    if (l != 1 && l % 10) {
      fprintf(stderr, "skynet: leaves must be a power of 10\n");
      return 2;
    }
    ACTORS += l;
  }
  start_runtime();
  int err = 0;
  act_pid_t drv = act_spawn(&drv_b, NULL, NULL, &err);
  if (!drv) die("spawn driver", err);
  act_send(drv, 0, NULL, 0);
  await_driver(drv, &done);
  double s = t1 - t0;
  uint64_t expect = LEAVES * (LEAVES - 1) / 2;
  printf("name=skynet n=%llu seconds=%.3f rate=%.0f leaves=%llu sum=%llu ok=%s threads=%d\n",
         (unsigned long long)ACTORS, s, (double)ACTORS / s, (unsigned long long)LEAVES,
         (unsigned long long)result, result == expect ? "true" : "false",
         act_scheduler_count());
  fflush(stdout);
  act_stop_system();
  if (result != expect) {
    fprintf(stderr, "skynet: wrong sum %llu, expected %llu\n", (unsigned long long)result,
            (unsigned long long)expect);
    return 1;
  }
  return 0;
}
