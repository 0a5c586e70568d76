/* e2ee-node - X3DH and the Double Ratchet, Signal protocol v3 on the wire
 * (PROTOCOL.md §3, SIGNAL.md Part 0).
 *
 * The acting user is body.user when given, else the envelope's src. Key
 * exchange is not authentication: bundles are signature-checked before any
 * DH, identities are pinned on first use, and a changed identity is refused
 * (error 22) until the user trusts it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/cbc.h"
#include "securitor/codec.h"
#include "securitor/curve.h"
#include "securitor/node.h"
#include "securitor/rand.h"
#include "securitor/ratchet.h"
#include "securitor/wipe.h"
#include "securitor/wire.h"
#include "store.h"

struct app {
    struct store store;
    struct buf wire;  /* encoded messages */
    struct buf bytes; /* decoded ciphertexts / plaintexts */
    struct buf plain; /* decrypted plaintext */
};

/* A peer's published keys, as get_bundle gives them. */
struct bundle {
    uint32_t registration_id, device_id;
    uint8_t identity[CURVE_KEY_LEN], spk[CURVE_KEY_LEN], opk[CURVE_KEY_LEN];
    uint32_t spk_id, opk_id;
    bool has_opk;
    uint8_t spk_sig[CURVE_SIG_LEN];
};

/* ============================================================================
 * Request helpers
 * ========================================================================== */

/* The acting user: body.user, else the envelope's src; made on first use. */
static int acting_user(struct app *app, const struct request *req, struct reply *r,
                       struct user **u)
{
    const char *name;
    int rc = req_string(r, req->body, "user", true, &name, NULL);
    if (rc)
        return rc;
    if (!name)
        name = req->src;
    switch (store_user(&app->store, name, u)) {
    case STORE_OK: return 0;
    case STORE_REMOTE:
        return node_error(r, ERR_KEY_DOES_NOT_EXIST,
                          "user: \"%s\" is a remote peer; this node holds no keys for it", name);
    case STORE_NO_MEMORY: return node_error(r, ERR_CRASH, "out of memory");
    default: return node_error(r, ERR_CRASH, "key generation failed (RNG or OpenSSL)");
    }
}

/* Decodes base64 of a public key (33 bytes 0x05 || u, or 32 raw bytes). */
static int parse_key(struct reply *r, const cJSON *obj, const char *obj_name, const char *key,
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
                          "32 raw bytes", obj_name, *obj_name ? "." : "", key);
    return 0;
}

static int parse_u32(struct reply *r, const cJSON *obj, const char *key, bool optional,
                     uint32_t *out)
{
    long long v = 0;
    bool present;
    int rc = req_int(r, obj, key, optional, 0, UINT32_MAX, &v, &present);
    *out = (uint32_t)v;
    return rc;
}

/* Reads bob_public_key. Fields as in a bundle; errors name the field. */
static int parse_bundle(struct reply *r, const cJSON *obj, struct bundle *b)
{
    const char *sig;
    size_t sig_len, n;
    uint8_t raw[CURVE_SIG_LEN + 2];
    int rc;
    memset(b, 0, sizeof(*b));
    if (!cJSON_IsObject(obj))
        return node_error(r, ERR_MALFORMED, "bob_public_key: expected an object with the "
                                            "fields of a bundle (see get_bundle)");
    if ((rc = parse_key(r, obj, "bob_public_key", "identity_key", false, b->identity, NULL)) ||
        (rc = parse_key(r, obj, "bob_public_key", "signed_pre_key", false, b->spk, NULL)) ||
        (rc = req_string(r, obj, "signed_pre_key_signature", false, &sig, &sig_len)))
        return rc;
    if (sig_len != 88 || base64_decode(raw, &n, sig, sig_len) || n != CURVE_SIG_LEN)
        return node_error(r, ERR_MALFORMED, "bob_public_key.signed_pre_key_signature: expected "
                                            "base64 of a 64-byte signature");
    memcpy(b->spk_sig, raw, CURVE_SIG_LEN);
    if ((rc = parse_u32(r, obj, "signed_pre_key_id", false, &b->spk_id)) ||
        (rc = parse_u32(r, obj, "registration_id", true, &b->registration_id)) ||
        (rc = parse_u32(r, obj, "device_id", true, &b->device_id)) ||
        (rc = parse_key(r, obj, "bob_public_key", "one_time_pre_key", true, b->opk, &b->has_opk)))
        return rc;
    if (b->has_opk && (rc = parse_u32(r, obj, "one_time_pre_key_id", false, &b->opk_id)))
        return rc;
    return 0;
}

