/* provider.c - what a libsignal-protocol-c client must supply (SIGNAL.md
 * 2.6): an OpenSSL 3 crypto provider and four in-memory stores.
 *
 * Test code only: libsignal-protocol-c is GPL-3 and is never linked into a
 * node binary.
 */
#include "interop.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

/* ---- crypto provider ------------------------------------------------------- */

static int p_random(uint8_t *data, size_t len, void *u)
{
    (void)u;
    return RAND_bytes(data, (int)len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

static int p_hmac_init(void **ctx, const uint8_t *key, size_t key_len, void *u)
{
    (void)u;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_END};
    EVP_MAC_free(mac);
    if (!c || !EVP_MAC_init(c, key, key_len, params)) {
        EVP_MAC_CTX_free(c);
        return SG_ERR_UNKNOWN;
    }
    *ctx = c;
    return 0;
}

static int p_hmac_update(void *ctx, const uint8_t *data, size_t len, void *u)
{
    (void)u;
    return EVP_MAC_update(ctx, data, len) ? 0 : SG_ERR_UNKNOWN;
}

static int p_hmac_final(void *ctx, signal_buffer **out, void *u)
{
    (void)u;
    uint8_t md[32];
    size_t len;
    if (!EVP_MAC_final(ctx, md, &len, sizeof(md)) || !(*out = signal_buffer_create(md, len)))
        return SG_ERR_UNKNOWN;
    return 0;
}

static void p_hmac_cleanup(void *ctx, void *u)
{
    (void)u;
    EVP_MAC_CTX_free(ctx);
}

static int p_sha512_init(void **ctx, void *u)
{
    (void)u;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha512(), NULL)) {
        EVP_MD_CTX_free(c);
        return SG_ERR_UNKNOWN;
    }
    *ctx = c;
    return 0;
}

static int p_sha512_update(void *ctx, const uint8_t *data, size_t len, void *u)
{
    (void)u;
    return EVP_DigestUpdate(ctx, data, len) ? 0 : SG_ERR_UNKNOWN;
}

static int p_sha512_final(void *ctx, signal_buffer **out, void *u)
{
    (void)u;
    uint8_t md[64];
    unsigned len;
    /* libsignal reuses the context after final (fingerprints iterate). */
    if (!EVP_DigestFinal_ex(ctx, md, &len) || !EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) ||
        !(*out = signal_buffer_create(md, len)))
        return SG_ERR_UNKNOWN;
    return 0;
}

static void p_sha512_cleanup(void *ctx, void *u)
{
    (void)u;
    EVP_MD_CTX_free(ctx);
}

static const EVP_CIPHER *aes(int cipher, size_t key_len)
{
    if (cipher == SG_CIPHER_AES_CBC_PKCS5)
        return key_len == 16 ? EVP_aes_128_cbc() : key_len == 24 ? EVP_aes_192_cbc() : EVP_aes_256_cbc();
    if (cipher == SG_CIPHER_AES_CTR_NOPADDING)
        return key_len == 16 ? EVP_aes_128_ctr() : key_len == 24 ? EVP_aes_192_ctr() : EVP_aes_256_ctr();
    return NULL;
}

static int p_crypt(signal_buffer **out, int cipher, const uint8_t *key, size_t key_len,
                   const uint8_t *iv, const uint8_t *in, size_t in_len, int enc)
{
    const EVP_CIPHER *c = aes(cipher, key_len);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t *buf = malloc(in_len + 32);
    int n1 = 0, n2 = 0, rc = SG_ERR_UNKNOWN;
    if (c && ctx && buf && EVP_CipherInit_ex(ctx, c, NULL, key, iv, enc) &&
        EVP_CIPHER_CTX_set_padding(ctx, cipher == SG_CIPHER_AES_CBC_PKCS5) &&
        EVP_CipherUpdate(ctx, buf, &n1, in, (int)in_len) && EVP_CipherFinal_ex(ctx, buf + n1, &n2) &&
        (*out = signal_buffer_create(buf, (size_t)(n1 + n2))))
        rc = 0;
    EVP_CIPHER_CTX_free(ctx);
    free(buf);
    return rc;
}

static int p_encrypt(signal_buffer **out, int cipher, const uint8_t *key, size_t key_len,
                     const uint8_t *iv, size_t iv_len, const uint8_t *pt, size_t pt_len, void *u)
{
    (void)iv_len, (void)u;
    return p_crypt(out, cipher, key, key_len, iv, pt, pt_len, 1);
}

