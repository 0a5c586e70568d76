/* state.c - sealed rows in an SQLite file (see state.h). */
#include "securitor/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "securitor/aead.h"
#include "securitor/kdf.h"
#include "securitor/map.h"
#include "securitor/rand.h"
#include "securitor/wipe.h"

#define ID_LEN 16
#define SALT_LEN 16
#define AAD_LABEL "securitor state v1"
#define CHECK_TEXT "securitor key check"
#define KIND_MAX 32
#define KEY_MAX 65535

struct pending {
    uint8_t id[ID_LEN];
    uint8_t *value; /* sealed; NULL: delete the row */
    size_t len;
};

/* Changes sealed on the worker (state_seal), waiting for state_flush. */
struct txn {
    struct pending **ops; /* in the order they came */
    size_t n_ops;
    bool failed;          /* a change could not be buffered: the flush fails */
    struct txn *next;
};

struct state {
    sqlite3 *db;
    char *path;
    char *node_id;
    uint8_t seal_key[32], id_key[32];
    sqlite3_stmt *put, *del, *begin, *commit, *rollback;
    struct pending **ops; /* in the order they came */
    size_t n_ops, cap_ops;
    struct map op_index;  /* id -> its struct pending */
    bool failed;         /* a put could not be buffered: the next commit fails */
    /* Sealed transactions, oldest first: the only part the two threads
     * share (under lock). */
    pthread_mutex_t lock;
    struct txn *sealed, **sealed_tail;
    bool wal_existed;    /* DIR/<id>.db-wal was there before we opened it */
    struct state_stats stats;
};

const char *state_status_text(enum state_status s)
{
    switch (s) {
    case STATE_OK: return "ok";
    case STATE_WRONG_KEY: return "wrong key";
    case STATE_DAMAGED: return "damaged";
    case STATE_NOT_A_STATE: return "not a securitor state";
    case STATE_OTHER_NODE: return "the state of another node";
    case STATE_IN_USE: return "in use by another process";
    case STATE_IO: return "cannot be read or written";
    case STATE_NO_MEMORY: return "out of memory";
    }
    return "unknown";
}

/* ============================================================================
 * Sealing
 * ========================================================================== */

static int derive(uint8_t out[static 32], const uint8_t key[static STATE_KEY_LEN],
                  const char *use, const char *node_id)
{
    char info[320];
    int n = snprintf(info, sizeof(info), "%s|%s", use, node_id);
    if (n < 0 || (size_t)n >= sizeof(info))
        return -1;
    return hkdf_sha256(out, 32, (const uint8_t *)AAD_LABEL, sizeof(AAD_LABEL) - 1, key,
                       STATE_KEY_LEN, info, (size_t)n);
}

static int row_id(const struct state *st, uint8_t id[static ID_LEN], const char *kind,
                  const void *key, size_t key_len)
{
    static const uint8_t zero = 0;
    uint8_t mac[HMAC_SHA256_LEN];
    const struct bytes parts[] = {{(const uint8_t *)kind, strlen(kind)}, {&zero, 1},
                                  {key, key_len}};
    int rc = hmac_sha256(mac, st->id_key, sizeof(st->id_key), parts, 3);
    memcpy(id, mac, ID_LEN);
    WIPE_OBJ(mac);
    return rc;
}

/* The key of one row: HKDF-Expand(seal key, "row" || salt), one block. */
static struct aead_key *row_key(const struct state *st, const uint8_t salt[static SALT_LEN])
{
    static const uint8_t label[3] = {'r', 'o', 'w'}, counter = 0x01;
    uint8_t okm[HMAC_SHA256_LEN];
    const struct bytes parts[] = {{label, 3}, {salt, SALT_LEN}, {&counter, 1}};
    struct aead_key *k = NULL;
    if (!hmac_sha256(okm, st->seal_key, sizeof(st->seal_key), parts, 3))
        k = aead_key_new(okm);
    WIPE_OBJ(okm);
    return k;
}

