/* test_wycheproof_primitives.c - Wycheproof X25519, Ed25519, HKDF-SHA256 and
 * HMAC-SHA256 vectors through the project's wrappers (curve.h, kdf.h).
 *
 * X25519: "valid" cases must give the shared secret; "acceptable" cases with
 * an all-zero result must be refused (curve_dh never returns it), other
 * acceptable cases must match if they are not refused. Ed25519: valid
 * verifies, invalid does not (including malleable S >= L). HKDF: valid
 * matches, sizes over 255*32 are refused. HMAC: tags (full or truncated)
 * match exactly when valid, also through a context keyed once (hmac_key_*).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "securitor/curve.h"
#include "securitor/kdf.h"

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static bool has_flag(const cJSON *t, const char *flag)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(t, "flags"))
        if (cJSON_IsString(f) && !strcmp(f->valuestring, flag))
            return true;
    return false;
}

#define EACH_TEST(root, g, t)                                                        \
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(root, "testGroups"))     \
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(g, "tests"))

static void x25519(void)
{
    cJSON *root = load_vectors("wycheproof/x25519_test.json");
    const cJSON *g, *t;
    unsigned long n = 0, refused_zero = 0;
    if (!root)
        return;
    EACH_TEST(root, g, t) {
        size_t pl, kl, sl;
        uint8_t *pub = unhex(str(t, "public"), &pl), *priv = unhex(str(t, "private"), &kl);
        uint8_t *shared = unhex(str(t, "shared"), &sl), out[32];
        struct curve_keypair mine;
        int rc = -1;
        if (pl == 32 && kl == 32) {
            memcpy(mine.priv, priv, 32);
            CHECK(curve_public(mine.pub, mine.priv) == 0);
            rc = curve_dh(out, &mine, pub);
        }
        if (!strcmp(str(t, "result"), "valid")) {
            CHECK(rc == 0 && sl == 32 && !memcmp(out, shared, 32));
        } else if (has_flag(t, "ZeroSharedSecret")) {
            CHECK(rc == -1);
            refused_zero++;
        } else {
            CHECK(rc == -1 || (sl == 32 && !memcmp(out, shared, 32)));
        }
        n++;
        free(pub), free(priv), free(shared);
    }
    printf("wycheproof x25519: %lu cases, %lu all-zero results refused\n", n, refused_zero);
    CHECK(n > 500 && refused_zero > 0);
    cJSON_Delete(root);
}

static void ed25519(void)
{
    cJSON *root = load_vectors("wycheproof/ed25519_test.json");
    const cJSON *g, *t;
    unsigned long n = 0;
    if (!root)
        return;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(root, "testGroups")) {
        size_t pkl;
        uint8_t *pk = unhex(str(cJSON_GetObjectItemCaseSensitive(g, "publicKey"), "pk"), &pkl);
        CHECK(pkl == 32);
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(g, "tests")) {
            size_t ml, sl;
            uint8_t *msg = unhex(str(t, "msg"), &ml), *sig = unhex(str(t, "sig"), &sl);
            int rc = ed25519_verify(pk, msg, ml, sig, sl);
            CHECK(rc == (!strcmp(str(t, "result"), "valid") ? 1 : 0));
            n++;
            free(msg), free(sig);
        }
        free(pk);
    }
    printf("wycheproof ed25519: %lu cases\n", n);
    CHECK(n > 100);
    cJSON_Delete(root);
}

static void hkdf(void)
{
    cJSON *root = load_vectors("wycheproof/hkdf_sha256_test.json");
    const cJSON *g, *t;
    unsigned long n = 0;
    if (!root)
        return;
    EACH_TEST(root, g, t) {
        size_t il, sl, nl, ol;
        uint8_t *ikm = unhex(str(t, "ikm"), &il), *salt = unhex(str(t, "salt"), &sl);
        uint8_t *info = unhex(str(t, "info"), &nl), *okm = unhex(str(t, "okm"), &ol);
        size_t size = (size_t)num(t, "size");
        uint8_t *out = malloc(size + 1);
        int rc = hkdf_sha256(out, size, salt, sl, ikm, il, (const char *)info, nl);
        if (!strcmp(str(t, "result"), "valid"))
            CHECK(rc == 0 && ol == size && !memcmp(out, okm, size));
        else
            CHECK(rc == -1); /* longer than 255 * HashLen (RFC 5869 §2.3) */
        n++;
        free(ikm), free(salt), free(info), free(okm), free(out);
    }
    printf("wycheproof hkdf-sha256: %lu cases\n", n);
    CHECK(n > 80);
    cJSON_Delete(root);
}

static void hmac(void)
{
    cJSON *root = load_vectors("wycheproof/hmac_sha256_test.json");
    const cJSON *g, *t;
    unsigned long n = 0;
    if (!root)
        return;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(root, "testGroups")) {
        size_t tag_bytes = (size_t)num(g, "tagSize") / 8;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(g, "tests")) {
            size_t kl, ml, tl;
            uint8_t *key = unhex(str(t, "key"), &kl), *msg = unhex(str(t, "msg"), &ml);
            uint8_t *tag = unhex(str(t, "tag"), &tl), out[HMAC_SHA256_LEN];
            struct bytes part = {msg, ml};
            CHECK(hmac_sha256(out, key, kl, &part, 1) == 0);
            bool same = tl == tag_bytes && !memcmp(out, tag, tag_bytes);
            CHECK(same == !strcmp(str(t, "result"), "valid"));
            /* Several messages under one key set up once: the message, an
             * empty one, the message again. */
            uint8_t each[3][HMAC_SHA256_LEN], empty[HMAC_SHA256_LEN];
            struct bytes none = {NULL, 0}, msgs[3] = {part, none, part};
            CHECK(hmac_sha256_each(each, key, kl, msgs, 3) == 0 &&
                  hmac_sha256(empty, key, kl, &none, 1) == 0);
            CHECK(!memcmp(each[0], out, sizeof(out)) && !memcmp(each[2], out, sizeof(out)) &&
                  !memcmp(each[1], empty, sizeof(empty)));
            /* A context keyed once (blind indexes): the same tags, message
             * after message, an empty one between. */
            struct hmac_key *hk = hmac_key_new(key, kl);
            uint8_t again[3][HMAC_SHA256_LEN];
            CHECK(hk && hmac_key_mac(hk, again[0], msg, ml) == 0 &&
                  hmac_key_mac(hk, again[1], NULL, 0) == 0 &&
                  hmac_key_mac(hk, again[2], msg, ml) == 0);
            CHECK(!memcmp(again[0], out, sizeof(out)) && !memcmp(again[2], out, sizeof(out)) &&
                  !memcmp(again[1], empty, sizeof(empty)));
            hmac_key_free(hk);
            n++;
            free(key), free(msg), free(tag);
        }
    }
    printf("wycheproof hmac-sha256: %lu cases\n", n);
    CHECK(n > 150);
    cJSON_Delete(root);
}

int main(void)
{
    x25519();
    ed25519();
    hkdf();
    hmac();
    return check_finish_vectors("test_wycheproof_primitives");
}
