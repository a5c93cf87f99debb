/*
 * dashboard.c -- /dashboard: the live supervision tree over /dashboard/ws.
 *
 * What it is for: letting a reader watch Chatter's supervisors at work, as
 * Erlang's observer or Phoenix's LiveDashboard do: every actor with its
 * behaviour, name, scheduler, mailbox, messages/s and restarts; sessions
 * folded into a count with the top DASH_TOP_SESSIONS by mailbox; one line
 * per scheduler; and, when allowed, controls that send an exit signal to an
 * actor or set CHATTER_CHAOS live.
 *
 * The /dashboard/ws protocol (text frames, one JSON object each):
 *
 *   server -> client
 *     {"type":"snapshot","v":1,"mode":"control"|"read","tick_ms":200,
 *      "chaos":0,"truncated":0,
 *      "actors":[ACTOR...],
 *      "sessions":{"count":N,"mailbox":M,"rate":R,"parent":PID,
 *                  "top":[{"pid","sched","mailbox","rate"}...]},
 *      "schedulers":[{"id","actors","mailbox","rate","runq","turns","idle"}...]}
 *     {"type":"delta","v":2, "add":[ACTOR...], "upd":[ACTOR...],
 *      "del":[PID...], "sessions":{...}, "schedulers":[...], "chaos":0.1,
 *      "truncated":0, "restarts":[{"sup":PID,"sup_name","child","pid","restarts"}
 *                   or {"sup","sup_name","child":"session","count":N}]}
 *        -- every key but type and v only when it changed; no frame at all
 *        when nothing did.  v counts up by one per frame on a socket: a
 *        client that sees a gap sends {"type":"resync"}.
 *     {"type":"reply","ref":"…","ok":true} or
 *     {"type":"reply","ref":"…","ok":false,"error":"read_only"|"noproc"|
 *      "bad_request","detail":"…"}
 *   ACTOR = {"pid":"<0.12.3>","parent":PID|null,"name":"pubsub"|"",
 *            "behaviour":"pubsub","sched":0,"mailbox":0,"rate":12,
 *            "restarts":1,"strategy":"one_for_one"|null,"intensity":3|null,
 *            "period_ms":5000|null}
 *   PID = "<scheduler.slot.generation>" (the runtime's pid, as Erlang prints one)
 *
 *   client -> server (answered by a reply with the same ref)
 *     {"type":"exit","ref":"1","pid":"<0.12.3>","reason":"kill"|"shutdown"|"crash",
 *      "text":"why"}            -- crash: text is the reason, 1..95 printable bytes
 *     {"type":"chaos","ref":"2","value":0.25}   -- 0..1, as CHATTER_CHAOS
 *     {"type":"resync"}         -- the next update is a whole snapshot
 *
 * Controls answer `read_only` unless the socket may use them (dash_mode).
 *
 * Cost (the gathering must not stop the world, nor grow with sessions):
 * a snapshot is taken at most once per DASH_TICK_MS / 2 whatever the
 * number of viewers -- they share the latest one (taken by whichever
 * viewer ticks first; one that finds another building reuses the previous
 * one rather than wait), and each diffs it against what its own socket
 * last received, O(actors drawn).  Most snapshots are refreshes, O(actors
 * drawn, ~20): each drawn actor, the top sessions and the sessions
 * supervisor read again (act_info_of: a pin each), the sessions counted by
 * their supervisor's published `children`, the messages by the schedulers'
 * counters.  A sweep -- act_list, which pins each live slot in turn (an
 * atomic increment, no global lock), then one pass folding the sessions --
 * runs at most every DASH_SWEEP_MS, or sooner when the counts show an actor
 * born or dead outside the fold; it alone refreshes the sessions' mailbox
 * total and which sessions are the top ones.  At 20,000 idle actors on
 * this 2-core machine a sweep took 0.87 ms (act_list) + 0.11 ms (build,
 * JSON); a viewer reading 10 snapshots a second thus costs the walk once a
 * second instead of ten times.  It runs on the viewer's scheduler between
 * two turns.  No dashboard open, no cost.
 *
 * Kind: an actor, one viewer per /dashboard/ws socket (dashboard.h), started
 * by the acceptor that upgraded it; it reads the runtime's introspection.
 */
#include "dashboard.h"

#include "app.h"
#include "endpoint.h"
#include "http.h"
#include "vec.h"
#include "session.h"
#include "telemetry.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ mode */

dash_mode_t dash_mode_parse(const char *v) {
  if (!v || !*v || !strcmp(v, "auto")) return DASH_AUTO;
  if (!strcmp(v, "off")) return DASH_OFF;
  if (!strcmp(v, "read")) return DASH_READ;
  if (!strcmp(v, "control")) return DASH_CONTROL;
  return (dash_mode_t)-1;
}

static pthread_once_t g_mode_once = PTHREAD_ONCE_INIT;
static dash_mode_t g_mode;
static bool g_debug;

static void read_mode(void) {
  const char *v = app_config()->dashboard;
  g_mode = dash_mode_parse(v);
  if ((int)g_mode < 0) {
    /* A typo must not open the controls: fall back to read-only. */
    app_log(LOG_WARN, "CHATTER_DASHBOARD=%s is not off|read|control|auto; using read", v);
    g_mode = DASH_READ;
  }
  g_debug = app_config()->debug;
}

dash_mode_t dash_mode(void) {
  pthread_once(&g_mode_once, read_mode);
  return g_mode;
}

/* peer is conn_state's rate-limit key: IPv4 dotted, IPv6 as its /64, so
 * ::1 reads "::/64" (the listener binds IPv4 today). */
bool dash_may_control(dash_mode_t mode, bool debug, const char *peer) {
  if (mode == DASH_CONTROL) return true;
  if (mode != DASH_AUTO) return false;
  return debug || strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::/64") == 0;
}

bool dashboard_is_ws(const char *path) {
  return dash_mode() != DASH_OFF && strcmp(path, "/dashboard/ws") == 0;
}

