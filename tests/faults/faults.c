/* faults.c - an LD_PRELOAD shim that makes chosen calls fail (tests only).
 *
 * Each fault is armed by an environment variable naming a file: while that
 * file exists, the call fails. A test creates and removes the file between
 * requests, so it decides exactly which request meets the fault.
 *
 *   SECURITOR_FAULT_RAND=PATH    RAND_bytes and RAND_priv_bytes return 0
 *                                (OpenSSL's DRBG failing)
 *
 * The real functions are found with dlsym(RTLD_NEXT, ...).
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static int armed(const char *var)
{
    const char *path = getenv(var);
    return path && access(path, F_OK) == 0;
}

typedef int (*rand_fn)(unsigned char *buf, int num);

int RAND_bytes(unsigned char *buf, int num);
int RAND_priv_bytes(unsigned char *buf, int num);

int RAND_bytes(unsigned char *buf, int num)
{
    static rand_fn real;
    if (armed("SECURITOR_FAULT_RAND"))
        return 0;
    if (!real)
        real = (rand_fn)dlsym(RTLD_NEXT, "RAND_bytes");
    return real ? real(buf, num) : 0;
}

int RAND_priv_bytes(unsigned char *buf, int num)
{
    static rand_fn real;
    if (armed("SECURITOR_FAULT_RAND"))
        return 0;
    if (!real)
        real = (rand_fn)dlsym(RTLD_NEXT, "RAND_priv_bytes");
    return real ? real(buf, num) : 0;
}
