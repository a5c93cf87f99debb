/*
 * actor.c -- processes: pids and slots, spawn, send, the turn, signals
 * (links, monitors, exits) and death.
 *
 * Reading guide.  A pid names a slot and a generation.  A sender "pins" the
 * slot (readers += 1), checks that the slot still holds that pid, pushes its
 * envelope into the process's inbox, and unpins.  A dying process unpublishes
 * its slot and waits for readers to reach zero before draining its inbox, so
 * no envelope is ever pushed into freed memory and none is lost unnoticed.
 *
 * `pending` counts envelopes pushed but not consumed.  The sender that takes
 * it from 0 to 1 schedules the process; the turn subtracts what it consumed
 * and reschedules if anything is left.  So a process is in at most one run
 * queue at a time, and runs on one thread at a time.
 *
 * A turn first moves envelopes from the inbox to a private FIFO, acting on
 * signals as it meets them (OTP's signal order per sender is kept because
 * trapped exits and DOWNs become messages at that point, behind the
 * messages that came before them), then runs handle() on up to `budget`
 * messages.
 */
#include "act_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOVE_MAX 1024 /* envelopes moved per turn: bounds a turn's length */

static act_slot_t *g_slots;
static uint32_t g_max;
static _Atomic uint32_t g_high;
static pthread_mutex_t g_free_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t g_free_head = UINT32_MAX;
static _Atomic uint64_t g_refs = 1;
static _Atomic long g_live;
static pthread_mutex_t g_live_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_live_cv = PTHREAD_COND_INITIALIZER;

/* ---------------------------------------------------------- reasons */

static const char *const kind_names[] = {"normal", "shutdown", "kill",
                                         "killed", "noproc",   "error"};

act_reason_t act_reason(act_reason_kind_t kind) {
  act_reason_t r = {.kind = kind};
  snprintf(r.text, sizeof r.text, "%s", kind_names[kind]);
  return r;
}

act_reason_t act_reason_shutdown(const char *fmt, ...) {
  act_reason_t r = {.kind = ACT_SHUTDOWN};
  char term[ACT_REASON_TEXT];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(term, sizeof term, fmt, ap);
  va_end(ap);
  snprintf(r.text, sizeof r.text, "shutdown: %.*s", ACT_REASON_TEXT - 11, term);
  return r;
}

act_reason_t act_reason_error(const char *fmt, ...) {
  act_reason_t r = {.kind = ACT_ERROR};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r.text, sizeof r.text, fmt, ap);
  va_end(ap);
  return r;
}

const char *act_strerror(int err) {
  switch (err) {
  case ACT_OK: return "ok";
  case ACT_EINVAL: return "invalid argument";
  case ACT_ENOMEM: return "out of memory or actor slots";
  case ACT_ENOPROC: return "no such actor";
  case ACT_ETIMEDOUT: return "timed out";
  case ACT_EEXIST: return "already exists";
  case ACT_ENOTACTOR: return "only an actor may do this";
  case ACT_ESTATE: return "runtime not running";
  case ACT_EEXITED: return "exited before init answered";
  case ACT_ERUNNING: return "the child is running";
  default: return "unknown error";
  }
}

/* relaxed: only uniqueness matters, and an RMW is unique in any order */
act_ref_t act_make_ref(void) { return atomic_fetch_add_explicit(&g_refs, 1, memory_order_relaxed); }

/* ---------------------------------------------------------- vectors */

/* Links and monitors are sets, kept as open-addressing hash tables (linear
 * probing, at most half full, 0 = empty since no pid or ref is 0): adding,
 * finding and removing are O(1) however many there are.  A supervisor of
 * 40,000 children has 40,000 links; a scan per exit made their removal
 * quadratic.  The smallest table is 4 entries (32 or 64 bytes), as the old
 * vectors; iteration walks the table and skips the empty entries. */