bool dashboard_is_page(const char *path) {
  return dash_mode() != DASH_OFF && strcmp(path, "/dashboard") == 0;
}

/* GET /dashboard: web/dashboard.html, through the static files' checks
 * (ETag, HEAD, 405).  A copy of the request (~10 KiB, once per page load)
 * with the file's path, since the router's request is read-only. */
int dashboard_serve_page(const http_static_t *st, const http_req_t *r, act_buf_t *out) {
  static _Thread_local http_req_t page;
  page = *r;
  snprintf(page.path, sizeof page.path, "%s", DASHBOARD_PAGE);
  return http_serve_static(st, &page, out);
}

int dashboard_set_chaos(double v) {
  if (!(v >= 0 && v <= 1)) return ACT_EINVAL; /* NaN fails too */
  /* app_config() is read-only to the app; this is the one writer after
   * start.  Sessions read the double plainly on every request; an aligned
   * 8-byte store does not tear on the machines we build for, and the
   * atomic store says so to the compiler. */
  app_config_t *cfg = (app_config_t *)app_config();
  __atomic_store(&cfg->chaos, &v, __ATOMIC_RELAXED);
  return ACT_OK;
}

/* ------------------------------------------------------------- pids */

void dash_pid_format(act_pid_t pid, char *out, size_t cap) {
  snprintf(out, cap, "<%u.%u.%u>", (unsigned)((pid >> 32) & 0xff),
           (unsigned)(pid & 0xffffffffu), (unsigned)(pid >> 40));
}

act_pid_t dash_pid_parse(const char *s) {
  unsigned long v[3];
  if (!s || *s++ != '<') return ACT_NOPID;
  for (int i = 0; i < 3; i++) {
    if (*s < '0' || *s > '9') return ACT_NOPID;
    char *end;
    v[i] = strtoul(s, &end, 10);
    if (end - s > 10 || *end != (i < 2 ? '.' : '>')) return ACT_NOPID;
    s = end + 1;
  }
  if (*s || v[0] > 0xff || v[1] > 0xffffffffUL || v[2] > 0xffffff) return ACT_NOPID;
  return (act_pid_t)v[1] | (act_pid_t)v[0] << 32 | (act_pid_t)v[2] << 40;
}

/* ------------------------------------------------------- snapshots */

static int by_pid(const void *a, const void *b) {
  act_pid_t x = ((const dash_actor_t *)a)->pid, y = ((const dash_actor_t *)b)->pid;
  return x < y ? -1 : x > y;
}

static const dash_actor_t *find_actor(const dash_snapshot_t *s, act_pid_t pid) {
  if (!s) return NULL;
  dash_actor_t key = {.pid = pid};
  return bsearch(&key, s->actors, s->nactors, sizeof key, by_pid);
}

