/* symmetric-node - AES-256-GCM encryption as a service (PROTOCOL.md §2).
 *
 * The node holds a keyring (keyring.h): version 1 is the key given in
 * SECURITOR_KEY or --key-file (keysource.h), or a random one; rotate_key
 * adds a new primary and keeps the old versions, so ciphertexts under them
 * still decrypt until the minimum passes them and trim_keys deletes them.
 * rewrap and datakey seal under the primary; blind_index derives its keys
 * from a root made from the given key (blindindex.h), which never rotates.
 * Keys never leave the process: not in argv, replies or logs (a data key is
 * the caller's by design).
 *
 * Every handler checks all its fields before it changes anything, so a
 * request that fails leaves the keyring as it was (PROTOCOL.md §2).
 *
 * With --state-dir (PROTOCOL.md §4) the keyring lives in a state sealed
 * under the given key (ringstate.h): opened at init, where the state's
 * versions replace the ring made from the key (on a new state the key is
 * version 1, as without a state); what changed is written before any reply
 * leaves (the commit hook), and a failed commit reads the ring back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/aead.h"
#include "securitor/codec.h"
#include "securitor/durable.h"
#include "securitor/keysource.h"
#include "securitor/node.h"
#include "securitor/rand.h"
#include "securitor/wipe.h"

#include "blindindex.h"
#include "keyring.h"
#include "ringstate.h"

/* The exact text PROTOCOL.md §2 fixes for every failure to authenticate. */
#define AUTH_FAILED_TEXT "Authentication failed - data has been tampered with"

struct app {
    struct keyring keys;
    struct blind_index index; /* its root comes from the given key and never rotates */
    struct buf in;  /* a plaintext decoded from base64 */
    struct buf out; /* output bytes (ciphertext or plaintext) */
    struct buf aad; /* decoded base64 AAD */
    struct durable durable;  /* the state, when --state-dir is given */
    struct ring_saved saved; /* the ring as the state holds it */
};

/* Room for n bytes in a scratch buffer (contents are not kept). */
static uint8_t *scratch(struct buf *b, size_t n)
{
    b->len = 0;
    return (uint8_t *)buf_reserve(b, n ? n : 1);
}

/* --- sealing and opening ---------------------------------------------------- */

/* Seals pt under `key` with a fresh IV and adds the fields PROTOCOL.md §2
 * gives `encrypted` (iv, encryptedData, authTag, key_id) to r under `type`.
 * The plaintext is sealed a piece at a time, each piece hex-encoded into the
 * reply while it is still in cache: a megabyte of ciphertext never goes out
 * to memory and back. Returns 0, or an error code with r filled. */
static int seal_reply(struct keyring_version *key, const uint8_t *aad, size_t aad_len,
                      const uint8_t *pt, size_t pt_len, const char *type, struct reply *r)
{
    uint8_t iv[AEAD_IV_LEN], tag[AEAD_TAG_LEN];
    uint8_t piece[16 << 10];
    char *digits;
    if (rand_public(iv, sizeof(iv)))
        return node_error(r, ERR_CRASH, "the random number generator failed");
    reply_type(r, type);
    reply_hex(r, "iv", iv, sizeof(iv));
    if (!(digits = reply_hex_digits(r, "encryptedData", pt_len)))
        return node_error(r, ERR_CRASH, "out of memory");
    enum aead_result res = aead_seal_begin(key->aead, iv, aad, aad_len);
    for (size_t off = 0; res == AEAD_OK && off < pt_len; off += sizeof(piece)) {
        size_t n = pt_len - off < sizeof(piece) ? pt_len - off : sizeof(piece);
        if ((res = aead_seal_next(key->aead, pt + off, n, piece)) == AEAD_OK)
            hex_encode(digits + 2 * off, piece, n);
    }
    if (res == AEAD_OK)
        res = aead_seal_end(key->aead, tag);
    if (res != AEAD_OK)
        return node_error(r, ERR_CRASH, "AES-256-GCM encryption failed");
    reply_hex(r, "authTag", tag, sizeof(tag));
    reply_int(r, "key_id", key->id);
    return 0;
}

/* Bytes of ciphertext decoded and opened at a time: the decoded piece stays
 * in cache between the two. */
#define PIECE (16 << 10)

