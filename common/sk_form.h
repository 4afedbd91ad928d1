/*
 * Query-string and x-www-form-urlencoded parsing with hard bounds. Pure code.
 */
#ifndef SK_FORM_H
#define SK_FORM_H

#include <stddef.h>
#include <stdint.h>

#define SK_FORM_MAX_PARAMS 32

typedef struct st_sk_form_param_t {
    char name[32];
    char *value; /* decoded, NUL-terminated, points into the form's buffer */
    size_t len;
} sk_form_param_t;

typedef struct st_sk_form_t {
    sk_form_param_t params[SK_FORM_MAX_PARAMS];
    size_t n;
    char buf[8192]; /* decoded values */
    size_t used;
    char error[96]; /* set when sk_form_parse fails: names the offending parameter */
} sk_form_t;

/** Parses `a=1&b=2` (no leading '?'), appending to f (call sk_form_init first). Fails (-1, f->error set) on malformed
 * percent-encoding, a name over 31 bytes, a duplicate name, too many parameters, or values over the buffer. Also fails on
 * a decoded NUL byte, and on a name that is not printable ASCII (so that f->error, "<name>: <problem>", can name it). */
void sk_form_init(sk_form_t *f);
int sk_form_parse(sk_form_t *f, const char *s, size_t len);
/** The parameter's value, or NULL. */
const sk_form_param_t *sk_form_get(const sk_form_t *f, const char *name);
/** Strict decimal integer in [min, max]: digits only, no sign, no leading '+', no spaces, no leading zeros. 0 or -1. */
int sk_parse_int64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);

#endif