static uint32_t rate_of(uint64_t now_msgs, uint64_t then_msgs, uint64_t dt_ms) {
  if (now_msgs <= then_msgs || dt_ms == 0) return 0;
  uint64_t r = (now_msgs - then_msgs) * 1000 / dt_ms;
  return r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

static void actor_of(const act_info_t *in, dash_actor_t *out) {
  memset(out, 0, sizeof *out);
  out->pid = in->pid;
  out->parent = in->parent;
  snprintf(out->name, sizeof out->name, "%s", in->name);
  snprintf(out->behaviour, sizeof out->behaviour, "%s", in->behaviour);
  out->scheduler = in->scheduler;
  out->mailbox = in->mailbox_len;
  out->messages = in->messages;
  out->restarts = in->restarts;
  out->intensity = out->period_ms = -1;
  out->trap_exit = out->links = out->monitors = out->monitored_by = -1;
}

/* Keep the DASH_TOP_SESSIONS deepest mailboxes: insertion into a sorted
 * array of at most 5, O(n * 5) over all sessions. */
static bool deeper(const dash_actor_t *a, const act_info_t *b) {
  return a->mailbox > b->mailbox_len || (a->mailbox == b->mailbox_len && a->pid < b->pid);
}

static void top_insert(dash_snapshot_t *s, const act_info_t *in) {
  size_t i = s->ntop;
  while (i > 0 && !deeper(&s->top[i - 1], in)) i--;
  if (i >= DASH_TOP_SESSIONS) return;
  size_t last = s->ntop < DASH_TOP_SESSIONS ? s->ntop : DASH_TOP_SESSIONS - 1;
  memmove(&s->top[i + 1], &s->top[i], (last - i) * sizeof s->top[0]);
  actor_of(in, &s->top[i]);
  if (s->ntop < DASH_TOP_SESSIONS) s->ntop++;
}

static void sched_counters(dash_snapshot_t *s, int nsched, const act_sched_info_t *sched);
static void rates(dash_snapshot_t *s, const dash_snapshot_t *prev, bool have_sched);

dash_snapshot_t *dash_snapshot_build(const act_info_t *infos, size_t n,
                                     const dash_snapshot_t *prev, uint64_t now_ms,
                                     int nsched, const act_sched_info_t *sched,
                                     double chaos) {
  dash_snapshot_t *s = calloc(1, sizeof *s);
  size_t cap = 0;
  for (size_t i = 0; i < n; i++) cap += strcmp(infos[i].behaviour, DASH_FOLDED) != 0;
  if (cap > DASH_MAX_ACTORS) cap = DASH_MAX_ACTORS;
  if (!s || !(s->actors = malloc((cap ? cap : 1) * sizeof *s->actors))) {
    free(s);
    return NULL;
  }
  s->at_ms = now_ms;
  s->chaos = chaos;
  sched_counters(s, nsched, sched);
  for (size_t i = 0; i < n; i++) {
    const act_info_t *in = &infos[i];
    if (in->scheduler >= 0 && in->scheduler < s->nsched) {
      dash_sched_t *sc = &s->sched[in->scheduler];
      sc->actors++;
      sc->mailbox += in->mailbox_len;
      if (!sched) sc->messages += in->messages;
    }
    if (!sched) s->all_messages += in->messages;
    if (!strcmp(in->behaviour, DASH_FOLDED)) {
      s->sessions++;
      s->sessions_mailbox += in->mailbox_len;
      s->folded_parent = in->parent;
      top_insert(s, in);
    } else if (s->nactors < cap) {
      actor_of(in, &s->actors[s->nactors++]);
    } else {
      s->truncated++;
    }
  }
  qsort(s->actors, s->nactors, sizeof *s->actors, by_pid);
  /* No session yet: the fold still hangs under the sessions supervisor. */
  for (size_t i = 0; !s->sessions && i < s->nactors; i++)
    if (!strcmp(s->actors[i].name, APP_NAME_SESSIONS)) s->folded_parent = s->actors[i].pid;
  rates(s, prev, sched != NULL);
  return s;
}

dash_snapshot_t *dash_snapshot_update(const dash_snapshot_t *prev, const act_info_t *actors,
                                      const act_info_t *top, size_t ntop,
                                      uint32_t folded_children, uint64_t now_ms, int nsched,
                                      const act_sched_info_t *sched, double chaos) {
  if (!prev || !sched) return NULL;
  dash_snapshot_t *s = calloc(1, sizeof *s);
  if (!s || !(s->actors = malloc((prev->nactors ? prev->nactors : 1) * sizeof *s->actors))) {
    free(s);
    return NULL;
  }
  s->at_ms = now_ms;
  s->chaos = chaos;
  s->truncated = prev->truncated;
  s->folded_parent = prev->folded_parent;
  s->sessions_mailbox = prev->sessions_mailbox;
  size_t under_fold = 0; /* drawn children of the sessions supervisor (viewers) */
  for (size_t i = 0; i < prev->nactors; i++) {
    actor_of(&actors[i], &s->actors[i]);
    if (actors[i].pid != prev->actors[i].pid) goto stale; /* not prev's actors: sweep */
    under_fold += actors[i].parent == s->folded_parent;
  }
  s->nactors = prev->nactors;
  s->sessions = folded_children > under_fold ? folded_children - under_fold : 0;
  sched_counters(s, nsched, sched);
  size_t live = 0;
  for (int i = 0; i < s->nsched; i++) {
    s->sched[i].actors = sched[i].actors > 0 ? (uint32_t)sched[i].actors : 0;
    live += s->sched[i].actors;
    if (i < prev->nsched) s->sched[i].mailbox = prev->sched[i].mailbox;
  }
  /* Every live actor is drawn, counted as truncated or a session: if not,
   * one was born or died since the sweep (a spawn and the supervisor's
   * count of it are two moments apart, so churn sweeps more often). */
  if (live != s->nactors + s->truncated + s->sessions) goto stale;
  for (size_t i = 0; i < ntop; i++) top_insert(s, &top[i]);
  rates(s, prev, true);
  return s;
stale:
  dash_snapshot_free(s);
  return NULL;
}

/* Each scheduler's line from the runtime's counters, when it gave them:
 * the rates' bases (monotonic, so the dead do not take theirs along). */
static void sched_counters(dash_snapshot_t *s, int nsched, const act_sched_info_t *sched) {
  s->nsched = nsched < 0 ? 0 : nsched > DASH_MAX_SCHEDULERS ? DASH_MAX_SCHEDULERS : nsched;
  for (int i = 0; i < s->nsched; i++) {
    s->sched[i] = (dash_sched_t){.id = i, .runq = -1, .turns_per_s = -1, .idle_pct = -1};
    if (!sched) continue;
    s->sched[i].runq = sched[i].run_queue;
    s->sched[i].turns = sched[i].turns;
    s->sched[i].idle_ms = sched[i].idle_ms;
    s->sched[i].messages = sched[i].messages;
    s->all_messages += sched[i].messages;
  }
}

/* Rates over the interval since prev: each drawn actor's, the top
 * sessions', the schedulers'; the sessions' as all messages less the
 * drawn actors' (a drawn actor new since prev counts whole; an actor that
 * died takes its count along when there are no scheduler counters: both
 * only ever lower the figure, clamped at 0). */
static void rates(dash_snapshot_t *s, const dash_snapshot_t *prev, bool have_sched) {
  if (!prev || s->at_ms <= prev->at_ms) return;
  uint64_t dt = s->at_ms - prev->at_ms, drawn = 0;
  for (size_t i = 0; i < s->nactors; i++) {
    const dash_actor_t *was = find_actor(prev, s->actors[i].pid);
    if (was) s->actors[i].rate = rate_of(s->actors[i].messages, was->messages, dt);
    drawn += !was ? s->actors[i].messages
             : s->actors[i].messages > was->messages ? s->actors[i].messages - was->messages : 0;
  }
  for (size_t i = 0; i < s->ntop; i++)
    for (size_t j = 0; j < prev->ntop; j++)
      if (prev->top[j].pid == s->top[i].pid)
        s->top[i].rate = rate_of(s->top[i].messages, prev->top[j].messages, dt);
  uint64_t all = s->all_messages > prev->all_messages ? s->all_messages - prev->all_messages : 0;
  s->sessions_rate = rate_of(all, drawn, dt);
  for (int i = 0; i < s->nsched && i < prev->nsched; i++) {
    dash_sched_t *sc = &s->sched[i];
    const dash_sched_t *was = &prev->sched[i];
    sc->rate = rate_of(sc->messages, was->messages, dt);
    if (!have_sched || was->runq < 0) continue; /* no counters before: no rate */
    sc->turns_per_s = rate_of(sc->turns, was->turns, dt);
    uint64_t idle = sc->idle_ms > was->idle_ms ? sc->idle_ms - was->idle_ms : 0;
    sc->idle_pct = (int)(idle >= dt ? 100 : idle * 100 / dt);
  }
}

void dash_snapshot_free(dash_snapshot_t *s) {
  if (!s) return;
  free(s->actors);
  free(s);
}

/* --------------------------------------------------------- encoding */

static void add_pid(cJSON *o, const char *key, act_pid_t pid) {
  char b[40];
  if (!pid) {
    cJSON_AddNullToObject(o, key);
    return;
  }
  dash_pid_format(pid, b, sizeof b);
  cJSON_AddStringToObject(o, key, b);
}

static void add_opt(cJSON *o, const char *key, long v) {
  if (v < 0) cJSON_AddNullToObject(o, key);
  else cJSON_AddNumberToObject(o, key, (double)v);
}

static cJSON *enc_actor(const dash_actor_t *a) {
  cJSON *o = cJSON_CreateObject();
  add_pid(o, "pid", a->pid);
  add_pid(o, "parent", a->parent);
  cJSON_AddStringToObject(o, "name", a->name);
  cJSON_AddStringToObject(o, "behaviour", a->behaviour);
  cJSON_AddNumberToObject(o, "sched", a->scheduler);
  cJSON_AddNumberToObject(o, "mailbox", (double)a->mailbox);
  cJSON_AddNumberToObject(o, "rate", a->rate);
  cJSON_AddNumberToObject(o, "restarts", a->restarts);
  if (a->strategy[0]) cJSON_AddStringToObject(o, "strategy", a->strategy);
  else cJSON_AddNullToObject(o, "strategy");
  add_opt(o, "intensity", a->intensity);
  add_opt(o, "period_ms", a->period_ms);
  if (a->trap_exit < 0) cJSON_AddNullToObject(o, "trap_exit");
  else cJSON_AddBoolToObject(o, "trap_exit", a->trap_exit);
  add_opt(o, "links", a->links);
  add_opt(o, "monitors", a->monitors);
  add_opt(o, "monitored_by", a->monitored_by);
  return o;
}

static bool actor_same(const dash_actor_t *a, const dash_actor_t *b) {
  return a->parent == b->parent && a->scheduler == b->scheduler && a->mailbox == b->mailbox &&
         a->rate == b->rate && a->restarts == b->restarts && a->intensity == b->intensity &&
         a->period_ms == b->period_ms && a->trap_exit == b->trap_exit &&
         a->links == b->links && a->monitors == b->monitors &&
         a->monitored_by == b->monitored_by && !strcmp(a->name, b->name) &&
         !strcmp(a->behaviour, b->behaviour) && !strcmp(a->strategy, b->strategy);
}

static cJSON *enc_sessions(const dash_snapshot_t *s) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "count", (double)s->sessions);
  cJSON_AddNumberToObject(o, "mailbox", (double)s->sessions_mailbox);
  cJSON_AddNumberToObject(o, "rate", s->sessions_rate);
  add_pid(o, "parent", s->folded_parent);
  cJSON *top = cJSON_AddArrayToObject(o, "top");
  for (size_t i = 0; i < s->ntop; i++) {
    cJSON *t = cJSON_CreateObject();
    add_pid(t, "pid", s->top[i].pid);
    cJSON_AddNumberToObject(t, "sched", s->top[i].scheduler);
    cJSON_AddNumberToObject(t, "mailbox", (double)s->top[i].mailbox);
    cJSON_AddNumberToObject(t, "rate", s->top[i].rate);
    cJSON_AddItemToArray(top, t);
  }
  return o;
}

