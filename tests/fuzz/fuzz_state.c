/* fuzz_state.c - state rows: the sealed layer (src/state/state.c) and the
 * row readers behind it (ringstate.c, persist.c).
 *
 * The first byte picks the mode (even: a damaged file, odd: plaintext rows).
 *
 * Damaged file: at start, a real state is made in a fresh directory under
 * $TMPDIR (tmpfs is best: /dev/shm) with symmetric-node's rows, a ring of
 * versions 1-3 (three sym_key rows and the sym_ring row), and kept as
 * bytes. Each input then writes those bytes back and changes the file as
 * its ops say, three bytes each (op, a, b), through SQLite or on disk:
 *   0 flip bit (b & 7) of value byte b of row a     5 delete row a
 *   1 flip a bit of row a's id                      6 set row a's value to a
 *   2 swap the values of rows a and b                 golden value cut at b
 *   3 copy row a's value over row b's               7 flip a byte of meta row a
 *   4 cut row a's value to b bytes                  8 add row a's value under a
 *                                                     new id (a bit of b flipped)
 *                                                   9 flip a byte of the file
 *                                                     itself at a * 256 + b
 * and opens it with state_open, rows into a recorder and a ring loader.
 *   1. Nothing crashes or leaks, and the file is left as it was on refusal.
 *   2. Every row the load callback sees is one of the rows written, whole
 *      (same kind, key and value): a damaged, moved or swapped row never
 *      reaches it, not even half of one.
 *   3. When the rows table holds only rows as they were written (some may
 *      be gone), state_open succeeds and hands over exactly those; when
 *      it holds any other (id, value), it refuses (STATE_DAMAGED).
 *   4. The ring's check (ringstate_check) accepts what was loaded only when
 *      nothing was lost, or everything (a new state: see the README).
 *
 * Plaintext rows: what an authenticated row may hold is still read with
 * care (an older format, a bug that wrote one wrong): the rest of the input
 * is rows, each a kind byte (sym_key, sym_ring, user, opk, peer, session,
 * remote, seen, or a made-up kind), a key (length byte, bytes) and a value
 * (two length bytes, bytes), given as state_open would to
 * ringstate_load_row, then ringstate_check and ringstate_build; and to
 * persist_load_row, then persist_finish into a store. A user row's
 * identity (bytes 1-96: seed, X25519 private and public key) must fit
 * together (curve_identity_restore), which mutation never finds: the
 * target writes a real identity there unless the row's second byte is 0xFF,
 * so the rest of the row, and the rows after it, are reached.
 *   5. Neither crashes, reads out of bounds or leaks, whatever the rows.
 */
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "securitor/curve.h"
#include "persist.h"
#include "ringstate.h"
#include "store.h"

#define N_ROWS 4

struct golden_row {
    const char *kind;
    uint8_t key[8];
    size_t key_len;
    uint8_t value[1 + 32];
    size_t value_len;
};

static struct golden_row rows[N_ROWS];
static uint8_t state_key[STATE_KEY_LEN];
static char dir[256], path[300];
static uint8_t *golden_file;
static size_t golden_len;

/* As sqlite holds them after the commit: id -> sealed value. */
static uint8_t golden_id[N_ROWS][16];
static uint8_t *golden_value[N_ROWS];
static int golden_value_len[N_ROWS];

