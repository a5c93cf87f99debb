/* fault_repo.c: fault injection (SQLite-style) along the repo's part of a
 * join and a send, run in-process on the runtime against the real cluster.
 *
 * Two builds (Makefile):
 *   fault_repo      the app's objects (libchatter.a) with malloc, calloc,
 *                   realloc and strdup renamed to fault_* by objcopy: only the
 *                   app's allocations can fail.  `make test-faults`, and a
 *                   short run in `make test-asan`.
 *   fault_repo_all  -DFAULT_ALL, linked with -Wl,--wrap=...: the runtime's
 *                   allocations too.  `make test-faults-all`, for the report
 *                   (the runtime is not this suite's to fix).
 * libpq, libuv and cJSON allocate for themselves and are never failed.
 *
 * One child process per N: it starts the runtime, a stand-in pubsub and
 * repo.0, then, with the Nth allocation armed to fail once, asks the repo
 * for a new user (join), sends three inserts in one turn (so that one goes
 * alone and two meet in a batch started from the first one's callback),
 * repeats one of them by client_id and looks it up (REPO_FIND_CLIENT_ID).
 * Every request must be answered, with success or `unavailable` (rc < 0), or
 * end with the repo actor's death (a supervisor restarts it; its caller is
 * told noproc); none may go unanswered.  Then the runtime is stopped and the
 * child exits: under ASan+LSan any crash, memory error or leak fails it.
 * The parent first counts the allocations of an unarmed run (T), then runs
 * N = 1..T in steps of FAULT_STRIDE (default 1; `make test-asan` uses a
 * larger stride to stay short).  Prints what each failing N did. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "db.h"
#include "db_test.h"
#include "repo.h"

#define CALL_MS 4000

/* ------------------------------------------------------------ the wrapper */

/* fault_repo: the app's objects call fault_malloc etc. (objcopy), which call
 * libc's; fault_repo_all: every call is wrapped (ld --wrap), the default. */
#ifndef FAULT_ALL
#define FAULT_WRAP(f) fault_##f
#define FAULT_REAL(f) f
#endif
#include "fault_loop.h" /* test/runtime/: the wrappers and main's loop */

/* ------------------------------------------------------------ actors */

static int sink_init(void *args, void **state)
{
    (void)args;
    *state = NULL;
    return ACT_OK;
}
static void sink_handle(void *state, act_msg_t *m)
{
    (void)state;
    (void)m;
}
static const act_behaviour_t sink = {"fault_pubsub", sink_init, sink_handle, NULL};

#define NREQ 3

/* The driver (shared with test_repo.c): its state from the libc's calloc,
 * never failed (the harness's, not the path's). */
#define REPO_DRIVER_CALLOC FAULT_REAL(calloc)
#include "repo_driver.h"

/* ------------------------------------------------------------ one run */

/* An answered call: ok, unavailable, or the repo died (noproc).  A missing
 * answer (timeout) or an unknown rc is a finding. */
static int check_call(const char *what, int rc, act_msg_t *reply, int want_type)
{
    int bad = 0;
    if (rc == ACT_OK) {
        int r = *(const int *)reply->data;
        if (reply->type != want_type || (r != 0 && r != -1 && r != REPO_NOT_FOUND)) bad = 1;
    } else if (rc == ACT_ETIMEDOUT) {
        bad = 1;
    } /* ACT_ENOPROC: the repo died; ACT_ENOMEM: refused at once. */
    if (bad) fprintf(stderr, "  %s: not answered (%s)\n", what, act_strerror(rc));
    act_msg_free(reply);
    return bad;
}

static bool writer_up(void)
{
    for (int i = 0; i < 2000; i++) { /* start-up, before anything is armed */
        if (repo_writer() && repo_database_up()) return true;
        usleep(5000);
    }
    return false;
}

