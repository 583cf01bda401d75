#ifndef LOYALTY_WAL_BATCH_H
#define LOYALTY_WAL_BATCH_H

/// Registers the "wal-batch" VFS (once; later calls return the first result) and returns
/// SQLITE_OK or the SQLite error code. The VFS is the default unix VFS, except that a WAL
/// file gathers the contiguous writes of one commit (each frame is a 24-byte header and a
/// page, written separately) and hands them to the kernel in one write when SQLite next
/// syncs, reads, truncates, sizes or closes the file, when a write is not contiguous, or
/// when 64 KiB are waiting. A connection using it must sync its WAL at every commit
/// (synchronous=FULL), as SQLite makes committed frames visible to other connections only
/// after that sync.
int loyalty_wal_batch_register(void);

/// The name to pass to sqlite3_open_v2.
extern const char *const loyalty_wal_batch_name;

#endif
