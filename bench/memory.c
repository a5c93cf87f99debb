/*
 * memory -- the resident cost of an idle actor.
 *
 * Measures: spawns N idle actors (default 100,000) and prints
 * bytes_per_actor = (VmRSS after - VmRSS before) / N, RSS read from
 * /proc/self/statm once the runtime is started and again once every actor
 * has run its init (the last init to run tells the driver; no per-actor
 * message, so no freed mailbox memory inflates the figure).  rate = spawns
 * (through init) per second.  Peer: bench/peers/erlang/memory.erl.
 *
 * Placement: ACT_SCHED_CALLER (all on the driver's scheduler); placement does
 * not change the per-actor footprint.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum { MSG_GO = 1, MSG_READY };

static uint64_t N;
static double t0, t1;
static atomic_int done;
static atomic_uint_fast64_t ready;
static act_pid_t driver;

static long rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) die("read /proc/self/statm", 0);
  fclose(f);
  return res * sysconf(_SC_PAGESIZE);
}

static int idle_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  if (atomic_fetch_add(&ready, 1) + 1 == N) act_send(driver, MSG_READY, NULL, 0);
  return 0;
}

static void idle_handle(void *state, act_msg_t *msg) {
  (void)state;
  (void)msg;
}

static const act_behaviour_t idle_b = {"idle", idle_init, idle_handle, NULL};

static int drv_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  return 0;
}

static void drv_handle(void *state, act_msg_t *msg) {
  (void)state;
  if (msg->type == MSG_GO) {
    act_spawn_opts_t o = placed(ACT_SCHED_CALLER);
    t0 = now_s();
    for (uint64_t i = 0; i < N; i++) {
      int err = 0;
      if (!act_spawn(&idle_b, NULL, &o, &err)) die("spawn idle actor", err);
    }
  } else if (msg->type == MSG_READY) {
    t1 = now_s();
    atomic_store(&done, 1);
    act_stop(act_reason(ACT_NORMAL));
  }
}

static const act_behaviour_t drv_b = {"memory_driver", drv_init, drv_handle, NULL};

int main(int argc, char **argv) {
  N = arg_n(argc, argv, 100000);
  start_runtime();
  long before = rss_bytes();
  int err = 0;
  driver = act_spawn(&drv_b, NULL, NULL, &err);
  if (!driver) die("spawn driver", err);
  act_send(driver, MSG_GO, NULL, 0);
  await_driver(driver, &done);
  long after = rss_bytes();
  double s = t1 - t0;
  printf("name=memory n=%llu seconds=%.3f rate=%.0f bytes_per_actor=%ld rss_before=%ld "
         "rss_after=%ld threads=%d\n",
         (unsigned long long)N, s, (double)N / s, (after - before) / (long)N, before, after,
         act_scheduler_count());
  fflush(stdout);
  act_stop_system();
  return 0;
}
