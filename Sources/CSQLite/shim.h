#ifndef LOYALTY_CSQLITE_SHIM_H
#define LOYALTY_CSQLITE_SHIM_H
#include <sqlite3.h>

/// Turns off SQLite's memory statistics (a global mutex and counters around every
/// allocation; nothing here reads them). Must run before SQLite initializes; returns
/// SQLITE_OK, or SQLITE_MISUSE once SQLite is initialized.
static inline int loyalty_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/// glibc's dladdr(3) and its Dl_info, which the system module leaves out (they are GNU
/// extensions), declared as glibc defines them.
typedef struct {
    const char *dli_fname;
    void *dli_fbase;
    const char *dli_sname;
    void *dli_saddr;
} loyalty_dl_info;
extern int dladdr(const void *address, loyalty_dl_info *info);

/// Whether `address` lies in a loaded program or library (where string literals are), not
/// on the heap or a stack. The statement cache keeps literals' statements by address.
static inline int loyalty_address_is_in_loaded_image(const void *address) {
    loyalty_dl_info info;
    return dladdr(address, &info) != 0;
}
#endif
