/* keyring.c - key versions (see keyring.h). */
#include "keyring.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/rand.h"
#include "securitor/wipe.h"

enum keyring_status keyring_init(struct keyring *kr, long long first_id)
{
    *kr = (struct keyring){0};
    if (first_id < 1 || first_id > KEYRING_MAX_ID)
        return KEYRING_INTERNAL;
    /* The whole table at once (48 KiB): it never moves, so key bytes are
     * never copied into memory that is then freed unwiped. */
    kr->v = calloc(KEYRING_MAX_VERSIONS, sizeof(*kr->v));
    if (!kr->v)
        return KEYRING_INTERNAL;
    kr->next_id = kr->trimmed_below = kr->min_decryption_version = first_id;
    return KEYRING_OK;
}

/* Wipes one version's key and frees its contexts (which cleanse the key
 * schedule), leaving the slot zeroed. */
static void version_clear(struct keyring_version *v)
{
    aead_key_free(v->aead);
    WIPE_PTR(v);
}

void keyring_free(struct keyring *kr)
{
    if (kr->v) {
        for (size_t i = 0; i < kr->n; i++)
            version_clear(&kr->v[i]);
        free(kr->v);
    }
    *kr = (struct keyring){0};
}

enum keyring_status keyring_add(struct keyring *kr, const uint8_t key[static AEAD_KEY_LEN],
                                long long *id)
{
    if (!kr->v)
        return KEYRING_INTERNAL;
    if (kr->n == KEYRING_MAX_VERSIONS || kr->next_id > KEYRING_MAX_ID)
        return KEYRING_FULL;
    struct aead_key *aead = aead_key_new(key);
    if (!aead)
        return KEYRING_INTERNAL;
    struct keyring_version *v = &kr->v[kr->n++];
    v->id = kr->next_id++;
    v->aead = aead;
    memcpy(v->key, key, AEAD_KEY_LEN);
    *id = v->id;
    return KEYRING_OK;
}

enum keyring_status keyring_rotate(struct keyring *kr, long long *id)
{
    uint8_t key[AEAD_KEY_LEN];
    enum keyring_status st;
    /* Checked before drawing a key, so a full ring costs no randomness. */
    if (kr->n == KEYRING_MAX_VERSIONS || kr->next_id > KEYRING_MAX_ID)
        return KEYRING_FULL;
    if (rand_secret(key, sizeof(key)))
        st = KEYRING_INTERNAL;
    else
        st = keyring_add(kr, key, id);
    WIPE_OBJ(key);
    return st;
}

struct keyring_version *keyring_primary(const struct keyring *kr)
{
    return kr->n ? &kr->v[kr->n - 1] : NULL;
}

enum keyring_status keyring_get(const struct keyring *kr, long long id,
                                struct keyring_version **out)
{
    *out = NULL;
    /* Live ids are consecutive, so the version is found by subtraction. */
    if (!kr->n || id < kr->v[0].id || id > kr->v[kr->n - 1].id)
        return KEYRING_UNKNOWN;
    *out = &kr->v[id - kr->v[0].id];
    return id < kr->min_decryption_version ? KEYRING_BELOW_MIN : KEYRING_OK;
}

size_t keyring_candidates(const struct keyring *kr, struct keyring_version **out, size_t max)
{
    size_t k = 0;
    for (size_t i = kr->n; i-- > 0 && k < max;) {
        if (kr->v[i].id < kr->min_decryption_version)
            break;
        out[k++] = &kr->v[i];
    }
    return k;
}

enum keyring_status keyring_set_min(struct keyring *kr, long long id)
{
    struct keyring_version *primary = keyring_primary(kr);
    if (!primary || id > primary->id)
        return KEYRING_PAST_PRIMARY;
    if (id < kr->trimmed_below)
        return KEYRING_TRIMMED;
    kr->min_decryption_version = id;
    return KEYRING_OK;
}

size_t keyring_trim(struct keyring *kr)
{
    if (!kr->n || kr->min_decryption_version <= kr->v[0].id)
        return 0;
    size_t k = (size_t)(kr->min_decryption_version - kr->v[0].id);
    if (k >= kr->n) /* cannot happen: the minimum never passes the primary */
        k = kr->n - 1;
    for (size_t i = 0; i < k; i++)
        version_clear(&kr->v[i]);
    /* The survivors move down; the slots they leave still hold copies of
     * their keys, so those are wiped too. */
    memmove(kr->v, kr->v + k, (kr->n - k) * sizeof(*kr->v));
    OPENSSL_cleanse(kr->v + (kr->n - k), k * sizeof(*kr->v));
    kr->n -= k;
    kr->trimmed_below = kr->v[0].id;
    return k;
}
