/* Coverage driver: see drivers.h.  Returns a checksum of every result (folded into
 * task_main's result, which the harness compares with an uninterrupted run).
 *
 * xxHash beyond what workload.c's xxhash_variety/hash_all/xxhash_matrix reach: XXH3's
 * streaming state machine at its block and stripe boundaries, seed 0 through the seeded
 * long path, re-resets that keep or regenerate the custom secret, external secrets, and the
 * checks on NULL states, NULL secrets and NULL inputs.  Every streamed XXH3 digest is
 * compared with the one-shot hash of the same bytes (expect()), so a wrong path is a
 * failure, not just a different checksum.
 *
 * XXH3 streaming geometry with the default 192-byte secret: a stripe is 64 bytes, a block
 * is 16 stripes (1024 bytes), the internal buffer holds 4 stripes (256 bytes); update()
 * only buffers while the buffer does not overflow, and always keeps the last 1..256 bytes
 * buffered for digest(). */
#include "truth.h"
#define XXH_STATIC_LINKING_ONLY
#include "xxhash.h"
#include "drivers.h"

#define DATA_SIZE 2400

static unsigned char data[DATA_SIZE];
static unsigned char secret[256];	/* 200 bytes used; the 80-byte window stays inside */
static XXH3_state_t state3;
static XXH64_state_t state64;
static XXH32_state_t state32;

/* Stream data[0..total) into state3 as the pieces first, second, rest; return the digest
 * after checking it against the expected one-shot hash. */
static noinline unsigned long stream3(unsigned long first, unsigned long second,
				      unsigned long total, XXH64_hash_t expected)
{
	XXH64_hash_t digest;

	expect(XXH3_64bits_update(&state3, data, first) == XXH_OK);
	expect(XXH3_64bits_update(&state3, data + first, second) == XXH_OK);
	expect(XXH3_64bits_update(&state3, data + first + second,
				  total - first - second) == XXH_OK);
	digest = XXH3_64bits_digest(&state3);
	expect(digest == expected);
	return digest;
}

/* Continue the stream in state3 with data[from..from+n) and check the new digest. */
static noinline unsigned long stream3_more(unsigned long from, unsigned long n,
					   XXH64_hash_t expected)
{
	XXH64_hash_t digest;

	expect(XXH3_64bits_update(&state3, data + from, n) == XXH_OK);
	digest = XXH3_64bits_digest(&state3);
	expect(digest == expected);
	return digest;
}

/* Streaming with the default secret (seed 0 → XXH3_64bits_reset) or a seed (custom secret
 * derived from it): one-shot reference XXH3_64bits_withSeed, which for seed 0 takes the
 * default-secret long path XXH3_hashLong_64b_withSeed(seed = 0). */
static noinline unsigned long seeded_streams(XXH64_hash_t seed)
{
	/* piece sizes {first, second, total} chosen for the path named beside them */
	static const unsigned short plans[][3] = {
		{ 1030, 0, 1030 },	/* direct: exactly one block of stripes, 6 bytes left:
					 * digest rebuilds the last stripe from the buffer's tail */
		{ 2200, 0, 2200 },	/* direct: two whole blocks, then a partial block */
		{ 2100, 0, 2100 },	/* direct: two whole blocks, nothing after them */
		{ 833, 200, 1033 },	/* 13 stripes consumed, 201 bytes buffered: digest
					 * crosses the block end with the buffered stripes */
		{ 897, 200, 1097 },	/* 14 consumed: digest finishes the block, then one
					 * stripe of the next */
		{ 1024, 0, 1024 },	/* exactly a block: 15 stripes + a full last stripe */
		{ 200, 100, 300 },	/* buffer overflows: 4 stripes consumed, 44 bytes left */
		{ 100, 1500, 1700 },	/* buffer filled and consumed, then a direct run that
					 * crosses the block end */
		{ 250, 6, 256 },	/* buffer exactly full (256), nothing consumed yet */
	};
	unsigned long h = 0;

	for (unsigned long i = 0; i < sizeof(plans) / sizeof(plans[0]); i++) {
		unsigned long total = plans[i][2];

		expect(XXH3_64bits_reset_withSeed(&state3, seed) == XXH_OK);
		h = h * 31 + stream3(plans[i][0], plans[i][1], total,
				     XXH3_64bits_withSeed(data, total, seed));
		/* the digest leaves the state usable: more input, digest again */
		h = h * 31 + stream3_more(total, 7, XXH3_64bits_withSeed(data, total + 7, seed));
	}
	return h;
}

