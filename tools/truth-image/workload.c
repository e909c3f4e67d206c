/*
 * The task's work: real third-party C (zlib deflate/inflate, LZ4, xxHash) driven over a
 * deterministic input, plus a WARN-style trap whose handler does work of its own.
 * task_main() returns a checksum of every result; the harness compares it with an
 * uninterrupted run to prove that its interrupts were transparent.
 */
#include "truth.h"
#include "zlib.h"
#define LZ4_STATIC_LINKING_ONLY
#include "lz4.h"
#define XXH_STATIC_LINKING_ONLY
#include "xxhash.h"
#include "drivers.h"

#define noinline __attribute__((noinline))
#define INPUT_SIZE 6144

static unsigned char input[INPUT_SIZE];
static unsigned char packed[INPUT_SIZE + 1024];
static unsigned char unpacked[INPUT_SIZE];
static unsigned long lz4_state[(16 * 1024 + 64) / sizeof(unsigned long)];
static unsigned char irq_buffer[512];

/* A bump allocator for zlib (reset per stream); zlib's Z_SOLO mode needs zalloc/zfree. */
static unsigned char arena[320 * 1024] __attribute__((aligned(16)));
unsigned long arena_used;

voidpf arena_alloc(voidpf opaque, uInt items, uInt size)
{
	unsigned long bytes = ((unsigned long)items * size + 15) & ~15UL;

	(void)opaque;
	if (arena_used + bytes > sizeof(arena))
		return Z_NULL;
	arena_used += bytes;
	return arena + arena_used - bytes;
}

void arena_free(voidpf opaque, voidpf address)
{
	(void)opaque;
	(void)address;
}

/* Text-like input with repetitions (so that deflate finds matches) and some noise. */
noinline void make_input(unsigned char *buf, unsigned long n, unsigned long seed)
{
	static const char words[] =
		"the quick brown fox jumps over the lazy dog; frame pointers and sframe "
		"unwind the interrupted stack reliably at every instruction of the kernel ";
	unsigned long x = seed;

	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + 1442695040888963407UL;
		if ((x >> 60) == 0)
			buf[i] = (unsigned char)(x >> 32);
		else
			buf[i] = (unsigned char)words[(i + (x >> 62)) % (sizeof(words) - 1)];
	}
}

static noinline unsigned long zlib_roundtrip(int level, int strategy, int window_bits)
{
	z_stream strm;
	unsigned long packed_len, sum;

	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	fail_if(deflateInit2(&strm, level, Z_DEFLATED, window_bits, 4, strategy) != Z_OK);
	strm.next_in = input;
	strm.avail_in = INPUT_SIZE;
	strm.next_out = packed;
	strm.avail_out = sizeof(packed);
	fail_if(deflate(&strm, Z_FINISH) != Z_STREAM_END);
	packed_len = strm.total_out;
	deflateEnd(&strm);

	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	fail_if(inflateInit2(&strm, window_bits) != Z_OK);
	strm.next_in = packed;
	strm.avail_in = (uInt)packed_len;
	strm.next_out = unpacked;
	strm.avail_out = sizeof(unpacked);
	fail_if(inflate(&strm, Z_FINISH) != Z_STREAM_END);
	inflateEnd(&strm);
	fail_if(memcmp(input, unpacked, INPUT_SIZE) != 0);
	sum = adler32(0, packed, (uInt)packed_len);
	return sum ^ (packed_len << 32);
}

static noinline unsigned long lz4_roundtrip(int acceleration)
{
	int packed_len, out_len;

	packed_len = LZ4_compress_fast_extState(lz4_state, (const char *)input, (char *)packed,
						INPUT_SIZE, sizeof(packed), acceleration);
	fail_if(packed_len <= 0);
	out_len = LZ4_decompress_safe((const char *)packed, (char *)unpacked, packed_len,
				      sizeof(unpacked));
	fail_if((out_len != INPUT_SIZE) | (memcmp(input, unpacked, INPUT_SIZE) != 0));
	return XXH32(packed, (size_t)packed_len, 0) ^ ((unsigned long)packed_len << 32);
}

/* zlib beyond one-shot: a preset dictionary (inflate's Z_NEED_DICT path), a mid-stream
 * deflateParams, sync flushes of small chunks, raw deflate, and inflate into a small output
 * window called many times. */