/* The child's whole life; returns its exit code. */
static int one_run(long fail_at, long *count_out)
{
    app_config_load("fault_repo");
    act_config_t cfg = {2, 0};
    if (act_start(&cfg) != ACT_OK) return 10;
    act_spawn_opts_t po = {.name = APP_NAME_PUBSUB};
    act_spawn(&sink, NULL, &po, NULL);
    act_spawn_opts_t wo = {.name = "repo.0", .scheduler = ACT_SCHED_ON(0)};
    act_pid_t w = act_spawn(repo_conn_behaviour(), (void *)(intptr_t)0, &wo, NULL);
    act_spawn_opts_t dopt = {.scheduler = ACT_SCHED_ON(1)};
    act_pid_t drv = act_spawn(&repo_driver, NULL, &dopt, NULL);
    if (!w || !drv || !writer_up()) return 11;

    int bad = 0;
    fault_arm(fail_at);

    repo_name_req_t nq;
    memset(&nq, 0, sizeof nq);
    snprintf(nq.name, sizeof nq.name, "fault-%d-%llu", (int)getpid(),
             (unsigned long long)uv_hrtime());
    act_msg_t *reply = NULL;
    int rc = act_call(repo_writer(), REPO_GET_USER, &nq, sizeof nq, &reply, CALL_MS);
    char uid[PROTO_UUID_LEN + 1] = "";
    if (rc == ACT_OK && reply->type == REPO_USER && ((repo_user_reply_t *)reply->data)->rc == 0)
        snprintf(uid, sizeof uid, "%s", ((repo_user_reply_t *)reply->data)->id);
    bad |= check_call("join: get user", rc, reply, REPO_USER);

    if (uid[0]) {
        /* The writer may have died above: wait for nothing, use whoever is
         * repo.0 (nobody restarts it here; a dead one answers noproc). */
        /* NREQ inserts sent by the driver in one turn (so that one goes
         * alone and two meet in a batch started from the first one's
         * callback); each must be answered, none by its timeout. */
        struct { repo_insert_req_t h; char text[16]; } ins[NREQ];
        drive_req_t dq;
        memset(ins, 0, sizeof ins);
        memset(&dq, 0, sizeof dq);
        dq.n = NREQ;
        for (int i = 0; i < NREQ; i++) {
            snprintf(ins[i].h.user_id, sizeof ins[i].h.user_id, "%s", uid);
            snprintf(ins[i].h.client_id, sizeof ins[i].h.client_id, "f%d", i);
            ins[i].h.content_len = (size_t)snprintf(ins[i].h.content, 16, "fault %d", i);
            dq.type[i] = REPO_INSERT;
            dq.data[i] = &ins[i];
            dq.size[i] = sizeof ins[i];
        }
        reply = NULL;
        rc = act_call(drv, DRIVE, &dq, sizeof dq, &reply, 3 * CALL_MS);
        int timeouts = 0;
        if (rc == ACT_OK)
            for (int i = 0; i < NREQ; i++)
                timeouts += ((const drive_out_t *)reply->data)->type[i] == ACT_MSG_TIMEOUT;
        /* ACT_ENOMEM: the harness's own call was refused at once, no test. */
        if ((rc != ACT_OK && rc != ACT_ENOMEM) || timeouts != 0) {
            fprintf(stderr, "  send: %s\n",
                    rc != ACT_OK ? act_strerror(rc) : "an insert was never answered");
            bad = 1;
        }
        act_msg_free(reply);

        struct { repo_insert_req_t h; char text[16]; } again;
        memset(&again, 0, sizeof again);
        snprintf(again.h.user_id, sizeof again.h.user_id, "%s", uid);
        snprintf(again.h.client_id, sizeof again.h.client_id, "f1");
        again.h.content_len = (size_t)snprintf(again.h.content, 16, "retry");
        reply = NULL;
        rc = act_call(repo_writer(), REPO_INSERT, &again, sizeof again, &reply, CALL_MS);
        bad |= check_call("send: retry by client_id", rc, reply, REPO_INSERTED);

        repo_client_req_t fq;
        memset(&fq, 0, sizeof fq);
        snprintf(fq.user_id, sizeof fq.user_id, "%s", uid);
        snprintf(fq.client_id, sizeof fq.client_id, "f2");
        reply = NULL;
        rc = act_call(repo_writer(), REPO_FIND_CLIENT_ID, &fq, sizeof fq, &reply, CALL_MS);
        bad |= check_call("send: find client_id", rc, reply, REPO_INSERTED);
    }
    *count_out = fault_disarm();
    act_stop_system();
    return bad ? 3 : 0;
}

/* ------------------------------------------------------------ main */

int main(void)
{
    if (db_test_migrate("fault_repo") != 0) return 1;
    repo_mark_migrated();
    int failures = fault_loop("fault_repo", "a join and a send", one_run);
    if (failures < 0) return 1;

    /* The runs' messages and users, so that the lobby holds no test text. */
    PGconn *pg = PQconnectdb(url());
    if (PQstatus(pg) == CONNECTION_OK) {
        PQclear(PQexec(pg, "DELETE FROM messages WHERE user_id IN"
                           " (SELECT id FROM users WHERE name LIKE 'fault-%')"));
        PQclear(PQexec(pg, "DELETE FROM users WHERE name LIKE 'fault-%'"));
    }
    PQfinish(pg);
    return failures ? 1 : 0;
}
