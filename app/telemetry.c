/*
 * telemetry.c -- the counters behind /metrics (metrics.c renders them).
 *
 * Counters are process-wide atomics that any actor bumps without a message
 * (a message per event would cost more than the event): one relaxed
 * fetch_add each, and nothing here calls into another app file.
 *
 * Kind: process-wide counters (telemetry.h), bumped from any thread.
 */
#include "app.h"
#include "telemetry.h"

#include <stdatomic.h>

static _Atomic long g_metrics[TM_COUNT];

void tm_add(int metric, long delta) { atomic_fetch_add_explicit(&g_metrics[metric], delta, memory_order_relaxed); }
long tm_get(int metric) { return atomic_load_explicit(&g_metrics[metric], memory_order_relaxed); }