static noinline unsigned long zlib_streaming(void)
{
	static const unsigned char dict[] = "unwind the interrupted stack reliably frame pointers";
	z_stream strm;
	unsigned long packed_len, out_len = 0, sum = 0;
	int ret;

	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	fail_if(deflateInit2(&strm, 5, Z_DEFLATED, 11, 5, Z_DEFAULT_STRATEGY) != Z_OK);
	deflateSetDictionary(&strm, dict, sizeof(dict) - 1);
	strm.next_out = packed;
	strm.avail_out = sizeof(packed);
	for (unsigned long off = 0; off < INPUT_SIZE; off += 700) {
		unsigned long n = INPUT_SIZE - off < 700 ? INPUT_SIZE - off : 700;

		if (off == 2800)
			deflateParams(&strm, 8, Z_FILTERED);
		strm.next_in = input + off;
		strm.avail_in = (uInt)n;
		ret = deflate(&strm, off + n >= INPUT_SIZE ? Z_FINISH : Z_SYNC_FLUSH);
		fail_if((ret != Z_OK) & (ret != Z_STREAM_END));
	}
	packed_len = strm.total_out;
	sum += deflateBound(&strm, INPUT_SIZE);
	deflateEnd(&strm);

	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	fail_if(inflateInit2(&strm, 11) != Z_OK);
	strm.next_in = packed;
	strm.avail_in = (uInt)packed_len;
	do {
		strm.next_out = unpacked + out_len;
		strm.avail_out = INPUT_SIZE - out_len < 97 ? (uInt)(INPUT_SIZE - out_len) : 97;
		ret = inflate(&strm, Z_NO_FLUSH);
		if (ret == Z_NEED_DICT)
			ret = inflateSetDictionary(&strm, dict, sizeof(dict) - 1);
		out_len = strm.total_out;
	} while (ret == Z_OK && out_len < INPUT_SIZE);
	inflateEnd(&strm);
	fail_if((ret != Z_STREAM_END) | (memcmp(input, unpacked, INPUT_SIZE) != 0));

	/* raw deflate (no zlib header) of a slice, inflated in one call */
	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	fail_if(deflateInit2(&strm, 3, Z_DEFLATED, -9, 3, Z_DEFAULT_STRATEGY) != Z_OK);
	strm.next_in = input + 100;
	strm.avail_in = 2000;
	strm.next_out = packed;
	strm.avail_out = sizeof(packed);
	fail_if(deflate(&strm, Z_FINISH) != Z_STREAM_END);
	packed_len = strm.total_out;
	deflateEnd(&strm);
	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	fail_if(inflateInit2(&strm, -9) != Z_OK);
	strm.next_in = packed;
	strm.avail_in = (uInt)packed_len;
	strm.next_out = unpacked;
	strm.avail_out = sizeof(unpacked);
	ret = inflate(&strm, Z_FINISH);
	inflateEnd(&strm);
	fail_if((ret != Z_STREAM_END) | (memcmp(input + 100, unpacked, 2000) != 0));
	return sum + packed_len;
}

/* LZ4 streaming (compress_fast_continue / decompress_safe_continue), destSize, partial. */
static noinline unsigned long lz4_streaming(void)
{
	static LZ4_stream_t stream;
	static LZ4_streamDecode_t decode;
	unsigned long sum = 0;
	int in_off = 0, out_len, src_size;

	LZ4_initStream(&stream, sizeof(stream));
	LZ4_setStreamDecode(&decode, 0, 0);
	while (in_off < INPUT_SIZE) {
		int n = INPUT_SIZE - in_off < 1000 ? INPUT_SIZE - in_off : 1000;
		int c = LZ4_compress_fast_continue(&stream, (const char *)input + in_off,
						   (char *)packed, n, sizeof(packed), 2);

		fail_if(c <= 0);
		out_len = LZ4_decompress_safe_continue(&decode, (const char *)packed,
						       (char *)unpacked + in_off, c, n);
		fail_if(out_len != n);
		sum += (unsigned long)c;
		in_off += n;
	}
	fail_if(memcmp(input, unpacked, INPUT_SIZE) != 0);
	src_size = INPUT_SIZE;
	/* the _extState variant: LZ4_compress_destSize() puts a 16 KiB state on the stack */
	out_len = LZ4_compress_destSize_extState(lz4_state, (const char *)input, (char *)packed,
						 &src_size, 900, 1);
	fail_if(out_len <= 0);
	out_len = LZ4_decompress_safe_partial((const char *)packed, (char *)unpacked, out_len,
					      300, sizeof(unpacked));
	fail_if((out_len < 300) | (memcmp(input, unpacked, 300) != 0));
	return sum ^ ((unsigned long)src_size << 20);
}

/* xxHash: one-shot at every length class of XXH3 (0, 1-3, 4-8, 9-16, 17-128, 129-240,
 * long), 128-bit, and the streaming APIs. */
static noinline unsigned long xxhash_variety(void)
{
	static XXH3_state_t state3;
	static XXH64_state_t state64;
	static XXH32_state_t state32;
	static const unsigned long lengths[] = { 0, 2, 6, 12, 40, 200, 1000, 4100 };
	unsigned long h = 0;

	for (unsigned long i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		XXH128_hash_t h128 = XXH3_128bits(input + i, lengths[i]);

		h = h * 33 + XXH3_64bits(input + i, lengths[i]) + h128.low64 + h128.high64;
		h ^= XXH32(input + i, lengths[i], (unsigned)i);
	}
	XXH3_INITSTATE(&state3);
	XXH3_64bits_reset_withSeed(&state3, 99);
	XXH64_reset(&state64, 7);
	XXH32_reset(&state32, 3);
	for (unsigned long off = 0; off < INPUT_SIZE; off += 333) {
		unsigned long n = INPUT_SIZE - off < 333 ? INPUT_SIZE - off : 333;

		XXH3_64bits_update(&state3, input + off, n);
		XXH64_update(&state64, input + off, n);
		XXH32_update(&state32, input + off, n);
	}
	return h ^ XXH3_64bits_digest(&state3) ^ XXH64_digest(&state64) ^ XXH32_digest(&state32);
}

