/* keysource.c - the key given at start (see keysource.h). */
#include "securitor/keysource.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "securitor/codec.h"
#include "securitor/node.h"
#include "securitor/wipe.h"

/* What the error messages offer, so that every refusal names both formats. */
#define ACCEPTED "accepted: 64 hex characters (e.g. from `openssl rand -hex 32`) or exactly " \
                 "32 raw bytes"

int keysource_option(const char *prog, int argc, char **argv, int *i, const char **path)
{
    const char *a = argv[*i];
    const size_t n = sizeof(KEYSOURCE_OPTION) - 1;
    if (strncmp(a, KEYSOURCE_OPTION, n))
        return 0;
    if (a[n] == '=') {
        *path = a + n + 1;
    } else if (a[n] == '\0' && *i + 1 < argc) {
        *path = argv[++*i];
    } else if (a[n] == '\0') {
        node_log("%s: %s needs a path", prog, KEYSOURCE_OPTION);
        return -1;
    } else {
        return 0; /* --key-filex: not ours */
    }
    if (!**path) {
        node_log("%s: %s needs a path", prog, KEYSOURCE_OPTION);
        return -1;
    }
    return 1;
}

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

static bool is_hex_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The text between leading and trailing white space. */
static void trim(const char **s, size_t *len)
{
    while (*len && is_space(**s))
        (*s)++, (*len)--;
    while (*len && is_space((*s)[*len - 1]))
        (*len)--;
}

/* Whether all len characters are hex digits (true for len 0). */
static bool all_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_hex_digit(s[i]))
            return false;
    return true;
}

/* Parses 64 hex characters (surrounding white space allowed). Returns 0 or
 * -1; hex_decode wipes its own stack copies. */
static int parse_hex_key(uint8_t key[static KEYSOURCE_KEY_LEN], const char *s, size_t len)
{
    trim(&s, &len);
    if (len != 2 * KEYSOURCE_KEY_LEN)
        return -1;
    return hex_decode(key, s, len);
}

static int load_file(uint8_t key[static KEYSOURCE_KEY_LEN], const char *prog, const char *path)
{
    /* Room for 64 hex digits with some white space; one byte more than
     * that tells a longer file, which holds no key. */
    char data[2 * KEYSOURCE_KEY_LEN + 8];
    struct stat st;
    size_t got = 0;
    int rc = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        node_log("%s: %s %s: %s", prog, KEYSOURCE_OPTION, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        node_log("%s: warning: key file %s may be read by other users (chmod 600 it)", prog,
                 path);
    while (got < sizeof(data)) {
        ssize_t n = read(fd, data + got, sizeof(data) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            node_log("%s: %s %s: %s", prog, KEYSOURCE_OPTION, path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }

    const char *text = data;
    size_t text_len = got;
    trim(&text, &text_len);
    bool hex_text = got < sizeof(data) && all_hex(text, text_len);
    if (got == KEYSOURCE_KEY_LEN && !hex_text) {
        memcpy(key, data, KEYSOURCE_KEY_LEN); /* 32 raw bytes */
        rc = 0;
    } else if (hex_text && text_len == 2 * KEYSOURCE_KEY_LEN) {
        rc = parse_hex_key(key, data, got);
    } else if (hex_text && text_len) {
        /* Hex of the wrong length; 32 digits (a 128-bit key) is the likely
         * mistake, and a 32-byte file of them must not pass as raw bytes. */
        node_log("%s: %s %s: holds %zu hex digits, not 64%s; %s", prog, KEYSOURCE_OPTION,
                 path, text_len,
                 text_len == KEYSOURCE_KEY_LEN ? " (a 128-bit key? this node needs 256 bits)"
                                               : "",
                 ACCEPTED);
    } else {
        node_log("%s: %s %s: not a key; %s", prog, KEYSOURCE_OPTION, path, ACCEPTED);
    }
out:
    close(fd);
    WIPE_OBJ(data);
    return rc;
}

int keysource_load(uint8_t key[static KEYSOURCE_KEY_LEN], const char *prog,
                   const char *key_file, enum keysource_origin *origin)
{
    int rc = -1;
    char *env = getenv(KEYSOURCE_ENV);
    OPENSSL_cleanse(key, KEYSOURCE_KEY_LEN);
    *origin = KEYSOURCE_FROM_NONE;
    if (env && key_file) {
        node_log("%s: both %s and %s are set; give one", prog, KEYSOURCE_OPTION,
                 KEYSOURCE_ENV);
    } else if (env) {
        if (parse_hex_key(key, env, strlen(env)) == 0) {
            *origin = KEYSOURCE_FROM_ENV;
            rc = 0;
        } else {
            node_log("%s: %s must be 64 hex characters (32 bytes)", prog, KEYSOURCE_ENV);
        }
    } else if (key_file) {
        if (load_file(key, prog, key_file) == 0) {
            *origin = KEYSOURCE_FROM_FILE;
            rc = 0;
        }
    } else {
        rc = 0;
    }
    /* Scrub the variable so the key does not linger in our environment (or
     * in a child's, or in /proc/PID/environ). */
    if (env) {
        OPENSSL_cleanse(env, strlen(env));
        unsetenv(KEYSOURCE_ENV);
    }
    if (rc)
        OPENSSL_cleanse(key, KEYSOURCE_KEY_LEN);
    return rc;
}
