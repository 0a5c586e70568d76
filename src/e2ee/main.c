/* e2ee-node - X3DH and the Double Ratchet, Signal protocol v3 on the wire
 * (PROTOCOL.md §3, SIGNAL.md Part 0), and the blind backend's roles (§5).
 *
 * Standalone, the handlers below read and check the request, call the
 * conversation module (conversation.h), and turn its result into a reply.
 * The acting user is body.user when given, else the envelope's src; a local
 * user is made (with fresh keys) only by a request that needs its keys.
 *
 * With --directory and --relay, the node's id picks its role at init: the
 * directory (directory.c), the relay (relay.c) or a host of devices
 * (device.c). One table serves every request type; a type outside the
 * node's role gets error 10.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/codec.h"
#include "securitor/curve.h"
#include "securitor/durable.h"
#include "securitor/keypool.h"
#include "securitor/keysource.h"
#include "securitor/node.h"
#include "securitor/rand.h"
#include "securitor/safety.h"
#include "securitor/wipe.h"
#include "securitor/wire.h"
#include "app.h"
#include "conversation.h"
#include "device.h"
#include "directory.h"
#include "fields.h"
#include "persist.h"
#include "relay.h"
#include "store.h"


/* ============================================================================
 * Request helpers
 * ========================================================================== */

/* A name field (user, recipient, sender, peer): 1 to STORE_NAME_MAX bytes. */
static int check_name(struct reply *r, const char *field, const char *name)
{
    size_t len = strlen(name);
    if (!len || len > STORE_NAME_MAX)
        return node_error(r, ERR_MALFORMED, "%s: expected a name of 1 to %d bytes, got %zu",
                          field, STORE_NAME_MAX, len);
    return 0;
}

static int name_field(struct reply *r, const cJSON *body, const char *field, const char **name)
{
    int rc = req_string(r, body, field, false, name, NULL);
    return rc ? rc : check_name(r, field, *name);
}

/* The acting user's name: body.user, else the envelope's src. */
static int acting_name(const struct request *req, struct reply *r, const char **name)
{
    int rc = req_string(r, req->body, "user", true, name, NULL);
    if (rc)
        return rc;
    if (*name)
        return check_name(r, "user", *name);
    *name = req->src;
    return check_name(r, "src (the acting user)", *name);
}

/* The acting user, made on first use (for requests that need its keys). */
static int acting_user(struct app *app, const char *name, struct reply *r, struct user **u)
{
    switch (store_user(&app->store, name, u)) {
    case STORE_OK: return 0;
    case STORE_REMOTE:
        return node_error(r, ERR_KEY_DOES_NOT_EXIST,
                          "user: \"%s\" is a remote peer; this node holds no keys for it", name);
    case STORE_FULL:
        return node_error(r, ERR_PRECONDITION, "user limit reached: this node holds at most %zu "
                                               "local users (--max-users)",
                          app->store.max_users);
    case STORE_NO_MEMORY: return node_error(r, ERR_CRASH, "out of memory");
    default: return node_error(r, ERR_CRASH, "key generation failed (RNG or OpenSSL)");
    }
}

/* What a request by `name` with `peer` would fail on before it could make
 * `name` (README: a failing request makes no user), when `name` is new:
 * a remote peer without a session (no bundle given), a new local peer with
 * no room left beside `name`, keys in a bundle no DH can use. CONV_OK when
 * `name` exists or none applies. */
static enum conv_result new_user_check(struct app *app, const char *name, const char *peer,
                                       const struct bundle *b)
{
    struct store *st = &app->store;
    if (store_find_user(st, name))
        return CONV_OK;
    if (!b && store_is_remote(st, peer))
        return CONV_REMOTE_NO_SESSION;
    if (!b && !store_find_user(st, peer) && st->n_users + 2 > st->max_users)
        return CONV_USER_LIMIT; /* both would be made */
    const uint8_t *keys[3] = {b ? b->identity : NULL, b ? b->spk : NULL,
                              b && b->has_opk ? b->opk : NULL};
    for (int i = 0; i < 3; i++) {
        int usable = keys[i] ? curve_public_usable(keys[i]) : 1;
        if (usable < 0)
            return CONV_CRYPTO;
        if (!usable)
            return CONV_UNUSABLE_KEY;
    }
    return CONV_OK;
}