static noinline unsigned long hash_all(const void *buf, unsigned long n)
{
	unsigned long h = XXH64(buf, n, 0x5eed);

	h ^= XXH3_64bits(buf, n);
	h ^= XXH3_64bits_withSeed(buf, n / 3, h);
	return h ^ truth_leaf_checksum(buf, n);
}

/* "softirq" work done on the IRQ stack by an IRQ with action WORK (nested IRQs land here). */
void irq_work(void)
{
	unsigned long h;

	memmove(irq_buffer + 8, irq_buffer, sizeof(irq_buffer) - 8);
	h = XXH64(irq_buffer, sizeof(irq_buffer), truth_irq_count);
	h ^= XXH3_64bits(irq_buffer, 200);
	memcpy(irq_buffer, &h, sizeof(h));
}

/* Work done by the BRK handler (a WARN report): nested IRQs are taken here too. */
void bug_handler_work(struct pt_regs *regs)
{
	unsigned long h = XXH32(regs, sizeof(*regs), 7);

	h ^= adler32(h, (const Bytef *)regs, 96);
	memcpy(irq_buffer + 16, &h, sizeof(h));
}

static noinline void check_state(unsigned long value)
{
	if (value == 0x77)	/* a WARN_ON() that fires: the image's only sync exception */
		asm volatile("brk #0x800" ::: "memory");
}


/* ---- rare and error paths ----------------------------------------------------------------
 * Everything below drives the code the round trips above do not: corrupted and truncated
 * streams, every zlib wrapper/level/strategy/window/memLevel, flush modes, one-byte buffers,
 * dictionaries, LZ4's dictionary/ext-dict/prefix modes, 64 KiB+ inputs, limited outputs, and
 * XXH3 with seeds and secrets at every length class.  Results (including error codes) are
 * folded into the task's checksum, which must not change when the harness interrupts. */

#define BIG_SIZE (70 * 1024)
static unsigned char big[BIG_SIZE];
static unsigned char big_packed[BIG_SIZE + BIG_SIZE / 255 + 64];
static unsigned char big_out[BIG_SIZE];
static unsigned char scratch[INPUT_SIZE + 1024];

static void zinit(z_stream *strm)
{
	memset(strm, 0, sizeof(*strm));
	arena_used = 0;
	strm->zalloc = arena_alloc;
	strm->zfree = arena_free;
}

/* Inflate src (raw/zlib per window_bits) with the given input and output chunk sizes;
 * returns the last return code mixed with the output length. */
static noinline unsigned long inflate_with(const unsigned char *src, unsigned long n,
					   int window_bits, unsigned in_chunk, unsigned out_chunk,
					   const unsigned char *dict, unsigned dict_len)
{
	z_stream strm;
	int ret = Z_OK;
	unsigned long steps = 0;

	zinit(&strm);
	if (inflateInit2(&strm, window_bits) != Z_OK)
		return 0x100;
	strm.next_in = (Bytef *)src;
	strm.next_out = scratch;
	while (steps++ < 100000) {
		unsigned long in_left = n - (unsigned long)(strm.next_in - src);
		unsigned long out_left = sizeof(scratch) - (unsigned long)(strm.next_out - scratch);

		strm.avail_in = (uInt)(in_left < in_chunk ? in_left : in_chunk);
		strm.avail_out = (uInt)(out_left < out_chunk ? out_left : out_chunk);
		ret = inflate(&strm, strm.avail_in == in_left ? Z_FINISH : Z_NO_FLUSH);
		if (ret == Z_NEED_DICT && dict)
			ret = inflateSetDictionary(&strm, dict, dict_len);
		if (ret != Z_OK && ret != Z_BUF_ERROR)
			break;
		if (ret == Z_BUF_ERROR && strm.avail_in == 0 && in_left == 0)
			break;
	}
	inflateEnd(&strm);
	return ((unsigned long)(ret + 16) << 32) ^ strm.total_out ^ (strm.msg ? strm.msg[0] : 0);
}

/* Deflate input[0..n) with every knob; out_chunk/in_chunk small drive the pending/flush
 * paths; flush is used between chunks. Returns the compressed length, or DEFLATE_FAILED + code when deflateInit2
 * rejects the parameters (the invalid-parameter cases). */
#define DEFLATE_FAILED (1UL << 40)

static noinline unsigned long deflate_with(int level, int strategy, int window_bits,
					   int mem_level, unsigned long n, unsigned in_chunk,
					   unsigned out_chunk, int flush, int params_at)
{
	z_stream strm;
	int ret = Z_OK;
	unsigned long steps = 0;

	zinit(&strm);
	ret = deflateInit2(&strm, level, Z_DEFLATED, window_bits, mem_level, strategy);
	if (ret != Z_OK)
		return DEFLATE_FAILED + (unsigned long)(ret + 16);
	strm.next_in = input;
	strm.next_out = packed;
	do {	/* until the end, an error, or a bound that zlib's progress never reaches */
		unsigned long in_left = n - strm.total_in;
		unsigned long out_left = sizeof(packed) - strm.total_out;
		int mode;

		if (params_at && strm.total_in >= (unsigned long)params_at) {
			deflateParams(&strm, level == 0 ? 9 : 0, Z_DEFAULT_STRATEGY);
			params_at = 0;
		}
		strm.avail_in = (uInt)(in_left < in_chunk ? in_left : in_chunk);
		strm.avail_out = (uInt)(out_left < out_chunk ? out_left : out_chunk);
		mode = strm.avail_in == in_left ? Z_FINISH : flush;
		ret = deflate(&strm, mode);
	} while ((ret == Z_OK || ret == Z_BUF_ERROR) && ++steps < 200000);
	deflateEnd(&strm);
	fail_if(ret != Z_STREAM_END);
	return strm.total_out;
}