static bool sessions_same(const dash_snapshot_t *a, const dash_snapshot_t *b) {
  if (a->sessions != b->sessions || a->sessions_mailbox != b->sessions_mailbox ||
      a->sessions_rate != b->sessions_rate || a->folded_parent != b->folded_parent ||
      a->ntop != b->ntop)
    return false;
  for (size_t i = 0; i < a->ntop; i++)
    if (a->top[i].pid != b->top[i].pid || a->top[i].mailbox != b->top[i].mailbox ||
        a->top[i].rate != b->top[i].rate || a->top[i].scheduler != b->top[i].scheduler)
      return false;
  return true;
}

static cJSON *enc_scheds(const dash_snapshot_t *s) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < s->nsched; i++) {
    const dash_sched_t *sc = &s->sched[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", sc->id);
    cJSON_AddNumberToObject(o, "actors", sc->actors);
    cJSON_AddNumberToObject(o, "mailbox", (double)sc->mailbox);
    cJSON_AddNumberToObject(o, "rate", sc->rate);
    add_opt(o, "runq", sc->runq);
    add_opt(o, "turns", sc->turns_per_s);
    add_opt(o, "idle", sc->idle_pct);
    cJSON_AddItemToArray(a, o);
  }
  return a;
}

static bool scheds_same(const dash_snapshot_t *a, const dash_snapshot_t *b) {
  if (a->nsched != b->nsched) return false;
  for (int i = 0; i < a->nsched; i++) {
    const dash_sched_t *x = &a->sched[i], *y = &b->sched[i];
    if (x->actors != y->actors || x->mailbox != y->mailbox || x->rate != y->rate ||
        x->runq != y->runq || x->turns_per_s != y->turns_per_s || x->idle_pct != y->idle_pct)
      return false;
  }
  return true;
}

/* Print and free.  Out of memory inside cJSON leaves a node out (its Add*
 * calls return NULL): the frame is then short, the client's version check
 * or missing keys make it resync -- rare enough not to cost a check per
 * node.  NULL when printing itself fails. */
static char *finish(cJSON *o) {
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return text;
}

char *dash_encode_snapshot(const dash_snapshot_t *s, uint64_t version, bool control) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "type", "snapshot");
  cJSON_AddNumberToObject(o, "v", (double)version);
  cJSON_AddStringToObject(o, "mode", control ? "control" : "read");
  cJSON_AddNumberToObject(o, "tick_ms", DASH_TICK_MS);
  cJSON_AddNumberToObject(o, "chaos", s->chaos);
  cJSON_AddNumberToObject(o, "truncated", (double)s->truncated);
  cJSON *actors = cJSON_AddArrayToObject(o, "actors");
  for (size_t i = 0; i < s->nactors; i++) cJSON_AddItemToArray(actors, enc_actor(&s->actors[i]));
  cJSON_AddItemToObject(o, "sessions", enc_sessions(s));
  cJSON_AddItemToObject(o, "schedulers", enc_scheds(s));
  return finish(o);
}

