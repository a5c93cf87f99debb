/*
 * dynsup -- a supervisor with N dynamic children (default 40,000) that all
 * end at once: how fast does it forget them?
 *
 * Measures (issue 6): N anonymous transient children are started with
 * act_supervisor_start_child (not timed), then every child is told to exit
 * with `shutdown`; the supervisor removes each one as its EXIT comes.  The
 * clock runs from the first exit signal until which_children reports 0.
 * rate = children removed per second.  The removal was a scan plus a
 * memmove of the children array, O(N) each: 2.5 s for 40,000.
 * Peer: none (OTP's DynamicSupervisor keeps its children in a map).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static int idle_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  return 0;
}
static void idle_handle(void *state, act_msg_t *msg) {
  (void)state;
  (void)msg;
}
static const act_behaviour_t idle_b = {"idle", idle_init, idle_handle, NULL};

static int children(act_pid_t sup) {
  act_child_info_t one;
  int n = act_supervisor_which_children(sup, &one, 1);
  if (n < 0) die("which_children", n);
  return n;
}

int main(int argc, char **argv) {
  uint64_t n = arg_n(argc, argv, 40000);
  (void)await_driver; /* bench.h's; this one has no driver actor */
  start_runtime();
  act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 1000000, 1000}, NULL, 0};
  act_spawn_opts_t o = placed(ACT_SCHED_ON(0));
  int err;
  act_pid_t sup = act_supervisor_start(&spec, &o, &err);
  if (!sup) die("act_supervisor_start", err);
  act_pid_t *pids = malloc(n * sizeof *pids);
  if (!pids) die("malloc", 0);
  act_child_spec_t c;
  memset(&c, 0, sizeof c);
  c.behaviour = &idle_b;
  c.restart = ACT_TRANSIENT;
  c.scheduler = ACT_SCHED_NEXT;
  for (uint64_t i = 0; i < n; i++) {
    int rc = act_supervisor_start_child(sup, &c, &pids[i]);
    if (rc != ACT_OK) die("start_child", rc);
  }
  if ((uint64_t)children(sup) != n) die("children after start", 0);
  double t0 = now_s();
  for (uint64_t i = 0; i < n; i++) act_exit(pids[i], act_reason(ACT_SHUTDOWN));
  while (children(sup) > 0) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  double dt = now_s() - t0;
  printf("name=dynsup n=%llu seconds=%.3f rate=%.0f threads=%d\n", (unsigned long long)n, dt,
         (double)n / dt, act_scheduler_count());
  free(pids);
  act_exit(sup, act_reason(ACT_SHUTDOWN));
  act_await_exit(sup, 60000, NULL);
  act_stop_system();
  return 0;
}