static noinline unsigned long zlib_matrix(void)
{
	static const struct { signed char level, strategy, wbits, mem; unsigned short in, out;
			      signed char flush; short params; } cases[] = {
		{ 0, Z_DEFAULT_STRATEGY, 15, 2, 6144, 6200, Z_NO_FLUSH, 0 },
		{ 0, Z_DEFAULT_STRATEGY, -9, 1, 100, 7, Z_NO_FLUSH, 0 },
		{ 0, Z_DEFAULT_STRATEGY, 9, 2, 3000, 50, Z_SYNC_FLUSH, 0 },
		{ 0, Z_DEFAULT_STRATEGY, 12, 3, 700, 6200, Z_FULL_FLUSH, 3000 },
		{ 0, Z_DEFAULT_STRATEGY, 8, 1, 1, 6200, Z_NO_FLUSH, 0 },
		{ 0, Z_DEFAULT_STRATEGY, 13, 4, 600, 1, Z_BLOCK, 0 },
		{ 1, Z_DEFAULT_STRATEGY, 15, 4, 1000, 1, Z_PARTIAL_FLUSH, 0 },
		{ 1, Z_FILTERED, 12, 5, 13, 6200, Z_NO_FLUSH, 700 },
		{ 2, Z_DEFAULT_STRATEGY, 9, 1, 250, 40, Z_PARTIAL_FLUSH, 0 },
		{ 3, Z_RLE, 15, 6, 6144, 3, Z_NO_FLUSH, 0 },
		{ 4, Z_HUFFMAN_ONLY, -15, 3, 512, 64, Z_BLOCK, 0 },
		{ 5, Z_FIXED, 10, 5, 6144, 6200, Z_NO_FLUSH, 0 },
		{ 6, Z_DEFAULT_STRATEGY, -12, 7, 97, 31, Z_SYNC_FLUSH, 0 },
		{ 7, Z_FILTERED, 15, 4, 333, 6200, Z_FULL_FLUSH, 0 },
		{ 8, Z_DEFAULT_STRATEGY, 14, 7, 6144, 2, Z_NO_FLUSH, 1000 },
		{ 9, Z_DEFAULT_STRATEGY, 15, 9, 300, 6200, Z_PARTIAL_FLUSH, 600 },
		{ 9, Z_RLE, 9, 1, 6144, 6200, Z_NO_FLUSH, 0 },
		{ -1, Z_DEFAULT_STRATEGY, 11, 4, 6144, 6200, Z_NO_FLUSH, 0 },
		{ 10, Z_DEFAULT_STRATEGY, 11, 4, 6144, 6200, Z_NO_FLUSH, 0 },	/* bad level */
		{ 6, 5, 11, 4, 6144, 6200, Z_NO_FLUSH, 0 },			/* bad strategy */
		{ 6, Z_DEFAULT_STRATEGY, 7, 4, 6144, 6200, Z_NO_FLUSH, 0 },	/* bad window */
		{ 6, Z_DEFAULT_STRATEGY, 11, 0, 6144, 6200, Z_NO_FLUSH, 0 },	/* bad memLevel */
		{ 6, Z_DEFAULT_STRATEGY, 31, 4, 6144, 6200, Z_NO_FLUSH, 0 },	/* gzip: NO_GZIP */
	};
	unsigned long sum = 0;

	for (unsigned long i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned long len = deflate_with(cases[i].level, cases[i].strategy, cases[i].wbits,
						 cases[i].mem, i ? 900 + i * 53 : INPUT_SIZE, cases[i].in,
						 cases[i].out, cases[i].flush, cases[i].params);

		sum = sum * 131 + len;
		if (len < DEFLATE_FAILED && len > 0) {
			/* inflate it back byte-by-byte and in one go (windowBits 0: from header) */
			int wb = cases[i].wbits < 0 ? cases[i].wbits : (i & 1 ? 0 : 15);

			if (cases[i].wbits < 0 && cases[i].wbits > -15)
				wb = -15;
			sum ^= inflate_with(packed, len, wb, i % 6 == 2 ? 1 : 4096,
					    i % 6 == 4 ? 1 : 7000, 0, 0);
			memcpy(big_packed, packed, len);
			sum ^= inflate_with(big_packed, len, wb, 7, 13, 0, 0) << 1;
		}
	}
	return sum;
}