/* Tries one key on the ciphertext given as 2 * ct_len hex digits: decodes
 * and opens it a piece at a time into pt. Bad hex cannot authenticate, so it
 * answers AEAD_AUTH_FAILED like a bad tag. On anything but AEAD_OK, pt is
 * wiped. */
static enum aead_result try_open(struct keyring_version *key,
                                 const uint8_t iv[static AEAD_IV_LEN], const uint8_t *aad,
                                 size_t aad_len, const char *ct_hex, size_t ct_len,
                                 const uint8_t tag[static AEAD_TAG_LEN], uint8_t *pt)
{
    uint8_t piece[PIECE];
    enum aead_result res = aead_open_begin(key->aead, iv, aad, aad_len);
    for (size_t off = 0; res == AEAD_OK && off < ct_len; off += PIECE) {
        size_t n = ct_len - off < PIECE ? ct_len - off : PIECE;
        if (hex_decode(piece, ct_hex + 2 * off, 2 * n))
            res = AEAD_AUTH_FAILED;
        else
            res = aead_open_next(key->aead, piece, n, pt + off);
    }
    if (res == AEAD_OK)
        res = aead_open_end(key->aead, tag);
    if (res != AEAD_OK)
        wipe_bytes(pt, ct_len);
    return res;
}

/* Opens the ciphertext of a decrypt or rewrap request {iv, encryptedData,
 * authTag, aad?, key_id?} into app->out. Returns an error code with r
 * filled (a malformed field: 12; an unknown or trimmed key_id: 20; a version
 * below min_decryption_version: 22; an internal failure: 13), or 0 with
 * *res AEAD_OK (then *pt_len bytes of plaintext are in app->out.data, which
 * the caller wipes) or AEAD_AUTH_FAILED (nothing left in app->out). The
 * request's AAD is left in *aad and *aad_len (NULL and 0 when absent). */
static int open_request(struct app *app, const struct request *req, struct reply *r,
                        enum aead_result *res, size_t *pt_len, const uint8_t **aad,
                        size_t *aad_len)
{
    const cJSON *body = req->body;
    const char *iv_hex, *ct_hex, *tag_hex;
    size_t iv_hex_len, ct_hex_len, tag_hex_len;
    long long key_id;
    bool has_key_id;
    int rc;
    *res = AEAD_AUTH_FAILED;
    *pt_len = 0;
    if ((rc = req_string(r, body, "iv", false, &iv_hex, &iv_hex_len)) ||
        (rc = req_string(r, body, "encryptedData", false, &ct_hex, &ct_hex_len)) ||
        (rc = req_string(r, body, "authTag", false, &tag_hex, &tag_hex_len)) ||
        (rc = req_text_or_base64(r, body, "aad", "aad_encoding", true, &app->aad, aad,
                                 aad_len)) ||
        (rc = req_int(r, body, "key_id", true, 1, KEYRING_MAX_ID, &key_id, &has_key_id)))
        return rc;

    /* The versions to try: the one named, or (PROTOCOL.md §2) every one at
     * or above min_decryption_version, newest first. A forged message then
     * costs one decryption per such version (KEYRING_MAX_VERSIONS at most):
     * key_id, which every ciphertext reply carries, makes it one, and
     * raising the minimum bounds it for callers that leave key_id out. */
    struct keyring_version *keys[KEYRING_MAX_VERSIONS];
    size_t n_keys;
    if (has_key_id) {
        switch (keyring_get(&app->keys, key_id, &keys[0])) {
        case KEYRING_OK:
            break;
        case KEYRING_BELOW_MIN:
            return node_error(r, ERR_PRECONDITION,
                              "key_id: version %lld is below min_decryption_version %lld",
                              key_id, app->keys.min_decryption_version);
        default:
            return node_error(r, ERR_KEY_DOES_NOT_EXIST,
                              "key_id: no key %lld on this node (never made, or trimmed)",
                              key_id);
        }
        n_keys = 1;
    } else {
        n_keys = keyring_candidates(&app->keys, keys, KEYRING_MAX_VERSIONS);
    }

    /* Bad hex and wrong sizes cannot authenticate: same reply as a bad tag,
     * so the reply tells an attacker nothing about which check failed. */
    uint8_t iv[AEAD_IV_LEN], tag[AEAD_TAG_LEN];
    size_t ct_len = ct_hex_len / 2;
    uint8_t *pt = scratch(&app->out, ct_len);
    if (!pt)
        return node_error(r, ERR_CRASH, "out of memory");
    if (iv_hex_len == 2 * AEAD_IV_LEN && tag_hex_len == 2 * AEAD_TAG_LEN &&
        ct_hex_len % 2 == 0 && !hex_decode(iv, iv_hex, iv_hex_len) &&
        !hex_decode(tag, tag_hex, tag_hex_len)) {
        for (size_t i = 0; i < n_keys && *res == AEAD_AUTH_FAILED; i++)
            *res = try_open(keys[i], iv, *aad, *aad_len, ct_hex, ct_len, tag, pt);
    }
    if (*res == AEAD_INTERNAL)
        return node_error(r, ERR_CRASH, "AES-256-GCM decryption failed internally");
    if (*res == AEAD_OK)
        *pt_len = ct_len;
    return 0;
}

