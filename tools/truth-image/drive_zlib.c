/* Coverage driver for zlib: the paths workload.c's round trips, zlib_matrix and zlib_errors do
 * not reach.  See drivers.h.  Returns a checksum of every result (folded into task_main's
 * result, which the harness compares with an uninterrupted run).
 *
 * Inflate is driven with deflate streams written bit by bit here (a tiny block writer with
 * fixed and hand-chosen dynamic Huffman codes): that is the only deterministic way to put a
 * 15-bit length code or a 13-extra-bit distance at every bit alignment of inflate_fast's bit
 * buffer, an invalid symbol inside its fast loop, or an incomplete/empty code set into
 * inflate_table.  Deflate is driven through its API with shaped inputs (runs, random bytes,
 * gray-listed bytes, LZ77-like copies) and flush schedules; API misuse uses the library's own
 * state checks (a copied z_stream, a corrupted status, an exhausted allocator, a wrong
 * version).  Every buffer and stream is static: the task stack is only 16 KiB. */
#include "truth.h"
#include "drivers.h"
#include "deflate.h"
#include "inftrees.h"
#include "inflate.h"

#define ARENA_SIZE (320 * 1024)

static unsigned char src[24 * 1024];	/* deflate input */
static unsigned char zbuf[12 * 1024];	/* compressed stream */
static unsigned char zout[32 * 1024];	/* inflate output */
static z_stream zs, zcopy;
static unsigned long steps_total;

static void zreset(z_stream *strm)
{
	memset(strm, 0, sizeof(*strm));
	arena_used = 0;
	strm->zalloc = arena_alloc;
	strm->zfree = arena_free;
}

/* ---- a deflate bit writer ---------------------------------------------------------------- */

static unsigned char bits_buf[6 * 1024];
static unsigned long bit_pos;

struct huff {
	unsigned short code[288];
	unsigned char len[288];
};
static struct huff lit_code, dist_code, cl_code;

static const unsigned short len_base[29] = { 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23,
	27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258 };
static const unsigned char len_extra[29] = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
	3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0 };
static const unsigned short dist_base[30] = { 1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97,
	129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385,
	24577 };
static const unsigned char dist_extra[30] = { 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
	7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13 };

static void bw_reset(void)
{
	memset(bits_buf, 0, sizeof(bits_buf));
	bit_pos = 0;
}

/* Append the n (<= 48) low bits of value, least significant first. */
static noinline void bw_put(unsigned long value, unsigned n)
{
	unsigned long at = bit_pos >> 3;
	unsigned long v = (value & ((1UL << n) - 1)) << (bit_pos & 7);

	for (; v; v >>= 8)
		bits_buf[at++] |= (unsigned char)v;
	bit_pos += n;
}

static unsigned long bw_bytes(void)
{
	return (bit_pos + 7) >> 3;
}

/* Canonical Huffman codes from code lengths (RFC 1951 3.2.2). */
static noinline void huff_build(struct huff *h, const unsigned char *lens, unsigned n)
{
	unsigned short count[16], next[16];
	unsigned code = 0;

	memset(count, 0, sizeof(count));
	memset(h, 0, sizeof(*h));
	for (unsigned i = 0; i < n; i++) {
		h->len[i] = lens[i];
		count[lens[i]]++;
	}
	count[0] = 0;
	next[0] = 0;
	for (unsigned b = 1; b < 16; b++) {
		code = (code + count[b - 1]) << 1;
		next[b] = (unsigned short)code;
	}
	for (unsigned i = 0; i < n; i++) {
		unsigned c = next[lens[i]]++, rev = 0;	/* next[0]: the unused symbols */

		/* Huffman codes go out most significant bit first: store them reversed */
		for (unsigned b = 0; b < lens[i]; b++)
			rev = (rev << 1) | ((c >> b) & 1);
		h->code[i] = (unsigned short)rev;
	}
}

static noinline void put_sym(const struct huff *h, unsigned sym)
{
	bw_put(h->code[sym], h->len[sym]);
}

static noinline void put_match(unsigned len, unsigned dist)
{
	unsigned l = 28, d = 29;

	while (len_base[l] > len)
		l--;
	while (dist_base[d] > dist)
		d--;
	put_sym(&lit_code, 257 + l);
	bw_put(len - len_base[l], len_extra[l]);
	put_sym(&dist_code, d);
	bw_put(dist - dist_base[d], dist_extra[d]);
}

static void put_header(unsigned last, unsigned type)
{
	bw_put(last, 1);
	bw_put(type, 2);
}

