/* test_dashboard.c: check suite for the data half of app/dashboard.c.
 *
 * Made-up act_info_t arrays go in (no runtime running); snapshots, deltas
 * and the JSON frames of /dashboard/ws come out and are read back with
 * cJSON.  Also the pid notation, the control requests' bounds and the
 * CHATTER_DASHBOARD modes.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/check_main.h"
#include "dashboard.h"
#include "pubsub.h"

/* ------------------------------------------------------------ helpers */

#define PID(sched, slot, gen) ((act_pid_t)(slot) | (act_pid_t)(sched) << 32 | (act_pid_t)(gen) << 40)

static act_info_t info(act_pid_t pid, act_pid_t parent, const char *name, const char *behaviour,
                       size_t mailbox, uint64_t messages, uint32_t restarts) {
  act_info_t i;
  memset(&i, 0, sizeof i);
  i.pid = pid;
  i.parent = parent;
  snprintf(i.name, sizeof i.name, "%s", name);
  snprintf(i.behaviour, sizeof i.behaviour, "%s", behaviour);
  i.mailbox_len = mailbox;
  i.messages = messages;
  i.restarts = restarts;
  i.scheduler = (int)((pid >> 32) & 0xff);
  return i;
}

/* A small tree: root, pubsub, a sessions supervisor and n sessions whose
 * mailbox is their index. */
enum { ROOT = 1, PUBSUB = 2, SESSIONS = 3 };
static size_t tree(act_info_t *out, size_t nsessions, uint64_t pubsub_msgs) {
  size_t n = 0;
  out[n++] = info(PID(0, ROOT, 1), 0, "chatter", "supervisor", 0, 10, 0);
  out[n++] = info(PID(1, PUBSUB, 1), PID(0, ROOT, 1), "pubsub", "pubsub", 0, pubsub_msgs, 0);
  out[n++] = info(PID(0, SESSIONS, 1), PID(0, ROOT, 1), "sessions", "supervisor", 0, 5, 0);
  for (size_t i = 0; i < nsessions; i++)
    out[n++] = info(PID(i % 2, 100 + i, 1), PID(0, SESSIONS, 1), "", "session", i, 100 * i, 0);
  return n;
}

static cJSON *parse(char *text) {
  ck_assert_ptr_nonnull(text);
  cJSON *o = cJSON_Parse(text);
  ck_assert_msg(o != NULL, "not JSON: %s", text);
  free(text);
  return o;
}

static const cJSON *item(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  ck_assert_msg(v != NULL, "no %s", key);
  return v;
}

static const cJSON *find_pid(const cJSON *arr, const char *pid) {
  const cJSON *a;
  cJSON_ArrayForEach(a, arr) if (!strcmp(cJSON_GetStringValue(item(a, "pid")), pid)) return a;
  return NULL;
}

/* --------------------------------------------------------------- pids */

START_TEST(pid_notation_round_trips) {
  char b[40];
  act_pid_t pids[] = {PID(0, 0, 1), PID(1, 12, 3), PID(255, 0xffffffffu, 0xffffff), PID(7, 123456, 42)};
  for (size_t i = 0; i < sizeof pids / sizeof pids[0]; i++) {
    dash_pid_format(pids[i], b, sizeof b);
    ck_assert_uint_eq(dash_pid_parse(b), pids[i]);
  }
  dash_pid_format(PID(1, 12, 3), b, sizeof b);
  ck_assert_str_eq(b, "<1.12.3>");
}
END_TEST

