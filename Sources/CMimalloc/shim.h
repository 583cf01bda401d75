// mimalloc, Debian's libmimalloc-dev: linked into the simulator, where it replaces the C
// library's malloc for the whole process (SQLite's page caches and statements included).
#include <mimalloc.h>
