/* codec.c - hex, base64 and UTF-8 validation (see codec.h).
 *
 * These run on every message, so they avoid per-byte branches. On x86-64
 * (see simd.h) hex and the ASCII stretches of UTF-8 go 16 bytes a step with
 * SSE2; the portable loops finish what is left and do everything elsewhere
 * (where short inputs encode to hex from a table of digit pairs). Base64
 * decodes through a 256-entry table where -1 marks a character outside the
 * alphabet.
 * None of them is a cryptographic primitive.
 */
#include "securitor/codec.h"

#include <string.h>

#include "securitor/simd.h"
#include "securitor/wipe.h"

static const char B64_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 decoding: B64_VALUE1 maps a character to its value plus one, and
 * every character outside the alphabet to 0 (so that the table is a
 * constant: no first-use set-up, nothing shared between threads). */
static const uint8_t B64_VALUE1[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
    ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15,
    ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
    ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29,
    ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36,
    ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43,
    ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50,
    ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57,
    ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

#if !SECURITOR_SSE2
/* The two hex digits of every byte value, for short inputs. */
static const char HEX_PAIRS[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
#endif

#if SECURITOR_SSE2
/* 16 bytes to 32 digits: split them into nibbles, turn each into its digit
 * ('0' + v, plus 39 more from 10 up, which lands on 'a'), and interleave the
 * high and low digits. */
static inline void hex_encode16(char *out, const uint8_t *in)
{
    const __m128i low4 = _mm_set1_epi8(0x0F), nine = _mm_set1_epi8(9),
                  zero = _mm_set1_epi8('0'), gap = _mm_set1_epi8('a' - '0' - 10);
    __m128i x = _mm_loadu_si128((const __m128i *)in);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low4);
    __m128i lo = _mm_and_si128(x, low4);
    hi = _mm_add_epi8(_mm_add_epi8(hi, zero), _mm_and_si128(_mm_cmpgt_epi8(hi, nine), gap));
    lo = _mm_add_epi8(_mm_add_epi8(lo, zero), _mm_and_si128(_mm_cmpgt_epi8(lo, nine), gap));
    _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi8(hi, lo));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_unpackhi_epi8(hi, lo));
}
#endif

void hex_encode(char *out, const uint8_t *in, size_t n)
{
    size_t i = 0;
#if SECURITOR_SSE2
    for (; n - i >= 16; i += 16)
        hex_encode16(out + 2 * i, in + i);
    if (i < n) { /* the tail (or an IV) as one zero-padded block */
        uint8_t block[16] = {0};
        char digits[32];
        memcpy(block, in + i, n - i);
        hex_encode16(digits, block);
        memcpy(out + 2 * i, digits, 2 * (n - i));
        wipe_bytes(block, sizeof(block)); /* the bytes may be a key */
        wipe_bytes(digits, sizeof(digits));
    }
#else
    /* Branch-free arithmetic (the same digit rule) that gcc vectorises:
     * several GB/s, against ~0.7 GB/s for the pair table. */
    if (n >= 64) {
        for (; i < n; i++) {
            uint8_t hi = in[i] >> 4, lo = in[i] & 15;
            out[2 * i] = (char)(hi + '0' + ((9 - hi) >> 7 & 39));
            out[2 * i + 1] = (char)(lo + '0' + ((9 - lo) >> 7 & 39));
        }
    }
    /* Short inputs (IVs, tags) from the pair table. */
    for (; i < n; i++)
        memcpy(out + 2 * i, HEX_PAIRS + 2 * in[i], 2);
#endif
}

#if SECURITOR_SSE2
/* The values of 16 hex digits. A byte is a digit when c - '0' <= 9, or a
 * letter when (c | 0x20) - 'a' <= 5 (unsigned: a saturating subtract of the
 * bound leaves 0 exactly then). Lanes that are neither clear their lane of
 * *ok. */