/* A local user's bundle, taking (handing out) its next one-time prekey. */
static void local_bundle(struct user *u, struct bundle *b, bool take_opk)
{
    memset(b, 0, sizeof(*b));
    b->registration_id = u->registration_id;
    b->device_id = 1;
    memcpy(b->identity, u->id.x.pub, CURVE_KEY_LEN);
    memcpy(b->spk, u->spk.pub, CURVE_KEY_LEN);
    b->spk_id = u->spk_id;
    memcpy(b->spk_sig, u->spk_sig, CURVE_SIG_LEN);
    struct one_time_prekey *k = take_opk ? user_take_opk(u) : NULL;
    if (k) {
        b->has_opk = true;
        memcpy(b->opk, k->kp.pub, CURVE_KEY_LEN);
        b->opk_id = k->id;
    }
}

static void reply_key(struct reply *r, const char *field, const uint8_t key[static CURVE_KEY_LEN])
{
    uint8_t enc[CURVE_ENCODED_LEN];
    curve_encode(enc, key);
    reply_base64(r, field, enc, sizeof(enc));
}

static void reply_decryption_failed(struct reply *r, const char *why)
{
    reply_type(r, "decryption_failed");
    reply_cstring(r, "error", why);
}

/* Plaintext goes back as text when JSON can carry it, else as base64. */
static void reply_plaintext(struct reply *r, const uint8_t *pt, size_t len)
{
    reply_sensitive(r);
    reply_text_or_base64(r, "plaintext", pt, len);
}

/* ============================================================================
 * X3DH as Alice
 * ========================================================================== */

/* Verifies the bundle, checks the pin, runs X3DH and installs the new
 * session as current. On error nothing changes. */
static int initiate(struct app *app, struct user *u, const char *peer_name,
                    const struct bundle *b, struct reply *r, struct session **out,
                    uint8_t root_key[static 32])
{
    uint8_t enc[CURVE_ENCODED_LEN];
    struct curve_keypair ek;
    struct x3dh_result x;
    struct session *s = NULL;
    int rc = 0;

    /* X3DH §3.3: verify the signed prekey before any DH. */
    curve_encode(enc, b->spk);
    int ok = curve_verify(b->identity, enc, sizeof(enc), b->spk_sig);
    if (ok < 0)
        return node_error(r, ERR_CRASH, "signature verification failed internally");
    if (ok == 0)
        return node_error(r, ERR_PRECONDITION, "bob_public_key.signed_pre_key_signature: does "
                                               "not verify under identity_key");
    struct peer *p = user_peer(u, peer_name);
    if (!p)
        return node_error(r, ERR_CRASH, "out of memory");
    if (p->pinned && memcmp(p->identity, b->identity, CURVE_KEY_LEN))
        return node_error(r, ERR_PRECONDITION, "the identity key of \"%s\" changed since it was "
                                               "pinned; use trust_identity to accept the new key",
                          peer_name);
    s = calloc(1, sizeof(*s));
    if (!s)
        return node_error(r, ERR_CRASH, "out of memory");
    if (curve_generate(&ek) ||
        x3dh_initiate(&x, &u->id.x, &ek, b->identity, b->spk, b->has_opk ? b->opk : NULL)) {
        rc = node_error(r, ERR_PRECONDITION, "X3DH failed: a key in the bundle gives an unusable "
                                             "(all-zero) shared secret");
        goto out;
    }
    if (session_init_alice(s, &x, b->spk, u->id.x.pub, b->identity, ek.pub)) {
        rc = node_error(r, ERR_CRASH, "session set-up failed internally");
        goto out;
    }
    s->remote_registration_id = b->registration_id;
    s->pending_prekey = true;
    s->pending_pre_key_id = b->has_opk ? b->opk_id : WIRE_NO_PREKEY;
    s->pending_signed_pre_key_id = b->spk_id;
    if (!store_find_user(&app->store, peer_name) && store_mark_remote(&app->store, peer_name)) {
        rc = node_error(r, ERR_CRASH, "out of memory");
        goto out;
    }
    /* Commit: pin on first use, the new session becomes current. */
    if (!p->pinned) {
        memcpy(p->identity, b->identity, CURVE_KEY_LEN);
        p->pinned = true;
    }
    memcpy(root_key, x.root_key, 32);
    peer_install_session(p, s);
    *out = s;
    s = NULL;
out:
    if (s) {
        session_wipe(s);
        free(s);
    }
    WIPE_OBJ(ek);
    WIPE_OBJ(x);
    return rc;
}

