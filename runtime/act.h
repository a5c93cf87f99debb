/*
 * act.h -- the one public header of the actor runtime.
 *
 * A small multi-threaded actor library modelled on Erlang/OTP.  Start here:
 * this file is the whole contract; the .c files beside it are, in reading
 * order, mailbox.c (the lock-free queue), sched.c (threads, loops, turns),
 * actor.c (spawn, signals, links, monitors, exits) with slot.c, envelope.c
 * and sets.c, request.c (request/reply), timer.c, registry.c, call.c
 * (blocking calls from outside), introspect.c, supervisor.c.
 *
 * Vocabulary is OTP's.  An actor is a gen_server-like behaviour: init(args)
 * gives its state, handle(state, msg) runs once per message, terminate(state,
 * reason) runs once at the end.  Actors talk only by messages; a message's
 * payload is copied into the message at send time and belongs to the receiver.
 *
 * Where this runtime differs from the BEAM, it says so here:
 *
 *  - Priorities are two, normal and high, set at spawn (act_spawn_opts_t)
 *    and changed by the actor itself (act_set_priority).
 *  - Actors are pinned to the scheduler that they were spawned on and never
 *    migrate.  That is what lets an actor own libuv handles on its scheduler's
 *    loop (act_loop()).  Placement is decided at spawn (act_spawn_opts_t).
 *  - Handlers are ordinary C functions: they must not block and must not loop
 *    forever.  A signal (even `kill`) is acted upon between two handler runs.
 *  - Crash containment covers act_crash(), a failed ACT_ASSERT, init failure
 *    and limits (mailbox overflow).  A real memory fault (SIGSEGV, SIGBUS) or
 *    abort() still ends the whole process: C has no isolation between actors.
 *  - terminate() is called on every exit, `kill` included, because in C it is
 *    the only place that can free the state.  On `kill` it must not send
 *    messages expecting replies; the actor is already gone.
 *  - init() runs on the new actor's scheduler as the first thing the actor
 *    does, before any signal sent to it is acted upon (so an exit signal
 *    cannot overtake init and a trap_exit set in init holds).  Starts are
 *    OTP's proc_lib starts where blocking is allowed: act_spawn() from a
 *    thread outside the runtime, act_supervisor_start() there, and the
 *    blocking supervisor calls return only once init answered, with init's
 *    error if it failed.  Inside an actor nothing may block, so act_spawn()
 *    returns the pid at once (a failing init then shows as an exit, like a
 *    crash), and a supervisor waits for its child's init asynchronously:
 *    start_child is answered when the child's init acked.
 *  - Names are registered at spawn time (opts.name), before init runs, so
 *    that a supervisor's later children can rely on an earlier child's name
 *    as in OTP's synchronous start.
 *
 * Out of memory: a call that cannot allocate returns ACT_ENOMEM (or 0 for
 *    a ref) having sent nothing; inside a handler where no error can be
 *    returned, the actor crashes (a supervisor that cannot reply, or stop
 *    a child, fails, and its callers' monitors tell them).  Death signals
 *    (an EXIT through a link, a DOWN, a failed start's ack) and a link or
 *    monitor received are retried every 1 ms for up to a second, as their
 *    loss would leave someone waiting for ever; after that they are lost,
 *    said on stderr.  The process never aborts for memory.
 *
 * Errors are negative ACT_E* codes.  Everything is thread-safe unless noted;
 * "inside an actor" means from its init/handle/terminate on its scheduler.
 */
#ifndef ACT_H
#define ACT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- basics */

/* A pid: slot index in the low 32 bits, then the scheduler (8 bits), then
 * the slot's generation (24 bits).  0 is never a live pid.  A message to a dead pid is dropped silently, and a
 * recycled slot has a new generation, so an old pid never reaches the new
 * tenant. */
typedef uint64_t act_pid_t;
#define ACT_NOPID ((act_pid_t)0)

/* A unique reference (make_ref/0): never 0, never repeats within a run. */
typedef uint64_t act_ref_t;

