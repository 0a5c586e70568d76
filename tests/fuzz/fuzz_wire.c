/* fuzz_wire.c - the Signal v3 wire codec (src/e2ee/wire.c) on any bytes.
 *
 * Each input is given to both signal_message_parse and prekey_message_parse.
 * Properties:
 *   1. Parsing never reads outside the input (AddressSanitizer: the input is
 *      a heap block of exactly its size) and never misbehaves (UBSan).
 *   2. Completeness: an input in canonical form (below) is accepted.
 *   3. What is accepted re-encodes, from the parsed fields alone, into at
 *      most *_max_len bytes (written into a block of exactly that size), and
 *      the re-encoding is canonical and parses back to the same fields.
 *   4. An accepted input that was canonical re-encodes to itself, byte for
 *      byte: canonical form and parsed fields are in one-to-one
 *      correspondence, so no two accepted byte strings of that form mean
 *      the same thing and nothing the fields leave out is lost.
 *   5. A prekey message's inner message parses, on its own, to the same
 *      fields as the prekey parser reported; the MAC pointers of a
 *      SignalMessage cover exactly the bytes they claim.
 *
 * Canonical form, checked here without wire.c's reader: the fields in the
 * order the encoders write them (libsignal's order), each once, every varint
 * minimal (no redundant 0x80 continuation bytes), no unknown fields, the
 * version byte 0x33, keys as 33 bytes 0x05 || u, and for a PreKeySignalMessage
 * registrationId present, preKeyId (when present) not WIRE_NO_PREKEY, which
 * stands for "absent" once parsed, and the inner message canonical too. Non-canonical inputs that parse (fields out of order,
 * repeated fields where the last wins, padded varints, unknown fields,
 * version bytes 0x30-0x3F for a SignalMessage) are accepted as protobuf and
 * libsignal accept them; for those only property 3 holds: the MAC is over
 * the bytes received, so their meaning is the parsed fields.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "securitor/wire.h"

/* --- canonical form, read independently of wire.c ---------------------------- */

struct cur {
    const uint8_t *p, *end;
};

static bool lit(struct cur *c, uint8_t b)
{
    if (c->p < c->end && *c->p == b) {
        c->p++;
        return true;
    }
    return false;
}

/* A minimal varint whose value is at most max. */
static bool min_varint(struct cur *c, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (c->p >= c->end)
            return false;
        uint8_t b = *c->p++;
        if (shift == 63 && b > 1)
            return false; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift)
                return false; /* a redundant last byte */
            if (x > max)
                return false;
            *v = x;
            return true;
        }
    }
    return false;
}

static bool canon_u32(struct cur *c, uint8_t tag, uint64_t max)
{
    uint64_t v;
    return lit(c, tag) && min_varint(c, max, &v);
}

static bool canon_key(struct cur *c, uint8_t tag)
{
    if (!lit(c, tag) || !lit(c, CURVE_ENCODED_LEN) || !lit(c, CURVE_DJB_TYPE) ||
        c->end - c->p < CURVE_KEY_LEN)
        return false;
    c->p += CURVE_KEY_LEN;
    return true;
}

static bool canon_bytes(struct cur *c, uint8_t tag, const uint8_t **b, size_t *n)
{
    uint64_t len;
    if (!lit(c, tag) || !min_varint(c, UINT64_MAX, &len) || len > (uint64_t)(c->end - c->p))
        return false;
    *b = c->p;
    *n = (size_t)len;
    c->p += len;
    return true;
}

static bool canonical_signal(const uint8_t *buf, size_t len)
{
    if (len < 1 + WIRE_MAC_LEN)
        return false;
    struct cur c = {buf, buf + len - WIRE_MAC_LEN};
    const uint8_t *ct;
    size_t ct_len;
    return lit(&c, WIRE_VERSION_BYTE) && canon_key(&c, 0x0A) && canon_u32(&c, 0x10, UINT32_MAX) &&
           canon_u32(&c, 0x18, UINT32_MAX) && canon_bytes(&c, 0x22, &ct, &ct_len) && c.p == c.end;
}

static bool canonical_prekey(const uint8_t *buf, size_t len)
{
    struct cur c = {buf, buf + len};
    const uint8_t *msg;
    size_t msg_len;
    if (!lit(&c, WIRE_VERSION_BYTE) || !canon_u32(&c, 0x28, UINT32_MAX))
        return false;
    /* preKeyId WIRE_NO_PREKEY would mean "absent" once parsed: refused. */
    if (c.p < c.end && *c.p == 0x08 && !canon_u32(&c, 0x08, WIRE_NO_PREKEY - 1))
        return false;
    return canon_u32(&c, 0x30, UINT32_MAX) && canon_key(&c, 0x12) && canon_key(&c, 0x1A) &&
           canon_bytes(&c, 0x22, &msg, &msg_len) && c.p == c.end &&
           canonical_signal(msg, msg_len);
}