static const char *label_of(const dash_actor_t *a) { return a->name[0] ? a->name : a->behaviour; }

/* A restart is seen as a new pid whose restart count is above zero (the
 * supervisor passes the spec's count to the new child).  A supervisor whose
 * own count grew by more than those -- the folded sessions -- gets one
 * event with the difference. */
static void enc_restarts(cJSON *o, const dash_snapshot_t *old, const dash_snapshot_t *cur) {
  cJSON *ev = NULL;
  for (size_t i = 0; i < cur->nactors; i++) {
    const dash_actor_t *a = &cur->actors[i];
    if (a->restarts == 0 || find_actor(old, a->pid)) continue;
    const dash_actor_t *sup = find_actor(cur, a->parent);
    if (!ev) ev = cJSON_AddArrayToObject(o, "restarts");
    cJSON *e = cJSON_CreateObject();
    add_pid(e, "sup", a->parent);
    cJSON_AddStringToObject(e, "sup_name", sup ? label_of(sup) : "");
    cJSON_AddStringToObject(e, "child", label_of(a));
    add_pid(e, "pid", a->pid);
    cJSON_AddNumberToObject(e, "restarts", a->restarts);
    cJSON_AddItemToArray(ev, e);
  }
  for (size_t i = 0; i < cur->nactors; i++) {
    const dash_actor_t *sup = &cur->actors[i], *was = find_actor(old, sup->pid);
    if (!was || sup->restarts <= was->restarts || sup->pid != cur->folded_parent) continue;
    uint32_t seen = 0;
    for (size_t j = 0; j < cur->nactors; j++)
      if (cur->actors[j].parent == sup->pid && cur->actors[j].restarts &&
          !find_actor(old, cur->actors[j].pid))
        seen++;
    uint32_t more = sup->restarts - was->restarts;
    if (more <= seen) continue;
    if (!ev) ev = cJSON_AddArrayToObject(o, "restarts");
    cJSON *e = cJSON_CreateObject();
    add_pid(e, "sup", sup->pid);
    cJSON_AddStringToObject(e, "sup_name", label_of(sup));
    cJSON_AddStringToObject(e, "child", DASH_FOLDED);
    cJSON_AddNumberToObject(e, "count", more - seen);
    cJSON_AddItemToArray(ev, e);
  }
}

char *dash_encode_delta(const dash_snapshot_t *old, const dash_snapshot_t *cur,
                        uint64_t version, bool *changed) {
  *changed = false;
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "type", "delta");
  cJSON_AddNumberToObject(o, "v", (double)version);
  cJSON *add = NULL, *upd = NULL, *del = NULL;
  /* Both arrays are sorted by pid: one merge walk, O(a + b). */
  size_t i = 0, j = 0;
  while (i < old->nactors || j < cur->nactors) {
    const dash_actor_t *a = i < old->nactors ? &old->actors[i] : NULL;
    const dash_actor_t *b = j < cur->nactors ? &cur->actors[j] : NULL;
    if (a && (!b || a->pid < b->pid)) {
      char p[40];
      dash_pid_format(a->pid, p, sizeof p);
      if (!del) del = cJSON_AddArrayToObject(o, "del");
      cJSON_AddItemToArray(del, cJSON_CreateString(p));
      i++;
    } else if (b && (!a || b->pid < a->pid)) {
      if (!add) add = cJSON_AddArrayToObject(o, "add");
      cJSON_AddItemToArray(add, enc_actor(b));
      j++;
    } else {
      if (!actor_same(a, b)) {
        if (!upd) upd = cJSON_AddArrayToObject(o, "upd");
        cJSON_AddItemToArray(upd, enc_actor(b));
      }
      i++, j++;
    }
  }
  *changed = add || upd || del;
  if (!sessions_same(old, cur)) {
    cJSON_AddItemToObject(o, "sessions", enc_sessions(cur));
    *changed = true;
  }
  if (!scheds_same(old, cur)) {
    cJSON_AddItemToObject(o, "schedulers", enc_scheds(cur));
    *changed = true;
  }
  if (old->chaos != cur->chaos) {
    cJSON_AddNumberToObject(o, "chaos", cur->chaos);
    *changed = true;
  }
  if (old->truncated != cur->truncated) {
    cJSON_AddNumberToObject(o, "truncated", (double)cur->truncated);
    *changed = true;
  }
  if (*changed) enc_restarts(o, old, cur);
  if (!*changed) {
    cJSON_Delete(o);
    return NULL;
  }
  return finish(o);
}

/* ---------------------------------------------------------- requests */

static bool printable(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return false;
  return true;
}

void dash_parse_request(const char *json, size_t len, dash_req_t *out) {
  memset(out, 0, sizeof *out);
  out->kind = DASH_REQ_BAD;
  cJSON *o = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(o)) {
    out->error = "not a JSON object";
    cJSON_Delete(o);
    return;
  }
  const cJSON *ref = cJSON_GetObjectItemCaseSensitive(o, "ref");
  if (cJSON_IsString(ref) && strlen(ref->valuestring) < sizeof out->ref && printable(ref->valuestring))
    snprintf(out->ref, sizeof out->ref, "%s", ref->valuestring);
  const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "type"));
  if (!type) {
    out->error = "no type";
  } else if (!strcmp(type, "resync")) {
    out->kind = DASH_REQ_RESYNC;
  } else if (!strcmp(type, "chaos")) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value");
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1)) {
      out->error = "value must be a number from 0 to 1";
    } else {
      out->kind = DASH_REQ_CHAOS;
      out->chaos = v->valuedouble;
    }
  } else if (!strcmp(type, "exit")) {
    const char *pid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "pid"));
    const char *reason = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "reason"));
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "text"));
    out->pid = dash_pid_parse(pid);
    if (!out->pid) {
      out->error = "pid must look like <0.12.3>";
    } else if (reason && !strcmp(reason, "kill")) {
      out->kind = DASH_REQ_EXIT;
      out->reason = act_reason(ACT_KILL);
    } else if (reason && !strcmp(reason, "shutdown")) {
      out->kind = DASH_REQ_EXIT;
      out->reason = act_reason(ACT_SHUTDOWN);
    } else if (reason && !strcmp(reason, "crash")) {
      if (!text || !*text || strlen(text) > DASH_REASON_MAX || !printable(text)) {
        out->error = "a crash needs a text of 1 to 95 printable ASCII characters";
      } else {
        out->kind = DASH_REQ_EXIT;
        out->reason = act_reason_error("%s", text);
      }
    } else {
      out->error = "reason must be kill, shutdown or crash";
    }
  } else {
    out->error = "unknown type";
  }
  cJSON_Delete(o);
}