static uint32_t hslot(uint64_t key, uint32_t cap) {
  return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* Find key's entry, or the empty one where it would go. */
#define FIND(tab, cap, keyof, key)                                   \
  uint32_t i = hslot((key), (cap));                                  \
  while (keyof((tab)[i]) && keyof((tab)[i]) != (key)) i = (i + 1) & ((cap) - 1)

/* Remove entry i and shift back those that probed past it (no tombstones). */
#define DELETE_AT(tab, cap, keyof, zero)                                        \
  do {                                                                          \
    uint32_t j = i;                                                             \
    for (;;) {                                                                  \
      (tab)[i] = (zero);                                                        \
      for (;;) {                                                                \
        j = (j + 1) & ((cap) - 1);                                              \
        if (!keyof((tab)[j])) return true;                                      \
        uint32_t k = hslot(keyof((tab)[j]), (cap));                             \
        /* keep j where it is if its home k lies cyclically in (i, j] */       \
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;           \
        break;                                                                  \
      }                                                                         \
      (tab)[i] = (tab)[j];                                                      \
      i = j;                                                                    \
    }                                                                           \
  } while (0)

#define PID_KEY(x) (x)
#define MON_KEY(x) ((x).ref)

bool act__pidvec_has(const act_pidvec_t *v, act_pid_t pid) {
  if (!v->cap || !pid) return false;
  FIND(v->v, v->cap, PID_KEY, pid);
  return v->v[i] == pid;
}

static bool pid_rehash(act_pidvec_t *v, uint32_t ncap) {
  act_pid_t *nv = calloc(ncap, sizeof *nv);
  if (!nv) return false;
  for (uint32_t o = 0; o < v->cap; o++) {
    if (!v->v[o]) continue;
    FIND(nv, ncap, PID_KEY, v->v[o]);
    nv[i] = v->v[o];
  }
  free(v->v);
  v->v = nv;
  v->cap = ncap;
  return true;
}

bool act__pidvec_add(act_pidvec_t *v, act_pid_t pid) {
  if (act__pidvec_has(v, pid)) return true;
  if ((v->n + 1) * 2 > v->cap && !pid_rehash(v, v->cap ? v->cap * 2 : 4)) return false;
  FIND(v->v, v->cap, PID_KEY, pid);
  v->v[i] = pid;
  v->n++;
  ACT_DEBUG_ASSERT(v->n * 2 <= v->cap); /* at most half full: probes stay short */
  return true;
}

bool act__pidvec_del(act_pidvec_t *v, act_pid_t pid) {
  if (!v->cap || !pid) return false;
  FIND(v->v, v->cap, PID_KEY, pid);
  if (v->v[i] != pid) return false;
  v->n--;
  DELETE_AT(v->v, v->cap, PID_KEY, (act_pid_t)0);
}

static bool mon_rehash(act_monvec_t *v, uint32_t ncap) {
  act_monref_t *nv = calloc(ncap, sizeof *nv);
  if (!nv) return false;
  for (uint32_t o = 0; o < v->cap; o++) {
    if (!v->v[o].ref) continue;
    FIND(nv, ncap, MON_KEY, v->v[o].ref);
    nv[i] = v->v[o];
  }
  free(v->v);
  v->v = nv;
  v->cap = ncap;
  return true;
}

bool act__monvec_add(act_monvec_t *v, act_ref_t ref, act_pid_t pid) {
  if ((v->n + 1) * 2 > v->cap && !mon_rehash(v, v->cap ? v->cap * 2 : 4)) return false;
  FIND(v->v, v->cap, MON_KEY, ref);
  if (!v->v[i].ref) v->n++;
  v->v[i] = (act_monref_t){ref, pid};
  return true;
}

bool act__monvec_del(act_monvec_t *v, act_ref_t ref, act_pid_t *pid) {
  if (!v->cap || !ref) return false;
  FIND(v->v, v->cap, MON_KEY, ref);
  if (v->v[i].ref != ref) return false;
  if (pid) *pid = v->v[i].pid;
  v->n--;
  DELETE_AT(v->v, v->cap, MON_KEY, ((act_monref_t){0, 0}));
}

/* --------------------------------------------------------- envelopes */

/* Small envelopes are recycled through a per-scheduler-thread free list:
 * malloc and free were a third of the cost of a message between neighbours.
 * Only scheduler threads cache (they drain it when they stop), and never
 * under AddressSanitizer, which must see every use after free. */
#define ENV_SMALL 64          /* payload bytes of a recyclable envelope */
#define ENV_CACHE_MAX 4096    /* envelopes a thread keeps */
#if defined(__SANITIZE_ADDRESS__)
#define ENV_CACHE 0
#else
#define ENV_CACHE 1
#endif
static _Thread_local act_env_t *tls_env_cache;
static _Thread_local unsigned tls_env_cached;
static _Thread_local bool tls_env_caching;

void act__env_cache(bool on) {
  tls_env_caching = on && ENV_CACHE;
  while (!tls_env_caching && tls_env_cache) {
    act_env_t *e = tls_env_cache;
    tls_env_cache = e->next_private;
    free(e);
  }
  if (!tls_env_caching) tls_env_cached = 0;
}

act_env_t *act__env_new(int type, act_pid_t from, act_ref_t ref,
                        const void *data, size_t size, act_payload_free_fn fn) {
  act_env_t *e;
  if (size <= ENV_SMALL && tls_env_cache) {
    e = tls_env_cache;
    tls_env_cache = e->next_private;
    tls_env_cached--;
  } else {
    e = malloc(sizeof *e + (size <= ENV_SMALL ? ENV_SMALL : size));
    if (!e) return NULL;
  }
  e->next_private = NULL;
  e->free_fn = fn;
  e->is_reply = false;
  e->kept = false;
  e->flushed = false;
  e->msg.type = type;
  e->msg.from = from;
  e->msg.ref = ref;
  e->msg.size = size;
  e->msg.data = e->payload;
  if (size) memcpy(e->payload, data, size);
  return e;
}

void act__env_free(act_env_t *e) {
  if (e->free_fn) e->free_fn(e->payload, e->msg.size);
  if (e->msg.size <= ENV_SMALL && tls_env_caching && tls_env_cached < ENV_CACHE_MAX) {
    e->next_private = tls_env_cache;
    tls_env_cache = e;
    tls_env_cached++;
    return;
  }
  free(e);
}

act_msg_t *act_msg_keep(act_msg_t *msg) {
  act__env_of(msg)->kept = true;
  return msg;
}

void act_msg_free(act_msg_t *msg) {
  if (msg) act__env_free(act__env_of(msg));
}

/* ------------------------------------------------------------- slots */

void act__slots_init(uint32_t max) {
  g_max = max;
  g_slots = calloc(max, sizeof *g_slots); /* untouched pages cost no RSS */
  atomic_store(&g_high, 0); /* seq_cst: before any thread runs; cost is nil here */
  g_free_head = UINT32_MAX;
  atomic_store(&g_live, 0); /* seq_cst: before any thread runs */
}

void act__slots_free(void) {
  free(g_slots);
  g_slots = NULL;
  g_max = 0;
}

/* acquire: pairs with slot_alloc's release, so slots below it are initialised */
uint32_t act__slot_high_water(void) { return atomic_load_explicit(&g_high, memory_order_acquire); }
act_slot_t *act__slot_at(uint32_t idx) { return &g_slots[idx]; }

/* pid = generation (24 bits) | scheduler (8 bits) | slot index (32 bits).
 * The scheduler in the pid lets a sender on that very scheduler skip the
 * pinning: such a target can only die on the sender's own thread. */
#define PROXY_SCHED_TAG 0xFFu
static unsigned pid_sched(act_pid_t pid) { return (unsigned)(pid >> 32) & 0xFFu; }

static act_pid_t slot_alloc(unsigned sched_tag) {
  pthread_mutex_lock(&g_free_mu);
  uint32_t idx;
  if (g_free_head != UINT32_MAX) {
    idx = g_free_head;
    g_free_head = g_slots[idx].next_free;
  } else if (atomic_load_explicit(&g_high, memory_order_relaxed) < g_max) { /* under g_free_mu */
    idx = atomic_load_explicit(&g_high, memory_order_relaxed);
    atomic_store_explicit(&g_high, idx + 1, memory_order_release); /* readers of g_high see a zeroed slot */
  } else {
    pthread_mutex_unlock(&g_free_mu);
    return ACT_NOPID;
  }
  uint32_t gen = ++g_slots[idx].gen & 0xFFFFFFu;
  if (gen == 0) gen = ++g_slots[idx].gen & 0xFFFFFFu; /* 0 would allow pid 0 */
  g_slots[idx].gen = gen;
  pthread_mutex_unlock(&g_free_mu);
  return ((act_pid_t)gen << 40) | ((act_pid_t)sched_tag << 32) | idx;
}

static void slot_release(uint32_t idx) {
  pthread_mutex_lock(&g_free_mu);
  g_slots[idx].next_free = g_free_head;
  g_free_head = idx;
  pthread_mutex_unlock(&g_free_mu);
}

static act_slot_t *slot_of(act_pid_t pid) {
  uint32_t idx = (uint32_t)pid;
  if (!g_slots || idx >= atomic_load_explicit(&g_high, memory_order_acquire)) return NULL; /* as act__slot_high_water */
  return &g_slots[idx];
}

act_proc_t *act__pin(act_pid_t pid, act_slot_t **out) {
  act_slot_t *s = slot_of(pid);
  if (!s || pid == ACT_NOPID) return NULL;
  /* seq_cst, all three: Dekker with die(), which stores pid/proc and then
   * loads readers; either it sees our count or we see its unpublishing */
  atomic_fetch_add(&s->readers, 1);
  act_proc_t *p = atomic_load(&s->proc);
  if (p && atomic_load(&s->pid) == pid) {
    *out = s;
    return p;
  }
  atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release); /* our reads are done */
  return NULL;
}

/* release: our reads of the process happen before die() sees readers == 0 */
void act__unpin(act_slot_t *s) { atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release); }

/* ---------------------------------------------------------- delivery */

static bool is_signal(const act_env_t *e) { return e->msg.type <= ACT_MSG_SYSTEM_MIN; }

/* max_mailbox: the first sender that finds the box full tells the owner to
 * die; later ones drop their message.  Signals are never refused. */
static bool admit(act_proc_t *p, act_env_t *e, act_pid_t to) {
  if (!p->max_mailbox || is_signal(e)) return true;
  /* relaxed: the bound is advisory (a few messages over it are fine); the
   * exchange alone decides who sends the one overflow signal */
  if (atomic_load_explicit(&p->overflow, memory_order_relaxed)) return false;
  if (atomic_load_explicit(&p->pending, memory_order_relaxed) < p->max_mailbox) return true;
  if (!atomic_exchange_explicit(&p->overflow, true, memory_order_relaxed)) {
    act__exit_sig_t sig = {act_reason_error("mailbox_overflow"), false, true};
    act_env_t *k = act__env_new(ACT__SIG_EXIT, to, 0, &sig, sizeof sig, NULL);
    if (k) { /* seq_cst: as every pending increment, see deliver_local */
      if (atomic_fetch_add(&p->pending, 1) == 0) act__schedule(p);
      act__mpsc_push(&p->inbox, &k->node);
    }
  }
  return false;
}

