/* Coverage driver: see drivers.h.  Returns a checksum of every result (folded into
 * task_main's result, which the harness compares with an uninterrupted run).
 *
 * LZ4 compression.  LZ4_compress_generic() is inlined once per (table type, dictionary
 * mode, dictionary issue, output directive), and the entry points select them:
 *   LZ4_compress_fast_extState      noDict, byU16/byU32 x notLimited/limitedOutput
 *   LZ4_compress_destSize_extState  noDict, byU16/byU32 x fillOutput
 *   LZ4_compress_fast_continue      byU32, limitedOutput x withPrefix64k (dictSmall,
 *                                   noDictIssue), usingExtDict (dictSmall, noDictIssue,
 *                                   a copied dictCtx), usingDictCtx
 * Every variant runs over one corpus built to reach each path (long literal runs and
 * matches, a match found far ahead of its start, matches crossing the end of an external
 * dictionary, candidates beyond the 64 KiB window), with output limits placed at each
 * overflow exit, and with the sizes the library rejects before reading (empty, negative,
 * too large).  Each successful compression is verified by decompressing it. */
#include "truth.h"
#include "drivers.h"
#define LZ4_STATIC_LINKING_ONLY
#include "lz4.h"

#define CORPUS_SIZE (66 * 1024 + 512)	/* >= LZ4_64Klimit: byU32 tables in the one-shot APIs */
#define SHAPES_SIZE 6000		/* the part of the corpus with structure */
#define PREFIX_SIZE 2048		/* the area before the corpus: an adjacent dictionary */
#define DICT_SIZE 2048			/* the external dictionary */
#define AREA_SIZE (PREFIX_SIZE + CORPUS_SIZE)
#define BIG_DICT_AT (AREA_SIZE - 65536)	/* LZ4_loadDict keeps the last 64 KiB */
#define CATCH_CAP 2023			/* output limit: the catch-up match is cut short */

static LZ4_stream_t cstate, cstream, cdict, cdict_big;
static unsigned char area[AREA_SIZE];
#define corpus (area + PREFIX_SIZE)
static unsigned char dictbuf[DICT_SIZE];
static unsigned char periodic[PREFIX_SIZE + 4400];	/* text, then "wxyz" repeated */
static unsigned char cpacked[CORPUS_SIZE + CORPUS_SIZE / 255 + 64];
static unsigned char cout[CORPUS_SIZE];
static unsigned long lz4c_sum;

static void mix(long value)
{
	lz4c_sum = lz4c_sum * 1000003UL + (unsigned long)value;
}

/* Incompressible bytes. */
static noinline void random_fill(unsigned char *buf, unsigned long n, unsigned long seed)
{
	unsigned long x = seed * 0x9E3779B97F4A7C15UL + 1;

	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + 1442695040888963407UL;
		buf[i] = (unsigned char)(x >> 41);
	}
}

/* The corpus:
 *   [0, 3200)     random; [2003, 3103) repeats [3, 1103): with acceleration 1000 the
 *                 search probes 1, 2, 1002, 2002, 3002 and finds that repeat at 3002,
 *                 999 bytes after its start (catch-up; literal run >= 270; match > 1039)
 *   [3200, 4400)  text: short matches, immediate next-position matches
 *   [4400, 4472)  the external dictionary's last 32 bytes (period 4), then [0, 40)
 *                 again: a match reaching the dictionary's end continues at the start
 *   [4472, 5000)  zeros, with 8 bytes of the dictionary at 4600 (a short match in it)
 *   [5000, 5300)  300 random bytes of the dictionary (a long match in it)
 *   [5300, 5600)  repeats text; [5600, 6000) random (last literals of the 6000 shapes)
 *   [6000, ...)   zeros; [65652, 65952) repeats [0, 300) and the last 700 bytes repeat
 *                 [0, 700): candidates more than 64 KiB back (too far)
 * The area before it is text (an adjacent dictionary). */
