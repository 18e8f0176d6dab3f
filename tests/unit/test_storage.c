/* Tests for src/storage.c: what a room's store costs in memory once open
 * (SQLite's page cache allocates pages as they are read, not room for 20
 * up front), that closing gives it back, and that a store that cannot
 * open says why in the OS's words. Real SQLite files in a temporary
 * directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "as_nobody.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "storage.h"

#define STORES 10

static sqlite3_int64 sqlite_memory(void) {
    sqlite3_int64 now = 0, high = 0;
    assert_int_equal(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &now, &high, 0), SQLITE_OK);
    return now;
}

static void room_id(int i, char out[65]) {
    snprintf(out, 65, "%064x", i + 1);
}

static void test_open_store_holds_less_than_an_initial_page_block(void **state) {
    char dir[] = "/tmp/partyd-test-storage-XXXXXX";
    party__store_options opt = {.data_dir = dir, .durability_full = 0};
    party__store *stores[STORES];
    sqlite3_int64 before, opened, per_store;
    char why[256], id[65], cmd[128];
    int i;
    (void)state;

    assert_non_null(mkdtemp(dir));
    /* Once before measuring: SQLite's own start-up allocations and the
     * directories are not a store's. */
    room_id(100, id);
    assert_int_equal(party__store_open(&opt, id, &stores[0], why, sizeof(why)), 0);
    party__store_close(stores[0]);

    before = sqlite_memory();
    for (i = 0; i < STORES; i++) {
        room_id(i, id);
        assert_int_equal(party__store_open(&opt, id, &stores[i], why, sizeof(why)), 0);
        /* a read and a write, as a room's first event does */
        assert_int_equal(party__store_begin(stores[i]), 0);
        assert_int_equal(party__store_kv_put(stores[i], "k", "value", 5), 0);
        assert_int_equal(party__store_commit(stores[i]), 0);
    }
    opened = sqlite_memory();
    per_store = (opened - before) / STORES;
    print_message("SQLite memory per open store: %lld bytes\n", (long long)per_store);
    /* Not 0: SQLite counts its memory in this build (else this test would
     * prove nothing). */
    assert_true(per_store > 8 * 1024);
    /* With SQLite's default, the first page read allocated room for 20
     * pages (about 86 KB) on top of the rest (about 60 KB here). */
    assert_true(per_store < 96 * 1024);

    for (i = 0; i < STORES; i++)
        party__store_close(stores[i]);
    assert_true(sqlite_memory() - before < 4 * 1024);

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* SQLite says only "unable to open database file"; the OS error says
 * why. A directory where the room's file goes fails for root too. */
static void test_store_open_failure_names_the_os_error(void **state) {
    char dir[] = "/tmp/partyd-test-storage-XXXXXX";
    party__store_options opt = {.data_dir = dir, .durability_full = 0};
    party__store *store;
    char why[512], id[65], path[4096], cmd[128];
    (void)state;

    assert_non_null(mkdtemp(dir));
    room_id(7, id);
    assert_int_equal(party__store_path(dir, id, path, sizeof(path)), 0);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
    assert_int_equal(system(cmd), 0);

    assert_int_equal(party__store_open(&opt, id, &store, why, sizeof(why)), PARTY_EIO);
    assert_null(store);
    if (strstr(why, "Is a directory") == NULL || strstr(why, path) == NULL)
        fail_msg("the reason does not name the OS error and the file: %s", why);

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A room directory the process may not write: SQLite retries read-only
 * and keeps that retry's ENOENT; the reason must say Permission denied.
 * Root writes anywhere: as root the test runs as nobody. */
static void test_store_in_an_unwritable_directory_says_permission_denied(void **state) {
    char dir[] = "/tmp/partyd-test-storage-XXXXXX";
    party__store_options opt = {.data_dir = dir, .durability_full = 0};
    party__store *store;
    char why[512], id[65], cmd[160];
    (void)state;

    RUN_AS_NOBODY_IF_ROOT();
    assert_non_null(mkdtemp(dir));
    room_id(8, id);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/rooms/%.2s && chmod 0555 %s/rooms/%.2s", dir, id, dir,
             id);
    assert_int_equal(system(cmd), 0);

    assert_int_equal(party__store_open(&opt, id, &store, why, sizeof(why)), PARTY_EIO);
    if (strstr(why, "Permission denied") == NULL)
        fail_msg("the reason does not name the OS error: %s", why);

    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", dir, dir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_store_holds_less_than_an_initial_page_block),
        cmocka_unit_test(test_store_open_failure_names_the_os_error),
        cmocka_unit_test(test_store_in_an_unwritable_directory_says_permission_denied),
    };
    party__store_configure();
    as_nobody_main(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