/* The reply for a conversation result other than CONV_OK. */
static int conv_reply(struct app *app, struct reply *r, enum conv_result rc, const char *peer,
                      const char *detail)
{
    switch (rc) {
    case CONV_OK: return 0;
    case CONV_NO_MEMORY: return node_error(r, ERR_CRASH, "out of memory");
    case CONV_CRYPTO:
        return node_error(r, ERR_CRASH, "the random number generator or OpenSSL failed");
    case CONV_USER_LIMIT:
        return node_error(r, ERR_PRECONDITION, "user limit reached: this node holds at most %zu "
                                               "local users (--max-users)",
                          app->store.max_users);
    case CONV_BAD_SIGNATURE:
        return node_error(r, ERR_PRECONDITION, "bob_public_key.signed_pre_key_signature: does "
                                               "not verify under identity_key");
    case CONV_IDENTITY_CHANGED:
        return node_error(r, ERR_PRECONDITION, "the identity key of \"%s\" changed since it was "
                                               "pinned; use trust_identity to accept the new key",
                          peer);
    case CONV_LOCAL_IDENTITY:
        return node_error(r, ERR_PRECONDITION, "\"%s\" is a user of this node and that is not "
                                               "its identity key: refused (impersonation)",
                          peer);
    case CONV_UNUSABLE_KEY:
        return node_error(r, ERR_PRECONDITION, "X3DH failed: a key in the bundle gives an "
                                               "unusable (all-zero) shared secret");
    case CONV_REMOTE_NO_SESSION:
        return node_error(r, ERR_KEY_DOES_NOT_EXIST,
                          "\"%s\" is a remote peer and there is no session with it: "
                          "initiate_conversation with its bundle in bob_public_key", peer);
    case CONV_NO_SESSION:
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "no session with \"%s\": the first message "
                                                      "must be a prekey message", peer);
    case CONV_REJECTED:
        reply_type(r, "decryption_failed");
        reply_cstring(r, "error", detail);
        return 0;
    }
    return node_error(r, ERR_CRASH, "internal error");
}

/* ============================================================================
 * Handlers
 * ========================================================================== */

static int h_get_bundle(struct app *app, const struct request *req, struct reply *r)
{
    const char *name;
    struct user *u;
    struct bundle b;
    int rc;
    if ((rc = acting_name(req, r, &name)) || (rc = acting_user(app, name, r, &u)))
        return rc;
    conv_bundle(u, &b, true);
    reply_type(r, "bundle");
    reply_cstring(r, "user", u->name);
    reply_bundle_fields(r, &b);
    return 0;
}

static int h_initiate_conversation(struct app *app, const struct request *req, struct reply *r)
{
    const char *name, *recipient;
    struct user *u;
    struct session *s;
    struct bundle b;
    uint8_t root_key[32];
    enum conv_result res;
    int rc;
    const cJSON *bundle_json = req_field(req->body, "bob_public_key");
    bool has_bundle = bundle_json && !cJSON_IsNull(bundle_json);
    if ((rc = name_field(r, req->body, "recipient", &recipient)) ||
        (rc = acting_name(req, r, &name)) ||
        (has_bundle && (rc = field_bundle(r, bundle_json, "bob_public_key", &b))))
        return rc;
    if (!strcmp(recipient, name))
        return node_error(r, ERR_MALFORMED, "recipient: a user cannot start a conversation "
                                            "with itself");
    /* A refused request makes no user (README: a failing request makes none). */
    if ((has_bundle && (res = conv_bundle_check(&app->store, recipient, &b)) != CONV_OK) ||
        (res = new_user_check(app, name, recipient, has_bundle ? &b : NULL)) != CONV_OK)
        return conv_reply(app, r, res, recipient, NULL);
    if ((rc = acting_user(app, name, r, &u)))
        return rc;
    res = has_bundle ? conv_initiate(&app->store, u, recipient, &b, &s, root_key)
                     : conv_initiate_local(&app->store, u, recipient, &s, root_key);
    if (res != CONV_OK)
        return conv_reply(app, r, res, recipient, NULL);
    reply_type(r, "conversation_initiated");
    reply_sensitive(r); /* the root key, which PROTOCOL.md §3 asks us to show */
    reply_cstring(r, "session_id", s->id);
    reply_base64(r, "root_key", root_key, sizeof(root_key));
    reply_cstring(r, "recipient", recipient);
    WIPE_OBJ(root_key);
    return 0;
}

