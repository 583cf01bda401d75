#ifndef LOYALTY_CSQLITE_SHIM_H
#define LOYALTY_CSQLITE_SHIM_H
#include <sqlite3.h>

/// Turns off SQLite's memory statistics (a global mutex and counters around every
/// allocation; nothing here reads them). Must run before SQLite initializes; returns
/// SQLITE_OK, or SQLITE_MISUSE once SQLite is initialized.
static inline int loyalty_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

#include <elf.h>
#include <stddef.h>
#include <stdint.h>

/// glibc's dl_iterate_phdr(3) and the leading fields of its dl_phdr_info, which the system
/// module leaves out (GNU extensions), declared as glibc defines them on 64-bit Linux.
typedef struct {
    Elf64_Addr dlpi_addr;
    const char *dlpi_name;
    const Elf64_Phdr *dlpi_phdr;
    Elf64_Half dlpi_phnum;
} loyalty_phdr_info;
extern int dl_iterate_phdr(int (*callback)(loyalty_phdr_info *info, size_t size, void *data), void *data);

typedef struct {
    uintptr_t *starts;
    uintptr_t *ends;
    int capacity;
    int count;
} loyalty_image_ranges;

static inline int loyalty_add_image_ranges(loyalty_phdr_info *info, size_t size, void *context) {
    (void)size;
    loyalty_image_ranges *ranges = (loyalty_image_ranges *)context;
    for (int index = 0; index < info->dlpi_phnum; index++) {
        const Elf64_Phdr *header = &info->dlpi_phdr[index];
        if (header->p_type != PT_LOAD) continue;
        if (ranges->count < ranges->capacity) {
            uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)header->p_vaddr;
            ranges->starts[ranges->count] = start;
            ranges->ends[ranges->count] = start + (uintptr_t)header->p_memsz;
        }
        ranges->count++;
    }
    return 0;
}

/// Writes the address ranges of the program and the libraries loaded now (their loaded
/// segments), where string literals are, up to `capacity` of them; returns how many there
/// are (more than `capacity` when they did not all fit).
static inline int loyalty_loaded_image_ranges(uintptr_t *starts, uintptr_t *ends, int capacity) {
    loyalty_image_ranges ranges = {starts, ends, capacity, 0};
    dl_iterate_phdr(loyalty_add_image_ranges, &ranges);
    return ranges.count;
}
#endif