/* Alice without a bundle in the request: the local user `peer_name`. */
static int initiate_local(struct app *app, struct user *u, const char *peer_name,
                          struct reply *r, struct session **out, uint8_t root_key[static 32])
{
    struct user *bob = store_find_user(&app->store, peer_name);
    struct bundle b;
    if (!bob) {
        if (store_is_remote(&app->store, peer_name))
            return node_error(r, ERR_KEY_DOES_NOT_EXIST,
                              "\"%s\" is a remote peer and there is no session with it: "
                              "initiate_conversation with its bundle in bob_public_key",
                              peer_name);
        switch (store_user(&app->store, peer_name, &bob)) {
        case STORE_OK: break;
        case STORE_NO_MEMORY: return node_error(r, ERR_CRASH, "out of memory");
        default: return node_error(r, ERR_CRASH, "key generation failed (RNG or OpenSSL)");
        }
    }
    local_bundle(bob, &b, true);
    return initiate(app, u, peer_name, &b, r, out, root_key);
}

/* ============================================================================
 * Handlers
 * ========================================================================== */

static int h_get_bundle(struct app *app, const struct request *req, struct reply *r)
{
    struct user *u;
    struct bundle b;
    int rc = acting_user(app, req, r, &u);
    if (rc)
        return rc;
    local_bundle(u, &b, true);
    reply_type(r, "bundle");
    reply_cstring(r, "user", u->name);
    reply_int(r, "registration_id", b.registration_id);
    reply_int(r, "device_id", b.device_id);
    reply_key(r, "identity_key", b.identity);
    reply_key(r, "signed_pre_key", b.spk);
    reply_int(r, "signed_pre_key_id", b.spk_id);
    reply_base64(r, "signed_pre_key_signature", b.spk_sig, CURVE_SIG_LEN);
    if (b.has_opk) {
        reply_key(r, "one_time_pre_key", b.opk);
        reply_int(r, "one_time_pre_key_id", b.opk_id);
    }
    return 0;
}

static int h_initiate_conversation(struct app *app, const struct request *req, struct reply *r)
{
    struct user *u;
    const char *recipient;
    struct session *s;
    uint8_t root_key[32];
    int rc;
    if ((rc = req_string(r, req->body, "recipient", false, &recipient, NULL)) ||
        (rc = acting_user(app, req, r, &u)))
        return rc;
    const cJSON *bundle_json = req_field(req->body, "bob_public_key");
    if (bundle_json && !cJSON_IsNull(bundle_json)) {
        struct bundle b;
        if ((rc = parse_bundle(r, bundle_json, &b)))
            return rc;
        rc = initiate(app, u, recipient, &b, r, &s, root_key);
    } else {
        rc = initiate_local(app, u, recipient, r, &s, root_key);
    }
    if (rc)
        return rc;
    reply_type(r, "conversation_initiated");
    reply_sensitive(r); /* the root key, which PROTOCOL.md §3 asks us to show */
    reply_cstring(r, "session_id", s->id);
    reply_base64(r, "root_key", root_key, sizeof(root_key));
    reply_cstring(r, "recipient", recipient);
    WIPE_OBJ(root_key);
    return 0;
}

