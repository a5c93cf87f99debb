/*
 * act_debug.h -- invariants checked in debug builds, as Lua's api_check:
 * ACT_DEBUG_ASSERT(cond) at every state transition of an actor, a
 * supervisor child, a connection and a session (runtime and app alike).
 *
 * On in the sanitizer builds (make test-asan, test-tsan) and with
 * -DACT_DEBUG; the plain build pays nothing (the condition is not even
 * evaluated).  A broken invariant is a bug, never a crash to contain: it
 * aborts with where and what, outside any actor's crash handling.
 */
#ifndef ACT_DEBUG_H
#define ACT_DEBUG_H

#include <stdio.h>
#include <stdlib.h>

#if defined(ACT_DEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ACT_DEBUG_ON 1
#define ACT_DEBUG_ASSERT(cond)                                                          \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      fprintf(stderr, "act: invariant broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                                          \
    }                                                                                   \
  } while (0)
#else
#define ACT_DEBUG_ON 0
#define ACT_DEBUG_ASSERT(cond) ((void)0)
#endif

#endif
