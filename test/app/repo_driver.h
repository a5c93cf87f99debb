/*
 * repo_driver.h -- the driver actor the repo's suites (test_repo.c,
 * fault_repo.c) share: it sends several requests to the writer (repo.0) in
 * one turn, so that they meet in one batch there, and answers the test's
 * act_call once every one is answered.
 *
 * The includer defines CALL_MS (each request's timeout) and may define
 * REPO_DRIVER_CALLOC (default calloc: fault_repo.c allocates the driver's
 * state with the libc's, never failed).
 */
#ifndef CHATTER_TEST_REPO_DRIVER_H
#define CHATTER_TEST_REPO_DRIVER_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "repo.h"

#ifndef REPO_DRIVER_CALLOC
#define REPO_DRIVER_CALLOC calloc
#endif

#define DRIVE 9000
#define DRIVE_MAX 16
#define DRIVE_UNANSWERED -100 /* rc of a request not answered REPO_INSERTED */

/* The test's call (type DRIVE): n requests to send. */
typedef struct drive_req {
    size_t n;
    int type[DRIVE_MAX];
    size_t size[DRIVE_MAX];
    void *data[DRIVE_MAX]; /* owned by the test, alive during the call */
} drive_req_t;

/* The answer (type DRIVE): each request's REPO_INSERTED, or rc
 * DRIVE_UNANSWERED and type the message that ended it instead
 * (ACT_MSG_TIMEOUT: none came in time; 0: refused at once, no memory). */
typedef struct drive_out {
    int rc[DRIVE_MAX];
    int type[DRIVE_MAX];
    bool existed[DRIVE_MAX];
    int64_t seq[DRIVE_MAX];
    char frag[DRIVE_MAX][512];
} drive_out_t;

typedef struct driver {
    act_msg_t *call; /* the test's request, answered when all are in */
    size_t n, got;
    act_ref_t refs[DRIVE_MAX];
    drive_out_t out;
} driver_t;

static int dr_init(void *args, void **state)
{
    (void)args;
    *state = REPO_DRIVER_CALLOC(1, sizeof(driver_t));
    return *state ? ACT_OK : ACT_ENOMEM;
}

static void dr_answer_if_done(driver_t *d)
{
    if (!d->call || d->got != d->n) return;
    act_reply(d->call, DRIVE, &d->out, sizeof d->out);
    act_msg_free(d->call);
    d->call = NULL;
}

static void dr_handle(void *state, act_msg_t *m)
{
    driver_t *d = state;
    if (m->type == DRIVE) {
        const drive_req_t *rq = m->data;
        memset(d, 0, sizeof *d);
        d->call = act_msg_keep(m);
        d->n = rq->n;
        for (size_t i = 0; i < rq->n; i++) {
            d->refs[i] = act_request(repo_writer(), rq->type[i], rq->data[i], rq->size[i],
                                     CALL_MS);
            if (!d->refs[i]) { /* refused at once (no memory): an answer */
                d->out.rc[i] = DRIVE_UNANSWERED;
                d->got++;
            }
        }
        dr_answer_if_done(d);
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        if (!d->refs[i] || d->refs[i] != m->ref) continue;
        d->refs[i] = 0;
        d->out.type[i] = m->type;
        if (m->type == REPO_INSERTED) {
            const repo_inserted_t *r = m->data;
            d->out.rc[i] = r->rc;
            d->out.existed[i] = r->existed;
            d->out.seq[i] = r->seq;
            snprintf(d->out.frag[i], sizeof d->out.frag[i], "%.*s", (int)r->frag_len, r->frag);
        } else {
            d->out.rc[i] = DRIVE_UNANSWERED; /* timed out or something else */
        }
        d->got++;
        dr_answer_if_done(d);
    }
}

static void dr_terminate(void *state, act_reason_t why)
{
    (void)why;
    driver_t *d = state;
    act_msg_free(d->call);
    free(d);
}

static const act_behaviour_t repo_driver = {"driver", dr_init, dr_handle, dr_terminate};

#endif