static void put_u64(uint8_t *out, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static int ignore_rows(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                       const uint8_t *value, size_t value_len)
{
    (void)ctx, (void)kind, (void)key, (void)key_len, (void)value, (void)value_len;
    return 0;
}

static void rm_files(void)
{
    char p[320];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static void cleanup(void)
{
    rm_files();
    rmdir(dir);
    free(golden_file);
    for (int i = 0; i < N_ROWS; i++)
        sqlite3_free(golden_value[i]);
}

static uint8_t *read_file(const char *p, size_t *len)
{
    int fd = open(p, O_RDONLY);
    FUZZ_CHECK(fd >= 0);
    struct stat st;
    FUZZ_CHECK(fstat(fd, &st) == 0);
    uint8_t *b = fuzz_alloc((size_t)st.st_size);
    FUZZ_CHECK(read(fd, b, (size_t)st.st_size) == st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static void write_file(const char *p, const uint8_t *b, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, b, len) == (ssize_t)len);
    close(fd);
}

/* A real identity as a user row holds it (seed, x.priv, x.pub), made once. */
#define IDENTITY_BYTES (3 * CURVE_KEY_LEN)
static uint8_t identity_bytes[IDENTITY_BYTES];

static void setup(void)
{
    struct curve_identity id;
    FUZZ_CHECK(curve_identity_generate(&id) == 0);
    memcpy(identity_bytes, id.seed, CURVE_KEY_LEN);
    memcpy(identity_bytes + CURVE_KEY_LEN, id.x.priv, CURVE_KEY_LEN);
    memcpy(identity_bytes + 2 * CURVE_KEY_LEN, id.x.pub, CURVE_KEY_LEN);
    OPENSSL_cleanse(&id, sizeof(id));
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/fuzz_state.XXXXXX", tmp);
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/n1.db", dir);
    atexit(cleanup);
    for (int i = 0; i < STATE_KEY_LEN; i++)
        state_key[i] = (uint8_t)(i * 7 + 1);
    for (int v = 1; v <= 3; v++) {
        struct golden_row *r = &rows[v - 1];
        r->kind = "sym_key";
        put_u64(r->key, (uint64_t)v);
        r->key_len = 8;
        r->value[0] = 1;
        memset(r->value + 1, 0x10 * v, 32);
        r->value_len = 33;
    }
    struct golden_row *ring = &rows[3];
    ring->kind = "sym_ring";
    ring->key_len = 0;
    ring->value[0] = 1;
    put_u64(ring->value + 1, 4); /* next_id */
    put_u64(ring->value + 9, 1); /* trimmed_below */
    put_u64(ring->value + 17, 1); /* min_decryption_version */
    ring->value_len = 25;

    struct state *st;
    char why[256];
    FUZZ_CHECK(state_open(&st, dir, "n1", state_key, ignore_rows, NULL, why, sizeof(why)) ==
               STATE_OK);
    for (int i = 0; i < N_ROWS; i++)
        FUZZ_CHECK(state_put(st, rows[i].kind, rows[i].key, rows[i].key_len, rows[i].value,
                             rows[i].value_len) == 0);
    FUZZ_CHECK(state_commit(st) == 0);
    state_close(st);
    golden_file = read_file(path, &golden_len);

    /* Which id holds which row: each row's value unseals only as itself, so
     * open once and match by content below (the ids are HMACs). */
    sqlite3 *db;
    FUZZ_CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *q;
    FUZZ_CHECK(sqlite3_prepare_v2(db, "SELECT id, value FROM rows ORDER BY id", -1, &q, NULL) ==
               SQLITE_OK);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        FUZZ_CHECK(n < N_ROWS && sqlite3_column_bytes(q, 0) == 16);
        memcpy(golden_id[n], sqlite3_column_blob(q, 0), 16);
        golden_value_len[n] = sqlite3_column_bytes(q, 1);
        golden_value[n] = sqlite3_malloc(golden_value_len[n]);
        memcpy(golden_value[n], sqlite3_column_blob(q, 1), (size_t)golden_value_len[n]);
        n++;
    }
    FUZZ_CHECK(n == N_ROWS);
    sqlite3_finalize(q);
    sqlite3_close(db);
    rm_files();
}

/* --- damaged files ---------------------------------------------------------- */

struct recorder {
    struct ring_loader *ring;
    int n_seen;
    bool seen[N_ROWS];
};

static int record(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                  const uint8_t *value, size_t value_len)
{
    struct recorder *rec = ctx;
    int found = -1;
    for (int i = 0; i < N_ROWS; i++)
        if (!strcmp(kind, rows[i].kind) && key_len == rows[i].key_len &&
            !memcmp(key, rows[i].key, key_len) && value_len == rows[i].value_len &&
            !memcmp(value, rows[i].value, value_len))
            found = i;
    FUZZ_CHECK(found >= 0); /* property 2 */
    FUZZ_CHECK(!rec->seen[found]);
    rec->seen[found] = true;
    rec->n_seen++;
    return ringstate_load_row(rec->ring, kind, key, key_len, value, value_len);
}

static void exec_blob(sqlite3 *db, const char *sql, const void *a, int alen, const void *b,
                      int blen)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_blob(q, 1, a, alen, SQLITE_TRANSIENT);
    if (b)
        sqlite3_bind_blob(q, 2, b, blen, SQLITE_TRANSIENT);
    (void)sqlite3_step(q);
    sqlite3_finalize(q);
}

/* The current value of the row with golden id i (or NULL), copied. */
static uint8_t *value_of(sqlite3 *db, const uint8_t *id, int *len)
{
    sqlite3_stmt *q;
    uint8_t *v = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM rows WHERE id = ?1", -1, &q, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_blob(q, 1, id, 16, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
        *len = sqlite3_column_bytes(q, 0);
        v = fuzz_alloc((size_t)*len);
        if (*len)
            memcpy(v, sqlite3_column_blob(q, 0), (size_t)*len);
    }
    sqlite3_finalize(q);
    return v;
}

/* What the rows table holds now: *genuine is false when any (id, value) is
 * not one written; present[i] whether golden row (by id) i is there as
 * written. False when the table cannot be read. */
