/* safety.c - Signal's numeric fingerprint: the 60-digit safety number two
 * users compare to authenticate each other (X3DH §4.1; see safety.h). */
#include "securitor/safety.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "securitor/curve.h"
#include "securitor/kdf.h"

/* One side's 30 digits: hash_0 = version(0, 2 bytes) || IK || id; then 5200
 * times hash = SHA-512(hash || IK); six 5-byte big-endian chunks mod 100000. */
static int fingerprint_digits(char out[static 31], const uint8_t identity[static 32],
                              const char *id, size_t id_len)
{
    static const uint8_t version[2] = {0, 0};
    uint8_t ik[CURVE_ENCODED_LEN], hash[SHA512_LEN];
    curve_encode(ik, identity);
    struct bytes first[] = {{version, 2}, {ik, sizeof(ik)}, {(const uint8_t *)id, id_len},
                            {ik, sizeof(ik)}};
    if (sha512(hash, first, 4))
        return -1;
    for (int i = 1; i < 5200; i++) {
        struct bytes next[] = {{hash, sizeof(hash)}, {ik, sizeof(ik)}};
        if (sha512(hash, next, 2))
            return -1;
    }
    for (int chunk = 0; chunk < 6; chunk++) {
        uint64_t v = 0;
        for (int b = 0; b < 5; b++)
            v = v << 8 | hash[chunk * 5 + b];
        snprintf(out + chunk * 5, 6, "%05u", (unsigned)(v % 100000));
    }
    return 0;
}

int safety_number(char out[static 61], const uint8_t local_identity[static 32],
                  const char *local_id, size_t local_id_len,
                  const uint8_t remote_identity[static 32], const char *remote_id,
                  size_t remote_id_len)
{
    char local[31], remote[31];
    if (fingerprint_digits(local, local_identity, local_id, local_id_len) ||
        fingerprint_digits(remote, remote_identity, remote_id, remote_id_len))
        return -1;
    bool local_first = strcmp(local, remote) <= 0; /* the same order on both sides */
    snprintf(out, 61, "%s%s", local_first ? local : remote, local_first ? remote : local);
    return 0;
}