START_TEST(pid_notation_refuses_the_malformed) {
  const char *bad[] = {NULL, "", "<>", "<1.2>", "<1.2.3", "1.2.3>", "<1.2.3>x", "<a.2.3>",
                       "<256.1.1>", "<1.4294967296.1>", "<1.1.16777216>", "<-1.2.3>",
                       "< 1.2.3>", "<1..3>", "<1.2.3.4>", "<0.0.0>", "<+1.2.3>",
                       "<1.99999999999999999999.1>"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ck_assert_msg(dash_pid_parse(bad[i]) == ACT_NOPID, "accepted %s", bad[i] ? bad[i] : "NULL");
}
END_TEST

/* ---------------------------------------------------------- snapshots */

START_TEST(sessions_are_folded_with_the_deepest_on_top) {
  act_info_t in[64];
  size_t n = tree(in, 20, 0);
  dash_snapshot_t *s = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(s->nactors, 3); /* root, pubsub, sessions: no session one by one */
  ck_assert_uint_eq(s->sessions, 20);
  ck_assert_uint_eq(s->sessions_mailbox, 190); /* 0 + 1 + ... + 19 */
  ck_assert_uint_eq(s->folded_parent, PID(0, SESSIONS, 1));
  ck_assert_uint_eq(s->ntop, DASH_TOP_SESSIONS);
  for (size_t i = 0; i < s->ntop; i++) ck_assert_uint_eq(s->top[i].mailbox, 19 - i);
  /* sorted by pid, for the delta's merge walk */
  for (size_t i = 1; i < s->nactors; i++) ck_assert(s->actors[i - 1].pid < s->actors[i].pid);
  /* schedulers: sessions alternate between 0 and 1 */
  ck_assert_int_eq(s->nsched, 2);
  ck_assert_uint_eq(s->sched[0].actors + s->sched[1].actors, n);
  ck_assert_int_eq(s->sched[0].runq, -1); /* unknown until the runtime tells */
  dash_snapshot_free(s);
}
END_TEST

START_TEST(fewer_sessions_than_the_top) {
  act_info_t in[8];
  size_t n = tree(in, 2, 0);
  dash_snapshot_t *s = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  ck_assert_uint_eq(s->ntop, 2);
  ck_assert_uint_eq(s->top[0].mailbox, 1);
  ck_assert_uint_eq(s->top[1].mailbox, 0);
  dash_snapshot_free(s);
  /* None at all: the fold still belongs under the sessions supervisor. */
  n = tree(in, 0, 0);
  s = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  ck_assert_uint_eq(s->sessions, 0);
  ck_assert_uint_eq(s->ntop, 0);
  ck_assert_uint_eq(s->folded_parent, PID(0, SESSIONS, 1));
  dash_snapshot_free(s);
}
END_TEST

START_TEST(rates_come_from_the_previous_snapshot) {
  act_info_t in[16];
  size_t n = tree(in, 3, 1000);
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  n = tree(in, 3, 1500); /* pubsub handled 500 more in 250 ms */
  in[3].messages += 50;  /* the shallowest session, 50 more */
  dash_snapshot_t *b = dash_snapshot_build(in, n, a, 1250, 2, NULL, 0);
  for (size_t i = 0; i < b->nactors; i++)
    ck_assert_uint_eq(b->actors[i].rate, b->actors[i].pid == PID(1, PUBSUB, 1) ? 2000 : 0);
  ck_assert_uint_eq(b->sessions_rate, 200);
  ck_assert_uint_eq(b->top[2].rate, 200); /* mailbox 0: the last of three */
  ck_assert_uint_eq(b->sched[1].rate, 2000);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
}
END_TEST

START_TEST(scheduler_counters_become_rates) {
  act_info_t in[8];
  size_t n = tree(in, 2, 0);
  act_sched_info_t si[2] = {{.id = 0, .run_queue = 3, .turns = 1000, .idle_ms = 100},
                            {.id = 1, .run_queue = 0, .turns = 50, .idle_ms = 900}};
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, si, 0);
  ck_assert_int_eq(a->sched[0].runq, 3);
  ck_assert_int_eq(a->sched[0].turns_per_s, -1); /* one sample: no rate yet */
  si[0] = (act_sched_info_t){.id = 0, .run_queue = 1, .turns = 1500, .idle_ms = 150}; /* 500 turns, idle 50 of 500 ms */
  si[1] = (act_sched_info_t){.id = 1, .run_queue = 0, .turns = 50, .idle_ms = 1400};  /* no turn, idle the whole time */
  dash_snapshot_t *b = dash_snapshot_build(in, n, a, 1500, 2, si, 0);
  ck_assert_int_eq(b->sched[0].runq, 1);
  ck_assert_int_eq(b->sched[0].turns_per_s, 1000);
  ck_assert_int_eq(b->sched[0].idle_pct, 10);
  ck_assert_int_eq(b->sched[1].turns_per_s, 0);
  ck_assert_int_eq(b->sched[1].idle_pct, 100);
  cJSON *o = parse(dash_encode_snapshot(b, 1, false));
  const cJSON *s0 = cJSON_GetArrayItem(item(o, "schedulers"), 0);
  ck_assert_int_eq(item(s0, "runq")->valueint, 1);
  ck_assert_int_eq(item(s0, "turns")->valueint, 1000);
  ck_assert_int_eq(item(s0, "idle")->valueint, 10);
  cJSON_Delete(o);
  /* Without the runtime's counters: unknown, as null. */
  dash_snapshot_t *c = dash_snapshot_build(in, n, b, 2000, 2, NULL, 0);
  o = parse(dash_encode_snapshot(c, 1, false));
  ck_assert(cJSON_IsNull(item(cJSON_GetArrayItem(item(o, "schedulers"), 0), "runq")));
  cJSON_Delete(o);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
  dash_snapshot_free(c);
}
END_TEST

