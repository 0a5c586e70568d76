/* state.h - a node's durable state: sealed rows in an SQLite file
 * (PROTOCOL.md §4).
 *
 * One file per node id, DIR/<node id>.db, in WAL mode with synchronous=FULL
 * and secure_delete, held with an exclusive lock for as long as it is open
 * (a second process refuses it). Every row is a logical (kind, key) -> value
 * record, stored as
 *
 *   id    = HMAC-SHA256(row-id key, kind || 0x00 || key), first 16 bytes
 *   value = salt (16) || AES-256-GCM(row key, kind, key and value) || tag (16)
 *           row key = HKDF-Expand(seal key, "row" || salt), nonce all zero,
 *           AAD = "securitor state v1" || id
 *
 * Each write draws a fresh salt, so each row key seals one value: no GCM
 * nonce can repeat, however many rows a busy node writes in its life. The
 * id as AAD binds a value to its row.
 *
 * so the file holds neither names nor keys in the clear, and a row moved to
 * another id, another file or another node does not open. Both keys come
 * from the node's 32-byte key with HKDF-SHA256 (salt "securitor state v1",
 * info naming the use and the node id). The file also holds, in the clear,
 * what it is (a format name and version) and the node id, so that a wrong
 * file gets a clear message; and a sealed check value, so that a wrong key
 * does.
 *
 * Opening verifies the key and unseals every row (a state is small) before
 * anything is written; a state that fails is left as it was, byte for byte
 * (no checkpoint on that close). Changes are buffered (state_put,
 * state_del) and written in one transaction by state_commit, which the
 * loop's commit hook calls before any output leaves (output commit). Or in
 * two steps, so that the fsync runs beside the next requests: state_seal
 * closes the buffered changes into a transaction, state_flush writes every
 * sealed one in a single SQLite transaction.
 *
 * Threads: the worker changes, seals, reloads and closes; state_flush may
 * run on another thread (the committer) at the same time as state_put,
 * state_del and state_seal, never beside the other calls. Secrets given to
 * state_put are sealed at once; nothing unsealed is kept.
 */
#ifndef SECURITOR_STATE_H
#define SECURITOR_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/buf.h"

#define STATE_KEY_LEN 32
#define STATE_FORMAT "securitor-state"
#define STATE_VERSION 1

struct state;

enum state_status {
    STATE_OK = 0,
    STATE_WRONG_KEY,     /* the check value does not open: another key */
    STATE_DAMAGED,       /* a row or the file's structure does not verify */
    STATE_NOT_A_STATE,   /* not a securitor state (or another version) */
    STATE_OTHER_NODE,    /* the state of another node id */
    STATE_IN_USE,        /* another process holds it */
    STATE_IO,            /* cannot create, read or write it */
    STATE_NO_MEMORY,
};

/* Called for every row at open, with the unsealed kind, key and value (valid
 * only during the call; the value is wiped after). Returns 0, or -1 to
 * refuse the state as damaged (a row the program cannot read). */
typedef int (*state_row_fn)(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                            const uint8_t *value, size_t value_len);

/* Whether node_id can name its state file DIR/<node_id>.db: 1 to 200
 * bytes, no '/', no control character, not starting with '.' (which would
 * name another place, or a hidden file). */
bool state_id_usable(const char *node_id);

/* Opens DIR/<node_id>.db (DIR and the file are created when missing),
 * verifies it, and hands every row to load. On anything but STATE_OK, *out
 * is NULL, `why` (why_len bytes) says what is wrong in a sentence, and the
 * file is as it was. */
enum state_status state_open(struct state **out, const char *dir, const char *node_id,
                             const uint8_t key[static STATE_KEY_LEN], state_row_fn load,
                             void *ctx, char *why, size_t why_len);
/* Reads every row again (after a failed commit: the state as last
 * committed), with the same checks. What is buffered or sealed is dropped. */
enum state_status state_reload(struct state *st, state_row_fn load, void *ctx, char *why,
                               size_t why_len);

/* Buffers a row to write (replacing any buffered write of the same row).
 * The value is sealed at once. Returns 0 or -1 (out of memory or OpenSSL:
 * the state is then failed, and the next commit fails). */
__attribute__((warn_unused_result))
int state_put(struct state *st, const char *kind, const void *key, size_t key_len,
              const void *value, size_t value_len);
/* Fails the state: a change the program made in memory cannot be recorded
 * (out of memory). The next commit fails, and the program goes back to what
 * the file holds, undoing the change with the rest of the transaction. */
void state_fail(struct state *st);
/* state_put of a row built in a buf. One whose building ran out of memory
 * (buf_ok false) is not written: it fails the state as a failed put does,
 * so the commit that would have held it fails instead of going without. */
__attribute__((warn_unused_result))
int state_put_buf(struct state *st, const char *kind, const void *key, size_t key_len,
                  const struct buf *value);
/* Buffers a row's deletion. 0 or -1 as above. */
__attribute__((warn_unused_result))
int state_del(struct state *st, const char *kind, const void *key, size_t key_len);
/* Whether anything is buffered. */
bool state_pending(const struct state *st);
/* Writes what is buffered in one transaction, in the order it was
 * buffered, and makes it durable: state_seal, then state_flush. 0, or -1
 * (the transaction is rolled back and the buffer dropped: the file holds
 * the last commit). */
int state_commit(struct state *st);
/* Closes what is buffered into a transaction for state_flush. Returns 1,
 * 0 when nothing was buffered, or -1 (out of memory: the buffer is
 * dropped, and the caller rolls back as after a failed commit). */
int state_seal(struct state *st);
/* Writes every sealed transaction, oldest first, in one SQLite transaction
 * and makes it durable (one fsync for all). 0, or -1: none of them is
 * written, all are dropped, the file holds the last commit. */
int state_flush(struct state *st);
/* Drops what is buffered (not what is sealed). */
void state_discard(struct state *st);
/* After each checkpoint the WAL is cut back to nothing, so that the frames
 * of deleted rows do not linger in it (secure_delete zeroes them in the
 * main file). But then every commit makes the file grow again, and an
 * fdatasync that changes a file's size costs a journal commit of the file
 * system: a node that commits often may keep the WAL at its size instead
 * (state_keep_wal), and must then cut it back itself whenever it goes idle
 * (state_trim_wal: a checkpoint that truncates), so that stale frames last
 * at most one round of the WAL under load and one idle interval after.
 * Both 0 or -1. */
int state_keep_wal(struct state *st);
int state_trim_wal(struct state *st);
/* Checkpoints and truncates the WAL (a clean exit), and closes. NULL is fine. */
void state_close(struct state *st);
/* Closes without a checkpoint, so the files stay byte for byte as they
 * were: for a state the program refuses after it opened (its rows do not
 * fit together), PROTOCOL.md §4 "left as it was". NULL is fine. */
void state_abandon(struct state *st);

/* A commit that takes longer than this is counted as slow (state_stats). */
#define STATE_SLOW_COMMIT_MS 50

/* For tests and the benchmark: what the state has written so far. */
struct state_stats {
    uint64_t commits, rows;
    uint64_t commit_ns;  /* time spent writing transactions, failed ones too */
    uint64_t slowest_ns; /* the longest single commit */
    uint64_t slow;       /* commits that took over STATE_SLOW_COMMIT_MS */
};

void state_stats(const struct state *st, struct state_stats *out);

const char *state_status_text(enum state_status s);

#endif
