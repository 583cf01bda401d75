#ifndef LOYALTY_CLIBUV_SHIM_H
#define LOYALTY_CLIBUV_SHIM_H
#include <uv.h>
#endif