START_TEST(actors_past_the_bound_are_counted_not_drawn) {
  size_t n = DASH_MAX_ACTORS + 1;
  act_info_t *in = calloc(n + 1, sizeof *in);
  for (size_t i = 0; i < n; i++) in[i] = info(PID(0, i + 1, 1), 0, "", "worker", 0, 0, 0);
  in[n] = info(PID(0, n + 5, 1), 0, "", "session", 0, 0, 0);
  dash_snapshot_t *s = dash_snapshot_build(in, DASH_MAX_ACTORS, NULL, 1, 1, NULL, 0);
  ck_assert_uint_eq(s->nactors, DASH_MAX_ACTORS);
  ck_assert_uint_eq(s->truncated, 0);
  dash_snapshot_free(s);
  s = dash_snapshot_build(in, n + 1, NULL, 1, 1, NULL, 0);
  ck_assert_uint_eq(s->nactors, DASH_MAX_ACTORS);
  ck_assert_uint_eq(s->truncated, 1);
  ck_assert_uint_eq(s->sessions, 1); /* sessions are never truncated */
  cJSON *o = parse(dash_encode_snapshot(s, 1, false));
  ck_assert_int_eq(cJSON_GetArraySize(item(o, "actors")), DASH_MAX_ACTORS);
  ck_assert_int_eq(item(o, "truncated")->valueint, 1);
  cJSON_Delete(o);
  dash_snapshot_free(s);
  free(in);
}
END_TEST

/* ----------------------------------------------------------- encoding */