/* A target on the caller's own scheduler cannot die while we push: only
 * this thread runs it.  No pin, no reader count. */
static bool deliver_local(act_pid_t to, act_env_t *e) {
  act_slot_t *s = slot_of(to);
  /* acquire: pairs with the release publishing the slot (act__spawn), so
   * the process it names is fully built even if another thread spawned it
   * (free on x86: a plain load either way) */
  if (!s || atomic_load_explicit(&s->pid, memory_order_acquire) != to) return false;
  act_proc_t *p = atomic_load_explicit(&s->proc, memory_order_acquire);
  if (!p) return false;
  if (admit(p, e, to)) {
    /* seq_cst: the turn's fetch_sub and this fetch_add decide, between
     * them, who schedules the process: exactly one sees the count leave 0 */
    size_t old = atomic_fetch_add(&p->pending, 1);
    act__mpsc_push(&p->inbox, &e->node);
    if (old == 0) act__schedule(p);
  } else {
    act__env_free(e);
  }
  return true;
}

bool act__deliver(act_pid_t to, act_env_t *e) {
  act_sched_t *me = act__sched_self();
  if (me && (unsigned)me->id == pid_sched(to) && to != ACT_NOPID) return deliver_local(to, e);
  act_slot_t *s;
  act_proc_t *p = act__pin(to, &s);
  if (!p) return false;
  if (admit(p, e, to)) {
    size_t old = atomic_fetch_add(&p->pending, 1); /* seq_cst: as deliver_local */
    act__mpsc_push(&p->inbox, &e->node);
    if (old == 0) act__schedule(p);
  } else {
    act__env_free(e); /* refused for overflow: dropped like a dead pid's */
  }
  act__unpin(s);
  return true;
}

void act__deliver_or_drop(act_pid_t to, act_env_t *e) {
  if (e && !act__deliver(to, e)) act__env_free(e);
}

int act_send_ex(act_pid_t to, int type, const void *data, size_t size,
                act_payload_free_fn free_fn) {
  if (type <= ACT_MSG_SYSTEM_MIN) return ACT_EINVAL;
  act_env_t *e = act__env_new(type, act_self(), 0, data, size, free_fn);
  if (!e) return ACT_ENOMEM;
  act__deliver_or_drop(to, e);
  return ACT_OK;
}

int act_send(act_pid_t to, int type, const void *data, size_t size) {
  return act_send_ex(to, type, data, size, NULL);
}

static void send_signal(act_pid_t to, int type, act_pid_t from, act_ref_t ref,
                        const void *data, size_t size) {
  act__deliver_or_drop(to, act__env_new(type, from, ref, data, size, NULL));
}

/* A process's own private FIFO, from its own thread.  Counted in pending so
 * that the turn's accounting stays exact. */
static void append_private(act_proc_t *p, act_env_t *e) {
  ACT_DEBUG_ASSERT(p->sched == act__sched_self()); /* the owner's FIFO, owner only */
  e->next_private = NULL;
  if (p->priv_tail) p->priv_tail->next_private = e;
  else p->priv_head = e;
  p->priv_tail = e;
}

void act__push_private(act_proc_t *p, act_env_t *e) {
  append_private(p, e);
  if (atomic_fetch_add(&p->pending, 1) == 0) act__schedule(p); /* seq_cst: as deliver_local */
}

static act_env_t *pop_private(act_proc_t *p) {
  act_env_t *e = p->priv_head;
  if (e) {
    p->priv_head = e->next_private;
    if (!p->priv_head) p->priv_tail = NULL;
  }
  return e;
}

/* -------------------------------------------------------------- self */

act_pid_t act_self(void) {
  act_proc_t *p = act__current();
  return p ? p->pid : ACT_NOPID;
}

act_proc_t *act__require_current(const char *what) {
  act_proc_t *p = act__current();
  if (!p) {
    fprintf(stderr, "act: %s called outside an actor\n", what);
    abort();
  }
  return p;
}

/* Where an exit reason goes when its 100 bytes cannot be allocated: the
 * actor still ends, with this reason, shared and never written or freed
 * (exit_reason_free). */
static act_reason_t g_oom_reason = {ACT_ERROR, "out of memory"};

void act__set_exit(act_proc_t *p, act_reason_t r) {
  if (p->exit_reason) return; /* the first reason wins */
  p->exit_reason = malloc(sizeof *p->exit_reason);
  if (!p->exit_reason) {
    p->exit_reason = &g_oom_reason;
    return;
  }
  *p->exit_reason = r;
}

static void exit_reason_free(act_proc_t *p) {
  if (p->exit_reason != &g_oom_reason) free(p->exit_reason);
  p->exit_reason = NULL;
}

void act_stop(act_reason_t reason) {
  act__set_exit(act__require_current("act_stop"), reason);
}

_Noreturn void act_crash(const char *fmt, ...) {
  act_proc_t *p = act__current();
  act_sched_t *s = act__sched_self();
  char text[ACT_REASON_TEXT];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (!p || !s || !s->crash_jb) {
    fprintf(stderr, "act_crash outside an actor: %s\n", text);
    abort();
  }
  if (p->in_terminate && p->exit_reason != &g_oom_reason)
    *p->exit_reason = act_reason_error("%s", text);
  else act__set_exit(p, act_reason_error("%s", text));
  siglongjmp(*s->crash_jb, 1); /* no signal mask: handlers do not change it */
}

/* -------------------------------------------------------------- spawn */

static void live_dec(void) {
  if (atomic_fetch_sub(&g_live, 1) == 1) { /* seq_cst: rare; kill_all reads it under g_live_mu */
    pthread_mutex_lock(&g_live_mu);
    pthread_cond_broadcast(&g_live_cv);
    pthread_mutex_unlock(&g_live_mu);
  }
}

int act__registry_add(const char *name, act_pid_t pid, act_proc_t *p);
static void drain_dead_inbox(act_proc_t *p);

/* proc_lib's init_ack: one message to whoever waits for init's answer.
 * Sent at most once (ack_to is cleared); false if its 88 bytes could not
 * be allocated (nothing sent, ack_to kept). */
static act_env_t *env_must(int type, act_pid_t from, act_ref_t ref, const void *data,
                           size_t size);
static bool send_ack(act_proc_t *p, int result) {
  act_init_ack_t a = {p->pid, result};
  act_env_t *e = result == ACT_OK /* a failure's ack is a death signal */
                     ? act__env_new(ACT_MSG_INIT_ACK, p->pid, p->ack_ref, &a, sizeof a, NULL)
                     : env_must(ACT_MSG_INIT_ACK, p->pid, p->ack_ref, &a, sizeof a);
  if (!e) return false;
  act_pid_t to = p->ack_to;
  p->ack_to = ACT_NOPID;
  act__deliver_or_drop(to, e);
  return true;
}

void act__init_ack_later(void) { act__require_current("act__init_ack_later")->ack_deferred = true; }

