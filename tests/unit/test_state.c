/* test_state.c - the sealed-row state (src/state/state.c).
 *
 * Rows written and committed come back exactly, deletes stay deleted, and
 * a buffer that is discarded writes nothing. Every file that must be refused
 * is refused with its own status, and stays byte for byte as it was: a
 * wrong key, another node's state, a file that is not a state (random,
 * empty, truncated, an SQLite file of another kind), a row flipped, two
 * rows swapped, and a state another connection holds.
 */
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "securitor/rand.h"
#include "securitor/state.h"

static uint8_t KEY[32] = {1, 2, 3}, OTHER_KEY[32] = {9};
static char dir[256];

/* Rows loaded at open: "kind/key=value" lines. */
static char loaded[4096];
static int load(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                const uint8_t *value, size_t value_len)
{
    (void)ctx;
    size_t at = strlen(loaded);
    snprintf(loaded + at, sizeof(loaded) - at, "%s/%.*s=%.*s;", kind, (int)key_len,
             (const char *)key, (int)value_len, (const char *)value);
    return 0;
}

static enum state_status open_as(struct state **st, const char *node, const uint8_t *key)
{
    char why[512] = "";
    loaded[0] = 0;
    enum state_status rc = state_open(st, dir, node, key, load, NULL, why, sizeof(why));
    if (rc)
        printf("  refused as expected? %s: %s\n", state_status_text(rc), why);
    return rc;
}

/* SHA-256 of a file's bytes (all zero when it does not exist). */
static void file_hash(const char *path, uint8_t out[32])
{
    memset(out, 0, 32);
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t buf[4096];
    size_t n;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(c, buf, n);
    EVP_DigestFinal_ex(c, out, NULL);
    EVP_MD_CTX_free(c);
    fclose(f);
}

static char *path_of(const char *node, const char *suffix)
{
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s.db%s", dir, node, suffix);
    return p;
}

/* Opening `node` with `key` must fail with `want`, the file unchanged. */
static void refused(const char *node, const uint8_t *key, enum state_status want)
{
    uint8_t before[32], after[32], wal_before[32], wal_after[32];
    struct state *st;
    file_hash(path_of(node, ""), before);
    file_hash(path_of(node, "-wal"), wal_before);
    CHECK(open_as(&st, node, key) == want);
    CHECK(st == NULL);
    file_hash(path_of(node, ""), after);
    file_hash(path_of(node, "-wal"), wal_after);
    CHECK(!memcmp(before, after, 32));
    CHECK(!memcmp(wal_before, wal_after, 32));
}

static void sql(const char *node, const char *stmt)
{
    sqlite3 *db;
    CHECK(sqlite3_open(path_of(node, ""), &db) == SQLITE_OK);
    char *err = NULL;
    CHECK(sqlite3_exec(db, stmt, NULL, NULL, &err) == SQLITE_OK);
    if (err)
        printf("  sql: %s\n", err);
    sqlite3_free(err);
    sqlite3_close(db);
}

static void test_round_trip(void)
{
    struct state *st;
    CHECK(open_as(&st, "n1", KEY) == STATE_OK && st);
    CHECK(!strcmp(loaded, ""));
    CHECK(state_put(st, "user", "alice", 5, "A1", 2) == 0);
    CHECK(state_put(st, "user", "bob", 3, "B1", 2) == 0);
    CHECK(state_put(st, "user", "alice", 5, "A2", 2) == 0); /* the later write wins */
    CHECK(state_put(st, "opk", "bob/1", 5, "K", 1) == 0);
    CHECK(state_del(st, "opk", "bob/1", 5) == 0); /* then deleted: never written */
    CHECK(state_pending(st));
    CHECK(state_commit(st) == 0);
    CHECK(!state_pending(st));
    CHECK(state_put(st, "user", "carol", 5, "C", 1) == 0);
    state_discard(st); /* not written */
    CHECK(state_commit(st) == 0);
    struct state_stats stats;
    state_stats(st, &stats);
    CHECK(stats.commits == 1 && stats.rows == 3);
    CHECK(stats.slowest_ns > 0 && stats.slowest_ns <= stats.commit_ns);
    state_close(st);

    CHECK(open_as(&st, "n1", KEY) == STATE_OK);
    CHECK(strstr(loaded, "user/alice=A2;") && strstr(loaded, "user/bob=B1;"));
    CHECK(!strstr(loaded, "opk/") && !strstr(loaded, "carol"));
    CHECK(state_del(st, "user", "bob", 3) == 0 && state_commit(st) == 0);
    /* A second connection cannot take the state while it is open. */
    refused("n1", KEY, STATE_IN_USE);
    state_close(st);
    CHECK(open_as(&st, "n1", KEY) == STATE_OK);
    CHECK(!strcmp(loaded, "user/alice=A2;"));
    state_close(st);
    /* Names are not in the file in the clear. */
    FILE *f = fopen(path_of("n1", ""), "rb");
    char buf[65536];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
    if (f)
        fclose(f);
    CHECK(n > 0 && !memmem(buf, n, "alice", 5) && !memmem(buf, n, "A2", 2));
}

