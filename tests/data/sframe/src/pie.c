/* A small glibc-linked program: its PIE build gets linker-made PLT FDEs on x86-64
   (.plt0 PCINC, .plt PCMASK, .plt.got PCMASK). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int (*volatile indirect_puts)(const char *) = puts;

__attribute__((noinline)) static int work(int n)
{
	char buf[64];
	int len = snprintf(buf, sizeof buf, "pid-ish %d\n", n + (int)getpid() % 2);
	write(1, buf, (size_t)len);
	return len;
}

int main(int argc, char **argv)
{
	(void)argv;
	indirect_puts("pie");
	if (argc > 5)
		abort();
	return work(argc) > 100;
}