static bool survey(bool present[N_ROWS], bool *genuine)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    bool ok = false;
    *genuine = true;
    memset(present, 0, N_ROWS * sizeof(bool));
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_prepare_v2(db, "SELECT id, value FROM rows", -1, &q, NULL) != SQLITE_OK)
        goto out;
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        const void *id = sqlite3_column_blob(q, 0), *v = sqlite3_column_blob(q, 1);
        int il = sqlite3_column_bytes(q, 0), vl = sqlite3_column_bytes(q, 1);
        int match = -1;
        for (int i = 0; i < N_ROWS; i++)
            if (il == 16 && id && !memcmp(id, golden_id[i], 16) && v &&
                vl == golden_value_len[i] && !memcmp(v, golden_value[i], (size_t)vl))
                match = i;
        if (match < 0)
            *genuine = false;
        else
            present[match] = true;
    }
    ok = step == SQLITE_DONE;
    sqlite3_finalize(q);
out:
    sqlite3_close(db);
    return ok;
}

static void damaged_file(const uint8_t *data, size_t size)
{
    bool meta_touched = false;
    size_t raw[64], n_raw = 0; /* file offsets to flip */
    rm_files();
    write_file(path, golden_file, golden_len);
    sqlite3 *db;
    FUZZ_CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (; size >= 3; data += 3, size -= 3) {
        uint8_t op = data[0] % 10, a = data[1], b = data[2];
        const uint8_t *ida = golden_id[a % N_ROWS], *idb = golden_id[b % N_ROWS];
        int len;
        uint8_t *v = NULL;
        switch (op) {
        case 0:
            if ((v = value_of(db, ida, &len)) && len) {
                v[b % len] ^= (uint8_t)(1u << (b & 7));
                exec_blob(db, "UPDATE rows SET value = ?2 WHERE id = ?1", ida, 16, v, len);
            }
            break;
        case 1: {
            uint8_t id[16];
            memcpy(id, ida, 16);
            id[b % 16] ^= (uint8_t)(1u << (b & 7));
            exec_blob(db, "UPDATE rows SET id = ?2 WHERE id = ?1", ida, 16, id, 16);
            break;
        }
        case 2: {
            int lb;
            uint8_t *w = value_of(db, idb, &lb);
            if ((v = value_of(db, ida, &len)) && w) {
                exec_blob(db, "UPDATE rows SET value = ?2 WHERE id = ?1", ida, 16, w, lb);
                exec_blob(db, "UPDATE rows SET value = ?2 WHERE id = ?1", idb, 16, v, len);
            }
            free(w);
            break;
        }
        case 3:
            if ((v = value_of(db, ida, &len)))
                exec_blob(db, "UPDATE rows SET value = ?2 WHERE id = ?1", idb, 16, v, len);
            break;
        case 4:
            if ((v = value_of(db, ida, &len)))
                exec_blob(db, "UPDATE rows SET value = ?2 WHERE id = ?1", ida, 16, v,
                          b < len ? b : len);
            break;
        case 5: exec_blob(db, "DELETE FROM rows WHERE id = ?1", ida, 16, NULL, 0); break;
        case 6:
            exec_blob(db, "UPDATE rows SET value = ?2 WHERE id = ?1", ida, 16,
                      golden_value[a % N_ROWS],
                      b < golden_value_len[a % N_ROWS] ? b : golden_value_len[a % N_ROWS]);
            break;
        case 7: {
            meta_touched = true;
            static const char *const META[] = {"format", "version", "node_id", "check"};
            char sql[128];
            snprintf(sql, sizeof(sql),
                     "UPDATE meta SET value = CAST(value AS BLOB) || x'%02x' WHERE name = '%s'",
                     b, META[a % 4]);
            sqlite3_exec(db, sql, NULL, NULL, NULL);
            break;
        }
        case 8: {
            uint8_t id[16];
            memcpy(id, idb, 16);
            id[a % 16] ^= (uint8_t)(1u << (b & 7));
            exec_blob(db, "INSERT OR IGNORE INTO rows (id, value) VALUES (?1, ?2)", id, 16,
                      golden_value[a % N_ROWS], golden_value_len[a % N_ROWS]);
            break;
        }
        default:
            if (n_raw < 64)
                raw[n_raw++] = (size_t)a * 256 + b;
            break;
        }
        free(v);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    FUZZ_CHECK(sqlite3_close(db) == SQLITE_OK);
    /* Raw damage, once SQLite has let go of the file. */
    if (n_raw) {
        size_t len;
        uint8_t *b = read_file(path, &len);
        for (size_t i = 0; i < n_raw; i++)
            if (raw[i] < len)
                b[raw[i]] ^= 0x55;
        write_file(path, b, len);
        free(b);
    }
    bool clean_meta = !meta_touched && !n_raw; /* only rows were changed */

    bool present[N_ROWS], genuine;
    bool readable = survey(present, &genuine);
    size_t before_len;
    uint8_t *before = read_file(path, &before_len);

    struct recorder rec = {.ring = ringstate_loader_new()};
    FUZZ_CHECK(rec.ring != NULL);
    struct state *st = NULL;
    char why[512];
    enum state_status s = state_open(&st, dir, "n1", state_key, record, &rec, why, sizeof(why));
    if (s == STATE_OK) {
        FUZZ_CHECK(readable && genuine); /* property 3 */
        int n_present = 0;
        for (int i = 0; i < N_ROWS; i++)
            n_present += present[i];
        FUZZ_CHECK(rec.n_seen == n_present);
        /* property 4 */
        bool fits = ringstate_check(rec.ring) == 0;
        FUZZ_CHECK(fits == (n_present == N_ROWS || n_present == 0));
        state_abandon(st);
    } else {
        FUZZ_CHECK(st == NULL);
        if (readable && !genuine && clean_meta)
            FUZZ_CHECK(s == STATE_DAMAGED);
        /* property 1: refused, the file as it was */
        size_t after_len;
        uint8_t *after = read_file(path, &after_len);
        FUZZ_CHECK(after_len == before_len && !memcmp(after, before, after_len));
        free(after);
    }
    if (clean_meta && readable && genuine && s != STATE_OK)
        fprintf(stderr, "refused a genuine table: %s\n", why);
    FUZZ_CHECK(!(clean_meta && readable && genuine && s != STATE_OK));
    free(before);
    ringstate_loader_free(rec.ring);
}

/* --- plaintext rows ---------------------------------------------------------- */

static const char *const KINDS[] = {"sym_key", "sym_ring", "user", "opk", "peer",
                                    "session", "remote",  "seen", "zz"};

struct row_reader {
    const uint8_t *p;
    size_t left;
};

static bool next_row(struct row_reader *r, const char **kind, const uint8_t **key,
                     size_t *key_len, const uint8_t **value, size_t *value_len)
{
    if (r->left < 4)
        return false;
    *kind = KINDS[r->p[0] % (sizeof(KINDS) / sizeof(KINDS[0]))];
    *key_len = r->p[1];
    r->p += 2, r->left -= 2;
    if (r->left < *key_len + 2)
        return false;
    *key = r->p;
    r->p += *key_len, r->left -= *key_len;
    *value_len = (size_t)r->p[0] << 8 | r->p[1];
    r->p += 2, r->left -= 2;
    if (r->left < *value_len)
        return false;
    *value = r->p;
    r->p += *value_len, r->left -= *value_len;
    return true;
}

static void plaintext_rows(const uint8_t *data, size_t size)
{
    /* Each row in a heap block of its own, as state_open hands it over. */
    const char *kind;
    const uint8_t *key, *value;
    size_t key_len, value_len;

    struct ring_loader *ring = ringstate_loader_new();
    FUZZ_CHECK(ring != NULL);
    bool ok = true;
    struct row_reader r = {data, size};
    while (ok && next_row(&r, &kind, &key, &key_len, &value, &value_len)) {
        uint8_t *k = fuzz_dup(key, key_len), *v = fuzz_dup(value, value_len);
        ok = ringstate_load_row(ring, kind, k, key_len, v, value_len) == 0;
        free(k);
        free(v);
    }
    if (ok && ringstate_check(ring) == 0 && !ringstate_empty(ring)) {
        struct keyring kr;
        struct ring_saved saved;
        if (ringstate_build(ring, &kr, &saved) == 0)
            keyring_free(&kr);
    }
    ringstate_loader_free(ring);

    struct persist_loader *pl = persist_loader_new();
    FUZZ_CHECK(pl != NULL);
    ok = true;
    r = (struct row_reader){data, size};
    while (ok && next_row(&r, &kind, &key, &key_len, &value, &value_len)) {
        uint8_t *k = fuzz_dup(key, key_len), *v = fuzz_dup(value, value_len);
        if (!strcmp(kind, "user") && value_len >= 1 + IDENTITY_BYTES && v[1] != 0xFF)
            memcpy(v + 1, identity_bytes, IDENTITY_BYTES);
        ok = persist_load_row(pl, kind, k, key_len, v, value_len) == 0;
        free(k);
        free(v);
    }
    if (ok) {
        struct store st;
        store_init(&st, 32);
        (void)persist_finish(pl, &st); /* frees the loader */
        store_free(&st);
    } else {
        persist_loader_free(pl);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (!size)
        return 0;
    if (data[0] & 1)
        plaintext_rows(data + 1, size - 1);
    else
        damaged_file(data + 1, size - 1);
    return 0;
}
