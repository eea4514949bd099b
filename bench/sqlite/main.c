/*
 * A small SQLite program for the whole-process benchmark: an in-memory
 * database, one table, a few rows, one query whose result it prints. It does
 * so little that the process's time is mostly start-up and loading, which is
 * what scripts/bench-sqlite.sh compares (native binary, modload run,
 * llvm-jitlink). Exits 0, or 1 on any SQLite error.
 */
#include <stdio.h>

#include "sqlite3.h"

static int print_row(void *unused, int columns, char **values, char **names)
{
    (void)unused;
    for (int i = 0; i < columns; i++)
        printf("%s%s=%s", i ? " " : "", names[i], values[i] ? values[i] : "NULL");
    printf("\n");
    return 0;
}

int main(void)
{
    sqlite3 *db;
    char *error = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return 1;
    int status = sqlite3_exec(db,
                              "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n INTEGER);"
                              "INSERT INTO t(name, n) VALUES ('a', 3), ('b', 5), ('c', 7);"
                              "SELECT count(*) AS rows, sum(n) AS total, group_concat(name) AS names FROM t;",
                              print_row, NULL, &error);
    if (status != SQLITE_OK) {
        printf("FAILED: %s\n", error ? error : "?");
        sqlite3_free(error);
        sqlite3_close(db);
        return 1;
    }
    sqlite3_close(db);
    return 0;
}
