/* Coverage driver: see drivers.h.  Returns a checksum of every result (folded into
 * task_main's result, which the harness compares with an uninterrupted run).
 *
 * LZ4 decompression.  LZ4_decompress_generic() is inlined once per caller with constant
 * (partial decoding, dictionary mode) directives; this image holds six copies:
 *   LZ4_decompress_safe                  full,    noDict,        lowPrefix = dst
 *   LZ4_decompress_safe_partial          partial, noDict,        lowPrefix = dst
 *   LZ4_decompress_safe_withPrefix64k    full,    withPrefix64k, lowPrefix = dst - 64 KiB
 *   LZ4_decompress_safe_withSmallPrefix  full,    noDict,        lowPrefix = dst - prefix
 *   LZ4_decompress_safe_forceExtDict     full,    usingExtDict,  lowPrefix = dst
 *   LZ4_decompress_safe_continue         full,    usingExtDict,  lowPrefix = dst - prefix
 *                                        (the inlined "double dictionary" case)
 * Every block below is therefore decoded in every context (decode_everywhere()).  The blocks
 * are hand-built from sequence lists (literal length, match length, offset) so that each
 * shape the decoder distinguishes is present: literal/match lengths < 15, == 15 + 0, >= 270
 * (255-byte extension loops), offsets 1/2/3/4/<8/<16/>=16 (the overlap-copy variants),
 * matches inside the prefix, inside an external dictionary, and spanning dictionary and
 * block (with and without overlap), in the fast loop (>= 64 bytes of output left) and in
 * the safe loop; each is checked against a byte-by-byte expansion of its sequences.  Error
 * exits come from the same blocks truncated (every n-th byte, at every token and offset,
 * through every length extension), decoded into too-small outputs (every n-th size), in
 * contexts whose history is too short for their offsets, and from the degenerate arguments
 * the decoder checks first (empty input/output, NULL source, negative capacity).
 *
 * What stays unexecuted (51 instructions over the six copies) is dead given the types:
 *  - "addl == rvl_error" tested again after read_variable_length() returned normally
 *    (lz4.c:2094/2129/2266/2347): the sum of at most srcSize (< 2^31) bytes of at most 255
 *    is never SIZE_MAX (its error returns were folded into direct jumps);
 *  - the pointer wrap-around checks op+length < op, ip+length < ip (lz4.c:2099-2100/2136/
 *    2268-2269/2349): length < 255 * 2^31, while the buffers lie ~2^47 below the top of the
 *    address space;
 *  - the entry test of the overlap-copy loops (lz4.c:2190/2378): reached only when
 *    restSize > op - lowPrefix >= 0, so op < op + restSize = endOfMatch;
 *  - in LZ4_decompress_safe_continue's double-dictionary copy, the offset-outside-buffers
 *    check (lz4.c:2161) duplicated onto the path where match >= lowPrefix already holds.
 */
#include "truth.h"
#include "drivers.h"
#define LZ4_STATIC_LINKING_ONLY
#include "lz4.h"

#define OUT_MAX 4096
#define PREFIX_64K 65536
#define SMALL_PREFIX 700
#define EXT_DICT 700
#define RING_PREFIX 3	/* the first block of a double-dictionary stream: 3 literals */
#define SLACK 160

/* One LZ4 sequence: lit literals, then (unless mlen == 0, the block's last literals) a
 * match of mlen bytes at distance off, or, when back != 0, at the distance that reaches
 * back bytes before the block's first output byte (into the prefix or dictionary). */
struct seq {
	unsigned short lit, mlen, off, back;
};

static unsigned char literals[1024];
static unsigned char block[OUT_MAX];
static unsigned char expected[OUT_MAX];
static unsigned char ring_block[16];
static unsigned char out[OUT_MAX + SLACK];
static unsigned char prefix_64k[PREFIX_64K + OUT_MAX + SLACK];
static unsigned char small_prefix[SMALL_PREFIX + OUT_MAX + SLACK];
static unsigned char ext_dict[EXT_DICT];
static unsigned char ring[RING_PREFIX + OUT_MAX + SLACK];
static LZ4_streamDecode_t stream_decode;
static int ring_block_size;

/* Where build_block() put the bytes a truncation should cut at: every token and offset,
 * and every length extension (with the output position of its sequence). */
#define MAX_MARKS 96
static unsigned short field_at[MAX_MARKS], ext_at[MAX_MARKS], ext_pos[MAX_MARKS];
static unsigned char ext_is_literal[MAX_MARKS];
static int fields, extensions;

