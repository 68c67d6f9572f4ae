/*
 * check.h: the assertions of the C unit tests. Each CHECK counts a pass or a
 * failure (printed with file:line) and goes on; CHECK_DONE() prints
 * "N passed, M failed" and is main's return value (non-zero on any failure).
 */
#ifndef RTU_TEST_CHECK_H
#define RTU_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed __attribute__((unused));
static int check_failed __attribute__((unused));

#define CHECK_FAIL_(...)                                                                      \
  do {                                                                                        \
    check_failed++;                                                                           \
    fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                                     \
    fprintf(stderr, __VA_ARGS__);                                                             \
    fputc('\n', stderr);                                                                      \
  } while (0)

/* CHECK(cond) or CHECK(cond, "printf format", args...) for the failure line. */
#define CHECK(...) CHECK_N_(__VA_ARGS__, CHECK_M_, CHECK_M_, CHECK_M_, CHECK_M_, CHECK_M_,      \
                            CHECK_M_, CHECK_M_, CHECK_M_, CHECK_1_, _)(__VA_ARGS__)
#define CHECK_N_(a, b, c, d, e, f, g, h, i, NAME, ...) NAME
#define CHECK_1_(cond)                                                                        \
  do {                                                                                        \
    if (cond) check_passed++;                                                                 \
    else CHECK_FAIL_("%s", #cond);                                                            \
  } while (0)
#define CHECK_M_(cond, ...)                                                                   \
  do {                                                                                        \
    if (cond) check_passed++;                                                                 \
    else {                                                                                    \
      CHECK_FAIL_("%s", #cond);                                                               \
      fprintf(stderr, "    ");                                                                \
      fprintf(stderr, __VA_ARGS__);                                                           \
      fputc('\n', stderr);                                                                    \
    }                                                                                         \
  } while (0)

/* Integers (any integer type, compared as long long). */
#define CHECK_EQ(a, b)                                                                        \
  do {                                                                                        \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                           \
    if (check_a_ == check_b_) check_passed++;                                                 \
    else CHECK_FAIL_("%s == %s: %lld != %lld", #a, #b, check_a_, check_b_);                   \
  } while (0)

/* Strings; NULL only equals NULL. */
#define CHECK_STR(a, b)                                                                       \
  do {                                                                                        \
    const char *check_a_ = (a), *check_b_ = (b);                                              \
    if (check_a_ == check_b_ || (check_a_ && check_b_ && !strcmp(check_a_, check_b_)))        \
      check_passed++;                                                                         \
    else                                                                                      \
      CHECK_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, check_a_ ? check_a_ : "(null)",        \
                  check_b_ ? check_b_ : "(null)");                                            \
  } while (0)

/* hay contains needle. */
#define CHECK_HAS(hay, needle)                                                                \
  do {                                                                                        \
    const char *check_h_ = (hay), *check_n_ = (needle);                                       \
    if (check_h_ && strstr(check_h_, check_n_)) check_passed++;                               \
    else CHECK_FAIL_("%s contains \"%s\": got \"%s\"", #hay, check_n_,                        \
                     check_h_ ? check_h_ : "(null)");                                         \
  } while (0)

#define CHECK_DONE()                                                                          \
  (printf("%d passed, %d failed\n", check_passed, check_failed), fflush(stdout),              \
   check_failed ? 1 : 0)

#endif
