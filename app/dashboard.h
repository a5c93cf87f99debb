/*
 * dashboard.h -- /dashboard: the live supervision tree, as data.
 *
 * Two halves.  The pure half (dash_snapshot_*, dash_encode_*, dash_pid_*)
 * turns the runtime's introspection (act_list) into a snapshot -- the
 * non-session actors one by one, the sessions folded into a count and the
 * top few by mailbox, one line per scheduler -- and encodes a snapshot or
 * the delta between two of them as the JSON of the /dashboard/ws protocol
 * (documented at the top of dashboard.c and in README.md).  It touches no
 * socket and no global, so the Check suite drives it with made-up actors.
 *
 * The actor half is the viewer: one per /dashboard/ws socket, a temporary
 * child of the `sessions` supervisor on the socket's scheduler, attached to
 * the conn as a session would be.  It pushes an update every DASH_TICK_MS
 * and carries out the controls (exit signals, CHATTER_CHAOS) when the
 * socket may use them.
 */
#ifndef CHATTER_DASHBOARD_H
#define CHATTER_DASHBOARD_H

#include "act.h"
#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------- bounds */

#define DASH_TICK_MS 200         /* updates: 5 a second */
#define DASH_TOP_SESSIONS 5      /* folded sessions: this many shown by mailbox */
#define DASH_MAX_ACTORS 1024     /* non-session actors drawn; more are counted
                                    in "truncated" (the tree has ~20) */
#define DASH_MAX_VIEWERS 8       /* dashboard sockets at once; the next is
                                    closed with 1008 */
#define DASH_MAX_SCHEDULERS 256
#define DASH_REASON_MAX (ACT_REASON_TEXT - 1) /* a crash reason's bytes */
#define DASH_FOLDED "session"    /* the behaviour folded into a count */
#define DASH_INFO_REFRESH_MS 2000 /* links, monitors, trap_exit, strategy:
                                     asked again of each actor this often */
#define DASH_SWEEP_MS 1000       /* the whole process table is walked at most
                                    this often (and when the counts say an
                                    actor was born or died); between sweeps a
                                    snapshot re-reads only the actors drawn */

/* ------------------------------------------------------------ mode */

/* CHATTER_DASHBOARD: off (no /dashboard at all), read (never controls),
 * control (controls for every viewer), auto (the default: controls when
 * CHATTER_DEBUG=1 or the socket comes from loopback, read-only otherwise). */
typedef enum { DASH_OFF, DASH_READ, DASH_CONTROL, DASH_AUTO } dash_mode_t;
dash_mode_t dash_mode(void);                    /* read once, then cached */
dash_mode_t dash_mode_parse(const char *value); /* NULL or "" = auto; bad = -1 */
/* May a socket from this peer (conn_state's rate-limit key) use controls? */
bool dash_may_control(dash_mode_t mode, bool debug, const char *peer);

/* ------------------------------------------------------- snapshots */

typedef struct dash_actor {
  act_pid_t pid, parent;
  char name[ACT_NAME_MAX];
  char behaviour[32];
  int scheduler;
  size_t mailbox;
  uint64_t messages;       /* handled so far: the rate's base */
  uint32_t restarts;
  uint32_t rate;           /* messages handled per second, last interval */
  /* From act_process_info, asked of the actor itself every
   * DASH_INFO_REFRESH_MS (-1 / "" until its first answer). */
  char strategy[16];       /* supervisors: one_for_one ... */
  int intensity, period_ms;
  int trap_exit;           /* 0, 1 */
  int links, monitors, monitored_by;
} dash_actor_t;

typedef struct dash_sched {
  int id;
  uint32_t actors;
  size_t mailbox;          /* messages queued in its actors' mailboxes, as of
                              the last sweep */
  uint64_t messages;       /* handled on it so far (without the runtime's
                              counters: by its live actors) */
  uint32_t rate;           /* messages per second, last interval */
  uint64_t turns, idle_ms; /* act_scheduler_info's counters: the bases of */
  long runq, turns_per_s;  /* these (-1 when not known) */
  int idle_pct;            /* of the last interval, 0..100 (-1: not known) */
} dash_sched_t;

