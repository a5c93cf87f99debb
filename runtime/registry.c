/*
 * registry.c -- register/unregister/whereis: a global name table.
 *
 * A small chained hash under one mutex: names are few (repo, pubsub,
 * presence...) and looked up far less often than messages are sent.  A
 * process carries a `has_name` flag so that only named processes pay for the
 * table on exit.  Setting the flag and checking liveness are ordered against
 * the dying process's unpublish-then-check, so a name is never left behind.
 */
#include "act_internal.h"

#include <stdlib.h>
#include <string.h>

#define BUCKETS 256

typedef struct entry {
  struct entry *next;
  act_pid_t pid;
  char name[ACT_NAME_MAX];
} entry_t;

static entry_t *g_buckets[BUCKETS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h % BUCKETS;
}

static entry_t **find(const char *name) {
  entry_t **pp = &g_buckets[hash(name)];
  while (*pp && strcmp((*pp)->name, name) != 0) pp = &(*pp)->next;
  return pp;
}

static bool named(act_pid_t pid) {
  for (int i = 0; i < BUCKETS; i++)
    for (entry_t *e = g_buckets[i]; e; e = e->next)
      if (e->pid == pid) return true;
  return false;
}

/* Caller holds g_mu. */
static int add_locked(const char *name, act_pid_t pid, act_proc_t *p) {
  if (!name || !*name || strlen(name) >= ACT_NAME_MAX) return ACT_EINVAL;
  entry_t **pp = find(name);
  if (*pp || named(pid)) return ACT_EEXIST; /* one name per process, as OTP */
  entry_t *e = calloc(1, sizeof *e);
  if (!e) return ACT_ENOMEM;
  strcpy(e->name, name);
  e->pid = pid;
  *pp = e;
  atomic_store_explicit(&p->has_name, true, memory_order_release); /* die()'s acquire pairs */
  return ACT_OK;
}

int act__registry_add(const char *name, act_pid_t pid, act_proc_t *p) {
  pthread_mutex_lock(&g_mu);
  int rc = add_locked(name, pid, p);
  pthread_mutex_unlock(&g_mu);
  return rc;
}

int act_register(const char *name, act_pid_t pid) {
  act_slot_t *s;
  act_proc_t *p = act__pin(pid, &s);
  if (!p) return ACT_ENOPROC;
  pthread_mutex_lock(&g_mu);
  int rc = add_locked(name, pid, p);
  /* seq_cst: after has_name's store, against die()'s unpublish-then-check */
  if (rc == ACT_OK && atomic_load(&s->pid) != pid) { /* died meanwhile */
    entry_t **pp = find(name);
    entry_t *e = *pp;
    *pp = e->next;
    free(e);
    rc = ACT_ENOPROC;
  }
  pthread_mutex_unlock(&g_mu);
  act__unpin(s);
  return rc;
}

int act_unregister(const char *name) {
  pthread_mutex_lock(&g_mu);
  entry_t **pp = find(name);
  entry_t *e = *pp;
  if (e) *pp = e->next;
  pthread_mutex_unlock(&g_mu);
  free(e);
  return e ? ACT_OK : ACT_EINVAL;
}

act_pid_t act_whereis(const char *name) {
  pthread_mutex_lock(&g_mu);
  entry_t *e = *find(name);
  act_pid_t pid = e ? e->pid : ACT_NOPID;
  pthread_mutex_unlock(&g_mu);
  return pid;
}

void act__registry_drop_pid(act_pid_t pid) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < BUCKETS; i++) {
    entry_t **pp = &g_buckets[i];
    while (*pp) {
      if ((*pp)->pid == pid) {
        entry_t *e = *pp;
        *pp = e->next;
        free(e);
      } else {
        pp = &(*pp)->next;
      }
    }
  }
  pthread_mutex_unlock(&g_mu);
}

void act__registry_name_of(act_pid_t pid, char *out, size_t cap) {
  out[0] = 0;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < BUCKETS && !out[0]; i++)
    for (entry_t *e = g_buckets[i]; e; e = e->next)
      if (e->pid == pid) {
        snprintf(out, cap, "%s", e->name);
        break;
      }
  pthread_mutex_unlock(&g_mu);
}

void act__registry_clear(void) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < BUCKETS; i++) {
    while (g_buckets[i]) {
      entry_t *e = g_buckets[i];
      g_buckets[i] = e->next;
      free(e);
    }
  }
  pthread_mutex_unlock(&g_mu);
}