enum {
  ACT_OK = 0,
  ACT_EINVAL = -1,   /* bad argument */
  ACT_ENOMEM = -2,   /* out of memory or out of actor slots */
  ACT_ENOPROC = -3,  /* no such (live) actor */
  ACT_ETIMEDOUT = -4,/* a call's timeout ran out */
  ACT_EEXIST = -5,   /* name already registered / child id already present */
  ACT_ENOTACTOR = -6,/* called outside an actor where only an actor may call */
  ACT_ESTATE = -7,   /* runtime not started, or already stopped */
  ACT_EEXITED = -8,  /* the actor exited before its init answered (a crash in init) */
  ACT_ERUNNING = -9  /* restart_child/delete_child: the child is running */
};
const char *act_strerror(int err);

/* --------------------------------------------------------- exit reasons */

/* OTP's reasons.  `normal` and `shutdown` are the quiet ones; `kill` is only
 * a signal (exit(Pid, kill)) and is seen by others as `killed`; `noproc` is
 * what a link or monitor to an already-dead pid reports; everything else is a
 * crash (ACT_ERROR) and carries a text. */
typedef enum act_reason_kind {
  ACT_NORMAL = 0,
  ACT_SHUTDOWN,
  ACT_KILL,
  ACT_KILLED,
  ACT_NOPROC,
  ACT_ERROR
} act_reason_kind_t;

#define ACT_REASON_TEXT 96
typedef struct act_reason {
  act_reason_kind_t kind;
  char text[ACT_REASON_TEXT]; /* "normal", "shutdown", or the crash text */
} act_reason_t;

act_reason_t act_reason(act_reason_kind_t kind);           /* text = its name */
act_reason_t act_reason_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));                  /* kind ACT_ERROR */
/* OTP's {shutdown, Term}: kind ACT_SHUTDOWN, text "shutdown: <Term>".  Not
 * a crash: a transient child ending so is not restarted, and links of a
 * non-trapping actor end quietly with it as with plain `shutdown`. */
