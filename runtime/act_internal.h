/*
 * act_internal.h -- what the runtime's .c files share and nobody else sees.
 *
 * The picture: a fixed table of slots (pid -> process), one scheduler thread
 * per core each with a libuv loop and a run queue, and per process an inbound
 * lock-free MPSC queue (mailbox.c) that any thread pushes envelopes into.
 * Envelopes carry either a user message or a signal (link, monitor, exit...);
 * the owning scheduler turns signals into state changes or messages in arrival
 * order, so OTP's per-pair ordering guarantee holds.
 */
#ifndef ACT_INTERNAL_H
#define ACT_INTERNAL_H

#include "act.h"
#include "act_debug.h"
#include "queue.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* ACT_DEBUG_ASSERT: act_debug.h (public: the app asserts its own invariants) */

/* ------------------------------------------------------------ mailbox.c */

typedef struct act_node {
  _Atomic(struct act_node *) next;
} act_node_t;

/* Dmitry Vyukov's intrusive MPSC queue: push is one exchange; pop is for the
 * single consumer and may report empty while a push is half done (the
 * pending counter of the process tells the scheduler to come back). */
typedef struct act_mpsc {
  _Atomic(act_node_t *) head; /* last pushed; producers swap it */
  act_node_t *tail;           /* next to pop; consumer only */
  act_node_t stub;
} act_mpsc_t;

void act__mpsc_init(act_mpsc_t *q);
void act__mpsc_push(act_mpsc_t *q, act_node_t *n);
act_node_t *act__mpsc_pop(act_mpsc_t *q);

/* --------------------------------------------------------- envelopes */

/* Signal types travel in msg.type below ACT_MSG_SYSTEM_MIN. */
enum {
  ACT__SIG_EXIT = -102,      /* payload act__exit_sig_t */
  ACT__SIG_LINK = -103,
  ACT__SIG_UNLINK = -104,
  ACT__SIG_MONITOR = -105,   /* msg.ref = monitor ref */
  ACT__SIG_DEMONITOR = -106, /* msg.ref = monitor ref */
  ACT__SIG_DOWN = -107,      /* payload act_down_msg_t */
  ACT__SIG_TIMEOUT = -108,   /* a request's timer: msg.ref = request ref */
  ACT__SIG_INFO = -109       /* process_info: answer ACT_MSG_PROCESS_INFO */
};

typedef struct act__exit_sig {
  act_reason_t reason;
  bool linked; /* came through a link (ignored if the link is gone) */
  bool forced; /* untrappable: exit(Pid, kill) or a crash in act_run_as */
} act__exit_sig_t;

typedef struct act_env {
  act_node_t node;
  act_qnode_t qnode;  /* the owner's private FIFO; the envelope cache; a supervisor's deferred */
  act_payload_free_fn free_fn;
  bool is_reply; /* made by act_reply: dropped if nobody awaits its ref */
  bool kept;     /* act_msg_keep: the handler owns it now */
  bool flushed;  /* demonitor(flush) hit it: skip, don't handle */
  act_msg_t msg;
  _Alignas(max_align_t) unsigned char payload[];
} act_env_t;

act_env_t *act__env_new(int type, act_pid_t from, act_ref_t ref,
                        const void *data, size_t size, act_payload_free_fn fn);
void act__env_free(act_env_t *e);
void act__env_cache(bool on); /* scheduler threads: recycle small envelopes */
/* Push an envelope to pid; false (and the envelope untouched) if pid is dead. */
bool act__deliver(act_pid_t to, act_env_t *e);
/* Same, but frees the envelope when the target is dead. */
void act__deliver_or_drop(act_pid_t to, act_env_t *e);
static inline act_env_t *act__env_of(act_msg_t *m) {
  return (act_env_t *)((char *)m - offsetof(act_env_t, msg));
}
/* A signal that may be lost with its target (a dead pid ignores it). */
static inline void act__send_signal(act_pid_t to, int type, act_pid_t from, act_ref_t ref,
                                    const void *data, size_t size) {
  act__deliver_or_drop(to, act__env_new(type, from, ref, data, size, NULL));
}
/* The one out-of-memory rule for what somebody waits for (a death signal,
 * a reply, the record of a link or monitor whose EXIT/DOWN would otherwise
 * never be sent): try again every 1 ms (act__nap_1ms, which stalls this
 * scheduler) until ok_expr holds, for up to ACT__SIGNAL_RETRY_MS. */
#define ACT__SIGNAL_RETRY_MS 1000
#define ACT__RETRY_OOM(ok_expr) \
  for (int act__try = 0; !(ok_expr) && act__try < ACT__SIGNAL_RETRY_MS; act__try++) act__nap_1ms()
void act__nap_1ms(void);
/* A death signal's envelope (envelope.c), under ACT__RETRY_OOM; NULL, with
 * a line on stderr, once the retries are spent. */
