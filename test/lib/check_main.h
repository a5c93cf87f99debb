/*
 * check_main.h -- the Check boilerplate every C suite (test/runtime/,
 * test/app/) would otherwise write out: a test case with its checked fixture
 * and timeout, and running a suite to an exit status.  Check alone: the
 * runtime's suites include it (through rt_test.h) and build with the
 * runtime alone.
 */
#ifndef CHATTER_TEST_CHECK_MAIN_H
#define CHATTER_TEST_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

/* A test case named name in s, with setup and teardown run around each
 * test in its own process (a checked fixture; either may be NULL) and a
 * timeout of timeout_s seconds; add the tests to what it returns. */
static inline TCase *checked_case(Suite *s, const char *name, void (*setup)(void),
                                  void (*teardown)(void), double timeout_s)
{
    TCase *c = tcase_create(name);
    tcase_add_checked_fixture(c, setup, teardown);
    tcase_set_timeout(c, timeout_s);
    suite_add_tcase(s, c);
    return c;
}

/* Runs every test of s (mode: CK_ENV reads CK_VERBOSITY, e.g. verbose to
 * list each test); returns how many failed. */
static inline int run_suite(Suite *s, enum print_output mode)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, mode);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

/* A suite's whole main(): suite_fn's suite run, EXIT_SUCCESS if none failed. */
#define CHECK_MAIN(suite_fn, mode)                                        \
    int main(void)                                                        \
    {                                                                     \
        return run_suite(suite_fn(), mode) == 0 ? EXIT_SUCCESS : EXIT_FAILURE; \
    }

#endif