void act__init_ack(act_proc_t *p, int result) {
  if (!p->ack_to) return;
  if (result == ACT_OK && send_ack(p, ACT_OK)) return;
  /* A failure is sent by die(), once the name is free.  An ok that cannot
   * be sent fails the start: the actor ends, its starter is told (by the
   * ack die() sends, or by its EXIT) and nobody waits for ever. */
  if (result == ACT_OK) {
    result = ACT_ENOMEM;
    act__set_exit(p, act_reason_error("out of memory: init_ack"));
  }
  p->ack_result = result;
}

/* An outside thread's blocking start: wait for the ack on a proxy. */
static int await_ack(act_proc_t *x, act_ref_t ref) {
  for (;;) {
    act_env_t *e = act__proxy_wait(x, -1);
    if (!e) continue;
    int rc = ACT_EEXITED;
    bool mine = e->msg.type == ACT_MSG_INIT_ACK && e->msg.ref == ref;
    if (mine) rc = ((act_init_ack_t *)e->msg.data)->result;
    act__env_free(e);
    if (mine) return rc;
  }
}

/* A spawn that failed after recording its link or monitor: forget both. */
static void unspawn_links(act_proc_t *caller, act_proc_t *p, bool link, act_ref_t mref) {
  if (link) act__pidvec_del(&caller->links, p->pid);
  if (mref) act__monvec_del(&caller->monitors_out, mref, NULL);
  free(p->links.v);
  free(p->monitors_in.v);
}

act_pid_t act__spawn(const act_behaviour_t *b, void *args,
                     const act_spawn_opts_t *opts, uint32_t restarts, int *err) {
  int dummy;
  if (!err) err = &dummy;
  *err = ACT_OK;
  if (!act__running()) return *err = ACT_ESTATE, ACT_NOPID;
  if (!b || !b->handle) return *err = ACT_EINVAL, ACT_NOPID;
  act_proc_t *caller = act__current();
  if (caller && caller->is_proxy) caller = NULL;
  bool link = opts && opts->link, monitor = opts && opts->monitor;
  if (!caller && (link || monitor)) return *err = ACT_EINVAL, ACT_NOPID;
  /* Blocking is for threads outside the runtime only: a scheduler thread
   * (an actor, or a libuv callback) waiting for an init that its own loop
   * must run would wait for ever. */
  act_proc_t *waiter = NULL;
  if (!caller && !act__sched_self() && !(waiter = act__proxy_new()))
    return *err = ACT_ENOMEM, ACT_NOPID;

  act_proc_t *p = calloc(1, sizeof *p);
  act_sched_t *sched = act__sched_for(opts ? opts->scheduler : ACT_SCHED_CALLER, caller);
  act_pid_t pid = p ? slot_alloc((unsigned)sched->id) : ACT_NOPID;
  if (!pid) {
    free(p);
    if (waiter) act__proxy_free(waiter);
    return *err = ACT_ENOMEM, ACT_NOPID;
  }
  p->pid = pid;
  p->b = b;
  p->args = args;
  p->sched = sched;
  p->parent = caller ? caller->pid : ACT_NOPID;
  p->max_mailbox = opts ? opts->max_mailbox : 0;
  p->budget = opts && opts->budget > 0 ? opts->budget : ACT_DEFAULT_BUDGET;
  atomic_store_explicit(&p->restarts, restarts, memory_order_relaxed); /* published with the slot */
  act__mpsc_init(&p->inbox);
  /* The link and monitor are recorded before anyone can see the process,
   * so that out of memory here undoes them and nothing was spawned. */
  act_ref_t mref = 0;
  bool ok = !link || (act__pidvec_add(&p->links, caller->pid) &&
                      act__pidvec_add(&caller->links, pid));
  if (ok && monitor) {
    mref = act_make_ref();
    ok = act__monvec_add(&p->monitors_in, mref, caller->pid) &&
         act__monvec_add(&caller->monitors_out, mref, pid);
  }
  if (!ok) {
    unspawn_links(caller, p, link, mref);
    slot_release((uint32_t)pid);
    free(p);
    if (waiter) act__proxy_free(waiter);
    return *err = ACT_ENOMEM, ACT_NOPID;
  }
  /* init counts as the first pending item: set before anyone can see the
   * process, so that no sender schedules it a second time. */
  atomic_store_explicit(&p->pending, 1, memory_order_relaxed); /* published with the slot */
  act_slot_t *s = slot_of(pid);
  /* Publish the slot first, then the name: whoever finds the name can send
   * (the other order dropped a send made in between).  seq_cst (a release
   * at least): everything above is visible to whoever reads the slot;
   * seq_cst as the other half of pin's Dekker. */
  atomic_store(&s->proc, p);
  atomic_store(&s->pid, pid);
  if (opts && opts->name && act__registry_add(opts->name, pid, p) != ACT_OK) {
    /* Nobody was given the pid, but act_list may have seen it: unpublish
     * as die() does and answer what came meanwhile. */
    atomic_store(&s->pid, ACT_NOPID); /* seq_cst: Dekker with act__pin */
    atomic_store(&s->proc, NULL);
    while (atomic_load(&s->readers)) sched_yield();
    drain_dead_inbox(p);
    unspawn_links(caller, p, link, mref);
    slot_release((uint32_t)pid);
    free(p);
    if (waiter) act__proxy_free(waiter);
    return *err = ACT_EEXIST, ACT_NOPID;
  }
  if (waiter || (caller && opts && opts->ack)) {
    p->ack_to = waiter ? waiter->pid : caller->pid;
    p->ack_ref = act_make_ref();
    if (!waiter && opts->ack_ref) *opts->ack_ref = p->ack_ref;
  }
  if (monitor && opts->monitor_ref) *opts->monitor_ref = mref;
  atomic_fetch_add(&g_live, 1); /* seq_cst: once per spawn, against kill_all's loop */
  act_ref_t ack_ref = p->ack_ref; /* p may be gone once scheduled */
  act__schedule(p);
  if (waiter) {
    int rc = await_ack(waiter, ack_ref);
    act__proxy_free(waiter);
    if (rc != ACT_OK) return *err = rc, ACT_NOPID;
  }
  return pid;
}

act_pid_t act_spawn(const act_behaviour_t *b, void *args,
                    const act_spawn_opts_t *opts, int *err) {
  return act__spawn(b, args, opts, 0, err);
}

act_pid_t act_spawn_link(const act_behaviour_t *b, void *args) {
  act_spawn_opts_t o = {.link = true, .scheduler = ACT_SCHED_CALLER};
  return act__spawn(b, args, &o, 0, NULL);
}

act_pid_t act_spawn_monitor(const act_behaviour_t *b, void *args, act_ref_t *mref) {
  act_spawn_opts_t o = {.monitor = true, .monitor_ref = mref, .scheduler = ACT_SCHED_CALLER};
  return act__spawn(b, args, &o, 0, NULL);
}

/* ------------------------------------------------------ links, monitors */

static void local_exit_signal(act_proc_t *p, act_pid_t from, act_reason_t r);

int act_link(act_pid_t pid) {
  act_proc_t *p = act__require_current("act_link");
  if (pid == p->pid || act__pidvec_has(&p->links, pid)) return ACT_OK;
  act_env_t *e = act__env_new(ACT__SIG_LINK, p->pid, 0, NULL, 0, NULL);
  if (!e) return ACT_ENOMEM;
  if (!act__pidvec_add(&p->links, pid)) {
    act__env_free(e);
    return ACT_ENOMEM;
  }
  if (!act__deliver(pid, e)) {
    /* noproc through our own inbox, behind whatever pid sent us before it
     * died (OTP keeps per-pair order); the link goes when it arrives */
    act__env_free(e);
    act__exit_sig_t sig = {act_reason(ACT_NOPROC), true, false};
    send_signal(p->pid, ACT__SIG_EXIT, pid, 0, &sig, sizeof sig);
    return ACT_ENOPROC;
  }
  return ACT_OK;
}