static void test_refusals(void)
{
    struct state *st;
    char cmd[1024];
    refused("n1", OTHER_KEY, STATE_WRONG_KEY);
    /* n1's file under another node's name. */
    snprintf(cmd, sizeof(cmd), "cp %s/n1.db %s/n2.db", dir, dir);
    CHECK(system(cmd) == 0);
    refused("n2", KEY, STATE_OTHER_NODE);
    /* Not states: random bytes, an empty file, an SQLite file of another kind. */
    snprintf(cmd, sizeof(cmd), "head -c 8192 /dev/urandom > %s/r.db && : > %s/e.db", dir, dir);
    CHECK(system(cmd) == 0);
    refused("r", KEY, STATE_NOT_A_STATE);
    refused("e", KEY, STATE_NOT_A_STATE);
    sql("other", "PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    refused("other", KEY, STATE_NOT_A_STATE);
    /* Truncated: half of a real state. */
    CHECK(open_as(&st, "t", KEY) == STATE_OK);
    for (int i = 0; i < 200; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        CHECK(state_put(st, "row", k, strlen(k), "value-value-value-value", 23) == 0);
    }
    CHECK(state_commit(st) == 0);
    state_close(st);
    snprintf(cmd, sizeof(cmd), "f=%s/t.db; truncate -s $(( $(stat -c %%s $f) / 2 )) $f", dir);
    CHECK(system(cmd) == 0);
    refused("t", KEY, STATE_DAMAGED);
}

static void test_damaged_rows(void)
{
    struct state *st;
    CHECK(open_as(&st, "d", KEY) == STATE_OK);
    CHECK(state_put(st, "user", "alice", 5, "alice's keys", 12) == 0);
    CHECK(state_put(st, "user", "bob", 3, "bob's keys", 10) == 0);
    CHECK(state_commit(st) == 0);
    state_close(st);
    /* One bit of one row flipped. */
    sql("d", "UPDATE rows SET value = substr(value, 1, 20) || "
             "char((unicode(substr(value, 21, 1)) + 1) % 256) || substr(value, 22) "
             "WHERE id = (SELECT id FROM rows LIMIT 1)");
    refused("d", KEY, STATE_DAMAGED);
    /* Two rows swapped (each sealed for its own place). */
    CHECK(open_as(&st, "s", KEY) == STATE_OK);
    CHECK(state_put(st, "user", "alice", 5, "alice's keys", 12) == 0);
    CHECK(state_put(st, "user", "bob", 3, "bob's keys", 10) == 0);
    CHECK(state_commit(st) == 0);
    state_close(st);
    sql("s", "CREATE TEMP TABLE v AS SELECT id, value FROM rows ORDER BY id;"
             "UPDATE rows SET value = (SELECT value FROM v WHERE v.id <> rows.id)");
    refused("s", KEY, STATE_DAMAGED);
}

/* A row whose building ran out of memory, or a change the program could not
 * record, fails the whole transaction: nothing of it is written. */
static void test_failed_changes(void)
{
    struct state *st;
    struct buf b = {0};
    CHECK(open_as(&st, "f", KEY) == STATE_OK);
    buf_append_lit(&b, "kept");
    CHECK(state_put_buf(st, "user", "alice", 5, &b) == 0 && state_commit(st) == 0);
    buf_free(&b);
    CHECK(state_put(st, "user", "bob", 3, "B", 1) == 0);
    buf_append_lit(&b, "half a row");
    b.failed = true; /* as buf_append leaves it when an allocation fails */
    CHECK(state_put_buf(st, "user", "carol", 5, &b) == -1);
    CHECK(state_pending(st));
    CHECK(state_commit(st) == -1); /* bob's row goes with it */
    CHECK(!state_pending(st));
    buf_free(&b);
    CHECK(state_put(st, "user", "dave", 4, "D", 1) == 0);
    state_fail(st);
    CHECK(state_commit(st) == -1);
    CHECK(state_commit(st) == 0); /* then the state goes on */
    state_close(st);
    CHECK(open_as(&st, "f", KEY) == STATE_OK);
    CHECK(!strcmp(loaded, "user/alice=kept;"));
    state_close(st);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/securitor-test-state-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    test_round_trip();
    test_refusals();
    test_damaged_rows();
    test_failed_changes();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    rand_pool_wipe();
    return check_finish("test_state");
}
