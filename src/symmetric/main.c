/* symmetric-node - AES-256-GCM encryption as a service (PROTOCOL.md §2).
 *
 * The node holds a keyring: key 1 comes from SECURITOR_KEY, --key-file or
 * the RNG; rotate_key adds a new primary key and keeps the old ones, so
 * ciphertexts under older key ids still decrypt. Keys never leave the
 * process: not in argv, replies or logs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "securitor/aead.h"
#include "securitor/codec.h"
#include "securitor/keysource.h"
#include "securitor/node.h"
#include "securitor/rand.h"
#include "securitor/wipe.h"

/* The exact text PROTOCOL.md §2 fixes for every failure to authenticate. */
#define AUTH_FAILED_TEXT "Authentication failed - data has been tampered with"

struct sym_key {
    long long id;
    struct aead_key *aead;
};

struct app {
    struct sym_key *keys; /* keys[n_keys - 1] is the primary key */
    size_t n_keys, cap_keys;
    struct buf in;  /* a plaintext decoded from base64 */
    struct buf out; /* output bytes (ciphertext or plaintext) */
    struct buf aad; /* decoded base64 AAD */
};

/* Adds a key to the ring as the new primary. Returns 0 or -1. */
static int keyring_add(struct app *app, const uint8_t key[static AEAD_KEY_LEN])
{
    if (app->n_keys == app->cap_keys) {
        size_t cap = app->cap_keys ? app->cap_keys * 2 : 4;
        struct sym_key *k = realloc(app->keys, cap * sizeof(*k));
        if (!k)
            return -1;
        app->keys = k;
        app->cap_keys = cap;
    }
    struct aead_key *aead = aead_key_new(key);
    if (!aead)
        return -1;
    long long id = app->n_keys ? app->keys[app->n_keys - 1].id + 1 : 1;
    app->keys[app->n_keys++] = (struct sym_key){.id = id, .aead = aead};
    return 0;
}

static void keyring_free(struct app *app)
{
    for (size_t i = 0; i < app->n_keys; i++)
        aead_key_free(app->keys[i].aead);
    free(app->keys);
    app->keys = NULL;
    app->n_keys = app->cap_keys = 0;
}

/* Room for n bytes in a scratch buffer (contents are not kept). */
static uint8_t *scratch(struct buf *b, size_t n)
{
    b->len = 0;
    return (uint8_t *)buf_reserve(b, n ? n : 1);
}

/* --- handlers ------------------------------------------------------------- */

static int h_encrypt(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *body = req->body;
    const uint8_t *pt, *aad;
    size_t pt_len, aad_len;
    uint8_t iv[AEAD_IV_LEN], tag[AEAD_TAG_LEN];
    int rc;
    /* The AAD first: once a base64 plaintext is decoded, every exit wipes it. */
    if ((rc = req_text_or_base64(r, body, "aad", "aad_encoding", true, &app->aad, &aad,
                                 &aad_len)) ||
        (rc = req_text_or_base64(r, body, "plaintext", "encoding", false, &app->in, &pt,
                                 &pt_len)))
        return rc;

    /* Sealed a piece at a time, each hex-encoded into the reply while it is
     * still in cache: a megabyte of ciphertext never goes out to memory and
     * back. */
    struct sym_key *key = &app->keys[app->n_keys - 1];
    uint8_t piece[16 << 10];
    char *digits = NULL;
    if (rand_public(iv, sizeof(iv))) {
        rc = node_error(r, ERR_CRASH, "the random number generator failed");
        goto out;
    }
    reply_type(r, "encrypted");
    reply_hex(r, "iv", iv, sizeof(iv));
    if (!(digits = reply_hex_digits(r, "encryptedData", pt_len))) {
        rc = node_error(r, ERR_CRASH, "out of memory");
        goto out;
    }
    enum aead_result res = aead_seal_begin(key->aead, iv, aad, aad_len);
    for (size_t off = 0; res == AEAD_OK && off < pt_len; off += sizeof(piece)) {
        size_t n = pt_len - off < sizeof(piece) ? pt_len - off : sizeof(piece);
        if ((res = aead_seal_next(key->aead, pt + off, n, piece)) == AEAD_OK)
            hex_encode(digits + 2 * off, piece, n);
    }
    if (res == AEAD_OK)
        res = aead_seal_end(key->aead, tag);
    if (res != AEAD_OK) {
        rc = node_error(r, ERR_CRASH, "AES-256-GCM encryption failed");
        goto out;
    }
    reply_hex(r, "authTag", tag, sizeof(tag));
    reply_int(r, "key_id", key->id);
out:
    if (pt == (const uint8_t *)app->in.data) /* decoded from base64 */
        wipe_bytes(app->in.data, pt_len);
    return rc;
}

/* Bytes of ciphertext decoded and opened at a time: the decoded piece stays
 * in cache between the two. */
#define PIECE (16 << 10)

/* Tries one key on the ciphertext given as 2 * ct_len hex digits: decodes
 * and opens it a piece at a time into pt. Bad hex cannot authenticate, so it
 * answers AEAD_AUTH_FAILED like a bad tag. On anything but AEAD_OK, pt is
 * wiped. */
static enum aead_result try_open(struct sym_key *key, const uint8_t iv[static AEAD_IV_LEN],
                                 const uint8_t *aad, size_t aad_len, const char *ct_hex,
                                 size_t ct_len, const uint8_t tag[static AEAD_TAG_LEN],
                                 uint8_t *pt)
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