/* Seals pt for row id into a fresh buffer: salt || ct || tag. */
static uint8_t *seal(const struct state *st, const uint8_t id[static ID_LEN], const uint8_t *pt,
                     size_t len, size_t *out_len)
{
    static const uint8_t nonce[AEAD_IV_LEN]; /* each row key seals once */
    uint8_t aad[sizeof(AAD_LABEL) - 1 + ID_LEN];
    uint8_t *out = malloc(SALT_LEN + len + AEAD_TAG_LEN);
    struct aead_key *k = NULL;
    if (!out)
        return NULL;
    memcpy(aad, AAD_LABEL, sizeof(AAD_LABEL) - 1);
    memcpy(aad + sizeof(AAD_LABEL) - 1, id, ID_LEN);
    if (rand_public(out, SALT_LEN) || !(k = row_key(st, out)) ||
        aead_seal(k, nonce, aad, sizeof(aad), pt, len, out + SALT_LEN,
                  out + SALT_LEN + len) != AEAD_OK) {
        aead_key_free(k);
        free(out);
        return NULL;
    }
    aead_key_free(k);
    *out_len = SALT_LEN + len + AEAD_TAG_LEN;
    return out;
}

/* Opens a sealed row into a fresh buffer (wiped and freed by the caller).
 * NULL when it does not authenticate (or no memory: *no_memory). */
static uint8_t *unseal(const struct state *st, const uint8_t id[static ID_LEN],
                       const uint8_t *in, size_t len, size_t *out_len, bool *no_memory)
{
    static const uint8_t nonce[AEAD_IV_LEN];
    uint8_t aad[sizeof(AAD_LABEL) - 1 + ID_LEN];
    *no_memory = false;
    if (len < SALT_LEN + AEAD_TAG_LEN)
        return NULL;
    size_t n = len - SALT_LEN - AEAD_TAG_LEN;
    uint8_t *pt = malloc(n ? n : 1);
    struct aead_key *k = pt ? row_key(st, in) : NULL;
    if (!pt || !k) {
        free(pt);
        *no_memory = true;
        return NULL;
    }
    memcpy(aad, AAD_LABEL, sizeof(AAD_LABEL) - 1);
    memcpy(aad + sizeof(AAD_LABEL) - 1, id, ID_LEN);
    enum aead_result r = aead_open(k, nonce, AEAD_IV_LEN, aad, sizeof(aad), in + SALT_LEN, n,
                                   in + SALT_LEN + n, AEAD_TAG_LEN, pt);
    aead_key_free(k);
    if (r != AEAD_OK) { /* aead_open wiped pt */
        free(pt);
        *no_memory = r == AEAD_INTERNAL;
        return NULL;
    }
    *out_len = n;
    return pt;
}

/* ============================================================================
 * Opening
 * ========================================================================== */