/* The reply PROTOCOL.md §2 fixes for anything that does not authenticate. */
static int reply_auth_failed(struct reply *r)
{
    reply_type(r, "decryption_failed");
    reply_cstring(r, "error", AUTH_FAILED_TEXT);
    return 0;
}

/* --- handlers ------------------------------------------------------------- */

static int h_encrypt(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *body = req->body;
    const uint8_t *pt, *aad;
    size_t pt_len, aad_len;
    int rc;
    /* The AAD first: once a base64 plaintext is decoded, every exit wipes it. */
    if ((rc = req_text_or_base64(r, body, "aad", "aad_encoding", true, &app->aad, &aad,
                                 &aad_len)) ||
        (rc = req_text_or_base64(r, body, "plaintext", "encoding", false, &app->in, &pt,
                                 &pt_len)))
        return rc;
    rc = seal_reply(keyring_primary(&app->keys), aad, aad_len, pt, pt_len, "encrypted", r);
    if (pt == (const uint8_t *)app->in.data) /* decoded from base64 */
        wipe_bytes(app->in.data, pt_len);
    return rc;
}

static int h_decrypt(struct app *app, const struct request *req, struct reply *r)
{
    enum aead_result res;
    const uint8_t *aad;
    size_t pt_len, aad_len;
    int rc = open_request(app, req, r, &res, &pt_len, &aad, &aad_len);
    if (rc)
        return rc;
    if (res != AEAD_OK)
        return reply_auth_failed(r);
    reply_type(r, "decrypted");
    reply_sensitive(r);
    /* Text that JSON can carry as it is goes back as text; anything else
     * (invalid UTF-8, NUL bytes) as base64, so nothing is lost. */
    reply_text_or_base64(r, "plaintext", (const uint8_t *)app->out.data, pt_len);
    wipe_bytes(app->out.data, pt_len);
    return 0;
}

/* Decrypts and re-encrypts under the primary key with a fresh IV and the
 * same AAD (PROTOCOL.md §2 `rewrap`). The plaintext exists only in app->out,
 * wiped before the handler returns; the reply carries ciphertext only. */
static int h_rewrap(struct app *app, const struct request *req, struct reply *r)
{
    enum aead_result res;
    const uint8_t *aad;
    size_t pt_len, aad_len;
    int rc = open_request(app, req, r, &res, &pt_len, &aad, &aad_len);
    if (rc)
        return rc;
    if (res != AEAD_OK)
        return reply_auth_failed(r);
    rc = seal_reply(keyring_primary(&app->keys), aad, aad_len, (const uint8_t *)app->out.data,
                    pt_len, "rewrapped", r);
    wipe_bytes(app->out.data, pt_len);
    return rc;
}

/* The sizes of data key datakey makes, in bits. */
static bool datakey_bits_ok(long long bits) { return bits == 128 || bits == 192 || bits == 256; }

/* Envelope encryption (PROTOCOL.md §2 `datakey`): a fresh random key, sealed
 * under the primary (no AAD) and, unless plaintext is false, also given in
 * the clear. */
