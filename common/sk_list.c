#include "sk_list.h"

#include <string.h>

int
sk_list_next(const char **p, const char **item, size_t *len)
{
    if (**p == '\0')
        return 0;
    const char *comma = strchr(*p, ',');
    *item = *p;
    *len = comma != NULL ? (size_t)(comma - *p) : strlen(*p);
    *p = comma != NULL ? comma + 1 : *p + *len;
    return 1;
}
