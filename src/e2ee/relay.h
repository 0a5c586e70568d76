/* relay.h - the relay role (PROTOCOL.md §5, §5.1, §5.2): durable mailboxes
 * per device, holding only ciphertext.
 *
 * relay_deliver is all or nothing against the directory's current device
 * lists: one envelope for every active device of the users it names (the
 * sending device excepted), or error 22 with the missing, extra and stale
 * devices, like Signal's 409/410; the same message_id again is a no-op, also
 * while the first is still being checked. Only a device can fetch and
 * acknowledge its own mailbox: relay_fetch and relay_ack are signed by its
 * identity key (as the directory lists it now) with a counter that never
 * repeats (signed.h). A device that fetches is told of new mail with a
 * one-way relay_notify; a revoked device's mailbox is forgotten. The relay
 * never decrypts anything and never sees a key.
 */
#ifndef SECURITOR_E2EE_RELAY_H
#define SECURITOR_E2EE_RELAY_H

#include <stdint.h>

#include "securitor/node.h"
#include "app.h"
#include "devlist.h"

#define RELAY_MAILBOX_MAX 10000   /* envelopes held per device */
#define RELAY_MAILBOX_BYTES ((size_t)64 << 20) /* and bytes of their ciphertext */
#define RELAY_FETCH_MAX 256       /* envelopes in one relay_envelopes */
#define RELAY_DELIVER_MAX (2 * DEVLIST_MAX_DEVICES) /* envelopes in one relay_deliver */
#define RELAY_PAGE_BYTES (1 << 20) /* ciphertext in one, past its first envelope */
#define RELAY_SEEN_MAX 100000     /* message_ids remembered as delivered */
#define RELAY_CALL_MS 500         /* a directory lookup's deadline */
#define RELAY_FLUSH_MS 200        /* fetch and ack bookkeeping is written this often */
#define RELAY_LEASE_MS 1000       /* how long a device list from the directory is trusted */
#define RELAY_NODE_MAX 4096       /* bytes of the node id a fetch comes from (kept for notify) */
/* How far a restart raises each mailbox's counter: the relay answers a
 * signed request before its counter is written only while that counter is
 * at most this far above one that is durable (relay.c, signed_decide). A
 * device that is refused moves its own counter further ahead than this. */
#define RELAY_COUNTER_SLACK 1024

int relay_new(struct app *app);
void relay_free(struct app *app);
/* Starts the tick that writes fetch and ack bookkeeping (after init). */
int relay_start(struct app *app);
/* End of input: writes what the tick had not. */
void relay_close(struct app *app);
int relay_load_row(struct app *app, const char *kind, const uint8_t *key, size_t key_len,
                   const uint8_t *value, size_t value_len);
int relay_loaded(struct app *app);

int h_relay_deliver(struct app *app, const struct request *req, struct reply *r);
int h_relay_fetch(struct app *app, const struct request *req, struct reply *r);
int h_relay_ack(struct app *app, const struct request *req, struct reply *r);
/* From the directory: a user's list changed; the relay's copy goes. */
int h_dir_list_changed(struct app *app, const struct request *req, struct reply *r);

#endif
