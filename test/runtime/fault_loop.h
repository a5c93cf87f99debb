/*
 * fault_loop.h -- SQLite-style fault injection shared by the runtime's
 * fault test (fault_runtime.c) and the app's (test/app/fault_repo.c):
 * allocation wrappers that fail the Nth allocation once armed, and the
 * parent's loop that forks one child per N.
 *
 * The wrappers are FAULT_WRAP(malloc) etc. calling FAULT_REAL(malloc) etc.;
 * by default __wrap_* and __real_* (the file is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup).  Define
 * both before including to use other names (fault_repo.c: fault_* over the
 * libc ones, for objects whose calls objcopy renamed).
 *
 * Needs only libc and the runtime's headers: the runtime's tests build with
 * the runtime alone, and the app's fault test includes this too.
 */
#ifndef FAULT_LOOP_H
#define FAULT_LOOP_H

#include <execinfo.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FAULT_WRAP
#define FAULT_WRAP(f) __wrap_##f
#define FAULT_REAL(f) __real_##f
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
#endif

static atomic_bool g_armed;
static atomic_long g_count; /* allocations since armed */
static long g_fail_at;      /* 0: none */
static bool g_trace;        /* FAULT_TRACE=1: print the failed allocation's stack */

/* ASan's, when linked in. */
extern void __sanitizer_print_stack_trace(void) __attribute__((weak));

static bool fail_now(void) {
  if (!atomic_load_explicit(&g_armed, memory_order_relaxed)) return false;
  long k = atomic_fetch_add(&g_count, 1) + 1;
  if (k != g_fail_at) return false;
  if (g_trace && __sanitizer_print_stack_trace) {
    __sanitizer_print_stack_trace();
  } else if (g_trace) { /* the plain build: glibc's (it may allocate: disarm first) */
    atomic_store(&g_armed, false);
    void *pcs[16];
    backtrace_symbols_fd(pcs, backtrace(pcs, 16), 2);
    atomic_store(&g_armed, true);
  }
  return true;
}

void *FAULT_WRAP(malloc)(size_t n);
void *FAULT_WRAP(calloc)(size_t n, size_t size);
void *FAULT_WRAP(realloc)(void *p, size_t n);
char *FAULT_WRAP(strdup)(const char *s);
void *FAULT_WRAP(malloc)(size_t n) { return fail_now() ? NULL : FAULT_REAL(malloc)(n); }
void *FAULT_WRAP(calloc)(size_t n, size_t size) {
  return fail_now() ? NULL : FAULT_REAL(calloc)(n, size);
}
void *FAULT_WRAP(realloc)(void *p, size_t n) { return fail_now() ? NULL : FAULT_REAL(realloc)(p, n); }
char *FAULT_WRAP(strdup)(const char *s) { return fail_now() ? NULL : FAULT_REAL(strdup)(s); }

/* Arms the Nth allocation from now to fail (0: none, only counted). */
static void fault_arm(long fail_at) {
  g_fail_at = fail_at;
  atomic_store(&g_count, 0);
  atomic_store(&g_armed, true);
}

/* Disarms; returns how many allocations were made while armed. */
static long fault_disarm(void) {
  atomic_store(&g_armed, false);
  return atomic_load(&g_count);
}

/* The parent: counts the allocations of an unarmed run (T) in a child, then
 * runs one child per N = 1..T in steps of FAULT_STRIDE (default 1), or only
 * N = FAULT_ONLY; each child's life is one_run(N, &count), its exit code.
 * A child that exits non-zero or is killed is a failure, printed with its N.
 * `name` prefixes every line, `path` says what the runs go along.  Returns
 * -1 when the unarmed run failed, else the number of failed runs. */
static int fault_loop(const char *name, const char *path, int (*one_run)(long, long *)) {
  long stride = getenv("FAULT_STRIDE") ? atol(getenv("FAULT_STRIDE")) : 1;
  long only = getenv("FAULT_ONLY") ? atol(getenv("FAULT_ONLY")) : 0; /* one N */
  g_trace = getenv("FAULT_TRACE") != NULL;
  if (stride < 1) stride = 1;

  /* The unarmed run: how many allocations the path makes. */
  int pipefd[2];
  if (pipe(pipefd) != 0) return -1;
  pid_t p = fork();
  if (p == 0) {
    long count = 0;
    int code = one_run(0, &count);
    if (write(pipefd[1], &count, sizeof count) != sizeof count) code = 12;
    _exit(code);
  }
  long total = 0;
  int st;
  if (read(pipefd[0], &total, sizeof total) != sizeof total) total = 0;
  waitpid(p, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || total <= 0) {
    fprintf(stderr, "%s: the unarmed run failed (status %d)\n", name, st);
    return -1;
  }
  printf("%s: %ld allocations along %s; failing N = 1..%ld step %ld\n", name, total, path, total,
         stride);
  fflush(stdout);

  int failures = 0, runs = 0;
  for (long n = only ? only : 1; n <= (only ? only : total); n += stride) {
    fflush(stdout);
    fflush(stderr);
    p = fork();
    if (p == 0) {
      long count = 0;
      exit(one_run(n, &count)); /* exit(), not _exit(): LSan checks at exit */
    }
    waitpid(p, &st, 0);
    runs++;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      failures++;
      if (WIFSIGNALED(st)) printf("%s: N=%ld: killed by signal %d\n", name, n, WTERMSIG(st));
      else printf("%s: N=%ld: exit %d\n", name, n, WEXITSTATUS(st));
    }
  }
  printf("%s: %d runs, %d failed\n", name, runs, failures);
  return failures;
}

#endif
