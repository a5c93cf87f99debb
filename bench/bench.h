/*
 * bench.h -- what the six runtime benchmarks share: the clock, starting the
 * runtime with $CHATTER_THREADS, N from argv, waiting for the driver actor,
 * placement.  Each benchmark prints one line:
 *   name=<bench> n=<N> seconds=<S> rate=<per second> [key=value...]
 */
#ifndef CHATTER_BENCH_H
#define CHATTER_BENCH_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "act.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void die(const char *what, int err) {
  fprintf(stderr, "%s: %s\n", what, err ? act_strerror(err) : "failed");
  fflush(stderr);
  _exit(2);
}

/* Schedulers: $CHATTER_THREADS, else 0 (the runtime's default). */
static void start_runtime(void) {
  act_config_t cfg = {0};
  const char *t = getenv("CHATTER_THREADS");
  if (t && *t) cfg.threads = atoi(t);
  int rc = act_start(&cfg);
  if (rc != ACT_OK) die("act_start", rc);
}

/* N from argv[1] when given (quick runs), else the default. */
static uint64_t arg_n(int argc, char **argv, uint64_t dflt) {
  if (argc > 1) {
    char *end;
    unsigned long long v = strtoull(argv[1], &end, 10);
    if (*end || v == 0) {
      fprintf(stderr, "usage: %s [N]\n", argv[0]);
      exit(2);
    }
    return (uint64_t)v;
  }
  return dflt;
}

/* Block until the driver actor has exited; `done` tells a normal finish from
 * a crash (the driver may already be gone when we start waiting: ENOPROC). */
static void await_driver(act_pid_t pid, atomic_int *done) {
  act_reason_t why = act_reason(ACT_NORMAL);
  int rc = act_await_exit(pid, 600000, &why);
  if (rc == ACT_ETIMEDOUT) die("benchmark timed out after 600 s", rc);
  if (!atomic_load(done)) {
    fprintf(stderr, "driver exited without finishing: %s (%s)\n", why.text,
            act_strerror(rc));
    _exit(2);
  }
}

static act_spawn_opts_t placed(int scheduler) {
  act_spawn_opts_t o = {0};
  o.scheduler = scheduler;
  return o;
}

#endif
