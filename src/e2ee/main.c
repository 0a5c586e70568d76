/* e2ee-node - X3DH and the Double Ratchet, Signal protocol v3 on the wire
 * (PROTOCOL.md §3, SIGNAL.md Part 0).
 *
 * The handlers read and check the request, call the conversation module
 * (conversation.h), and turn its result into a reply. The acting user is
 * body.user when given, else the envelope's src; a local user is made (with
 * fresh keys) only by a request that needs its keys.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/codec.h"
#include "securitor/curve.h"
#include "securitor/durable.h"
#include "securitor/keysource.h"
#include "securitor/node.h"
#include "securitor/rand.h"
#include "securitor/safety.h"
#include "securitor/wipe.h"
#include "securitor/wire.h"
#include "app.h"
#include "conversation.h"
#include "fields.h"
#include "persist.h"
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
                                 &pt_len)) ||
        (rc = acting_user(app, name, r, &u)))
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

    /* Only a prekey message needs the receiver's keys; anything else needs a
     * session, which a user not made yet cannot have. */
    struct prekey_message probe;
    bool maybe_prekey = kind == CONV_KIND_PREKEY ||
                        (kind == CONV_KIND_GUESS && !prekey_message_parse(&probe, bytes, n));
    if (!(u = store_find_user(&app->store, name))) {
        struct signal_message sm;
        const char *err = maybe_prekey ? NULL : signal_message_parse(&sm, bytes, n);
        if (err) {
            char detail[CONV_DETAIL_LEN];
            snprintf(detail, sizeof(detail), "invalid signal message: %s", err);
            return conv_reply(app, r, CONV_REJECTED, sender, detail);
        }
        if (!maybe_prekey)
            return conv_reply(app, r, CONV_NO_SESSION, sender, NULL);
        if ((rc = acting_user(app, name, r, &u)))
            return rc;
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

/* Builds the store from the state's rows; 0 or -1 (a damaged state). */
static int load_store(struct app *app, bool reload)
{
    struct persist_loader *l = persist_loader_new();
    if (!l)
        return -1;
    app->durable.load = persist_load_row;
    app->durable.ctx = l;
    if (reload && durable_reload(&app->durable)) {
        persist_loader_free(l);
        return -1;
    }
    store_free(&app->store);
    store_init(&app->store, app->max_users);
    if (persist_finish(l, &app->store))
        return -1;
    store_track(&app->store);
    return 0;
}

static int on_init(struct app *app, struct node *n, const char *node_id, const cJSON *node_ids,
                   struct reply *r)
{
    (void)node_ids;
    bool opening = app->durable.dir && !app->durable.st;
    struct persist_loader *l = opening ? persist_loader_new() : NULL;
    if (opening && !l)
        return node_error(r, ERR_CRASH, "out of memory");
    app->durable.load = persist_load_row;
    app->durable.ctx = l;
    int rc = durable_on_init(&app->durable, n, node_id, r);
    if (!opening || rc) {
        persist_loader_free(l);
        return rc;
    }
    if (persist_finish(l, &app->store)) {
        node_log("e2ee-node: cannot use the state: its rows do not fit together (damaged)");
        return NODE_FATAL;
    }
    store_track(&app->store);
    return 0;
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

static int rollback(struct app *app) { return load_store(app, true); }

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
    .extra_usage = " [--max-users N] [--state-dir DIR] [--key-file PATH]",
    .extra_help =
        "\nRequests: get_bundle, initiate_conversation, send_message, receive_message,\n"
        "fingerprint, trust_identity. The acting user is body.user, else the envelope's src;\n"
        "local users get keys on first use. See PROTOCOL.md §3 and SIGNAL.md Part 0.\n"
        "  --max-users N      at most N local users (default 10000); past it error 22\n"
        "  --state-dir DIR    keep every key and session in DIR/<node id>.db (also\n"
        "                     SECURITOR_STATE_DIR); it needs the node's key:\n"
        "  --key-file PATH    64 hex characters or 32 raw bytes (or SECURITOR_KEY)\n"
        "Names (users, peers) are at most 256 bytes.\n",
    .handlers = HANDLERS,
    .n_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]),
    .on_init = on_init,
    .commit = commit,
    .rollback = rollback,
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
    status = node_run(&PROGRAM, &app);
    store_free(&app.store);
    durable_close(&app.durable);
    buf_free(&app.wire);
    buf_free(&app.bytes);
    buf_free(&app.plain);
    rand_pool_wipe();
    return status;
}