act_env_t *act__env_must(int type, act_pid_t from, act_ref_t ref, const void *data,
                         size_t size, act_payload_free_fn fn);
/* A DOWN (or a request's failure) for ref, about pid: a death signal. */
static inline act_env_t *act__down_env(act_ref_t ref, act_pid_t pid, act_reason_t r, int type) {
  act_down_msg_t d = {ref, pid, r};
  return act__env_must(type, pid, ref, &d, sizeof d, NULL);
}

/* ----------------------------------------------------------- process */

/* Sets, as open-addressing hash tables (sets.c): v[0..cap), 0 = empty;
 * n entries are in use.  Walk all cap entries, skipping empty ones. */
typedef struct act_pidvec { act_pid_t *v; uint32_t n, cap; } act_pidvec_t;
typedef struct act_monref { act_ref_t ref; act_pid_t pid; } act_monref_t;
typedef struct act_monvec { act_monref_t *v; uint32_t n, cap; } act_monvec_t; /* by ref */

struct act_sched;
struct act_timer;
struct act_owned;

typedef struct act_proc {
  act_pid_t pid;
  const act_behaviour_t *b;
  void *args;
  void *state;
  struct act_sched *sched;
  act_pid_t parent;

  act_mpsc_t inbox;
  _Atomic size_t pending;      /* envelopes pushed and not yet consumed */
  act_node_t run_node;         /* link in the scheduler's run queue */
  act_qnode_t local_node;      /* link in its scheduler's local run queue */
  act_queue_t priv;            /* act_env_t ready for handle(), by qnode */

  _Atomic uint64_t handled;    /* introspection */
  _Atomic uint32_t restarts;   /* introspection */
  _Atomic uint32_t children;   /* introspection: a supervisor's running children */
  _Atomic bool has_name;       /* registry.c keeps the name itself */
  _Atomic bool overflow;       /* max_mailbox exceeded: dying */
  size_t max_mailbox;
  int budget;
  bool high;                   /* ACT_PRIORITY_HIGH: sched.c's local_high */

  bool trap_exit;
  bool started;                /* init has been run (or tried) */
  bool initialised;
  bool is_proxy;               /* call.c: a waiting outside thread */
  act_reason_t *exit_reason;   /* set when the process is to end */
  bool in_terminate;           /* a crash in terminate replaces the reason */

  /* proc_lib's init_ack: who waits for init's answer (0: nobody, or sent) */
  act_pid_t ack_to;
  act_ref_t ack_ref;
  int ack_result;              /* a failure to report when it dies */
  bool ack_deferred;           /* init returned; the behaviour acks later */
  bool parent_exit_as_msg;     /* supervisors: the parent's EXIT is a message */
  bool is_supervisor;          /* set by its init; read on its own thread */
  act_sup_flags_t sup_flags;

  act_pidvec_t links;
  act_monvec_t monitors_in;    /* who watches me (ref, watcher) */
  act_monvec_t monitors_out;   /* whom I watch (ref, target) */
  act_monvec_t requests;       /* act_request in flight: (ref, timer ref) */
  act_monvec_t callees;        /* the same refs: (ref, callee), monitored with ref */

  struct act_owned *owned;     /* act_alloc blocks and act_defer cleanups */
  act_msg_t *current;          /* the message being handled, for crashes */

  /* call.c: a proxy's thread sleeps on this */
  pthread_mutex_t *proxy_mu;
  pthread_cond_t *proxy_cv;
} act_proc_t;

/* ------------------------------------------------------------ slots */

typedef struct act_slot {
  _Atomic act_pid_t pid;       /* 0 when free or dying */
  _Atomic(act_proc_t *) proc;
  _Atomic uint32_t readers;    /* senders looking at proc right now */
  uint32_t gen;                /* under the free-list lock */
  uint32_t next_free;
} act_slot_t;

act_proc_t *act__current(void);
act_proc_t *act__require_current(const char *what);
act_pid_t act__spawn(const act_behaviour_t *b, void *args,
                     const act_spawn_opts_t *opts, uint32_t restarts, int *err);
/* Inside init: do not ack when init returns; act__init_ack does it later
 * (a supervisor acks once its static children are up). */
void act__init_ack_later(void);
/* Ack now if ok; otherwise remember the error, sent when the actor dies
 * (after its name is freed, before its EXIT and DOWN). */