static int h_send_message(struct app *app, const struct request *req, struct reply *r)
{
    const char *name, *recipient;
    struct user *u;
    const uint8_t *pt = NULL;
    size_t pt_len = 0;
    struct conv_sent sent;
    int rc;
    if ((rc = name_field(r, req->body, "recipient", &recipient)) ||
        (rc = acting_name(req, r, &name)))
        return rc;
    /* Nobody could decrypt it: the sender keeps no session with itself. */
    if (!strcmp(recipient, name))
        return node_error(r, ERR_MALFORMED, "recipient: a user cannot send a message to itself");
    if ((rc = req_text_or_base64(r, req->body, "plaintext", "encoding", false, &app->bytes, &pt,
                                 &pt_len)))
        goto out;
    /* A new sender fails without a session with a remote peer, or without
     * room for a new local one: then it is not made either. */
    enum conv_result early = new_user_check(app, name, recipient, NULL);
    if (early != CONV_OK) {
        rc = conv_reply(app, r, early, recipient, NULL);
        goto out;
    }
    if ((rc = acting_user(app, name, r, &u)))
        goto out;
    enum conv_result res = conv_encrypt(&app->store, u, recipient, pt, pt_len, &app->wire, &sent);
    if (res != CONV_OK) {
        rc = conv_reply(app, r, res, recipient, NULL);
        goto out;
    }
    reply_type(r, "message_encrypted");
    reply_begin_object(r, "encrypted_message");
    reply_base64(r, "ciphertext", sent.wire, sent.len);
    reply_hex(r, "auth_tag", sent.mac, WIRE_MAC_LEN);
    reply_cstring(r, "kind", sent.prekey ? "prekey" : "message");
    reply_end_object(r);
    reply_cstring(r, "session_id", sent.session->id);
out:
    if (pt && pt == (const uint8_t *)app->bytes.data) /* decoded from base64 */
        wipe_bytes(app->bytes.data, pt_len);
    return rc;
}

