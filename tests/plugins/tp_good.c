#include "tp_common.h"