/* Encrypts pt for recipient on the current session, initiating one from the
 * local bundle when there is none, and fills the reply. */
static int send_plaintext(struct app *app, struct user *u, const char *recipient,
                          const uint8_t *pt, size_t pt_len, struct reply *r)
{
    uint8_t root_key[32];
    struct peer *p = user_find_peer(u, recipient);
    struct session *s = p && p->n_sessions ? p->sessions[0] : NULL;
    if (!s) { /* no session yet: initiate one first (PROTOCOL.md §3) */
        int rc = initiate_local(app, u, recipient, r, &s, root_key);
        WIPE_OBJ(root_key);
        if (rc)
            return rc;
    }

    size_t max = signal_message_max_len(cbc_padded_len(pt_len));
    app->wire.len = 0;
    uint8_t *out = (uint8_t *)buf_reserve(&app->wire, max + prekey_message_max_len(max));
    size_t msg_len, total;
    if (!out)
        return node_error(r, ERR_CRASH, "out of memory");
    if (ratchet_encrypt(s, pt, pt_len, out, &msg_len))
        return node_error(r, ERR_CRASH, "encryption failed internally");
    const uint8_t *mac = out + msg_len - WIRE_MAC_LEN;
    const uint8_t *wire = out;
    total = msg_len;
    if (s->pending_prekey) { /* Double Ratchet §5.1: resend X3DH data until Bob answers */
        uint8_t *pk = out + msg_len;
        total = prekey_message_encode(pk, u->registration_id, s->pending_pre_key_id,
                                      s->pending_signed_pre_key_id, s->base_key, u->id.x.pub,
                                      out, msg_len);
        wire = pk;
    }
    reply_type(r, "message_encrypted");
    reply_begin_object(r, "encrypted_message");
    reply_base64(r, "ciphertext", wire, total);
    reply_hex(r, "auth_tag", mac, WIRE_MAC_LEN);
    reply_cstring(r, "kind", s->pending_prekey ? "prekey" : "message");
    reply_end_object(r);
    reply_cstring(r, "session_id", s->id);
    return 0;
}

static int h_send_message(struct app *app, const struct request *req, struct reply *r)
{
    struct user *u;
    const char *recipient;
    const uint8_t *pt;
    size_t pt_len;
    int rc;
    if ((rc = req_string(r, req->body, "recipient", false, &recipient, NULL)) ||
        (rc = acting_user(app, req, r, &u)) ||
        (rc = req_text_or_base64(r, req->body, "plaintext", "encoding", false, &app->bytes, &pt,
                                 &pt_len)))
        return rc;
    rc = send_plaintext(app, u, recipient, pt, pt_len, r);
    if (pt == (const uint8_t *)app->bytes.data) /* decoded from base64: wiped on every path */
        wipe_bytes(app->bytes.data, pt_len);
    return rc;
}

/* Tries each session of p on m, current first; promotes the one that works.
 * Returns the result; *used is the session on success. */
static enum ratchet_result decrypt_on_peer(struct peer *p, const struct signal_message *m,
                                           uint8_t *pt, size_t *pt_len, struct session **used)
{
    enum ratchet_result first = RATCHET_BAD_MAC;
    for (size_t i = 0; i < p->n_sessions; i++) {
        enum ratchet_result res = ratchet_decrypt(p->sessions[i], m, pt, pt_len);
        if (res == RATCHET_OK) {
            *used = p->sessions[i];
            peer_promote_session(p, i);
            return RATCHET_OK;
        }
        if (i == 0 || res == RATCHET_DUPLICATE)
            first = i == 0 || first != RATCHET_DUPLICATE ? res : first;
        if (res == RATCHET_INTERNAL)
            return res;
    }
    return first;
}

