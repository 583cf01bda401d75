#ifndef LOYALTY_CLIBUV_SHIM_H
#define LOYALTY_CLIBUV_SHIM_H
#include <uv.h>
#include <sys/prctl.h>

/* prctl is variadic and does not import into Swift. */
static inline int loyalty_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0);
}
#endif