static noinline void use_fixed(void)
{
	static unsigned char l[288], d[32];

	for (unsigned i = 0; i < 288; i++)
		l[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
	memset(d, 5, sizeof(d));
	huff_build(&lit_code, l, 288);
	huff_build(&dist_code, d, 32);
}

/* A dynamic block header; cl = the 19 code-length-code lengths in symbol order. */
static noinline void put_dynamic(const unsigned char *ll, unsigned nlit, const unsigned char *dl,
				 unsigned ndist, const unsigned char *cl)
{
	static const unsigned char order[19] = { 16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3,
						 13, 2, 14, 1, 15 };

	bw_put(nlit - 257, 5);
	bw_put(ndist - 1, 5);
	bw_put(15, 4);
	for (unsigned k = 0; k < 19; k++)
		bw_put(cl[order[k]], 3);
	huff_build(&cl_code, cl, 19);
	for (unsigned i = 0; i < nlit; i++)
		put_sym(&cl_code, ll[i]);
	for (unsigned i = 0; i < ndist; i++)
		put_sym(&cl_code, dl[i]);
	huff_build(&lit_code, ll, nlit);
	huff_build(&dist_code, dl, ndist);
}

/* code-length codes: 0..15 four bits each (complete), over-subscribed, incomplete */
static const unsigned char cl_plain[19] = { 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4 };
static const unsigned char cl_over[19] = { 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
					   4 };
static const unsigned char cl_short[19] = { 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4 };

/* ---- inflate ------------------------------------------------------------------------------ */

/* Inflate src[0..n) in in_chunk/out_chunk pieces with the given flush mode; returns the last
 * return code mixed with the output length and the error message's first byte. */
static noinline unsigned long inflate_run(const unsigned char *in, unsigned long n, int wbits,
					  unsigned in_chunk, unsigned out_chunk, int flush)
{
	int ret;
	unsigned long steps = 0;

	ret = inflateReset2(&zs, wbits);	/* one stream for all: no re-init cost */
	zs.next_in = (z_const Bytef *)in;
	zs.next_out = zout;
	do {
		unsigned long in_left = n - (unsigned long)(zs.next_in - in);
		unsigned long out_left = sizeof(zout) - (unsigned long)(zs.next_out - zout);

		zs.avail_in = (uInt)(in_left < in_chunk ? in_left : in_chunk);
		zs.avail_out = (uInt)(out_left < out_chunk ? out_left : out_chunk);
		ret = inflate(&zs, flush);
	} while (ret == Z_OK && ++steps < 40000);
	steps_total += steps;
	asm("" : "+r"(ret));	/* no separate return path for the (never hit) step limit */
	return ((unsigned long)(ret + 16) << 32) ^ zs.total_out ^
	       (unsigned long)(zs.msg ? zs.msg[0] : 0) << 24;
}

/* Each crafted stream inflated whole (fast path); ways & 1: a byte at a time (every resume
 * point of the slow path); ways & 2: into one-byte outputs, and in odd pieces with Z_BLOCK
 * and Z_TREES. */
static noinline unsigned long inflate_ways(const unsigned char *in, unsigned long n, int ways)
{
	unsigned long sum = inflate_run(in, n, -15, 1 << 20, 1 << 20, Z_NO_FLUSH);

	if (ways & 1)
		sum = sum * 3 + inflate_run(in, n, -15, 1, 1 << 20, Z_NO_FLUSH);
	if (ways & 2)
		sum = sum * 3 + inflate_run(in, n, -15, 1 << 20, 1, Z_NO_FLUSH) +
		      inflate_run(in, n, -15, 5, 3, Z_BLOCK) +
		      inflate_run(in, n, -15, 7, 300, Z_TREES);
	return sum;
}

/* Bit alignment sweep over fixed blocks: k nine-bit literals shift everything after them. */
static noinline unsigned long crafted_fixed(void)
{
	unsigned long sum = 0;

	use_fixed();
	for (unsigned k = 0; k < 8; k++) {
		bw_reset();
		put_header(0, 1);
		for (unsigned i = 0; i < k; i++)
			put_sym(&lit_code, 200 + i);
		for (unsigned i = 0; i < 12; i++)
			put_sym(&lit_code, 'a' + i);
		put_match(11 + k, 1 + k);		/* extra bits in both */
		put_sym(&lit_code, 'z');
		put_match(30 + k * 2, 10);
		put_match(3 + k, 5 + k * 3);
		put_match(20 + k, 7);
		put_sym(&lit_code, 256);
		/* a stored block after it, then an empty final fixed block */
		put_header(0, 0);
		bit_pos = (bit_pos + 7) & ~7UL;
		bw_put(5, 16);
		bw_put(0xfffa, 16);
		bw_put(0x6f6c6c6568UL, 40);
		put_header(1, 1);
		put_sym(&lit_code, 'x');
		put_match(30 + k, 50 + k);
		put_sym(&lit_code, 256);
		sum = sum * 7 + inflate_ways(bits_buf, bw_bytes(), k == 0 ? 3 : 1);
	}
	return sum;
}

/* Invalid symbols and distances, in the fast loop (padded input) and the slow path. */
static noinline unsigned long crafted_invalid(void)
{
	unsigned long sum = 0;

	use_fixed();
	for (unsigned kind = 0; kind < 5; kind++) {
		bw_reset();
		put_header(1, 1);
		for (unsigned i = 0; i < 12 + kind; i++)
			put_sym(&lit_code, 'A' + i);
		put_sym(&lit_code, kind == 0 ? 286 : kind == 1 ? 287 : 258);
		put_sym(&dist_code, kind == 2 ? 30 : kind == 3 ? 31 : 0);
		put_match(10, kind == 4 ? 200 : 3);	/* 4: distance too far back */
		put_sym(&lit_code, 256);
		bit_pos += 200;				/* padding: fast loop has input */
		sum = sum * 7 + inflate_ways(bits_buf, bw_bytes(), 1);
	}
	return sum;
}

/* Dynamic blocks with unusual code sets: no distance codes at all (inflate_table's empty
 * table), a single one-bit distance code (incomplete: the invalid-code filler), a literal
 * code holding only end-of-block, and invalid code-length codes. */
static noinline unsigned long crafted_codes(void)
{
	static unsigned char ll[288], dl[32];
	unsigned long sum = 0;

	for (unsigned kind = 0; kind < 8; kind++) {
		memset(ll, 0, sizeof(ll));
		memset(dl, 0, sizeof(dl));
		for (unsigned i = 0; i < 255; i++)
			ll[i] = 9;
		ll[255] = 10;
		ll[257] = 10;
		ll[256] = 1;
		dl[0] = kind >= 2 ? 1 : 0;	/* 0,1: no distance code; else one 1-bit code */
		bw_reset();
		put_header(1, 2);
		if (kind >= 6) {
			memset(ll, 0, sizeof(ll));
			ll[256] = 1;		/* only end-of-block, one bit: incomplete */
		}
		put_dynamic(ll, 258, dl, 1, kind == 4 ? cl_over : kind == 5 ? cl_short : cl_plain);
		for (unsigned i = 0; i < 20 * (kind < 6); i++)
			put_sym(&lit_code, 'a' + i);
		if (kind == 1 || kind == 2 || kind == 3)
			put_sym(&lit_code, 257);	/* a length... */
		if (kind == 2)
			bw_put(0, 1);			/* ...with the valid distance code */
		if (kind == 3)
			bw_put(1, 1);			/* ...with the missing one */
		if (kind == 6)
			bw_put(1, 1);			/* the missing literal/length code */
		put_sym(&lit_code, 256);
		bit_pos += 160;
		sum = sum * 7 + inflate_ways(bits_buf, bw_bytes(),
					     kind == 0 ? 2 : kind == 1 || kind == 3 || kind == 6);
	}
	return sum;
}

/* Long codes: 15-bit length codes with 5 extra bits, 15-bit distance codes with 13 extra
 * bits (second-level tables, and every refill of inflate_fast's bit buffer), at eight bit
 * alignments; 17 KiB of output so that 16385+ distances are valid, then one too far. */
static noinline unsigned long crafted_long(void)
{
	static unsigned char ll[288], dl[32];
	static const unsigned short chain_l[14] = { 257, 258, 259, 260, 261, 262, 263, 264, 265,
						    269, 273, 277, 281, 284 };
	static const unsigned char chain_d[16] = { 1, 0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
						   26, 27, 28, 29 };
	unsigned long sum = 0;

	memset(ll, 0, sizeof(ll));
	memset(dl, 0, sizeof(dl));
	for (unsigned i = 0; i < 256; i++)
		ll[i] = 9;
	ll[256] = 2;
	for (unsigned i = 0; i < 14; i++)
		ll[chain_l[i]] = (unsigned char)(i < 13 ? 3 + i : 15);
	for (unsigned i = 0; i < 16; i++)
		dl[chain_d[i]] = (unsigned char)(i < 15 ? 1 + i : 15);
	bw_reset();
	put_header(1, 2);
	put_dynamic(ll, 285, dl, 30, cl_plain);
	for (unsigned i = 0; i < 40; i++)
		put_sym(&lit_code, (i * 37) & 255);
	for (unsigned i = 0; i < 65; i++)		/* 16.7 KiB of output, cheaply (this */
		put_match(257, 1 + (i & 1));		/* code has no symbol 285: no 258) */
	for (unsigned i = 0; i < 24; i++) {		/* a literal shifts the alignment */
		put_sym(&lit_code, (i * 11) & 255);
		put_match(227 + i % 31, 16385 + (i * 97) % 100);	/* 13 extra bits */
		put_match(131 + (i * 7) % 32, 2049 + i * 37);		/* 11 extra bits */
		put_match(67 + i % 16, 257 + i * 150);			/* 7 to 10 */
		put_match(3 + i % 8, 1 + (i & 1));	/* only 1, 2, 257+ have codes */
	}
	put_match(20, 32000);				/* too far back, at last */
	put_sym(&lit_code, 256);
	bit_pos += 64;
	sum = sum * 7 + inflate_run(bits_buf, bw_bytes(), -15, 1 << 20, 1 << 20, Z_NO_FLUSH);
	return sum;
}

/* Matches reaching back into a small window across its wrap point: inflate_fast's window
 * copies (wnext == 0, wrapped, contiguous; with and without the rest from the output). */
static noinline unsigned long crafted_window(void)
{
	static const unsigned out_chunks[] = { 300, 397, 511, 700 };
	unsigned long sum = 0;

	bw_reset();
	use_fixed();
	put_header(1, 1);
	make_input(src, 520, 4242);
	for (unsigned i = 0; i < 520; i++)
		put_sym(&lit_code, src[i]);
	for (unsigned i = 0; i < 16; i++) {
		put_match(258 - (i * 37) % 200, 1 + (i * 97) % 511);
		put_sym(&lit_code, i);
		put_match(3 + i % 40, 400 + i);
	}
	put_sym(&lit_code, 256);
	for (unsigned i = 0; i < sizeof(out_chunks) / sizeof(out_chunks[0]); i++) {
		sum = sum * 7 + inflate_run(bits_buf, bw_bytes(), i & 1 ? -10 : -9, 1 << 20,
					    out_chunks[i], i & 2 ? Z_SYNC_FLUSH : Z_NO_FLUSH);
	}
	/* a window that never wraps: matches that start in it and continue from the output
	 * (each call resumes mid-match, so the next distance reaches behind the call) */
	bw_reset();
	put_header(1, 1);
	for (unsigned i = 0; i < 260; i++)
		put_sym(&lit_code, src[i]);
	for (unsigned i = 0; i < 25; i++) {
		put_sym(&lit_code, i);
		put_match(200, 250);
	}
	put_sym(&lit_code, 256);
	sum = sum * 7 + inflate_run(bits_buf, bw_bytes(), -15, 1 << 20, 333, Z_NO_FLUSH);
	sum = sum * 7 + inflate_run(bits_buf, bw_bytes(), -15, 1 << 20, 517, Z_NO_FLUSH);
	/* a 512-byte window written 300 bytes per call (wnext moves around it): a 258-byte
	 * match 250 back, early in a call, runs from the window's end through its start and
	 * on into the output */
	bw_reset();
	put_header(1, 1);
	for (unsigned i = 0; i < 520; i++)
		put_sym(&lit_code, src[i]);
	for (unsigned i = 0; i < 30; i++) {
		put_sym(&lit_code, i);
		put_match(258, 250);
	}
	put_sym(&lit_code, 256);
	sum = sum * 7 + inflate_run(bits_buf, bw_bytes(), -9, 1 << 20, 300, Z_NO_FLUSH);
	/* one 258-byte match 256 back per block, inflated a block per call (Z_BLOCK): the
	 * third starts 4 bytes past the wrap and leaves the last 2 bytes to the output */
	bw_reset();
	put_header(0, 1);
	for (unsigned i = 0; i < 520; i++)
		put_sym(&lit_code, src[i]);
	put_sym(&lit_code, 256);
	for (unsigned i = 0; i < 4; i++) {
		put_header(i == 3, 1);
		put_match(258, 256);
		put_sym(&lit_code, 256);
	}
	bit_pos += 64;
	sum = sum * 7 + inflate_run(bits_buf, bw_bytes(), -9, 1 << 20, 1 << 20, Z_BLOCK);
	return sum;
}

/* ---- deflate ------------------------------------------------------------------------------ */

/* Inputs: LZ77-like copies of random lengths and distances (every exit of longest_match's
 * unrolled compare), runs of every length, random bytes, gray-listed control bytes, words,
 * short runs, 16 equally likely letters. */
static noinline void shape_input(unsigned char *buf, unsigned long n, unsigned kind,
				 unsigned long seed)
{
	unsigned long x = seed;

	if (kind == 5) {		/* words: many short matches, full symbol buffers */
		make_input(buf, n, seed);
		return;
	}
	for (unsigned long i = 0; i < n;) {
		unsigned long r, len;

		x = x * 6364136223846793005UL + 1442695040888963407UL;
		r = x >> 33;
		len = kind == 1 && (r & 7) == 0 ? 300 : 1 + r % (kind == 1 ? 14 : kind == 6 ? 5 : 40);
		len = len > n - i ? n - i : len;
		for (unsigned long j = 0; j < len; j++, i++) {
			unsigned long back = 1 + (r >> 8) % 600;

			x ^= (x << 13) ^ (x >> 7) ^ (x << 17);	/* xorshift: per-byte noise */

			buf[i] = kind == 0 ? (i > back && (r & 3) ? buf[i - back] : (unsigned char)(r >> (j & 15)) % 64 + 32) :
				 kind == 7 ? (unsigned char)('a' + (x >> 20) % 16) :
				 kind == 1 || kind == 6 ? (unsigned char)("\0abc"[(r >> 20) % 4]) :
				 kind == 2 ? (unsigned char)(x >> (8 + j % 48)) :
				 (unsigned char)("\a\b\v\f\x1a\x1b"[(r >> 12) % 6]);
		}
	}
}

/* Deflate src[0..n) in in_chunk pieces with flush between them and the final flush at the
 * end; returns the output length mixed with the last return code. */
static noinline unsigned long deflate_run(int level, int strategy, int wbits, int mem,
					  unsigned long n, unsigned in_chunk, unsigned out_chunk,
					  int flush, int final_flush)
{
	int ret;
	unsigned long steps = 0;

	zreset(&zs);
	ret = deflateInit2(&zs, level, Z_DEFLATED, wbits, mem, strategy);
	zs.next_in = src;
	zs.next_out = zbuf;
	do {
		unsigned long in_left = n - zs.total_in;
		unsigned long out_left = sizeof(zbuf) - zs.total_out;

		zs.avail_in = (uInt)(in_left < in_chunk ? in_left : in_chunk);
		zs.avail_out = (uInt)(out_left < out_chunk ? out_left : out_chunk);
		ret = deflate(&zs, zs.avail_in == in_left ? final_flush : flush);
	} while ((ret == Z_OK || (ret == Z_BUF_ERROR && zs.total_in < n)) && ++steps < 40000);
	steps_total += steps;
	ret = deflateEnd(&zs) * 256 + ret;
	return ((unsigned long)(ret + 4096) << 32) ^ zs.total_out ^ zs.data_type << 20;
}

static noinline unsigned long deflate_shapes(void)
{
	static const struct {
		signed char level, strategy, wbits, mem, kind;
		unsigned short n, in, out;
		signed char flush, final;
	} cases[] = {
		/* Z_PARTIAL_FLUSH: _tr_align at every bit position */
		{ 1, Z_DEFAULT_STRATEGY, 12, 3, 0, 120, 97, 8000, Z_PARTIAL_FLUSH, Z_FINISH },
		{ 1, Z_DEFAULT_STRATEGY, 12, 3, 2, 30, 3, 8000, Z_PARTIAL_FLUSH, Z_FINISH },
		{ 6, Z_DEFAULT_STRATEGY, 12, 3, 0, 120, 61, 8000, Z_PARTIAL_FLUSH, Z_PARTIAL_FLUSH },
		{ 9, Z_FILTERED, 11, 2, 0, 80, 37, 8000, Z_PARTIAL_FLUSH, Z_FINISH },
		/* many dynamic blocks (small literal buffer) */
		{ 4, Z_DEFAULT_STRATEGY, 12, 1, 0, 350, 9000, 12000, Z_NO_FLUSH, Z_FINISH },
		{ 1, Z_DEFAULT_STRATEGY, 9, 1, 5, 500, 9000, 12000, Z_NO_FLUSH, Z_FINISH },
		/* random bytes: stored blocks chosen; binary data */
		{ 6, Z_DEFAULT_STRATEGY, 12, 1, 2, 200, 3000, 8000, Z_NO_FLUSH, Z_FINISH },
		{ 1, Z_DEFAULT_STRATEGY, 10, 2, 2, 200, 150, 8000, Z_SYNC_FLUSH, Z_FINISH },
		/* gray-listed bytes only; empty input */
		{ 6, Z_DEFAULT_STRATEGY, 12, 2, 3, 200, 500, 8000, Z_NO_FLUSH, Z_FINISH },
		{ 6, Z_DEFAULT_STRATEGY, 12, 2, 3, 0, 500, 8000, Z_NO_FLUSH, Z_FINISH },
		/* runs: RLE scan exits; Huffman-only and RLE with flushes */
		{ 2, Z_RLE, 10, 2, 1, 400, 101, 8000, Z_SYNC_FLUSH, Z_FINISH },
		{ 2, Z_RLE, 10, 1, 1, 600, 50, 20, Z_NO_FLUSH, Z_FINISH },
		{ 2, Z_HUFFMAN_ONLY, 10, 2, 1, 250, 101, 8000, Z_FULL_FLUSH, Z_FINISH },
		{ 3, Z_RLE, 9, 1, 1, 800, 1000, 5, Z_NO_FLUSH, Z_FINISH },
		/* tiny blocks: static trees chosen */
		{ 5, Z_DEFAULT_STRATEGY, 12, 2, 0, 50, 13, 8000, Z_SYNC_FLUSH, Z_FINISH },
		/* small outputs with flushes: pending output at every return */
		{ 6, Z_DEFAULT_STRATEGY, 12, 2, 0, 200, 150, 3, Z_SYNC_FLUSH, Z_FINISH },
		{ 1, Z_DEFAULT_STRATEGY, 12, 2, 0, 250, 200, 9, Z_PARTIAL_FLUSH, Z_FINISH },
		/* stored: direct copies into a small window that slides */
		{ 0, Z_DEFAULT_STRATEGY, 9, 1, 0, 2000, 100, 8000, Z_SYNC_FLUSH, Z_FINISH },
		{ 0, Z_DEFAULT_STRATEGY, 9, 1, 0, 2000, 130, 8000, Z_NO_FLUSH, Z_SYNC_FLUSH },
		{ 0, Z_DEFAULT_STRATEGY, 9, 1, 0, 2000, 250, 300, Z_NO_FLUSH, Z_FINISH },
		/* short runs: RLE blocks that fill up on a match, with room in the output */
		{ 2, Z_RLE, 9, 1, 6, 600, 1200, 8000, Z_NO_FLUSH, Z_FINISH },
		/* 16 equally likely letters: runs of equal code lengths longer than a repeat
		 * code covers (send_tree continuing a run after REP_3_6) */
		{ 1, Z_DEFAULT_STRATEGY, 9, 1, 7, 400, 9000, 8000, Z_NO_FLUSH, Z_FINISH },
	};
	unsigned long sum = 0;

	for (unsigned long i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* seeds 200 and 4: the short runs whose second block fills up on a match; the
		 * letters whose repeat code is sent with a full bit buffer */
		shape_input(src, cases[i].n, (unsigned)cases[i].kind,
			    cases[i].kind == 6 ? 200 : cases[i].kind == 7 ? 4 : i + 1);
		sum = sum * 131 + deflate_run(cases[i].level, cases[i].strategy, cases[i].wbits,
					      cases[i].mem, cases[i].n, cases[i].in, cases[i].out,
					      cases[i].flush, cases[i].final);
	}
	return sum;
}

/* ---- API paths: parameters, dictionaries, bounds, state checks, allocation failures ----- */

static noinline unsigned long deflate_api(void)
{
	static const unsigned char dict[] = "a preset dictionary for deflate and inflate";
	unsigned long sum = 0;
	int r;

	shape_input(src, 8000, 0, 99);
	/* deflateParams: level -1, same parameters, strategy change right after init (no
	 * flush), invalid strategy, and a Z_BUF_ERROR when the flush cannot finish */
	zreset(&zs);
	deflateInit2(&zs, 3, Z_DEFLATED, 11, 3, Z_DEFAULT_STRATEGY);
	sum += (unsigned long)(deflateParams(&zs, Z_DEFAULT_COMPRESSION, Z_FILTERED) + 8);
	sum += (unsigned long)(deflateParams(&zs, 6, Z_FILTERED) + 8);
	sum += (unsigned long)(deflateParams(&zs, 6, 9) + 8);
	zs.next_in = src;
	zs.avail_in = 600;
	zs.next_out = zbuf;
	zs.avail_out = 20;
	sum += (unsigned long)(deflate(&zs, Z_NO_FLUSH) + 8);
	sum += (unsigned long)(deflateParams(&zs, 1, Z_DEFAULT_STRATEGY) + 8) << 4;
	sum += (unsigned long)(deflateSetDictionary(&zs, dict, sizeof(dict)) + 8) << 8;
	zs.avail_out = sizeof(zbuf) - zs.total_out;
	sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8);
	sum += deflateBound(&zs, 1000);			/* wrap < 0 after the trailer */
	sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8);
	sum += (unsigned long)(deflateParams(&zs, 2, Z_DEFAULT_STRATEGY) + 8);
	sum += (unsigned long)(deflateReset(&zs) + 8);	/* wrap negative: restored */
	/* next_out NULL; input after Z_FINISH; avail_out 0 */
	zs.next_in = src;
	zs.avail_in = 10;
	zs.next_out = Z_NULL;
	sum += (unsigned long)(deflate(&zs, Z_NO_FLUSH) + 8);
	zs.next_out = zbuf;
	zs.avail_out = 0;
	sum += (unsigned long)(deflate(&zs, Z_NO_FLUSH) + 8);
	zs.avail_out = sizeof(zbuf);
	zs.avail_in = 0;
	sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8);
	zs.avail_in = 10;
	sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8) << 2;

	/* level 0 with pending slides (matches 1 and 2), then a level change: slide_hash or
	 * CLEAR_HASH of the stale hash table */
	for (unsigned slides = 1; slides <= 2; slides++) {
		zreset(&zs);
		deflateInit2(&zs, 0, Z_DEFLATED, 9, 1, Z_DEFAULT_STRATEGY);
		zs.next_in = src;
		zs.next_out = zbuf;
		zs.avail_out = sizeof(zbuf);
		for (unsigned c = 0; c < 4 + 5 * slides; c++) {	/* strstart 838, 714 */
			zs.avail_in = 150;
			deflate(&zs, Z_SYNC_FLUSH);
		}
		sum += (unsigned long)(deflateParams(&zs, 5, Z_DEFAULT_STRATEGY) + 8) << slides;
		zs.avail_in = 200;
		sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8) + zs.total_out;
	}

	/* deflateBound: raw, default window and memLevel (tight bound), preset dictionary,
	 * level 0, windowBits > hash bits, overflowing sizes, no stream */
	zreset(&zs);
	deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);	/* raw */
	sum += deflateBound(&zs, 12345);
	sum += deflateBound(&zs, ~0UL);
	deflateSetDictionary(&zs, dict, sizeof(dict));
	sum += deflateBound(&zs, 12345);
	zreset(&zs);
	deflateInit2(&zs, 0, Z_DEFLATED, 14, 2, Z_DEFAULT_STRATEGY);
	sum += deflateBound(&zs, 12345) + deflateBound(&zs, ~0UL - 5);
	zreset(&zs);
	deflateInit2(&zs, 3, Z_DEFLATED, -9, 3, Z_DEFAULT_STRATEGY);
	sum += deflateBound(&zs, 12345);
	sum += deflateBound(Z_NULL, ~0UL - 3);

	/* state checks: a copied z_stream, missing allocators, corrupted status values */
	zreset(&zs);
	deflateInit2(&zs, 6, Z_DEFLATED, 10, 2, Z_DEFAULT_STRATEGY);
	memcpy(&zcopy, &zs, sizeof(zs));
	sum += (unsigned long)(deflate(&zcopy, Z_NO_FLUSH) + 8);
	zcopy.zalloc = Z_NULL;
	sum += (unsigned long)(deflateEnd(&zcopy) + 8);
	zcopy.zalloc = arena_alloc;
	zcopy.zfree = Z_NULL;
	sum += (unsigned long)(deflateParams(&zcopy, 1, 0) + 8);
	{
		deflate_state *s = (deflate_state *)zs.state;
		static const int bad_status[] = { 1, 50, 80, 100, 112, 200, 700, EXTRA_STATE,
						  NAME_STATE, COMMENT_STATE, HCRC_STATE };

		for (unsigned i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
			s->status = bad_status[i];
			r = deflateParams(&zs, 2, Z_DEFAULT_STRATEGY);
			sum = sum * 3 + (unsigned long)(r + 8) + deflateBound(&zs, 99);
			sum = sum * 3 + (unsigned long)(deflate(&zs, Z_NO_FLUSH) + deflateEnd(&zs) + 16);
		}
		s->status = INIT_STATE;
		s->strm = &zcopy;
		sum += deflateBound(&zs, 100);
		s->strm = &zs;
		zs.state = Z_NULL;
		sum += (unsigned long)(deflateSetDictionary(&zs, dict, 4) + 8);
		zs.state = (struct internal_state *)s;
	}

	/* initialisation failures: version, stream size, allocator exhausted at the state and
	 * at the window; no allocator */
	zreset(&zs);
	sum += (unsigned long)(deflateInit2_(&zs, 6, Z_DEFLATED, 12, 3, 0, "2.0", sizeof(zs)) + 8);
	sum += (unsigned long)(deflateInit2_(&zs, 6, Z_DEFLATED, 12, 3, 0, Z_NULL, sizeof(zs)) + 8);
	sum += (unsigned long)(deflateInit2_(&zs, 6, Z_DEFLATED, 12, 3, 0, ZLIB_VERSION, 8) + 8);
	sum += (unsigned long)(deflateInit2_(Z_NULL, 6, Z_DEFLATED, 12, 3, 0, ZLIB_VERSION,
					     sizeof(zs)) + 8);
	arena_used = ARENA_SIZE - 64;
	sum += (unsigned long)(deflateInit2(&zs, 6, Z_DEFLATED, 12, 3, 0) + 8);
	arena_used = ARENA_SIZE - sizeof(deflate_state) - 2000;
	sum += (unsigned long)(deflateInit2(&zs, 6, Z_DEFLATED, 12, 3, 0) + 8) << 3;
	zs.zalloc = Z_NULL;
	sum += (unsigned long)(deflateInit2(&zs, 6, Z_DEFLATED, 12, 3, 0) + 8) << 4;
	zs.zalloc = arena_alloc;
	zs.zfree = Z_NULL;
	sum += (unsigned long)(deflateInit2(&zs, 6, Z_DEFLATED, 12, 3, 0) + 8) << 5;
	sum += (unsigned long)(deflateInit2(&zs, 6, 7, 12, 3, 0) + 8) << 6;	/* method */
	sum += (unsigned long)(deflateInit2(&zs, 6, Z_DEFLATED, -16, 3, 0) + 8) << 7;
	sum += (unsigned long)(deflateInit2(&zs, 6, Z_DEFLATED, -8, 3, 0) + 8) << 8;
	return sum;
}

