/* durable.c - the state's part common to every node (see durable.h). */
#include "securitor/durable.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/wipe.h"

#define KIND_NODE "node"
#define KEY_MSG_IDS "msg_ids"

int durable_options(struct durable *d, const char *program, int *argc, char **argv)
{
    int kept = 1;
    d->program = program;
    d->dir = getenv("SECURITOR_STATE_DIR");
    for (int i = 1; i < *argc; i++) {
        if (!strcmp(argv[i], "--state-dir")) {
            if (i + 1 >= *argc || !*argv[i + 1]) {
                fprintf(stderr, "%s: --state-dir: expected a folder\n", program);
                return -1;
            }
            d->dir = argv[++i];
        } else if (!strncmp(argv[i], "--state-dir=", 12)) {
            d->dir = argv[i] + 12;
        } else {
            argv[kept++] = argv[i];
        }
    }
    *argc = kept;
    argv[kept] = NULL;
    if (d->dir && !*d->dir)
        d->dir = NULL;
    if (d->dir) /* replies made before the state opens must not repeat either */
        node_msg_ids_from_clock();
    return 0;
}

/* The loader every state goes through: the node's own rows here, the
 * program's to its loader. */
static int load_row(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                    const uint8_t *value, size_t value_len)
{
    struct durable *d = ctx;
    if (!strcmp(kind, KIND_NODE)) {
        if (key_len == sizeof(KEY_MSG_IDS) - 1 && !memcmp(key, KEY_MSG_IDS, key_len) &&
            value_len == 8) {
            long long v = 0;
            for (int i = 0; i < 8; i++)
                v = v << 8 | value[i];
            d->reserved = v;
            return 0;
        }
        return -1;
    }
    return d->load(d->ctx, kind, key, key_len, value, value_len);
}

int durable_check_id(const struct durable *d, const char *node_id, struct reply *r)
{
    /* Bad input, not a broken state: the node answers and stays up, and
     * the next init (or first request) may name a usable id. */
    if (!d->dir || d->st || state_id_usable(node_id))
        return 0;
    return node_error(r, ERR_MALFORMED, "node id \"%.64s\" (init's node_id, or before init the "
                                        "first request's dest) cannot name a state file: 1 to "
                                        "200 bytes, no '/' or control characters, not starting "
                                        "with '.'", node_id);
}

int durable_on_init(struct durable *d, struct node *n, const char *node_id, struct reply *r)
{
    char why[512];
    if (!d->dir)
        return 0;
    if (d->st) { /* d->node stays: the committer reads it */
        if (!strcmp(node_id, d->node_id))
            return 0;
        return node_error(r, ERR_PRECONDITION, "this node keeps the state of \"%s\" (fixed by "
                                               "its first message); it cannot become \"%s\"",
                          d->node_id, node_id);
    }
    int refused = durable_check_id(d, node_id, r);
    if (refused)
        return refused;
    d->node = n;
    d->reserved = 0;
    enum state_status rc = state_open(&d->st, d->dir, node_id, d->key, load_row, d, why,
                                      sizeof(why));
    if (rc != STATE_OK) {
        node_log("%s: cannot use the state: %s", d->program, why);
        return NODE_FATAL;
    }
    if (d->loaded && d->loaded(d->ctx)) {
        node_log("%s: cannot use the state: %s/%s.db: its rows do not fit together (damaged)",
                 d->program, d->dir, node_id);
        durable_refuse(d);
        return NODE_FATAL;
    }
    if (!(d->node_id = strdup(node_id))) {
        node_log("%s: out of memory", d->program);
        return NODE_FATAL;
    }
    node_set_next_msg_id(n, d->reserved + 1);
    node_set_durable(n, true);
    /* The committer cuts the WAL back when idle (durable_idle); a worker
     * that commits by itself leaves it to every checkpoint. */
    if (node_commit_pipelined(n) && state_keep_wal(d->st))
        node_log("%s: %s/%s.db: cannot keep the WAL's size; going on without", d->program,
                 d->dir, node_id);
    atomic_store(&d->reserve_sealed, d->reserved);
    node_msg_ids_durable(n, d->reserved);
    return 0;
}

int durable_commit(struct durable *d, struct node *n)
{
    if (!d->st)
        return 0;
    long long last = node_last_msg_id(n), reserve = d->reserved;
    if (last > d->reserved - DURABLE_MSG_ID_BLOCK / 2) {
        uint8_t v[8];
        reserve = last + DURABLE_MSG_ID_BLOCK;
        for (int i = 0; i < 8; i++)
            v[i] = (uint8_t)((unsigned long long)reserve >> (56 - 8 * i));
        if (state_put(d->st, KIND_NODE, KEY_MSG_IDS, sizeof(KEY_MSG_IDS) - 1, v, sizeof(v)))
            return -1;
    }
    if (node_commit_pipelined(n)) {
        /* The loop's committer writes it (durable_flush) before the lines
         * queued so far leave; a failure there rolls back through reload. */
        int sealed = state_seal(d->st);
        if (sealed < 0)
            return -1;
        if (sealed)
            node_commit_staged(n);
        atomic_store(&d->reserve_sealed, reserve);
    } else if (state_commit(d->st)) {
        return -1;
    }
    d->reserved = reserve;
    return 0;
}

void durable_idle(struct durable *d)
{
    if (d->st && state_trim_wal(d->st))
        node_log("%s: could not cut the WAL back (it is cut at the next idle time or exit)",
                 d->program);
}

int durable_flush(struct durable *d)
{
    /* Sealed before this read, so in this flush or an earlier one. */
    long long reserved = atomic_load(&d->reserve_sealed);
    if (!d->st)
        return 0;
    if (state_flush(d->st))
        return -1;
    node_msg_ids_durable(d->node, reserved);
    return 0;
}

int durable_reload(struct durable *d)
{
    char why[512];
    if (!d->st)
        return 0;
    d->reserved = 0; /* as the state has it (a reservation that was not written is gone) */
    if (state_reload(d->st, load_row, d, why, sizeof(why)) != STATE_OK) {
        node_log("%s: cannot read the state back: %s", d->program, why);
        return -1;
    }
    if (d->loaded && d->loaded(d->ctx)) {
        node_log("%s: cannot read the state back: its rows do not fit together", d->program);
        return -1;
    }
    atomic_store(&d->reserve_sealed, d->reserved);
    return 0;
}

void durable_refuse(struct durable *d)
{
    state_abandon(d->st); /* no checkpoint: the file stays as it was */
    d->st = NULL;
    node_set_durable(d->node, false);
}

void durable_close(struct durable *d)
{
    const char *stats = getenv("SECURITOR_STATE_STATS");
    if (d->st && stats && !strcmp(stats, "1")) {
        struct state_stats s;
        state_stats(d->st, &s);
        node_log("%s: state: %llu commits, %llu rows, %.1f ms committing, the slowest %.1f ms, "
                 "%llu over %d ms", d->program, (unsigned long long)s.commits,
                 (unsigned long long)s.rows, s.commit_ns / 1e6, s.slowest_ns / 1e6,
                 (unsigned long long)s.slow, STATE_SLOW_COMMIT_MS);
    }
    state_close(d->st);
    d->st = NULL;
    free(d->node_id);
    d->node_id = NULL;
    WIPE_OBJ(d->key);
}