/* Malformed zlib and raw deflate streams, and deterministic corruption of valid ones. */
static noinline unsigned long zlib_errors(void)
{
	static const unsigned char bad_check[] = { 0x78, 0x9d, 0x03, 0x00 };
	static const unsigned char bad_method[] = { 0x77, 0x09, 0x03, 0x00 };
	static const unsigned char bad_window[] = { 0x88, 0x1c, 0x03, 0x00 };
	static const unsigned char preset_no_dict[] = { 0x78, 0xbb, 0, 0, 0, 1, 0x03, 0x00 };
	static const unsigned char bad_type[] = { 0x07, 0x00 };
	static const unsigned char bad_stored[] = { 0x01, 0x05, 0x00, 0x00, 0x00, 'a' };
	static const unsigned char too_many[] = { 0xfd, 0xff, 0xff, 0xff };
	static const unsigned char dict[] = "the quick brown fox jumps over the lazy dog; frame";
	unsigned long sum = 0, len;
	z_stream strm;

	sum += inflate_with(bad_check, sizeof(bad_check), 15, 64, 64, 0, 0);
	sum += inflate_with(bad_method, sizeof(bad_method), 15, 64, 64, 0, 0);
	sum += inflate_with(bad_window, sizeof(bad_window), 9, 64, 64, 0, 0);
	sum += inflate_with(preset_no_dict, sizeof(preset_no_dict), 15, 64, 64, 0, 0);
	sum += inflate_with(preset_no_dict, sizeof(preset_no_dict), 15, 64, 64, dict, 10);
	sum += inflate_with(bad_type, sizeof(bad_type), -15, 64, 64, 0, 0);
	sum += inflate_with(bad_stored, sizeof(bad_stored), -15, 64, 64, 0, 0);
	sum += inflate_with(too_many, sizeof(too_many), -15, 64, 64, 0, 0);
	sum += inflate_with(bad_check, sizeof(bad_check), 7, 64, 64, 0, 0);	/* bad wbits */

	/* raw deflate with a preset dictionary, inflated without it: distance too far back */
	zinit(&strm);
	deflateInit2(&strm, 6, Z_DEFLATED, -10, 6, Z_DEFAULT_STRATEGY);
	deflateSetDictionary(&strm, input + 2000, 2000);	/* longer than the window */
	strm.next_in = input;
	strm.avail_in = 1500;
	strm.next_out = packed;
	strm.avail_out = sizeof(packed);
	deflate(&strm, Z_FINISH);
	len = strm.total_out;
	deflateEnd(&strm);
	sum += inflate_with(packed, len, -10, 4096, 7000, 0, 0);
	sum += inflate_with(packed, len, -10, 1, 1, 0, 0);

	/* a valid zlib stream (dynamic blocks) with corrupted bytes at many places, and
	 * truncated; one-shot and byte-wise */
	len = deflate_with(6, Z_DEFAULT_STRATEGY, 15, 3, 1200, 3000, 6200, Z_NO_FLUSH, 0);
	fail_if(len >= DEFLATE_FAILED);
	memcpy(big_packed, packed, len);
	for (unsigned long k = 0; k < 28; k++) {
		unsigned long at = (k * 7919) % len;

		memcpy(packed, big_packed, len);
		packed[at] ^= (unsigned char)(1u << (k & 7)) | (k & 8 ? 0x5a : 0);
		sum = sum * 3 + inflate_with(packed, len, 15, k % 4 == 1 ? 1 : 4096,
					     k % 4 == 2 ? 5 : 7000, 0, 0);
	}
	memcpy(packed, big_packed, len);
	sum += inflate_with(packed, len - 3, 15, 4096, 7000, 0, 0);	/* truncated */
	packed[len - 1] ^= 1;						/* bad adler */
	sum += inflate_with(packed, len, 15, 4096, 7000, 0, 0);
	/* fixed-Huffman stream corrupted */
	len = deflate_with(5, Z_FIXED, -15, 2, 1000, 2000, 6200, Z_NO_FLUSH, 0);
	fail_if(len >= DEFLATE_FAILED);
	memcpy(big_packed, packed, len);
	for (unsigned long k = 0; k < 24; k++) {
		memcpy(packed, big_packed, len);
		packed[(k * 131) % len] ^= (unsigned char)(0x81 >> (k & 7));
		sum = sum * 5 + inflate_with(packed, len, -15, k % 4 == 1 ? 1 : 4096, 7000, 0, 0);
	}
	/* API misuse: the state checks */
	sum += (unsigned long)(deflate(&strm, Z_FINISH) + 16);
	sum += (unsigned long)(inflate(&strm, Z_FINISH) + 16);
	sum += (unsigned long)(deflateEnd(&strm) + 16) + (unsigned long)(inflateEnd(&strm) + 16);
	sum += deflateBound(0, 1000);
	for (int wb = -15; wb <= 15; wb += 5) {
		zinit(&strm);
		deflateInit2(&strm, 6, Z_DEFLATED, wb < 0 ? wb : (wb < 9 ? 15 : wb), 1,
			     Z_DEFAULT_STRATEGY);
		sum += deflateBound(&strm, 100000UL * (unsigned long)(wb + 16));
		deflateReset(&strm);
		deflateParams(&strm, 0, Z_HUFFMAN_ONLY);
		deflateEnd(&strm);
	}
	return sum;
}

/* LZ4: 64 KiB+ inputs (byU32 tables, 64 KiB prefixes), dictionaries (loaded, attached,
 * external), double-buffered streams (ext dict), limited outputs, tiny inputs, corruption. */
