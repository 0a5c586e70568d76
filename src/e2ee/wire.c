/* wire.c - SignalMessage / PreKeySignalMessage codec (see wire.h). */
#include "securitor/wire.h"

#include <string.h>

/* --- proto2 primitives ------------------------------------------------------ */

struct reader {
    const uint8_t *p, *end;
};

/* Reads a varint of at most 10 bytes. 0 or -1 (truncated / too long). */
static int read_varint(struct reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* One field: its number, wire type, and value (varint or bytes). */
struct field {
    uint32_t number;
    unsigned type;
    uint64_t varint;
    const uint8_t *bytes;
    size_t len;
};

/* Reads the next field; unknown wire types 1 and 5 are read (and skipped by
 * the caller). Returns 0 or an error string. */
static const char *read_field(struct reader *r, struct field *f)
{
    uint64_t key;
    if (read_varint(r, &key))
        return "truncated field key";
    f->number = (uint32_t)(key >> 3);
    f->type = key & 7;
    if (key >> 3 == 0 || key >> 3 > 0x1FFFFFFF)
        return "bad field number";
    switch (f->type) {
    case 0:
        return read_varint(r, &f->varint) ? "truncated varint" : NULL;
    case 1:
        if (r->end - r->p < 8)
            return "truncated fixed64";
        r->p += 8;
        return NULL;
    case 2: {
        uint64_t len;
        if (read_varint(r, &len) || len > (uint64_t)(r->end - r->p))
            return "length-delimited field runs past the end";
        f->bytes = r->p;
        f->len = (size_t)len;
        r->p += len;
        return NULL;
    }
    case 5:
        if (r->end - r->p < 4)
            return "truncated fixed32";
        r->p += 4;
        return NULL;
    default:
        return "unsupported wire type (groups)";
    }
}

static const char *want_uint32(const struct field *f, uint32_t *out)
{
    if (f->type != 0)
        return "integer field with the wrong wire type";
    if (f->varint > UINT32_MAX)
        return "integer field out of range";
    *out = (uint32_t)f->varint;
    return NULL;
}

static const char *want_key(const struct field *f, uint8_t out[static CURVE_KEY_LEN])
{
    if (f->type != 2)
        return "key field with the wrong wire type";
    if (f->len != CURVE_ENCODED_LEN || f->bytes[0] != CURVE_DJB_TYPE)
        return "key is not 33 bytes of 0x05 || u";
    memcpy(out, f->bytes + 1, CURVE_KEY_LEN);
    return NULL;
}

/* A length-delimited field, kept in place; `err` names it for the caller. */
static const char *want_bytes(const struct field *f, const uint8_t **out, size_t *len,
                              const char *err)
{
    if (f->type != 2)
        return err;
    *out = f->bytes;
    *len = f->len;
    return NULL;
}

static const char *check_version(const uint8_t *buf, size_t len)
{
    if (len < 1)
        return "empty message";
    if (buf[0] >> 4 != 3)
        return buf[0] >> 4 < 3 ? "legacy message version" : "unknown message version";
    return NULL;
}

/* --- parsing ---------------------------------------------------------------- */

const char *signal_message_parse(struct signal_message *m, const uint8_t *buf, size_t len)
{
    const char *err = check_version(buf, len);
    if (err)
        return err;
    if (len < 1 + WIRE_MAC_LEN)
        return "message too short";
    struct reader r = {buf + 1, buf + len - WIRE_MAC_LEN};
    bool has_key = false, has_counter = false, has_ct = false;
    memset(m, 0, sizeof(*m));
    while (r.p < r.end) {
        struct field f;
        if ((err = read_field(&r, &f)))
            return err;
        switch (f.number) {
        case 1: err = want_key(&f, m->ratchet_key); has_key = true; break;
        case 2: err = want_uint32(&f, &m->counter); has_counter = true; break;
        case 3: err = want_uint32(&f, &m->previous_counter); break;
        case 4:
            err = want_bytes(&f, &m->ciphertext, &m->ciphertext_len,
                             "ciphertext with the wrong wire type");
            has_ct = true;
            break;
        default: break; /* unknown fields are skipped, as protobuf does */
        }
        if (err)
            return err;
    }
    if (!has_key || !has_counter || !has_ct)
        return "missing ratchetKey, counter or ciphertext";
    m->mac_input = buf;
    m->mac_input_len = len - WIRE_MAC_LEN;
    m->mac = buf + len - WIRE_MAC_LEN;
    return NULL;
}

const char *prekey_message_parse(struct prekey_message *m, const uint8_t *buf, size_t len)
{
    const char *err = check_version(buf, len);
    if (err)
        return err;
    if (buf[0] != WIRE_VERSION_BYTE)
        return "prekey message version is not 3";
    struct reader r = {buf + 1, buf + len};
    bool has_spk = false, has_base = false, has_id = false, has_msg = false;
    memset(m, 0, sizeof(*m));
    m->pre_key_id = WIRE_NO_PREKEY;
    while (r.p < r.end) {
        struct field f;
        if ((err = read_field(&r, &f)))
            return err;
        switch (f.number) {
        case 1:
            /* WIRE_NO_PREKEY stands for "absent": a real id never has it
             * (libsignal's are 24 bits), and reading it as absent would give
             * two byte strings one meaning. */
            if (!(err = want_uint32(&f, &m->pre_key_id)) && m->pre_key_id == WIRE_NO_PREKEY)
                err = "preKeyId 0xFFFFFFFF is reserved";
            break;
        case 2: err = want_key(&f, m->base_key); has_base = true; break;
        case 3: err = want_key(&f, m->identity_key); has_id = true; break;
        case 4:
            err = want_bytes(&f, &m->message_bytes, &m->message_len,
                             "message with the wrong wire type");
            has_msg = true;
            break;
        case 5: err = want_uint32(&f, &m->registration_id); break;
        case 6: err = want_uint32(&f, &m->signed_pre_key_id); has_spk = true; break;
        default: break;
        }
        if (err)
            return err;
    }
    if (!has_spk || !has_base || !has_id || !has_msg)
        return "missing signedPreKeyId, baseKey, identityKey or message";
    if ((err = signal_message_parse(&m->message, m->message_bytes, m->message_len)))
        return err;
    if (m->message_bytes[0] != buf[0])
        return "inner message version differs from the outer one";
    return NULL;
}

/* --- encoding ----------------------------------------------------------------- */

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const uint8_t *b, size_t n)
{
    *p++ = tag;
    p = put_varint(p, n);
    memcpy(p, b, n);
    return p + n;
}

