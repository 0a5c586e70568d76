/* ratchet.h - the Double Ratchet as Signal protocol v3 keeps it (SIGNAL.md
 * Part 0 items 3-6): key derivation, sessions, encrypt and decrypt.
 *
 * MISUSE WARNING: ratchet_decrypt is transactional. It works on a copy of
 * the session and commits only when the MAC verifies, so a forged, replayed
 * or too-far-ahead message leaves the session byte-for-byte as it was.
 * Callers must not change a session in any other way on a failed message.
 */
#ifndef SECURITOR_RATCHET_H
#define SECURITOR_RATCHET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "securitor/curve.h"
#include "securitor/wire.h"
#include "securitor/x3dh.h"

#define RATCHET_MAX_SKIP 2000   /* message keys skipped in one step */
#define RATCHET_MAX_STORED 2000 /* skipped keys kept per session; oldest go first */
#define RATCHET_KEY_LEN 32
#define RATCHET_RETIRED 5        /* old receiving chains remembered (as libsignal) */

/* --- key derivation (exposed for the known-answer tests) ------------------- */

struct message_keys {
    uint8_t cipher[32], mac[32], iv[16];
};

/* KDF_CK: seed = HMAC(ck, 0x01), next = HMAC(ck, 0x02). 0 or -1. */
__attribute__((warn_unused_result))
int chain_step(uint8_t seed[static 32], uint8_t next[static 32], const uint8_t ck[static 32]);
/* HKDF(salt 0*32, seed, "WhisperMessageKeys", 80). 0 or -1. */
__attribute__((warn_unused_result))
int message_keys_derive(struct message_keys *mk, const uint8_t seed[static 32]);
/* KDF_RK: HKDF(salt rk, dh, "WhisperRatchet", 64) -> (rk', ck). 0 or -1. */
__attribute__((warn_unused_result))
int root_step(uint8_t rk_out[static 32], uint8_t ck_out[static 32], const uint8_t rk[static 32],
              const uint8_t dh[static 32]);

/* --- sessions ------------------------------------------------------------------ */

struct skipped_key {
    uint8_t ratchet_key[32];
    uint32_t counter;
    uint8_t seed[32]; /* message key seed; keys are derived when used */
};

/* The fixed-size ratchet state: copied for each decryption attempt. */
struct ratchet_core {
    uint8_t root_key[32];
    struct curve_keypair self;   /* DHs: our current ratchet key pair */
    uint8_t remote[32];          /* DHr: their current ratchet key */
    bool has_recv;               /* false until the first message from them */
    /* false after a DH ratchet on receive: our new key pair and sending chain
     * are made at the next send (Double Ratchet §6.5 allows the deferral;
     * the result on the wire is the same). */
    bool has_send;
    uint8_t send_ck[32], recv_ck[32];
    uint32_t send_n, recv_n;     /* next index in each chain */
    uint32_t previous_counter;   /* sent as previousCounter: count - 1 (libsignal) */
    /* Their last few retired ratchet keys: a message on one of those chains
     * whose key is not among the skipped ones is a replay, not a new step. */
    uint8_t retired[RATCHET_RETIRED][32];
    uint32_t n_retired;
};

struct session {
    struct ratchet_core core;
    uint8_t local_identity[32], remote_identity[32];
    uint8_t base_key[32];        /* Alice's X3DH base key: names the session */
    char id[37];                 /* UUID from the X3DH transcript */
    uint32_t remote_registration_id;
    /* Alice sends PreKeySignalMessages until something from Bob decrypts. */
    bool pending_prekey;
    uint32_t pending_pre_key_id; /* WIRE_NO_PREKEY when none was used */
    uint32_t pending_signed_pre_key_id;
    struct skipped_key *skipped; /* oldest first; owned, wiped on free */
    size_t n_skipped, cap_skipped;
};

/* Sets up Alice's side after X3DH: a fresh ratchet key and the first sending
 * chain KDF_RK(RK, DH(ratchet, SPK_B)). Identities are X25519 public keys. */
__attribute__((warn_unused_result))
int session_init_alice(struct session *s, const struct x3dh_result *x,
                       const uint8_t their_spk[static 32], const uint8_t local_identity[static 32],
                       const uint8_t remote_identity[static 32], const uint8_t base_key[static 32]);
/* Bob's side: DHs = his signed prekey pair, RK = the X3DH root key. */
__attribute__((warn_unused_result))
int session_init_bob(struct session *s, const struct x3dh_result *x, const struct curve_keypair *spk,
                     const uint8_t local_identity[static 32], const uint8_t remote_identity[static 32],
                     const uint8_t base_key[static 32]);
/* Wipes the whole session, frees the skipped keys; the struct may be reused. */
void session_wipe(struct session *s);

/* The session id: a version-8 UUID from SHA-256 over a label and the
 * encoded IK_A, IK_B and EK_A. Writes 36 characters and a NUL. 0 or -1. */
__attribute__((warn_unused_result))
int session_id_derive(char out[static 37], const uint8_t ik_a[static 32],
                      const uint8_t ik_b[static 32], const uint8_t ek_a[static 32]);

/* Encrypts into out, which must hold signal_message_max_len(cbc_padded_len(len))
 * bytes: the whole SignalMessage (0x33, protobuf, MAC8). Makes the deferred
 * sending chain first when needed. Changes the session only on success.
 * 0 or -1. */
__attribute__((warn_unused_result))
int ratchet_encrypt(struct session *s, const uint8_t *pt, size_t len, uint8_t *out, size_t *out_len);

enum ratchet_result {
    RATCHET_OK = 0,
    RATCHET_BAD_MAC,     /* forged, corrupted, or not for this session */
    RATCHET_DUPLICATE,   /* its key was used already (replay) or deleted */
    RATCHET_TOO_FAR,     /* more than RATCHET_MAX_SKIP keys ahead */
    RATCHET_BAD_PADDING, /* MAC fine, plaintext padding broken */
    RATCHET_INTERNAL,    /* OpenSSL or memory failure */
};

/* Decrypts into pt (m->ciphertext_len bytes of room). On anything but
 * RATCHET_OK the session is unchanged and pt holds nothing. */
__attribute__((warn_unused_result))
enum ratchet_result ratchet_decrypt(struct session *s, const struct signal_message *m,
                                    uint8_t *pt, size_t *pt_len);

const char *ratchet_result_text(enum ratchet_result r);

/* A DH ratchet step (one X25519 and two HKDFs) in chain-step units. */
#define RATCHET_DH_COST 50
/* The most work one message may cause in all the sessions it is tried on:
 * enough for the worst honest message on one session (two full skips and a
 * DH step), so a forged one cannot multiply it by the number of sessions. */
#define RATCHET_MAX_WORK (2 * RATCHET_MAX_SKIP + RATCHET_DH_COST + 1)

/* The work ratchet_decrypt would do for m on s, in chain steps (a DH ratchet
 * step counts RATCHET_DH_COST), before it could tell whether the MAC
 * verifies; 0 when it would refuse m outright (a replay, too far ahead).
 * For bounding the work of trying one message on several sessions. */
uint32_t ratchet_decrypt_cost(const struct session *s, const struct signal_message *m);

#endif
