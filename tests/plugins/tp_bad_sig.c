#define TP_NAME "tp_bad_sig"
#define TP_SIG "seckill-abi9/h2o-9.9.9/hiredis-0.14/lua5.4"
#include "tp_common.h"