__attribute__((format(printf, 3, 4)))
static void say(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

bool state_id_usable(const char *id)
{
    size_t len = strlen(id);
    if (!len || len > 200 || id[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (id[i] == '/' || (unsigned char)id[i] < 0x20)
            return false;
    return true;
}

/* An existing file must be an SQLite database in WAL mode (bytes 18 and 19
 * of the header are 2), as every state is made; anything else is not
 * opened by SQLite at all, so it cannot be changed. */
static enum state_status check_header(const char *path, bool *exists)
{
    uint8_t head[100];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *exists = fd >= 0;
    if (fd < 0)
        return errno == ENOENT ? STATE_OK : STATE_IO;
    ssize_t got = read(fd, head, sizeof(head));
    close(fd);
    if (got != (ssize_t)sizeof(head) || memcmp(head, "SQLite format 3", 16) ||
        head[18] != 2 || head[19] != 2)
        return STATE_NOT_A_STATE;
    return STATE_OK;
}

/* What SQLite's last error means for a state. */
static enum state_status sqlite_status(sqlite3 *db)
{
    switch (sqlite3_errcode(db) & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return STATE_IN_USE;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return STATE_DAMAGED;
    case SQLITE_NOMEM: return STATE_NO_MEMORY;
    default: return STATE_IO;
    }
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* One text or blob of the meta table, copied into out (NUL-terminated);
 * -1 when absent. */
static int meta_get(sqlite3 *db, const char *name, uint8_t *out, size_t cap, size_t *len)
{
    sqlite3_stmt *q = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE name = ?1", -1, &q, NULL) ||
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC))
        goto out;
    if (sqlite3_step(q) == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(q, 0);
        int n = sqlite3_column_bytes(q, 0);
        if (n >= 0 && (size_t)n < cap) {
            if (n)
                memcpy(out, v, (size_t)n);
            out[n] = 0;
            *len = (size_t)n;
            rc = 0;
        }
    }
out:
    sqlite3_finalize(q);
    return rc;
}

static int meta_put(sqlite3 *db, const char *name, const void *value, size_t len)
{
    sqlite3_stmt *q = NULL;
    int rc = -1;
    if (!sqlite3_prepare_v2(db, "INSERT INTO meta (name, value) VALUES (?1, ?2)", -1, &q,
                            NULL) &&
        !sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC) &&
        !sqlite3_bind_blob(q, 2, value, (int)len, SQLITE_STATIC) && sqlite3_step(q) == SQLITE_DONE)
        rc = 0;
    sqlite3_finalize(q);
    return rc;
}

/* A new state's tables and meta rows, in one transaction on st->db. */
static enum state_status create(struct state *st)
{
    static const uint8_t check_id[ID_LEN];
    size_t len;
    char version[8];
    snprintf(version, sizeof(version), "%d", STATE_VERSION);
    uint8_t *check = seal(st, check_id, (const uint8_t *)CHECK_TEXT, sizeof(CHECK_TEXT) - 1, &len);
    if (!check)
        return STATE_NO_MEMORY;
    int rc = exec(st->db, "BEGIN IMMEDIATE") ||
             exec(st->db, "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) "
                          "WITHOUT ROWID") ||
             exec(st->db, "CREATE TABLE rows (id BLOB PRIMARY KEY, value BLOB NOT NULL) "
                          "WITHOUT ROWID") ||
             meta_put(st->db, "format", STATE_FORMAT, sizeof(STATE_FORMAT) - 1) ||
             meta_put(st->db, "version", version, strlen(version)) ||
             meta_put(st->db, "node_id", st->node_id, strlen(st->node_id)) ||
             meta_put(st->db, "check", check, len) || exec(st->db, "COMMIT");
    free(check);
    if (rc) {
        exec(st->db, "ROLLBACK");
        return sqlite3_errcode(st->db) == SQLITE_BUSY ? STATE_IN_USE : STATE_IO;
    }
    return STATE_OK;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Makes a new state at st->path atomically: built whole in a file beside
 * it, made durable, then renamed into place. A kill at any instant leaves
 * either no state (and a stale temporary file, removed by the next start)
 * or a whole one, never a file that is neither. */
static enum state_status make_new(struct state *st, const char *dir, char *why, size_t why_len)
{
    size_t n = strlen(dir) + strlen(st->node_id) + 32;
    char *tmp = malloc(n), *tmp_wal = malloc(n + 4);
    enum state_status rc = STATE_NO_MEMORY;
    if (!tmp || !tmp_wal)
        goto out;
    snprintf(tmp, n, "%s/.%s.db.creating", dir, st->node_id);
    snprintf(tmp_wal, n + 4, "%s-wal", tmp);
    unlink(tmp); /* what a start killed half way left */
    unlink(tmp_wal);
    rc = STATE_IO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* only its owner reads it */
    if (fd < 0) {
        say(why, why_len, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    if (sqlite3_open_v2(tmp, &st->db, SQLITE_OPEN_READWRITE, NULL) ||
        exec(st->db, "PRAGMA journal_mode=WAL") || exec(st->db, "PRAGMA synchronous=FULL") ||
        (rc = create(st)) != STATE_OK) {
        say(why, why_len, "cannot create %s: %s", tmp, sqlite3_errmsg(st->db));
        rc = rc == STATE_OK ? STATE_IO : rc;
        goto out;
    }
    /* Closing checkpoints everything into the file and removes the WAL. */
    if (sqlite3_close(st->db) != SQLITE_OK) {
        say(why, why_len, "cannot create %s", tmp);
        goto out;
    }
    st->db = NULL;
    if (fsync_path(tmp, O_RDONLY) || rename(tmp, st->path) || fsync_path(dir, O_RDONLY)) {
        say(why, why_len, "cannot create %s: %s", st->path, strerror(errno));
        goto out;
    }
    rc = STATE_OK;
out:
    if (rc != STATE_OK) {
        sqlite3_close(st->db);
        st->db = NULL;
        if (tmp)
            unlink(tmp);
    }
    free(tmp);
    free(tmp_wal);
    return rc;
}

/* Checks what the file says it is, and the key. */
static enum state_status check_meta(struct state *st, char *why, size_t why_len)
{
    static const uint8_t check_id[ID_LEN];
    uint8_t value[512];
    size_t len;
    char version[8];
    bool no_memory;
    snprintf(version, sizeof(version), "%d", STATE_VERSION);
    if (meta_get(st->db, "format", value, sizeof(value), &len) ||
        len != sizeof(STATE_FORMAT) - 1 || memcmp(value, STATE_FORMAT, len)) {
        say(why, why_len, "%s is not a securitor state", st->path);
        return STATE_NOT_A_STATE;
    }
    if (meta_get(st->db, "version", value, sizeof(value), &len) || strcmp((char *)value, version)) {
        say(why, why_len, "%s is a securitor state of another version (%s)", st->path,
            (char *)value);
        return STATE_NOT_A_STATE;
    }
    if (meta_get(st->db, "node_id", value, sizeof(value), &len) ||
        strcmp((char *)value, st->node_id)) {
        say(why, why_len, "%s is the state of node \"%.200s\", not of this node", st->path,
            (char *)value);
        return STATE_OTHER_NODE;
    }
    if (meta_get(st->db, "check", value, sizeof(value), &len)) {
        say(why, why_len, "%s has no key check: damaged", st->path);
        return STATE_DAMAGED;
    }
    size_t n;
    uint8_t *pt = unseal(st, check_id, value, len, &n, &no_memory);
    bool ok = pt && n == sizeof(CHECK_TEXT) - 1 && !memcmp(pt, CHECK_TEXT, n);
    free(pt);
    if (no_memory)
        return STATE_NO_MEMORY;
    if (!ok) {
        say(why, why_len, "%s was sealed with another key (check --key-file or "
                          "SECURITOR_KEY)", st->path);
        return STATE_WRONG_KEY;
    }
    return STATE_OK;
}

/* Unseals every row, checks that it is stored under its own id, and hands
 * it to load. */
static enum state_status load_rows(struct state *st, state_row_fn load, void *ctx, char *why,
                                   size_t why_len)
{
    sqlite3_stmt *q = NULL;
    enum state_status rc = STATE_IO;
    *why = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT id, value FROM rows", -1, &q, NULL)) {
        rc = sqlite_status(st->db);
        goto out;
    }
    int step;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        const uint8_t *id = sqlite3_column_blob(q, 0), *v = sqlite3_column_blob(q, 1);
        int id_len = sqlite3_column_bytes(q, 0), v_len = sqlite3_column_bytes(q, 1);
        size_t n;
        bool no_memory;
        uint8_t *pt = id_len == ID_LEN && v ? unseal(st, id, v, (size_t)v_len, &n, &no_memory)
                                            : NULL;
        if (!pt) {
            rc = pt == NULL && id_len == ID_LEN && no_memory ? STATE_NO_MEMORY : STATE_DAMAGED;
            say(why, why_len, "%s: a row does not authenticate (damaged, or moved from "
                              "another place)", st->path);
            goto out;
        }
        /* kind_len (1) || kind || key_len (2, big-endian) || key || value */
        size_t kind_len = n ? pt[0] : 0, key_len = 0;
        uint8_t again[ID_LEN];
        char kind[KIND_MAX + 1];
        bool ok = n >= 3 && kind_len && kind_len <= KIND_MAX && 1 + kind_len + 2 <= n;
        if (ok) {
            key_len = (size_t)pt[1 + kind_len] << 8 | pt[2 + kind_len];
            ok = 3 + kind_len + key_len <= n;
        }
        if (ok) {
            memcpy(kind, pt + 1, kind_len);
            kind[kind_len] = 0;
            const uint8_t *key = pt + 3 + kind_len;
            ok = !row_id(st, again, kind, key, key_len) && !memcmp(again, id, ID_LEN) &&
                 load(ctx, kind, key, key_len, key + key_len, n - 3 - kind_len - key_len) == 0;
        }
        wipe_bytes(pt, n);
        free(pt);
        if (!ok) {
            rc = STATE_DAMAGED;
            say(why, why_len, "%s: a row is not what its place says (damaged or swapped)",
                st->path);
            goto out;
        }
    }
    rc = step == SQLITE_DONE ? STATE_OK : sqlite_status(st->db);
out:
    if (rc == STATE_DAMAGED && !*why)
        say(why, why_len, "%s is damaged (SQLite: %s)", st->path, sqlite3_errmsg(st->db));
    else if (rc != STATE_OK && !*why)
        say(why, why_len, "%s: cannot read: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_finalize(q);
    return rc;
}

/* Verifies the whole file (structure, meta, key, every row) in one read
 * transaction, which also takes the exclusive lock. */
static enum state_status verify_and_load(struct state *st, state_row_fn load, void *ctx,
                                         char *why, size_t why_len)
{
    if (exec(st->db, "BEGIN IMMEDIATE")) {
        enum state_status rc = sqlite_status(st->db);
        if (rc == STATE_IN_USE)
            say(why, why_len, "%s is in use by another process", st->path);
        else if (rc == STATE_DAMAGED)
            say(why, why_len, "%s is damaged (SQLite: %s)", st->path, sqlite3_errmsg(st->db));
        else
            say(why, why_len, "%s: %s", st->path, sqlite3_errmsg(st->db));
        return rc;
    }
    enum state_status rc = STATE_OK;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA quick_check", -1, &q, NULL) ||
        sqlite3_step(q) != SQLITE_ROW || !sqlite3_column_text(q, 0) ||
        strcmp((const char *)sqlite3_column_text(q, 0), "ok")) {
        say(why, why_len, "%s fails SQLite's check: damaged", st->path);
        rc = STATE_DAMAGED;
    }
    sqlite3_finalize(q);
    if (rc == STATE_OK)
        rc = check_meta(st, why, why_len);
    if (rc == STATE_OK)
        rc = load_rows(st, load, ctx, why, why_len);
    exec(st->db, "COMMIT"); /* nothing was written: this only ends the read */
    return rc;
}

static void free_ops(struct pending **ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ops[i]->value); /* sealed: nothing to wipe */
        free(ops[i]);
    }
}