/* Flushes whose marker exactly exhausts the output (deflate returns with avail_out 0 right
 * after the flush), an RLE flush with no symbols pending, a finished raw stream finished
 * again. */
static noinline unsigned long deflate_edges(void)
{
	unsigned long sum = 0, full;
	static const signed char flushes[] = { Z_SYNC_FLUSH, Z_PARTIAL_FLUSH, Z_PARTIAL_FLUSH,
						Z_FULL_FLUSH };

	shape_input(src, 300, 2, 3);	/* 12 random bytes: the block leaves 7 bits behind */
	for (unsigned i = 0; i < 4; i++) {	/* first with room; then the output short */
		zreset(&zs);
		deflateInit2(&zs, 1, Z_DEFLATED, 10, 2, Z_DEFAULT_STRATEGY);
		zs.next_in = src;
		zs.avail_in = 12;
		zs.next_out = zbuf;
		zs.avail_out = sizeof(zbuf);
		deflate(&zs, flushes[i]);
		full = zs.total_out;
		deflateReset(&zs);
		zs.next_in = src;
		zs.avail_in = 12;
		zs.next_out = zbuf;
		zs.avail_out = (uInt)(full - 2 + (i & 1));
		sum = sum * 5 + (unsigned long)(deflate(&zs, flushes[i]) + 8) + zs.avail_out;
		zs.avail_out = 100;
		sum = sum * 5 + (unsigned long)(deflate(&zs, flushes[i]) + 8) + zs.total_out;
	}
	for (unsigned i = 0; i < 2; i++) {
		zreset(&zs);
		deflateInit2(&zs, 2, Z_DEFLATED, -10, 2, i ? Z_HUFFMAN_ONLY : Z_RLE);
		zs.next_in = src;
		zs.avail_in = 120;
		zs.next_out = zbuf;
		zs.avail_out = sizeof(zbuf);
		sum += (unsigned long)(deflate(&zs, Z_SYNC_FLUSH) + 8);
		sum += (unsigned long)(deflate(&zs, Z_FULL_FLUSH) + 8);
		sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8);
		sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8) + zs.total_out;
		/* new parameters after the end: the flush deflateParams needs is refused */
		sum += (unsigned long)(deflateParams(&zs, 9, Z_FILTERED) + 8) << i;
	}
	/* level 1: a 3-byte match that leaves fewer than MIN_MATCH bytes of lookahead */
	zreset(&zs);
	deflateInit2(&zs, 1, Z_DEFLATED, -9, 1, Z_DEFAULT_STRATEGY);
	zs.next_in = (z_const Bytef *)"abcdabcQ";
	zs.avail_in = 8;
	zs.next_out = zbuf;
	zs.avail_out = sizeof(zbuf);
	sum += (unsigned long)(deflate(&zs, Z_FINISH) + 8) + zs.total_out;
	/* raw deflate with a 32 KiB window and a smaller hash: the conservative bound */
	zreset(&zs);
	deflateInit2(&zs, 1, Z_DEFLATED, -15, 1, Z_DEFAULT_STRATEGY);
	sum += deflateBound(&zs, 5000);
	return sum;
}

