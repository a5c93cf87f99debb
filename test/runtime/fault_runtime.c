/* fault_runtime.c: fault injection (SQLite-style) in the runtime alone,
 * along a request/reply and a supervisor's start_child (issue 8).
 *
 * Linked with -Wl,--wrap=malloc,calloc,realloc,strdup (Makefile), so every
 * allocation of libact.a and of this file goes through the wrappers below
 * (libuv, a shared library, is never failed).  Not a Check suite: Check
 * allocates too, and its forks would count.
 *
 * One child process per N: it starts the runtime, an echo server, a
 * supervisor and a driver actor unarmed; then, with the Nth allocation
 * armed to fail once, it
 *   1. makes a blocking act_call to the echo server (outside actors);
 *   2. has the driver make an act_request to the echo server and an
 *      act_supervisor_start_child_async (ACT_INFINITY, as the app's
 *      acceptor does), and waits for both answers;
 *   3. makes a blocking act_supervisor_start_child and terminate_child;
 *   4. makes a blocking act_supervisor_count_children.
 * Each must end: answered with success, with an error (ACT_ENOMEM, noproc,
 * a timeout), or with the death of the actor whose allocation failed (a
 * server that cannot reply crashes, and its caller's monitor ends the
 * request: OTP's "the caller fails" seen from the caller).  Nothing may
 * wait past its deadline (exit 3), crash the process (a signal) or leak
 * (LSan at exit, under `make test-faults-runtime`'s ASan build).  The
 * parent counts the allocations of an unarmed run (T) and runs N = 1..T in
 * steps of FAULT_STRIDE; FAULT_ONLY=N runs one, FAULT_TRACE=1 prints the
 * failed allocation's stack. */
#include "act.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault_loop.h" /* the wrappers, g_armed/g_count, and main's loop */

/* ------------------------------------------------------------ actors */

#define PING 1
#define PONG 2
#define GO 3
#define DEADLINE_MS 8000 /* past every timeout below: an answer that has not come is a hang */
#define CALL_MS 2000

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Echo: answers PING with PONG; a reply it cannot allocate crashes it, so
 * that its caller is not left waiting. */
static int echo_init(void *a, void **st) { (void)a; *st = NULL; return ACT_OK; }
static void echo_handle(void *st, act_msg_t *m) {
  (void)st;
  if (m->type == PING && act_reply(m, PONG, "pong", 4) != ACT_OK) act_crash("echo: out of memory");
}
static const act_behaviour_t echo_b = {"echo", echo_init, echo_handle, NULL};

/* A supervised child that does nothing. */
static int kid_init(void *a, void **st) { (void)a; *st = NULL; return ACT_OK; }
static void kid_handle(void *st, act_msg_t *m) { (void)st, (void)m; }
static const act_behaviour_t kid_b = {"kid", kid_init, kid_handle, NULL};

static act_child_spec_t kid_spec(void) {
  act_child_spec_t c;
  memset(&c, 0, sizeof c);
  c.behaviour = &kid_b;
  c.restart = ACT_TRANSIENT;
  c.type = ACT_WORKER;
  c.scheduler = ACT_SCHED_NEXT;
  return c;
}

/* The driver's outcome, read by the main thread. */
static atomic_int g_req_done, g_start_done, g_driver_dead;
static act_pid_t g_echo, g_sup;

typedef struct { act_ref_t req, start; } driver_t;

static int dr_init(void *a, void **st) {
  (void)a;
  *st = __real_calloc(1, sizeof(driver_t)); /* the harness: never failed */
  return *st ? ACT_OK : ACT_ENOMEM;
}
static void dr_handle(void *st, act_msg_t *m) {
  driver_t *d = st;
  if (m->type == GO) {
    d->req = act_request(g_echo, PING, NULL, 0, CALL_MS);
    if (!d->req) atomic_store(&g_req_done, 1); /* refused at once: an answer */
    act_child_spec_t c = kid_spec();
    d->start = act_supervisor_start_child_async(g_sup, &c);
    if (!d->start) atomic_store(&g_start_done, 1);
    return;
  }
  if (m->ref && m->ref == d->req) atomic_store(&g_req_done, 1);        /* PONG or TIMEOUT */
  if (m->ref && m->ref == d->start) {
    atomic_store(&g_start_done, 1);                                  /* SUP_REPLY or TIMEOUT */
    if (m->type == ACT_MSG_SUP_REPLY && m->size == sizeof(act_sup_reply_t)) {
      act_sup_reply_t r;
      memcpy(&r, m->data, sizeof r);
      if (r.result == ACT_OK) act_supervisor_terminate_child_async(g_sup, r.pid, NULL);
    }
  }
}
static void dr_terminate(void *st, act_reason_t r) {
  (void)r;
  free(st);
  atomic_store(&g_driver_dead, 1);
}
static const act_behaviour_t driver_b = {"driver", dr_init, dr_handle, dr_terminate};

