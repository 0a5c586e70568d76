/* blindindex.c - blind index tokens (see blindindex.h). */
#include "blindindex.h"

#include <stdlib.h>
#include <string.h>

#include "securitor/wipe.h"

struct blind_index_entry {
    struct hmac_key *mac; /* keyed with K_index; NULL: the slot is empty */
    size_t name_len;
    char name[BLIND_INDEX_MAX_NAME];
};

int blind_index_init(struct blind_index *bi, const uint8_t key[static 32])
{
    *bi = (struct blind_index){0};
    if (hkdf_sha256(bi->root, sizeof(bi->root), NULL, 0, key, 32, BLIND_INDEX_ROOT_LABEL,
                    sizeof(BLIND_INDEX_ROOT_LABEL) - 1)) {
        WIPE_OBJ(bi->root);
        return -1;
    }
    return 0;
}

/* Empties a slot: its key cleansed (by OpenSSL), the entry wiped. */
static void entry_clear(struct blind_index *bi, struct blind_index_entry *e)
{
    if (e->mac)
        (void)map_remove(&bi->names, e->name, e->name_len);
    hmac_key_free(e->mac);
    WIPE_PTR(e);
}

void blind_index_free(struct blind_index *bi)
{
    for (size_t i = 0; i < bi->n_slots; i++) {
        entry_clear(bi, bi->slots[i]);
        free(bi->slots[i]);
    }
    map_free(&bi->names);
    WIPE_PTR(bi);
}

/* K_index for a name, as a keyed HMAC context; NULL when OpenSSL fails. */
static struct hmac_key *derive(const struct blind_index *bi, const char *name, size_t name_len)
{
    char info[sizeof(BLIND_INDEX_KEY_LABEL) - 1 + BLIND_INDEX_MAX_NAME];
    uint8_t k[32];
    struct hmac_key *mac = NULL;
    const size_t label_len = sizeof(BLIND_INDEX_KEY_LABEL) - 1;
    /* The label has a fixed length, so label || name is unambiguous. */
    memcpy(info, BLIND_INDEX_KEY_LABEL, label_len);
    memcpy(info + label_len, name, name_len);
    if (hkdf_sha256(k, sizeof(k), NULL, 0, bi->root, sizeof(bi->root), info,
                    label_len + name_len) == 0)
        mac = hmac_key_new(k, sizeof(k));
    WIPE_OBJ(k);
    return mac;
}

/* The slot a new index key goes into: a new one while fewer than
 * BLIND_INDEX_CACHE exist, else the oldest, emptied. NULL when out of
 * memory. */
static struct blind_index_entry *take_slot(struct blind_index *bi)
{
    struct blind_index_entry *e;
    if (bi->n_slots < BLIND_INDEX_CACHE) {
        if (!(e = calloc(1, sizeof(*e))))
            return NULL;
        bi->slots[bi->n_slots++] = e;
        return e;
    }
    e = bi->slots[bi->hand];
    bi->hand = (bi->hand + 1) % BLIND_INDEX_CACHE;
    if (bi->last == e)
        bi->last = NULL;
    entry_clear(bi, e);
    return e;
}

/* The cached entry for a name, deriving and caching its key on a miss. */
static struct blind_index_entry *lookup(struct blind_index *bi, const char *name,
                                        size_t name_len)
{
    struct blind_index_entry *e = bi->last;
    if (e && e->name_len == name_len && !memcmp(e->name, name, name_len))
        return e;
    if ((e = map_get(&bi->names, name, name_len)))
        return bi->last = e;
    struct hmac_key *mac = derive(bi, name, name_len);
    if (!mac || !(e = take_slot(bi))) {
        hmac_key_free(mac);
        return NULL;
    }
    memcpy(e->name, name, name_len);
    e->name_len = name_len;
    e->mac = mac;
    /* The table's key is the entry's own copy of the name. */
    if (map_put(&bi->names, e->name, name_len, e)) {
        hmac_key_free(mac);
        WIPE_PTR(e); /* an empty slot, reused later */
        return NULL;
    }
    return bi->last = e;
}

int blind_index_token(struct blind_index *bi, const char *name, size_t name_len,
                      const uint8_t *value, size_t value_len,
                      uint8_t out[static BLIND_INDEX_TOKEN_MAX])
{
    if (name_len < 1 || name_len > BLIND_INDEX_MAX_NAME)
        return -1;
    struct blind_index_entry *e = lookup(bi, name, name_len);
    return e ? hmac_key_mac(e->mac, out, value, value_len) : -1;
}