int act_unlink(act_pid_t pid) {
  act_proc_t *p = act__require_current("act_unlink");
  if (act__pidvec_del(&p->links, pid)) send_signal(pid, ACT__SIG_UNLINK, p->pid, 0, NULL, 0);
  return ACT_OK;
}

bool act_trap_exit(bool on) {
  act_proc_t *p = act__require_current("act_trap_exit");
  bool old = p->trap_exit;
  p->trap_exit = on;
  return old;
}

bool act_parent_exit_as_message(bool on) {
  act_proc_t *p = act__require_current("act_parent_exit_as_message");
  bool old = p->parent_exit_as_msg;
  p->parent_exit_as_msg = on;
  return old;
}

/* Death signals (an EXIT through a link, a DOWN, a trapped EXIT made a
 * message, a failed start's ack) must not be lost: whoever waits for one
 * would wait for ever (a supervisor for its child's end, a caller for its
 * callee's).  Their envelope is tried again every 1 ms for up to
 * ACT__SIGNAL_RETRY_MS, which stalls this scheduler meanwhile, before the
 * signal is given up, with a line on stderr. */
#define ACT__SIGNAL_RETRY_MS 1000
static void nap_1ms(void) {
  struct timespec ts = {0, 1000000L};
  nanosleep(&ts, NULL);
}

static act_env_t *env_must(int type, act_pid_t from, act_ref_t ref, const void *data,
                           size_t size) {
  for (int tries = 0;; tries++) {
    act_env_t *e = act__env_new(type, from, ref, data, size, NULL);
    if (e) return e;
    if (tries == ACT__SIGNAL_RETRY_MS) {
      fprintf(stderr, "act: out of memory: signal %d from %#llx lost\n", type,
              (unsigned long long)from);
      return NULL;
    }
    nap_1ms();
  }
}

static act_env_t *down_env(act_ref_t ref, act_pid_t pid, act_reason_t r, int type) {
  act_down_msg_t d = {ref, pid, r};
  return env_must(type, pid, ref, &d, sizeof d);
}

act_ref_t act_monitor(act_pid_t pid) {
  act_proc_t *p = act__require_current("act_monitor");
  act_ref_t ref = act_make_ref();
  act_env_t *e = act__env_new(ACT__SIG_MONITOR, p->pid, ref, NULL, 0, NULL);
  if (!e) return 0;
  if (!act__monvec_add(&p->monitors_out, ref, pid)) { /* its DOWN would be dropped */
    act__env_free(e);
    return 0;
  }
  if (!act__deliver(pid, e)) { /* as act_link: behind pid's earlier messages */
    act__env_free(e);
    act__deliver_or_drop(p->pid, down_env(ref, pid, act_reason(ACT_NOPROC), ACT__SIG_DOWN));
  }
  return ref;
}

act_ref_t act_monitor_name(const char *name) {
  return act_monitor(name ? act_whereis(name) : ACT_NOPID);
}

int act_send_name(const char *name, int type, const void *data, size_t size) {
  act_pid_t to = name ? act_whereis(name) : ACT_NOPID;
  if (!to) return ACT_ENOPROC;
  return act_send(to, type, data, size);
}

act_ref_t act_process_info_async(act_pid_t pid, int timeout_ms) {
  return act_request(pid, ACT__SIG_INFO, NULL, 0, timeout_ms);
}

int act_process_info(act_pid_t pid, act_process_info_t *out, int timeout_ms) {
  act_msg_t *r;
  int rc = act_call(pid, ACT__SIG_INFO, NULL, 0, &r, timeout_ms);
  if (rc != ACT_OK) return rc;
  if (r->type == ACT_MSG_PROCESS_INFO && r->size == sizeof *out) memcpy(out, r->data, sizeof *out);
  else rc = ACT_ENOPROC;
  act_msg_free(r);
  return rc;
}

bool act_demonitor(act_ref_t ref) {
  act_proc_t *p = act__require_current("act_demonitor");
  act_pid_t target;
  bool active = act__monvec_del(&p->monitors_out, ref, &target);
  if (active) send_signal(target, ACT__SIG_DEMONITOR, p->pid, ref, NULL, 0);
  /* flush: a DOWN already turned into a message is skipped, not handled */
  for (act_env_t *e = p->priv_head; e; e = e->next_private)
    if (e->msg.type == ACT_MSG_DOWN && e->msg.ref == ref) e->flushed = true;
  return active;
}

int act_exit(act_pid_t pid, act_reason_t reason) {
  act__exit_sig_t sig = {reason, false, reason.kind == ACT_KILL};
  if (sig.forced) sig.reason = act_reason(ACT_KILLED);
  act_env_t *e = act__env_new(ACT__SIG_EXIT, act_self(), 0, &sig, sizeof sig, NULL);
  if (!e) return ACT_ENOMEM;
  if (!act__deliver(pid, e)) {
    act__env_free(e);
    return ACT_ENOPROC;
  }
  return ACT_OK;
}

/* An exit signal from `from` that reached p: OTP's receiving rules. */
static void local_exit_signal(act_proc_t *p, act_pid_t from, act_reason_t r) {
  /* The parent-EXIT rule of gen_server: a trapping child told to exit by
   * its parent (the supervisor's `shutdown`) runs terminate with that
   * reason at once instead of getting a message it might ignore.  A
   * supervisor opts out: it stops its own children first. */
  if (p->trap_exit && from == p->parent && from != ACT_NOPID && !p->parent_exit_as_msg) {
    act__set_exit(p, r);
    return;
  }
  if (p->trap_exit) {
    act_exit_msg_t m = {from, r};
    act_env_t *e = env_must(ACT_MSG_EXIT, from, 0, &m, sizeof m);
    if (e) act__push_private(p, e);
  } else if (r.kind != ACT_NORMAL || from == p->pid) {
    act__set_exit(p, r);
  }
}

/* ------------------------------------------------------ signals in a turn */

static bool request_done(act_proc_t *p, act_ref_t ref);
static void fill_info(act_proc_t *p, act_info_t *o);

/* process_info, answered by the process itself between turns. */
static void answer_info(act_proc_t *p, act_msg_t *m) {
  act_process_info_t *pi = calloc(1, sizeof *pi);
  if (!pi) return; /* the asker times out; nothing is lost here */
  fill_info(p, &pi->info);
  act__registry_name_of(p->pid, pi->info.name, sizeof pi->info.name);
  pi->trap_exit = p->trap_exit;
  pi->supervisor = p->parent;
  pi->is_supervisor = p->is_supervisor;
  pi->sup_flags = p->sup_flags;
  for (uint32_t i = 0; i < p->links.cap; i++)
    if (p->links.v[i] && pi->nlinks++ < ACT_INFO_LIST_MAX) pi->links[pi->nlinks - 1] = p->links.v[i];
  for (uint32_t i = 0; i < p->monitors_out.cap; i++)
    if (p->monitors_out.v[i].ref && pi->nmonitors++ < ACT_INFO_LIST_MAX)
      pi->monitors[pi->nmonitors - 1] = p->monitors_out.v[i].pid;
  for (uint32_t i = 0; i < p->monitors_in.cap; i++)
    if (p->monitors_in.v[i].ref && pi->nmonitored_by++ < ACT_INFO_LIST_MAX)
      pi->monitored_by[pi->nmonitored_by - 1] = p->monitors_in.v[i].pid;
  act_env_t *r = act__env_new(ACT_MSG_PROCESS_INFO, p->pid, m->ref, pi, sizeof *pi, NULL);
  free(pi);
  if (!r) return;
  r->is_reply = true;
  act__deliver_or_drop(m->from, r);
}

