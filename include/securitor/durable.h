/* durable.h - what every node binary does with its state (PROTOCOL.md §4).
 *
 * --state-dir DIR (or SECURITOR_STATE_DIR) names the folder; the state is
 * opened when the node learns its id (on_init), which fixes the file for
 * the process's life. The msg_ids the node gives its own messages are
 * reserved in the state ahead of use, so that none repeats across restarts:
 * a commit that lets out a msg_id past half the reservation extends it to
 * DURABLE_MSG_ID_BLOCK past the last (one row write in about half that many
 * messages), so the loop's early lines (reply_early) find theirs durable.
 *
 * Threads: the loop's worker (on_init and the commit hook run there), but
 * for durable_flush and durable_idle, which the loop's committer calls.
 */
#ifndef SECURITOR_DURABLE_H
#define SECURITOR_DURABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "securitor/node.h"
#include "securitor/state.h"

#define DURABLE_MSG_ID_BLOCK (1LL << 20)

struct durable {
    const char *dir;           /* NULL: no state, everything in memory */
    uint8_t key[STATE_KEY_LEN]; /* the node's key, from which the state keys come */
    struct state *st;          /* open once the node id is known */
    char *node_id;
    long long reserved;        /* msg_ids up to here are reserved (durably, or sealed) */
    /* The latest reservation sealed, for durable_flush on the committer. */
    _Atomic long long reserve_sealed;
    const char *program;       /* for messages */
    state_row_fn load;         /* the program's rows */
    /* May be NULL. Called after every row went through load (at open and
     * at reload): 0, or -1 when the rows do not fit together (a damaged
     * state; at open the file is then closed untouched, PROTOCOL.md §4). */
    int (*loaded)(void *ctx);
    void *ctx;
    struct node *node;         /* set by durable_on_init, for the commit hook */
};

/* The state folder from --state-dir DIR / --state-dir=DIR in argv (taken out
 * of argv, as node_main_options does) or SECURITOR_STATE_DIR; NULL when
 * neither is given. Returns 0, or -1 after saying what is wrong. */
int durable_options(struct durable *d, const char *program, int *argc, char **argv);

/* For on_init, before anything depends on node_id: 0 when the state can be
 * opened under it (or there is no state, or it is open already), else error
 * 12 in r (an id that cannot name a file, such as "../x", is bad input: the
 * node stays up, and a later init may name a usable one). */
int durable_check_id(const struct durable *d, const char *node_id, struct reply *r);

/* For on_init: opens the state of `node_id`, loads it through load(ctx),
 * turns output commit on and sets where msg_ids go on. A later call with
 * the same id changes nothing; with another id it fills r with error 22,
 * and an id that cannot name a file gets error 12 (durable_check_id).
 * Returns 0, that error code, or NODE_FATAL (after a line on stderr naming
 * the file and what is wrong: the loop then exits 2). */
int durable_on_init(struct durable *d, struct node *n, const char *node_id, struct reply *r);
/* The commit hook's part: the msg_id reservation, then the transaction:
 * written here, or only sealed when the loop commits on its own thread
 * (node_commit_pipelined). 0 or -1. */
int durable_commit(struct durable *d, struct node *n);
/* The commit_flush hook's part: writes what durable_commit sealed, on the
 * committer thread. 0 or -1. */
int durable_flush(struct durable *d);
/* The commit_idle hook's part, on the committer: cuts the WAL back, so the
 * frames of deleted rows go (state_trim_wal). */
void durable_idle(struct durable *d);
/* After a failed commit: reads every row again through load. 0 or -1. */
int durable_reload(struct durable *d);
/* For a program that finds the rows it loaded do not fit together after
 * durable_on_init returned 0: closes the state without a checkpoint, so its
 * files stay byte for byte as they were (no WAL made either), before the
 * program stops with NODE_FATAL. */
void durable_refuse(struct durable *d);
/* Checkpoints, closes and wipes the key. With SECURITOR_STATE_STATS=1 in
 * the environment it first writes one line to stderr, "<program>: state:
 * C commits, R rows, T ms committing" (what this process wrote and how long
 * its commits took; for the benchmarks). */
void durable_close(struct durable *d);

#endif