START_TEST(snapshot_frame) {
  act_info_t in[16];
  size_t n = tree(in, 7, 0);
  dash_snapshot_t *s = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0.25);
  cJSON *o = parse(dash_encode_snapshot(s, 1, true));
  ck_assert_str_eq(cJSON_GetStringValue(item(o, "type")), "snapshot");
  ck_assert_int_eq(item(o, "v")->valueint, 1);
  ck_assert_str_eq(cJSON_GetStringValue(item(o, "mode")), "control");
  ck_assert_int_eq(item(o, "tick_ms")->valueint, DASH_TICK_MS);
  ck_assert(item(o, "chaos")->valuedouble == 0.25);
  const cJSON *actors = item(o, "actors");
  ck_assert_int_eq(cJSON_GetArraySize(actors), 3);
  const cJSON *pubsub = find_pid(actors, "<1.2.1>");
  ck_assert_ptr_nonnull(pubsub);
  ck_assert_str_eq(cJSON_GetStringValue(item(pubsub, "name")), "pubsub");
  ck_assert_str_eq(cJSON_GetStringValue(item(pubsub, "parent")), "<0.1.1>");
  ck_assert_int_eq(item(pubsub, "sched")->valueint, 1);
  ck_assert(cJSON_IsNull(item(pubsub, "strategy"))); /* until the actor answers */
  ck_assert(cJSON_IsNull(item(pubsub, "trap_exit")));
  ck_assert(cJSON_IsNull(item(pubsub, "links")));
  ck_assert(cJSON_IsNull(item(find_pid(actors, "<0.1.1>"), "parent"))); /* the root */
  const cJSON *ses = item(o, "sessions");
  ck_assert_int_eq(item(ses, "count")->valueint, 7);
  ck_assert_int_eq(item(ses, "mailbox")->valueint, 21);
  ck_assert_str_eq(cJSON_GetStringValue(item(ses, "parent")), "<0.3.1>");
  ck_assert_int_eq(cJSON_GetArraySize(item(ses, "top")), DASH_TOP_SESSIONS);
  ck_assert_int_eq(item(cJSON_GetArrayItem(item(ses, "top"), 0), "mailbox")->valueint, 6);
  ck_assert_int_eq(cJSON_GetArraySize(item(o, "schedulers")), 2);
  cJSON_Delete(o);
  o = parse(dash_encode_snapshot(s, 9, false));
  ck_assert_str_eq(cJSON_GetStringValue(item(o, "mode")), "read");
  cJSON_Delete(o);
  dash_snapshot_free(s);
}
END_TEST

START_TEST(nothing_changed_nothing_sent) {
  act_info_t in[16];
  size_t n = tree(in, 7, 0);
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  dash_snapshot_t *b = dash_snapshot_build(in, n, a, 1200, 2, NULL, 0);
  bool changed = true;
  ck_assert_ptr_null(dash_encode_delta(a, b, 2, &changed));
  ck_assert(!changed);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
}
END_TEST

START_TEST(delta_carries_only_what_changed) {
  act_info_t in[16];
  size_t n = tree(in, 7, 0);
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  in[1].mailbox_len = 42; /* pubsub's mailbox grows */
  dash_snapshot_t *b = dash_snapshot_build(in, n, a, 1200, 2, NULL, 0);
  bool changed = false;
  cJSON *o = parse(dash_encode_delta(a, b, 2, &changed));
  ck_assert(changed);
  ck_assert_str_eq(cJSON_GetStringValue(item(o, "type")), "delta");
  ck_assert_int_eq(item(o, "v")->valueint, 2);
  const cJSON *upd = item(o, "upd");
  ck_assert_int_eq(cJSON_GetArraySize(upd), 1);
  ck_assert_int_eq(item(cJSON_GetArrayItem(upd, 0), "mailbox")->valueint, 42);
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "add"));
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "del"));
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "sessions"));
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "restarts"));
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "chaos"));
  ck_assert_ptr_nonnull(cJSON_GetObjectItem(o, "schedulers")); /* its mailbox sum moved */
  cJSON_Delete(o);

  /* A session's mailbox: only "sessions". */
  in[5].mailbox_len = 1000;
  dash_snapshot_t *c = dash_snapshot_build(in, n, b, 1400, 2, NULL, 0);
  o = parse(dash_encode_delta(b, c, 3, &changed));
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "upd"));
  const cJSON *ses = item(o, "sessions");
  ck_assert_int_eq(item(cJSON_GetArrayItem(item(ses, "top"), 0), "mailbox")->valueint, 1000);
  cJSON_Delete(o);

  /* Chaos alone. */
  dash_snapshot_t *d = dash_snapshot_build(in, n, c, 1600, 2, NULL, 0.5);
  o = parse(dash_encode_delta(c, d, 4, &changed));
  ck_assert(item(o, "chaos")->valuedouble == 0.5);
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "schedulers"));
  cJSON_Delete(o);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
  dash_snapshot_free(c);
  dash_snapshot_free(d);
}
END_TEST