static unsigned char *put_length(unsigned char *p, unsigned int rest, int literal,
				 unsigned int seq_pos, const unsigned char *start)
{
	ext_at[extensions] = (unsigned short)(p - start);
	ext_pos[extensions] = (unsigned short)seq_pos;
	ext_is_literal[extensions++] = (unsigned char)literal;
	while (rest >= 255) {
		*p++ = 255;
		rest -= 255;
	}
	*p++ = (unsigned char)rest;
	return p;
}

/* Encode a sequence list (ending with mlen == 0) into dst; *decoded = output size. */
static noinline int build_block(unsigned char *dst, const struct seq *s, int *decoded)
{
	unsigned char *p = dst;
	unsigned int pos = 0, lit_at = 0;

	fields = extensions = 0;
	for (;; s++) {
		unsigned int lit = s->lit, ml = s->mlen - 4u, off, seq_pos = pos;
		unsigned char *token = p++;

		field_at[fields++] = (unsigned short)(token - dst);
		*token = (unsigned char)((lit >= 15 ? 15 : lit) << 4);
		p = lit >= 15 ? put_length(p, lit - 15, 1, seq_pos, dst) : p;
		memcpy(p, literals + lit_at, lit);
		p += lit;
		lit_at = (lit_at + lit) & 255;	/* + 600 at most: within literals[] */
		pos += lit;
		if (s->mlen == 0)
			break;
		*token |= (unsigned char)(ml >= 15 ? 15 : ml);
		off = s->back ? pos + s->back : s->off;
		field_at[fields++] = (unsigned short)(p - dst);
		*p++ = (unsigned char)off;
		*p++ = (unsigned char)(off >> 8);
		p = ml >= 15 ? put_length(p, ml - 15, 0, seq_pos, dst) : p;
		pos += s->mlen;
	}
	*decoded = (int)pos;
	return (int)(p - dst);
}

/* What a sequence list decodes to, byte by byte (matches reaching before the block read
 * the history ending at history_end); returns the size. */
static noinline int expand_reference(const struct seq *s, const unsigned char *history_end,
				     unsigned char *dst)
{
	int pos = 0;
	unsigned int lit_at = 0;

	for (;; s++) {
		memcpy(dst + pos, literals + lit_at, s->lit);
		lit_at = (lit_at + s->lit) & 255;
		pos += s->lit;
		if (s->mlen == 0)
			return pos;
		for (int i = 0, from = s->back ? -s->back : pos - s->off; i < s->mlen; i++, from++)
			dst[pos++] = from < 0 ? history_end[from] : dst[from];
	}
}

/* Decode src[0..len) into cap bytes (target bytes for the partial decoder) in every
 * inlined variant of LZ4_decompress_generic, through the public API. */
static noinline unsigned long decode_everywhere(const unsigned char *src, int len, int cap,
						int target)
{
	const char *in = (const char *)src;
	unsigned long sum = 0;
	int r;

	r = LZ4_decompress_safe(in, (char *)out, len, cap);
	sum = sum * 31 + (unsigned int)r;
	r = LZ4_decompress_safe_partial(in, (char *)out, len, target, cap);
	sum = sum * 31 + (unsigned int)r;
	/* adjacent prefixes: 64 KiB, then a small one; external dictionaries: small, 64 KiB */
	r = LZ4_decompress_safe_usingDict(in, (char *)prefix_64k + PREFIX_64K, len, cap,
					  (const char *)prefix_64k, PREFIX_64K);
	sum = sum * 31 + (unsigned int)r;
	r = LZ4_decompress_safe_usingDict(in, (char *)small_prefix + SMALL_PREFIX, len, cap,
					  (const char *)small_prefix, SMALL_PREFIX);
	sum = sum * 31 + (unsigned int)r;
	r = LZ4_decompress_safe_usingDict(in, (char *)out, len, cap, (const char *)ext_dict,
					  EXT_DICT);
	sum = sum * 31 + (unsigned int)r;
	r = LZ4_decompress_safe_usingDict(in, (char *)out, len, cap, (const char *)prefix_64k,
					  PREFIX_64K);
	sum = sum * 31 + (unsigned int)r;
	/* streaming: first block, 64 KiB prefix, small prefix, external dictionary */
	LZ4_setStreamDecode(&stream_decode, 0, 0);
	r = LZ4_decompress_safe_continue(&stream_decode, in, (char *)out, len, cap);
	sum = sum * 31 + (unsigned int)r;
	LZ4_setStreamDecode(&stream_decode, (const char *)prefix_64k, PREFIX_64K);
	r = LZ4_decompress_safe_continue(&stream_decode, in, (char *)prefix_64k + PREFIX_64K,
					 len, cap);
	sum = sum * 31 + (unsigned int)r;
	LZ4_setStreamDecode(&stream_decode, (const char *)small_prefix, SMALL_PREFIX);
	r = LZ4_decompress_safe_continue(&stream_decode, in, (char *)small_prefix + SMALL_PREFIX,
					 len, cap);
	sum = sum * 31 + (unsigned int)r;
	LZ4_setStreamDecode(&stream_decode, (const char *)ext_dict, EXT_DICT);
	r = LZ4_decompress_safe_continue(&stream_decode, in, (char *)out, len, cap);
	sum = sum * 31 + (unsigned int)r;
	/* double dictionary: ext_dict, then a 3-byte block decoded into the ring (which makes
	 * ext_dict the external dictionary), then this block continuing it in place */
	LZ4_setStreamDecode(&stream_decode, (const char *)ext_dict, EXT_DICT);
	r = LZ4_decompress_safe_continue(&stream_decode, (const char *)ring_block, (char *)ring,
					 ring_block_size, RING_PREFIX);
	expect(r == RING_PREFIX);
	r = LZ4_decompress_safe_continue(&stream_decode, in, (char *)ring + RING_PREFIX, len, cap);
	sum = sum * 31 + (unsigned int)r;
	return sum;
}