static noinline unsigned long inflate_api(void)
{
	static const unsigned char dict[] = "the dictionary both sides agree on, longer than ..";
	unsigned long sum = 0, len;

	/* a raw stream compressed with a preset dictionary, inflated with it set up front
	 * (wrap == 0: allowed before any input), longer than the window */
	shape_input(src, 1000, 0, 7);
	zreset(&zs);
	deflateInit2(&zs, 6, Z_DEFLATED, -9, 2, Z_DEFAULT_STRATEGY);
	deflateSetDictionary(&zs, dict, sizeof(dict));
	zs.next_in = src;
	zs.avail_in = 1000;
	zs.next_out = zbuf;
	zs.avail_out = sizeof(zbuf);
	deflate(&zs, Z_FINISH);
	len = zs.total_out;
	for (unsigned k = 0; k < 2; k++) {
		zreset(&zs);
		inflateInit2(&zs, -9);
		sum += (unsigned long)(inflateSetDictionary(&zs, src + 1200 + 100 * k, 700) + 8);
		sum += (unsigned long)(inflateSetDictionary(&zs, dict, sizeof(dict)) + 8);
		zs.next_in = zbuf;
		zs.avail_in = (uInt)len;
		zs.next_out = zout;
		zs.avail_out = 2000;
		sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8);	/* output > window */
		zs.avail_out = 2000;
		sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8) + zs.total_out;
		expect(memcmp(zout, src, 1000) == 0);
		/* inflateReset2 with a window of another size: freed */
		sum += (unsigned long)(inflateReset2(&zs, -12) + 8);
		sum += (unsigned long)(inflateReset2(&zs, 5) + 8);
	}
	/* a zlib stream: dictionary at the wrong time, wrong dictionary, then none left */
	zreset(&zs);
	inflateInit2(&zs, 15);
	sum += (unsigned long)(inflateSetDictionary(&zs, dict, 9) + 8);
	/* next_in NULL with input announced; a copied stream; no allocator */
	zs.next_in = Z_NULL;
	zs.avail_in = 5;
	zs.next_out = zout;
	zs.avail_out = 10;
	sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8);
	memcpy(&zcopy, &zs, sizeof(zs));
	sum += (unsigned long)(inflateSetDictionary(&zcopy, dict, 9) + 8) << 1;
	{
		struct inflate_state *st = (struct inflate_state *)zs.state;

		st->mode = SYNC;			/* a valid mode inflate() refuses */
		zs.next_in = zbuf;
		sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8) << 2;
		st->mode = HEAD;
	}
	/* allocation failures: the state, the window (inflate, then the MEM state), the
	 * window for a dictionary */
	zreset(&zs);
	arena_used = ARENA_SIZE - 64;
	sum += (unsigned long)(inflateInit2(&zs, 15) + 8) << 3;
	zreset(&zs);
	sum += (unsigned long)(inflateInit2_(&zs, 15, "2.0", sizeof(zs)) + 8) << 4;
	sum += (unsigned long)(inflateInit2_(&zs, 15, Z_NULL, sizeof(zs)) + 8) << 4;
	sum += (unsigned long)(inflateInit2_(&zs, 15, ZLIB_VERSION, 4) + 8) << 4;
	sum += (unsigned long)(inflateInit2_(Z_NULL, 15, ZLIB_VERSION, sizeof(zs)) + 8) << 4;
	zreset(&zs);
	zs.zfree = Z_NULL;
	sum += (unsigned long)(inflateInit2(&zs, 15) + 8) << 5;
	zreset(&zs);
	inflateInit2(&zs, -15);
	arena_used = ARENA_SIZE - 64;
	sum += (unsigned long)(inflateSetDictionary(&zs, dict, 20) + 8) << 6;
	sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8) << 7;	/* MEM */
	zreset(&zs);
	inflateInit2(&zs, -15);
	arena_used = ARENA_SIZE - 64;
	zs.next_in = zbuf;
	zs.avail_in = (uInt)len;
	zs.next_out = zout;
	zs.avail_out = 100;
	sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8) << 8;
	sum += (unsigned long)(inflate(&zs, Z_NO_FLUSH) + 8) << 9;
	return sum;
}