static noinline void build_corpus(void)
{
	memset(area, 0, sizeof(area));
	make_input(area, PREFIX_SIZE, 9);
	random_fill(dictbuf, DICT_SIZE, 6);
	random_fill(corpus, 3200, 1);
	memcpy(corpus + 2003, corpus + 3, 1100);
	corpus[2002] = (unsigned char)~corpus[2];
	make_input(corpus + 3200, 1200, 5);
	memcpy(dictbuf + 100, corpus + 3400, 500);	/* text the corpus repeats */
	for (int i = DICT_SIZE - 64; i < DICT_SIZE; i++)	/* period 4 (run_periodic) */
		dictbuf[i] = (unsigned char)"wxyz"[i & 3];
	memcpy(corpus + 4400, dictbuf + DICT_SIZE - 32, 32);
	memcpy(corpus + 4432, corpus, 40);
	memcpy(corpus + 4600, dictbuf + 1000, 8);	/* a short dictionary match */
	memcpy(corpus + 5000, dictbuf + 600, 300);	/* a long one (random elsewhere) */
	memcpy(corpus + 5300, corpus + 3300, 300);
	random_fill(corpus + 5600, 400, 3);
	memcpy(corpus + 65652, corpus, 300);
	memcpy(corpus + CORPUS_SIZE - 700, corpus, 700);
	memcpy(periodic, area, PREFIX_SIZE);
	for (int i = 0; i < 4400; i++)
		periodic[PREFIX_SIZE + i] = (unsigned char)"wxyz"[i & 3];
	periodic[PREFIX_SIZE + 4280] = '!';
}

enum mode {
	M_FAST,		/* LZ4_compress_fast_extState (limited when cap < bound) */
	M_DEST,		/* LZ4_compress_destSize_extState */
	M_PREFIX_SMALL,	/* continue: prefix, loaded dictionary < 64 KiB (dictSmall) */
	M_PREFIX,	/* continue: prefix, primed by a first block (noDictIssue) */
	M_EXT_SMALL,	/* continue: loaded dictionary elsewhere (dictSmall) */
	M_EXT,		/* continue: a first block elsewhere (noDictIssue) */
	M_CTX,		/* continue: attached cdict (dictCtx; copied above 4 KiB) */
	M_CTX_BIG,	/* continue: attached cdict_big, 64 KiB, its start > 64 KiB back */
	M_COUNT
};

/* Compress src[0, n) with the mode's API and dictionary setup into cpacked (capacity cap);
 * for M_DEST, *consumed is the input it consumed. */
static noinline int compress_mode(int mode, const unsigned char *src, int n, int cap,
				  int acceleration, int *consumed)
{
	LZ4_stream_t *dict = &cdict;
	int r;

	*consumed = n;
	switch (mode) {
	case M_FAST:
		return LZ4_compress_fast_extState(&cstate, (const char *)src, (char *)cpacked, n,
						  cap, acceleration);
	case M_DEST:
		return LZ4_compress_destSize_extState(&cstate, (const char *)src,
						      (char *)cpacked, consumed, cap,
						      acceleration);
	case M_PREFIX_SMALL:
		LZ4_loadDict(&cstream, (const char *)src - PREFIX_SIZE, PREFIX_SIZE);
		break;
	case M_PREFIX:
		LZ4_initStream(&cstream, sizeof(cstream));
		r = LZ4_compress_fast_continue(&cstream, (const char *)src - 16, (char *)cout,
					       16, 64, 1);
		expect(r > 0);
		break;
	case M_EXT_SMALL:
		LZ4_loadDict(&cstream, (const char *)dictbuf, DICT_SIZE);
		break;
	case M_EXT:
		LZ4_initStream(&cstream, sizeof(cstream));
		r = LZ4_compress_fast_continue(&cstream, (const char *)dictbuf, (char *)cout,
					       DICT_SIZE, DICT_SIZE + 64, 1);
		expect(r > 0);
		break;
	case M_CTX_BIG:
		dict = &cdict_big;
		/* fall through */
	default:	/* M_CTX */
		LZ4_initStream(&cstream, sizeof(cstream));
		LZ4_attach_dictionary(&cstream, dict);
		break;
	}
	return LZ4_compress_fast_continue(&cstream, (const char *)src, (char *)cpacked, n, cap,
					  acceleration);
}

/* 1 when a[0, n) == b[0, n): 32 bytes a step, without branching on the data (the
 * image's memcmp goes a byte at a time; the corpus is 66 KiB) */
static noinline int same(const unsigned char *a, const unsigned char *b, unsigned long n)
{
	unsigned long diff = 0, i = 0;

	for (; i + 32 <= n; i += 32) {
		unsigned long x[4], y[4];

		__builtin_memcpy(x, a + i, 32);
		__builtin_memcpy(y, b + i, 32);
		diff |= (x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]);
	}
	for (; i < n; i++)
		diff |= (unsigned long)(a[i] ^ b[i]);
	return diff == 0;
}