static int h_receive_message(struct app *app, const struct request *req, struct reply *r)
{
    const char *name, *sender, *ct_b64, *tag_hex, *kind_text;
    size_t ct_len, tag_len, n;
    uint8_t tag[WIRE_MAC_LEN];
    struct user *u;
    int rc;
    const cJSON *em = req_field(req->body, "encrypted_message");
    if ((rc = name_field(r, req->body, "sender", &sender)) ||
        (rc = acting_name(req, r, &name)))
        return rc;
    if (!cJSON_IsObject(em))
        return node_error(r, ERR_MALFORMED, "encrypted_message: expected an object "
                                            "{ciphertext, auth_tag, kind}");
    if ((rc = req_string(r, em, "ciphertext", false, &ct_b64, &ct_len)) ||
        (rc = req_string(r, em, "auth_tag", true, &tag_hex, &tag_len)) ||
        (rc = req_string(r, em, "kind", true, &kind_text, NULL)))
        return rc;
    enum conv_kind kind = !kind_text                    ? CONV_KIND_GUESS
                          : !strcmp(kind_text, "prekey")  ? CONV_KIND_PREKEY
                          : !strcmp(kind_text, "message") ? CONV_KIND_MESSAGE
                                                          : -1;
    if ((int)kind < 0)
        return node_error(r, ERR_MALFORMED, "encrypted_message.kind: expected \"prekey\" or "
                                            "\"message\"");
    if (tag_hex && (tag_len != 2 * WIRE_MAC_LEN || hex_decode(tag, tag_hex, tag_len)))
        return node_error(r, ERR_MALFORMED, "encrypted_message.auth_tag: expected 16 hex "
                                            "characters");
    if (!strcmp(sender, name))
        return node_error(r, ERR_MALFORMED, "sender: a user receives no messages from itself");
    app->bytes.len = 0;
    uint8_t *bytes = (uint8_t *)buf_reserve(&app->bytes, base64_decoded_max(ct_len) + 1);
    if (!bytes)
        return node_error(r, ERR_CRASH, "out of memory");
    if (base64_decode(bytes, &n, ct_b64, ct_len))
        return node_error(r, ERR_MALFORMED, "encrypted_message.ciphertext: expected padded base64");

    /* A user not made yet has no session, and no prekeys anyone could have
     * used: nothing sent to it can authenticate, and it is not made (a
     * failing request makes no user). */
    if (!(u = store_find_user(&app->store, name))) {
        struct prekey_message probe;
        struct signal_message sm;
        bool maybe_prekey = kind == CONV_KIND_PREKEY ||
                            (kind == CONV_KIND_GUESS && !prekey_message_parse(&probe, bytes, n));
        const char *err = maybe_prekey ? NULL : signal_message_parse(&sm, bytes, n);
        char detail[CONV_DETAIL_LEN];
        if (!maybe_prekey && !err)
            return conv_reply(app, r, CONV_NO_SESSION, sender, NULL);
        if (err)
            snprintf(detail, sizeof(detail), "invalid signal message: %s", err);
        else
            snprintf(detail, sizeof(detail), "\"%.40s\" has no keys on this node (no bundle "
                                             "of it was handed out): nothing to it can "
                                             "authenticate", name);
        return conv_reply(app, r, CONV_REJECTED, sender, detail);
    }
    app->plain.len = 0;
    uint8_t *pt = (uint8_t *)buf_reserve(&app->plain, n + 1);
    size_t pt_len = 0;
    struct session *used;
    char detail[CONV_DETAIL_LEN];
    if (!pt)
        return node_error(r, ERR_CRASH, "out of memory");
    enum conv_result res = conv_decrypt(&app->store, u, sender, bytes, n, kind,
                                        tag_hex ? tag : NULL, pt, &pt_len, &used, detail);
    if (res != CONV_OK)
        return conv_reply(app, r, res, sender, detail);
    reply_type(r, "message_decrypted");
    reply_sensitive(r);
    reply_text_or_base64(r, "plaintext", pt, pt_len);
    wipe_bytes(pt, pt_len);
    reply_cstring(r, "sender", sender);
    reply_cstring(r, "session_id", used->id);
    return 0;
}

/* The identity known for `name`: the acting user's pin, else a local user's
 * own. u may be NULL (the acting user does not exist yet). */
static const uint8_t *known_identity(struct app *app, const struct user *u, const char *name)
{
    const struct peer *p = u ? user_find_peer(u, name) : NULL;
    if (p && p->pinned)
        return p->identity;
    const struct user *local = store_find_user(&app->store, name);
    return local ? local->id.x.pub : NULL;
}

static int h_fingerprint(struct app *app, const struct request *req, struct reply *r)
{
    const char *name, *peer;
    struct user *u;
    char number[61];
    int rc;
    if ((rc = name_field(r, req->body, "peer", &peer)) || (rc = acting_name(req, r, &name)))
        return rc;
    /* The peer first: an unknown one makes no user. */
    if (!known_identity(app, store_find_user(&app->store, name), peer))
        return node_error(r, ERR_KEY_DOES_NOT_EXIST, "peer: no identity key known for \"%s\"",
                          peer);
    if ((rc = acting_user(app, name, r, &u)))
        return rc;
    const uint8_t *identity = known_identity(app, u, peer);
    if (safety_number(number, u->id.x.pub, u->name, strlen(u->name), identity, peer, strlen(peer)))
        return node_error(r, ERR_CRASH, "fingerprint computation failed internally");
    reply_type(r, "fingerprint");
    reply_cstring(r, "safety_number", number);
    return 0;
}

