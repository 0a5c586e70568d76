/* persist.h - e2ee-node's store as rows of a state (PROTOCOL.md §4).
 *
 * Rows (kinds and keys as store.h names them), each value a fixed layout:
 *   user     version, identity seed and X25519 pair, registration id, signed
 *            prekey (id, pair, signature), next one-time prekey id
 *   opk      handed out?, key pair (the id is in the row key)
 *   peer     pinned?, identity
 *   session  rank, the whole ratchet state, its identities and ids, and its
 *            skipped message keys
 *   remote   nothing (the name is the key)
 *   seen     the remembered base keys
 * Every value is sealed by the state layer; nothing here writes a file.
 */
#ifndef SECURITOR_E2EE_PERSIST_H
#define SECURITOR_E2EE_PERSIST_H

#include "securitor/state.h"
#include "store.h"

/* Rows read at open go through persist_load_row into a loader; once all are
 * read, persist_finish builds the store from them. */
struct persist_loader;

struct persist_loader *persist_loader_new(void);
/* A state_row_fn (ctx is the loader). */
int persist_load_row(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                     const uint8_t *value, size_t value_len);
/* Builds st (empty, initialised) from the rows. 0, or -1 when they do not
 * fit together (a damaged state). Frees the loader either way. */
int persist_finish(struct persist_loader *l, struct store *st);
/* Frees a loader that will not be finished. */
void persist_loader_free(struct persist_loader *l);

/* Writes st's recorded changes into the state as rows (state_put and
 * state_del), then clears them. 0, or -1 (the commit must then fail). */
int persist_changes(struct store *st, struct state *state);

#endif