static uint8_t *put_key(uint8_t *p, uint8_t tag, const uint8_t key[static CURVE_KEY_LEN])
{
    uint8_t enc[CURVE_ENCODED_LEN];
    curve_encode(enc, key);
    return put_bytes(p, tag, enc, sizeof(enc));
}

size_t signal_message_encode_body(uint8_t *out, const uint8_t ratchet_key[static CURVE_KEY_LEN],
                                  uint32_t counter, uint32_t previous_counter,
                                  const uint8_t *ciphertext, size_t ct_len)
{
    uint8_t *p = out;
    *p++ = WIRE_VERSION_BYTE;
    p = put_key(p, 0x0A, ratchet_key);
    *p++ = 0x10; /* counter and previousCounter are written even when 0, as libsignal does */
    p = put_varint(p, counter);
    *p++ = 0x18;
    p = put_varint(p, previous_counter);
    p = put_bytes(p, 0x22, ciphertext, ct_len);
    return (size_t)(p - out);
}

size_t prekey_message_encode(uint8_t *out, uint32_t registration_id, uint32_t pre_key_id,
                             uint32_t signed_pre_key_id, const uint8_t base_key[static CURVE_KEY_LEN],
                             const uint8_t identity_key[static CURVE_KEY_LEN],
                             const uint8_t *message, size_t message_len)
{
    uint8_t *p = out;
    *p++ = WIRE_VERSION_BYTE;
    *p++ = 0x28;
    p = put_varint(p, registration_id);
    if (pre_key_id != WIRE_NO_PREKEY) {
        *p++ = 0x08;
        p = put_varint(p, pre_key_id);
    }
    *p++ = 0x30;
    p = put_varint(p, signed_pre_key_id);
    p = put_key(p, 0x12, base_key);
    p = put_key(p, 0x1A, identity_key);
    p = put_bytes(p, 0x22, message, message_len);
    return (size_t)(p - out);
}