/* A PreKeySignalMessage: an existing session with its base key, or X3DH as
 * Bob. The session, the one-time prekey deletion and the pin are committed
 * only when the inner message authenticates. */
static int receive_prekey(struct app *app, struct user *u, const char *sender,
                          const struct prekey_message *pm, uint8_t *pt, size_t *pt_len,
                          struct reply *r, struct session **used)
{
    struct peer *p = user_find_peer(u, sender);
    if (p && p->pinned && memcmp(p->identity, pm->identity_key, CURVE_KEY_LEN))
        return node_error(r, ERR_PRECONDITION, "the identity key of \"%s\" changed since it was "
                                               "pinned; use trust_identity to accept the new key",
                          sender);
    /* Alice resends the X3DH data until she hears back: such a message
     * belongs to the session with its base key (SIGNAL.md 2.1). */
    for (size_t i = 0; p && i < p->n_sessions; i++) {
        if (memcmp(p->sessions[i]->base_key, pm->base_key, CURVE_KEY_LEN))
            continue;
        enum ratchet_result res = ratchet_decrypt(p->sessions[i], &pm->message, pt, pt_len);
        if (res == RATCHET_INTERNAL)
            return node_error(r, ERR_CRASH, "%s", ratchet_result_text(res));
        if (res != RATCHET_OK) {
            reply_decryption_failed(r, ratchet_result_text(res));
            return -1;
        }
        *used = p->sessions[i];
        peer_promote_session(p, i);
        return 0;
    }

    if (pm->signed_pre_key_id != u->spk_id) {
        reply_decryption_failed(r, "unknown signed prekey id");
        return -1;
    }
    struct one_time_prekey *opk = NULL;
    if (pm->pre_key_id != WIRE_NO_PREKEY) {
        opk = user_find_opk(u, pm->pre_key_id);
        if (!opk) {
            reply_decryption_failed(r, "one-time prekey already used or unknown (its private "
                                       "key is deleted once used)");
            return -1;
        }
    }
    struct x3dh_result x;
    struct session *s = calloc(1, sizeof(*s));
    int rc = -1;
    if (!s)
        return node_error(r, ERR_CRASH, "out of memory");
    if (x3dh_respond(&x, &u->id.x, &u->spk, opk ? &opk->kp : NULL, pm->identity_key,
                     pm->base_key) ||
        session_init_bob(s, &x, &u->spk, u->id.x.pub, pm->identity_key, pm->base_key)) {
        reply_decryption_failed(r, "X3DH failed: the message's keys give an unusable shared secret");
        goto out;
    }
    enum ratchet_result res = ratchet_decrypt(s, &pm->message, pt, pt_len);
    if (res == RATCHET_INTERNAL) {
        rc = node_error(r, ERR_CRASH, "%s", ratchet_result_text(res));
        goto out;
    }
    if (res != RATCHET_OK) {
        reply_decryption_failed(r, ratchet_result_text(res));
        goto out;
    }
    if (!p && !(p = user_peer(u, sender))) {
        wipe_bytes(pt, *pt_len);
        rc = node_error(r, ERR_CRASH, "out of memory");
        goto out;
    }
    struct user *local = store_find_user(&app->store, sender);
    if (!local && store_mark_remote(&app->store, sender)) {
        wipe_bytes(pt, *pt_len);
        rc = node_error(r, ERR_CRASH, "out of memory");
        goto out;
    }
    /* Commit. */
    s->remote_registration_id = pm->registration_id;
    if (!p->pinned) {
        memcpy(p->identity, pm->identity_key, CURVE_KEY_LEN);
        p->pinned = true;
    }
    if (opk)
        user_delete_opk(opk);
    peer_install_session(p, s);
    *used = s;
    s = NULL;
    rc = 0;
out:
    if (s) {
        session_wipe(s);
        free(s);
    }
    WIPE_OBJ(x);
    return rc;
}

