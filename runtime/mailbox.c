/*
 * mailbox.c -- the lock-free multi-producer single-consumer queue under every
 * mailbox and every run queue.
 *
 * Dmitry Vyukov's intrusive design: producers append with one atomic
 * exchange of the head and then link the previous node to theirs; the single
 * consumer walks from the tail.  Between those two producer steps the queue
 * looks empty past the previous node, so pop() can answer NULL although a
 * push is under way: callers keep an element count beside the queue and come
 * back when it says there is more (see act__turn in actor.c).
 */
#include "act_internal.h"

void act__mpsc_init(act_mpsc_t *q) {
  /* relaxed: the queue is not shared yet; publishing its owner publishes it */
  atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
  atomic_store_explicit(&q->head, &q->stub, memory_order_relaxed);
  q->tail = &q->stub;
}

void act__mpsc_push(act_mpsc_t *q, act_node_t *n) {
  atomic_store_explicit(&n->next, NULL, memory_order_relaxed); /* released by the exchange */
  /* acq_rel: release our node's contents to the consumer; acquire prev's
   * next field from the producer that exchanged before us */
  act_node_t *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
  atomic_store_explicit(&prev->next, n, memory_order_release); /* the consumer's acquire pairs */
}

act_node_t *act__mpsc_pop(act_mpsc_t *q) {
  act_node_t *tail = q->tail;
  /* acquire (all loads below): pairs with push's release, so a node's
   * contents are visible once it is reachable */
  act_node_t *next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (tail == &q->stub) {
    if (next == NULL) return NULL;
    q->tail = next;
    tail = next;
    next = atomic_load_explicit(&next->next, memory_order_acquire);
  }
  if (next) {
    q->tail = next;
    return tail;
  }
  if (tail != atomic_load_explicit(&q->head, memory_order_acquire))
    return NULL; /* a producer is between its two steps */
  act__mpsc_push(q, &q->stub);
  next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (next) {
    q->tail = next;
    return tail;
  }
  return NULL;
}