START_TEST(a_restart_is_a_del_an_add_and_an_event) {
  act_info_t in[16];
  size_t n = tree(in, 3, 0);
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  /* The pubsub crashed; the root started it again with a new generation. */
  in[1] = info(PID(1, PUBSUB, 2), PID(0, ROOT, 1), "pubsub", "pubsub", 0, 0, 1);
  in[0].restarts = 1;
  dash_snapshot_t *b = dash_snapshot_build(in, n, a, 1200, 2, NULL, 0);
  bool changed;
  cJSON *o = parse(dash_encode_delta(a, b, 2, &changed));
  const cJSON *del = item(o, "del");
  ck_assert_int_eq(cJSON_GetArraySize(del), 1);
  ck_assert_str_eq(cJSON_GetArrayItem(del, 0)->valuestring, "<1.2.1>");
  const cJSON *added = find_pid(item(o, "add"), "<1.2.2>");
  ck_assert_ptr_nonnull(added);
  ck_assert_int_eq(item(added, "restarts")->valueint, 1);
  const cJSON *ev = item(o, "restarts");
  ck_assert_int_eq(cJSON_GetArraySize(ev), 1);
  const cJSON *e = cJSON_GetArrayItem(ev, 0);
  ck_assert_str_eq(cJSON_GetStringValue(item(e, "sup_name")), "chatter");
  ck_assert_str_eq(cJSON_GetStringValue(item(e, "child")), "pubsub");
  ck_assert_str_eq(cJSON_GetStringValue(item(e, "pid")), "<1.2.2>");
  ck_assert_ptr_null(cJSON_GetObjectItem(e, "count"));
  cJSON_Delete(o);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
}
END_TEST

START_TEST(folded_restarts_are_counted) {
  act_info_t in[16];
  size_t n = tree(in, 3, 0);
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, NULL, 0);
  /* Two sessions restarted (new pids, folded), the supervisor counts 2. */
  in[2].restarts = 2;
  in[3].pid = PID(0, 100, 2);
  in[4].pid = PID(1, 101, 2);
  dash_snapshot_t *b = dash_snapshot_build(in, n, a, 1200, 2, NULL, 0);
  bool changed;
  cJSON *o = parse(dash_encode_delta(a, b, 2, &changed));
  const cJSON *ev = item(o, "restarts");
  ck_assert_int_eq(cJSON_GetArraySize(ev), 1);
  const cJSON *e = cJSON_GetArrayItem(ev, 0);
  ck_assert_str_eq(cJSON_GetStringValue(item(e, "sup_name")), "sessions");
  ck_assert_str_eq(cJSON_GetStringValue(item(e, "child")), "session");
  ck_assert_int_eq(item(e, "count")->valueint, 2);
  cJSON_Delete(o);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
}
END_TEST

/* ------------------------------------------------- between sweeps */

/* prev's drawn actors as the runtime would tell them again (same order). */
static void reread(const dash_snapshot_t *prev, const act_info_t *in, size_t n, act_info_t *out) {
  for (size_t i = 0; i < prev->nactors; i++)
    for (size_t j = 0; j < n; j++)
      if (in[j].pid == prev->actors[i].pid) out[i] = in[j];
}

/* tree() with a viewer under the sessions supervisor: drawn, not folded. */
static size_t tree_with_viewer(act_info_t *in, size_t nsessions) {
  size_t n = tree(in, nsessions, 0);
  in[n++] = info(PID(1, 90, 1), PID(0, SESSIONS, 1), "", "dashboard", 0, 0, 0);
  return n;
}

static void counters(act_sched_info_t *si, long a0, long a1, uint64_t m0, uint64_t m1) {
  si[0] = (act_sched_info_t){.id = 0, .turns = m0, .actors = a0, .messages = m0};
  si[1] = (act_sched_info_t){.id = 1, .turns = m1, .actors = a1, .messages = m1};
}

