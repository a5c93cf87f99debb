/*
 * envelope.c -- the envelope every message and signal travels in: made with
 * its payload in one allocation, recycled per scheduler thread, freed.
 */
#include "act_internal.h"

#include <stdio.h>
#include <time.h>

#include <stdlib.h>
#include <string.h>

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
static _Thread_local act_env_t *tls_env_cache; /* a stack, linked by qnode.next */
static _Thread_local unsigned tls_env_cached;
static _Thread_local bool tls_env_caching;

void act__env_cache(bool on) {
  tls_env_caching = on && ENV_CACHE;
  while (!tls_env_caching && tls_env_cache) {
    act_env_t *e = tls_env_cache;
    tls_env_cache = e->qnode.next ? ACT_QUEUE_DATA(e->qnode.next, act_env_t, qnode) : NULL;
    free(e);
  }
  if (!tls_env_caching) tls_env_cached = 0;
}

act_env_t *act__env_new(int type, act_pid_t from, act_ref_t ref,
                        const void *data, size_t size, act_payload_free_fn fn) {
  act_env_t *e;
  if (size <= ENV_SMALL && tls_env_cache) {
    e = tls_env_cache;
    tls_env_cache = e->qnode.next ? ACT_QUEUE_DATA(e->qnode.next, act_env_t, qnode) : NULL;
    tls_env_cached--;
  } else {
    e = malloc(sizeof *e + (size <= ENV_SMALL ? ENV_SMALL : size));
    if (!e) return NULL;
  }
  e->qnode.next = NULL;
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

/* Death signals (an EXIT through a link, a DOWN, a trapped EXIT made a
 * message, a failed start's ack) must not be lost: whoever waits for one
 * would wait for ever (a supervisor for its child's end, a caller for its
 * callee's).  Their envelope is tried again every 1 ms for up to
 * ACT__SIGNAL_RETRY_MS, which stalls this scheduler meanwhile, before the
 * signal is given up, with a line on stderr. */
void act__nap_1ms(void) {
  struct timespec ts = {0, 1000000L};
  nanosleep(&ts, NULL);
}

act_env_t *act__env_must(int type, act_pid_t from, act_ref_t ref, const void *data,
                         size_t size, act_payload_free_fn fn) {
  act_env_t *e;
  ACT__RETRY_OOM((e = act__env_new(type, from, ref, data, size, fn)) != NULL);
  if (!e)
    fprintf(stderr, "act: out of memory: signal %d from %#llx lost\n", type,
            (unsigned long long)from);
  return e;
}

void act__env_free(act_env_t *e) {
  if (e->free_fn) e->free_fn(e->payload, e->msg.size);
  if (e->msg.size <= ENV_SMALL && tls_env_caching && tls_env_cached < ENV_CACHE_MAX) {
    e->qnode.next = tls_env_cache ? &tls_env_cache->qnode : NULL;
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