static void free_txns(struct txn *t)
{
    while (t) {
        struct txn *next = t->next;
        free_ops(t->ops, t->n_ops);
        free(t->ops);
        free(t);
        t = next;
    }
}

/* Takes the sealed transactions off the list. */
static struct txn *take_sealed(struct state *st)
{
    pthread_mutex_lock(&st->lock);
    struct txn *t = st->sealed;
    st->sealed = NULL;
    st->sealed_tail = &st->sealed;
    pthread_mutex_unlock(&st->lock);
    return t;
}

static void free_state(struct state *st)
{
    if (!st)
        return;
    sqlite3_finalize(st->put);
    sqlite3_finalize(st->del);
    sqlite3_finalize(st->begin);
    sqlite3_finalize(st->commit);
    sqlite3_finalize(st->rollback);
    sqlite3_close(st->db);
    state_discard(st);
    free_txns(st->sealed);
    free(st->ops);
    map_free(&st->op_index);
    free(st->path);
    free(st->node_id);
    pthread_mutex_destroy(&st->lock);
    WIPE_PTR(st);
    free(st);
}

enum state_status state_open(struct state **out, const char *dir, const char *node_id,
                             const uint8_t key[static STATE_KEY_LEN], state_row_fn load,
                             void *ctx, char *why, size_t why_len)
{
    struct state *st = calloc(1, sizeof(*st));
    enum state_status rc = STATE_NO_MEMORY;
    bool exists, wal_existed = true;
    char *wal = NULL;
    *out = NULL;
    if (!st)
        goto fail;
    pthread_mutex_init(&st->lock, NULL);
    st->sealed_tail = &st->sealed;
    if (!state_id_usable(node_id)) {
        say(why, why_len, "the node id \"%.64s\" cannot name a state file", node_id);
        rc = STATE_IO;
        goto fail;
    }
    if (mkdir(dir, 0700) && errno != EEXIST) {
        say(why, why_len, "cannot create %s: %s", dir, strerror(errno));
        rc = STATE_IO;
        goto fail;
    }
    size_t plen = strlen(dir) + strlen(node_id) + 5;
    if (!(st->path = malloc(plen)) || !(st->node_id = strdup(node_id)))
        goto fail;
    snprintf(st->path, plen, "%s/%s.db", dir, node_id);
    if (derive(st->seal_key, key, "seal", node_id) || derive(st->id_key, key, "row id", node_id))
        goto fail;
    if ((rc = check_header(st->path, &exists)) != STATE_OK) {
        if (rc == STATE_IO)
            say(why, why_len, "cannot read %s: %s", st->path, strerror(errno));
        else
            say(why, why_len, "%s is not a securitor state", st->path);
        goto fail;
    }
    if (!exists && (rc = make_new(st, dir, why, why_len)) != STATE_OK)
        goto fail;
    rc = STATE_IO;
    /* SQLite makes an empty WAL file next to a WAL database it reads; a
     * state that is refused takes it away again. */
    size_t wlen = strlen(st->path) + 5;
    if (!(wal = malloc(wlen)))
        goto fail;
    snprintf(wal, wlen, "%s-wal", st->path);
    st->wal_existed = wal_existed = access(wal, F_OK) == 0;
    if (sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE, NULL)) {
        say(why, why_len, "cannot open %s: %s", st->path, st->db ? sqlite3_errmsg(st->db) : "");
        goto fail;
    }
    /* Until the state has verified, closing must not checkpoint: a state
     * that is refused keeps its bytes. */
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    if (exec(st->db, "PRAGMA locking_mode=EXCLUSIVE") || exec(st->db, "PRAGMA busy_timeout=0"))
        goto fail;
    if ((rc = verify_and_load(st, load, ctx, why, why_len)) != STATE_OK)
        goto fail;
    rc = STATE_IO;
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
    /* Durable at every commit; deleted rows zeroed in their pages; the WAL
     * cut back after each checkpoint, so old frames do not linger. */
    if (exec(st->db, "PRAGMA synchronous=FULL") || exec(st->db, "PRAGMA secure_delete=ON") ||
        exec(st->db, "PRAGMA journal_size_limit=0") ||
        sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO rows (id, value) VALUES (?1, ?2)", -1,
                           &st->put, NULL) ||
        sqlite3_prepare_v2(st->db, "DELETE FROM rows WHERE id = ?1", -1, &st->del, NULL) ||
        sqlite3_prepare_v2(st->db, "BEGIN IMMEDIATE", -1, &st->begin, NULL) ||
        sqlite3_prepare_v2(st->db, "COMMIT", -1, &st->commit, NULL) ||
        sqlite3_prepare_v2(st->db, "ROLLBACK", -1, &st->rollback, NULL)) {
        say(why, why_len, "%s: %s", st->path, sqlite3_errmsg(st->db));
        goto fail;
    }
    *out = st;
    free(wal);
    return STATE_OK;