START_TEST(between_sweeps_only_the_drawn_are_read) {
  act_info_t in[64], again[8], top[DASH_TOP_SESSIONS];
  size_t n = tree_with_viewer(in, 20);
  act_sched_info_t si[2];
  counters(si, 12, 12, 1000, 2000); /* root, sessions + 10 / pubsub, viewer + 10 */
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, si, 0);
  ck_assert_uint_eq(a->nactors, 4);
  ck_assert_uint_eq(a->sessions, 20);
  ck_assert_uint_eq(a->all_messages, 3000); /* the schedulers' counters, not the sum */
  /* 500 ms later: pubsub handled 400 more; 1,000 messages in all, so the
   * sessions handled 600; the deepest session's mailbox went down to 3. */
  for (size_t i = 0; i < n; i++)
    if (in[i].pid == PID(1, PUBSUB, 1)) in[i].messages += 400;
  reread(a, in, n, again);
  for (size_t i = 0; i < a->ntop; i++) {
    top[i] = in[3 + 19 - i]; /* the sessions a->top holds, deepest first */
    ck_assert_uint_eq(top[i].pid, a->top[i].pid);
  }
  top[0].mailbox_len = 3;
  counters(si, 12, 12, 1300, 2700);
  dash_snapshot_t *b = dash_snapshot_update(a, again, top, a->ntop, 21, 1500, 2, si, 0);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(b->nactors, 4);
  ck_assert_uint_eq(b->sessions, 20);         /* 21 children, one of them the viewer */
  ck_assert_uint_eq(b->sessions_mailbox, 190); /* carried from the sweep */
  ck_assert_uint_eq(b->sessions_rate, 1200);   /* (1,000 - 400) in 0.5 s */
  ck_assert_uint_eq(b->sched[1].rate, 1400);
  ck_assert_uint_eq(b->sched[0].actors, 12);
  for (size_t i = 0; i < b->nactors; i++)
    ck_assert_uint_eq(b->actors[i].rate, b->actors[i].pid == PID(1, PUBSUB, 1) ? 800 : 0);
  /* the top re-sorted by what the mailboxes hold now */
  ck_assert_uint_eq(b->ntop, DASH_TOP_SESSIONS);
  ck_assert_uint_eq(b->top[0].mailbox, 18);
  ck_assert_uint_eq(b->top[DASH_TOP_SESSIONS - 1].mailbox, 3);
  /* a delta between a sweep and a refresh carries what changed only */
  bool changed;
  cJSON *o = parse(dash_encode_delta(a, b, 2, &changed));
  ck_assert(changed);
  ck_assert_int_eq(cJSON_GetArraySize(item(o, "upd")), 1); /* the pubsub's rate */
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "add"));
  ck_assert_ptr_null(cJSON_GetObjectItem(o, "del"));
  cJSON_Delete(o);
  dash_snapshot_free(a);
  dash_snapshot_free(b);
}
END_TEST

START_TEST(a_birth_or_a_death_asks_for_a_sweep) {
  act_info_t in[64], again[8];
  size_t n = tree_with_viewer(in, 20);
  act_sched_info_t si[2];
  counters(si, 12, 12, 0, 0);
  dash_snapshot_t *a = dash_snapshot_build(in, n, NULL, 1000, 2, si, 0);
  reread(a, in, n, again);
  /* consistent: a refresh */
  dash_snapshot_t *b = dash_snapshot_update(a, again, NULL, 0, 21, 1200, 2, si, 0);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(b->ntop, 0); /* the top sessions all gone */
  dash_snapshot_free(b);
  /* a session more, counted by its supervisor: still consistent */
  counters(si, 13, 12, 0, 0);
  b = dash_snapshot_update(a, again, NULL, 0, 22, 1200, 2, si, 0);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(b->sessions, 21);
  dash_snapshot_free(b);
  /* an actor born outside the sessions supervisor: not drawn, so sweep */
  ck_assert_ptr_null(dash_snapshot_update(a, again, NULL, 0, 21, 1200, 2, si, 0));
  /* one drawn died (the caller read another pid there), or no counters */
  counters(si, 12, 12, 0, 0);
  again[1].pid = PID(1, PUBSUB, 2);
  ck_assert_ptr_null(dash_snapshot_update(a, again, NULL, 0, 21, 1200, 2, si, 0));
  reread(a, in, n, again);
  ck_assert_ptr_null(dash_snapshot_update(a, again, NULL, 0, 21, 1200, 2, NULL, 0));
  dash_snapshot_free(a);
}
END_TEST

