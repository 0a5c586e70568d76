/* fields.h - e2ee-node's JSON fields: keys, signatures, bundles and device
 * lists, read from requests and written into replies and messages.
 *
 * Readers follow node.h's req_* conventions: 0, or an error 12 filled in r
 * naming the field (obj_name.key) and what was expected, and its code.
 * Public keys travel as base64 of 0x05 || u (33 bytes; 32 raw bytes are
 * accepted on input), signatures as base64 of 64 bytes.
 */
#ifndef SECURITOR_E2EE_FIELDS_H
#define SECURITOR_E2EE_FIELDS_H

#include <stdbool.h>
#include <stdint.h>

#include "securitor/curve.h"
#include "securitor/node.h"
#include "conversation.h"
#include "devlist.h"

int field_key(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
              bool optional, uint8_t out[static CURVE_KEY_LEN], bool *present);
int field_sig(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
              uint8_t out[static CURVE_SIG_LEN]);
int field_u32(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
              bool optional, uint32_t *out);
/* A bundle object (the fields of get_bundle's reply). */
int field_bundle(struct reply *r, const cJSON *obj, const char *obj_name, struct bundle *b);
/* A device list {version, devices: [{device_id, identity_key,
 * registration_id}], signer, signature}; devices come out sorted by id. */
int field_devlist(struct reply *r, const cJSON *obj, const char *obj_name, struct devlist *l);

void reply_key(struct reply *r, const char *field, const uint8_t key[static CURVE_KEY_LEN]);
/* A bundle's fields, into the object being written. */
void reply_bundle_fields(struct reply *r, const struct bundle *b);
/* A device list as an object (key NULL inside an array). */
void reply_devlist(struct reply *r, const char *key, const struct devlist *l);

#endif
