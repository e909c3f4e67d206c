/* Frame shapes for the CFI -> SFrame corpus: leaf, non-leaf, alloca/VLA, large frames,
   early returns (remember/restore state), tail calls, noreturn, variadic, setjmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void consume(void *p, size_t n);
extern int external(int);

int leaf_add(int a, int b) { return a + b; }

int calls_one(int x) { return external(x) + 1; }

int early_return(int *p, int n)
{
	if (!p)
		return -1;
	int s = 0;
	for (int i = 0; i < n; i++)
		s += external(p[i]);
	return s;
}

void vla(int n)
{
	char buf[n];
	memset(buf, 0, n);
	consume(buf, n);
}

void with_alloca(size_t n)
{
	char *p = __builtin_alloca(n);
	consume(p, n);
	consume(p, n / 2);
}

void big_frame_4k(void)
{
	char buf[4000];
	consume(buf, sizeof buf);
}

void big_frame_64k(void)
{
	char buf[70000];
	consume(buf, sizeof buf);
}

void huge_frame(void)
{
	char buf[3 << 20];
	consume(buf, sizeof buf);
}

int tail_call(int x)
{
	if (x > 10)
		return external(x - 1);
	return x;
}

__attribute__((noreturn)) void die(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	abort();
}

int variadic_sum(int n, ...)
{
	va_list ap;
	int s = 0;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		s += va_arg(ap, int);
	va_end(ap);
	return s + external(s);
}

static jmp_buf env;

int uses_setjmp(int x)
{
	if (setjmp(env))
		return external(-1);
	return external(x);
}

void do_longjmp(void) { longjmp(env, 1); }

int many_callee_saved(int a, int b, int c, int d, int e, int f)
{
	int r = 0;
	for (int i = 0; i < a; i++) {
		r += external(b + i) * c;
		r ^= external(d + r) - e;
		r += external(f ^ r);
	}
	return r + a + b + c + d + e + f;
}

struct big { char data[512]; };

struct big return_big(int x)
{
	struct big b;
	memset(&b, x, sizeof b);
	consume(&b, sizeof b);
	return b;
}

int recursion(int n) { return n <= 1 ? 1 : n * recursion(n - 1) + external(n); }

double float_work(double *v, int n)
{
	double s = 0;
	for (int i = 0; i < n; i++)
		s += v[i] * (double)external(i);
	return s;
}