fail:
    if (st && st->db) /* no checkpoint: NO_CKPT_ON_CLOSE is still set */
        sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    free_state(st);
    struct stat sb;
    if (wal && !wal_existed && stat(wal, &sb) == 0 && sb.st_size == 0)
        unlink(wal);
    free(wal);
    return rc;
}

enum state_status state_reload(struct state *st, state_row_fn load, void *ctx, char *why,
                               size_t why_len)
{
    state_discard(st);
    free_txns(take_sealed(st)); /* never to be written: they followed a failed one */
    return verify_and_load(st, load, ctx, why, why_len);
}

/* ============================================================================
 * Changes
 *
 * Each buffered operation is its own allocation, so the index can key on
 * the id inside it; the array keeps them in the order they came.
 * ========================================================================== */

/* The buffered operation for id, made (as a delete) when absent. */
static struct pending *op_for(struct state *st, const uint8_t id[static ID_LEN])
{
    struct pending *p = map_get(&st->op_index, id, ID_LEN);
    if (p)
        return p;
    if (st->n_ops == st->cap_ops) {
        size_t cap = st->cap_ops ? 2 * st->cap_ops : 64;
        struct pending **ops = realloc(st->ops, cap * sizeof(*ops));
        if (!ops)
            return NULL;
        st->ops = ops;
        st->cap_ops = cap;
    }
    if (!(p = calloc(1, sizeof(*p))))
        return NULL;
    memcpy(p->id, id, ID_LEN);
    if (map_put(&st->op_index, p->id, ID_LEN, p)) {
        free(p);
        return NULL;
    }
    st->ops[st->n_ops++] = p;
    return p;
}

