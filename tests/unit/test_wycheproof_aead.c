/* test_wycheproof_aead.c - Wycheproof AES-GCM vectors through the wrapper.
 *
 * Every case with a 256-bit key, 96-bit IV and 128-bit tag must behave as
 * Wycheproof says (valid: seal reproduces ct||tag and open succeeds; invalid:
 * open refuses). Every other 256-bit case (other IV sizes) must be refused
 * with AEAD_BAD_SIZE. 128- and 192-bit keys cannot be expressed: the key type
 * is 32 bytes, so they are counted as refused by construction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "securitor/aead.h"

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

int main(void)
{
    cJSON *root = load_vectors("wycheproof/aes_gcm_test.json");
    if (!root)
        return check_finish_vectors("test_wycheproof_aead");
    unsigned long full = 0, other_iv = 0, other_key = 0;
    const cJSON *group;
    cJSON_ArrayForEach(group, cJSON_GetObjectItemCaseSensitive(root, "testGroups")) {
        int key_bits = cJSON_GetObjectItemCaseSensitive(group, "keySize")->valueint;
        int iv_bits = cJSON_GetObjectItemCaseSensitive(group, "ivSize")->valueint;
        int tag_bits = cJSON_GetObjectItemCaseSensitive(group, "tagSize")->valueint;
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(group, "tests")) {
            if (key_bits != 256) {
                other_key++;
                continue;
            }
            size_t kl, il, al, ml, cl, tl;
            uint8_t *key = unhex(str(t, "key"), &kl), *iv = unhex(str(t, "iv"), &il);
            uint8_t *aad = unhex(str(t, "aad"), &al), *msg = unhex(str(t, "msg"), &ml);
            uint8_t *ct = unhex(str(t, "ct"), &cl), *tag = unhex(str(t, "tag"), &tl);
            bool valid = !strcmp(str(t, "result"), "valid");
            uint8_t *out = malloc(ml + cl + 1), out_tag[16];
            struct aead_key *k = aead_key_new(key);
            CHECK(k != NULL);
            enum aead_result rc = aead_open(k, iv, il, aad, al, ct, cl, tag, tl, out);
            if (iv_bits == 96 && tag_bits == 128) {
                full++;
                if (valid) {
                    CHECK(rc == AEAD_OK && cl == ml && !memcmp(out, msg, ml));
                    CHECK(aead_seal(k, iv, aad, al, msg, ml, out, out_tag) == AEAD_OK);
                    CHECK(!memcmp(out, ct, cl) && !memcmp(out_tag, tag, 16));
                } else {
                    CHECK(rc == AEAD_AUTH_FAILED);
                }
            } else {
                other_iv++;
                CHECK(rc == AEAD_BAD_SIZE);
            }
            if (check_failed && rc != AEAD_OK && valid)
                fprintf(stderr, "  tcId %d\n",
                        cJSON_GetObjectItemCaseSensitive(t, "tcId")->valueint);
            aead_key_free(k);
            free(key), free(iv), free(aad), free(msg), free(ct), free(tag), free(out);
        }
    }
    cJSON_Delete(root);
    printf("wycheproof aes-gcm: %lu 256/96/128 cases checked, %lu other-IV cases refused, "
           "%lu 128/192-bit-key cases not expressible\n", full, other_iv, other_key);
    CHECK(full > 0);
    return check_finish_vectors("test_wycheproof_aead");
}