static int p_decrypt(signal_buffer **out, int cipher, const uint8_t *key, size_t key_len,
                     const uint8_t *iv, size_t iv_len, const uint8_t *ct, size_t ct_len, void *u)
{
    (void)iv_len, (void)u;
    return p_crypt(out, cipher, key, key_len, iv, ct, ct_len, 0);
}

int provider_install(signal_context *ctx)
{
    signal_crypto_provider p = {
        .random_func = p_random,
        .hmac_sha256_init_func = p_hmac_init,
        .hmac_sha256_update_func = p_hmac_update,
        .hmac_sha256_final_func = p_hmac_final,
        .hmac_sha256_cleanup_func = p_hmac_cleanup,
        .sha512_digest_init_func = p_sha512_init,
        .sha512_digest_update_func = p_sha512_update,
        .sha512_digest_final_func = p_sha512_final,
        .sha512_digest_cleanup_func = p_sha512_cleanup,
        .encrypt_func = p_encrypt,
        .decrypt_func = p_decrypt,
    };
    return signal_context_set_crypto_provider(ctx, &p);
}

/* ---- in-memory stores -------------------------------------------------------- */

static struct record *kv_find(struct kv *kv, const char *name, size_t name_len, int32_t device,
                              uint32_t id)
{
    for (size_t i = 0; i < kv->n; i++) {
        struct record *r = &kv->items[i];
        if (r->id == id && r->device == device && strlen(r->name) == name_len &&
            !memcmp(r->name, name, name_len))
            return r;
    }
    return NULL;
}

static int kv_put(struct kv *kv, const char *name, size_t name_len, int32_t device, uint32_t id,
                  const uint8_t *data, size_t len)
{
    struct record *r = kv_find(kv, name, name_len, device, id);
    if (!r) {
        if (kv->n == KV_MAX || name_len >= sizeof(r->name))
            return SG_ERR_NOMEM;
        r = &kv->items[kv->n++];
        memset(r, 0, sizeof(*r));
        memcpy(r->name, name, name_len);
        r->device = device;
        r->id = id;
    }
    signal_buffer_free(r->data);
    r->data = signal_buffer_create(data, len);
    return r->data ? 0 : SG_ERR_NOMEM;
}

static void kv_del(struct kv *kv, struct record *r)
{
    signal_buffer_free(r->data);
    *r = kv->items[--kv->n];
}

static void kv_free(struct kv *kv)
{
    for (size_t i = 0; i < kv->n; i++)
        signal_buffer_free(kv->items[i].data);
    kv->n = 0;
}

#define PARTY(u) ((struct party *)(u))

static int s_load(signal_buffer **record, signal_buffer **user_record,
                  const signal_protocol_address *a, void *u)
{
    struct record *r = kv_find(&PARTY(u)->sessions, a->name, a->name_len, a->device_id, 0);
    *user_record = NULL;
    if (!r)
        return 0;
    *record = signal_buffer_copy(r->data);
    return 1;
}

static int s_sub_devices(signal_int_list **sessions, const char *name, size_t name_len, void *u)
{
    struct kv *kv = &PARTY(u)->sessions;
    signal_int_list *list = signal_int_list_alloc();
    for (size_t i = 0; list && i < kv->n; i++)
        if (strlen(kv->items[i].name) == name_len && !memcmp(kv->items[i].name, name, name_len))
            signal_int_list_push_back(list, kv->items[i].device);
    *sessions = list;
    return list ? (int)signal_int_list_size(list) : SG_ERR_NOMEM;
}

static int s_store(const signal_protocol_address *a, uint8_t *record, size_t len,
                   uint8_t *user_record, size_t user_len, void *u)
{
    (void)user_record, (void)user_len;
    return kv_put(&PARTY(u)->sessions, a->name, a->name_len, a->device_id, 0, record, len);
}

static int s_contains(const signal_protocol_address *a, void *u)
{
    return kv_find(&PARTY(u)->sessions, a->name, a->name_len, a->device_id, 0) != NULL;
}

static int s_delete(const signal_protocol_address *a, void *u)
{
    struct record *r = kv_find(&PARTY(u)->sessions, a->name, a->name_len, a->device_id, 0);
    if (r)
        kv_del(&PARTY(u)->sessions, r);
    return r != NULL;
}

static int s_delete_all(const char *name, size_t name_len, void *u)
{
    struct kv *kv = &PARTY(u)->sessions;
    int n = 0;
    for (size_t i = kv->n; i-- > 0;)
        if (strlen(kv->items[i].name) == name_len && !memcmp(kv->items[i].name, name, name_len))
            kv_del(kv, &kv->items[i]), n++;
    return n;
}

