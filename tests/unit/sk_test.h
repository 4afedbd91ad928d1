/*
 * A tiny test harness in the spirit of libuv's task.h: ASSERT_* print both values and the line, then abort.
 */
#ifndef SK_TEST_H
#define SK_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int sk_test_count;

#define ASSERT(c)                                                                                                                  \
    do {                                                                                                                           \
        if (!(c)) {                                                                                                                \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c);                                              \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)
#define ASSERT_EQ(a, b)                                                                                                            \
    do {                                                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                                                        \
        if (_a != _b) {                                                                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, _a, _b);                         \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)
#define ASSERT_STREQ(a, b)                                                                                                         \
    do {                                                                                                                           \
        const char *_a = (a), *_b = (b);                                                                                           \
        if (_a == NULL || _b == NULL || strcmp(_a, _b) != 0) {                                                                     \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b, _a ? _a : "(null)",          \
                    _b ? _b : "(null)");                                                                                           \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)
#define RUN(fn)                                                                                                                    \
    do {                                                                                                                           \
        fn();                                                                                                                      \
        sk_test_count++;                                                                                                           \
        fprintf(stderr, "ok %s\n", #fn);                                                                                           \
    } while (0)
#define DONE()                                                                                                                     \
    do {                                                                                                                           \
        printf("%d passed, 0 failed\n", sk_test_count);                                                                            \
        return 0;                                                                                                                  \
    } while (0)

#endif
