/* keysource.h - the 32-byte key a node is given at start (PROTOCOL.md §2,
 * and §4: the same key opens a node's state).
 *
 * Two ways to give one, never both, and never in argv:
 *   --key-file PATH   a file holding 64 hex characters (white space around
 *                     them is ignored) or exactly 32 raw bytes;
 *   SECURITOR_KEY     an environment variable holding 64 hex characters.
 *
 * A file of exactly 32 bytes that are all hex digits (once trailing white
 * space is ignored, e.g. 32 hex digits, or 30 and "\r\n") is refused: it is
 * almost certainly a 128-bit key written in hex, not a raw 256-bit key. A
 * random raw key looks like that with probability (22/256)^32 < 10^-33.
 *
 * The key never appears in messages: errors name the path or the variable,
 * never the value. The variable is wiped and removed from the environment as
 * soon as it has been read, whether or not it held a key. Every buffer that
 * held key material is wiped before it is left.
 */
#ifndef SECURITOR_KEYSOURCE_H
#define SECURITOR_KEYSOURCE_H

#include <stdint.h>

#define KEYSOURCE_KEY_LEN 32
#define KEYSOURCE_ENV "SECURITOR_KEY"
#define KEYSOURCE_OPTION "--key-file"

/* Where the key came from. */
enum keysource_origin {
    KEYSOURCE_FROM_NONE = 0, /* neither was given: the caller decides (a random key, or exit) */
    KEYSOURCE_FROM_FILE = 1,
    KEYSOURCE_FROM_ENV = 2,
};

/* Recognises --key-file in argv[*i] ("--key-file PATH" or
 * "--key-file=PATH") and sets *path. Returns 1 when it took the option
 * (advancing *i past PATH when it was a separate argument), 0 when argv[*i]
 * is something else, -1 when PATH is missing (a stderr line says so, with
 * `prog` as prefix). */
__attribute__((warn_unused_result))
int keysource_option(const char *prog, int argc, char **argv, int *i, const char **path);

/* Loads the key from key_file (when not NULL) or from SECURITOR_KEY, and
 * sets *origin. Returns 0 with the key in `key` (or, for KEYSOURCE_FROM_NONE,
 * the key left zeroed); -1 after a stderr line that says what is wrong and
 * which formats are accepted (then `key` is zeroed). Both given is an
 * error. A key file that other users may read gets a warning on stderr. */
__attribute__((warn_unused_result))
int keysource_load(uint8_t key[static KEYSOURCE_KEY_LEN], const char *prog,
                   const char *key_file, enum keysource_origin *origin);

#endif
