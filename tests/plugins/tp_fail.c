/* registers a route, then fails: the host must undo the route */
#define TP_NAME "tp_fail"
#define TP_FAIL_CREATE 1
#include "tp_common.h"
