/* ringstate.h - symmetric-node's keyring as rows of a state (PROTOCOL.md §4).
 *
 * Two kinds of row, each value sealed by the state layer (state.h):
 *   sym_key   key: the version id (8 bytes, big-endian);
 *             value: format (1), the version's 32 raw key bytes
 *   sym_ring  key: empty;
 *             value: format (1), next_id, trimmed_below and
 *             min_decryption_version (8 bytes each, big-endian)
 * The primary is the newest version, next_id - 1. The live versions are
 * exactly [trimmed_below, next_id - 1] (keyring.h): one sym_key row each,
 * no more, no less, or the state is damaged. next_id never goes down, so an
 * id is never given twice across restarts, trims included.
 *
 * Only what changed is written (ringstate_write): a rotation is one sym_key
 * row and the sym_ring row; a trim deletes the trimmed versions' rows
 * (secure_delete zeroes them in the file); set_min_decryption_version is the
 * sym_ring row alone; requests that change no version write nothing.
 */
#ifndef SECURITOR_SYMMETRIC_RINGSTATE_H
#define SECURITOR_SYMMETRIC_RINGSTATE_H

#include <stdbool.h>

#include "securitor/state.h"
#include "keyring.h"

/* The ring as the state holds it (after the last commit or load): what
 * ringstate_write compares the live ring with. */
struct ring_saved {
    long long next_id, trimmed_below, min_decryption_version;
    bool written; /* false: a new state, nothing of the ring in it yet */
};

/* Rows read at open (and after a failed commit) go through
 * ringstate_load_row into a loader; ringstate_finish then builds the ring.
 * The loader holds raw keys: it is wiped when freed. */
struct ring_loader;

struct ring_loader *ringstate_loader_new(void);
/* A state_row_fn (ctx is the loader): -1 for a row that is not one of ours
 * or not well formed. */
int ringstate_load_row(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                       const uint8_t *value, size_t value_len);
/* Whether the rows fit together: 0 or -1 (damaged). Also true for no rows
 * at all (a new state). */
__attribute__((warn_unused_result))
int ringstate_check(const struct ring_loader *l);
/* Whether the state held no ring (a new state). */
bool ringstate_empty(const struct ring_loader *l);
/* Builds kr (not initialised) from checked, non-empty rows, and sets *saved
 * to match. 0, or -1 (out of memory or OpenSSL; kr is then empty). */
__attribute__((warn_unused_result))
int ringstate_build(const struct ring_loader *l, struct keyring *kr, struct ring_saved *saved);
/* Wipes and frees (NULL is fine). */
void ringstate_loader_free(struct ring_loader *l);

/* Whether kr differs from what the state holds. */
bool ringstate_changed(const struct keyring *kr, const struct ring_saved *saved);
/* Buffers the rows that make the state hold kr (state_put, state_del):
 * the new versions, the deleted ones, the ring row. 0 or -1 (the commit
 * must then fail). *saved is not changed: the caller sets it to
 * ringstate_saved(kr) once the commit succeeded. */
__attribute__((warn_unused_result))
int ringstate_write(const struct keyring *kr, const struct ring_saved *saved, struct state *st);
/* What the state holds once kr is committed. */
struct ring_saved ringstate_saved(const struct keyring *kr);

#endif