static int h_receive_message(struct app *app, const struct request *req, struct reply *r)
{
    struct user *u;
    const char *sender, *ct_b64, *tag_hex, *kind;
    size_t ct_len, tag_len, n;
    int rc;
    const cJSON *em = req_field(req->body, "encrypted_message");
    if ((rc = req_string(r, req->body, "sender", false, &sender, NULL)))
        return rc;
    if (!cJSON_IsObject(em))
        return node_error(r, ERR_MALFORMED, "encrypted_message: expected an object "
                                            "{ciphertext, auth_tag, kind}");
    if ((rc = req_string(r, em, "ciphertext", false, &ct_b64, &ct_len)) ||
        (rc = req_string(r, em, "auth_tag", true, &tag_hex, &tag_len)) ||
        (rc = req_string(r, em, "kind", true, &kind, NULL)) ||
        (rc = acting_user(app, req, r, &u)))
        return rc;
    if (kind && strcmp(kind, "prekey") && strcmp(kind, "message"))
        return node_error(r, ERR_MALFORMED, "encrypted_message.kind: expected \"prekey\" or "
                                            "\"message\"");
    app->bytes.len = 0;
    uint8_t *bytes = (uint8_t *)buf_reserve(&app->bytes, base64_decoded_max(ct_len) + 1);
    if (!bytes)
        return node_error(r, ERR_CRASH, "out of memory");
    if (base64_decode(bytes, &n, ct_b64, ct_len))
        return node_error(r, ERR_MALFORMED, "encrypted_message.ciphertext: expected padded base64");

    struct prekey_message pm;
    struct signal_message sm;
    const struct signal_message *m;
    const char *err = NULL;
    bool prekey;
    if (kind)
        prekey = !strcmp(kind, "prekey");
    else /* absent: prekey when the bytes parse as one (SIGNAL.md Part 0 item 5) */
        prekey = prekey_message_parse(&pm, bytes, n) == NULL;
    err = prekey ? prekey_message_parse(&pm, bytes, n) : signal_message_parse(&sm, bytes, n);
    if (err) {
        char why[160];
        snprintf(why, sizeof(why), "invalid %s message: %s", prekey ? "prekey" : "signal", err);
        reply_decryption_failed(r, why);
        return 0;
    }
    m = prekey ? &pm.message : &sm;
    if (tag_hex) {
        uint8_t tag[WIRE_MAC_LEN];
        if (tag_len != 2 * WIRE_MAC_LEN || hex_decode(tag, tag_hex, tag_len))
            return node_error(r, ERR_MALFORMED, "encrypted_message.auth_tag: expected 16 hex "
                                                "characters");
        if (CRYPTO_memcmp(tag, m->mac, WIRE_MAC_LEN)) {
            reply_decryption_failed(r, "auth_tag does not match the MAC inside the message");
            return 0;
        }
    }

    app->plain.len = 0;
    uint8_t *pt = (uint8_t *)buf_reserve(&app->plain, m->ciphertext_len + 1);
    size_t pt_len = 0;
    struct session *used = NULL;
    if (!pt)
        return node_error(r, ERR_CRASH, "out of memory");
    if (prekey) {
        rc = receive_prekey(app, u, sender, &pm, pt, &pt_len, r, &used);
        if (rc > 0)
            return rc;  /* an error reply */
        if (rc < 0)
            return 0;   /* decryption_failed */
    } else {
        struct peer *p = user_find_peer(u, sender);
        if (!p || !p->n_sessions)
            return node_error(r, ERR_KEY_DOES_NOT_EXIST, "no session with \"%s\": the first "
                                                          "message must be a prekey message",
                              sender);
        enum ratchet_result res = decrypt_on_peer(p, m, pt, &pt_len, &used);
        if (res == RATCHET_INTERNAL)
            return node_error(r, ERR_CRASH, "%s", ratchet_result_text(res));
        if (res != RATCHET_OK) {
            reply_decryption_failed(r, ratchet_result_text(res));
            return 0;
        }
    }
    if (!used) /* every path above sets it on success; a slip must not crash */
        return node_error(r, ERR_CRASH, "internal error: no session decrypted the message");
    used->pending_prekey = false; /* Bob answered: stop resending X3DH data */
    reply_type(r, "message_decrypted");
    reply_plaintext(r, pt, pt_len);
    wipe_bytes(pt, pt_len);
    reply_cstring(r, "sender", sender);
    reply_cstring(r, "session_id", used->id);
    return 0;
}

