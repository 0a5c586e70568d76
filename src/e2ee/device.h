/* device.h - the device role (PROTOCOL.md §5): every user name a device
 * node meets is a device of that user, with its own keys, sessions, inbox
 * and outbox, registered with the directory and fed by the relay.
 *
 * What a device trusts: its own keys, and device lists it has verified as a
 * signed chain from version 1 and pinned (devlist.h). It encrypts only to
 * devices the newest verified version lists, takes a prekey bundle only when
 * its identity key is the one the chain carries, and decrypts an envelope
 * only from a device some verified version listed. The directory and the
 * relay see keys, signatures and ciphertext, never a plaintext or a private
 * key.
 *
 * Sessions are with peer devices, named "user/device_id" in the store. What
 * is encrypted for each device (the inner message, all integers big-endian):
 *
 *   "securitor message v1"   20 bytes
 *   message_id               u16 length, then its bytes
 *   from user                u16 length, then its bytes;  from device  u32
 *   to user                  u16 length, then its bytes;  to device    u32
 *   text                     the rest
 *
 * so that an envelope the relay moved to another mailbox, or relabelled, is
 * refused: the receiver checks every field against the envelope and itself.
 *
 * The send path is an outbox: `send` writes the message into the state,
 * then fetches both users' lists (checked against the pins), gets bundles
 * for devices without a session, encrypts once per device and hands the
 * relay one all-or-nothing delivery, retrying (with the same message_id,
 * which the relay dedupes) until it is accepted, also after a restart.
 *
 * The receive path pulls: a relay_fetch (signed, with a counter that never
 * repeats) at start, every second, and at once on relay_notify; then the
 * envelopes are decrypted, stored in the inbox under the next seq and
 * acknowledged in the same commit, so that a crash between the two gives
 * the envelope again and its message_id marks it a duplicate.
 */
#ifndef SECURITOR_E2EE_DEVICE_H
#define SECURITOR_E2EE_DEVICE_H

#include <stdint.h>

#include "securitor/node.h"
#include "app.h"

#define DEVICE_USER_MAX 240        /* so that "user/device_id" fits a store name */
#define DEVICE_TEXT_MAX (256 * 1024) /* bytes of text in one message */
#define DEVICE_INBOX_MAX 100000    /* messages kept per device */
#define DEVICE_CHAIN_MAX 4096      /* versions of a device list read */
#define DEVICE_CALL_MS 500         /* deadline of one call to the backend (retried) */
#define DEVICE_CHANGE_MS 2000      /* a list change: the directory may wait out the relay's lease */
#define DEVICE_POLL_MS 1000        /* fetch at least this often */
#define DEVICE_COUNTER_BLOCK 4096  /* signed-request counters reserved per state write */
#define DEVICE_TICK_MS 250         /* a pending device asks about its approval this often */
#define DEVICE_ANSWER_MS 5000      /* send answers within this (error 0 after) */
#define DEVICE_TOPUP_MS 5000       /* how often the directory's prekey count is checked */
#define DEVICE_TOPUP_BELOW 50      /* upload more when the directory holds fewer */
#define DEVICE_FAILURES_MAX 3      /* failed envelope is acknowledged and dropped */
#define DEVICE_SEND_REFUSALS_MAX 30 /* a message the relay keeps refusing is given up */
#define DEVICE_FULL_RETRY_MS 2000  /* a full mailbox is tried again after this, */
#define DEVICE_FULL_RETRY_MAX_MS 30000 /* doubling up to this */

int devices_new(struct app *app);
/* Frees everything, answering nothing (end of input). */
void devices_free(struct app *app);
/* A state row of kind "dev_*". 0 or -1. */
int devices_load_row(struct app *app, const char *kind, const uint8_t *key, size_t key_len,
                     const uint8_t *value, size_t value_len);
/* After every row is read. 0 or -1. */
int devices_loaded(struct app *app);
/* Forgets what the rows hold, before they are read again (after a failed
 * commit); work in flight finds its device again by name, or stops. */
void devices_forget(struct app *app);
/* Starts the once-a-second tick: fetches, approvals, prekey top-ups and
 * the outbox (once init has run). 0 or -1. */
int devices_start(struct app *app);
/* Input ended: no new calls or timers from here on. */
void devices_close(struct app *app);

int h_register(struct app *app, const struct request *req, struct reply *r);
int h_approve_device(struct app *app, const struct request *req, struct reply *r);
int h_revoke_device(struct app *app, const struct request *req, struct reply *r);
int h_devices(struct app *app, const struct request *req, struct reply *r);
int h_send(struct app *app, const struct request *req, struct reply *r);
int h_read(struct app *app, const struct request *req, struct reply *r);
int h_device_fingerprint(struct app *app, const struct request *req, struct reply *r);
int h_relay_notify(struct app *app, const struct request *req, struct reply *r);

#endif