/* ------------------------------------------------- the shared snapshot */

/* The latest snapshot, shared by every viewer (reference-counted: a viewer
 * keeps the one its socket last received, to diff against). */
typedef struct shared_snap {
  _Atomic long refs;
  dash_snapshot_t *snap;
} shared_snap_t;

static pthread_mutex_t g_latest_mu = PTHREAD_MUTEX_INITIALIZER; /* held for a pointer swap */
static shared_snap_t *g_latest;
static pthread_mutex_t g_build_mu = PTHREAD_MUTEX_INITIALIZER;  /* one builder at a time */
static ACT_VEC(act_info_t) g_infos; /* act_list's buffer, under g_build_mu */
static _Atomic int g_viewers;

static shared_snap_t *snap_retain(shared_snap_t *s) {
  if (s) atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

static void snap_release(shared_snap_t *s) {
  /* acq_rel: the last holder's reads happen before the free */
  if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
    dash_snapshot_free(s->snap);
    free(s);
  }
}

static shared_snap_t *latest(void) {
  pthread_mutex_lock(&g_latest_mu);
  shared_snap_t *s = snap_retain(g_latest);
  pthread_mutex_unlock(&g_latest_mu);
  return s;
}

static void publish(shared_snap_t *s) {
  pthread_mutex_lock(&g_latest_mu);
  shared_snap_t *old = g_latest;
  g_latest = s;
  pthread_mutex_unlock(&g_latest_mu);
  snap_release(old);
}

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

static double chaos_now(void) {
  double v;
  __atomic_load(&((app_config_t *)app_config())->chaos, &v, __ATOMIC_RELAXED);
  return v;
}

/* ---------------------------------------------------- process info */

/* What act_process_info told of each drawn actor (links, monitors,
 * trap_exit, a supervisor's flags): only the actor itself may read those,
 * so they are asked of it -- one signal each way, answered between two of
 * its turns -- every DASH_INFO_REFRESH_MS, by the viewer that builds the
 * snapshot.  ~20 actors: ~10 signals a second; sessions are never asked.
 * Sorted by pid, rebuilt from each snapshot (so bounded by DASH_MAX_ACTORS
 * and forgetting the dead), under g_pinfo_mu. */
typedef struct pinfo {
  act_pid_t pid;
  uint64_t asked_ms, answered_ms; /* 0: never */
  act_process_info_t info;
} pinfo_t;

static pthread_mutex_t g_pinfo_mu = PTHREAD_MUTEX_INITIALIZER;
static pinfo_t *g_pinfo;
static size_t g_npinfo;

static const char *strategy_name(act_strategy_t s) {
  return s == ACT_ONE_FOR_ALL ? "one_for_all" : s == ACT_REST_FOR_ONE ? "rest_for_one" : "one_for_one";
}

static void apply_info(dash_actor_t *a, const act_process_info_t *pi) {
  a->trap_exit = pi->trap_exit;
  a->links = (int)pi->nlinks;
  a->monitors = (int)pi->nmonitors;
  a->monitored_by = (int)pi->nmonitored_by;
  if (pi->is_supervisor) {
    snprintf(a->strategy, sizeof a->strategy, "%s", strategy_name(pi->sup_flags.strategy));
    a->intensity = pi->sup_flags.intensity;
    a->period_ms = pi->sup_flags.period_ms;
  }
}

/* Fill snap's actors from the table, carry the table over to snap's
 * actors, and ask those due (inside the building viewer). */
static void merge_process_info(dash_snapshot_t *snap, uint64_t now) {
  pinfo_t *next = calloc(snap->nactors ? snap->nactors : 1, sizeof *next);
  act_pid_t ask[64];
  size_t nask = 0;
  pthread_mutex_lock(&g_pinfo_mu);
  size_t j = 0;
  for (size_t i = 0; i < snap->nactors; i++) {
    dash_actor_t *a = &snap->actors[i];
    while (j < g_npinfo && g_pinfo[j].pid < a->pid) j++;
    pinfo_t *old = j < g_npinfo && g_pinfo[j].pid == a->pid ? &g_pinfo[j] : NULL;
    if (old && old->answered_ms) apply_info(a, &old->info);
    uint64_t last = old ? (old->asked_ms > old->answered_ms ? old->asked_ms : old->answered_ms) : 0;
    bool due = !last || now - last >= DASH_INFO_REFRESH_MS;
    if (next) {
      next[i] = old ? *old : (pinfo_t){.pid = a->pid};
      if (due && nask < sizeof ask / sizeof ask[0]) next[i].asked_ms = now;
    }
    if (next && due && nask < sizeof ask / sizeof ask[0]) ask[nask++] = a->pid;
  }
  if (next) {
    free(g_pinfo);
    g_pinfo = next;
    g_npinfo = snap->nactors;
  }
  pthread_mutex_unlock(&g_pinfo_mu);
  for (size_t i = 0; i < nask; i++) act_process_info_async(ask[i], DASH_INFO_REFRESH_MS);
}

