/* signed.h - requests a device signs for the backend (PROTOCOL.md §5.1,
 * §5.2): relay_fetch, relay_ack and dir_upload_prekeys.
 *
 * Only a device can fetch and acknowledge its own mailbox or add to its own
 * prekeys: each such request carries a signature by the device's identity
 * key over (all integers big-endian)
 *
 *   "securitor signed request v1"   27 bytes
 *   type                            u16 length, then its bytes ("relay_fetch", ...)
 *   user                            u16 length, then its bytes
 *   device id                       u32
 *   counter                         u64
 *   ids                             u32 count, then each as u64 (relay_ack's)
 *   content digest                  32 bytes: SHA-256 of what else the request
 *                                   carries (the prekeys of an upload), or zeros
 *
 * and a counter that grows with every request the device signs: the verifier
 * keeps the last counter it accepted from each device and refuses one that
 * is not larger, so a replayed or out-of-date request is refused even
 * though its signature verifies. The msg_id is not covered (a transport
 * matter).
 */
#ifndef SECURITOR_E2EE_SIGNED_H
#define SECURITOR_E2EE_SIGNED_H

#include <stddef.h>
#include <stdint.h>

#include "securitor/curve.h"

struct signed_request {
    const char *type, *user;
    uint32_t device_id;
    uint64_t counter;
    const uint64_t *ids;
    size_t n_ids;
    const uint8_t *digest; /* 32 bytes, or NULL for zeros */
};

/* 0 or -1. */
__attribute__((warn_unused_result))
int signed_request_sign(uint8_t sig[static CURVE_SIG_LEN], const struct curve_identity *me,
                        const struct signed_request *req);
/* 1 valid, 0 invalid, -1 internal error. */
__attribute__((warn_unused_result))
int signed_request_verify(const uint8_t identity[static CURVE_KEY_LEN],
                          const uint8_t sig[static CURVE_SIG_LEN],
                          const struct signed_request *req);

#endif
