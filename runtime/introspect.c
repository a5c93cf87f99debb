/*
 * introspect.c -- what the runtime tells about its processes: a snapshot of
 * one (act_info_of) or all (act_list) read from outside while they run, and
 * process_info, answered by the process itself between its turns.
 */
#include "act_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_info(act_proc_t *p, act_info_t *o) {
  memset(o, 0, sizeof *o);
  o->pid = p->pid;
  snprintf(o->behaviour, sizeof o->behaviour, "%s", p->b && p->b->name ? p->b->name : "");
  o->parent = p->parent;
  /* relaxed: statistics, read while the owner runs; a snapshot, not a fact */
  o->mailbox_len = atomic_load_explicit(&p->pending, memory_order_relaxed);
  o->messages = atomic_load_explicit(&p->handled, memory_order_relaxed);
  o->restarts = atomic_load_explicit(&p->restarts, memory_order_relaxed);
  o->children = atomic_load_explicit(&p->children, memory_order_relaxed);
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
    act_pid_t pid = atomic_load_explicit(&act__slot_at(i)->pid, memory_order_relaxed); /* a hint: pin checks */
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

/* process_info, answered by the process itself between turns. */
void act__answer_info(act_proc_t *p, act_msg_t *m) {
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