/* Returns true if e was consumed (freed or absorbed), false if it became a
 * message in the private FIFO. */
static bool accept_envelope(act_proc_t *p, act_env_t *e) {
  act_msg_t *m = &e->msg;
  switch (m->type) {
  case ACT__SIG_EXIT: {
    act__exit_sig_t *sig = m->data;
    if (sig->forced) act__set_exit(p, sig->reason);
    else if (!sig->linked || act__pidvec_del(&p->links, m->from))
      local_exit_signal(p, m->from, sig->reason); /* a trapped EXIT is counted there */
    act__env_free(e);
    return true;
  }
  case ACT__SIG_LINK: /* recorded, or its EXIT would never be sent: retried as env_must */
    for (int t = 0; !act__pidvec_add(&p->links, m->from) && t < ACT__SIGNAL_RETRY_MS; t++)
      nap_1ms();
    act__env_free(e);
    return true;
  case ACT__SIG_UNLINK:
    act__pidvec_del(&p->links, m->from);
    act__env_free(e);
    return true;
  case ACT__SIG_MONITOR: /* as LINK: an unrecorded monitor never gets its DOWN */
    for (int t = 0; !act__monvec_add(&p->monitors_in, m->ref, m->from) &&
                    t < ACT__SIGNAL_RETRY_MS; t++)
      nap_1ms();
    act__env_free(e);
    return true;
  case ACT__SIG_DEMONITOR:
    act__monvec_del(&p->monitors_in, m->ref, NULL);
    act__env_free(e);
    return true;
  case ACT__SIG_DOWN:
    if (act__monvec_del(&p->monitors_out, m->ref, NULL)) {
      m->type = ACT_MSG_DOWN;
      append_private(p, e);
      return false;
    }
    if (request_done(p, m->ref)) { /* the callee is gone: the call fails now */
      m->type = ACT_MSG_TIMEOUT;
      append_private(p, e);
      return false;
    }
    act__env_free(e);
    return true;
  case ACT__SIG_INFO:
    answer_info(p, m);
    act__env_free(e);
    return true;
  case ACT__SIG_TIMEOUT:
    if (request_done(p, m->ref)) {
      m->type = ACT_MSG_TIMEOUT;
      append_private(p, e);
      return false;
    }
    act__env_free(e);
    return true;
  default:
    if (e->is_reply && m->ref && !request_done(p, m->ref)) {
      act__env_free(e); /* a reply nobody waits for any more */
      return true;
    }
    append_private(p, e);
    return false;
  }
}

/* --------------------------------------------------------------- death */

static void drain_dead_inbox(act_proc_t *p) {
  act_env_t *e;
  while ((e = pop_private(p))) act__env_free(e);
  act_node_t *n;
  while ((n = act__mpsc_pop(&p->inbox))) {
    e = (act_env_t *)((char *)n - offsetof(act_env_t, node));
    if (e->msg.type == ACT__SIG_LINK) {
      act__exit_sig_t sig = {act_reason(ACT_NOPROC), true, false};
      act__deliver_or_drop(e->msg.from, env_must(ACT__SIG_EXIT, p->pid, 0, &sig, sizeof sig));
    } else if (e->msg.type == ACT__SIG_MONITOR) {
      act__deliver_or_drop(e->msg.from, down_env(e->msg.ref, p->pid,
                                                 act_reason(ACT_NOPROC), ACT__SIG_DOWN));
    }
    act__env_free(e);
  }
}

static void notify_links_and_monitors(act_proc_t *p, act_reason_t r) {
  act__exit_sig_t sig = {r, true, false};
  /* the sets are hash tables: walk them, skipping empty entries */
  for (uint32_t i = 0; i < p->links.cap; i++)
    if (p->links.v[i])
      act__deliver_or_drop(p->links.v[i], env_must(ACT__SIG_EXIT, p->pid, 0, &sig, sizeof sig));
  for (uint32_t i = 0; i < p->monitors_in.cap; i++)
    if (p->monitors_in.v[i].ref)
      act__deliver_or_drop(p->monitors_in.v[i].pid,
                           down_env(p->monitors_in.v[i].ref, p->pid, r, ACT__SIG_DOWN));
  for (uint32_t i = 0; i < p->monitors_out.cap; i++)
    if (p->monitors_out.v[i].ref)
      send_signal(p->monitors_out.v[i].pid, ACT__SIG_DEMONITOR, p->pid,
                  p->monitors_out.v[i].ref, NULL, 0);
  for (uint32_t i = 0; i < p->callees.cap; i++) /* requests in flight */
    if (p->callees.v[i].ref)
      send_signal(p->callees.v[i].pid, ACT__SIG_DEMONITOR, p->pid, p->callees.v[i].ref, NULL, 0);
}

/* A crash inside terminate becomes the exit reason (act_crash overwrites
 * it while in_terminate), as OTP's terminate raising does. */
static void run_terminate(act_proc_t *p, act_reason_t r) {
  if (!p->initialised || !p->b->terminate) return;
  sigjmp_buf jb;
  act_sched_t *s = p->sched;
  sigjmp_buf *saved = s->crash_jb;
  s->crash_jb = &jb;
  p->in_terminate = true;
  if (sigsetjmp(jb, 0) == 0) p->b->terminate(p->state, r);
  p->in_terminate = false;
  s->crash_jb = saved;
}

/* The order is OTP's: terminate, release what it owned, free the name,
 * then EXIT and DOWN (so that a watcher may re-register the name at once). */
static void die(act_proc_t *p) {
  ACT_DEBUG_ASSERT(p->exit_reason && p->sched == act__sched_self());
  act_reason_t r = *p->exit_reason;
  act_sched_t *s = p->sched;
  s->current = p;
  if (p->current) {
    act_env_t *cur = act__env_of(p->current);
    p->current = NULL;
    if (!cur->kept) act__env_free(cur);
  }
  run_terminate(p, r);
  r = *p->exit_reason;
  act__owned_release_all(p);
  act_slot_t *slot = slot_of(p->pid);
  /* The name goes before the slot: once the pid is seen dead (a monitor
   * answers noproc) its name is free, as in OTP.  acquire: pairs with
   * registry.c's release of has_name. */
  if (atomic_load_explicit(&p->has_name, memory_order_acquire)) act__registry_drop_pid(p->pid);
  /* seq_cst: Dekker with act__pin (stores, then the load of readers) */
  atomic_store(&slot->pid, ACT_NOPID);
  atomic_store(&slot->proc, NULL);
  while (atomic_load(&slot->readers)) sched_yield();
  /* again: an act_register racing with the first drop saw the slot still
   * published; it set has_name before its check (registry.c) */
  if (atomic_load_explicit(&p->has_name, memory_order_acquire)) act__registry_drop_pid(p->pid);
  /* A start still waiting hears of the failure before the EXIT, and after
   * the name is free, so that it may start the child again at once. */
  if (p->ack_to) (void)send_ack(p, p->ack_result ? p->ack_result : ACT_EEXITED);
  notify_links_and_monitors(p, r);
  drain_dead_inbox(p);
  s->current = NULL;
  free(p->links.v);
  free(p->monitors_in.v);
  free(p->monitors_out.v);
  free(p->requests.v);
  free(p->callees.v);
  exit_reason_free(p);
  slot_release((uint32_t)p->pid);
  free(p);
  live_dec();
}

