/* A libc-free program whose functions cover the frame shapes SFrame must describe.
   Built by tools/build_sframe_corpus.py for aarch64 and x86-64 with several option sets;
   the entry point is _start in start-<arch>.S, which calls cmain(). */

typedef unsigned long size_t;

#if defined(__aarch64__)
static long sys3(long nr, long a, long b, long c)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
}
#define SYS_write 64
#define SYS_exit 93
#elif defined(__x86_64__)
static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
#define SYS_write 1
#define SYS_exit 60
#elif defined(__s390x__)
static long sys3(long nr, long a, long b, long c)
{
	register long r1 __asm__("r1") = nr;
	register long r2 __asm__("r2") = a;
	register long r3 __asm__("r3") = b;
	register long r4 __asm__("r4") = c;
	__asm__ volatile("svc 0" : "+r"(r2) : "r"(r1), "r"(r3), "r"(r4) : "memory");
	return r2;
}
#define SYS_write 4
#define SYS_exit 1
#else
#error unsupported architecture
#endif

volatile int sink;
volatile int crash_now;

/* leaf: no frame at all */
__attribute__((noinline)) int leaf(int x)
{
	return x * 3 + 1;
}

/* non-tail recursion: a frame with saved FP/RA in every activation */
__attribute__((noinline)) int rec(int n)
{
	if (n <= 0)
		return leaf(n);
	return rec(n - 1) + n;
}

/* noreturn: the call to it is the last instruction of its callers' paths */
__attribute__((noinline, noreturn)) void die(int code)
{
	for (;;)
		sys3(SYS_exit, code, 0, 0);
}

/* writes through NULL only when asked; otherwise calls die() on a bad value */
__attribute__((noinline)) int maybe_crash(int v)
{
	if (crash_now)
		*(volatile int *)0 = v;
	if (v < 0)
		die(2);
	return v + 1;
}

/* a 70 000-byte frame: offsets that need 4-byte data words */
__attribute__((noinline)) int big_frame(int v)
{
	volatile char buf[70000];
	buf[0] = (char)v;
	buf[69999] = (char)(v >> 1);
	return maybe_crash(buf[0] + buf[69999]);
}

/* a VLA: the CFA moves to the frame pointer */
__attribute__((noinline)) int vla(int n)
{
	volatile char a[n + 16];
	a[0] = (char)n;
	a[n] = 1;
	return big_frame(a[0] + a[n]);
}

/* alloca: FP-based CFA as well */
__attribute__((noinline)) int with_alloca(int n)
{
	volatile char *p = __builtin_alloca(n + 32);
	p[0] = (char)n;
	return vla(p[0] + 1) + p[0];
}

/* a tail call: at -O2 this becomes "adjust; branch" with no frame of its own */
__attribute__((noinline)) int tail(int n)
{
	return with_alloca(n + 1);
}

__attribute__((noinline)) int compute(int n)
{
	int r = rec(n);
	r += tail(n);
	sink = r;
	return r;
}

static void put_decimal(long v)
{
	char buf[24];
	int i = sizeof(buf);
	buf[--i] = '\n';
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v && i > 0);
	sys3(SYS_write, 1, (long)(buf + i), (long)(sizeof(buf) - i));
}

__attribute__((noreturn)) void cmain(void *initial_sp)
{
	(void)initial_sp;
	sys3(SYS_write, 1, (long)"result=", 7);
	put_decimal(compute(5));
	die(0);
}
