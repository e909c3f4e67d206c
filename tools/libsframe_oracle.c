/* libsframe_oracle: what GNU libsframe's sframe_find_fre() answers for every PC of an
 * .sframe section.  The reference that tests/test_sframe_libsframe.py compares
 * sfunwind.sframe.SFrameTable.find() against.
 *
 * Usage:  libsframe_oracle SECTION.bin SECTION_VMA
 *   SECTION.bin  the raw bytes of the .sframe section (objcopy -O binary -j .sframe)
 *   SECTION_VMA  its address (hex or decimal), so PCs print as absolute addresses
 *
 * Builds against the libsframe of binutils 2.40 (SFrame v1), 2.44 (v2) and 2.47 (v3): the
 * API differences are selected from <sframe.h> (SFRAME_VERSION_3 / SFRAME_VERSION_2).
 *   cc -O2 -o libsframe_oracle libsframe_oracle.c -l:libsframe.a
 *
 * Output (one line each, all numbers of PCs in lowercase hex without 0x):
 *   # libsframe <api> version=<v> flags=0x.. abi=<n> fixed_fp=<n> fixed_ra=<n> fdes=<n> vma=<hex>
 *   fde <i> start=<hex> size=<n> nfres=<n> info=0x.. info2=0x.. rep=<n>
 *   ...
 *   <pc> miss
 *   <pc> hit fde=<i|-> fre=<hex start offset> info=0x.. words=<w0,w1,..|-> cfa=<n> ra=<n|none|undef> fp=<n|none> mangled=<0|1>
 * For "hit" lines: words are the FRE's raw signed data words; cfa/ra/fp are the values of
 * sframe_fre_get_{cfa,ra,fp}_offset (none = the getter set an error: no such word);
 * ra=undef when sframe_fre_get_ra_undefined_p (2.46+).  fde is the index of the FDE whose
 * [start, start+size) holds the PC (found by this program, to select the FDE type for the
 * v3 getters), or "-" when none does.
 *
 * PCs examined: every byte address of every FDE's range, every address of a gap between
 * consecutive FDEs of up to 256 bytes (the first and last 16 of a longer gap), and 16
 * addresses before the first and after the last FDE.  In increasing order, each once.
 * A failure to read or decode the section prints "# decode-error <text>" and exits 2.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sframe.h>
#include <sframe-api.h>

#if defined(SFRAME_VERSION_3)
#define API "2.46+"
#define FRE_WORDS(fre) ((fre)->fre_datawords)
#elif defined(SFRAME_VERSION_2)
#define API "2.41-2.45"
#define FRE_WORDS(fre) ((fre)->fre_offsets)
#else
#define API "2.40"
#define FRE_WORDS(fre) ((fre)->fre_offsets)
#endif

struct fde {
	int64_t start; /* section-relative */
	uint32_t size, nfres;
	unsigned info, info2, rep;
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t words_of(const sframe_frame_row_entry *fre, int64_t *out)
{
	unsigned info = fre->fre_info;
	unsigned count = (info >> 1) & 0xf;
	unsigned code = (info >> 5) & 3;
	unsigned size = code == 0 ? 1 : code == 1 ? 2 : 4;
	for (unsigned i = 0; i < count && (i + 1) * size <= sizeof FRE_WORDS(fre); i++) {
		const unsigned char *p = FRE_WORDS(fre) + i * size;
		if (size == 1)
			out[i] = (int8_t)p[0];
		else if (size == 2)
			out[i] = (int16_t)(p[0] | p[1] << 8);
		else
			out[i] = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
					   (uint32_t)p[3] << 24);
	}
	return count;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s SECTION.bin SECTION_VMA\n", argv[0]);
		return 64;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		printf("# decode-error cannot open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	static char buf[64 << 20];
	size_t len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	uint64_t vma = strtoull(argv[2], NULL, 0);

	int err = 0;
	sframe_decoder_ctx *dctx = sframe_decode(buf, len, &err);
	if (!dctx) {
		printf("# decode-error %s\n", sframe_errmsg(err));
		return 2;
	}
	uint32_t n = sframe_decoder_get_num_fidx(dctx);
	printf("# libsframe %s version=%u flags=0x%x abi=%u fixed_fp=%d fixed_ra=%d fdes=%u vma=%" PRIx64
	       "\n", API, (unsigned)(unsigned char)buf[2], /* version byte of the preamble */
	       (unsigned)(unsigned char)buf[3], /* no flags getter before 2.46 */
	       (unsigned)sframe_decoder_get_abi_arch(dctx), sframe_decoder_get_fixed_fp_offset(dctx),
	       sframe_decoder_get_fixed_ra_offset(dctx), n, vma);

	struct fde *fdes = calloc(n ? n : 1, sizeof *fdes);
	for (uint32_t i = 0; i < n; i++) {
		struct fde *d = &fdes[i];
		unsigned char info = 0, info2 = 0;
		uint8_t rep = 0;
		int rc;
#if defined(SFRAME_VERSION_3)
		if (sframe_decoder_get_version(dctx) == SFRAME_VERSION_3) {
			rc = sframe_decoder_get_funcdesc_v3(dctx, i, &d->nfres, &d->size, &d->start, &info,
							    &info2, &rep);
		} else {
			int32_t start32;
			rc = sframe_decoder_get_funcdesc_v2(dctx, i, &d->nfres, &d->size, &start32, &info,
							    &rep);
			d->start = start32;
		}
		/* the raw field: relative to the field itself when FUNC_START_PCREL is set */
		if (sframe_decoder_get_flags(dctx) & SFRAME_F_FDE_FUNC_START_PCREL)
			d->start += sframe_decoder_get_offsetof_fde_start_addr(dctx, i, &err);
#elif defined(SFRAME_VERSION_2)
		int32_t start32;
		if ((unsigned char)buf[2] == SFRAME_VERSION_1) /* the _v2 getter refuses v1 */
			rc = sframe_decoder_get_funcdesc(dctx, i, &d->nfres, &d->size, &start32, &info);
		else
			rc = sframe_decoder_get_funcdesc_v2(dctx, i, &d->nfres, &d->size, &start32, &info,
							    &rep);
		d->start = start32;
#else
		int32_t start32;
		rc = sframe_decoder_get_funcdesc(dctx, i, &d->nfres, &d->size, &start32, &info);
		d->start = start32;
#endif
		if (rc) {
			printf("# decode-error FDE %u: %s\n", i, sframe_errmsg(rc));
			return 2;
		}
		d->info = info;
		d->info2 = info2;
		d->rep = rep;
		printf("fde %u start=%" PRIx64 " size=%u nfres=%u info=0x%02x info2=0x%02x rep=%u\n", i,
		       (uint64_t)(vma + d->start), d->size, d->nfres, d->info, d->info2, d->rep);
	}

	/* the PCs to ask about, section-relative */
	size_t cap = 1024, npcs = 0;
	int64_t *pcs = malloc(cap * sizeof *pcs);
#define ADD(x)                                                     \
	do {                                                       \
		if (npcs == cap)                                   \
			pcs = realloc(pcs, (cap *= 2) * sizeof *pcs); \
		pcs[npcs++] = (x);                                 \
	} while (0)
	int64_t *starts = malloc((n ? n : 1) * sizeof *starts);
	for (uint32_t i = 0; i < n; i++) {
		for (int64_t pc = fdes[i].start; pc < fdes[i].start + (int64_t)fdes[i].size; pc++)
			ADD(pc);
		starts[i] = fdes[i].start;
	}
	qsort(starts, n, sizeof *starts, cmp_i64);
	if (n) {
		int64_t lo = INT64_MAX, hi = INT64_MIN;
		for (uint32_t i = 0; i < n; i++) {
			if (fdes[i].start < lo)
				lo = fdes[i].start;
			if (fdes[i].start + (int64_t)fdes[i].size > hi)
				hi = fdes[i].start + fdes[i].size;
		}
		for (int64_t k = 1; k <= 16; k++) {
			ADD(lo - k);
			ADD(hi + k - 1);
		}
		/* gaps: between the end of the FDE with the k-th start and the next start */
		for (uint32_t k = 0; k + 1 < n; k++) {
			int64_t end = INT64_MIN;
			for (uint32_t i = 0; i < n; i++)
				if (fdes[i].start <= starts[k] && fdes[i].start + (int64_t)fdes[i].size > end)
					end = fdes[i].start + fdes[i].size;
			int64_t next = starts[k + 1];
			for (int64_t pc = end; pc < next; pc++)
				if (next - end <= 256 || pc < end + 16 || pc >= next - 16)
					ADD(pc);
		}
	}
	qsort(pcs, npcs, sizeof *pcs, cmp_i64);

	for (size_t j = 0; j < npcs; j++) {
		int64_t pc = pcs[j];
		if (j && pc == pcs[j - 1])
			continue;
		sframe_frame_row_entry fre;
		memset(&fre, 0, sizeof fre);
		int rc = sframe_find_fre(dctx, pc, &fre);
		uint64_t abs = vma + (uint64_t)pc;
		if (rc) {
			/* sframe_find_fre returns SFRAME_ERR, not an error code: nothing more to say */
			printf("%" PRIx64 " miss\n", abs);
			continue;
		}
		long fde = -1;
		for (uint32_t i = 0; i < n; i++)
			if (fdes[i].start <= pc && pc < fdes[i].start + (int64_t)fdes[i].size) {
				fde = i;
				break;
			}
		int64_t w[16];
		int64_t count = words_of(&fre, w);
		printf("%" PRIx64 " hit fde=", abs);
		if (fde < 0)
			printf("-");
		else
			printf("%ld", fde);
		printf(" fre=%" PRIx32 " info=0x%02x words=", fre.fre_start_addr, fre.fre_info);
		if (!count)
			printf("-");
		for (int64_t i = 0; i < count; i++)
			printf(i ? ",%" PRId64 : "%" PRId64, w[i]);
		int e = 0;
#if defined(SFRAME_VERSION_3)
		uint32_t type = fde < 0 ? SFRAME_FDE_TYPE_DEFAULT : (fdes[fde].info2 & 0x1f);
		int32_t cfa = sframe_fre_get_cfa_offset(dctx, &fre, type, &e);
#else
		int32_t cfa = sframe_fre_get_cfa_offset(dctx, &fre, &e);
#endif
		if (e)
			printf(" cfa=none");
		else
			printf(" cfa=%" PRId32, cfa);
		bool undef = false;
#if defined(SFRAME_VERSION_3)
		e = 0;
		undef = sframe_fre_get_ra_undefined_p(dctx, &fre, &e);
#endif
		e = 0;
#if defined(SFRAME_VERSION_3)
		int32_t ra = sframe_fre_get_ra_offset(dctx, &fre, type, &e);
#else
		int32_t ra = sframe_fre_get_ra_offset(dctx, &fre, &e);
#endif
		if (undef)
			printf(" ra=undef");
		else if (e)
			printf(" ra=none");
		else
			printf(" ra=%" PRId32, ra);
		e = 0;
#if defined(SFRAME_VERSION_3)
		int32_t fp = sframe_fre_get_fp_offset(dctx, &fre, type, &e);
#else
		int32_t fp = sframe_fre_get_fp_offset(dctx, &fre, &e);
#endif
		if (e)
			printf(" fp=none");
		else
			printf(" fp=%" PRId32, fp);
		e = 0;
		bool mangled = sframe_fre_get_ra_mangled_p(dctx, &fre, &e);
		printf(" mangled=%d\n", mangled ? 1 : 0);
	}
	sframe_decoder_free(&dctx);
	return 0;
}