int state_put(struct state *st, const char *kind, const void *key, size_t key_len,
              const void *value, size_t value_len)
{
    uint8_t id[ID_LEN];
    size_t kind_len = strlen(kind), n = 3 + kind_len + key_len + value_len, sealed_len;
    uint8_t *pt = NULL, *sealed = NULL;
    struct pending *p;
    if (!kind_len || kind_len > KIND_MAX || key_len > KEY_MAX || row_id(st, id, kind, key, key_len))
        goto fail;
    if (!(pt = malloc(n)))
        goto fail;
    pt[0] = (uint8_t)kind_len;
    memcpy(pt + 1, kind, kind_len);
    pt[1 + kind_len] = (uint8_t)(key_len >> 8);
    pt[2 + kind_len] = (uint8_t)key_len;
    if (key_len)
        memcpy(pt + 3 + kind_len, key, key_len);
    if (value_len)
        memcpy(pt + 3 + kind_len + key_len, value, value_len);
    sealed = seal(st, id, pt, n, &sealed_len);
    wipe_bytes(pt, n);
    free(pt);
    if (!sealed || !(p = op_for(st, id)))
        goto fail;
    free(p->value); /* sealed: nothing to wipe */
    p->value = sealed;
    p->len = sealed_len;
    return 0;
fail:
    free(sealed);
    st->failed = true;
    return -1;
}