/* ---------------------------------------------------------------- turn */

static void run_init(act_proc_t *p) {
  int rc = p->b->init ? p->b->init(p->args, &p->state) : 0;
  if (rc < 0) {
    act__set_exit(p, act_reason_error("init failed (%d)", rc));
    p->ack_result = rc;
  } else {
    p->initialised = true;
  }
}

/* The first turn runs init before the inbox is even looked at: no signal
 * sent during the start can act before init did (OTP's proc_lib start). */
static void guarded_init(act_proc_t *p) {
  sigjmp_buf jb;
  act_sched_t *s = p->sched;
  p->started = true;
  s->crash_jb = &jb;
  if (sigsetjmp(jb, 0) == 0) run_init(p);
  s->crash_jb = NULL;
  /* act_stop in init fails the start too: die() acks ACT_EEXITED */
  if (p->initialised && !p->ack_deferred && !p->exit_reason) act__init_ack(p, ACT_OK);
}

static size_t run_handlers(act_proc_t *p) {
  size_t done = 0;
  for (int i = 0; i < p->budget && !p->exit_reason; i++) {
    act_env_t *e = pop_private(p);
    if (!e) break;
    done++;
    if (!e->flushed) {
      p->current = &e->msg;
      p->b->handle(p->state, &e->msg);
      atomic_fetch_add_explicit(&p->handled, 1, memory_order_relaxed); /* a statistic */
      p->current = NULL;
    }
    if (!e->kept) act__env_free(e);
  }
  return done;
}

/* Signals are acted upon as they are moved; returns how many were consumed. */
static size_t move_inbox(act_proc_t *p) {
  size_t consumed = 0;
  for (int i = 0; i < MOVE_MAX && !p->exit_reason; i++) {
    act_node_t *n = act__mpsc_pop(&p->inbox);
    if (!n) break;
    act_env_t *e = (act_env_t *)((char *)n - offsetof(act_env_t, node));
    if (accept_envelope(p, e)) consumed++;
  }
  return consumed;
}

/* act_crash longjmps here; the process then dies, so what was counted no
 * longer matters. */
static size_t guarded_handlers(act_proc_t *p) {
  sigjmp_buf jb;
  act_sched_t *s = p->sched;
  s->crash_jb = &jb;
  if (sigsetjmp(jb, 0) != 0) {
    s->crash_jb = NULL;
    return 0;
  }
  size_t n = p->exit_reason ? 0 : run_handlers(p);
  s->crash_jb = NULL;
  return n;
}

void act__turn(act_proc_t *p) {
  act_sched_t *s = p->sched;
  ACT_DEBUG_ASSERT(s == act__sched_self() && !s->current && !p->is_proxy);
  s->current = p;
  size_t consumed = 0;
  if (!p->started) { /* init counts as the first pending item */
    guarded_init(p);
    consumed = 1;
  }
  if (!p->exit_reason) consumed += move_inbox(p);
  consumed += guarded_handlers(p);
  if (p->exit_reason) {
    die(p);
    return;
  }
  s->current = NULL;
  size_t before = atomic_fetch_sub(&p->pending, consumed); /* seq_cst: as deliver_local */
  ACT_DEBUG_ASSERT(before >= consumed); /* never consumed what was not counted */
  size_t left = before - consumed;
  if (left > 0) act__schedule(p);
}

/* ---------------------------------------------------------- run_as */

int act_run_as(act_pid_t pid, void (*fn)(void *arg), void *arg) {
  act_sched_t *s = act__sched_self();
  act_slot_t *slot;
  act_proc_t *p = act__pin(pid, &slot);
  if (!p) return ACT_ENOPROC;
  bool here = s && p->sched == s; /* read while pinned: elsewhere p may die now */
  act__unpin(slot); /* on this thread it can only die on this very thread */
  if (!here) return ACT_ENOPROC; /* not this thread's to run */
  act_proc_t *saved = s->current;
  sigjmp_buf *saved_jb = s->crash_jb;
  sigjmp_buf jb;
  s->current = p;
  s->crash_jb = &jb;
  if (sigsetjmp(jb, 0) == 0) fn(arg);
  s->crash_jb = saved_jb;
  s->current = saved;
  if (p->exit_reason) { /* end it in its own turn, untrappably */
    act__exit_sig_t sig = {*p->exit_reason, false, true};
    act_env_t *e = act__env_new(ACT__SIG_EXIT, pid, 0, &sig, sizeof sig, NULL);
    if (e) {
      exit_reason_free(p);
      act__deliver_or_drop(pid, e);
    } /* else the reason stays set, and the actor's next turn ends it */
  }
  return ACT_OK;
}

/* ----------------------------------------------------- request/reply */

/* A request ends (reply, timeout or the callee's DOWN): stop its timer and
 * its monitor of the callee.  The DOWN of a callee that died meanwhile may
 * still come; with no monitor or request left for its ref, it is dropped. */
static bool request_done(act_proc_t *p, act_ref_t ref) {
  act_pid_t tref, callee;
  if (!act__monvec_del(&p->requests, ref, &tref)) return false;
  if (tref) act_cancel_timer(tref);
  if (act__monvec_del(&p->callees, ref, &callee))
    send_signal(callee, ACT__SIG_DEMONITOR, p->pid, ref, NULL, 0);
  return true;
}

act_ref_t act__timer_signal(act_proc_t *p, uint64_t ms, int type, act_ref_t ref);

act_ref_t act_request(act_pid_t to, int type, const void *data, size_t size,
                      int timeout_ms) {
  act_proc_t *p = act__require_current("act_request");
  act_ref_t ref = act_make_ref();
  /* Out of memory anywhere below: undo, send nothing, return 0 (a request
   * half made could wait for ever: no timer, or no DOWN). */
  act_env_t *e = act__env_new(type, p->pid, ref, data, size, NULL);
  act_env_t *mon = e ? act__env_new(ACT__SIG_MONITOR, p->pid, ref, NULL, 0, NULL) : NULL;
  act_ref_t tref = 0;
  if (mon && timeout_ms >= 0 &&
      !(tref = act__timer_signal(p, (uint64_t)timeout_ms, ACT__SIG_TIMEOUT, ref)))
    goto fail;
  if (!mon || !act__monvec_add(&p->requests, ref, tref)) goto fail;
  /* gen_server:call monitors the callee: a dead one fails the call at once
   * with noproc, one that dies before replying with its reason.  Cost: a
   * monitor and a demonitor signal per request.  Recorded before it is
   * sent, as undoing a record needs no memory. */
  if (!act__monvec_add(&p->callees, ref, to)) {
    act__monvec_del(&p->requests, ref, NULL);
    goto fail;
  }
  if (!act__deliver(to, mon)) {
    act__monvec_del(&p->callees, ref, NULL);
    act__env_free(mon);
    mon = down_env(ref, to, act_reason(ACT_NOPROC), ACT__SIG_DOWN);
    if (!mon) {
      act__monvec_del(&p->requests, ref, NULL);
      goto fail;
    }
    act__deliver_or_drop(p->pid, mon);
  }
  act__deliver_or_drop(to, e);
  return ref;
fail:
  if (tref) act_cancel_timer(tref);
  if (mon) act__env_free(mon);
  if (e) act__env_free(e);
  return 0;
}

