/* x3dh.c - X3DH key agreement as Signal protocol v3 keeps it (see x3dh.h). */
#include "securitor/x3dh.h"

#include <string.h>

#include "securitor/kdf.h"
#include "securitor/wipe.h"

static const uint8_t ZERO32[32];

/* secret = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4]; HKDF(0*32, secret,
 * "WhisperText", 64) -> root key, chain key (X3DH §2.2, SIGNAL.md 2.2). The
 * 0xFF prefix separates these inputs from XEdDSA's. */
static int x3dh_finish(struct x3dh_result *out, uint8_t secret[static 160], size_t n_dh)
{
    uint8_t okm[64];
    memset(secret, 0xFF, 32);
    int rc = hkdf_sha256(okm, sizeof(okm), ZERO32, 32, secret, 32 + 32 * n_dh, "WhisperText", 11);
    if (!rc) {
        memcpy(out->root_key, okm, 32);
        memcpy(out->chain_key, okm + 32, 32);
    }
    WIPE_OBJ(okm);
    return rc;
}

int x3dh_initiate(struct x3dh_result *out, const struct curve_keypair *ik,
                  const struct curve_keypair *ek, const uint8_t their_ik[static 32],
                  const uint8_t their_spk[static 32], const uint8_t *their_opk)
{
    uint8_t secret[160];
    uint8_t *const ek_out[3] = {secret + 64, secret + 96, secret + 128};
    const uint8_t *const ek_with[3] = {their_ik, their_spk, their_opk};
    int rc = -1;
    if (curve_dh(secret + 32, ik, their_spk) ||
        curve_dh_each(ek_out, ek, ek_with, their_opk ? 3 : 2))
        goto out;
    rc = x3dh_finish(out, secret, their_opk ? 4 : 3);
out:
    WIPE_OBJ(secret); /* X3DH §3.3: delete the DH outputs */
    return rc;
}

int x3dh_respond(struct x3dh_result *out, const struct curve_keypair *ik,
                 const struct curve_keypair *spk, const struct curve_keypair *opk,
                 const uint8_t their_ik[static 32], const uint8_t their_ek[static 32])
{
    uint8_t secret[160];
    uint8_t *const spk_out[2] = {secret + 32, secret + 96};
    const uint8_t *const spk_with[2] = {their_ik, their_ek};
    int rc = -1;
    if (curve_dh_each(spk_out, spk, spk_with, 2) || curve_dh(secret + 64, ik, their_ek) ||
        (opk && curve_dh(secret + 128, opk, their_ek)))
        goto out;
    rc = x3dh_finish(out, secret, opk ? 4 : 3);
out:
    WIPE_OBJ(secret);
    return rc;
}
