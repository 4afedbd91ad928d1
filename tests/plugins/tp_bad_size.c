#define TP_NAME "tp_bad_size"
#define TP_SIZE (sizeof(sk_plugin_desc_t) - 8)
#include "tp_common.h"