static noinline unsigned long lz4_matrix(void)
{
	static LZ4_stream_t stream, dict_stream;
	static LZ4_streamDecode_t decode;
	static char dbuf[2][1024], ddec[2][1024];
	unsigned long sum = 0;
	int c, c1, d, src_size;

	make_input(big, BIG_SIZE, 777);
	/* byU32 one-shot, then limited output that fails */
	c = LZ4_compress_fast_extState(lz4_state, (const char *)big, (char *)big_packed,
				       BIG_SIZE, sizeof(big_packed), 1);
	d = LZ4_decompress_safe((const char *)big_packed, (char *)big_out, c, BIG_SIZE);
	fail_if((d != BIG_SIZE) | (memcmp(big, big_out, BIG_SIZE) != 0));
	sum += (unsigned long)c;
	sum += (unsigned long)LZ4_compress_fast_extState(lz4_state, (const char *)big,
						    (char *)big_packed, BIG_SIZE, c / 2, 3);
	sum += (unsigned long)LZ4_compress_fast_extState(lz4_state, (const char *)input,
						    (char *)packed, INPUT_SIZE, 900, 70000);
	for (int n = 0; n < 20; n++)	/* tiny inputs: all literals */
		sum += (unsigned long)LZ4_compress_fast_extState(lz4_state, (const char *)input,
							    (char *)packed, n, 64, 1) << n;
	/* byU32 destSize */
	src_size = BIG_SIZE;
	sum += (unsigned long)LZ4_compress_destSize_extState(lz4_state, (const char *)big,
							     (char *)big_packed, &src_size,
							     6000, 1);
	for (int t = 1; t < 40; t += 6) {
		src_size = INPUT_SIZE;
		sum += (unsigned long)LZ4_compress_destSize_extState(
			lz4_state, (const char *)input, (char *)packed, &src_size, t, 1);
		sum += (unsigned long)src_size;
	}

	/* a 64 KiB prefix: two blocks of one stream, the second decoded with the first as
	 * its adjacent dictionary */
	LZ4_initStream(&stream, sizeof(stream));
	c1 = LZ4_compress_fast_continue(&stream, (const char *)big, (char *)big_packed,
					65536, sizeof(big_packed), 1);
	c = LZ4_compress_fast_continue(&stream, (const char *)big + 65536,
				       (char *)big_packed + c1, BIG_SIZE - 65536,
				       (int)sizeof(big_packed) - c1, 1);
	d = LZ4_decompress_safe((const char *)big_packed, (char *)big_out, c1, 65536);
	d += LZ4_decompress_safe_usingDict((const char *)big_packed + c1, (char *)big_out + 65536,
					   c, BIG_SIZE - 65536, (const char *)big_out, 65536);
	fail_if((d != BIG_SIZE) | (memcmp(big, big_out, BIG_SIZE) != 0));
	/* a loaded dictionary, decoded with the dictionary elsewhere (forceExtDict) */
	LZ4_initStream(&stream, sizeof(stream));
	LZ4_loadDict(&stream, (const char *)input, 3000);
	c = LZ4_compress_fast_continue(&stream, (const char *)input + 3000, (char *)packed,
				       3000, sizeof(packed), 1);
	d = LZ4_decompress_safe_usingDict((const char *)packed, (char *)unpacked, c, 3000,
					  (const char *)input, 3000);
	fail_if((d != 3000) | (memcmp(unpacked, input + 3000, 3000) != 0));
	sum += (unsigned long)c;
	/* an attached dictionary (dictCtx), one byU16 and one byU32 block */
	LZ4_initStream(&dict_stream, sizeof(dict_stream));
	LZ4_loadDict(&dict_stream, (const char *)input, 4000);
	for (int k = 0; k < 2; k++) {
		LZ4_initStream(&stream, sizeof(stream));
		LZ4_attach_dictionary(&stream, &dict_stream);
		c = LZ4_compress_fast_continue(&stream, k ? (const char *)big : (const char *)input + 1000,
					       (char *)big_packed, k ? BIG_SIZE : 5000,
					       sizeof(big_packed), 1 + k);
		sum += (unsigned long)c;
	}
	/* double-buffered streaming: every block's dictionary is the other buffer */
	LZ4_initStream(&stream, sizeof(stream));
	LZ4_setStreamDecode(&decode, 0, 0);
	for (int i = 0, off = 0; off < INPUT_SIZE; i++) {
		int n = INPUT_SIZE - off < 900 ? INPUT_SIZE - off : 900;

		memcpy(dbuf[i & 1], input + off, (unsigned long)n);
		c = LZ4_compress_fast_continue(&stream, dbuf[i & 1], (char *)packed, n,
					       sizeof(packed), 1);
		d = LZ4_decompress_safe_continue(&decode, (const char *)packed, ddec[i & 1], c, n);
		fail_if((d != n) | (memcmp(ddec[i & 1], input + off, (unsigned long)n) != 0));
		off += n;
	}
	/* a block continuing the previous one in place while an older one is the external
	 * dictionary (LZ4_decompress_safe_continue's double-dictionary case) */
	LZ4_initStream(&stream, sizeof(stream));
	LZ4_setStreamDecode(&decode, 0, 0);
	for (int i = 0; i < 4; i++) {
		char *dst = i == 0 ? (char *)big_out : (char *)unpacked + (i - 1) * 700;

		c = LZ4_compress_fast_continue(&stream, (const char *)input + i * 700,
					       (char *)packed, 700, sizeof(packed), 1);
		d = LZ4_decompress_safe_continue(&decode, (const char *)packed, dst, c, 700);
		fail_if((d != 700) | (memcmp(dst, input + i * 700, 700) != 0));
	}
	/* limited output on a stream (its state is undefined afterwards: discarded) */
	LZ4_initStream(&stream, sizeof(stream));
	LZ4_loadDict(&stream, (const char *)input, 1000);
	sum += (unsigned long)LZ4_compress_fast_continue(&stream, (const char *)input + 1000,
							 (char *)packed, 3000, 60, 1);
	/* corruption and truncation of a valid block */
	c = LZ4_compress_fast_extState(lz4_state, (const char *)input, (char *)packed, 3000,
				       sizeof(packed), 1);
	memcpy(big_packed, packed, (unsigned long)c);
	for (int k = 0; k < 40; k++) {
		memcpy(packed, big_packed, (unsigned long)c);
		packed[(k * 4967) % c] ^= (unsigned char)(0xff >> (k & 7));
		d = LZ4_decompress_safe((const char *)packed, (char *)unpacked,
					k & 1 ? c : c - (k % 5), k & 2 ? 3000 : 2000 + k);
		sum = sum * 3 + (unsigned long)(d + 0x10000);
		d = LZ4_decompress_safe_partial((const char *)packed, (char *)unpacked, c,
						k * 70, sizeof(unpacked));
		sum = sum * 3 + (unsigned long)(d + 0x10000);
		d = LZ4_decompress_safe_usingDict((const char *)packed, (char *)unpacked, c, 3000,
						  (const char *)input, k * 10);
		sum = sum * 3 + (unsigned long)(d + 0x10000);
	}
	for (int k = 0; k < 3000; k += 250)
		sum += (unsigned long)LZ4_decompress_safe_partial((const char *)big_packed,
								 (char *)unpacked, c, k, k + 17);
	return sum;
}