/* The identity the acting user knows for `name`: pinned, else a local
 * user's own. */
static const uint8_t *known_identity(struct app *app, struct user *u, const char *name)
{
    struct peer *p = user_find_peer(u, name);
    if (p && p->pinned)
        return p->identity;
    struct user *local = store_find_user(&app->store, name);
    return local ? local->id.x.pub : NULL;
}

static int h_fingerprint(struct app *app, const struct request *req, struct reply *r)
{
    struct user *u;
    const char *peer;
    size_t peer_len;
    char number[61];
    int rc;
    if ((rc = req_string(r, req->body, "peer", false, &peer, &peer_len)) ||
        (rc = acting_user(app, req, r, &u)))
        return rc;
    const uint8_t *identity = known_identity(app, u, peer);
    if (!identity)
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "peer: no identity key known for \"%s\"",
                          peer);
    if (safety_number(number, u->id.x.pub, u->name, strlen(u->name), identity, peer, peer_len))
        return node_error(r, ERR_CRASH, "fingerprint computation failed internally");
    reply_type(r, "fingerprint");
    reply_cstring(r, "safety_number", number);
    return 0;
}

static int h_trust_identity(struct app *app, const struct request *req, struct reply *r)
{
    struct user *u;
    const char *peer_name;
    uint8_t identity[CURVE_KEY_LEN];
    int rc;
    if ((rc = req_string(r, req->body, "peer", false, &peer_name, NULL)) ||
        (rc = parse_key(r, req->body, "", "identity_key", false, identity, NULL)) ||
        (rc = acting_user(app, req, r, &u)))
        return rc;
    struct peer *p = user_peer(u, peer_name);
    if (!p)
        return node_error(r, ERR_CRASH, "out of memory");
    /* Sessions with the old identity are from another device: drop them. */
    peer_drop_sessions_except(p, identity);
    memcpy(p->identity, identity, CURVE_KEY_LEN);
    p->pinned = true;
    reply_type(r, "identity_trusted");
    reply_cstring(r, "peer", peer_name);
    return 0;
}

static const struct node_handler HANDLERS[] = {
    {.type = "get_bundle", .fn = h_get_bundle},
    {.type = "initiate_conversation", .fn = h_initiate_conversation},
    {.type = "send_message", .fn = h_send_message},
    {.type = "receive_message", .fn = h_receive_message},
    {.type = "fingerprint", .fn = h_fingerprint},
    {.type = "trust_identity", .fn = h_trust_identity},
};

static const struct node_program PROGRAM = {
    .name = "e2ee-node",
    .summary = "End-to-end encryption with X3DH and the Double Ratchet (Signal protocol v3).",
    .extra_help =
        "\nRequests: get_bundle, initiate_conversation, send_message, receive_message,\n"
        "fingerprint, trust_identity. The acting user is body.user, else the envelope's src;\n"
        "local users get keys on first use. See PROTOCOL.md §3 and SIGNAL.md Part 0.\n",
    .handlers = HANDLERS,
    .n_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]),
};

int main(int argc, char **argv)
{
    int status;
    if (node_main_options(&PROGRAM, &argc, argv, &status))
        return status;
    if (argc > 1) {
        fprintf(stderr, "e2ee-node: unknown argument \"%s\" (try --help)\n", argv[1]);
        return 2;
    }
    struct app app = {0};
    status = node_run(&PROGRAM, &app);
    store_free(&app.store);
    buf_free(&app.wire);
    buf_free(&app.bytes);
    buf_free(&app.plain);
    rand_pool_wipe();
    return status;
}