/* ------------------------------------------------------------ one run */

static bool waited(atomic_int *flag, int64_t deadline) {
  while (!atomic_load(flag) && !atomic_load(&g_driver_dead) && now_ms() < deadline) {
    struct timespec ts = {0, 2 * 1000000L};
    nanosleep(&ts, NULL); /* the driver's outcome is a flag, not a message we could await */
  }
  return atomic_load(flag) || atomic_load(&g_driver_dead);
}

static int one_run(long fail_at, long *count_out) {
  act_config_t cfg = {.threads = 2, .max_actors = 1u << 12};
  if (act_start(&cfg) != ACT_OK) return 10;
  static const act_sup_spec_t spec = {{ACT_ONE_FOR_ONE, 100, 1000}, NULL, 0};
  int err = 0;
  g_echo = act_spawn(&echo_b, NULL, NULL, &err);
  g_sup = act_supervisor_start(&spec, NULL, &err);
  act_spawn_opts_t o = {.scheduler = ACT_SCHED_NEXT};
  act_pid_t driver = act_spawn(&driver_b, NULL, &o, &err);
  if (!g_echo || !g_sup || !driver) return 11;

  int bad = 0;
  fault_arm(fail_at);

  /* 1. outside: act_call */
  act_msg_t *reply = NULL;
  int64_t t0 = now_ms();
  int rc = act_call(g_echo, PING, NULL, 0, &reply, CALL_MS);
  if (rc == ACT_OK) {
    if (reply->type != PONG || reply->size != 4) bad |= 1, fprintf(stderr, "  call: bad reply\n");
    act_msg_free(reply);
  } else if (rc == ACT_ETIMEDOUT && now_ms() - t0 < CALL_MS - 50) {
    bad |= 1, fprintf(stderr, "  call: timed out early\n");
  }

  /* 2. inside: act_request and start_child_async */
  if (act_send(driver, GO, NULL, 0) == ACT_OK) {
    int64_t dl = now_ms() + DEADLINE_MS;
    if (!waited(&g_req_done, dl)) bad |= 2, fprintf(stderr, "  request: never answered\n");
    if (!waited(&g_start_done, dl))
      bad |= 2, fprintf(stderr, "  start_child_async: never answered\n");
  }

  /* 3. outside: start_child and terminate_child */
  act_child_spec_t c = kid_spec();
  act_pid_t kid = ACT_NOPID;
  t0 = now_ms();
  rc = act_supervisor_start_child(g_sup, &c, &kid);
  if (rc == ACT_OK) rc = act_supervisor_terminate_child(g_sup, kid, NULL);
  if (now_ms() - t0 > DEADLINE_MS) bad |= 4, fprintf(stderr, "  start_child: too slow\n");

  /* 4. the supervisor still answers, or is gone */
  act_sup_counts_t counts;
  rc = act_supervisor_count_children(g_sup, &counts);
  if (rc != ACT_OK && rc != ACT_ENOPROC && rc != ACT_ENOMEM)
    bad |= 8, fprintf(stderr, "  count_children: %s\n", act_strerror(rc));

  *count_out = fault_disarm();
  act_reason_t why;
  act_exit(g_sup, act_reason(ACT_SHUTDOWN));
  act_await_exit(g_sup, DEADLINE_MS, &why);
  act_stop_system();
  return bad ? 3 : 0;
}

/* ------------------------------------------------------------ main */

int main(void) {
  int failures = fault_loop("fault_runtime", "a call, a request and start_child", one_run);
  return failures ? 1 : 0;
}
