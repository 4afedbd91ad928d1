/*
 * The query string of the /sec/ endpoints: sk_form_parse, then the SPEC §3 rules of sk_access_params_signed / _product, then the
 * SPEC §4 signature check of what was parsed, exactly as kill.c runs them.
 *
 * Invariants: the form's values are NUL-terminated, NUL-free and inside its buffer; a parse that succeeds yields
 * values inside the documented bounds; sk_sign_verify accepts the parsed auth_code exactly when it is the HMAC the
 * signing side computes (either hex case), and always accepts the right code for the same parameters.
 */
#include <ctype.h>
#include "fuzz_common.h"
#include "sk_form.h"
#include "sk_sign.h"
#include "access/params.h"

#define SECRET "fuzz-secret"

static sk_hmac_t *hmac;

static void
check_form(const sk_form_t *f)
{
    FUZZ_CHECK(f->n <= SK_FORM_MAX_PARAMS);
    FUZZ_CHECK(f->used <= sizeof(f->buf));
    for (size_t i = 0; i < f->n; i++) {
        const sk_form_param_t *p = &f->params[i];
        FUZZ_CHECK(fuzz_terminated(p->name, sizeof(p->name)) && p->name[0] != '\0');
        FUZZ_CHECK(p->value >= f->buf && p->value + p->len < f->buf + sizeof(f->buf));
        FUZZ_CHECK(p->value[p->len] == '\0' && strlen(p->value) == p->len);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(f->params[j].name, p->name) != 0);
        FUZZ_CHECK(sk_form_get(f, p->name) == p);
    }
}

static void
check_signature(const sk_access_signed_t *p, const char *scope)
{
    char user_key[65], want[65];
    FUZZ_CHECK(sk_sign_user_key(hmac, SECRET, p->user_id, user_key) == 0);
    FUZZ_CHECK(sk_sign_request(hmac, user_key, scope, p->user_id, p->product_id, p->time, p->nance, want) == 0);
    int same = 1;
    for (size_t i = 0; i < 64; i++)
        if (tolower((unsigned char)p->auth_code[i]) != want[i])
            same = 0;
    int ok = sk_sign_verify(hmac, SECRET, scope, p->user_id, p->product_id, p->time, p->nance, p->auth_code, 64);
    FUZZ_CHECK(ok == same);
    FUZZ_CHECK(sk_sign_verify(hmac, SECRET, scope, p->user_id, p->product_id, p->time, p->nance, want, 64) == 1);
    /* a code of another length never passes, even as a prefix of the right one */
    FUZZ_CHECK(sk_sign_verify(hmac, SECRET, scope, p->user_id, p->product_id, p->time, p->nance, want, 63) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (hmac == NULL)
        hmac = sk_hmac_new();
    static sk_form_t f;
    char msg[160];
    sk_form_init(&f);
    if (sk_form_parse(&f, (const char *)data, size) != 0) {
        FUZZ_CHECK(f.error[0] != '\0' && fuzz_terminated(f.error, sizeof(f.error)));
        return 0;
    }
    check_form(&f);

    int64_t pid = 0;
    memset(msg, 0, sizeof(msg));
    if (sk_access_params_product(&f, &pid, msg, sizeof(msg)) == 0)
        FUZZ_CHECK(pid >= 1);
    else
        FUZZ_CHECK(msg[0] != '\0' && fuzz_terminated(msg, sizeof(msg)));

    sk_access_signed_t p;
    memset(msg, 0, sizeof(msg));
    if (sk_access_params_signed(&f, &p, msg, sizeof(msg)) != 0) {
        FUZZ_CHECK(msg[0] != '\0' && fuzz_terminated(msg, sizeof(msg)));
        return 0;
    }
    FUZZ_CHECK(p.product_id >= 1 && p.user_id >= 1 && p.time >= 0);
    FUZZ_CHECK(p.nance_len >= SK_ACCESS_NANCE_MIN && p.nance_len <= SK_ACCESS_NANCE_MAX && strlen(p.nance) == p.nance_len);
    for (size_t i = 0; i < p.nance_len; i++)
        FUZZ_CHECK(isalnum((unsigned char)p.nance[i]) || p.nance[i] == '_' || p.nance[i] == '-');
    FUZZ_CHECK(strlen(p.auth_code) == 64);
    for (size_t i = 0; i < 64; i++)
        FUZZ_CHECK(isxdigit((unsigned char)p.auth_code[i]));
    if (p.src != NULL) {
        FUZZ_CHECK(p.src_len <= SK_ACCESS_SRC_MAX && strlen(p.src) == p.src_len);
        for (size_t i = 0; i < p.src_len; i++)
            FUZZ_CHECK((unsigned char)p.src[i] >= 0x20 && (unsigned char)p.src[i] != 0x7f);
    } else {
        FUZZ_CHECK(p.src_len == 0);
    }
    check_signature(&p, "kill");
    check_signature(&p, "result");
    return 0;
}
