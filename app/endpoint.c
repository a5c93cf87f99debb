/*
 * endpoint.c -- the acceptor actor: one per scheduler, each with its own
 * listening socket on the same port (SO_REUSEPORT, listener.c), so the kernel
 * spreads connections over the cores and a socket's callbacks run on the
 * scheduler that owns it.
 *
 * A conn (conn.c) starts in HTTP (routes.c answers); GET /ws upgrades it and
 * the acceptor asks the `sessions` supervisor for a session actor on this
 * scheduler.  From then on the conn queues the client's requests and hands
 * them to its session one at a time, and writes whatever the session sends.
 * The conn keeps the session's durable state so that a crashed session can
 * be restarted on the same socket (endpoint.h).  A conn whose session
 * cannot be started is closed with 1011 (issue 8 item 13): never left open
 * and deaf.
 *
 * The acceptor owns its conns: its death closes them, and presence, which
 * monitors acceptors, ends their entries.
 *
 * Kind: an actor, the acceptor (endpoint.h), one per scheduler; listener.c,
 * conn.c and routes.c are its parts and run inside it.
 *
 * SIGTERM (main.c): ENDPOINT_DRAIN closes the listening socket before it is
 * answered, then lets each conn finish what it was asked (endpoint.h).
 */
#include "conn.h"
#include "presence.h"
#include "session.h"

#include <stdlib.h>
#include <string.h>

static acceptor_t *g_acceptors[ENDPOINT_MAX_SCHEDULERS]; /* each touched by its own thread */

acceptor_t *endpoint_local_acceptor(void) {
  int s = act_scheduler_id();
  return s >= 0 && s < ENDPOINT_MAX_SCHEDULERS ? g_acceptors[s] : NULL;
}

/* A start request in flight: which conn it is for.  At most one per conn
 * being upgraded; answered within the supervisor's turn. */
typedef struct pending_start {
  struct pending_start *next;
  act_ref_t ref;
  uint64_t conn_id;
} pending_start_t;

/* This scheduler's acceptor's, oldest first: the supervisor answers in the
 * order it was asked, so an answer is found at the head, O(1) (pushed at
 * the head and searched from it, 5,000 reconnects at once cost 12.5 million
 * steps: 8% of the server's CPU in the storm). */
static _Thread_local pending_start_t *t_pending, *t_pending_tail;

void endpoint_start_session(conn_t *c) {
  act_child_spec_t spec;
  memset(&spec, 0, sizeof spec);
  spec.behaviour = session_behaviour();
  spec.args = (void *)(uintptr_t)conn_id(c);
  spec.restart = ACT_TRANSIENT;
  spec.shutdown_ms = 1000;
  spec.scheduler = ACT_SCHED_ON((int)(conn_id(c) & 0xff));
  spec.max_mailbox = 10000; /* pushes a slow session may hold; past it, restart */
  spec.priority = ACT_PRIORITY_HIGH; /* until it has joined (session.c set_priority) */
  act_pid_t sup = act_whereis(APP_NAME_SESSIONS);
  acceptor_t *a = endpoint_local_acceptor();
  if (a && sup && sup != a->sessions_pid) { /* watch the one our sessions live under */
    if (a->sessions_mon) act_demonitor(a->sessions_mon);
    a->sessions_pid = sup;
    a->sessions_mon = act_monitor(sup);
  }
  act_ref_t ref = sup ? act_supervisor_start_child_async(sup, &spec) : 0;
  pending_start_t *p = ref ? malloc(sizeof *p) : NULL;
  if (!p) {
    conn_session_failed(conn_id(c), sup ? ACT_ENOMEM : ACT_ENOPROC);
    return;
  }
  p->ref = ref;
  p->conn_id = conn_id(c);
  p->next = NULL;
  if (t_pending) t_pending_tail->next = p;
  else t_pending = p;
  t_pending_tail = p;
}