static noinline unsigned long resets(void)
{
	unsigned long h = 0;

	/* the same seed again: the custom secret derived from it is kept */
	expect(XXH3_64bits_reset_withSeed(&state3, 0x9e3779b1) == XXH_OK);
	expect(XXH3_64bits_reset_withSeed(&state3, 0x9e3779b1) == XXH_OK);
	h = h * 31 + stream3(600, 600, 1300, XXH3_64bits_withSeed(data, 1300, 0x9e3779b1));

	/* an external secret with a seed: short totals hash with the seed, long ones with the
	 * secret (as XXH3_64bits_withSecretandSeed does) */
	expect(XXH3_64bits_reset_withSecretandSeed(&state3, secret, 200, 0x9e3779b1) == XXH_OK);
	h = h * 31 + stream3(100, 100, 230, XXH3_64bits_withSeed(data, 230, 0x9e3779b1));
	expect(XXH3_64bits_reset_withSecretandSeed(&state3, secret, 200, 0) == XXH_OK);
	h = h * 31 + stream3(100, 100, 230, XXH3_64bits_withSeed(data, 230, 0));
	expect(XXH3_64bits_reset_withSecretandSeed(&state3, secret, 200, 0x9e3779b1) == XXH_OK);
	h = h * 31 + stream3(300, 900, 1500, XXH3_64bits_withSecret(data, 1500, secret, 200));
	/* same seed as the state's, but the state points at an external secret: the custom
	 * secret must be derived again */
	expect(XXH3_64bits_reset_withSeed(&state3, 0x9e3779b1) == XXH_OK);
	h = h * 31 + stream3(900, 300, 1500, XXH3_64bits_withSeed(data, 1500, 0x9e3779b1));

	/* an external secret alone */
	expect(XXH3_64bits_reset_withSecret(&state3, secret, 200) == XXH_OK);
	h = h * 31 + stream3(40, 300, 900, XXH3_64bits_withSecret(data, 900, secret, 200));
	h = h * 31 + stream3_more(900, 100, XXH3_64bits_withSecret(data, 1000, secret, 200));
	return h;
}

/* The checks: NULL state, NULL secret, a secret shorter than XXH3_SECRET_SIZE_MIN, NULL
 * input (a no-op that must succeed). */
static noinline unsigned long refusals(void)
{
	unsigned long h = 0;

	expect(XXH3_64bits_reset_withSeed(NULL, 5) == XXH_ERROR);
	expect(XXH3_64bits_reset_withSecret(NULL, secret, 200) == XXH_ERROR);
	expect(XXH3_64bits_reset_withSecret(&state3, NULL, 200) == XXH_ERROR);
	expect(XXH3_64bits_reset_withSecretandSeed(NULL, secret, 200, 1) == XXH_ERROR);
	expect(XXH3_64bits_reset_withSecretandSeed(&state3, NULL, 200, 1) == XXH_ERROR);
	expect(XXH3_64bits_reset_withSecretandSeed(&state3, secret, 135, 1) == XXH_ERROR);

	expect(XXH3_64bits_reset_withSeed(&state3, 17) == XXH_OK);
	expect(XXH64_reset(&state64, 17) == XXH_OK);
	expect(XXH32_reset(&state32, 17) == XXH_OK);
	expect(XXH3_64bits_update(&state3, NULL, 0) == XXH_OK);
	expect(XXH64_update(&state64, NULL, 0) == XXH_OK);
	expect(XXH32_update(&state32, NULL, 0) == XXH_OK);
	h = h * 31 + stream3(0, 0, 0, XXH3_64bits_withSeed(data, 0, 17));
	expect(XXH64_digest(&state64) == XXH64(data, 0, 17));
	expect(XXH32_digest(&state32) == XXH32(data, 0, 17));
	h = h * 31 + XXH64_digest(&state64) + XXH32_digest(&state32);

	/* A secret shorter than XXH3_SECRET_SIZE_MIN (80 bytes: 2 stripes per block).  The
	 * API documents XXH_ERROR for it, but XXH3_reset_internal states the minimum as
	 * XXH_ASSERT, which is XXH_ASSUME at XXH_DEBUGLEVEL 0, so gcc drops the size check and
	 * the state is reset with the short secret (the return code is folded, not expected).
	 * Hashing on with it is the only way to make the buffered-stripe loops of update() and
	 * digest() (at most 4 stripes) run past a block end twice: with any secret the API
	 * accepts, a block is >= 9 stripes.  Every read stays inside the 80 bytes (the last
	 * scramble key ends at byte 80, the merge keys at 75), and the streamed digest must
	 * equal the one-shot long hash with the same secret. */
	h = h * 31 + XXH3_64bits_reset_withSecret(&state3, secret + 40, 80);
	h = h * 31 + stream3(321, 300, 821, XXH3_64bits_withSecret(data, 821, secret + 40, 80));
	return h;
}

unsigned long drive_xxhash(void)
{
	unsigned long h;

	make_input(data, DATA_SIZE, 0x5eed);
	make_input(secret, sizeof(secret), 0xc0ffee);
	XXH3_INITSTATE(&state3);
	h = seeded_streams(0);
	h = h * 31 + seeded_streams(0x243f6a8885a308d3UL);
	h = h * 31 + resets();
	h = h * 31 + refusals();
	return h;
}
