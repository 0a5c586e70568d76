/* codec_portable.h - the portable build of src/crypto/codec.c under other
 * names, so that fuzz_codec links it beside the SSE2 build.
 *
 * tests/fuzz/CMakeLists.txt compiles codec.c with SECURITOR_NO_SIMD and this
 * file force-included (-include), which renames every function the header
 * declares. A target that defines CODEC_PORTABLE_DECLARE before including
 * it gets the portable_* prototypes instead, and keeps the usual names for
 * the SSE2 build.
 */
#define hex_encode portable_hex_encode
#define hex_decode portable_hex_decode
#define base64_encoded_len portable_base64_encoded_len
#define base64_decoded_max portable_base64_decoded_max
#define base64_encode portable_base64_encode
#define base64_decode portable_base64_decode
#define utf8_valid portable_utf8_valid
#define utf8_text_valid portable_utf8_text_valid
#define utf8_printable portable_utf8_printable
#define utf8_char_len portable_utf8_char_len

#ifdef CODEC_PORTABLE_DECLARE
#undef SECURITOR_CODEC_H
#include "securitor/codec.h"
#undef hex_encode
#undef hex_decode
#undef base64_encoded_len
#undef base64_decoded_max
#undef base64_encode
#undef base64_decode
#undef utf8_valid
#undef utf8_text_valid
#undef utf8_printable
#undef utf8_char_len
#endif
