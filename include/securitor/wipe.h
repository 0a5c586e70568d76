/* wipe.h - erase secrets so the compiler cannot optimise the store away.
 *
 * Two macros on purpose: WIPE_OBJ takes an object held by value (array or
 * struct), WIPE_PTR the struct behind a pointer. A single sizeof(x) macro
 * would silently wipe only the pointer when handed one.
 */
#ifndef SECURITOR_WIPE_H
#define SECURITOR_WIPE_H

#include <stddef.h>
#include <string.h>

#include <openssl/crypto.h>

#define WIPE_OBJ(x) OPENSSL_cleanse(&(x), sizeof(x))
#define WIPE_PTR(p) OPENSSL_cleanse((p), sizeof(*(p)))

/* Wipes a large buffer (I/O lines, plaintexts in transit). explicit_bzero
 * is glibc's memset with a compiler barrier: as safe from dead-store
 * elimination as OPENSSL_cleanse, but vectorised; OPENSSL_cleanse stores a
 * byte at a time, which shows on megabyte buffers. Keys use WIPE_OBJ. */
static inline void wipe_bytes(void *p, size_t n)
{
    if (n)
        explicit_bzero(p, n);
}

/* Wipes the WIPE_STACK_DEPTH bytes of stack below the caller's frame,
 * where the functions it called had theirs. Libraries leave pieces of what
 * they handled there (OpenSSL's GCM code leaves plaintext blocks; hashes
 * leave their message schedules), and a frame's bytes stay until the stack
 * grows that deep again. The loop calls it after each batch (libsodium's
 * sodium_stackzero does the same job). */
#define WIPE_STACK_DEPTH ((size_t)32 << 10) /* the deepest handler: a 16 KiB piece, then OpenSSL */
void wipe_stack(void);

#endif