static int h_datakey(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *bits_item = req_field(req->body, "bits");
    long long bits = 256;
    bool clear = true;
    uint8_t key[32];
    int rc;
    if (bits_item && !cJSON_IsNull(bits_item) &&
        (!json_exact_int(bits_item, &bits) || !datakey_bits_ok(bits)))
        return node_error(r, ERR_MALFORMED, "bits: expected 128, 192 or 256");
    if ((rc = req_bool(r, req->body, "plaintext", true, &clear, NULL)))
        return rc;
    size_t len = (size_t)bits / 8;
    if (rand_secret(key, len))
        return node_error(r, ERR_CRASH, "the random number generator failed");
    if (clear) /* before any field: a failed reply is then wiped too */
        reply_sensitive(r);
    rc = seal_reply(keyring_primary(&app->keys), NULL, 0, key, len, "datakey", r);
    if (!rc && clear)
        reply_base64(r, "key", key, len);
    WIPE_OBJ(key);
    return rc;
}

/* A searchable token for a value in a named index (PROTOCOL.md §2
 * `blind_index`; blindindex.h has the derivation). The value may be
 * sensitive: the request line is wiped like an encrypt's, and so is a value
 * decoded from base64. */
static int h_blind_index(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *body = req->body;
    const cJSON *bits_item = req_field(body, "bits");
    const char *name;
    const uint8_t *value;
    size_t name_len, value_len;
    long long bits = 32;
    uint8_t mac[BLIND_INDEX_TOKEN_MAX];
    int rc;
    if ((rc = req_string(r, body, "index", false, &name, &name_len)))
        return rc;
    if (name_len < 1 || name_len > BLIND_INDEX_MAX_NAME)
        return node_error(r, ERR_MALFORMED, "index: expected a name of 1 to %d bytes",
                          BLIND_INDEX_MAX_NAME);
    if (bits_item && !cJSON_IsNull(bits_item) &&
        (!json_exact_int(bits_item, &bits) || bits < 8 || bits > 8 * BLIND_INDEX_TOKEN_MAX ||
         bits % 8))
        return node_error(r, ERR_MALFORMED, "bits: expected a multiple of 8 from 8 to %d",
                          8 * BLIND_INDEX_TOKEN_MAX);
    if ((rc = req_text_or_base64(r, body, "value", "encoding", false, &app->in, &value,
                                 &value_len)))
        return rc;
    if (blind_index_token(&app->index, name, name_len, value, value_len, mac))
        rc = node_error(r, ERR_CRASH, "HMAC-SHA256 failed (OpenSSL or out of memory)");
    if (value == (const uint8_t *)app->in.data) /* decoded from base64 */
        wipe_bytes(app->in.data, value_len);
    if (rc)
        return rc;
    reply_type(r, "blind_index");
    reply_string(r, "index", name, name_len);
    reply_hex(r, "token", mac, (size_t)bits / 8);
    WIPE_OBJ(mac);
    return 0;
}

/* The error for a keyring call that failed, naming what to do about it. */
static int keyring_error(struct reply *r, enum keyring_status st)
{
    switch (st) {
    case KEYRING_FULL:
        return node_error(r, ERR_PRECONDITION,
                          "keyring full: %d live key versions; raise min_decryption_version "
                          "and trim_keys to make room", KEYRING_MAX_VERSIONS);
    default:
        return node_error(r, ERR_CRASH, "could not make the new key (RNG, OpenSSL or out "
                                        "of memory)");
    }
}

static int h_rotate_key(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    long long id;
    enum keyring_status st = keyring_rotate(&app->keys, &id);
    if (st != KEYRING_OK)
        return keyring_error(r, st);
    reply_type(r, "key_rotated");
    reply_int(r, "key_id", id);
    return 0;
}

/* The keyring's shape (PROTOCOL.md §2 `keys`): ids only, never key bytes. */
static int reply_keys(const struct keyring *kr, struct reply *r)
{
    reply_type(r, "keys");
    reply_int(r, "primary", keyring_primary(kr)->id);
    reply_int(r, "min_decryption_version", kr->min_decryption_version);
    reply_begin_array(r, "versions");
    for (size_t i = 0; i < kr->n; i++)
        reply_int(r, NULL, kr->v[i].id);
    reply_end_array(r);
    return 0;
}

static int h_keys(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    return reply_keys(&app->keys, r);
}

