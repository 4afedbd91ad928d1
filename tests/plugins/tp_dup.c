/* same name as tp_good: loading both must fail */
#define TP_NAME "tp_good"
#include "tp_common.h"