static int h_trust_identity(struct app *app, const struct request *req, struct reply *r)
{
    const char *name, *peer_name;
    uint8_t identity[CURVE_KEY_LEN];
    struct user *u;
    int rc;
    if ((rc = name_field(r, req->body, "peer", &peer_name)) ||
        (rc = field_key(r, req->body, "", "identity_key", false, identity, NULL)) ||
        (rc = acting_name(req, r, &name)))
        return rc;
    int usable = curve_public_usable(identity);
    if (usable < 0)
        return node_error(r, ERR_CRASH, "key check failed internally");
    if (!usable)
        return node_error(r, ERR_PRECONDITION, "identity_key: a low-order point, which no "
                                               "identity can be");
    const struct user *local = store_find_user(&app->store, peer_name);
    if (local && memcmp(local->id.x.pub, identity, CURVE_KEY_LEN))
        return conv_reply(app, r, CONV_LOCAL_IDENTITY, peer_name, NULL);
    if (!strcmp(peer_name, name))
        return node_error(r, ERR_MALFORMED, "peer: a user does not pin its own identity");
    if ((rc = acting_user(app, name, r, &u)))
        return rc;
    struct peer *p = user_add_peer(u, peer_name);
    if (!p)
        return node_error(r, ERR_CRASH, "out of memory");
    /* Sessions with the old identity are from another device: drop them. */
    user_drop_sessions_except(u, p, identity);
    user_pin_peer(u, p, identity);
    reply_type(r, "identity_trusted");
    reply_cstring(r, "peer", peer_name);
    return 0;
}

/* ============================================================================
 * The state (PROTOCOL.md §4)
 * ========================================================================== */

/* Rows go to the role that owns their kind; the store's own kinds (user,
 * opk, peer, session, remote, seen) to persist.c. A row of another role
 * means the state belongs to a node that had another role: refused. */
struct loader {
    struct app *app;
    struct persist_loader *store;
};

static int load_row(void *ctx, const char *kind, const uint8_t *key, size_t key_len,
                    const uint8_t *value, size_t value_len)
{
    struct loader *l = ctx;
    struct app *app = l->app;
    enum role owner = !strncmp(kind, "dir_", 4)     ? ROLE_DIRECTORY
                      : !strncmp(kind, "relay_", 6) ? ROLE_RELAY
                      : !strncmp(kind, "dev_", 4)   ? ROLE_DEVICES
                                                    : ROLE_STANDALONE;
    if (owner != ROLE_STANDALONE && owner != app->role) {
        node_log("e2ee-node: the state holds rows of another role (%s): refused", kind);
        return -1;
    }
    switch (owner) {
    case ROLE_DIRECTORY: return directory_load_row(app, kind, key, key_len, value, value_len);
    case ROLE_RELAY: return relay_load_row(app, kind, key, key_len, value, value_len);
    case ROLE_DEVICES: return devices_load_row(app, kind, key, key_len, value, value_len);
    default: return persist_load_row(l->store, kind, key, key_len, value, value_len);
    }
}

/* Empties what the rows fill: the store, and the role's own data (work in
 * flight stays, and finds its data again by name). */
static int forget_rows(struct app *app)
{
    store_free(&app->store);
    store_init(&app->store, app->max_users);
    switch (app->role) {
    case ROLE_DIRECTORY: directory_free(app); return directory_new(app);
    case ROLE_RELAY: relay_free(app); return relay_new(app);
    case ROLE_DEVICES: devices_forget(app); return devices_new(app);
    default: return 0;
    }
}

/* After the rows are read: the store, then the role's checks. 0 or -1. */
static int finish_load(struct app *app, struct loader *l)
{
    int rc = persist_finish(l->store, &app->store);
    l->store = NULL;
    if (rc)
        return -1;
    switch (app->role) {
    case ROLE_DIRECTORY: rc = directory_loaded(app); break;
    case ROLE_RELAY: rc = relay_loaded(app); break;
    case ROLE_DEVICES: rc = devices_loaded(app); break;
    default: break;
    }
    if (rc)
        return -1;
    store_track(&app->store);
    return 0;
}

static int rollback(struct app *app)
{
    struct loader l = {app, persist_loader_new()};
    if (!l.store || forget_rows(app))
        goto fail;
    app->durable.load = load_row;
    app->durable.ctx = &l;
    if (durable_reload(&app->durable) || finish_load(app, &l))
        goto fail;
    return 0;
fail:
    persist_loader_free(l.store);
    return -1;
}

static const char *const ROLE_TEXT[] = {"standalone", "the directory", "the relay",
                                        "a device host"};