static inline __m128i hex_values(__m128i c, __m128i *ok)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i d = _mm_sub_epi8(c, _mm_set1_epi8('0'));
    __m128i l = _mm_sub_epi8(_mm_or_si128(c, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    __m128i is_d = _mm_cmpeq_epi8(_mm_subs_epu8(d, _mm_set1_epi8(9)), zero);
    __m128i is_l = _mm_cmpeq_epi8(_mm_subs_epu8(l, _mm_set1_epi8(5)), zero);
    *ok = _mm_and_si128(*ok, _mm_or_si128(is_d, is_l));
    return _mm_or_si128(_mm_and_si128(is_d, d),
                        _mm_and_si128(is_l, _mm_add_epi8(l, _mm_set1_epi8(10))));
}

/* Sixteen digit values to eight bytes, in 16-bit lanes: each lane holds a
 * pair, its first (high) digit in the low byte. */
static inline __m128i hex_pairs(__m128i v)
{
    return _mm_or_si128(_mm_slli_epi16(_mm_and_si128(v, _mm_set1_epi16(0x00FF)), 4),
                        _mm_srli_epi16(v, 8));
}

/* 32 digits to 16 bytes; a bad digit clears its lane of *ok. */
static inline void hex_decode16(uint8_t *out, const char *in, __m128i *ok)
{
    __m128i a = hex_values(_mm_loadu_si128((const __m128i *)in), ok);
    __m128i b = hex_values(_mm_loadu_si128((const __m128i *)(in + 16)), ok);
    _mm_storeu_si128((__m128i *)out, _mm_packus_epi16(hex_pairs(a), hex_pairs(b)));
}
#endif

int hex_decode(uint8_t *out, const char *in, size_t len)
{
    if (len % 2)
        return -1;
    size_t n = len / 2, i = 0;
    unsigned bad = 0;
#if SECURITOR_SSE2
    __m128i ok = _mm_set1_epi8(-1);
    for (; n - i >= 16; i += 16)
        hex_decode16(out + i, in + 2 * i, &ok);
    if (i < n) { /* the tail (or an IV, a tag) as one block padded with '0's */
        char digits[32];
        uint8_t bytes[16];
        memset(digits, '0', sizeof(digits));
        memcpy(digits, in + 2 * i, 2 * (n - i));
        hex_decode16(bytes, digits, &ok);
        memcpy(out + i, bytes, n - i);
        wipe_bytes(bytes, sizeof(bytes)); /* the bytes may be a key */
        wipe_bytes(digits, sizeof(digits));
        i = n;
    }
    bad = _mm_movemask_epi8(ok) != 0xFFFF;
#endif
    /* Branch-free so gcc vectorises it: the value of a digit is its low
     * nibble, plus 9 for letters (bit 6 set); validity is accumulated. */
    for (; i < n; i++) {
        uint8_t h = (uint8_t)in[2 * i], l = (uint8_t)in[2 * i + 1];
        uint8_t hl = h | 0x20, ll = l | 0x20; /* fold case for a-f */
        bad |= (unsigned)(!((h >= '0' && h <= '9') | (hl >= 'a' && hl <= 'f')));
        bad |= (unsigned)(!((l >= '0' && l <= '9') | (ll >= 'a' && ll <= 'f')));
        out[i] = (uint8_t)((((h & 15) + (h >> 6) * 9) << 4) | (((l & 15) + (l >> 6) * 9) & 15));
    }
    return bad ? -1 : 0;
}

void base64_encode(char *out, const uint8_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = B64_ALPHABET[v >> 18];
        *out++ = B64_ALPHABET[(v >> 12) & 63];
        *out++ = B64_ALPHABET[(v >> 6) & 63];
        *out++ = B64_ALPHABET[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = B64_ALPHABET[v >> 18];
        *out++ = B64_ALPHABET[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = B64_ALPHABET[v >> 18];
        *out++ = B64_ALPHABET[(v >> 12) & 63];
        *out++ = B64_ALPHABET[(v >> 6) & 63];
        *out++ = '=';
    }
}


int base64_decode(uint8_t *out, size_t *out_len, const char *in, size_t len)
{
    if (len % 4)
        return -1;
    size_t pad = 0;
    if (len && in[len - 1] == '=')
        pad = (len >= 2 && in[len - 2] == '=') ? 2 : 1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int a = B64_VALUE1[(uint8_t)in[i]] - 1, b = B64_VALUE1[(uint8_t)in[i + 1]] - 1;
        int c = (last && pad == 2) ? 0 : B64_VALUE1[(uint8_t)in[i + 2]] - 1;
        int d = (last && pad >= 1) ? 0 : B64_VALUE1[(uint8_t)in[i + 3]] - 1;
        if ((a | b | c | d) < 0)
            return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        if (!(last && pad == 2))
            out[o++] = (uint8_t)(v >> 8);
        if (!(last && pad >= 1))
            out[o++] = (uint8_t)v;
        /* RFC 4648 §3.5: pad bits must be zero (one encoding per value). */
        if (last && pad == 2 && (v & 0xFFFF))
            return -1;
        if (last && pad == 1 && (v & 0xFF))
            return -1;
    }
    *out_len = o;
    return 0;
}

size_t utf8_char_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t need;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        cp = c & 0x07;
    } else {
        return 0; /* continuation byte, overlong lead, or > U+10FFFF */
    }
    if (n - 1 < need)
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need + 1;
}

