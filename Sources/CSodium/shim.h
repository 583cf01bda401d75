#ifndef LOYALTY_CSODIUM_SHIM_H
#define LOYALTY_CSODIUM_SHIM_H
#include <sodium.h>
#endif