/* ACT_MSG_PROCESS_INFO, in whichever viewer asked. */
static void store_process_info(const act_msg_t *m) {
  if (m->size < sizeof(act_process_info_t)) return;
  const act_process_info_t *pi = m->data;
  pthread_mutex_lock(&g_pinfo_mu);
  size_t lo = 0, hi = g_npinfo;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (g_pinfo[mid].pid < pi->info.pid) lo = mid + 1;
    else hi = mid;
  }
  if (lo < g_npinfo && g_pinfo[lo].pid == pi->info.pid) {
    g_pinfo[lo].info = *pi;
    g_pinfo[lo].answered_ms = now_ms();
  }
  pthread_mutex_unlock(&g_pinfo_mu);
}

/* Between sweeps: the drawn actors -- the sessions supervisor among
 * them -- and the top sessions read again one by one (a pin each, and the
 * registry's lock for the named), O(actors drawn); NULL when one of them
 * is gone or the counts do not add up (dash_snapshot_update), and the
 * caller sweeps. */
static dash_snapshot_t *refresh(const dash_snapshot_t *prev, int nsched,
                                const act_sched_info_t *si) {
  act_info_t top[DASH_TOP_SESSIONS];
  size_t ntop = 0;
  const dash_actor_t *fold = find_actor(prev, prev->folded_parent);
  if (!fold || !act_vec_reserve(&g_infos, prev->nactors + 1)) return NULL;
  for (size_t i = 0; i < prev->nactors; i++)
    if (act_info_of(prev->actors[i].pid, &g_infos.v[i]) != ACT_OK) return NULL;
  for (size_t i = 0; i < prev->ntop; i++)
    ntop += act_info_of(prev->top[i].pid, &top[ntop]) == ACT_OK;
  uint32_t children = g_infos.v[fold - prev->actors].children;
  return dash_snapshot_update(prev, g_infos.v, top, ntop, children, now_ms(), nsched, si,
                              chaos_now());
}

/* A sweep: every live actor (act_list pins each slot in turn). */
static dash_snapshot_t *sweep(const dash_snapshot_t *prev, int nsched,
                              const act_sched_info_t *si) {
  size_t want = act_list(NULL, 0) + 64; /* room for actors born meanwhile */
  (void)act_vec_reserve(&g_infos, want); /* out of memory: the actors that fit */
  size_t n = act_list(g_infos.v, g_infos.cap);
  if (n > g_infos.cap) n = g_infos.cap;
  return dash_snapshot_build(g_infos.v, n, prev, now_ms(), nsched, si, chaos_now());
}

static uint64_t g_swept_ms; /* under g_build_mu */

/* A snapshot at most DASH_TICK_MS / 2 old (retained), or the previous one
 * when another viewer is building, or NULL.  A sweep at most every
 * DASH_SWEEP_MS while nothing is born or dies; between, a refresh. */
static shared_snap_t *fresh_snapshot(void) {
  shared_snap_t *cur = latest();
  uint64_t now = now_ms();
  if (cur && now - cur->snap->at_ms < DASH_TICK_MS / 2) return cur;
  if (pthread_mutex_trylock(&g_build_mu) != 0) return cur;
  int nsched = act_scheduler_count();
  if (nsched > DASH_MAX_SCHEDULERS) nsched = DASH_MAX_SCHEDULERS;
  static act_sched_info_t si[DASH_MAX_SCHEDULERS]; /* under g_build_mu */
  bool have_si = true;
  for (int i = 0; i < nsched; i++) have_si = have_si && act_scheduler_info(i, &si[i]) == ACT_OK;
  shared_snap_t *s = malloc(sizeof *s);
  dash_snapshot_t *snap = NULL;
  if (s && cur && have_si && now - g_swept_ms < DASH_SWEEP_MS) snap = refresh(cur->snap, nsched, si);
  if (snap) {
    tm_add(TM_DASH_REFRESHES, 1);
  } else if (s) {
    snap = sweep(cur ? cur->snap : NULL, nsched, have_si ? si : NULL);
    if (snap) {
      g_swept_ms = now;
      tm_add(TM_DASH_SWEEPS, 1);
    }
  }
  if (snap) merge_process_info(snap, now);
  pthread_mutex_unlock(&g_build_mu);
  if (!snap) {
    free(s);
    return cur;
  }
  atomic_init(&s->refs, 1); /* the reference g_latest holds */
  s->snap = snap;
  publish(s);
  snap_release(cur);
  return latest();
}

/* The last viewer gone: nothing keeps the buffers. */
static void drop_shared(void) {
  publish(NULL);
  pthread_mutex_lock(&g_pinfo_mu);
  free(g_pinfo);
  g_pinfo = NULL;
  g_npinfo = 0;
  pthread_mutex_unlock(&g_pinfo_mu);
  pthread_mutex_lock(&g_build_mu);
  act_vec_free(&g_infos);
  g_swept_ms = 0;
  pthread_mutex_unlock(&g_build_mu);
}

/* ---------------------------------------------------------- the viewer */

enum { DASH_TICK = 600 }; /* the viewer's own timer; app.h's types stop below */

typedef struct viewer {
  uint64_t conn_id;
  bool control;
  bool counted;           /* holds one of the DASH_MAX_VIEWERS places */
  uint64_t version;       /* of the last frame sent */
  shared_snap_t *sent;    /* what the socket last received; NULL = send a snapshot */
  char peer[48];
} viewer_t;

static void send_text(conn_t *c, char *text) {
  if (!text) {
    conn_close(c, WS_CLOSE_INTERNAL, "out of memory");
    return;
  }
  conn_send_json(c, text, strlen(text));
  free(text);
}

static void tick(viewer_t *v) {
  act_send_after(DASH_TICK_MS, act_self(), DASH_TICK, NULL, 0);
  conn_t *c = conn_get(v->conn_id);
  if (!c) {
    act_stop(act_reason(ACT_NORMAL));
    return;
  }
  /* A viewer that does not read gets no more until it has: it then
   * receives one delta against what it last saw, never a backlog. */
  if (conn_backlogged(c)) return;
  shared_snap_t *cur = fresh_snapshot();
  if (!cur || cur == v->sent) {
    snap_release(cur);
    return;
  }
  if (!v->sent) {
    send_text(c, dash_encode_snapshot(cur->snap, ++v->version, v->control));
  } else {
    bool changed;
    char *text = dash_encode_delta(v->sent->snap, cur->snap, v->version + 1, &changed);
    if (changed) {
      v->version++;
      send_text(c, text);
    } else if (text) {
      free(text);
    }
  }
  snap_release(v->sent);
  v->sent = cur;
}

