// A pass-through VFS over the platform's default one that batches WAL frame writes. See
// include/wal_batch.h for the contract. Only files opened as a WAL are wrapped; every other
// file is opened straight by the underlying VFS, so its I/O is untouched.
#include "wal_batch.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

const char *const loyalty_wal_batch_name = "wal-batch";

// The unix VFS writes at most 128 KiB - 1 bytes per call (it masks the length with 0x1ffff,
// since SQLite never asks it for more than a page), so a batch stays within 64 KiB.
enum { BATCH_CAPACITY = 64 * 1024 };

typedef struct BatchFile {
    sqlite3_file base;
    sqlite3_file *real;          // the underlying VFS's file, allocated right after this struct
    unsigned char *buffer;       // BATCH_CAPACITY bytes, allocated on the first write
    int length;                  // bytes waiting in `buffer`
    sqlite3_int64 start;         // the file offset of buffer[0]
} BatchFile;

static sqlite3_vfs batch_vfs;
static sqlite3_vfs *underlying;

static int flush(BatchFile *file) {
    if (file->length == 0) return SQLITE_OK;
    int rc = file->real->pMethods->xWrite(file->real, file->buffer, file->length, file->start);
    // On failure the bytes are dropped with the error: SQLite fails the commit and rolls back,
    // and nothing it reported committed depended on them.
    file->length = 0;
    return rc;
}

static int batch_close(sqlite3_file *handle) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    int closed = file->real->pMethods->xClose(file->real);
    sqlite3_free(file->buffer);
    file->buffer = NULL;
    return rc != SQLITE_OK ? rc : closed;
}

static int batch_read(sqlite3_file *handle, void *out, int amount, sqlite3_int64 offset) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xRead(file->real, out, amount, offset);
}

static int batch_write(sqlite3_file *handle, const void *data, int amount, sqlite3_int64 offset) {
    BatchFile *file = (BatchFile *)handle;
    if (file->length > 0 && (offset != file->start + file->length || file->length + amount > BATCH_CAPACITY)) {
        int rc = flush(file);
        if (rc != SQLITE_OK) return rc;
    }
    if (amount > BATCH_CAPACITY) return file->real->pMethods->xWrite(file->real, data, amount, offset);
    if (file->buffer == NULL) {
        file->buffer = sqlite3_malloc(BATCH_CAPACITY);
        if (file->buffer == NULL) return file->real->pMethods->xWrite(file->real, data, amount, offset);
    }
    if (file->length == 0) file->start = offset;
    memcpy(file->buffer + file->length, data, (size_t)amount);
    file->length += amount;
    return SQLITE_OK;
}

static int batch_truncate(sqlite3_file *handle, sqlite3_int64 size) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xTruncate(file->real, size);
}

static int batch_sync(sqlite3_file *handle, int flags) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xSync(file->real, flags);
}

static int batch_file_size(sqlite3_file *handle, sqlite3_int64 *size) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xFileSize(file->real, size);
}

static int batch_lock(sqlite3_file *handle, int level) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xLock(file->real, level);
}

static int batch_unlock(sqlite3_file *handle, int level) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xUnlock(file->real, level);
}

static int batch_check_reserved_lock(sqlite3_file *handle, int *reserved) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xCheckReservedLock(file->real, reserved);
}

static int batch_file_control(sqlite3_file *handle, int op, void *argument) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xFileControl(file->real, op, argument);
}

static int batch_sector_size(sqlite3_file *handle) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xSectorSize(file->real);
}

static int batch_device_characteristics(sqlite3_file *handle) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xDeviceCharacteristics(file->real);
}

static int batch_shm_map(sqlite3_file *handle, int region, int size, int extend, void volatile **mapped) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xShmMap(file->real, region, size, extend, mapped);
}

static int batch_shm_lock(sqlite3_file *handle, int offset, int count, int flags) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xShmLock(file->real, offset, count, flags);
}

static void batch_shm_barrier(sqlite3_file *handle) {
    BatchFile *file = (BatchFile *)handle;
    file->real->pMethods->xShmBarrier(file->real);
}

static int batch_shm_unmap(sqlite3_file *handle, int delete_flag) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xShmUnmap(file->real, delete_flag);
}

static int batch_fetch(sqlite3_file *handle, sqlite3_int64 offset, int amount, void **pointer) {
    BatchFile *file = (BatchFile *)handle;
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    return file->real->pMethods->xFetch(file->real, offset, amount, pointer);
}