/* Decompress cpacked (c bytes) as the mode's output for src[0, n); 1 when it is src. */
static noinline int verify(int mode, const unsigned char *src, int n, int c)
{
	static const int sizes[M_COUNT] = { 0, 0, PREFIX_SIZE, 16, DICT_SIZE, DICT_SIZE,
					    DICT_SIZE, 65536 };
	const unsigned char *dict = mode == M_PREFIX_SMALL || mode == M_PREFIX ?
				    src - sizes[mode] : mode == M_CTX_BIG ?
				    area + BIG_DICT_AT : dictbuf;
	int d = LZ4_decompress_safe_usingDict((const char *)cpacked, (char *)cout, c, n,
					      (const char *)dict, sizes[mode]);

	return (d == n) & same(cout, src, (unsigned long)n);
}

/* A full compression of src[0, n), verified. */
static noinline int run_full(int mode, const unsigned char *src, int n, int acceleration)
{
	int c, consumed;

	c = compress_mode(mode, src, n, (int)sizeof(cpacked), acceleration, &consumed);
	expect((c > 0) & (consumed == n) & verify(mode, src, n, c));
	mix(c);
	return c;
}

/* Compress with a limit; for M_DEST verify the prefix it consumed. */
static noinline void run_cap(int mode, const unsigned char *src, int n, int cap,
			     int acceleration)
{
	int c, consumed;

	c = compress_mode(mode, src, n, cap, acceleration, &consumed);
	expect(mode != M_DEST || ((c <= cap) & verify(M_FAST, src, consumed, c)));
	mix(c);
	mix(consumed);
}

/* A full compression, then limits at each overflow exit: the last literals, the first
 * literal run (10), the first match (2021: its literals fit, its length bytes do not). */
static noinline void run_limits(int mode, const unsigned char *src, int n)
{
	int c = run_full(mode, src, n, 1);

	run_cap(mode, src, n, c, 1);	/* limited (FAST), filled (DEST): just fits */
	run_cap(mode, src, n, c - 1, 1);
	run_cap(mode, src, n, 10, 1);
	run_cap(mode, src, n, 2021, 1);
}

/* 20 random bytes and 33 zeros: the zero match is found at 21 and runs to the match
 * limit, where LZ4_count() ends with its 4-, 2- and 1-byte steps; then only 5 literals.
 * And all-literal blocks (12: below LZ4_minLength; 14 literals: no length byte). */
static noinline void run_tiny(int mode)
{
	static unsigned char tiny[64 + PREFIX_SIZE];
	unsigned char *t = tiny + PREFIX_SIZE;
	int c;

	memcpy(tiny, area, PREFIX_SIZE);
	random_fill(t, 20, 7);
	memset(t + 20, 0, 44);
	c = run_full(mode, t, 53, 1);
	run_cap(mode, t, 53, c, 1);
	/* 17 zeros: the match is found within 8 bytes of the limit (only the last steps) */
	c = run_full(mode, t, 37, 1);
	run_cap(mode, t, 37, c + 16, 1);
	run_full(mode, t, 12, 1);
	run_cap(mode, t, 12, 20, 1);
	run_full(mode, t, 14, 1);
}

/* src[0, n) ends with a match reaching the match limit: compressed unlimited, limited
 * to its size, and filled (with less room than LZ4_compressBound()). */
static noinline void run_limit_tail(const unsigned char *src, int n)
{
	int c = run_full(M_FAST, src, n, 1);

	run_cap(M_FAST, src, n, c, 1);
	run_cap(M_DEST, src, n, c + 16, 1);	/* room for the last match: not cut short */
	/* 8 more zeros: the last match's count goes through its 8-byte loop first */
	run_cap(M_DEST, src, n + 8, n + 8, 1);
}

/* Short matches (8 bytes: LZ4_count()'s first step ends them): S found by the search,
 * then T right after it by the next-position test.  Layout (preceded by text for the
 * prefix modes): R T R S R S T R, R random. */
static noinline void run_short(int mode)
{
	static unsigned char buf[PREFIX_SIZE + 112];
	unsigned char *b = buf + PREFIX_SIZE;

	memcpy(buf, area, PREFIX_SIZE);
	random_fill(b, 112, 11);
	memcpy(b + 40, b + 16, 8);	/* S := T, then a new T */
	random_fill(b + 16, 8, 12);
	memcpy(b + 64, b + 40, 8);
	memcpy(b + 72, b + 16, 8);
	run_full(mode, b, 112, 1);
}