/* --- comparing parsed messages ------------------------------------------------ */

static bool same_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    return an == bn && (!an || !memcmp(a, b, an));
}

static bool same_signal(const struct signal_message *a, const struct signal_message *b)
{
    return !memcmp(a->ratchet_key, b->ratchet_key, CURVE_KEY_LEN) && a->counter == b->counter &&
           a->previous_counter == b->previous_counter &&
           same_bytes(a->ciphertext, a->ciphertext_len, b->ciphertext, b->ciphertext_len) &&
           !memcmp(a->mac, b->mac, WIRE_MAC_LEN);
}

static bool same_prekey(const struct prekey_message *a, const struct prekey_message *b)
{
    return a->registration_id == b->registration_id && a->pre_key_id == b->pre_key_id &&
           a->signed_pre_key_id == b->signed_pre_key_id &&
           !memcmp(a->base_key, b->base_key, CURVE_KEY_LEN) &&
           !memcmp(a->identity_key, b->identity_key, CURVE_KEY_LEN) &&
           same_bytes(a->message_bytes, a->message_len, b->message_bytes, b->message_len) &&
           same_signal(&a->message, &b->message);
}

/* --- the two message kinds --------------------------------------------------------- */

static void check_signal(const uint8_t *buf, size_t len)
{
    struct signal_message m;
    const char *err = signal_message_parse(&m, buf, len);
    bool canonical = canonical_signal(buf, len);
    FUZZ_CHECK(!canonical || !err); /* 2 */
    if (err)
        return;
    /* 5: the MAC covers the version byte and the protobuf, and is the last 8. */
    FUZZ_CHECK(m.mac_input == buf && m.mac_input_len == len - WIRE_MAC_LEN &&
               m.mac == buf + len - WIRE_MAC_LEN);
    FUZZ_CHECK(m.ciphertext >= buf + 1 && m.ciphertext + m.ciphertext_len <= m.mac);

    /* 3 */
    size_t max = signal_message_max_len(m.ciphertext_len);
    uint8_t *out = fuzz_alloc(max);
    size_t n = signal_message_encode_body(out, m.ratchet_key, m.counter, m.previous_counter,
                                          m.ciphertext, m.ciphertext_len);
    FUZZ_CHECK(n + WIRE_MAC_LEN <= max);
    memcpy(out + n, m.mac, WIRE_MAC_LEN);
    n += WIRE_MAC_LEN;
    FUZZ_CHECK(canonical_signal(out, n));
    struct signal_message again;
    FUZZ_CHECK(signal_message_parse(&again, out, n) == NULL);
    FUZZ_CHECK(same_signal(&m, &again));
    /* 4 */
    if (canonical)
        FUZZ_CHECK(n == len && !memcmp(out, buf, len));
    free(out);
}

static void check_prekey(const uint8_t *buf, size_t len)
{
    struct prekey_message m;
    const char *err = prekey_message_parse(&m, buf, len);
    bool canonical = canonical_prekey(buf, len);
    FUZZ_CHECK(!canonical || !err); /* 2 */
    if (err)
        return;
    /* 5 */
    FUZZ_CHECK(m.message_bytes >= buf + 1 && m.message_bytes + m.message_len <= buf + len);
    struct signal_message inner;
    FUZZ_CHECK(signal_message_parse(&inner, m.message_bytes, m.message_len) == NULL);
    FUZZ_CHECK(same_signal(&inner, &m.message));
    FUZZ_CHECK(m.message_bytes[0] == WIRE_VERSION_BYTE);

    /* 3 */
    size_t max = prekey_message_max_len(m.message_len);
    uint8_t *out = fuzz_alloc(max);
    size_t n = prekey_message_encode(out, m.registration_id, m.pre_key_id, m.signed_pre_key_id,
                                     m.base_key, m.identity_key, m.message_bytes, m.message_len);
    FUZZ_CHECK(n <= max);
    /* The inner message is copied as it came (its MAC covers those bytes), so
     * the re-encoding is canonical only when the inner message was. */
    FUZZ_CHECK(canonical_prekey(out, n) == canonical_signal(m.message_bytes, m.message_len));
    struct prekey_message again;
    FUZZ_CHECK(prekey_message_parse(&again, out, n) == NULL);
    FUZZ_CHECK(same_prekey(&m, &again));
    /* 4 */
    if (canonical)
        FUZZ_CHECK(n == len && !memcmp(out, buf, len));
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_signal(data, size);
    check_prekey(data, size);
    return 0;
}
