/*
 * SPEC §3 parameter rules of the /sec/ endpoints. Pure code over a parsed sk_form_t.
 */
#ifndef SK_ACCESS_PARAMS_H
#define SK_ACCESS_PARAMS_H

#include <stddef.h>
#include <stdint.h>
#include "sk_form.h"

#define SK_ACCESS_NANCE_MIN 8
#define SK_ACCESS_NANCE_MAX 64
#define SK_ACCESS_SRC_MAX 64

/** The parameters of a signed request (/sec/kill, /sec/result). Strings point into the form. */
typedef struct st_sk_access_signed_t {
    int64_t product_id, user_id, time;
    const char *nance;
    size_t nance_len;
    const char *auth_code; /* 64 hex characters */
    const char *src;       /* NULL when absent */
    size_t src_len;
} sk_access_signed_t;

/** product_id alone (/sec/info). 0, or -1 with msg naming the parameter. */
int sk_access_params_product(const sk_form_t *f, int64_t *product_id, char *msg, size_t msglen);
/** Every parameter of a signed request, checked in the order product_id, user_id, time, nance, auth_code, src. 0, or
 * -1 with msg naming the first bad one. */
int sk_access_params_signed(const sk_form_t *f, sk_access_signed_t *p, char *msg, size_t msglen);

#endif