/* A block ending inside a copy of the dictionary (30 random bytes of it) after z zeros,
 * with a blemish 3 bytes before the match limit: the match in the dictionary is bounded
 * by the block's end, and LZ4_count()'s 4-byte step fails there.  With z == 0 the
 * search finds it; after zeros, the next-position test does. */
static noinline void run_dict_tail(int mode, int z)
{
	static unsigned char buf[4200];

	memset(buf, 0, sizeof(buf));
	memcpy(buf + z, dictbuf + 600, 30);
	buf[z + 22] ^= 0x5a;
	run_full(mode, buf, z + 30, 1);
}

/* Size arguments the library rejects or special-cases before reading the input. */
static noinline void run_sizes(int mode, const unsigned char *src)
{
	int consumed;

	mix(compress_mode(mode, src, 0, 1, 1, &consumed));		/* empty block */
	mix(compress_mode(mode, src, 0, 0, 1, &consumed));		/* ... with no room */
	mix(compress_mode(mode, src, LZ4_MAX_INPUT_SIZE + 1, -1, 1, &consumed));
}

/* ... and in the one-shot APIs, whose variants differ by the sizes: unlimited, byU32,
 * negative sizes (the streaming API asserts on those), no room for a non-empty block. */
static noinline void run_sizes_oneshot(int mode, const unsigned char *src)
{
	int consumed;

	mix(compress_mode(mode, src, 0, 16, 1, &consumed));
	mix(compress_mode(mode, src, 100, 0, 1, &consumed));
	mix(compress_mode(mode, src, LZ4_MAX_INPUT_SIZE + 1, 1 << 30, 1, &consumed));
	mix(compress_mode(mode, src, -5, 100, 1, &consumed));
	mix(compress_mode(mode, src, -5, -1, 1, &consumed));
}

/* fillOutput: a match cut short so far back that positions already hashed must be
 * cleared (acceleration 1000, see build_corpus), and cut short after them. */
static noinline void run_fill(const unsigned char *src, int n)
{
	run_cap(M_DEST, src, n, CATCH_CAP, 1000);
	run_cap(M_DEST, src, n, CATCH_CAP, 1);
}

/* A period-4 block continuing the external dictionary's period-4 end: its first match
 * starts in the dictionary, reaches its end and continues at the block's start up to the
 * match limit (n, n + 1: two remainders of LZ4_count()'s last steps; 20, 21: the
 * continuation starts within 12 bytes of the limit). */
static noinline void run_periodic(int mode, int n)
{
	const unsigned char *p = periodic + PREFIX_SIZE;

	for (int k = 0; k < 4; k++)
		run_full(mode, p, k < 2 ? n + k : 18 + k, 1);
	/* from each phase, with a defect 80 bytes on: the continuation stops short, and
	 * the dictionary part starts at every distance from the dictionary's end */
	for (int k = 0; k < 4; k++)
		run_full(mode, p + 4200 + k, 100, 1);
}

/* A block ending inside the stream's dictionary (a ring buffer wrapping around): the
 * dictionary shrinks to the part after the block, to nothing when under 4 bytes, to
 * 64 KiB when longer; and a tiny dictionary next to an attached one. */
static noinline void run_overlap(void)
{
	int c;

	/* the dictionary becomes [4700, 5200) */
	LZ4_initStream(&cstream, sizeof(cstream));
	mix(LZ4_compress_fast_continue(&cstream, (const char *)corpus + 4200, (char *)cpacked,
				       1000, (int)sizeof(cpacked), 1));
	c = LZ4_compress_fast_continue(&cstream, (const char *)corpus + 3700, (char *)cpacked,
				       1000, (int)sizeof(cpacked), 1);
	expect((LZ4_decompress_safe_usingDict((const char *)cpacked, (char *)cout, c, 1000,
					      (const char *)corpus + 4700, 500) == 1000) &
	       same(cout, corpus + 3700, 1000));
	/* ... then 2 bytes are left of [3700, 4700): none */
	c = LZ4_compress_fast_continue(&cstream, (const char *)corpus + 2702, (char *)cpacked,
				       1996, (int)sizeof(cpacked), 1);
	expect((LZ4_decompress_safe((const char *)cpacked, (char *)cout, c, 1996) == 1996) &
	       same(cout, corpus + 2702, 1996));
	/* a 3-byte history, then an attached dictionary, then a block ending inside it */
	LZ4_initStream(&cstream, sizeof(cstream));
	mix(LZ4_compress_fast_continue(&cstream, (const char *)corpus + 3300, (char *)cpacked,
				       3, 64, 1));
	LZ4_attach_dictionary(&cstream, &cdict);
	c = LZ4_compress_fast_continue(&cstream, (const char *)corpus + 3291, (char *)cpacked,
				       11, 64, 1);
	expect((LZ4_decompress_safe_usingDict((const char *)cpacked, (char *)cout, c, 11,
					      (const char *)dictbuf, DICT_SIZE) == 11) &
	       same(cout, corpus + 3291, 11));
	/* a stream with an empty loaded dictionary: its history is dropped, then the size
	 * is refused */
	mix(LZ4_loadDict(&cstream, (const char *)dictbuf, 7));
	mix(LZ4_compress_fast_continue(&cstream, (const char *)corpus, (char *)cpacked,
				       LZ4_MAX_INPUT_SIZE + 1, 64, 1));
}