int act_reply(const act_msg_t *req, int type, const void *data, size_t size) {
  return act_reply_ex(req, type, data, size, NULL);
}

int act_reply_ex(const act_msg_t *req, int type, const void *data, size_t size,
                 act_payload_free_fn free_fn) {
  /* A reply is awaited as a death signal is (env_must): retried for up
   * to ACT__SIGNAL_RETRY_MS before ACT_ENOMEM, since its caller would
   * otherwise wait for its whole timeout. */
  act_env_t *e = act__env_new(type, act_self(), req->ref, data, size, free_fn);
  for (int t = 0; !e && t < ACT__SIGNAL_RETRY_MS; t++) {
    nap_1ms();
    e = act__env_new(type, act_self(), req->ref, data, size, free_fn);
  }
  if (!e) return ACT_ENOMEM;
  e->is_reply = true;
  act__deliver_or_drop(req->from, e);
  return ACT_OK;
}

/* ------------------------------------------------------- introspection */

static void fill_info(act_proc_t *p, act_info_t *o) {
  memset(o, 0, sizeof *o);
  o->pid = p->pid;
  snprintf(o->behaviour, sizeof o->behaviour, "%s", p->b && p->b->name ? p->b->name : "");
  o->parent = p->parent;
  /* relaxed: statistics, read while the owner runs; a snapshot, not a fact */
  o->mailbox_len = atomic_load_explicit(&p->pending, memory_order_relaxed);
  o->messages = atomic_load_explicit(&p->handled, memory_order_relaxed);
  o->restarts = atomic_load_explicit(&p->restarts, memory_order_relaxed);
  o->scheduler = p->sched ? p->sched->id : -1;
}

int act_info_of(act_pid_t pid, act_info_t *out) {
  act_slot_t *s;
  act_proc_t *p = act__pin(pid, &s);
  if (!p || p->is_proxy) {
    if (p) act__unpin(s);
    return ACT_ENOPROC;
  }
  fill_info(p, out);
  act__unpin(s);
  act__registry_name_of(pid, out->name, sizeof out->name);
  return ACT_OK;
}

size_t act_list(act_info_t *out, size_t max) {
  size_t n = 0;
  uint32_t high = act__slot_high_water();
  for (uint32_t i = 0; i < high; i++) {
    act_pid_t pid = atomic_load_explicit(&g_slots[i].pid, memory_order_relaxed); /* a hint: pin checks */
    if (!pid) continue;
    act_slot_t *s;
    act_proc_t *p = act__pin(pid, &s);
    if (!p) continue;
    if (!p->is_proxy) {
      if (n < max) {
        fill_info(p, &out[n]);
        out[n].name[0] = atomic_load(&p->has_name); /* 1: look it up below */
      }
      n++;
    }
    act__unpin(s);
  }
  /* Only named actors pay for the registry's lock (each lookup scans it). */
  for (size_t i = 0; i < n && i < max; i++)
    if (out[i].name[0]) act__registry_name_of(out[i].pid, out[i].name, sizeof out[i].name);
  return n;
}

/* ----------------------------------------------------- system stop */

void act__kill_all(void) {
  for (int round = 0; round < 200 && atomic_load(&g_live) > 0; round++) { /* seq_cst: rare */
    uint32_t high = act__slot_high_water();
    for (uint32_t i = 0; i < high; i++) {
      act_pid_t pid = atomic_load_explicit(&g_slots[i].pid, memory_order_relaxed); /* a hint: pin checks */
      act_slot_t *s;
      act_proc_t *p = pid ? act__pin(pid, &s) : NULL;
      if (!p) continue;
      bool proxy = p->is_proxy;
      act__unpin(s);
      if (!proxy) act_exit(pid, act_reason(ACT_KILL));
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&g_live_mu);
    if (atomic_load(&g_live) > 0) pthread_cond_timedwait(&g_live_cv, &g_live_mu, &ts); /* seq_cst: rare */
    pthread_mutex_unlock(&g_live_mu);
  }
}

/* ---------------------------------------------------------- proxies */

act_proc_t *act__proxy_new(void) {
  act_proc_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->proxy_mu = malloc(sizeof *p->proxy_mu);
  p->proxy_cv = malloc(sizeof *p->proxy_cv);
  act_pid_t pid = slot_alloc(PROXY_SCHED_TAG);
  if (!pid || !p->proxy_mu || !p->proxy_cv) {
    if (pid) slot_release((uint32_t)pid);
    free(p->proxy_mu);
    free(p->proxy_cv);
    free(p);
    return NULL;
  }
  pthread_mutex_init(p->proxy_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(p->proxy_cv, &ca);
  pthread_condattr_destroy(&ca);
  p->is_proxy = true;
  p->pid = pid;
  act__mpsc_init(&p->inbox);
  act_slot_t *s = slot_of(pid);
  atomic_store(&s->proc, p); /* seq_cst: as act__spawn's publication */
  atomic_store(&s->pid, pid);
  return p;
}

/* Next envelope for the proxy's thread, or NULL after timeout_ms. */
act_env_t *act__proxy_wait(act_proc_t *p, int timeout_ms) {
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  if (timeout_ms >= 0) {
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(p->proxy_mu);
  for (;;) {
    if (atomic_load(&p->pending) > 0) { /* seq_cst: as deliver_local; under proxy_mu too */
      act_node_t *n = act__mpsc_pop(&p->inbox);
      if (n) {
        atomic_fetch_sub(&p->pending, 1); /* seq_cst: as deliver_local */
        pthread_mutex_unlock(p->proxy_mu);
        return (act_env_t *)((char *)n - offsetof(act_env_t, node));
      }
      /* a push is half done: its sender will signal once it has pushed */
      pthread_mutex_unlock(p->proxy_mu);
      sched_yield();
      pthread_mutex_lock(p->proxy_mu);
      continue;
    }
    int rc = timeout_ms < 0 ? pthread_cond_wait(p->proxy_cv, p->proxy_mu)
                            : pthread_cond_timedwait(p->proxy_cv, p->proxy_mu, &dl);
    if (rc != 0 && atomic_load(&p->pending) == 0) { /* seq_cst: as above */
      pthread_mutex_unlock(p->proxy_mu);
      return NULL;
    }
  }
}

void act__proxy_free(act_proc_t *p) {
  act_slot_t *s = slot_of(p->pid);
  atomic_store(&s->pid, ACT_NOPID); /* seq_cst: Dekker with act__pin, as in die() */
  atomic_store(&s->proc, NULL);
  while (atomic_load(&s->readers)) sched_yield();
  for (uint32_t i = 0; i < p->monitors_out.cap; i++)
    if (p->monitors_out.v[i].ref)
      send_signal(p->monitors_out.v[i].pid, ACT__SIG_DEMONITOR, p->pid,
                  p->monitors_out.v[i].ref, NULL, 0);
  act_node_t *n;
  while ((n = act__mpsc_pop(&p->inbox)))
    act__env_free((act_env_t *)((char *)n - offsetof(act_env_t, node)));
  free(p->monitors_out.v);
  pthread_mutex_destroy(p->proxy_mu);
  pthread_cond_destroy(p->proxy_cv);
  free(p->proxy_mu);
  free(p->proxy_cv);
  slot_release((uint32_t)p->pid);
  free(p);
}