static int on_init(struct app *app, struct node *n, const char *node_id, const cJSON *node_ids,
                   struct reply *r)
{
    (void)node_ids;
    int rc = durable_check_id(&app->durable, node_id, r);
    if (rc) /* before the role is fixed: a refused id fixes nothing */
        return rc;
    if (!app->node) { /* the first init fixes the role */
        app->node = n;
        if (app->directory_id)
            app->role = !strcmp(node_id, app->directory_id) ? ROLE_DIRECTORY
                        : !strcmp(node_id, app->relay_id)   ? ROLE_RELAY
                                                            : ROLE_DEVICES;
        if ((app->role == ROLE_DIRECTORY && directory_new(app)) ||
            (app->role == ROLE_RELAY && relay_new(app)) ||
            (app->role == ROLE_DEVICES && devices_new(app)))
            return node_error(r, ERR_CRASH, "out of memory");
    }
    bool opening = app->durable.dir && !app->durable.st;
    struct loader l = {app, opening ? persist_loader_new() : NULL};
    if (opening && !l.store)
        return node_error(r, ERR_CRASH, "out of memory");
    app->durable.load = load_row;
    app->durable.ctx = &l;
    rc = durable_on_init(&app->durable, n, node_id, r);
    if (opening && !rc && finish_load(app, &l)) {
        node_log("e2ee-node: cannot use the state: its rows do not fit together (damaged)");
        durable_refuse(&app->durable);
        rc = NODE_FATAL;
    }
    persist_loader_free(l.store);
    app->durable.ctx = NULL;
    if (!rc && ((app->role == ROLE_DEVICES && devices_start(app)) ||
                (app->role == ROLE_RELAY && relay_start(app))))
        return node_error(r, ERR_CRASH, "out of memory");
    return rc;
}

static int commit(struct app *app)
{
    struct node *n = app->durable.node;
    if (!app->durable.st)
        return 0;
    if (persist_changes(&app->store, app->durable.st)) {
        state_discard(app->durable.st);
        return -1;
    }
    return durable_commit(&app->durable, n);
}

/* On the committer thread: what commit sealed, made durable; the WAL cut
 * back when the node is idle. */
static int commit_flush(struct app *app) { return durable_flush(&app->durable); }
static void commit_idle(struct app *app) { durable_idle(&app->durable); }

static void on_close(struct app *app, struct node *n)
{
    (void)n;
    devices_close(app);
    relay_close(app);
}

/* ============================================================================
 * The table: every type, each served in some roles
 * ========================================================================== */

#define IN(role) (1u << (role))
#define STANDALONE IN(ROLE_STANDALONE)
#define DIRECTORY IN(ROLE_DIRECTORY)
#define RELAY IN(ROLE_RELAY)
#define DEVICES IN(ROLE_DEVICES)

static int wrong_role(struct app *app, struct reply *r, const char *type)
{
    return node_error(r, ERR_NOT_SUPPORTED, "%s: not served by this node, which is %s%s", type,
                      ROLE_TEXT[app->role],
                      app->role == ROLE_STANDALONE ? " (start the nodes with --directory and "
                                                     "--relay for the backend)"
                                                   : "");
}

/* A handler served only in `roles`. */
#define ROLE_HANDLER(fn, type, roles)                                                      \
    static int fn##_in_role(struct app *app, const struct request *req, struct reply *r) \
    {                                                                                      \
        return (IN(app->role) & (roles)) ? fn(app, req, r) : wrong_role(app, r, type);     \
    }

ROLE_HANDLER(h_get_bundle, "get_bundle", STANDALONE)
ROLE_HANDLER(h_initiate_conversation, "initiate_conversation", STANDALONE)
ROLE_HANDLER(h_send_message, "send_message", STANDALONE)
ROLE_HANDLER(h_receive_message, "receive_message", STANDALONE)
ROLE_HANDLER(h_trust_identity, "trust_identity", STANDALONE)
ROLE_HANDLER(h_register, "register", DEVICES)
ROLE_HANDLER(h_approve_device, "approve_device", DEVICES)
ROLE_HANDLER(h_revoke_device, "revoke_device", DEVICES)
ROLE_HANDLER(h_devices, "devices", DEVICES)
ROLE_HANDLER(h_send, "send", DEVICES)
ROLE_HANDLER(h_read, "read", DEVICES)
ROLE_HANDLER(h_relay_notify, "relay_notify", DEVICES)
ROLE_HANDLER(h_dir_publish, "dir_publish", DIRECTORY)
ROLE_HANDLER(h_dir_get_devices, "dir_get_devices", DIRECTORY)
ROLE_HANDLER(h_dir_update_devices, "dir_update_devices", DIRECTORY)
ROLE_HANDLER(h_dir_get_bundles, "dir_get_bundles", DIRECTORY)
ROLE_HANDLER(h_dir_upload_prekeys, "dir_upload_prekeys", DIRECTORY)
ROLE_HANDLER(h_relay_deliver, "relay_deliver", RELAY)
ROLE_HANDLER(h_relay_fetch, "relay_fetch", RELAY)
ROLE_HANDLER(h_relay_ack, "relay_ack", RELAY)
ROLE_HANDLER(h_dir_list_changed, "dir_list_changed", RELAY)

