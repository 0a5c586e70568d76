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
 *                                (a full disk) when PATH holds "enospc"; or,
 *                                when it holds "slow MS", each takes MS
 *                                milliseconds more and succeeds (a disk that
 *                                stalls: a test can kill -9 a node while its
 *                                commit is on its way)
 *
 * And one that is not a fault: SECURITOR_RAND_LOG=PATH appends every
 * RAND_priv_bytes output to PATH as a line of hex (the secret keys a node
 * draws, e.g. symmetric-node's rotated versions), so that a test can look
 * for them in the state's files.
 *
 * The real functions are found with dlsym(RTLD_NEXT, ...). SQLite reaches
 * the file system through pwrite64, write and fdatasync or fsync, all
 * through the PLT, so the shim sees every one of its writes.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
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

/* Appends buf as a line of hex to SECURITOR_RAND_LOG's file, if set: with
 * plain write(2) and a stack buffer that is wiped, so the shim leaves no
 * copy of a key in the process's memory (tests look there too). */
static void log_secret(const unsigned char *buf, int num)
{
    static const char digits[] = "0123456789abcdef";
    const char *path = getenv("SECURITOR_RAND_LOG");
    char hex[129];
    int fd;
    if (!path || !*path || (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return;
    for (int i = 0; i < num;) {
        size_t k = 0;
        for (; i < num && k < sizeof(hex) - 1; i++) {
            hex[k++] = digits[buf[i] >> 4];
            hex[k++] = digits[buf[i] & 15];
        }
        if (i == num)
            hex[k++] = '\n';
        if (write(fd, hex, k) != (ssize_t)k)
            break;
    }
    explicit_bzero(hex, sizeof(hex));
    close(fd);
}

int RAND_priv_bytes(unsigned char *buf, int num)
{
    static rand_fn real;
    if (armed("SECURITOR_FAULT_RAND"))
        return 0;
    if (!real)
        real = (rand_fn)dlsym(RTLD_NEXT, "RAND_priv_bytes");
    int rc = real ? real(buf, num) : 0;
    if (rc == 1)
        log_secret(buf, num);
    return rc;
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
    if (!strncmp(mode, "slow", 4)) {
        int ms = atoi(mode + 4);
        usleep((useconds_t)(ms > 0 ? ms : 1000) * 1000);
        return false;
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
