/* x3dh.h - X3DH key agreement as Signal protocol v3 keeps it (SIGNAL.md
 * Part 0 item 2, 2.2).
 *
 * X3DH only agrees on a key; it does not authenticate anyone. Callers verify
 * the signed prekey's signature before any DH (X3DH §3.3) and pin identity
 * keys; users compare safety numbers (safety.h) to know who is on the other
 * end.
 */
#ifndef SECURITOR_X3DH_H
#define SECURITOR_X3DH_H

#include <stdint.h>

#include "securitor/curve.h"

struct x3dh_result {
    uint8_t root_key[32];
    uint8_t chain_key[32]; /* Bob's unused first sending chain */
};

/* Alice: DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
 * DH4 = DH(EK_A, OPK_B) when their_opk is not NULL. The caller has verified
 * SPK_B's signature already. 0 or -1 (a DH failed or was all zero). */
__attribute__((warn_unused_result))
int x3dh_initiate(struct x3dh_result *out, const struct curve_keypair *ik,
                  const struct curve_keypair *ek, const uint8_t their_ik[static 32],
                  const uint8_t their_spk[static 32], const uint8_t *their_opk);
/* Bob: the mirror image. opk may be NULL. 0 or -1. */
__attribute__((warn_unused_result))
int x3dh_respond(struct x3dh_result *out, const struct curve_keypair *ik,
                 const struct curve_keypair *spk, const struct curve_keypair *opk,
                 const uint8_t their_ik[static 32], const uint8_t their_ek[static 32]);

#endif