void state_fail(struct state *st) { st->failed = true; }

int state_put_buf(struct state *st, const char *kind, const void *key, size_t key_len,
                  const struct buf *value)
{
    if (!buf_ok(value)) {
        state_fail(st);
        return -1;
    }
    return state_put(st, kind, key, key_len, value->data, value->len);
}

int state_del(struct state *st, const char *kind, const void *key, size_t key_len)
{
    uint8_t id[ID_LEN];
    struct pending *p;
    if (key_len > KEY_MAX || row_id(st, id, kind, key, key_len) || !(p = op_for(st, id))) {
        st->failed = true;
        return -1;
    }
    free(p->value);
    p->value = NULL;
    p->len = 0;
    return 0;
}

bool state_pending(const struct state *st) { return st->n_ops || st->failed; }

void state_discard(struct state *st)
{
    free_ops(st->ops, st->n_ops);
    st->n_ops = 0;
    map_free(&st->op_index);
    st->failed = false;
}

static int step_reset(sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? 0 : -1;
}

int state_seal(struct state *st)
{
    if (!st->n_ops && !st->failed)
        return 0;
    struct txn *t = calloc(1, sizeof(*t));
    if (!t) {
        state_discard(st);
        return -1;
    }
    /* The buffer's array moves into the transaction; the next change
     * starts a new one. */
    *t = (struct txn){.ops = st->ops, .n_ops = st->n_ops, .failed = st->failed};
    st->ops = NULL;
    st->n_ops = st->cap_ops = 0;
    st->failed = false;
    map_free(&st->op_index);
    pthread_mutex_lock(&st->lock);
    *st->sealed_tail = t;
    st->sealed_tail = &t->next;
    pthread_mutex_unlock(&st->lock);
    return 1;
}