/* One block: exact and roomy outputs; with sweep, every sweep-th truncation and output
 * size; with marks & 1, truncations at and right after every token and offset; with
 * marks & 2, truncations around the end of every length extension (whose reads stop at
 * iend-15 for literals, iend-4 for matches: cut 15..17 / 4..6 bytes after its start),
 * decoded into the whole output and into one ending 40 bytes after that sequence's start
 * (the safe loop). */
static noinline unsigned long exercise(const struct seq *s, int sweep, int marks)
{
	unsigned long sum = 0;
	int size, len, r;

	len = build_block(block, s, &size);
	/* the block decodes to what its sequences say, the 64 KiB prefix either external or
	 * adjacent (every shape is valid with 64 KiB of history) */
	expect(expand_reference(s, prefix_64k + PREFIX_64K, expected) == size);
	r = LZ4_decompress_safe_usingDict((const char *)block, (char *)out, len, size + SLACK,
					  (const char *)prefix_64k, PREFIX_64K);
	expect(r == size && memcmp(out, expected, (unsigned long)size) == 0);
	r = LZ4_decompress_safe_usingDict((const char *)block, (char *)prefix_64k + PREFIX_64K,
					  len, size, (const char *)prefix_64k, PREFIX_64K);
	expect(r == size && memcmp(prefix_64k + PREFIX_64K, expected, (unsigned long)size) == 0);
	sum += decode_everywhere(block, len, size, size);
	sum += decode_everywhere(block, len, size + SLACK, size / 2);
	for (int cut = 0; sweep && cut < len; cut += sweep)
		sum = sum * 7 + decode_everywhere(block, cut, size, size - cut);
	for (int cap = 0; sweep && cap < size; cap += sweep)
		sum = sum * 7 + decode_everywhere(block, len, cap, cap + 1);
	for (int i = 0; i < fields * (marks & 1); i++) {
		sum = sum * 7 + decode_everywhere(block, field_at[i], size, size);
		sum = sum * 7 + decode_everywhere(block, field_at[i] + 1, size, size);
	}
	for (int i = 0; i < extensions * (marks >> 1); i++) {
		for (int k = ext_is_literal[i] ? 15 : 4; k <= (ext_is_literal[i] ? 17 : 6); k++) {
			sum = sum * 7 + decode_everywhere(block, ext_at[i] + k, size, size);
			sum = sum * 7 + decode_everywhere(block, ext_at[i] + k, ext_pos[i] + 40,
							 ext_pos[i] + 40);
		}
	}
	return sum;
}

