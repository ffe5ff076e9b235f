// Shim for the system SQLite 3 (metadata store).
#ifndef KMSFS_CSQLITE_H
#define KMSFS_CSQLITE_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a cast macro Swift cannot import: it tells SQLite to
// copy bound bytes before the call returns.
static inline sqlite3_destructor_type CSQLite_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
