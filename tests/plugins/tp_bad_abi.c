#define TP_NAME "tp_bad_abi"
#define TP_ABI (SK_PLUGIN_ABI + 1)
#include "tp_common.h"
