/*
 * queue.h -- the one intrusive FIFO of the tree (runtime and app), after
 * libuv's queue.h: the node lives inside the element (no allocation to
 * queue anything), and the element is found back with ACT_QUEUE_DATA.
 *
 *   struct frame { act_qnode_t node; ... };
 *   act_queue_t q = ACT_QUEUE_INIT;
 *   act_queue_push(&q, &f->node);
 *   act_qnode_t *n = act_queue_pop(&q);      NULL when empty
 *   struct frame *f = ACT_QUEUE_DATA(n, struct frame, node);
 *
 * Singly linked, one pointer per element: push at the tail, pop at the
 * head, each O(1), nothing allocated, so nothing can fail.  Not
 * thread-safe (the runtime's cross-thread queue is mailbox.c's MPSC).
 */
#ifndef ACT_QUEUE_H
#define ACT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct act_qnode {
  struct act_qnode *next;
} act_qnode_t;

typedef struct act_queue {
  act_qnode_t *head; /* next to pop */
  act_qnode_t *tail; /* last pushed */
} act_queue_t;

#define ACT_QUEUE_INIT {NULL, NULL}
#define ACT_QUEUE_DATA(node, type, field) ((type *)((char *)(node) - offsetof(type, field)))
/* Every node from head to tail; n must not be popped inside the loop. */
#define ACT_QUEUE_FOREACH(n, q) for (act_qnode_t *n = (q)->head; n; n = n->next)

static inline bool act_queue_empty(const act_queue_t *q) { return !q->head; }

static inline void act_queue_push(act_queue_t *q, act_qnode_t *n) {
  n->next = NULL;
  if (q->tail) q->tail->next = n;
  else q->head = n;
  q->tail = n;
}

static inline act_qnode_t *act_queue_pop(act_queue_t *q) {
  act_qnode_t *n = q->head;
  if (n) {
    q->head = n->next;
    if (!q->head) q->tail = NULL;
  }
  return n;
}

/* Takes every node at once (the caller walks n->next); q is left empty. */
static inline act_qnode_t *act_queue_take_all(act_queue_t *q) {
  act_qnode_t *n = q->head;
  q->head = q->tail = NULL;
  return n;
}

#endif