static int h_decrypt(struct app *app, const struct request *req, struct reply *r)
{
    const cJSON *body = req->body;
    const char *iv_hex, *ct_hex, *tag_hex;
    const uint8_t *aad;
    size_t iv_hex_len, ct_hex_len, tag_hex_len, aad_len;
    long long key_id;
    bool has_key_id;
    int rc;
    if ((rc = req_string(r, body, "iv", false, &iv_hex, &iv_hex_len)) ||
        (rc = req_string(r, body, "encryptedData", false, &ct_hex, &ct_hex_len)) ||
        (rc = req_string(r, body, "authTag", false, &tag_hex, &tag_hex_len)) ||
        (rc = req_text_or_base64(r, body, "aad", "aad_encoding", true, &app->aad, &aad,
                                 &aad_len)) ||
        (rc = req_int(r, body, "key_id", true, 1, (1LL << 53), &key_id, &has_key_id)))
        return rc;

    struct sym_key *only = NULL;
    if (has_key_id) {
        for (size_t i = 0; i < app->n_keys && !only; i++)
            if (app->keys[i].id == key_id)
                only = &app->keys[i];
        if (!only)
            return node_error(r, ERR_KEY_DOES_NOT_EXIST,
                              "key_id: no key %lld on this node (keys die with the process)",
                              key_id);
    }

    /* Bad hex and wrong sizes cannot authenticate: same reply as a bad tag,
     * so the reply tells an attacker nothing about which check failed. */
    uint8_t iv[AEAD_IV_LEN], tag[AEAD_TAG_LEN];
    size_t ct_len = ct_hex_len / 2;
    uint8_t *pt = scratch(&app->out, ct_len);
    if (!pt)
        return node_error(r, ERR_CRASH, "out of memory");
    enum aead_result res = AEAD_AUTH_FAILED;
    if (iv_hex_len == 2 * AEAD_IV_LEN && tag_hex_len == 2 * AEAD_TAG_LEN &&
        ct_hex_len % 2 == 0 && !hex_decode(iv, iv_hex, iv_hex_len) &&
        !hex_decode(tag, tag_hex, tag_hex_len)) {
        if (only) {
            res = try_open(only, iv, aad, aad_len, ct_hex, ct_len, tag, pt);
        } else { /* no key_id: the primary key first, then older ones */
            for (size_t i = app->n_keys; i-- > 0 && res == AEAD_AUTH_FAILED;)
                res = try_open(&app->keys[i], iv, aad, aad_len, ct_hex, ct_len, tag, pt);
        }
    }
    if (res == AEAD_INTERNAL)
        return node_error(r, ERR_CRASH, "AES-256-GCM decryption failed internally");
    if (res != AEAD_OK) {
        reply_type(r, "decryption_failed");
        reply_cstring(r, "error", AUTH_FAILED_TEXT);
        return 0;
    }
    reply_type(r, "decrypted");
    reply_sensitive(r);
    /* Text that JSON can carry as it is goes back as text; anything else
     * (invalid UTF-8, NUL bytes) as base64, so nothing is lost. */
    reply_text_or_base64(r, "plaintext", pt, ct_len);
    wipe_bytes(pt, ct_len);
    return 0;
}

static int h_rotate_key(struct app *app, const struct request *req, struct reply *r)
{
    (void)req;
    uint8_t key[AEAD_KEY_LEN];
    int rc = 0;
    if (rand_secret(key, sizeof(key)))
        rc = node_error(r, ERR_CRASH, "the random number generator failed");
    else if (keyring_add(app, key))
        rc = node_error(r, ERR_CRASH, "could not install the new key (out of memory?)");
    WIPE_OBJ(key);
    if (rc)
        return rc;
    reply_type(r, "key_rotated");
    reply_int(r, "key_id", app->keys[app->n_keys - 1].id);
    return 0;
}

static const struct node_handler HANDLERS[] = {
    {.type = "encrypt", .fn = h_encrypt},
    {.type = "decrypt", .fn = h_decrypt, .public_request = true},
    {.type = "rotate_key", .fn = h_rotate_key},
};

static const struct node_program PROGRAM = {
    .name = "symmetric-node",
    .summary = "AES-256-GCM encryption as a service: encrypt, decrypt, rotate_key.",
    .extra_usage = " [--key-file PATH]",
    .extra_help =
        "\nThe key (32 bytes) comes from, in order:\n"
        "  --key-file PATH    a file holding 64 hex characters or 32 raw bytes (a\n"
        "                     32-byte file of hex digits is refused: a 128-bit key?)\n"
        "  SECURITOR_KEY      an environment variable holding 64 hex characters\n"
        "  neither            a random key (ciphertexts then die with the process)\n"
        "Keys are never accepted in argv and never written to stdout or stderr.\n",
    .handlers = HANDLERS,
    .n_handlers = sizeof(HANDLERS) / sizeof(HANDLERS[0]),
};

int main(int argc, char **argv)
{
    int status;
    if (node_main_options(&PROGRAM, &argc, argv, &status))
        return status;

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
        if (rand_secret(key, sizeof(key))) {
            node_log("symmetric-node: the random number generator failed");
            return 1;
        }
        node_log("symmetric-node: no SECURITOR_KEY or --key-file: using a random key; "
                 "ciphertexts die with this process");
    }

    struct app app = {0};
    int rc = keyring_add(&app, key);
    WIPE_OBJ(key);
    if (rc) {
        node_log("symmetric-node: could not set up AES-256-GCM");
        return 1;
    }
    status = node_run(&PROGRAM, &app);
    keyring_free(&app);
    buf_free(&app.in);
    buf_free(&app.out);
    buf_free(&app.aad);
    rand_pool_wipe();
    return status;
}