/* LZ4 on data with long literal runs (incompressible bytes) and long matches (zero runs):
 * the 15/255-extension length codes of every inlined compressor and decoder variant. */
static noinline unsigned long lz4_shapes(void)
{
	static LZ4_stream_t stream, dict_stream;
	static LZ4_streamDecode_t decode;
	static const int limits[] = { 40, 300, 1000, 3000, 9000 };
	unsigned long sum = 0, x = 99;
	int c, d, n = 20000, src_size;

	for (int i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + 1442695040888963407UL;
		big[i] = (i / 700) % 3 == 0 ? (unsigned char)(x >> 40) :
			 (i / 700) % 3 == 1 ? 0 : input[i % 500];
	}
	c = LZ4_compress_fast_extState(lz4_state, (const char *)big, (char *)big_packed, n,
				       sizeof(big_packed), 1);
	d = LZ4_decompress_safe((const char *)big_packed, (char *)big_out, c, n);
	fail_if((d != n) | (memcmp(big, big_out, (unsigned long)n) != 0));
	for (int t = 100; t < n; t += 2900)
		sum += (unsigned long)LZ4_decompress_safe_partial((const char *)big_packed,
								 (char *)big_out, c, t, n);
	for (unsigned long i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		sum = sum * 7 + (unsigned long)LZ4_compress_fast_extState(
			lz4_state, (const char *)big, (char *)big_packed, n, limits[i], 1);
		src_size = n;
		sum = sum * 7 + (unsigned long)LZ4_compress_destSize_extState(
			lz4_state, (const char *)big, (char *)big_packed, &src_size, limits[i], 1);
		sum += (unsigned long)src_size;
		/* an attached dictionary and a limited output */
		LZ4_initStream(&dict_stream, sizeof(dict_stream));
		LZ4_loadDict(&dict_stream, (const char *)big + 5000, 4000);
		LZ4_initStream(&stream, sizeof(stream));
		LZ4_attach_dictionary(&stream, &dict_stream);
		sum = sum * 7 + (unsigned long)LZ4_compress_fast_continue(
			&stream, (const char *)big + 9000, (char *)big_packed, 8000,
			i & 1 ? limits[i] : (int)sizeof(big_packed), 1);
		/* an external dictionary (not adjacent) and a limited output */
		LZ4_initStream(&stream, sizeof(stream));
		LZ4_loadDict(&stream, (const char *)big, 6000);
		c = LZ4_compress_fast_continue(&stream, (const char *)big + 12000,
					       (char *)big_packed, 8000,
					       i & 1 ? (int)sizeof(big_packed) : limits[i], 1);
		sum = sum * 7 + (unsigned long)c;
		if (c > 0) {
			d = LZ4_decompress_safe_usingDict((const char *)big_packed, (char *)big_out,
							  c, 8000, (const char *)big, 6000);
			fail_if((d != 8000) | (memcmp(big_out, big + 12000, 8000) != 0));
		}
	}
	/* adjacent prefixes: small (12000 bytes) and 64 KiB, of the mixed data */
	for (int i = n; i < BIG_SIZE; i++)
		big[i] = big[i % n] ^ (unsigned char)(i >> 13);
	for (int k = 0; k < 2; k++) {
		int at = k ? 65536 : 12000, len = BIG_SIZE - 65536;

		LZ4_initStream(&stream, sizeof(stream));
		LZ4_loadDict(&stream, (const char *)big, at);
		c = LZ4_compress_fast_continue(&stream, (const char *)big + at, (char *)big_packed,
					       len, sizeof(big_packed), 1);
		memcpy(big_out, big, (unsigned long)at);
		d = LZ4_decompress_safe_usingDict((const char *)big_packed, (char *)big_out + at, c,
						  len, (const char *)big_out, at);
		fail_if((d != len) | (memcmp(big_out + at, big + at, (unsigned long)len) != 0));
		sum += (unsigned long)c;
	}
	/* streaming decode: small prefix, then double dictionary, of the mixed data */
	LZ4_initStream(&stream, sizeof(stream));
	LZ4_setStreamDecode(&decode, 0, 0);
	for (int i = 0; i < 4; i++) {
		char *dst = i == 0 ? (char *)big_out + 15000 : (char *)big_out + (i - 1) * 3000;

		c = LZ4_compress_fast_continue(&stream, (const char *)big + i * 3000,
					       (char *)big_packed, 3000, sizeof(big_packed), 1);
		d = LZ4_decompress_safe_continue(&decode, (const char *)big_packed, dst, c, 3000);
		fail_if((d != 3000) | (memcmp(dst, big + i * 3000, 3000) != 0));
		sum += (unsigned long)c;
	}
	return sum;
}

