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

#define noinline __attribute__((noinline))
#define INPUT_SIZE 6144

static unsigned char input[INPUT_SIZE];
static unsigned char packed[INPUT_SIZE + 1024];
static unsigned char unpacked[INPUT_SIZE];
static unsigned long lz4_state[(16 * 1024 + 64) / sizeof(unsigned long)];
static unsigned char irq_buffer[512];

/* A bump allocator for zlib (reset per stream); zlib's Z_SOLO mode needs zalloc/zfree. */
static unsigned char arena[96 * 1024] __attribute__((aligned(16)));
static unsigned long arena_used;

static voidpf arena_alloc(voidpf opaque, uInt items, uInt size)
{
	unsigned long bytes = ((unsigned long)items * size + 15) & ~15UL;

	(void)opaque;
	if (arena_used + bytes > sizeof(arena))
		return Z_NULL;
	arena_used += bytes;
	return arena + arena_used - bytes;
}

static void arena_free(voidpf opaque, voidpf address)
{
	(void)opaque;
	(void)address;
}

/* Text-like input with repetitions (so that deflate finds matches) and some noise. */
static noinline void make_input(unsigned char *buf, unsigned long n, unsigned long seed)
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
	if (deflateInit2(&strm, level, Z_DEFLATED, window_bits, 4, strategy) != Z_OK)
		return 1;
	strm.next_in = input;
	strm.avail_in = INPUT_SIZE;
	strm.next_out = packed;
	strm.avail_out = sizeof(packed);
	if (deflate(&strm, Z_FINISH) != Z_STREAM_END)
		return 2;
	packed_len = strm.total_out;
	deflateEnd(&strm);

	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	if (inflateInit2(&strm, window_bits) != Z_OK)
		return 3;
	strm.next_in = packed;
	strm.avail_in = (uInt)packed_len;
	strm.next_out = unpacked;
	strm.avail_out = sizeof(unpacked);
	if (inflate(&strm, Z_FINISH) != Z_STREAM_END)
		return 4;
	inflateEnd(&strm);
	if (memcmp(input, unpacked, INPUT_SIZE) != 0)
		return 5;
	sum = adler32(0, packed, (uInt)packed_len);
	return sum ^ (packed_len << 32);
}

static noinline unsigned long lz4_roundtrip(int acceleration)
{
	int packed_len, out_len;

	packed_len = LZ4_compress_fast_extState(lz4_state, (const char *)input, (char *)packed,
						INPUT_SIZE, sizeof(packed), acceleration);
	if (packed_len <= 0)
		return 6;
	out_len = LZ4_decompress_safe((const char *)packed, (char *)unpacked, packed_len,
				      sizeof(unpacked));
	if (out_len != INPUT_SIZE || memcmp(input, unpacked, INPUT_SIZE) != 0)
		return 7;
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
	if (deflateInit2(&strm, 5, Z_DEFLATED, 11, 5, Z_DEFAULT_STRATEGY) != Z_OK)
		return 11;
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
		if (ret != Z_OK && ret != Z_STREAM_END)
			return 12;
	}
	packed_len = strm.total_out;
	sum += deflateBound(&strm, INPUT_SIZE);
	deflateEnd(&strm);

	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	if (inflateInit2(&strm, 11) != Z_OK)
		return 13;
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
	if (ret == Z_OK)
		ret = inflate(&strm, Z_FINISH);
	inflateEnd(&strm);
	if (ret != Z_STREAM_END || memcmp(input, unpacked, INPUT_SIZE) != 0)
		return 14;

	/* raw deflate (no zlib header) of a slice, inflated in one call */
	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	if (deflateInit2(&strm, 3, Z_DEFLATED, -9, 3, Z_DEFAULT_STRATEGY) != Z_OK)
		return 15;
	strm.next_in = input + 100;
	strm.avail_in = 2000;
	strm.next_out = packed;
	strm.avail_out = sizeof(packed);
	if (deflate(&strm, Z_FINISH) != Z_STREAM_END)
		return 16;
	packed_len = strm.total_out;
	deflateEnd(&strm);
	memset(&strm, 0, sizeof(strm));
	arena_used = 0;
	strm.zalloc = arena_alloc;
	strm.zfree = arena_free;
	if (inflateInit2(&strm, -9) != Z_OK)
		return 17;
	strm.next_in = packed;
	strm.avail_in = (uInt)packed_len;
	strm.next_out = unpacked;
	strm.avail_out = sizeof(unpacked);
	ret = inflate(&strm, Z_FINISH);
	inflateEnd(&strm);
	if (ret != Z_STREAM_END || memcmp(input + 100, unpacked, 2000) != 0)
		return 18;
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

		if (c <= 0)
			return 21;
		out_len = LZ4_decompress_safe_continue(&decode, (const char *)packed,
						       (char *)unpacked + in_off, c, n);
		if (out_len != n)
			return 22;
		sum += (unsigned long)c;
		in_off += n;
	}
	if (memcmp(input, unpacked, INPUT_SIZE) != 0)
		return 23;
	src_size = INPUT_SIZE;
	/* the _extState variant: LZ4_compress_destSize() puts a 16 KiB state on the stack */
	out_len = LZ4_compress_destSize_extState(lz4_state, (const char *)input, (char *)packed,
						 &src_size, 900, 1);
	if (out_len <= 0)
		return 24;
	out_len = LZ4_decompress_safe_partial((const char *)packed, (char *)unpacked, out_len,
					      300, sizeof(unpacked));
	if (out_len < 300 || memcmp(input, unpacked, 300) != 0)
		return 25;
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

/* Every helper returns a small error code (< 32) on failure: count them for the harness. */
unsigned long truth_failures;

static noinline unsigned long checked(unsigned long value)
{
	if (value < 32)
		truth_failures++;
	return value;
}

unsigned long task_main(void)
{
	unsigned long sum = 0;
	char text[48];

	make_input(input, INPUT_SIZE, 12345);
	memmove(text, "sframe truth image", 19);
	memmove(text + 2, text, 19);	/* overlapping: the backwards path */
	sum += strlen(text);
	sum ^= checked(zlib_roundtrip(6, Z_DEFAULT_STRATEGY, 10));
	sum = sum * 31 + checked(zlib_roundtrip(1, Z_DEFAULT_STRATEGY, 9));
	sum = sum * 31 + checked(zlib_roundtrip(9, Z_FILTERED, 10));
	check_state(0x77);
	sum = sum * 31 + checked(zlib_roundtrip(2, Z_HUFFMAN_ONLY, 9));
	sum = sum * 31 + checked(zlib_roundtrip(3, Z_RLE, 9));
	sum = sum * 31 + checked(zlib_roundtrip(4, Z_FIXED, 9));
	sum = sum * 31 + checked(zlib_roundtrip(0, Z_DEFAULT_STRATEGY, 9));
	sum = sum * 31 + checked(zlib_streaming());
	sum = sum * 31 + checked(lz4_streaming());
	sum = sum * 31 + xxhash_variety();
	sum = sum * 31 + checked(lz4_roundtrip(1));
	sum = sum * 31 + checked(lz4_roundtrip(8));
	sum = sum * 31 + hash_all(input, INPUT_SIZE);
	sum = sum * 31 + hash_all(input + 3, 129);
	sum = sum * 31 + hash_all(input + 5, 17);
	return sum;
}