#define BYTES_01 0x0101010101010101ULL
#define BYTES_80 0x8080808080808080ULL

/* Nonzero exactly when some byte of w is below lo, for lo <= 128 (Hacker's
 * Delight §6.1: with lo = 1, a zero byte). */
static inline uint64_t byte_below(uint64_t w, uint8_t lo)
{
    return (w - BYTES_01 * lo) & ~w & BYTES_80;
}

/* Looks at `words` 8-byte words at p: 1 when all are ASCII and none is below
 * `lo`, -1 when one is below lo, 0 when some byte needs a closer look. */
static inline int ascii_words(const uint8_t *p, size_t words, uint8_t lo)
{
    uint64_t high = 0, low = 0;
    for (size_t k = 0; k < words; k++) {
        uint64_t w;
        memcpy(&w, p + 8 * k, 8);
        high |= w;
        low |= byte_below(w, lo);
    }
    if (lo && low)
        return -1;
    return !(high & BYTES_80);
}

#if SECURITOR_SSE2
/* ascii_words for 64 bytes with SSE2: the high bits of all bytes by one
 * movemask, and a byte below lo in their unsigned minimum. */
static inline int ascii_block64(const uint8_t *p, uint8_t lo)
{
    __m128i a = _mm_loadu_si128((const __m128i *)p);
    __m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(p + 48));
    if (lo) {
        __m128i least = _mm_min_epu8(_mm_min_epu8(a, b), _mm_min_epu8(c, d));
        __m128i below = _mm_set1_epi8((char)(lo - 1));
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(least, below), least)))
            return -1;
    }
    return !_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)));
}
#endif

/* Looks at the next block of at most 64 bytes: sets *step to its size (0
 * when fewer than 8 bytes are left) and answers as ascii_words does. */
static inline int ascii_block(const uint8_t *p, size_t avail, uint8_t lo, size_t *step)
{
#if SECURITOR_SSE2
    if (avail >= 64) {
        *step = 64;
        return ascii_block64(p, lo);
    }
#endif
    if (avail >= 32) {
        *step = 32;
        return ascii_words(p, 4, lo);
    }
    *step = avail >= 8 ? 8 : 0;
    return *step ? ascii_words(p, 1, lo) : 0;
}

/* Well-formed UTF-8 with no byte below lo (0: any; 1: no NUL; 0x20: no
 * control character). Inlined into each caller so that lo folds away. */
static inline __attribute__((always_inline)) bool utf8_scan(const uint8_t *s, size_t n,
                                                           uint8_t lo)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII blocks are skipped whole; a block holding other bytes (or
         * the last few bytes) is walked one character at a time. */
        size_t step, stop = n;
        int r = ascii_block(s + i, n - i, lo, &step);
        if (r < 0)
            return false;
        if (r) {
            i += step;
            continue;
        }
        if (step)
            stop = i + step;
        while (i < stop) {
            if (s[i] < 0x80) {
                if (s[i] < lo)
                    return false;
                i++;
                continue;
            }
            size_t k = utf8_char_len(s + i, n - i);
            if (!k)
                return false;
            i += k;
        }
    }
    return true;
}

bool utf8_valid(const uint8_t *s, size_t n) { return utf8_scan(s, n, 0); }

bool utf8_text_valid(const uint8_t *s, size_t n) { return utf8_scan(s, n, 1); }

bool utf8_printable(const uint8_t *s, size_t n) { return utf8_scan(s, n, 0x20); }
