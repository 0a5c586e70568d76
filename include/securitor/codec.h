/* codec.h - hex and base64 (RFC 4648, standard alphabet, padded), and UTF-8.
 *
 * Decoders are strict: any character outside the alphabet, a wrong length,
 * bad padding or non-zero pad bits is refused. They never read past `len`
 * and never write past the size they promise.
 *
 * Threads: no state is kept (base64's table is a constant), so any thread
 * may call any of them at any time.
 */
#ifndef SECURITOR_CODEC_H
#define SECURITOR_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes 2*n lowercase hex characters (no NUL). */
void hex_encode(char *out, const uint8_t *in, size_t n);
/* Decodes `len` hex characters (either case) into len/2 bytes.
 * Returns 0, or -1 for an odd length or a non-hex character. */
__attribute__((warn_unused_result))
int hex_decode(uint8_t *out, const char *in, size_t len);

/* Characters base64_encode writes for n bytes (no NUL). */
static inline size_t base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }
/* Upper bound on the bytes base64_decode writes for len characters. */
static inline size_t base64_decoded_max(size_t len) { return len / 4 * 3; }
void base64_encode(char *out, const uint8_t *in, size_t n);
/* Decodes padded base64. Returns 0 and sets *out_len, or -1. */
__attribute__((warn_unused_result))
int base64_decode(uint8_t *out, size_t *out_len, const char *in, size_t len);

/* True when the bytes are well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). NUL bytes are valid UTF-8; callers that cannot
 * carry them check separately. */
bool utf8_valid(const uint8_t *s, size_t n);
/* True when the bytes are well-formed UTF-8 without NUL bytes: text that a
 * JSON string carries losslessly through cJSON's C strings. */
bool utf8_text_valid(const uint8_t *s, size_t n);
/* True when the bytes are well-formed UTF-8 without any byte below 0x20
 * (no C0 control character, NUL included): nearly every JSON line, which
 * then needs no closer look. */
bool utf8_printable(const uint8_t *s, size_t n);
/* Length (1-4) of the well-formed UTF-8 character at s (n > 0 bytes
 * available), or 0 when the bytes there are not one. */
size_t utf8_char_len(const uint8_t *s, size_t n);

#endif
