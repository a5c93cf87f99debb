/*
 * pg_stop.h -- hang a PostgreSQL backend on purpose (SIGSTOP) in a Check
 * suite, and be sure it is resumed.  Each stopped pid is written to
 * PG_STOPPED_FILE before the signal, so that the suite's main() resumes it
 * (pg_resume_stopped) even when a test dies midway: a stopped backend left
 * behind would hang every later suite on the same cluster.
 *
 * Define PG_STOPPED_FILE (one per suite, under _build/) before including.
 */
#ifndef CHATTER_TEST_PG_STOP_H
#define CHATTER_TEST_PG_STOP_H

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void stop_backend(int pid)
{
    FILE *f = fopen(PG_STOPPED_FILE, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%d\n", pid);
    fclose(f);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
}

static void resume_stopped(void)
{
    FILE *f = fopen(PG_STOPPED_FILE, "r");
    if (!f) return;
    int pid;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid > 0) kill(pid, SIGCONT);
    fclose(f);
    unlink(PG_STOPPED_FILE);
}

#endif
