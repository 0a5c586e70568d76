/* wipe.c - wiping the stack below the caller (see wipe.h). */
#include "securitor/wipe.h"

/* Not inlined, so that its frame lies below its caller's, over the frames
 * the caller's callees used. The barrier keeps the array from being
 * optimised away. */
__attribute__((noinline)) void wipe_stack(void)
{
    unsigned char pad[WIPE_STACK_DEPTH];
    explicit_bzero(pad, sizeof(pad));
    __asm__ volatile("" : : "r"(pad) : "memory");
}