act_reason_t act_reason_shutdown(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------- messages */

/* Message types: the application picks non-negative integers; negative ones
 * are the runtime's. */
enum {
  ACT_MSG_EXIT = -1,    /* trapped exit signal: payload act_exit_msg_t */
  ACT_MSG_DOWN = -2,    /* monitor fired: payload act_down_msg_t */
  ACT_MSG_TIMEOUT = -3, /* an act_request() failed; msg->ref: no reply in time
                         * (size 0), or the callee was or went down first
                         * (payload act_down_msg_t: noproc or its exit reason) */
  ACT_MSG_SUP_REPLY = -4, /* answer of an async supervisor request */
  ACT_MSG_INIT_ACK = -5,  /* opts.ack: the child's init answered; payload act_init_ack_t */
  ACT_MSG_PROCESS_INFO = -6, /* answer of act_process_info_async: act_process_info_t */
  ACT_MSG_SYSTEM_MIN = -100 /* below this: internal, never seen by handlers */
};

typedef struct act_msg {
  int type;
  act_pid_t from;      /* sender, or ACT_NOPID from outside actors */
  act_ref_t ref;       /* request/reply correlation, 0 if none */
  size_t size;         /* payload bytes */
  void *data;          /* payload (points into the message itself) */
} act_msg_t;

typedef struct act_exit_msg { act_pid_t from; act_reason_t reason; } act_exit_msg_t;
/* proc_lib's init_ack: result is ACT_OK, init's negative code, or
 * ACT_EEXITED; msg->ref is the ack reference given at spawn. */
typedef struct act_init_ack { act_pid_t pid; int result; } act_init_ack_t;
typedef struct act_down_msg {
  act_ref_t ref;      /* the monitor reference */
  act_pid_t pid;      /* who went down */
  act_reason_t reason;
} act_down_msg_t;

/* Called on the payload when a message is freed: after the receiver's
 * handle() returns, or when the message is dropped (dead receiver, receiver
 * died with it still queued).  Lets a payload hold a reference to shared
 * memory (a reference-counted frame) without leaking it. */
typedef void (*act_payload_free_fn)(void *data, size_t size);

/* Send a copy of data[0..size) as a message of `type`.  Legal from anywhere;
 * to a dead pid it returns ACT_OK and drops the message (as in Erlang).
 * Returns ACT_ENOMEM only when the message could not be allocated. */
int act_send(act_pid_t to, int type, const void *data, size_t size);
/* The same, with a destructor run on the receiver's copy of the payload. */
int act_send_ex(act_pid_t to, int type, const void *data, size_t size,
                act_payload_free_fn free_fn);

/* Keep the message currently being handled beyond handle()'s return (for a
 * deferred queue).  Release it with act_msg_free(). */
act_msg_t *act_msg_keep(act_msg_t *msg);
void act_msg_free(act_msg_t *msg);

/* ------------------------------------------------------------ behaviour */

typedef struct act_behaviour {
  const char *name; /* shown in introspection, e.g. "session" */
  /* Build the state from args.  Return 0, or a negative code to fail (the
   * actor then exits with an ACT_ERROR reason "init failed").  A failed
   * init gets no terminate(), as in OTP: it frees what it made itself
   * (act_alloc'd memory and act_defer cleanups are still released). */
  int (*init)(void *args, void **state);
  /* One message.  msg and its payload are valid until handle() returns. */
  void (*handle)(void *state, act_msg_t *msg);
  /* Last call, any reason.  Free the state here.  May be NULL. */
  void (*terminate)(void *state, act_reason_t reason);
} act_behaviour_t;

/* Where a new actor runs.  Zero, the value of a zero-initialised options
 * struct, means "the spawner's scheduler". */
#define ACT_SCHED_CALLER 0    /* the spawner's scheduler (outside actors: next) */
#define ACT_SCHED_NEXT (-1)   /* round-robin over all schedulers */
#define ACT_SCHED_ON(i) ((i) + 1) /* scheduler number i, modulo the count */

/* spawn_opt's {priority, high} (OTP's process_flag(priority, high),
 * act_set_priority below, with no `low` and no `max`: two levels are what a
 * server needs).  An actor made runnable by its own scheduler's thread runs before
 * every normal one waiting there; one made runnable from another thread
 * waits in the shared queue, which each scheduler looks at every 8 picks,
 * as for every actor.  For the few actors that many wait on -- a
 * broadcaster, a database pool -- so that their next message is not stuck
 * behind the turns their last one caused.  As in OTP, a high actor that is
 * always runnable starves the normal ones: keep them few and brief. */
typedef enum { ACT_PRIORITY_NORMAL = 0, ACT_PRIORITY_HIGH = 1 } act_priority_t;

typedef struct act_spawn_opts {
  bool link;               /* link to the spawner (spawn_link) */
  bool monitor;            /* monitor it; the reference goes to *monitor_ref */
  act_ref_t *monitor_ref;
  int scheduler;           /* ACT_SCHED_CALLER (0, default), ACT_SCHED_NEXT, ACT_SCHED_ON(i) */
  const char *name;        /* register under this name before returning */
  /* Mailbox bound: once more than this many messages are queued, the actor
   * exits with reason "mailbox_overflow" (OTP's max_heap_size in spirit) and
   * the message is dropped.  0 = unbounded. */
  size_t max_mailbox;
  int budget;              /* messages per turn; 0 = ACT_DEFAULT_BUDGET */
  act_priority_t priority; /* ACT_PRIORITY_NORMAL (default) or ACT_PRIORITY_HIGH */
  /* proc_lib:start without blocking (inside actors): once the child's init
   * answered, the spawner gets an ACT_MSG_INIT_ACK whose ref is *ack_ref
   * (set here at spawn).  Ordered before the child's EXIT or DOWN. */
  bool ack;
  act_ref_t *ack_ref;
} act_spawn_opts_t;
#define ACT_DEFAULT_BUDGET 64

/* Spawn an actor.  Inside an actor, link/monitor are relative to the caller;
 * outside one, opts->link and opts->monitor are refused (ACT_EINVAL).
 * Returns the pid, or 0 with *err (if not NULL) set.  From a thread outside
 * the runtime it returns only after init answered: a failed init gives 0
 * and init's error (or ACT_EEXITED), and the actor is gone (its name too);
 * it waits as a proxy, which holds a second slot of max_actors meanwhile,
 * as every blocking call from outside does (act_call, act_await_exit).
 * Inside actors (and libuv callbacks on scheduler threads) it returns at
 * once, init still to run. */
act_pid_t act_spawn(const act_behaviour_t *b, void *args,
                    const act_spawn_opts_t *opts, int *err);
act_pid_t act_spawn_link(const act_behaviour_t *b, void *args);
act_pid_t act_spawn_monitor(const act_behaviour_t *b, void *args, act_ref_t *mref);

/* The running actor's pid; ACT_NOPID outside actors. */
act_pid_t act_self(void);

/* ----------------------------------------------------- exits and links */

/* exit/2: send an exit signal to pid.  `kill` cannot be trapped and makes the
 * target exit with `killed`; `normal` is ignored by others (but ends the
 * caller if pid is itself); other reasons end a non-trapping target with the
 * same reason and reach a trapping one as an ACT_MSG_EXIT. */
int act_exit(act_pid_t pid, act_reason_t reason);

/* exit/1: end the calling actor with reason when the current handler
 * returns (the rest of the handler still runs). */
void act_stop(act_reason_t reason);

/* Crash the calling actor now (longjmp out of the handler).  Outside an
 * actor it aborts the process. */
_Noreturn void act_crash(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define ACT_ASSERT(cond)                                                     \
  do {                                                                       \
    if (!(cond))                                                             \
      act_crash("assertion failed: %s (%s:%d)", #cond, __FILE__, __LINE__);  \
  } while (0)

/* link/1, unlink/1 (inside actors).  Linking to a dead pid delivers an exit
 * signal `noproc` to the caller (an ACT_MSG_EXIT if it traps exits). */
int act_link(act_pid_t pid);
int act_unlink(act_pid_t pid);

/* process_flag(trap_exit, on); returns the previous value. */
bool act_trap_exit(bool on);
/* process_flag(priority, level) (inside actors): the caller's priority from
 * its next scheduling on; returns the previous one.  For an actor that is
 * waited on only at times -- one answering a client through round trips to
 * other actors -- so that its replies do not queue behind the turns of
 * work nobody waits for; it should go back to normal when done. */
act_priority_t act_set_priority(act_priority_t level);
/* The parent-EXIT rule (gen_server's): an actor that traps exits and gets
 * an exit signal from its parent (the spawner: for a supervised child, its
 * supervisor) does not receive it as a message but exits at once with that
 * reason, running terminate -- so a supervisor's `shutdown` is never
 * ignored.  act_parent_exit_as_message(true) opts out (a supervisor does,
 * to stop its own children first); returns the previous value. */
bool act_parent_exit_as_message(bool on);

/* monitor/2 and demonitor/1 (inside actors).  Monitoring a dead pid delivers
 * ACT_MSG_DOWN with `noproc`.  demonitor with flush: any DOWN for this ref
 * already queued is dropped.  Returns true if the monitor was active. */
act_ref_t act_monitor(act_pid_t pid);
bool act_demonitor(act_ref_t ref);

/* --------------------------------------------------------------- names */

/* monitor(process, Name) (inside actors): monitors whoever holds the name
 * now; if nobody does, the DOWN (pid 0) comes at once with noproc. */
act_ref_t act_monitor_name(const char *name);
/* Name ! Msg: act_send to the registered name; ACT_ENOPROC if nobody
 * holds it (OTP raises badarg), nothing sent. */
int act_send_name(const char *name, int type, const void *data, size_t size);

int act_register(const char *name, act_pid_t pid); /* ACT_EEXIST, ACT_ENOPROC */
int act_unregister(const char *name);
act_pid_t act_whereis(const char *name);           /* ACT_NOPID if none */
#define ACT_NAME_MAX 48

/* -------------------------------------------------------------- timers */

/* erlang:send_after/3, on a scheduler thread (inside actors, or a libuv
 * callback there): the timer belongs to its destination -- it fires even
 * if its creator has exited, and a destination that died drops it.
 * Returns the timer reference, or 0 (off scheduler threads, no memory). */
act_ref_t act_send_after(uint64_t ms, act_pid_t to, int type,
                         const void *data, size_t size);
/* erlang:start_timer/3: the same, and the message carries the timer
 * reference in msg->ref ({timeout, TRef, Msg}). */
act_ref_t act_start_timer(uint64_t ms, act_pid_t to, int type,
                          const void *data, size_t size);
/* cancel_timer/1, from anywhere (any actor, any thread): >= 0 milliseconds
 * that were left, or -1 if the timer already fired (its message may be
 * queued) or is unknown.  After a result >= 0 the message never comes. */
int64_t act_cancel_timer(act_ref_t tref);
/* read_timer/1, from anywhere: milliseconds left, or -1 as cancel_timer. */
int64_t act_read_timer(act_ref_t tref);

act_ref_t act_make_ref(void);

/* --------------------------------------------------------- request/reply */

#define ACT_CALL_DEFAULT_TIMEOUT 5000 /* ms, as gen_server:call/2 */
#define ACT_INFINITY (-1)

/* Inside an actor: send a request carrying a fresh ref.  The reply arrives
 * as an ordinary message with that ref; if none came within timeout_ms, an
 * ACT_MSG_TIMEOUT with that ref arrives instead and a later reply is dropped,
 * never delivered (OTP's alias semantics).  The callee is monitored for the
 * life of the request, as gen_server:call does: if it is dead (or `to` is
 * ACT_NOPID) or dies before replying, the ACT_MSG_TIMEOUT comes at once,
 * carrying an act_down_msg_t with noproc or its exit reason, even with
 * ACT_INFINITY.  Returns the ref, or 0 when out of memory (then nothing
 * was sent and nothing will come). */
act_ref_t act_request(act_pid_t to, int type, const void *data, size_t size,
                      int timeout_ms);
/* Answer a request: a message to req->from with req->ref.  Out of memory,
 * it is retried every 1 ms for up to a second (as a death signal) before
 * ACT_ENOMEM: its caller waits for it. */
int act_reply(const act_msg_t *req, int type, const void *data, size_t size);
/* The same, with a destructor for the payload (as act_send_ex). */
int act_reply_ex(const act_msg_t *req, int type, const void *data, size_t size,
                 act_payload_free_fn free_fn);

/* Outside actors only (main, tests): a blocking request.  On success *reply
 * is the reply message (free it with act_msg_free).  ACT_ETIMEDOUT after
 * timeout_ms; ACT_ENOPROC if the target is dead or dies before replying;
 * ACT_ENOMEM if the request could not be made (nothing was sent). */
int act_call(act_pid_t to, int type, const void *data, size_t size,
             act_msg_t **reply, int timeout_ms);

/* Outside actors only: wait until pid exits; its reason goes to *reason.
 * ACT_ENOPROC if it was already gone (reason `noproc`). */
int act_await_exit(act_pid_t pid, int timeout_ms, act_reason_t *reason);

/* ---------------------------------------------------- owned resources */

/* Memory owned by the calling actor, freed when it exits if not before. */
void *act_alloc(size_t size);
void act_free(void *p);

/* Run fn(arg) when the calling actor exits (after terminate).  Use it to
 * close libuv handles the actor owns.  Returns an id for act_undefer. */
typedef void (*act_cleanup_fn)(void *arg);
uint64_t act_defer(act_cleanup_fn fn, void *arg);
void act_undefer(uint64_t id); /* forget it without running it */

/* The libuv loop of the calling actor's scheduler.  Handles made on it have
 * their callbacks run on that scheduler's thread, between actor turns. */
uv_loop_t *act_loop(void);

/* Run fn(arg) on the actor's behalf from a libuv callback: sets act_self()
 * to pid during fn, so that sends, timers and act_crash behave as inside the
 * actor.  If fn crashes, the actor exits with that reason.  pid must be
 * alive and on this scheduler; returns ACT_ENOPROC otherwise. */
int act_run_as(act_pid_t pid, void (*fn)(void *arg), void *arg);

/* ---------------------------------------------------------- the system */

typedef struct act_config {
  int threads;         /* schedulers; 0 = the core count (no environment is read) */
  uint32_t max_actors; /* slot table size; 0 = 1<<21 */
} act_config_t;

int act_start(const act_config_t *cfg); /* start the schedulers */
/* Stop: every live actor gets exit(kill), schedulers are joined, memory
 * freed.  Call act_exit(root, shutdown) and act_await_exit first for an
 * orderly shutdown. */
void act_stop_system(void);
int act_scheduler_count(void);
int act_scheduler_id(void); /* the calling thread's scheduler, -1 off scheduler threads */

/* --------------------------------------------------------- supervisors */

typedef enum { ACT_ONE_FOR_ONE, ACT_ONE_FOR_ALL, ACT_REST_FOR_ONE } act_strategy_t;
typedef enum { ACT_PERMANENT, ACT_TRANSIENT, ACT_TEMPORARY } act_restart_t;
typedef enum { ACT_WORKER, ACT_SUPERVISOR } act_child_type_t;

/* shutdown_ms: 0 (a zero-initialised spec) means OTP's default, 5000 ms
 * for a worker and infinity for a supervisor. */
#define ACT_BRUTAL_KILL (-2)         /* shutdown: exit(kill) at once */
#define ACT_SHUTDOWN_INFINITY (-1)   /* shutdown: wait for ever (supervisors) */
#define ACT_SHUTDOWN_DEFAULT 5000    /* workers' default, as OTP */

typedef struct act_child_spec {
  /* unique among the supervisor's children; "" (dynamic children only):
   * anonymous, forgotten when it ends for good, as in a DynamicSupervisor */
  char id[ACT_NAME_MAX];
  const act_behaviour_t *behaviour; /* started as spawn_link(behaviour, args) */
  void *args;                       /* passed to init on every (re)start */
  void (*free_args)(void *args);    /* when the child is removed; may be NULL */
  const char *name;                 /* registered name, or NULL */
  act_restart_t restart;
  int shutdown_ms;                  /* 0 = default, ms, ACT_BRUTAL_KILL, ACT_SHUTDOWN_INFINITY */
  act_child_type_t type;
  int scheduler;                    /* as act_spawn_opts_t.scheduler */
  size_t max_mailbox;               /* as act_spawn_opts_t.max_mailbox */
  act_priority_t priority;          /* as act_spawn_opts_t.priority */
} act_child_spec_t;

typedef struct act_sup_flags {
  act_strategy_t strategy;
  int intensity;  /* restarts allowed ... */
  int period_ms;  /* ... within this window; OTP's default 1 in 5000 ms */
} act_sup_flags_t;
#define ACT_SUP_FLAGS_DEFAULT {ACT_ONE_FOR_ONE, 1, 5000}

typedef struct act_sup_spec {
  act_sup_flags_t flags;
  const act_child_spec_t *children; /* started in order, stopped in reverse */
  size_t nchildren;
} act_sup_spec_t;

/* The supervisor behaviour: spawn it with args = a const act_sup_spec_t *
 * that stays valid while it runs, or use it as a child's behaviour with
 * type ACT_SUPERVISOR.  It traps exits.  When intensity is exceeded it stops
 * its children and exits with `shutdown` (its own supervisor decides next).
 * Starts (static children, start_child, restart_child) wait for the child's
 * init, as OTP's; restarts after a crash do not (the supervisor must not
 * block): a restart whose init fails is seen as a crash and counted.
 * Children are found by pid in O(1); 40,000 dynamic children cost O(1)
 * each to add and remove. */
const act_behaviour_t *act_supervisor(void);

/* Start a supervisor (outside or inside actors); opts as act_spawn. */
act_pid_t act_supervisor_start(const act_sup_spec_t *spec,
                               const act_spawn_opts_t *opts, int *err);

/* Requests to a supervisor.  The _async forms are for actors: they return a
 * ref; the answer comes as ACT_MSG_SUP_REPLY with that ref and an
 * act_sup_reply_t payload.  The plain forms block (outside actors only). */
typedef struct act_sup_reply { int result; act_pid_t pid; } act_sup_reply_t;

act_ref_t act_supervisor_start_child_async(act_pid_t sup, const act_child_spec_t *spec);
int act_supervisor_start_child(act_pid_t sup, const act_child_spec_t *spec, act_pid_t *pid);
/* terminate_child: stop a child (by pid, or by id when pid is ACT_NOPID)
 * as OTP does.  Its spec is kept, not running (which_children lists it
 * with ACT_NOPID, restart_child starts it again, delete_child removes it),
 * except a temporary child's, which is deleted, and an anonymous dynamic
 * child's (id ""), which is removed as under simple_one_for_one or a
 * DynamicSupervisor.  A listed child that is not running: ACT_OK, nothing
 * to do.  ACT_ENOPROC if no child has that pid or id (not_found). */
act_ref_t act_supervisor_terminate_child_async(act_pid_t sup, act_pid_t pid, const char *id);
int act_supervisor_terminate_child(act_pid_t sup, act_pid_t pid, const char *id);
/* restart_child: start again a listed child that is not running (a
 * transient child that ended normally, or one whose restarts failed), as
 * a start: answered once its init acked, with *pid.  ACT_ERUNNING if it
 * runs, ACT_ENOPROC if no child has that id (not_found). */
act_ref_t act_supervisor_restart_child_async(act_pid_t sup, const char *id);
int act_supervisor_restart_child(act_pid_t sup, const char *id, act_pid_t *pid);
/* delete_child: remove the spec of a child that is not running (frees its
 * args); ACT_ERUNNING if it runs, ACT_ENOPROC if unknown. */
act_ref_t act_supervisor_delete_child_async(act_pid_t sup, const char *id);
int act_supervisor_delete_child(act_pid_t sup, const char *id);

/* count_children: specs, active (running), supervisors, workers. */
typedef struct act_sup_counts { int specs, active, supervisors, workers; } act_sup_counts_t;
int act_supervisor_count_children(act_pid_t sup, act_sup_counts_t *out);
/* get_childspec: the child's spec by id; its name is copied into name[]
 * and out->name points there (NULL if none).  ACT_ENOPROC if unknown. */
int act_supervisor_get_childspec(act_pid_t sup, const char *id, act_child_spec_t *out,
                                 char name[ACT_NAME_MAX]);

typedef struct act_child_info {
  char id[ACT_NAME_MAX];
  act_pid_t pid;        /* ACT_NOPID while not running */
  act_child_type_t type;
  act_restart_t restart;
  uint32_t restarts;
} act_child_info_t;
/* which_children: up to max entries, in start order; returns the count or a
 * negative error.  Blocking, outside actors only. */
int act_supervisor_which_children(act_pid_t sup, act_child_info_t *out, int max);

/* Supervisor reports, in OTP's words.  OTP's supervisor tells the logger:
 * a progress report when a child starts ("supervisor: {local,sessions},
 * started: [{pid,..},{id,..},{mfargs,..},{restart_type,..},{shutdown,..},
 * {child_type,..}]"), and a supervisor report whose errorContext is
 * start_error (a static start or a restart failed), child_terminated (a
 * child exited: a permanent one whatever the reason, others unless the
 * reason is normal, shutdown or {shutdown,_}), shutdown_error (a child
 * being stopped ended with another reason than shutdown, or was killed
 * at its shutdown timeout) or shutdown (reason
 * reached_max_restart_intensity: the supervisor gives up), each with the
 * reason and the offender.  Here the supervisor calls the report handler,
 * inside the supervisor actor (act_self() is the supervisor), before it
 * acts on what it reports.  The runtime knows no log format: the default
 * handler writes one plain line to stderr for each supervisor report and
 * nothing for progress reports (OTP 21+'s logger drops them by default:
 * they are info-level, and 20,000 sessions make 20,000 of them).  A
 * dynamic supervisor's start_child that fails is answered to the caller
 * and not reported, as in OTP. */
typedef enum act_report_context {
  ACT_REPORT_STARTED,          /* progress report: "started" */
  ACT_REPORT_START_ERROR,      /* "start_error" */
  ACT_REPORT_CHILD_TERMINATED, /* "child_terminated" */
  ACT_REPORT_SHUTDOWN_ERROR,   /* "shutdown_error" */
  ACT_REPORT_SHUTDOWN          /* "shutdown": reached_max_restart_intensity */
} act_report_context_t;

typedef struct act_sup_report {
  act_report_context_t context;
  const char *context_name;     /* OTP's word, as in the comments above */
  act_pid_t supervisor;
  const char *supervisor_name;  /* its registered name, "" if none */
  /* the child started, or OTP's `offender` */
  const char *child_id;         /* "" for an anonymous dynamic child */
  act_pid_t child_pid;          /* ACT_NOPID if it never started */
  const char *behaviour;        /* OTP's mfargs: the behaviour's name */
  act_restart_t restart_type;
  int shutdown_ms;              /* resolved: ms, ACT_BRUTAL_KILL or ACT_SHUTDOWN_INFINITY */
  act_child_type_t child_type;
  act_reason_t reason;          /* started: normal */
} act_sup_report_t;

typedef void (*act_report_fn)(const act_sup_report_t *report, void *ud);
/* Install the report handler for every supervisor (NULL: the default).
 * Thread-safe; a report being made meanwhile goes to the old or the new. */
void act_set_report_handler(act_report_fn fn, void *ud);
/* OTP's words for a restart type and a child type: "permanent",
 * "transient", "temporary"; "worker", "supervisor". */
const char *act_restart_type_name(act_restart_t r);
const char *act_child_type_name(act_child_type_t t);

/* ------------------------------------------------------- introspection */

typedef struct act_info {
  act_pid_t pid;
  char name[ACT_NAME_MAX];  /* registered name, or "" */
  char behaviour[32];       /* behaviour->name */
  act_pid_t parent;         /* spawner (the supervisor for supervised actors) */
  size_t mailbox_len;       /* messages queued now */
  uint64_t messages;        /* messages handled so far */
  uint32_t restarts;        /* supervisors: restarts they made; children: times their spec was restarted */
  uint32_t children;        /* supervisors: children running now (count_children's
                               `active`, published by the supervisor, read without
                               a call); 0 for workers */
  int scheduler;
} act_info_t;

/* A consistent-enough snapshot of live actors, safe while everything runs:
 * fills up to max entries and returns how many actors were live (which may
 * exceed max).  act_info_of fills one; ACT_ENOPROC if dead. */
size_t act_list(act_info_t *out, size_t max);
int act_info_of(act_pid_t pid, act_info_t *out);

/* process_info: what only the actor itself may read (its links, monitors,
 * trap_exit), gathered by the actor between two of its turns and sent back
 * -- a signal, as OTP does it: nothing is locked and the world does not
 * stop; the price is one message each way.  Lists longer than
 * ACT_INFO_LIST_MAX are cut (the counts are whole). */
#define ACT_INFO_LIST_MAX 32
typedef struct act_process_info {
  act_info_t info;              /* as act_info_of */
  bool trap_exit;
  act_pid_t supervisor;         /* its parent (for supervised actors, the supervisor) */
  uint32_t nlinks, nmonitors, nmonitored_by;
  act_pid_t links[ACT_INFO_LIST_MAX];
  act_pid_t monitors[ACT_INFO_LIST_MAX];     /* whom it monitors */
  act_pid_t monitored_by[ACT_INFO_LIST_MAX]; /* who monitors it */
  bool is_supervisor;           /* then: */
  act_sup_flags_t sup_flags;    /* strategy, intensity, period_ms */
} act_process_info_t;
/* Blocking, outside actors; ACT_ENOPROC if pid is dead, ACT_ETIMEDOUT. */
int act_process_info(act_pid_t pid, act_process_info_t *out, int timeout_ms);
/* Inside actors: the answer comes as ACT_MSG_PROCESS_INFO with the returned
 * ref (an ACT_MSG_TIMEOUT with noproc if pid is dead), as act_request. */
act_ref_t act_process_info_async(act_pid_t pid, int timeout_ms);

/* Per scheduler, cheap counters read without stopping anything (relaxed:
 * each a snapshot).  run_queue: actors waiting to run now; turns: actor
 * turns run so far; idle_ms: time spent blocked with nothing to do. */
typedef struct act_sched_info {
  int id;
  long run_queue;
  uint64_t turns;
  uint64_t idle_ms;
  long actors;       /* processes living on it now */
  uint64_t messages; /* handled on it so far, by the living and the dead */
} act_sched_info_t;
int act_scheduler_info(int id, act_sched_info_t *out); /* ACT_EINVAL for a bad id */

#ifdef __cplusplus
}
#endif
#endif /* ACT_H */
