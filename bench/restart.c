/*
 * restart -- crash and restart through the real supervisor.
 *
 * Measures: a permanent worker under act_supervisor (one_for_one, intensity
 * 1,000,000 in 1,000 ms, so intensity accounting runs on every restart but
 * never trips) crashes right after init -- init sends itself a message whose
 * handler calls act_crash() -- and is restarted N times (default 100,000).
 * Every child instance tells a counter actor from init; the run ends at the
 * (N+1)th start.  rate = restarts per second.
 * Peer: bench/peers/erlang/restart.erl (OTP supervisor + gen_server).
 *
 * Placement: counter and supervisor on scheduler 0, the child on its
 * supervisor's (ACT_SCHED_CALLER): the crash -> EXIT -> restart -> init chain
 * is strictly sequential, so a second thread would only add wake-ups.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum { MSG_STARTED = 1, MSG_CRASH };

static uint64_t N;
static double t0, t1;
static atomic_int done;
static act_pid_t counter;

static int child_init(void *args, void **state) {
  (void)args;
  *state = NULL;
  act_send(counter, MSG_STARTED, NULL, 0);
  act_send(act_self(), MSG_CRASH, NULL, 0);
  return 0;
}

static void child_handle(void *state, act_msg_t *msg) {
  (void)state;
  if (msg->type == MSG_CRASH) act_crash("restart bench: planned crash");
}

static const act_behaviour_t child_b = {"crasher", child_init, child_handle, NULL};

typedef struct { uint64_t starts; } counter_t;

static int counter_init(void *args, void **state) {
  (void)args;
  counter_t *s = calloc(1, sizeof *s);
  if (!s) return ACT_ENOMEM;
  *state = s;
  return 0;
}

static void counter_handle(void *state, act_msg_t *msg) {
  counter_t *s = state;
  if (msg->type != MSG_STARTED) return;
  if (++s->starts == N + 1) { /* the first start and N restarts */
    t1 = now_s();
    atomic_store(&done, 1);
    act_stop(act_reason(ACT_NORMAL));
  }
}

static void counter_terminate(void *state, act_reason_t reason) {
  (void)reason;
  free(state);
}

static const act_behaviour_t counter_b = {"restart_counter", counter_init, counter_handle,
                                          counter_terminate};

static act_child_spec_t child_spec = {
    .id = "crasher",
    .behaviour = &child_b,
    .args = NULL,
    .free_args = NULL,
    .name = NULL,
    .restart = ACT_PERMANENT,
    .shutdown_ms = ACT_BRUTAL_KILL,
    .type = ACT_WORKER,
    .scheduler = ACT_SCHED_CALLER,
    .max_mailbox = 0,
};

static act_sup_spec_t sup_spec = {
    .flags = {ACT_ONE_FOR_ONE, 1000000, 1000},
    .children = &child_spec,
    .nchildren = 1,
};

/* Each planned crash is a child_terminated report; the default handler
 * would print 100,000 lines and time the terminal.  The report itself
 * (filling a struct, one lock) is still made and measured. */
static void no_report(const act_sup_report_t *r, void *ud) { (void)r, (void)ud; }

int main(int argc, char **argv) {
  N = arg_n(argc, argv, 100000);
  start_runtime();
  act_set_report_handler(no_report, NULL);
  int err = 0;
  act_spawn_opts_t o = placed(0);
  counter = act_spawn(&counter_b, NULL, &o, &err);
  if (!counter) die("spawn counter", err);
  t0 = now_s();
  act_pid_t sup = act_supervisor_start(&sup_spec, &o, &err);
  if (!sup) die("act_supervisor_start", err);
  await_driver(counter, &done);
  double s = t1 - t0;

  /* Orderly shutdown of the supervisor, then of the system. */
  act_reason_t why;
  int rc = act_exit(sup, act_reason(ACT_SHUTDOWN));
  if (rc == ACT_OK) rc = act_await_exit(sup, 10000, &why);
  if (rc != ACT_OK && rc != ACT_ENOPROC)
    fprintf(stderr, "restart: supervisor shutdown: %s\n", act_strerror(rc));

  printf("name=restart n=%llu seconds=%.3f rate=%.0f threads=%d\n", (unsigned long long)N, s,
         (double)N / s, act_scheduler_count());
  fflush(stdout);
  act_stop_system();
  return 0;
}