static int h_set_min_decryption_version(struct app *app, const struct request *req,
                                        struct reply *r)
{
    long long id;
    int rc = req_int(r, req->body, "key_id", false, 1, KEYRING_MAX_ID, &id, NULL);
    if (rc)
        return rc;
    switch (keyring_set_min(&app->keys, id)) {
    case KEYRING_OK:
        return reply_keys(&app->keys, r);
    case KEYRING_PAST_PRIMARY:
        return node_error(r, ERR_PRECONDITION,
                          "key_id: version %lld is past the primary (%lld); "
                          "min_decryption_version cannot pass it", id,
                          keyring_primary(&app->keys)->id);
    default:
        return node_error(r, ERR_PRECONDITION,
                          "key_id: version %lld was trimmed; min_decryption_version can go "
                          "no lower than %lld", id, app->keys.trimmed_below);
    }
}

static int h_trim_keys(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    (void)keyring_trim(&app->keys);
    return reply_keys(&app->keys, r);
}

/* ============================================================================
 * The state (PROTOCOL.md §4)
 * ========================================================================== */

/* A ring whose only version, 1, is `key`: a node without a state, or a new
 * state. 0 or -1 (out of memory or OpenSSL; kr is then empty). */
static int ring_from_key(struct keyring *kr, const uint8_t key[static AEAD_KEY_LEN])
{
    long long id;
    if (keyring_init(kr, 1) == KEYRING_OK && keyring_add(kr, key, &id) == KEYRING_OK)
        return 0;
    keyring_free(kr);
    return -1;
}

static int rows_fit(void *ctx) { return ringstate_check(ctx); }

/* Puts the ring the loader read in place of app->keys: the state's ring,
 * or for a state that holds none yet, the given key as version 1, not yet
 * written. 0 or -1 (out of memory or OpenSSL; app->keys is then as it was). */
static int take_ring(struct app *app, const struct ring_loader *l)
{
    struct keyring fresh;
    struct ring_saved saved = {0};
    if (ringstate_empty(l) ? ring_from_key(&fresh, app->durable.key)
                           : ringstate_build(l, &fresh, &saved))
        return -1;
    keyring_free(&app->keys);
    app->keys = fresh; /* the version table moves by pointer: no key is copied */
    app->saved = saved;
    return 0;
}

static int on_init(struct app *app, struct node *n, const char *node_id, const cJSON *node_ids,
                   struct reply *r)
{
    (void)node_ids;
    bool opening = app->durable.dir && !app->durable.st;
    struct ring_loader *l = opening ? ringstate_loader_new() : NULL;
    if (opening && !l)
        return node_error(r, ERR_CRASH, "out of memory");
    app->durable.load = ringstate_load_row;
    app->durable.loaded = rows_fit;
    app->durable.ctx = l;
    int rc = durable_on_init(&app->durable, n, node_id, r);
    if (opening && !rc && take_ring(app, l)) {
        node_log("symmetric-node: cannot set up the keyring of the state (out of memory or "
                 "OpenSSL)");
        rc = NODE_FATAL;
    }
    ringstate_loader_free(l);
    app->durable.ctx = NULL;
    return rc;
}

/* Before any reply leaves: the ring's changes since the last commit, then
 * the transaction. Encrypt, decrypt and every other request that changes
 * no version leave nothing to write (PROTOCOL.md §4 output commit). */
static int commit(struct app *app)
{
    struct durable *d = &app->durable;
    if (!d->st)
        return 0;
    bool changed = ringstate_changed(&app->keys, &app->saved);
    if (changed && ringstate_write(&app->keys, &app->saved, d->st)) {
        state_discard(d->st);
        return -1;
    }
    if (durable_commit(d, d->node))
        return -1;
    if (changed)
        app->saved = ringstate_saved(&app->keys);
    return 0;
}

/* On the committer thread: what commit sealed, made durable; the WAL cut
 * back when the node is idle. */
static int commit_flush(struct app *app) { return durable_flush(&app->durable); }
static void commit_idle(struct app *app) { durable_idle(&app->durable); }

/* After a failed commit: the ring as the state last held it. */
static int rollback(struct app *app)
{
    struct ring_loader *l = ringstate_loader_new();
    int rc = -1;
    if (!l)
        goto out;
    app->durable.load = ringstate_load_row;
    app->durable.loaded = rows_fit;
    app->durable.ctx = l;
    if (durable_reload(&app->durable) || take_ring(app, l))
        goto out;
    rc = 0;
out:
    ringstate_loader_free(l);
    app->durable.ctx = NULL;
    return rc;
}