/* fingerprint: §3's standalone, or per device (§5). */
static int h_fingerprint_any(struct app *app, const struct request *req, struct reply *r)
{
    switch (app->role) {
    case ROLE_STANDALONE: return h_fingerprint(app, req, r);
    case ROLE_DEVICES: return h_device_fingerprint(app, req, r);
    default: return wrong_role(app, r, "fingerprint");
    }
}

/* Requests that carry no secret are public: their lines are not wiped. */
static const struct node_handler HANDLERS[] = {
    {.type = "get_bundle", .fn = h_get_bundle_in_role},
    {.type = "initiate_conversation", .fn = h_initiate_conversation_in_role},
    {.type = "send_message", .fn = h_send_message_in_role},
    {.type = "receive_message", .fn = h_receive_message_in_role},
    {.type = "fingerprint", .fn = h_fingerprint_any},
    {.type = "trust_identity", .fn = h_trust_identity_in_role},
    {.type = "register", .fn = h_register_in_role, .public_request = true},
    {.type = "approve_device", .fn = h_approve_device_in_role, .public_request = true},
    {.type = "revoke_device", .fn = h_revoke_device_in_role, .public_request = true},
    {.type = "devices", .fn = h_devices_in_role, .public_request = true},
    {.type = "send", .fn = h_send_in_role},
    {.type = "read", .fn = h_read_in_role, .public_request = true},
    {.type = "relay_notify", .fn = h_relay_notify_in_role, .public_request = true},
    {.type = "dir_publish", .fn = h_dir_publish_in_role, .public_request = true},
    {.type = "dir_get_devices", .fn = h_dir_get_devices_in_role, .public_request = true},
    {.type = "dir_update_devices", .fn = h_dir_update_devices_in_role, .public_request = true},
    {.type = "dir_get_bundles", .fn = h_dir_get_bundles_in_role, .public_request = true},
    {.type = "dir_upload_prekeys", .fn = h_dir_upload_prekeys_in_role, .public_request = true},
    {.type = "relay_deliver", .fn = h_relay_deliver_in_role, .public_request = true},
    {.type = "relay_fetch", .fn = h_relay_fetch_in_role, .public_request = true},
    {.type = "relay_ack", .fn = h_relay_ack_in_role, .public_request = true},
    {.type = "dir_list_changed", .fn = h_dir_list_changed_in_role, .public_request = true},
};

static const struct node_program PROGRAM = {
    .name = "e2ee-node",
    .summary = "End-to-end encryption with X3DH and the Double Ratchet (Signal protocol v3).",
    .extra_usage = " [--max-users N] [--state-dir DIR] [--key-file PATH]\n"
                   "       [--directory ID --relay ID]",
    .extra_help =
        "\nStandalone requests: get_bundle, initiate_conversation, send_message,\n"
        "receive_message, fingerprint, trust_identity. The acting user is body.user, else\n"
        "the envelope's src; local users get keys on first use. See PROTOCOL.md §3 and\n"
        "SIGNAL.md Part 0.\n"
        "  --directory ID     the blind backend (PROTOCOL.md §5): the node with this id is\n"
        "  --relay ID         the directory, that one the relay, every other a host of\n"
        "                     devices: register, approve_device, revoke_device, devices,\n"
        "                     send, read, fingerprint (also SECURITOR_DIRECTORY/_RELAY)\n"
        "  --max-users N      at most N local users (default 10000); past it error 22\n"
        "  --state-dir DIR    keep every key and session in DIR/<node id>.db (also\n"
        "                     SECURITOR_STATE_DIR); it needs the node's key:\n"
        "  --key-file PATH    64 hex characters or 32 raw bytes (or SECURITOR_KEY)\n"
        "Names (users, peers) are at most 256 bytes.\n",
    .handlers = HANDLERS,
    .n_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]),
    .on_init = on_init,
    .commit = commit,
    .commit_flush = commit_flush,
    .commit_idle = commit_idle,
    .rollback = rollback,
    .on_close = on_close,
};

