/*
 * Small formatting helpers for hot paths, where snprintf is a visible share of a request. Pure code.
 */
#ifndef SK_FMT_H
#define SK_FMT_H

#include <stdint.h>

/** Writes the decimal form of v (no padding, no NUL) at p and returns the end; p needs 20 bytes. */
char *sk_put_i64(char *p, int64_t v);

#endif