static void on_start_reply(act_msg_t *m) {
  for (pending_start_t **pp = &t_pending, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
    pending_start_t *p = *pp;
    if (p->ref != m->ref) continue;
    *pp = p->next;
    if (t_pending_tail == p) t_pending_tail = prev;
    const act_sup_reply_t *r = m->data;
    if (m->size < sizeof *r || r->result != ACT_OK)
      conn_session_failed(p->conn_id, m->size < sizeof *r ? ACT_EINVAL : r->result);
    free(p);
    return;
  }
}

static void close_all(void *arg) {
  acceptor_t *a = arg;
  conn_close_all(a);
  conn_flusher_close(a);
  listener_close(a->listener);
  a->listener = NULL;
  while (t_pending) {
    pending_start_t *p = t_pending;
    t_pending = p->next;
    free(p);
  }
  g_acceptors[a->sched] = NULL;
}

static int acc_init(void *args, void **state) {
  (void)args;
  acceptor_t *a = act_alloc(sizeof *a);
  if (!a) return ACT_ENOMEM;
  memset(a, 0, sizeof *a);
  *state = a;
  a->sched = act_scheduler_id();
  a->self = act_self();
  g_acceptors[a->sched] = a;
  act_defer(close_all, a); /* from here on, everything is closed on exit */
  if (conn_flusher_open(a) != ACT_OK) return ACT_ENOMEM;
  int err = 0;
  a->listener = listener_open(a, &err);
  if (!a->listener) {
    app_log(LOG_ERROR, "cannot listen on port %d: %s", app_config()->port, strerror(err));
    return ACT_EINVAL;
  }
  return ACT_OK;
}

/* The sessions supervisor went down: every session it held died with it,
 * and its successor starts empty, so no conn of ours has a session any
 * more, nor will get one.  Close them with 1011: the clients reconnect. */
static void on_down(acceptor_t *a, act_msg_t *m) {
  const act_down_msg_t *d = m->data;
  if (d->ref != a->sessions_mon) return;
  a->sessions_mon = 0;
  a->sessions_pid = ACT_NOPID;
  while (t_pending) { /* their answers will not come */
    pending_start_t *p = t_pending;
    t_pending = p->next;
    free(p);
  }
  app_log(LOG_ERROR, "the sessions supervisor is gone: closing this scheduler's WebSockets with 1011");
  conn_close_upgraded(a, WS_CLOSE_INTERNAL, "sessions restarted");
}

static void on_drain(acceptor_t *a, act_msg_t *m) {
  if (!a->draining) {
    a->draining = true;
    listener_close(a->listener);
    a->listener = NULL;
    app_log(LOG_INFO, "shutdown phase=stop_accepting conns=%zu", a->nconns);
  }
  conn_drain(a, m->type == ENDPOINT_DRAIN_FORCE);
  if (m->type == ENDPOINT_DRAIN) act_reply(m, ENDPOINT_DRAINING, NULL, 0);
}

/* A restarted presence asks which joined sockets it should wait for. */
static void on_owed_ask(acceptor_t *a, act_msg_t *m) {
  const conn_owed_ask_t *q = m->data;
  size_t n = conn_owed_retrack(a, q->incarnation, NULL, 0);
  size_t size = sizeof(conn_owed_t) + n * sizeof(uint64_t);
  conn_owed_t *r = malloc(size);
  if (!r) return; /* presence stops waiting after its REBUILD_MAX_MS */
  r->n = (uint32_t)conn_owed_retrack(a, q->incarnation, r->conn_ids, n);
  act_reply(m, CONN_OWED, r, size);
  free(r);
}

static void acc_handle(void *state, act_msg_t *m) {
  acceptor_t *a = state;
  if (m->type == ENDPOINT_DRAIN || m->type == ENDPOINT_DRAIN_FORCE) on_drain(a, m);
  else if (m->type == CONN_TAKE_OVER_NOTICE) conn_take_over(((const conn_notice_t *)m->data)->conn_id);
  else if (m->type == ACT_MSG_SUP_REPLY) on_start_reply(m);
  else if (m->type == CONN_OWED_ASK) on_owed_ask(a, m);
  else if (m->type == ACT_MSG_DOWN) on_down(a, m);
}

static const act_behaviour_t behaviour = {"acceptor", acc_init, acc_handle, NULL};
const act_behaviour_t *acceptor_behaviour(void) { return &behaviour; }
