/* wire.h - Signal protocol v3 messages on the wire (SIGNAL.md 2.1).
 *
 *   SignalMessage       = 0x33 || protobuf{1 ratchetKey, 2 counter,
 *                                           3 previousCounter, 4 ciphertext} || MAC8
 *   PreKeySignalMessage = 0x33 || protobuf{5 registrationId, 1 preKeyId,
 *                                           6 signedPreKeyId, 2 baseKey,
 *                                           3 identityKey, 4 message}
 *
 * Parsing is strict and bounded: every length is checked before use,
 * unknown fields are skipped as protobuf does, groups and truncated or
 * oversized fields are refused. Parsed messages point into the input buffer.
 * A preKeyId of WIRE_NO_PREKEY (0xFFFFFFFF), which stands for "absent" in
 * struct prekey_message, is refused on the wire.
 */
#ifndef SECURITOR_WIRE_H
#define SECURITOR_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/curve.h"

#define WIRE_VERSION_BYTE 0x33 /* (3 << 4) | 3 */
#define WIRE_MAC_LEN 8
#define WIRE_NO_PREKEY UINT32_MAX

struct signal_message {
    uint8_t ratchet_key[CURVE_KEY_LEN];
    uint32_t counter;
    uint32_t previous_counter;
    const uint8_t *ciphertext;
    size_t ciphertext_len;
    const uint8_t *mac_input; /* the version byte and the protobuf: what MAC8 covers */
    size_t mac_input_len;
    const uint8_t *mac;       /* WIRE_MAC_LEN bytes */
};

struct prekey_message {
    uint32_t registration_id;   /* 0 when absent */
    uint32_t pre_key_id;        /* WIRE_NO_PREKEY when absent */
    uint32_t signed_pre_key_id;
    uint8_t base_key[CURVE_KEY_LEN];
    uint8_t identity_key[CURVE_KEY_LEN];
    struct signal_message message; /* parsed from field 4 */
    const uint8_t *message_bytes;
    size_t message_len;
};

/* Parse results: 0, or a static string saying what is wrong. */
const char *signal_message_parse(struct signal_message *m, const uint8_t *buf, size_t len);
const char *prekey_message_parse(struct prekey_message *m, const uint8_t *buf, size_t len);

/* Upper bound on the encoded size of a SignalMessage with ct_len bytes of
 * ciphertext, and of a PreKeySignalMessage wrapping msg_len bytes. */
static inline size_t signal_message_max_len(size_t ct_len) { return 1 + 35 + 12 + 11 + ct_len + WIRE_MAC_LEN; }
static inline size_t prekey_message_max_len(size_t msg_len) { return 1 + 6 * 6 + 2 * 35 + 5 + msg_len; }

/* Writes 0x33 || protobuf (no MAC) and returns its length; the caller
 * appends the MAC over exactly these bytes. */
size_t signal_message_encode_body(uint8_t *out, const uint8_t ratchet_key[static CURVE_KEY_LEN],
                                  uint32_t counter, uint32_t previous_counter,
                                  const uint8_t *ciphertext, size_t ct_len);
/* Writes a whole PreKeySignalMessage and returns its length. pre_key_id
 * WIRE_NO_PREKEY leaves the field out. */
size_t prekey_message_encode(uint8_t *out, uint32_t registration_id, uint32_t pre_key_id,
                             uint32_t signed_pre_key_id, const uint8_t base_key[static CURVE_KEY_LEN],
                             const uint8_t identity_key[static CURVE_KEY_LEN],
                             const uint8_t *message, size_t message_len);

#endif