static const struct node_handler HANDLERS[] = {
    {.type = "encrypt", .fn = h_encrypt},
    {.type = "decrypt", .fn = h_decrypt, .public_request = true},
    {.type = "rotate_key", .fn = h_rotate_key},
    {.type = "rewrap", .fn = h_rewrap, .public_request = true},
    {.type = "datakey", .fn = h_datakey, .public_request = true},
    {.type = "keys", .fn = h_keys, .public_request = true},
    {.type = "blind_index", .fn = h_blind_index},
    {.type = "set_min_decryption_version", .fn = h_set_min_decryption_version,
     .public_request = true},
    {.type = "trim_keys", .fn = h_trim_keys, .public_request = true},
};

static const struct node_program PROGRAM = {
    .name = "symmetric-node",
    .summary = "AES-256-GCM encryption as a service: encrypt, decrypt, rotate_key, rewrap,\n"
               "datakey, keys, set_min_decryption_version, trim_keys, blind_index.",
    .extra_usage = " [--key-file PATH] [--state-dir DIR]",
    .extra_help =
        "\nThe key (32 bytes) comes from one of (both is an error):\n"
        "  --key-file PATH    a file holding 64 hex characters or 32 raw bytes (a\n"
        "                     32-byte file of hex digits is refused: a 128-bit key?)\n"
        "  SECURITOR_KEY      an environment variable holding 64 hex characters\n"
        "  neither            a random key (ciphertexts then die with the process)\n"
        "Keys are never accepted in argv and never written to stdout or stderr.\n"
        "  --state-dir DIR    keep the keyring in DIR/<node id>.db (also\n"
        "                     SECURITOR_STATE_DIR), sealed under the key, which is then\n"
        "                     required; rotations and trims survive restarts. A new state\n"
        "                     starts with the key as version 1; an existing one keeps its\n"
        "                     own versions (the key must be the one that made it).\n",
    .handlers = HANDLERS,
    .n_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]),
    .on_init = on_init,
    .commit = commit,
    .commit_flush = commit_flush,
    .commit_idle = commit_idle,
    .rollback = rollback,
};

int main(int argc, char **argv)
{
    int status;
    struct app app = {0};
    if (node_main_options(&PROGRAM, &argc, argv, &status))
        return status;
    if (durable_options(&app.durable, PROGRAM.name, &argc, argv))
        return 2;

    const char *key_file = NULL;
    for (int i = 1; i < argc; i++) {
        int took = keysource_option(PROGRAM.name, argc, argv, &i, &key_file);
        if (took < 0)
            return 2;
        if (!took) {
            fprintf(stderr, "symmetric-node: unknown argument \"%s\" (try --help)\n", argv[i]);
            return 2;
        }
    }

    uint8_t key[KEYSOURCE_KEY_LEN];
    enum keysource_origin origin;
    if (keysource_load(key, PROGRAM.name, key_file, &origin))
        return 2;
    if (origin == KEYSOURCE_FROM_NONE) {
        /* A random key could not open the state again (PROTOCOL.md §4). */
        if (app.durable.dir) {
            node_log("symmetric-node: --state-dir needs the node's key, to seal the state: "
                     "give --key-file PATH or SECURITOR_KEY");
            return 2;
        }
        if (rand_secret(key, sizeof(key))) {
            node_log("symmetric-node: the random number generator failed");
            return 1;
        }
        node_log("symmetric-node: no SECURITOR_KEY or --key-file: using a random key; "
                 "ciphertexts die with this process");
    }

    status = 1;
    /* With a state, the key stays (in durable) to seal it and to start a
     * ring afresh should the first commit fail; without, the ring holds
     * the only copy. */
    if (app.durable.dir)
        memcpy(app.durable.key, key, sizeof(key));
    bool ok = ring_from_key(&app.keys, key) == 0 && blind_index_init(&app.index, key) == 0;
    WIPE_OBJ(key);
    if (!ok)
        node_log("symmetric-node: could not set up AES-256-GCM");
    else
        status = node_run(&PROGRAM, &app);
    durable_close(&app.durable);
    keyring_free(&app.keys);
    blind_index_free(&app.index);
    buf_free(&app.in);
    buf_free(&app.out);
    buf_free(&app.aad);
    rand_pool_wipe();
    return status;
}