/* ----------------------------------------------------------- requests */

static dash_req_t req(const char *json) {
  dash_req_t r;
  dash_parse_request(json, strlen(json), &r);
  return r;
}

START_TEST(requests_that_are_understood) {
  dash_req_t r = req("{\"type\":\"exit\",\"ref\":\"7\",\"pid\":\"<1.2.3>\",\"reason\":\"kill\"}");
  ck_assert_int_eq(r.kind, DASH_REQ_EXIT);
  ck_assert_str_eq(r.ref, "7");
  ck_assert_uint_eq(r.pid, PID(1, 2, 3));
  ck_assert_int_eq(r.reason.kind, ACT_KILL);
  r = req("{\"type\":\"exit\",\"pid\":\"<1.2.3>\",\"reason\":\"shutdown\"}");
  ck_assert_int_eq(r.reason.kind, ACT_SHUTDOWN);
  ck_assert_str_eq(r.ref, "");
  r = req("{\"type\":\"exit\",\"pid\":\"<1.2.3>\",\"reason\":\"crash\",\"text\":\"boom\"}");
  ck_assert_int_eq(r.kind, DASH_REQ_EXIT);
  ck_assert_int_eq(r.reason.kind, ACT_ERROR);
  ck_assert_str_eq(r.reason.text, "boom");
  r = req("{\"type\":\"chaos\",\"value\":0.125}");
  ck_assert_int_eq(r.kind, DASH_REQ_CHAOS);
  ck_assert(r.chaos == 0.125);
  ck_assert_int_eq(req("{\"type\":\"chaos\",\"value\":0}").kind, DASH_REQ_CHAOS);
  ck_assert_int_eq(req("{\"type\":\"chaos\",\"value\":1}").kind, DASH_REQ_CHAOS);
  ck_assert_int_eq(req("{\"type\":\"resync\"}").kind, DASH_REQ_RESYNC);
}
END_TEST

START_TEST(crash_text_bound) {
  char text[DASH_REASON_MAX + 2], json[256];
  memset(text, 'x', sizeof text);
  text[DASH_REASON_MAX] = 0; /* exactly the bound: accepted, kept whole */
  snprintf(json, sizeof json, "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"crash\",\"text\":\"%s\"}", text);
  dash_req_t r = req(json);
  ck_assert_int_eq(r.kind, DASH_REQ_EXIT);
  ck_assert_uint_eq(strlen(r.reason.text), DASH_REASON_MAX);
  text[DASH_REASON_MAX] = 'x'; /* one more: refused */
  text[DASH_REASON_MAX + 1] = 0;
  snprintf(json, sizeof json, "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"crash\",\"text\":\"%s\"}", text);
  r = req(json);
  ck_assert_int_eq(r.kind, DASH_REQ_BAD);
  ck_assert_ptr_nonnull(r.error);
}
END_TEST