typedef struct dash_snapshot {
  uint64_t at_ms;          /* monotonic time it was taken */
  double chaos;
  size_t nactors;          /* actors[], sorted by pid */
  size_t truncated;        /* non-session actors past DASH_MAX_ACTORS */
  dash_actor_t *actors;
  act_pid_t folded_parent; /* the supervisor of the folded sessions */
  size_t sessions;
  size_t sessions_mailbox; /* as of the last sweep */
  uint64_t all_messages;   /* handled by every actor so far (the schedulers'
                              counters; without them, the live actors' sum):
                              the sessions' rate is its growth less the
                              drawn actors' */
  uint32_t sessions_rate;
  size_t ntop;             /* top[]: by mailbox, then by pid */
  dash_actor_t top[DASH_TOP_SESSIONS];
  int nsched;
  dash_sched_t sched[DASH_MAX_SCHEDULERS];
} dash_snapshot_t;

/* A sweep: build a snapshot of infos[0..n) (act_list: every live actor)
 * taken at now_ms; prev (may be NULL) is the one before, for the rates;
 * sched (may be NULL) has nsched entries of act_scheduler_info.  NULL when
 * out of memory.  O(n log k). */
dash_snapshot_t *dash_snapshot_build(const act_info_t *infos, size_t n,
                                     const dash_snapshot_t *prev, uint64_t now_ms,
                                     int nsched, const act_sched_info_t *sched,
                                     double chaos);

/* Between sweeps, O(actors drawn): actors[i] is prev->actors[i] read again
 * (act_info_of, same order), top[0..ntop) prev's top sessions read again
 * (the dead left out), folded_children the sessions supervisor's running
 * children (its act_info_t.children), sched the runtime's counters
 * (required: they give each scheduler's actors and messages).  The
 * sessions' count is folded_children less the drawn actors under it; their
 * mailbox total and the schedulers' mailboxes are carried from prev.  NULL
 * when out of memory, or when the counts do not add up -- the schedulers'
 * live actors are not the drawn ones plus the sessions, so an actor was
 * born or died -- and the caller must sweep. */
dash_snapshot_t *dash_snapshot_update(const dash_snapshot_t *prev, const act_info_t *actors,
                                      const act_info_t *top, size_t ntop,
                                      uint32_t folded_children, uint64_t now_ms, int nsched,
                                      const act_sched_info_t *sched, double chaos);
void dash_snapshot_free(dash_snapshot_t *s);

/* "<scheduler.slot.generation>", as Erlang writes <0.84.0>; out >= 32. */
void dash_pid_format(act_pid_t pid, char *out, size_t cap);
/* Its inverse; ACT_NOPID for anything malformed. */
act_pid_t dash_pid_parse(const char *s);

/* The JSON frames (malloc'd, NUL-terminated; NULL when out of memory).
 * A delta is NULL with *changed = false when nothing changed since old. */
char *dash_encode_snapshot(const dash_snapshot_t *s, uint64_t version, bool control);
char *dash_encode_delta(const dash_snapshot_t *old, const dash_snapshot_t *cur,
                        uint64_t version, bool *changed);

/* A control request (one client frame): what it asks.  Parsing only; bad
 * input gives DASH_REQ_BAD with a reason in `error`. */
typedef enum { DASH_REQ_BAD, DASH_REQ_EXIT, DASH_REQ_CHAOS, DASH_REQ_RESYNC } dash_req_kind_t;
typedef struct dash_req {
  dash_req_kind_t kind;
  char ref[32];            /* echoed in the reply; "" if none */
  act_pid_t pid;           /* EXIT */
  act_reason_t reason;     /* EXIT: kill, shutdown, or a crash text */
  double chaos;            /* CHAOS: 0..1 */
  const char *error;       /* BAD: why (static text) */
} dash_req_t;
void dash_parse_request(const char *json, size_t len, dash_req_t *out);

/* ------------------------------------------------------- the viewer */

/* The route hooks (routes.c, conn.c): is this path the dashboard's socket
 * or page (false when CHATTER_DASHBOARD=off)?  The socket passes /ws's Host
 * and Origin checks (routes.c: a page of another site open in the
 * developer's browser must not reach the controls over loopback); after its
 * 101 the conn calls dashboard_start on the acceptor instead of starting a
 * session.  The page is served by dashboard_serve_page. */
bool dashboard_is_ws(const char *path);
bool dashboard_is_page(const char *path);
#define DASHBOARD_PAGE "/dashboard.html"
int dashboard_serve_page(const http_static_t *st, const http_req_t *r, act_buf_t *out);
void dashboard_start(uint64_t conn_id);
const act_behaviour_t *dashboard_viewer_behaviour(void);

/* CHATTER_CHAOS, live: sessions read app_config()->chaos on each request
 * and push.  v must be within 0..1 (ACT_EINVAL otherwise). */
int dashboard_set_chaos(double v);

#endif