/* Pre-key and signed pre-key stores: records keyed by id alone. */
#define ID_STORE(prefix, field)                                                              \
    static int prefix##_load(signal_buffer **record, uint32_t id, void *u)                 \
    {                                                                                       \
        struct record *r = kv_find(&PARTY(u)->field, "", 0, 0, id);                        \
        if (!r)                                                                             \
            return SG_ERR_INVALID_KEY_ID;                                                   \
        *record = signal_buffer_copy(r->data);                                             \
        return SG_SUCCESS;                                                                  \
    }                                                                                       \
    static int prefix##_store(uint32_t id, uint8_t *record, size_t len, void *u)           \
    {                                                                                       \
        return kv_put(&PARTY(u)->field, "", 0, 0, id, record, len);                        \
    }                                                                                       \
    static int prefix##_contains(uint32_t id, void *u)                                     \
    {                                                                                       \
        return kv_find(&PARTY(u)->field, "", 0, 0, id) != NULL;                            \
    }                                                                                       \
    static int prefix##_remove(uint32_t id, void *u)                                       \
    {                                                                                       \
        struct record *r = kv_find(&PARTY(u)->field, "", 0, 0, id);                        \
        if (r)                                                                              \
            kv_del(&PARTY(u)->field, r);                                                    \
        return 0;                                                                           \
    }
ID_STORE(pk, prekeys)
ID_STORE(spk, signed_prekeys)

static int i_key_pair(signal_buffer **pub, signal_buffer **priv, void *u)
{
    struct party *p = PARTY(u);
    if (ec_public_key_serialize(pub, ratchet_identity_key_pair_get_public(p->identity)) ||
        ec_private_key_serialize(priv, ratchet_identity_key_pair_get_private(p->identity)))
        return SG_ERR_NOMEM;
    return 0;
}

static int i_registration_id(void *u, uint32_t *id)
{
    *id = PARTY(u)->registration_id;
    return 0;
}

static int i_save(const signal_protocol_address *a, uint8_t *key, size_t len, void *u)
{
    if (!key) /* NULL means forget */
        return 0;
    return kv_put(&PARTY(u)->identities, a->name, a->name_len, 0, 0, key, len);
}

/* Trust on first use, then pinning: the same policy as e2ee-node. */
static int i_trusted(const signal_protocol_address *a, uint8_t *key, size_t len, void *u)
{
    struct record *r = kv_find(&PARTY(u)->identities, a->name, a->name_len, 0, 0);
    if (!r)
        return 1;
    return signal_buffer_len(r->data) == len && !memcmp(signal_buffer_data(r->data), key, len);
}

int party_init(struct party *p, signal_context *ctx, const char *name)
{
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->ctx = ctx;
    if (signal_protocol_key_helper_generate_identity_key_pair(&p->identity, ctx) ||
        signal_protocol_key_helper_generate_registration_id(&p->registration_id, 0, ctx) ||
        signal_protocol_store_context_create(&p->store, ctx))
        return -1;
    signal_protocol_session_store ss = {
        .load_session_func = s_load, .get_sub_device_sessions_func = s_sub_devices,
        .store_session_func = s_store, .contains_session_func = s_contains,
        .delete_session_func = s_delete, .delete_all_sessions_func = s_delete_all,
        .user_data = p,
    };
    signal_protocol_pre_key_store pks = {
        .load_pre_key = pk_load, .store_pre_key = pk_store, .contains_pre_key = pk_contains,
        .remove_pre_key = pk_remove, .user_data = p,
    };
    signal_protocol_signed_pre_key_store spks = {
        .load_signed_pre_key = spk_load, .store_signed_pre_key = spk_store,
        .contains_signed_pre_key = spk_contains, .remove_signed_pre_key = spk_remove,
        .user_data = p,
    };
    signal_protocol_identity_key_store iks = {
        .get_identity_key_pair = i_key_pair, .get_local_registration_id = i_registration_id,
        .save_identity = i_save, .is_trusted_identity = i_trusted, .user_data = p,
    };
    if (signal_protocol_store_context_set_session_store(p->store, &ss) ||
        signal_protocol_store_context_set_pre_key_store(p->store, &pks) ||
        signal_protocol_store_context_set_signed_pre_key_store(p->store, &spks) ||
        signal_protocol_store_context_set_identity_key_store(p->store, &iks))
        return -1;
    return 0;
}

void party_free(struct party *p)
{
    if (p->store)
        signal_protocol_store_context_destroy(p->store);
    kv_free(&p->sessions);
    kv_free(&p->prekeys);
    kv_free(&p->signed_prekeys);
    kv_free(&p->identities);
    SIGNAL_UNREF(p->identity);
}