int state_flush(struct state *st)
{
    struct txn *all = take_sealed(st);
    if (!all)
        return 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = 0;
    uint64_t rows = 0;
    for (const struct txn *t = all; t; t = t->next) {
        rc |= t->failed ? -1 : 0;
        rows += t->n_ops;
    }
    if (!rc)
        rc = step_reset(st->begin);
    for (const struct txn *t = all; t && !rc; t = t->next) {
        for (size_t i = 0; i < t->n_ops && !rc; i++) {
            const struct pending *p = t->ops[i];
            sqlite3_stmt *q = p->value ? st->put : st->del;
            rc = sqlite3_bind_blob(q, 1, p->id, ID_LEN, SQLITE_STATIC) ||
                 (p->value && sqlite3_bind_blob(q, 2, p->value, (int)p->len, SQLITE_STATIC)) ||
                 step_reset(q);
        }
    }
    if (!rc)
        rc = step_reset(st->commit);
    if (rc) {
        if (!sqlite3_get_autocommit(st->db))
            step_reset(st->rollback);
    }
    free_txns(all);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t ns = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    st->stats.commit_ns += ns;
    if (!rc) { /* a failed flush is not a commit: its time is in commit_ns alone */
        st->stats.commits++;
        st->stats.rows += rows;
        if (ns > st->stats.slowest_ns)
            st->stats.slowest_ns = ns;
        if (ns > (uint64_t)STATE_SLOW_COMMIT_MS * 1000000)
            st->stats.slow++;
    }
    return rc ? -1 : 0;
}

int state_commit(struct state *st)
{
    return state_seal(st) < 0 ? -1 : state_flush(st);
}

int state_keep_wal(struct state *st)
{
    return exec(st->db, "PRAGMA journal_size_limit=-1");
}

int state_trim_wal(struct state *st)
{
    return exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)");
}

void state_close(struct state *st)
{
    if (!st)
        return;
    state_discard(st);
    /* A clean exit leaves everything in the main file and an empty WAL. */
    exec(st->db, "PRAGMA wal_checkpoint(TRUNCATE)");
    free_state(st);
}

void state_abandon(struct state *st)
{
    struct stat sb;
    char *wal;
    if (!st)
        return;
    state_discard(st);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    /* The empty WAL that SQLite made when it opened the file goes too, as
     * state_open's own refusals do. */
    size_t wlen = strlen(st->path) + 5;
    bool made_wal = !st->wal_existed;
    if ((wal = malloc(wlen)))
        snprintf(wal, wlen, "%s-wal", st->path);
    free_state(st);
    if (wal && made_wal && stat(wal, &sb) == 0 && sb.st_size == 0)
        unlink(wal);
    free(wal);
}

void state_stats(const struct state *st, struct state_stats *out)
{
    *out = st->stats;
}
