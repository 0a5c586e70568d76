/* fields.c - e2ee-node's JSON fields (see fields.h). */
#include "fields.h"

#include <stdio.h>
#include <string.h>

#include "securitor/codec.h"
#include "securitor/wire.h"

#define NAME(obj_name) (obj_name), *(obj_name) ? "." : ""

int field_key(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
              bool optional, uint8_t out[static CURVE_KEY_LEN], bool *present)
{
    const char *s;
    size_t len, n;
    uint8_t raw[CURVE_ENCODED_LEN + 2];
    int rc = req_string(r, obj, key, optional, &s, &len);
    if (present)
        *present = s != NULL;
    if (rc || !s)
        return rc;
    if (len != 44 || base64_decode(raw, &n, s, len) || curve_decode(out, raw, n))
        return node_error(r, ERR_MALFORMED,
                          "%s%s%s: expected base64 of a 33-byte public key (0x05 || u) or of "
                          "32 raw bytes", NAME(obj_name), key);
    return 0;
}

int field_sig(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
              uint8_t out[static CURVE_SIG_LEN])
{
    const char *s;
    size_t len, n;
    uint8_t raw[CURVE_SIG_LEN + 2];
    int rc = req_string(r, obj, key, false, &s, &len);
    if (rc)
        return rc;
    if (len != 88 || base64_decode(raw, &n, s, len) || n != CURVE_SIG_LEN)
        return node_error(r, ERR_MALFORMED, "%s%s%s: expected base64 of a 64-byte signature",
                          NAME(obj_name), key);
    memcpy(out, raw, CURVE_SIG_LEN);
    return 0;
}

int field_u32(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
              bool optional, uint32_t *out)
{
    long long v = 0;
    const cJSON *item = req_field(obj, key);
    *out = 0;
    if (!item || cJSON_IsNull(item)) {
        if (optional)
            return 0;
        return node_error(r, ERR_MALFORMED, "%s%s%s: missing; expected an integer",
                          NAME(obj_name), key);
    }
    if (!json_exact_int(item, &v) || v < 0 || v > UINT32_MAX)
        return node_error(r, ERR_MALFORMED, "%s%s%s: expected an integer from 0 to %u",
                          NAME(obj_name), key, UINT32_MAX);
    *out = (uint32_t)v;
    return 0;
}

int field_bundle(struct reply *r, const cJSON *obj, const char *obj_name, struct bundle *b)
{
    int rc;
    memset(b, 0, sizeof(*b));
    if (!cJSON_IsObject(obj))
        return node_error(r, ERR_MALFORMED, "%s: expected an object with the fields of a "
                                            "bundle (see get_bundle)", obj_name);
    if ((rc = field_key(r, obj, obj_name, "identity_key", false, b->identity, NULL)) ||
        (rc = field_key(r, obj, obj_name, "signed_pre_key", false, b->spk, NULL)) ||
        (rc = field_sig(r, obj, obj_name, "signed_pre_key_signature", b->spk_sig)) ||
        (rc = field_u32(r, obj, obj_name, "signed_pre_key_id", false, &b->spk_id)) ||
        (rc = field_u32(r, obj, obj_name, "registration_id", true, &b->registration_id)) ||
        (rc = field_u32(r, obj, obj_name, "device_id", true, &b->device_id)) ||
        (rc = field_key(r, obj, obj_name, "one_time_pre_key", true, b->opk, &b->has_opk)))
        return rc;
    if (b->has_opk && (rc = field_u32(r, obj, obj_name, "one_time_pre_key_id", false, &b->opk_id)))
        return rc;
    /* 0xFFFFFFFF means "no one-time prekey" in a prekey message (wire.h):
     * taken here, the session would use the key in X3DH but send without
     * its id, and bob could never open the first message. */
    if (b->has_opk && b->opk_id == WIRE_NO_PREKEY)
        return node_error(r, ERR_MALFORMED, "%s%sone_time_pre_key_id: expected an integer from "
                                            "0 to %u (%u is reserved)", NAME(obj_name),
                          WIRE_NO_PREKEY - 1, WIRE_NO_PREKEY);
    return 0;
}

int field_devlist(struct reply *r, const cJSON *obj, const char *obj_name, struct devlist *l)
{
    const cJSON *devs = req_field(obj, "devices"), *d;
    int rc;
    memset(l, 0, sizeof(*l));
    if (!cJSON_IsObject(obj))
        return node_error(r, ERR_MALFORMED, "%s: expected a device list {version, devices, "
                                            "signer, signature}", obj_name);
    if ((rc = field_u32(r, obj, obj_name, "version", false, &l->version)) ||
        (rc = field_u32(r, obj, obj_name, "signer", false, &l->signer)) ||
        (rc = field_sig(r, obj, obj_name, "signature", l->signature)))
        return rc;
    if (!cJSON_IsArray(devs) || !cJSON_GetArraySize(devs) ||
        cJSON_GetArraySize(devs) > DEVLIST_MAX_DEVICES)
        return node_error(r, ERR_MALFORMED, "%s.devices: expected an array of 1 to %d devices",
                          obj_name, DEVLIST_MAX_DEVICES);
    cJSON_ArrayForEach(d, devs) {
        struct devlist_device *x = &l->devices[l->n++];
        char name[64];
        snprintf(name, sizeof(name), "%.40s.devices[%zu]", obj_name, l->n - 1);
        if (!cJSON_IsObject(d))
            return node_error(r, ERR_MALFORMED, "%s: expected an object", name);
        if ((rc = field_u32(r, d, name, "device_id", false, &x->device_id)) ||
            (rc = field_key(r, d, name, "identity_key", false, x->identity, NULL)) ||
            (rc = field_u32(r, d, name, "registration_id", false, &x->registration_id)))
            return rc;
    }
    devlist_sort(l);
    return 0;
}

void reply_key(struct reply *r, const char *field, const uint8_t key[static CURVE_KEY_LEN])
{
    uint8_t enc[CURVE_ENCODED_LEN];
    curve_encode(enc, key);
    reply_base64(r, field, enc, sizeof(enc));
}

void reply_bundle_fields(struct reply *r, const struct bundle *b)
{
    reply_int(r, "registration_id", b->registration_id);
    reply_int(r, "device_id", b->device_id);
    reply_key(r, "identity_key", b->identity);
    reply_key(r, "signed_pre_key", b->spk);
    reply_int(r, "signed_pre_key_id", b->spk_id);
    reply_base64(r, "signed_pre_key_signature", b->spk_sig, CURVE_SIG_LEN);
    if (b->has_opk) {
        reply_key(r, "one_time_pre_key", b->opk);
        reply_int(r, "one_time_pre_key_id", b->opk_id);
    }
}

void reply_devlist(struct reply *r, const char *key, const struct devlist *l)
{
    reply_begin_object(r, key);
    reply_int(r, "version", l->version);
    reply_begin_array(r, "devices");
    for (size_t i = 0; i < l->n; i++) {
        reply_begin_object(r, NULL);
        reply_int(r, "device_id", l->devices[i].device_id);
        reply_key(r, "identity_key", l->devices[i].identity);
        reply_int(r, "registration_id", l->devices[i].registration_id);
        reply_end_object(r);
    }
    reply_end_array(r);
    reply_int(r, "signer", l->signer);
    reply_base64(r, "signature", l->signature, CURVE_SIG_LEN);
    reply_end_object(r);
}