void act__init_ack(act_proc_t *p, int result);
/* Borrow a live proc for reading (introspection); release with act__unpin. */
act_proc_t *act__pin(act_pid_t pid, act_slot_t **slot);
void act__unpin(act_slot_t *slot);
uint32_t act__slot_high_water(void);
act_slot_t *act__slot_at(uint32_t idx);
/* slot.c: the table, and a fresh pid for a slot (0 when all are taken) */
extern act_slot_t *act__slots;
extern _Atomic uint32_t act__slots_high;
act_pid_t act__slot_alloc(unsigned sched_tag);
void act__slot_release(uint32_t idx);
/* pid = generation (24 bits) | scheduler (8 bits) | slot index (32 bits) */
static inline unsigned act__pid_sched(act_pid_t pid) { return (unsigned)(pid >> 32) & 0xFFu; }
/* The slot a pid names, NULL past the high water; inline: every send uses it. */
static inline act_slot_t *act__slot_of(act_pid_t pid) {
  uint32_t idx = (uint32_t)pid;
  /* acquire: pairs with act__slot_alloc's release, as act__slot_high_water */
  if (!act__slots || idx >= atomic_load_explicit(&act__slots_high, memory_order_acquire)) return NULL;
  return &act__slots[idx];
}
/* live processes: counted at spawn and death; act__kill_all waits for 0 */
void act__live_inc(void);
void act__live_dec(void);
void act__push_private(act_proc_t *p, act_env_t *e);
void act__set_exit(act_proc_t *p, act_reason_t r);

/* proxies (call.c): a slot without a scheduler, for outside threads */
act_proc_t *act__proxy_new(void);
void act__proxy_free(act_proc_t *p);
act_env_t *act__proxy_wait(act_proc_t *p, int timeout_ms);

/* ----------------------------------------------------------- sched.c */

typedef struct act_sched {
  int id;
  pthread_t thread;
  uv_loop_t loop;
  uv_async_t wakeup;
  pthread_mutex_t wakeup_mu;   /* act_stop_system's last wake vs. the close */
  bool wakeup_closed;
  act_mpsc_t runq;             /* made runnable by other threads */
  _Atomic long runq_len;
  act_queue_t local;           /* act_proc_t made runnable by this thread (local_node): no atomics */
  act_queue_t local_high;      /* the same, ACT_PRIORITY_HIGH ones: run first */
  unsigned picks;
  _Atomic int sleeping;
  sigjmp_buf *crash_jb;           /* where act_crash lands during a turn */
  act_proc_t *current;
  long local_len;                 /* local queue length, owner only */
  uint64_t turns_local;           /* turns run, owner only; published below */
  uint64_t handled_local;         /* messages handled, owner only; published below */
  /* introspection: published by the owner when it polls its loop (every
   * 256 turns and before sleeping), relaxed; on a cache line of their own,
   * so that readers never slow the producers that touch runq_len/sleeping */
  _Alignas(64) _Atomic long local_len_seen;
  _Atomic uint64_t turns;
  _Atomic uint64_t idle_ns;
  _Atomic uint64_t messages;
  _Atomic long actors;            /* live here: +1 at spawn (any thread), -1 at death */
  char pad_[64 - 2 * sizeof(long) - 3 * sizeof(uint64_t)];
  struct act_timer *timers;       /* timer.c: this loop's timers, until closed */
} act_sched_t;

void act__schedule(act_proc_t *p);
act_sched_t *act__sched_for(int want, act_proc_t *caller);
act_sched_t *act__sched_self(void);
void act__turn(act_proc_t *p);   /* actor.c */
bool act__running(void);

/* ----------------------------------------------------------- timer.c */
void act__timers_free_sched(act_sched_t *s);

/* -------------------------------------------------------- registry.c */
void act__registry_drop_pid(act_pid_t pid);
void act__registry_name_of(act_pid_t pid, char *out, size_t cap);
void act__registry_clear(void);

/* ---------------------------------------------------------- owned.c */
void act__owned_release_all(act_proc_t *p);

/* ----------------------------------------------------------- slot.c */
void act__kill_all(void);
void act__slots_init(uint32_t max);
void act__slots_free(void);

/* -------------------------------------------------------- request.c */
/* A request ends: true if ref was one in flight (its timer and callee
 * monitor are dropped); false for a late reply, timeout or DOWN. */
bool act__request_done(act_proc_t *p, act_ref_t ref);
act_ref_t act__timer_signal(act_proc_t *p, uint64_t ms, int type, act_ref_t ref); /* timer.c */

/* ----------------------------------------------------- introspect.c */
/* process_info, answered by p itself between turns (ACT__SIG_INFO). */
void act__answer_info(act_proc_t *p, act_msg_t *m);

/* ----------------------------------------------------------- sets.c */
bool act__pidvec_add(act_pidvec_t *v, act_pid_t pid);
bool act__pidvec_del(act_pidvec_t *v, act_pid_t pid);
bool act__pidvec_has(const act_pidvec_t *v, act_pid_t pid);
bool act__monvec_add(act_monvec_t *v, act_ref_t ref, act_pid_t pid);
bool act__monvec_del(act_monvec_t *v, act_ref_t ref, act_pid_t *pid);

#endif
