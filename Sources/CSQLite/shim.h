#ifndef LOYALTY_CSQLITE_SHIM_H
#define LOYALTY_CSQLITE_SHIM_H
#include <sqlite3.h>

/// Turns off SQLite's memory statistics (a global mutex and counters around every
/// allocation; nothing here reads them). Must run before SQLite initializes; returns
/// SQLITE_OK, or SQLITE_MISUSE once SQLite is initialized.
static inline int loyalty_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
#endif
