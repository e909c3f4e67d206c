/* -fexceptions C: cleanup handlers give functions a personality routine and an LSDA, so
   gas writes "zPLR" CIEs (indirect pc-relative personality, pc-relative LSDA pointers). */
#include <stdlib.h>

extern void consume(void *p, unsigned long n);
extern int external(int);

static void release(void **p) { free(*p); }

int with_cleanup(int n)
{
	void *buf __attribute__((cleanup(release))) = malloc(n);
	consume(buf, n);
	return external(n);
}

int nested_cleanups(int n)
{
	void *a __attribute__((cleanup(release))) = malloc(n);
	int r = external(n);
	if (r > 0) {
		void *b __attribute__((cleanup(release))) = malloc(r);
		consume(b, r);
		r += external(r);
	}
	consume(a, n);
	return r;
}