/* The whole snapshot now (after a resync). */
static void tick_snapshot(viewer_t *v) {
  conn_t *c = conn_get(v->conn_id);
  if (!c || conn_backlogged(c)) return; /* the next tick sends it */
  shared_snap_t *cur = fresh_snapshot();
  if (!cur) return;
  send_text(c, dash_encode_snapshot(cur->snap, ++v->version, v->control));
  snap_release(v->sent);
  v->sent = cur;
}

static char *reply(const char *ref, const char *error, const char *detail) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "type", "reply");
  cJSON_AddStringToObject(o, "ref", ref);
  cJSON_AddBoolToObject(o, "ok", error == NULL);
  if (error) {
    cJSON_AddStringToObject(o, "error", error);
    cJSON_AddStringToObject(o, "detail", detail);
  }
  return finish(o);
}

static char *carry_out(viewer_t *v, const dash_req_t *rq) {
  char p[40];
  switch (rq->kind) {
  case DASH_REQ_BAD:
    return reply(rq->ref, "bad_request", rq->error);
  case DASH_REQ_RESYNC:
    snap_release(v->sent);
    v->sent = NULL;
    return NULL; /* no reply: the snapshot is the answer */
  case DASH_REQ_CHAOS:
    if (!v->control) return reply(rq->ref, "read_only", "controls are off for this socket");
    dashboard_set_chaos(rq->chaos);
    app_log(LOG_WARN, "dashboard: CHATTER_CHAOS set to %g by %s", rq->chaos, v->peer);
    return reply(rq->ref, NULL, NULL);
  case DASH_REQ_EXIT: {
    if (!v->control) return reply(rq->ref, "read_only", "controls are off for this socket");
    act_info_t info;
    dash_pid_format(rq->pid, p, sizeof p);
    if (act_info_of(rq->pid, &info) != ACT_OK) return reply(rq->ref, "noproc", "no such actor");
    app_log(LOG_WARN, "dashboard: exit(%s %s, %s) sent by %s", p,
            info.name[0] ? info.name : info.behaviour, rq->reason.text, v->peer);
    act_exit(rq->pid, rq->reason);
    return reply(rq->ref, NULL, NULL);
  }
  }
  return NULL;
}

static void on_frame(viewer_t *v) {
  conn_t *c = conn_get(v->conn_id);
  if (!c) return;
  size_t len;
  const char *json = conn_frame(c, &len);
  if (!json) return;
  dash_req_t rq;
  dash_parse_request(json, len, &rq);
  char *text = carry_out(v, &rq);
  if (text) send_text(c, text);
  conn_frame_done(c);
  if (rq.kind == DASH_REQ_RESYNC) tick_snapshot(v); /* at once, not at the next tick */
}

static int vw_init(void *args, void **state) {
  viewer_t *v = act_alloc(sizeof *v);
  if (!v) return ACT_ENOMEM;
  memset(v, 0, sizeof *v);
  *state = v;
  v->conn_id = (uint64_t)(uintptr_t)args;
  conn_t *c = conn_get(v->conn_id);
  if (!c) return ACT_ENOPROC; /* the socket went while we were started */
  snprintf(v->peer, sizeof v->peer, "%s", conn_state(c)->peer);
  if (atomic_fetch_add(&g_viewers, 1) >= DASH_MAX_VIEWERS) {
    atomic_fetch_sub(&g_viewers, 1);
    app_log(LOG_WARN, "dashboard: %d viewers already; refusing %s", DASH_MAX_VIEWERS, v->peer);
    conn_close(c, WS_CLOSE_POLICY, "too many dashboards");
    return ACT_EINVAL;
  }
  v->counted = true;
  dash_mode();
  v->control = dash_may_control(g_mode, g_debug, v->peer);
  conn_attach(c, act_self());
  tick(v);
  return ACT_OK;
}

static void vw_handle(void *state, act_msg_t *m) {
  viewer_t *v = state;
  switch (m->type) {
  case DASH_TICK: tick(v); break;
  case ACT_MSG_PROCESS_INFO: store_process_info(m); break;
  case CONN_FRAME: on_frame(v); break;
  case CONN_CLOSED: act_stop(act_reason(ACT_NORMAL)); break;
  default: break;
  }
}

static void vw_terminate(void *state, act_reason_t r) {
  viewer_t *v = state;
  conn_t *c = conn_get(v->conn_id);
  if (c) {
    conn_detach(c, act_self());
    /* Killed from a dashboard (perhaps its own): the page reconnects. */
    conn_close(c, r.kind == ACT_NORMAL ? WS_CLOSE_NORMAL : WS_CLOSE_GOING_AWAY, r.text);
  }
  snap_release(v->sent);
  if (v->counted && atomic_fetch_sub(&g_viewers, 1) == 1) drop_shared();
}

static const act_behaviour_t viewer_behaviour = {"dashboard", vw_init, vw_handle, vw_terminate};
const act_behaviour_t *dashboard_viewer_behaviour(void) { return &viewer_behaviour; }

/* On the acceptor, right after the 101: a temporary child of `sessions` on
 * the socket's scheduler (the conn id's low byte, as endpoint.c makes it),
 * as a session is started. */
void dashboard_start(uint64_t conn_id) {
  act_child_spec_t spec;
  memset(&spec, 0, sizeof spec);
  spec.behaviour = &viewer_behaviour;
  spec.args = (void *)(uintptr_t)conn_id;
  spec.restart = ACT_TEMPORARY;
  spec.shutdown_ms = 1000;
  spec.scheduler = ACT_SCHED_ON((int)(conn_id & 0xff));
  spec.max_mailbox = 1000;
  act_supervisor_start_child_async(act_whereis(APP_NAME_SESSIONS), &spec);
}