/* LZ4_renormDictT: a stream whose indexes approach 2 GiB, with more than 64 KiB of
 * history, is rescaled before its next block.  The public state's currentOffset is set
 * directly: reaching it by compressing would take 2 GiB of input.  The first block has
 * candidates more than 64 KiB back (prefix, dictSmall); the second, after the rescale,
 * too (prefix, noDictIssue); both decompress; then a block ending more than 64 KiB
 * before the history's end keeps 64 KiB of it. */
static noinline void run_renorm(void)
{
	const int first = AREA_SIZE - 1500;
	int c1, c2, d;

	LZ4_initStream(&cstream, sizeof(cstream));
	cstream.internal_donotuse.currentOffset = 0x80000000U - 70000;
	c1 = LZ4_compress_fast_continue(&cstream, (const char *)area, (char *)cpacked, first,
					(int)sizeof(cpacked), 1);
	c2 = LZ4_compress_fast_continue(&cstream, (const char *)area + first,
					(char *)cpacked + c1, 1500, (int)sizeof(cpacked) - c1, 1);
	expect(cstream.internal_donotuse.currentOffset == 65536 + 1500);
	d = LZ4_decompress_safe_usingDict((const char *)cpacked + c1, (char *)cout, c2, 1500,
					  (const char *)area, first);
	expect((c1 > 0) & (d == 1500) & same(cout, area + first, 1500));
	mix(c1);
	mix(c2);
	/* a block ending more than 64 KiB before the history's end: 64 KiB are kept */
	c1 = LZ4_compress_fast_continue(&cstream, (const char *)area + 3000, (char *)cpacked,
					1000, (int)sizeof(cpacked), 1);
	d = LZ4_decompress_safe_usingDict((const char *)cpacked, (char *)cout, c1, 1000,
					  (const char *)area + AREA_SIZE - 65536, 65536);
	expect((d == 1000) & same(cout, area + 3000, 1000));
}

/* cdict_big as a working stream: a 64 KiB loaded dictionary (usingExtDict with
 * noDictIssue), hashed at every third position up to 8 bytes before its end; a block
 * holding its last 10 bytes at a hashed phase (the bytes also occur earlier, at an
 * unhashed one) matches them there: LZ4_count() starts within 8 bytes of the limit. */
static noinline void run_dict_end(void)
{
	static unsigned char block[48];
	int c;

	random_fill(block, sizeof(block), 8);
	memcpy(block + 6, corpus + CORPUS_SIZE - 10, 10);
	c = LZ4_compress_fast_continue(&cdict_big, (const char *)block, (char *)cpacked,
				       (int)sizeof(block), (int)sizeof(cpacked), 1);
	mix(c);
	expect((LZ4_decompress_safe_usingDict((const char *)cpacked, (char *)cout, c,
					      (int)sizeof(block), (const char *)area + BIG_DICT_AT,
					      65536) == (int)sizeof(block)) &
	       same(cout, block, sizeof(block)));
}

/* LZ4_initStream's refusals, LZ4_loadDict's tiny and oversized dictionaries,
 * LZ4_loadDictSlow, and LZ4_attach_dictionary with an empty or no dictionary. */