/* Self-contained, fast loop: every literal/match length class and offset class. */
static const struct seq fast_mix[] = {
	{ 20, 4, 8, 0 }, { 3, 18, 16, 0 }, { 0, 5, 1, 0 }, { 1, 6, 2, 0 }, { 2, 7, 4, 0 },
	{ 1, 8, 3, 0 }, { 1, 9, 5, 0 }, { 1, 4, 7, 0 }, { 0, 19, 12, 0 }, { 0, 40, 1, 0 },
	{ 0, 40, 2, 0 }, { 0, 40, 4, 0 }, { 0, 40, 3, 0 }, { 0, 40, 6, 0 }, { 0, 40, 20, 0 },
	{ 1, 12, 1, 0 }, { 1, 13, 2, 0 }, { 1, 14, 4, 0 }, { 0, 30, 1, 0 }, { 0, 29, 2, 0 },
	{ 0, 31, 4, 0 },
	{ 15, 4, 9, 0 }, { 270, 270, 100, 0 }, { 14, 19, 40, 0 }, { 600, 600, 9, 0 },
	{ 2, 4, 10, 0 }, { 1, 6, 3, 0 }, { 0, 19, 9, 0 }, { 3, 22, 1, 0 }, { 5, 8, 30, 0 },
	{ 20, 0, 0, 0 },
};

/* Self-contained, under 64 bytes of output: the safe loop and its shortcut only. */
static const struct seq safe_mix[] = {
	{ 8, 6, 8, 0 }, { 1, 5, 3, 0 }, { 0, 19, 9, 0 }, { 2, 4, 2, 0 }, { 1, 8, 12, 0 },
	{ 5, 0, 0, 0 },
};

static const struct seq safe_long[] = {
	{ 15, 4, 6, 0 }, { 1, 12, 1, 0 }, { 0, 21, 16, 0 }, { 17, 0, 0, 0 },
};

/* Matches before the block's start: in the prefix/dictionary, spanning into the block
 * with and without overlap, short and long, in the fast loop then the safe loop. */
static const struct seq dict_mix[] = {
	{ 1, 20, 0, 5 }, { 1, 12, 0, 3 }, { 3, 8, 0, 2 }, { 4, 8, 0, 30 }, { 0, 30, 0, 500 }, { 0, 19, 0, 9 },
	{ 2, 40, 0, 20 }, { 5, 6, 0, 100 }, { 1, 300, 0, 600 }, { 9, 4, 0, 4 }, { 3, 7, 5, 0 },
	{ 8, 6, 0, 40 }, { 2, 10, 0, 5 }, { 1, 5, 0, 60 }, { 0, 22, 0, 7 }, { 6, 0, 0, 0 },
};

static const struct seq dict_small[] = {
	{ 1, 20, 0, 5 }, { 2, 6, 0, 4 }, { 1, 12, 0, 1 }, { 0, 19, 0, 50 }, { 3, 4, 0, 200 }, { 9, 0, 0, 0 },
};

/* Beyond the small dictionaries, within the 64 KiB ones. */
static const struct seq far_refs[] = {
	{ 4, 8, 0, 2000 }, { 3, 30, 0, 40000 }, { 7, 0, 0, 0 },
};

/* Long literal and match lengths (two 255 bytes each): truncated through the extension. */
static const struct seq long_lengths[] = {
	{ 14, 600, 1, 0 }, { 600, 300, 9, 0 }, { 20, 0, 0, 0 },
};

/* A reference beyond the small dictionaries in the fast loop. */
static const struct seq far_fast[] = {
	{ 20, 8, 0, 2000 }, { 100, 0, 0, 0 },
};

unsigned long drive_lz4_decompress(void)
{
	static const struct seq ring_seq[] = { { RING_PREFIX, 0, 0, 0 } };
	unsigned long sum = 0;
	int r;

	make_input(literals, sizeof(literals), 4242);
	make_input(ext_dict, EXT_DICT, 99);
	make_input(prefix_64k + PREFIX_64K - 1024, 1024, 7);	/* history the shapes reach */
	ring_block_size = build_block(ring_block, ring_seq, &r);
	expect(r == RING_PREFIX);

	sum += exercise(safe_mix, 1, 0);
	sum += exercise(safe_long, 2, 0);
	sum += exercise(dict_small, 2, 0);
	sum += exercise(far_refs, 1, 0);
	sum += exercise(dict_mix, 13, 0);
	sum += exercise(fast_mix, 0, 0);
	sum += exercise(long_lengths, 0, 3);
	sum += exercise(far_fast, 0, 0);

	/* degenerate arguments: empty output (a lone zero token is its valid encoding),
	 * empty input, no source, negative capacity */
	block[0] = 0;
	sum = sum * 3 + decode_everywhere(block, 1, 0, 0);
	sum = sum * 3 + decode_everywhere(block, 1, -1, -1);
	sum = sum * 3 + (unsigned int)LZ4_decompress_safe(0, (char *)out, 4, 10);
	return sum;
}