START_TEST(bad_requests_say_why) {
  const char *bad[] = {
    "", "nope", "[]", "42", "{}", "{\"type\":7}", "{\"type\":\"dance\"}",
    "{\"type\":\"chaos\"}", "{\"type\":\"chaos\",\"value\":\"0.5\"}",
    "{\"type\":\"chaos\",\"value\":1.0001}", "{\"type\":\"chaos\",\"value\":-0.0001}",
    "{\"type\":\"exit\",\"reason\":\"kill\"}", "{\"type\":\"exit\",\"pid\":\"pubsub\",\"reason\":\"kill\"}",
    "{\"type\":\"exit\",\"pid\":\"<0.1.1>\"}", "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"normal\"}",
    "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"crash\"}",
    "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"crash\",\"text\":\"\"}",
    "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"crash\",\"text\":\"a\\nb\"}",
    "{\"type\":\"exit\",\"pid\":\"<0.1.1>\",\"reason\":\"crash\",\"text\":\"caf\\u00e9\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    dash_req_t r = req(bad[i]);
    ck_assert_msg(r.kind == DASH_REQ_BAD, "accepted %s", bad[i]);
    ck_assert_msg(r.error && *r.error, "no reason for %s", bad[i]);
  }
  /* A ref that is too long is dropped, not truncated into another one. */
  dash_req_t r = req("{\"type\":\"resync\",\"ref\":\"0123456789012345678901234567890123\"}");
  ck_assert_str_eq(r.ref, "");
}
END_TEST

/* --------------------------------------------------------------- mode */

START_TEST(modes) {
  ck_assert_int_eq(dash_mode_parse(NULL), DASH_AUTO);
  ck_assert_int_eq(dash_mode_parse(""), DASH_AUTO);
  ck_assert_int_eq(dash_mode_parse("auto"), DASH_AUTO);
  ck_assert_int_eq(dash_mode_parse("off"), DASH_OFF);
  ck_assert_int_eq(dash_mode_parse("read"), DASH_READ);
  ck_assert_int_eq(dash_mode_parse("control"), DASH_CONTROL);
  ck_assert_int_eq((int)dash_mode_parse("Control"), -1);
  ck_assert(dash_may_control(DASH_AUTO, false, "127.0.0.1"));
  ck_assert(dash_may_control(DASH_AUTO, false, "::/64"));
  ck_assert(!dash_may_control(DASH_AUTO, false, "10.0.0.7"));
  ck_assert(!dash_may_control(DASH_AUTO, false, "1270.0.0.1"));
  ck_assert(!dash_may_control(DASH_AUTO, false, "2001:db8::/64"));
  ck_assert(dash_may_control(DASH_AUTO, true, "10.0.0.7"));   /* CHATTER_DEBUG=1 */
  ck_assert(dash_may_control(DASH_CONTROL, false, "10.0.0.7"));
  ck_assert(!dash_may_control(DASH_READ, true, "127.0.0.1")); /* read wins over both */
  ck_assert(!dash_may_control(DASH_OFF, true, "127.0.0.1"));
}
END_TEST


int main(void) {
  Suite *s = suite_create("dashboard");
  TCase *t = tcase_create("pids");
  tcase_add_test(t, pid_notation_round_trips);
  tcase_add_test(t, pid_notation_refuses_the_malformed);
  suite_add_tcase(s, t);
  t = tcase_create("snapshots");
  tcase_add_test(t, sessions_are_folded_with_the_deepest_on_top);
  tcase_add_test(t, fewer_sessions_than_the_top);
  tcase_add_test(t, rates_come_from_the_previous_snapshot);
  tcase_add_test(t, actors_past_the_bound_are_counted_not_drawn);
  tcase_add_test(t, scheduler_counters_become_rates);
  tcase_add_test(t, between_sweeps_only_the_drawn_are_read);
  tcase_add_test(t, a_birth_or_a_death_asks_for_a_sweep);
  suite_add_tcase(s, t);
  t = tcase_create("encoding");
  tcase_add_test(t, snapshot_frame);
  tcase_add_test(t, nothing_changed_nothing_sent);
  tcase_add_test(t, delta_carries_only_what_changed);
  tcase_add_test(t, a_restart_is_a_del_an_add_and_an_event);
  tcase_add_test(t, folded_restarts_are_counted);
  suite_add_tcase(s, t);
  t = tcase_create("requests");
  tcase_add_test(t, requests_that_are_understood);
  tcase_add_test(t, crash_text_bound);
  tcase_add_test(t, bad_requests_say_why);
  tcase_add_test(t, modes);
  suite_add_tcase(s, t);
  return run_suite(s, CK_NORMAL) ? EXIT_FAILURE : EXIT_SUCCESS;
}