static noinline void run_setup(void)
{
	int c;

	mix(LZ4_initStream(0, sizeof(LZ4_stream_t)) == 0);
	mix(LZ4_initStream(&cstream, sizeof(LZ4_stream_t) - 1) == 0);
	mix(LZ4_initStream((char *)&cstream + 1, sizeof(LZ4_stream_t)) == 0);
	mix(LZ4_loadDict(&cstream, (const char *)dictbuf, 7));
	mix(LZ4_loadDict(&cdict_big, (const char *)area, AREA_SIZE));
	/* a slowly loaded dictionary, used */
	mix(LZ4_loadDictSlow(&cstream, (const char *)dictbuf, DICT_SIZE));
	c = LZ4_compress_fast_continue(&cstream, (const char *)corpus + 3200, (char *)cpacked,
				       1500, (int)sizeof(cpacked), 1);
	expect((c > 0) & verify(M_EXT_SMALL, corpus + 3200, 1500, c));
	mix(c);
	/* attaching an empty dictionary or none: plain streams */
	LZ4_initStream(&cdict, sizeof(cdict));
	LZ4_initStream(&cstream, sizeof(cstream));
	LZ4_attach_dictionary(&cstream, &cdict);
	LZ4_attach_dictionary(&cstream, 0);
	mix(LZ4_compress_fast_continue(&cstream, (const char *)corpus + 3200, (char *)cpacked,
				       500, (int)sizeof(cpacked), 1));
	mix(LZ4_loadDict(&cdict, (const char *)dictbuf, DICT_SIZE));
}

unsigned long drive_lz4_compress(void)
{
	int c;

	lz4c_sum = 0;
	build_corpus();
	run_setup();
	for (int mode = 0; mode < M_COUNT; mode++) {
		run_sizes(mode, corpus);
		run_tiny(mode);
	}
	for (int mode = 0; mode < M_CTX_BIG; mode++)	/* M_CTX_BIG: the same variant */
		run_limits(mode, corpus, SHAPES_SIZE);
	/* byU32 limited, acceleration 1000: from corpus + 3 the search probes 1, 2, 1002,
	 * 2002 and finds [2000, ...) repeating the block's start at 2002: the catch-up
	 * stops at the block's start */
	c = LZ4_compress_fast_extState(&cstate, (const char *)corpus + 3, (char *)cpacked,
				       65600, 65600, 1000);
	expect(verify(M_FAST, corpus + 3, 65600, c));
	mix(c);
	/* the modes with the period-4 external dictionary */
	run_periodic(M_EXT_SMALL, 100);
	run_periodic(M_EXT, 100);
	run_periodic(M_CTX, 100);
	run_periodic(M_CTX_BIG, 100);
	for (int mode = M_EXT_SMALL; mode <= M_CTX; mode++) {
		run_dict_tail(mode, 0);
		run_dict_tail(mode, 40);
	}
	run_dict_tail(M_CTX, 4080);	/* copied */
	run_short(M_PREFIX_SMALL);
	run_short(M_PREFIX);
	run_short(M_EXT);
	run_periodic(M_CTX, 4100);	/* copied */
	/* copied, from the block itself: text and a zero run to the limit, a zero match
	 * found within 8 bytes of the limit (7 left: every last step), and a crossing
	 * continuation cut by a defect */
	run_full(M_CTX, corpus + 3200, 4104, 1);
	run_full(M_CTX, corpus + 65969 - 4101, 4101, 1);
	run_full(M_CTX, periodic + PREFIX_SIZE + 200, 4100, 1);
	run_limits(M_CTX, corpus, 4096);	/* not copied */
	/* byU32 tables in the one-shot APIs */
	run_limits(M_FAST, corpus, CORPUS_SIZE);
	run_limits(M_DEST, corpus, CORPUS_SIZE);
	run_sizes_oneshot(M_FAST, corpus);
	run_sizes_oneshot(M_DEST, corpus);
	/* byU32: a block ending in the zero run (LZ4_count()'s last steps; see run_tiny) */
	run_limit_tail(corpus, 65968);
	run_fill(corpus, SHAPES_SIZE);
	run_fill(corpus, CORPUS_SIZE);
	/* candidates beyond the window in every stream variant */
	run_full(M_EXT_SMALL, corpus, CORPUS_SIZE, 1);	/* the prefix modes: run_renorm */
	run_full(M_EXT, corpus, CORPUS_SIZE, 1);
	run_full(M_CTX, corpus + 3200, 2800, 1);		/* dictCtx, <= 4 KiB */
	run_full(M_CTX_BIG, corpus + 2560, 3000, 1);
	run_full(M_CTX_BIG, corpus + 2560, 5000, 1);	/* copied */
	run_renorm();
	run_overlap();
	run_dict_end();	/* last: it uses cdict_big */
	return lz4c_sum;
}
