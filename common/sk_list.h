/*
 * Comma-separated lists in configuration values (plugins, etcd.endpoints, access.trusted_proxies, ...). Pure code.
 */
#ifndef SK_LIST_H
#define SK_LIST_H

#include <stddef.h>

/** Steps through a comma-separated list: the next item, as written (callers trim or refuse blanks), in *item and
 * *len, and *p moves past it and its comma. Returns 0 at the end. "a,,b" has an empty middle item; a trailing comma
 * adds none. */
int sk_list_next(const char **p, const char **item, size_t *len);

#endif
