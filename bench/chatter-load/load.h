/*
 * load.h -- chatter-load's shared definitions: the run's configuration, the
 * statistics every worker process writes into one shared mapping, and the
 * histogram.  Nothing here allocates per sample.
 *
 * Layout of the run: the parent process (main.c) parses options, maybe
 * spawns the server, maps one MAP_SHARED region, forks W worker processes
 * (each starts its own actor runtime and holds its share of the sessions,
 * client.c), then drives the phases by writing `phase`/`stage` in the shared
 * region and reads the workers' counters for the progress line and the final
 * table.  Every counter has exactly one writer (a scheduler thread of one
 * worker), so a relaxed load + store is enough and costs a plain mov; the
 * parent's reads may be a few samples stale, never torn.
 */
#ifndef CHATTER_LOAD_H
#define CHATTER_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds of the tool itself, each one a constant so that a user sees where
 * it stops. */
#define LOAD_MAX_WORKERS 8          /* worker processes */
#define LOAD_MAX_THREADS 8          /* scheduler threads per worker */
#define LOAD_MAX_PAD 1900 /* --pad: the content stays under PROTOCOL.md's 2,000 characters */
#define LOAD_MAX_STAGES 12          /* rates tried by the chat scenario */
#define LOAD_WORKER_SESSIONS 10000  /* sessions per worker by default: half the
                                       20,000-descriptor limit of a process */
#define LOAD_MAX_FRAME (16u << 20)  /* a server frame larger than 16 MiB is an error */
/* A join ramp the protocol can carry (issue 6).  PROTOCOL.md v2 sends
 * every join's meta (about LOAD_META_BYTES inside a presence_diff) to every
 * socket already there, so n sessions joining put about n^2/2 metas on the
 * wire whatever the ramp's length -- 8.5 GB for 10,000 sessions, 30 GB for
 * 19,000 -- and the ramp's length only sets the rate.  At 10,000 sessions
 * over 15 s that is 570 MB/s on average and 1.1 GB/s at its end, more than
 * the server's one core can write (about 430 MB/s of diffs measured) or the
 * harness's one core can read, so every socket overflowed the server's
 * 256 KiB outbound bound and was closed with 1008.  idle and fanout
 * therefore ramp over n^2 * LOAD_META_BYTES / (2 * LOAD_RAMP_BPS) seconds
 * (at least 2) unless --ramp is given: 42 s for 10,000, 153 s for 19,000,
 * 2 s up to 2,100. */
#define LOAD_META_BYTES 170.0
#define LOAD_RAMP_BPS (200.0 * 1000 * 1000)
#define LOAD_TOKEN_MAX 128

/* ---------------------------------------------------------- histogram */

/* HDR-style log-linear histogram of microseconds: values below 128 exactly,
 * above that 64 buckets per power of two (relative error under 1.6%).
 * 2,176 buckets cover up to 2^33 us (2.4 hours); larger values land in the
 * last.  Recording is a count-leading-zeros, a shift and one store. */
#define HIST_SUB_BITS 6
#define HIST_BUCKETS 2176
typedef struct hist {
  _Atomic uint64_t n, sum, max;
  _Atomic uint64_t b[HIST_BUCKETS];
} hist_t;

static inline unsigned hist_index(uint64_t v) {
  unsigned shift = 0;
  if (v >= (1u << (HIST_SUB_BITS + 1))) shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
  uint64_t i = ((uint64_t)shift << HIST_SUB_BITS) + (v >> shift);
  return i < HIST_BUCKETS ? (unsigned)i : HIST_BUCKETS - 1;
}
/* The middle of bucket i's range. */
static inline uint64_t hist_value(unsigned i) {
  if (i < (2u << HIST_SUB_BITS)) return i;
  unsigned shift = (i >> HIST_SUB_BITS) - 1;
  uint64_t mant = i - ((uint64_t)shift << HIST_SUB_BITS);
  return (mant << shift) + ((1ull << shift) >> 1);
}

#define RELAXED memory_order_relaxed
/* Single-writer increment: never an atomic read-modify-write. */
static inline void ctr_add(_Atomic uint64_t *c, uint64_t d) {
  atomic_store_explicit(c, atomic_load_explicit(c, RELAXED) + d, RELAXED);
}
static inline uint64_t ctr_get(_Atomic uint64_t *c) { return atomic_load_explicit(c, RELAXED); }

static inline void hist_add(hist_t *h, uint64_t v) {
  ctr_add(&h->b[hist_index(v)], 1);
  ctr_add(&h->n, 1);
  ctr_add(&h->sum, v);
  if (v > ctr_get(&h->max)) atomic_store_explicit(&h->max, v, RELAXED);
}

/* A plain (non-shared) copy for merging and reading. */
typedef struct hsum {
  uint64_t n, sum, max;
  uint64_t b[HIST_BUCKETS];
} hsum_t;
void hsum_merge(hsum_t *into, hist_t *h);
double hsum_pct(const hsum_t *h, double p); /* microseconds, 0 if empty */

/* ------------------------------------------------------------ errors */