/* XXH3 with seeds and custom secrets at every length class; streaming with small pieces. */
static noinline unsigned long xxhash_matrix(void)
{
	static XXH3_state_t state3;
	static XXH64_state_t state64;
	static XXH32_state_t state32;
	static const unsigned long lengths[] = { 0, 1, 3, 4, 8, 9, 16, 17, 100, 128, 129, 200,
						 240, 241, 1024, 1100, 5000 };
	const unsigned char *secret = input + 7;	/* 200 bytes: >= XXH3_SECRET_SIZE_MIN */
	unsigned long h = 0;

	for (unsigned long i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		unsigned long n = lengths[i];

		h = h * 31 + XXH3_64bits_withSeed(input + 3, n, i ? 0x1234567 * i : 0);
		h = h * 31 + XXH3_64bits_withSecret(input + 5, n, secret, 200);
		h = h * 31 + XXH3_64bits(input + 9, n);
		h = h * 31 + XXH3_128bits(input + 1, n).low64;
		h = h * 31 + XXH64(input + i, n, i);
		h = h * 31 + XXH32(input + i, n, (unsigned)i);
		/* streaming with odd-sized pieces, digests of short totals */
		XXH3_INITSTATE(&state3);
		XXH3_64bits_reset_withSeed(&state3, i & 1 ? 0 : i);
		XXH64_reset(&state64, i);
		XXH32_reset(&state32, (unsigned)i);
		for (unsigned long off = 0; off < n; off += 1 + i * 3) {
			unsigned long k = n - off < 1 + i * 3 ? n - off : 1 + i * 3;

			XXH3_64bits_update(&state3, input + off, k);
			XXH64_update(&state64, input + off, k);
			XXH32_update(&state32, input + off, k);
		}
		h ^= XXH3_64bits_digest(&state3) + XXH64_digest(&state64) + XXH32_digest(&state32);
	}
	return h;
}

/* Failed round trips, counted without branching (drivers.h: fail_if/expect): the harness
 * requires 0. */
unsigned long truth_failures;

unsigned long task_main(void)
{
	unsigned long sum = 0;
	char text[48];

	make_input(input, INPUT_SIZE, 12345);
	memmove(text, "sframe truth image", 19);
	memmove(text + 2, text, 19);	/* overlapping: the backwards path */
	sum += strlen(text);
	sum += (unsigned long)memcmp(text, text + 2, 8);	/* a mismatch: memcmp's other exit */
	sum ^= zlib_roundtrip(6, Z_DEFAULT_STRATEGY, 10);
	sum = sum * 31 + zlib_roundtrip(1, Z_DEFAULT_STRATEGY, 9);
	sum = sum * 31 + zlib_roundtrip(9, Z_FILTERED, 10);
	check_state(0x77);
	sum = sum * 31 + zlib_roundtrip(2, Z_HUFFMAN_ONLY, 9);
	sum = sum * 31 + zlib_roundtrip(3, Z_RLE, 9);
	sum = sum * 31 + zlib_roundtrip(4, Z_FIXED, 9);
	sum = sum * 31 + zlib_roundtrip(0, Z_DEFAULT_STRATEGY, 9);
	sum = sum * 31 + zlib_streaming();
	sum = sum * 31 + lz4_streaming();
	sum = sum * 31 + xxhash_variety();
	sum = sum * 31 + lz4_roundtrip(1);
	sum = sum * 31 + lz4_roundtrip(8);
	sum = sum * 31 + hash_all(input, INPUT_SIZE);
	sum = sum * 31 + hash_all(input + 3, 129);
	sum = sum * 31 + hash_all(input + 5, 17);
	sum = sum * 31 + zlib_matrix();
	sum = sum * 31 + zlib_errors();
	sum = sum * 31 + lz4_matrix();
	sum = sum * 31 + lz4_shapes();
	sum = sum * 31 + xxhash_matrix();
	sum = sum * 31 + drive_zlib();
	sum = sum * 31 + drive_lz4_compress();
	sum = sum * 31 + drive_lz4_decompress();
	sum = sum * 31 + drive_xxhash();
	return sum;
}