static int parse_count(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v == 0 || v > 100000000ULL)
        return -1;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    int status;
    const char *key_file = NULL;
    enum keysource_origin origin;
    struct app app = {.max_users = STORE_MAX_USERS_DEFAULT};
    if (node_main_options(&PROGRAM, &argc, argv, &status))
        return status;
    if (durable_options(&app.durable, PROGRAM.name, &argc, argv))
        return 2;
    for (int i = 1; i < argc; i++) {
        int took = keysource_option(PROGRAM.name, argc, argv, &i, &key_file);
        if (took < 0)
            return 2;
        if (took)
            continue;
        const char *value = NULL;
        const char **id = !strncmp(argv[i], "--directory", 11) ? &app.directory_id
                           : !strncmp(argv[i], "--relay", 7)   ? &app.relay_id
                                                               : NULL;
        if (id) {
            const char *eq = strchr(argv[i], '=');
            size_t flag = id == &app.directory_id ? 11 : 7;
            if (argv[i][flag] == '=')
                *id = eq + 1;
            else if (!argv[i][flag] && i + 1 < argc)
                *id = argv[++i];
            else
                id = NULL;
            if (id && **id)
                continue;
            fprintf(stderr, "e2ee-node: %s: expected a node id\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--max-users") && i + 1 < argc)
            value = argv[++i];
        else if (!strncmp(argv[i], "--max-users=", 12))
            value = argv[i] + 12;
        if (!value) {
            fprintf(stderr, "e2ee-node: unknown argument \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
        if (parse_count(value, &app.max_users)) {
            fprintf(stderr, "e2ee-node: --max-users: expected a count from 1 to 100000000\n");
            return 2;
        }
    }
    if (!app.directory_id && getenv("SECURITOR_DIRECTORY") && *getenv("SECURITOR_DIRECTORY"))
        app.directory_id = getenv("SECURITOR_DIRECTORY");
    if (!app.relay_id && getenv("SECURITOR_RELAY") && *getenv("SECURITOR_RELAY"))
        app.relay_id = getenv("SECURITOR_RELAY");
    if (!app.directory_id != !app.relay_id) {
        fprintf(stderr, "e2ee-node: the backend needs both --directory and --relay\n");
        return 2;
    }
    if (app.directory_id && !strcmp(app.directory_id, app.relay_id)) {
        fprintf(stderr, "e2ee-node: --directory and --relay must name two nodes\n");
        return 2;
    }
    if (keysource_load(app.durable.key, PROGRAM.name, key_file, &origin))
        return 2;
    if (app.durable.dir && origin == KEYSOURCE_FROM_NONE) {
        node_log("e2ee-node: --state-dir needs the node's key, to seal the state: give "
                 "--key-file PATH or SECURITOR_KEY");
        return 2;
    }
    if (!app.durable.dir)
        node_log("e2ee-node: no --state-dir: identities, prekeys and sessions live in memory "
                 "only and die with this process");
    store_init(&app.store, app.max_users);
    /* Key pairs made ahead on another core (keypool.h); without the
     * thread, each is made when it is needed. */
    if (!node_one_thread() && keypool_start())
        node_log("e2ee-node: no key pool (keypool.h); key pairs are made on demand");
    status = node_run(&PROGRAM, &app);
    keypool_stop();
    devices_free(&app);
    relay_free(&app);
    directory_free(&app);
    store_free(&app.store);
    durable_close(&app.durable);
    buf_free(&app.wire);
    buf_free(&app.bytes);
    buf_free(&app.plain);
    rand_pool_wipe();
    return status;
}
