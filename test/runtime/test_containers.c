/*
 * test_containers.c -- the tree's one string builder (buf.h), growable
 * array (vec.h) and intrusive FIFO (queue.h): contents after growth past
 * each first allocation, the sticky out-of-memory rule (a request no
 * allocation can meet fails, changes nothing, and every later append is
 * ignored until the one check at the end), FIFO order and emptiness.
 * No runtime is started: these are plain data structures.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "queue.h"
#include "vec.h"

START_TEST(buf_appends_grow_and_terminate) {
  act_buf_t b = ACT_BUF_INIT;
  ck_assert_ptr_null(b.p);
  act_buf_lit(&b, "ab");
  act_buf_putc(&b, 'c');
  act_buf_puts(&b, "de");
  act_buf_printf(&b, "-%d-%s", 42, "x");
  ck_assert_str_eq(b.p, "abcde-42-x");
  ck_assert_uint_eq(b.len, 10);
  /* past ACT_BUF_MIN several times: one byte at a time, then a long printf */
  for (int i = 0; i < 1000; i++) act_buf_putc(&b, (char)('a' + i % 26));
  ck_assert_uint_eq(b.len, 1010);
  ck_assert_uint_ge(b.cap, 1011);
  ck_assert_int_eq(b.p[b.len], '\0');
  char big[3000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  act_buf_printf(&b, "<%s>", big); /* longer than the room: the second vsnprintf */
  ck_assert_uint_eq(b.len, 1010 + 3001);
  ck_assert_int_eq(b.p[1010], '<');
  ck_assert_int_eq(b.p[b.len - 1], '>');
  ck_assert_int_eq(b.p[b.len], '\0');
  ck_assert(!b.oom);
  size_t len;
  char *s = act_buf_take(&b, &len);
  ck_assert_uint_eq(len, 4011);
  ck_assert_ptr_null(b.p); /* emptied: the bytes are ours now */
  ck_assert_uint_eq(b.len, 0);
  free(s);
  /* nothing appended: take gives NULL, and length 0 */
  ck_assert_ptr_null(act_buf_take(&b, &len));
  ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(buf_oom_is_sticky_and_changes_nothing) {
  act_buf_t b = ACT_BUF_INIT;
  act_buf_lit(&b, "kept");
  char *before = b.p;
  ck_assert(!act_buf_reserve(&b, SIZE_MAX - 8)); /* no allocation can meet it */
  ck_assert(b.oom);
  ck_assert_ptr_eq(b.p, before); /* the block was not touched */
  ck_assert_str_eq(b.p, "kept");
  act_buf_lit(&b, "more");        /* ignored: the flag is sticky */
  act_buf_putc(&b, '!');
  act_buf_printf(&b, "%d", 1);
  ck_assert_uint_eq(b.len, 4);
  ck_assert_str_eq(b.p, "kept");
  size_t len = 99;
  ck_assert_ptr_null(act_buf_take(&b, &len)); /* the one check at the end */
  ck_assert_uint_eq(len, 0);
  ck_assert(!b.oom); /* take leaves an empty, usable builder */
  act_buf_lit(&b, "again");
  ck_assert_str_eq(b.p, "again");
  act_buf_free(&b);
  ck_assert_ptr_null(b.p);
}
END_TEST

START_TEST(vec_push_grows_and_zeroes) {
  ACT_VEC(uint64_t) v = ACT_VEC_INIT;
  for (uint64_t i = 0; i < 1000; i++) {
    uint64_t *e = act_vec_push(&v);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(*e, 0); /* pushed elements are zeroed */
    *e = i * 3;
  }
  ck_assert_uint_eq(v.n, 1000);
  ck_assert_uint_ge(v.cap, 1000);
  for (uint64_t i = 0; i < 1000; i++) ck_assert_uint_eq(v.v[i], i * 3);
  act_vec_swap_remove(&v, 0);
  ck_assert_uint_eq(v.n, 999);
  ck_assert_uint_eq(v.v[0], 999 * 3); /* the last took the hole */
  act_vec_free(&v);
  ck_assert_ptr_null(v.v);
  ck_assert_uint_eq(v.n + v.cap, 0);
}
END_TEST

START_TEST(vec_failed_growth_changes_nothing) {
  ACT_VEC(uint64_t) v = ACT_VEC_INIT;
  *act_vec_push(&v) = 7;
  uint64_t *before = v.v;
  size_t cap = v.cap;
  ck_assert(!act_vec_reserve(&v, SIZE_MAX / 4)); /* more bytes than exist */
  ck_assert_ptr_eq(v.v, before);
  ck_assert_uint_eq(v.cap, cap);
  ck_assert_uint_eq(v.n, 1);
  ck_assert_uint_eq(v.v[0], 7);
  act_vec_free(&v);
}
END_TEST

typedef struct item {
  int value;
  act_qnode_t node;
} item_t;

START_TEST(queue_is_fifo) {
  act_queue_t q = ACT_QUEUE_INIT;
  item_t it[5];
  ck_assert(act_queue_empty(&q));
  ck_assert_ptr_null(act_queue_pop(&q));
  for (int i = 0; i < 5; i++) {
    it[i].value = i;
    act_queue_push(&q, &it[i].node);
  }
  int seen = 0;
  ACT_QUEUE_FOREACH(n, &q) ck_assert_int_eq(ACT_QUEUE_DATA(n, item_t, node)->value, seen++);
  ck_assert_int_eq(seen, 5);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(ACT_QUEUE_DATA(act_queue_pop(&q), item_t, node)->value, i);
  act_queue_push(&q, &it[0].node); /* behind 3 and 4 */
  ck_assert_int_eq(ACT_QUEUE_DATA(act_queue_pop(&q), item_t, node)->value, 3);
  act_qnode_t *all = act_queue_take_all(&q);
  ck_assert(act_queue_empty(&q));
  ck_assert_int_eq(ACT_QUEUE_DATA(all, item_t, node)->value, 4);
  ck_assert_int_eq(ACT_QUEUE_DATA(all->next, item_t, node)->value, 0);
  ck_assert_ptr_null(all->next->next);
  /* popping the last leaves it usable: the tail was reset */
  act_queue_push(&q, &it[1].node);
  ck_assert_ptr_eq(act_queue_pop(&q), &it[1].node);
  ck_assert(act_queue_empty(&q));
  ck_assert_ptr_null(q.tail);
}
END_TEST

static Suite *containers_suite(void) {
  Suite *s = suite_create("containers");
  TCase *tc = tcase_create("containers");
  tcase_add_test(tc, buf_appends_grow_and_terminate);
  tcase_add_test(tc, buf_oom_is_sticky_and_changes_nothing);
  tcase_add_test(tc, vec_push_grows_and_zeroes);
  tcase_add_test(tc, vec_failed_growth_changes_nothing);
  tcase_add_test(tc, queue_is_fifo);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(containers_suite());
  srunner_run_all(sr, CK_ENV);
  int nf = srunner_ntests_failed(sr);
  srunner_free(sr);
  return nf ? EXIT_FAILURE : EXIT_SUCCESS;
}
