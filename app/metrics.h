/*
 * metrics.h -- /metrics and /healthz, rendered on request (metrics.c).
 */
#ifndef CHATTER_METRICS_H
#define CHATTER_METRICS_H

#include <stdbool.h>
#include <stddef.h>

/* The Prometheus text exposition (version 0.0.4); malloc'd, NULL out of memory. */
char *metrics_render(size_t *len);
/* For /healthz: the tree's named actors are alive and the database answers. */
bool metrics_healthy(void);

#endif
