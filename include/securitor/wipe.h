/* wipe.h - erase secrets so the compiler cannot optimise the store away.
 *
 * Two macros on purpose: WIPE_OBJ takes an object held by value (array or
 * struct), WIPE_PTR the struct behind a pointer. A single sizeof(x) macro
 * would silently wipe only the pointer when handed one.
 */
#ifndef SECURITOR_WIPE_H
#define SECURITOR_WIPE_H

#include <openssl/crypto.h>

#define WIPE_OBJ(x) OPENSSL_cleanse(&(x), sizeof(x))
#define WIPE_PTR(p) OPENSSL_cleanse((p), sizeof(*(p)))

#endif
