/*
 * db_test.h -- what the suites against the real PostgreSQL (test_db.c,
 * test_repo.c, fault_repo.c) share in main(): the database's URL
 * ($DATABASE_URL: the Makefile sets it to the private cluster of
 * sql/devdb.sh), the migrations every case needs whichever cases
 * CK_RUN_CASE selects, and running a Check suite (check_main.h).
 */
#ifndef CHATTER_TEST_DB_TEST_H
#define CHATTER_TEST_DB_TEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "../lib/check_main.h"
#include "db.h"

static inline const char *url(void)
{
    const char *u = getenv("DATABASE_URL");
    return u ? u : "";
}

/* Refuses to run without $DATABASE_URL, then migrates it; prints why under
 * the program's name and returns non-zero when either fails. */
static inline int db_test_migrate(const char *prog)
{
    if (!getenv("DATABASE_URL")) {
        fprintf(stderr, "%s: set DATABASE_URL (e.g. $(bash sql/devdb.sh url))\n", prog);
        return 1;
    }
    char err[512] = "";
    if (db_migrate(url(), "sql", NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s: migrations failed: %s\n", prog, err);
        return 1;
    }
    return 0;
}

/* Runs the suite (CK_ENV: CK_VERBOSITY=verbose lists each test); returns how
 * many of its tests failed. */
static inline int db_test_run(Suite *s)
{
    return run_suite(s, CK_ENV);
}

#endif