static int batch_unfetch(sqlite3_file *handle, sqlite3_int64 offset, void *pointer) {
    BatchFile *file = (BatchFile *)handle;
    return file->real->pMethods->xUnfetch(file->real, offset, pointer);
}

static const sqlite3_io_methods batch_methods = {
    3,
    batch_close,
    batch_read,
    batch_write,
    batch_truncate,
    batch_sync,
    batch_file_size,
    batch_lock,
    batch_unlock,
    batch_check_reserved_lock,
    batch_file_control,
    batch_sector_size,
    batch_device_characteristics,
    batch_shm_map,
    batch_shm_lock,
    batch_shm_barrier,
    batch_shm_unmap,
    batch_fetch,
    batch_unfetch,
};

static int batch_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *handle, int flags, int *out_flags) {
    (void)vfs;
    if ((flags & SQLITE_OPEN_WAL) == 0) {
        // Not a WAL: the underlying VFS's file, as if this VFS were not there.
        return underlying->xOpen(underlying, name, handle, flags, out_flags);
    }
    BatchFile *file = (BatchFile *)handle;
    memset(file, 0, sizeof(BatchFile));
    file->real = (sqlite3_file *)(file + 1);
    int rc = underlying->xOpen(underlying, name, file->real, flags, out_flags);
    if (rc != SQLITE_OK || file->real->pMethods == NULL) {
        if (file->real->pMethods != NULL) file->real->pMethods->xClose(file->real);
        file->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    if (file->real->pMethods->iVersion < 3) {
        // The wrapper forwards version-3 methods; an older underlying file is used directly.
        file->real->pMethods->xClose(file->real);
        return underlying->xOpen(underlying, name, handle, flags, out_flags);
    }
    file->base.pMethods = &batch_methods;
    return SQLITE_OK;
}

static int batch_delete(sqlite3_vfs *vfs, const char *name, int sync_directory) {
    (void)vfs;
    return underlying->xDelete(underlying, name, sync_directory);
}

static int batch_access(sqlite3_vfs *vfs, const char *name, int flags, int *result) {
    (void)vfs;
    return underlying->xAccess(underlying, name, flags, result);
}

static int batch_full_pathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    (void)vfs;
    return underlying->xFullPathname(underlying, name, size, out);
}

static void *batch_dl_open(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return underlying->xDlOpen(underlying, name);
}

static void batch_dl_error(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    underlying->xDlError(underlying, size, message);
}

static void (*batch_dl_sym(sqlite3_vfs *vfs, void *library, const char *symbol))(void) {
    (void)vfs;
    return underlying->xDlSym(underlying, library, symbol);
}

static void batch_dl_close(sqlite3_vfs *vfs, void *library) {
    (void)vfs;
    underlying->xDlClose(underlying, library);
}

static int batch_randomness(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return underlying->xRandomness(underlying, size, out);
}

static int batch_sleep(sqlite3_vfs *vfs, int microseconds) {
    (void)vfs;
    return underlying->xSleep(underlying, microseconds);
}

static int batch_current_time(sqlite3_vfs *vfs, double *now) {
    (void)vfs;
    return underlying->xCurrentTime(underlying, now);
}

static int batch_get_last_error(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return underlying->xGetLastError ? underlying->xGetLastError(underlying, size, out) : 0;
}

static int batch_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *now) {
    (void)vfs;
    return underlying->xCurrentTimeInt64(underlying, now);
}

static int registered = SQLITE_ERROR;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void register_once(void) {
    underlying = sqlite3_vfs_find(NULL);
    if (underlying == NULL || underlying->iVersion < 2) {
        registered = SQLITE_ERROR;
        return;
    }
    batch_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(BatchFile) + underlying->szOsFile,
        .mxPathname = underlying->mxPathname,
        .zName = loyalty_wal_batch_name,
        .xOpen = batch_open,
        .xDelete = batch_delete,
        .xAccess = batch_access,
        .xFullPathname = batch_full_pathname,
        .xDlOpen = batch_dl_open,
        .xDlError = batch_dl_error,
        .xDlSym = batch_dl_sym,
        .xDlClose = batch_dl_close,
        .xRandomness = batch_randomness,
        .xSleep = batch_sleep,
        .xCurrentTime = batch_current_time,
        .xGetLastError = batch_get_last_error,
        .xCurrentTimeInt64 = batch_current_time_int64,
    };
    registered = sqlite3_vfs_register(&batch_vfs, 0);
}

int loyalty_wal_batch_register(void) {
    pthread_once(&once, register_once);
    return registered;
}
