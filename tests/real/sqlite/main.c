/*
 * SQLite's program for the real-program harness: an in-memory database,
 * some thousands of rows inserted through a prepared statement in one
 * transaction, then aggregate, join, group, window and text queries whose
 * results it prints. Exits 0, or 1 on any SQLite error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "sqlite3.h"

static sqlite3 *db;

static int fail(const char *what)
{
    printf("%s FAILED: %s\n", what, sqlite3_errmsg(db));
    return 1;
}

static int print_row(void *label, int columns, char **values, char **names)
{
    printf("%s:", (const char *)label);
    for (int i = 0; i < columns; i++)
        printf(" %s=%s", names[i], values[i] ? values[i] : "NULL");
    printf("\n");
    return 0;
}

static int query(const char *label, const char *sql)
{
    char *error = NULL;
    if (sqlite3_exec(db, sql, print_row, (void *)label, &error) != SQLITE_OK) {
        printf("%s FAILED: %s\n", label, error ? error : "?");
        sqlite3_free(error);
        return 1;
    }
    return 0;
}

int main(void)
{
    printf("sqlite %s\n", sqlite3_libversion());
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return fail("open");
    if (sqlite3_exec(db,
                     "CREATE TABLE city(id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                     "CREATE TABLE sale(id INTEGER PRIMARY KEY, city INTEGER REFERENCES city,"
                     " item TEXT, quantity INTEGER, price REAL);"
                     "CREATE INDEX sale_city ON sale(city);"
                     "INSERT INTO city(name) VALUES ('Lisbon'),('Oslo'),('Quito'),('Hanoi'),"
                     " ('Lagos'),('Perth'),('Lima');",
                     NULL, NULL, NULL) != SQLITE_OK)
        return fail("schema");

    sqlite3_stmt *insert;
    if (sqlite3_prepare_v2(db, "INSERT INTO sale(city, item, quantity, price) VALUES (?,?,?,?)",
                           -1, &insert, NULL) != SQLITE_OK)
        return fail("prepare");
    static const char *const items[] = { "bolt", "nut", "gear", "spring", "valve", "cable" };
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    unsigned int state = 12345;
    for (int row = 0; row < 20000; row++) {
        state = state * 1103515245u + 12345u;
        unsigned int r = state >> 8;
        sqlite3_bind_int(insert, 1, (int)(r % 7) + 1);
        sqlite3_bind_text(insert, 2, items[(r / 7) % 6], -1, SQLITE_STATIC);
        sqlite3_bind_int(insert, 3, (int)((r / 42) % 50) + 1);
        sqlite3_bind_double(insert, 4, (double)((r / 2100) % 10000) / 100.0);
        if (sqlite3_step(insert) != SQLITE_DONE)
            return fail("insert");
        sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return fail("commit");

    int failures = 0;
    failures += query("totals", "SELECT count(*) AS n, sum(quantity) AS units,"
                                " printf('%.2f', sum(quantity * price)) AS revenue,"
                                " printf('%.4f', avg(price)) AS mean_price,"
                                " min(price) AS low, max(price) AS high FROM sale");
    failures += query("by city", "SELECT c.name, count(*) AS n, sum(s.quantity) AS units,"
                                 " printf('%.2f', avg(s.price)) AS mean"
                                 " FROM sale s JOIN city c ON c.id = s.city"
                                 " GROUP BY c.id ORDER BY units DESC, c.name");
    failures += query("by item", "SELECT item, count(*) AS n, printf('%.3f', total(price)) AS t"
                                 " FROM sale GROUP BY item HAVING n > 100 ORDER BY item");
    failures += query("top", "SELECT id, quantity, price FROM sale"
                             " ORDER BY quantity * price DESC, id LIMIT 5");
    failures += query("rank", "SELECT name, units, rank() OVER (ORDER BY units DESC) AS r FROM"
                              " (SELECT c.name AS name, sum(s.quantity) AS units FROM sale s"
                              "  JOIN city c ON c.id = s.city GROUP BY c.id) ORDER BY r, name");
    failures += query("text", "SELECT upper(group_concat(name, '-')) AS names,"
                              " length(group_concat(name)) AS len,"
                              " replace('a.b.c', '.', '::') AS replaced FROM"
                              " (SELECT name FROM city ORDER BY name)");
    failures += query("math", "SELECT 7 / 2 AS int_div, 7 / 2.0 AS real_div, 1e308 * 10 AS inf,"
                              " round(2.675, 2) AS rounded, abs(-12) AS a, 0x1F AS hex");
    failures += query("recursive", "WITH RECURSIVE n(i, f) AS (SELECT 1, 1 UNION ALL"
                                   " SELECT i + 1, f * (i + 1) FROM n WHERE i < 15)"
                                   " SELECT max(i) AS i, max(f) AS factorial FROM n");
    if (sqlite3_exec(db, "DELETE FROM sale WHERE quantity < 25; VACUUM;", NULL, NULL, NULL) !=
        SQLITE_OK)
        failures += fail("delete");
    failures += query("after delete", "SELECT count(*) AS n, min(quantity) AS q FROM sale");
    sqlite3_close(db);
    printf("%s\n", failures ? "queries FAILED" : "queries ok");
    return failures ? 1 : 0;
}
