/* simd.h - whether the scanners take their SSE2 paths.
 *
 * The hex codec, the UTF-8 check and the JSON string writer touch every byte
 * of every message; on megabyte messages they are most of the node's work.
 * Every x86-64 CPU has SSE2, so there they take 16 bytes a step with it.
 * Elsewhere, or when the build defines SECURITOR_NO_SIMD, they run portable
 * loops instead. The two paths give the same results byte for byte: the tests
 * are built both ways (tests/CMakeLists.txt) and check both.
 */
#ifndef SECURITOR_SIMD_H
#define SECURITOR_SIMD_H

#if defined(__SSE2__) && !defined(SECURITOR_NO_SIMD)
#define SECURITOR_SSE2 1
#include <emmintrin.h>
#else
#define SECURITOR_SSE2 0
#endif

#endif
