/* keypool.h - X25519 key pairs made ahead, on a thread of their own.
 *
 * Making a key pair is a fixed-base scalar multiplication, about as dear as
 * a DH, and a session setup makes two (X3DH's ephemeral key, the first
 * ratchet key), a ratchet step one. While the worker answers, a filler
 * thread keeps up to KEYPOOL_DEPTH pairs ready on another core; curve.c
 * takes one when it needs a fresh pair and makes it itself when none is
 * ready. A pooled pair is exactly what curve_generate would have made
 * (RAND_priv_bytes, clamped, its public key computed by libcrypto).
 *
 * Secrets: the pool holds the only copy of a pair until it is taken: the
 * filler wipes its own, and makes pairs as curve_generate does (an import
 * of the private key), not by OpenSSL's key generation and an export,
 * which leave copies behind on its stack and heap. A taken pair's slot is
 * cleansed; keypool_stop cleanses what is left. Process-wide: start and
 * stop from the main thread, takes from the worker.
 */
#ifndef SECURITOR_KEYPOOL_H
#define SECURITOR_KEYPOOL_H

#include "securitor/curve.h"

#define KEYPOOL_DEPTH 32 /* pairs kept ready */

/* Lets the pool run: its filler starts with the first take, so a process
 * that never makes a key pair (the directory, the relay) never starts it.
 * Registers keypool_stop to run at exit. 0, or -1 when that cannot be
 * registered (no pool then). Should the thread not start, every pair is
 * made on demand, as without a pool. */
int keypool_start(void);

/* Stops and joins the filler and cleanses the pool; later takes find
 * nothing until keypool_start again. Calling it twice is harmless; a
 * filler it stopped never runs beside a later one. */
void keypool_stop(void);

/* A fresh pair into kp: 1 taken from the pool, 0 none ready (or the pool
 * not started: the caller makes one), -1 the RNG is failing now. Each take
 * first draws a byte from RAND_priv_bytes: while the DRBG fails no pair is
 * handed out, pooled or not, so a failing RNG is reported at the request
 * that needed a key, as without the pool. */
__attribute__((warn_unused_result))
int keypool_take(struct curve_keypair *kp);

#endif
