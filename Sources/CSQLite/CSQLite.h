// Shim for the system SQLite 3 (metadata store).
#ifndef KMSFS_CSQLITE_H
#define KMSFS_CSQLITE_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a cast macro Swift cannot import: it tells SQLite to
// copy bound bytes before the call returns.
static inline sqlite3_destructor_type CSQLite_transient(void) {
    return SQLITE_TRANSIENT;
}

// sqlite3_db_config is variadic, which Swift cannot call. Sets one
// on/off option and returns whether SQLite confirmed the new value.
static inline int CSQLite_set_flag(sqlite3 *db, int option, int on) {
    int now = -1;
    if (sqlite3_db_config(db, option, on, &now) != SQLITE_OK) return 0;
    return now == on;
}
#endif
