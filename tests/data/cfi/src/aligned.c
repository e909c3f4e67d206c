/* Stack realignment: on x86-64 GCC uses a DRAP register (r10) and
   DW_CFA_def_cfa_expression / DW_CFA_expression rules for these. */
#include <stddef.h>

extern void consume(void *p, size_t n);
extern int external(int);

void over_aligned(int n)
{
	char buf[64] __attribute__((aligned(64)));
	buf[0] = (char)n;
	consume(buf, sizeof buf);
}

void over_aligned_vla(int n)
{
	char buf[32] __attribute__((aligned(128)));
	char vla[n];
	buf[1] = (char)n;
	consume(buf, sizeof buf);
	consume(vla, n);
}

int over_aligned_calls(int n)
{
	int v[16] __attribute__((aligned(256)));
	for (int i = 0; i < 16; i++)
		v[i] = external(n + i);
	consume(v, sizeof v);
	return v[3];
}