static noinline unsigned long adler_paths(void)
{
	static const unsigned long lens[] = { 1, 1, 0, 7, 15, 16, 5552, 5553, 2 * 5552 + 32 };
	unsigned long a = 0xfff0fff0UL;

	for (unsigned i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		a = adler32_z(a ^ (i << 3), src + i, lens[i]) + (a << 1);
	a += adler32(0xffe0ffe0UL, src, 1) + adler32(0xfff0fff0UL, src, 15);
	return a + adler32(7, Z_NULL, 0);
}

unsigned long drive_zlib(void)
{
	unsigned long sum = 0;

	zreset(&zs);				/* the crafted streams' inflater */
	expect(inflateInit2(&zs, -15) == Z_OK);
	sum = sum * 31 + crafted_fixed();
	sum = sum * 31 + crafted_invalid();
	sum = sum * 31 + crafted_codes();
	sum = sum * 31 + crafted_long();
	sum = sum * 31 + crafted_window();
	inflateEnd(&zs);
	sum = sum * 31 + deflate_shapes();
	sum = sum * 31 + deflate_api();
	sum = sum * 31 + deflate_edges();
	sum = sum * 31 + inflate_api();
	sum = sum * 31 + adler_paths();
	expect(steps_total < 400000);
	return sum + steps_total;
}
