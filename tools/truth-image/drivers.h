/* What workload.c shares with the coverage drivers (drive_*.c): the deterministic input
 * generator, the zlib arena, and branch-free failure counting.
 *
 * The drivers exist to execute — and so let the harness interrupt — every instruction of
 * the third-party code in the image.  A driver never branches on a library failure: it
 * counts it with expect() (cset + add, no code that only runs on a bug), so that the
 * drivers' own instructions are all executed too. */
#ifndef TRUTH_DRIVERS_H
#define TRUTH_DRIVERS_H

#include "zlib.h"

#ifndef noinline
#define noinline __attribute__((noinline))
#endif

extern unsigned long truth_failures;
extern unsigned long arena_used;

void make_input(unsigned char *buf, unsigned long n, unsigned long seed);
voidpf arena_alloc(voidpf opaque, uInt items, uInt size);
void arena_free(voidpf opaque, voidpf address);

/* Count a failed expectation without a branch (truth_failures must stay 0). */
static inline void expect(int ok)
{
	truth_failures += (ok == 0);
}

/* The same, stated as the failure condition (use | and &, not || and &&: no branches). */
static inline void fail_if(int bad)
{
	truth_failures += (bad != 0);
}

unsigned long drive_zlib(void);
unsigned long drive_lz4_compress(void);
unsigned long drive_lz4_decompress(void);
unsigned long drive_xxhash(void);

#endif