enum {
  ERR_BAD_REQUEST, ERR_NAME_INVALID, ERR_NAME_TAKEN, ERR_ALREADY_JOINED,
  ERR_TAKEN_OVER, ERR_NOT_JOINED, ERR_CONTENT_INVALID, ERR_RATE_LIMITED,
  ERR_UNAVAILABLE, ERR_OTHER, ERR_COUNT
};
extern const char *const load_err_names[ERR_COUNT];

/* Server closes by kind: the RFC 6455 codes Chatter uses, then the rest. */
enum { CL_1000, CL_1001, CL_1008, CL_1009, CL_1011, CL_OTHER_CODE, CL_NO_FRAME, CLOSE_KINDS };
extern const char *const load_close_names[CLOSE_KINDS];

/* ------------------------------------------------------------ counters */

/* One per (worker, scheduler thread): its only writer is that thread. */
typedef struct slot_stats {
  _Atomic uint64_t connected, joined, join_failed, conn_failed, closed_by_server;
  _Atomic uint64_t sends, acks, resends, deliveries, catchup_msgs, dups, order;
  _Atomic uint64_t bytes_in, frames_in, other_pushes, storm_back;
  _Atomic uint64_t diff_bytes; /* of bytes_in: presence_diff payloads */
  _Atomic uint64_t diff_dropped; /* of diff_bytes: discarded in the kernel, never copied */
  _Atomic uint64_t closed_unjoined; /* closed by the server before its first join */
  /* slow sessions (not in closed_by_server: their closing is what the
   * scenario is about), seen when they read again at the drain */
  _Atomic uint64_t slow_closed, slow_closed_1008, slow_pong;
  _Atomic uint64_t errors[ERR_COUNT];
  _Atomic uint64_t closes[CLOSE_KINDS]; /* how the server ended sockets */
  _Atomic uint64_t stage_acks[LOAD_MAX_STAGES], stage_deliveries[LOAD_MAX_STAGES];
  hist_t join, welcome, recovery;
  hist_t deliver[LOAD_MAX_STAGES], sent[LOAD_MAX_STAGES];
} slot_stats_t;

/* Phases, written by the parent only. */
enum { PH_CONNECT, PH_SEND, PH_GAP, PH_DRAIN, PH_DONE };

/* The run's parameters: set by the parent before the fork, read-only after. */
typedef struct load_cfg {
  char host[64];
  int port;
  char path[128];
  uint32_t sessions;      /* sessions that join and read */
  uint32_t slow;          /* extra sessions that join and never read again */
  uint32_t senders;       /* the first `senders` sessions in a stride send */
  uint32_t sender_stride; /* session index of sender s = s * stride */
  uint32_t maxk;          /* messages per sender at most (bitmap width) */
  uint32_t storm;         /* sessions 0..storm-1 drop at once (storm scenario) */
  double ramp_s;
  int workers, threads;
  uint32_t run_id;        /* names and contents carry it, so that runs never mix */
  bool spread;            /* track first/last arrival per message (few senders) */
  uint32_t pad;           /* bytes of filler after each message's fields (--pad) */
  int nstages;
  double stage_rate[LOAD_MAX_STAGES];
} load_cfg_t;

/* The shared region's header; bitmaps and per-message arrays follow it. */
typedef struct load_shared {
  load_cfg_t cfg;
  _Atomic int phase, stage;
  _Atomic int drop;              /* storm: set once, the dropped sessions go */
  _Atomic uint64_t drop_us;      /* when (monotonic microseconds) */
  _Atomic uint64_t ready[LOAD_MAX_WORKERS]; /* sessions spawned per worker */
  slot_stats_t slots[LOAD_MAX_WORKERS][LOAD_MAX_THREADS];
} load_shared_t;

/* Where the variable-length arrays live inside the shared region. */
typedef struct load_maps {
  load_shared_t *sh;
  uint64_t *ack;        /* [senders][words(maxk)]: bit k set when sender s got `sent` for k */
  uint64_t *recv;       /* [sessions][senders][words(maxk)]: what each session received */
  _Atomic uint64_t *first_us, *last_us; /* [senders*maxk], when cfg.spread */
  uint8_t *joined;      /* [sessions]: 1 once the session has joined */
  size_t words;         /* 64-bit words per (session, sender) row */
} load_maps_t;

size_t load_shared_size(const load_cfg_t *c);
void load_maps_set(load_maps_t *m, void *base);

static inline uint64_t *recv_row(const load_maps_t *m, uint32_t session, uint32_t sender) {
  return m->recv + ((size_t)session * m->sh->cfg.senders + sender) * m->words;
}

/* client.c's scanners, exported for the self-test. */
bool load_parse_content(uint32_t run, uint32_t senders, uint32_t maxk, const char *p, const char *end,
                        uint32_t *s, uint32_t *k, int *g, uint64_t *t);
int64_t load_find_seq(const char *p, const char *end);

uint64_t load_now_us(void); /* CLOCK_MONOTONIC: shared by every process of the machine */

/* client.c: run one worker's share of the sessions [first, first+count)
 * (slow sessions are numbered after cfg.sessions), returning at PH_DONE. */
int worker_main(load_maps_t *m, int worker, uint32_t first, uint32_t count);

#endif
