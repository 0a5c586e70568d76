/* faults.c - an LD_PRELOAD shim that makes chosen calls fail (tests only).
 *
 * Each fault is armed by an environment variable naming a file: while that
 * file exists, the call fails. A test creates and removes the file between
 * requests, so it decides exactly which request meets the fault.
 *
 *   SECURITOR_FAULT_RAND=PATH    RAND_bytes and RAND_priv_bytes return 0
 *                                (OpenSSL's DRBG failing)
 *   SECURITOR_FAULT_DISK=PATH    writes and syncs of the state's files (names
 *                                with ".db") fail with EIO, or with ENOSPC
 *                                (a full disk) when PATH holds "enospc"
 *
 * The real functions are found with dlsym(RTLD_NEXT, ...). SQLite reaches
 * the file system through pwrite64, write and fdatasync or fsync, all
 * through the PLT, so the shim sees every one of its writes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
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

/* --- the disk ---------------------------------------------------------------- */

/* Whether fd is one of the state's files, and the fault is armed; sets
 * errno to the fault's error. */
static bool disk_fails(int fd)
{
    const char *path = getenv("SECURITOR_FAULT_DISK");
    char link[64], target[PATH_MAX];
    if (!path || access(path, F_OK) != 0)
        return false;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return false;
    target[n] = 0;
    if (!strstr(target, ".db"))
        return false;
    char mode[16] = "";
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(mode, sizeof(mode), f))
            mode[0] = 0;
        fclose(f);
    }
    errno = !strncmp(mode, "enospc", 6) ? ENOSPC : EIO;
    return true;
}

#define REAL(type, name, ...)                         \
    static type (*real)(__VA_ARGS__);                 \
    if (!real)                                        \
        real = (type(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

ssize_t write(int fd, const void *buf, size_t n);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t at);
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at);
int fsync(int fd);
int fdatasync(int fd);

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(ssize_t, "write", int, const void *, size_t);
    if (fd > 2 && disk_fails(fd))
        return -1;
    return real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t at)
{
    REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
    if (disk_fails(fd))
        return -1;
    return real(fd, buf, n, at);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at)
{
    REAL(ssize_t, "pwrite64", int, const void *, size_t, off_t);
    if (disk_fails(fd))
        return -1;
    return real(fd, buf, n, at);
}

int fsync(int fd)
{
    REAL(int, "fsync", int);
    if (disk_fails(fd))
        return -1;
    return real(fd);
}

int fdatasync(int fd)
{
    REAL(int, "fdatasync", int);
    if (disk_fails(fd))
        return -1;
    return real(fd);
}
