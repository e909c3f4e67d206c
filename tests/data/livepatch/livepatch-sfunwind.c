// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * livepatch-sfunwind.c - a livepatch module for the sfunwind fixtures.
 *
 * Built by tools/build_livepatch_ko.sh against Debian's linux-headers for
 * 7.2.13+deb14-cloud-arm64, in the style of samples/livepatch/livepatch-sample.c.
 * It exists to carry real klp_patch / klp_object / klp_func tables with the
 * exact 7.2 struct layouts, for `sfunwind livepatch --ko`.  The functions it
 * patches were chosen from the vmcores in tests/data/linux-7.2.13-cloud-arm64:
 *
 *   chacha_block_generic  only reachable through an (L) frame: pid 113 (dd) is
 *                         preempted in the leaf chacha_permute+0x38, whose
 *                         caller is only in LR
 *   do_wait               init (pid 1) sleeps in it
 *   load_elf_binary,1     two functions have this name (binfmt_elf and
 *                         compat_binfmt_elf): old_sympos picks the first
 *   ext4: ext4_file_read_iter
 *                         an object (module) that is not loaded in the dumps
 *
 * The Debian kernel is built without CONFIG_LIVEPATCH (it has
 * HAVE_LIVEPATCH and HAVE_RELIABLE_STACKTRACE), so <linux/livepatch.h> is
 * included with CONFIG_LIVEPATCH defined and the module cannot be loaded on
 * that kernel (klp_enable_patch does not exist there).  As in the upstream
 * sample, the replacement functions only stand in for real fixes: they have
 * the right prototypes and report that they ran.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/fs.h>
#include <linux/uio.h>
#include <linux/binfmts.h>
#include <crypto/chacha.h>

/* The kernel has CONFIG_LIVEPATCH=n: declare the livepatch API as if it were on. */
#define CONFIG_LIVEPATCH 1
#include <linux/livepatch.h>

struct wait_opts;

static void livepatch_chacha_block_generic(struct chacha_state *state,
					   u8 out[CHACHA_BLOCK_SIZE],
					   int nrounds)
{
	pr_info_once("chacha_block_generic replaced (%d rounds)\n", nrounds);
}

static long livepatch_do_wait(struct wait_opts *wo)
{
	pr_info_once("do_wait replaced\n");
	return -ECHILD;
}

static int livepatch_load_elf_binary(struct linux_binprm *bprm)
{
	pr_info_once("load_elf_binary replaced\n");
	return -ENOEXEC;
}

static ssize_t livepatch_ext4_file_read_iter(struct kiocb *iocb,
					     struct iov_iter *to)
{
	pr_info_once("ext4_file_read_iter replaced\n");
	return -EIO;
}

static struct klp_func vmlinux_funcs[] = {
	{
		.old_name = "chacha_block_generic",
		.new_func = livepatch_chacha_block_generic,
	}, {
		.old_name = "do_wait",
		.new_func = livepatch_do_wait,
	}, {
		.old_name = "load_elf_binary",
		.new_func = livepatch_load_elf_binary,
		.old_sympos = 1,
	}, { }
};

static struct klp_func ext4_funcs[] = {
	{
		.old_name = "ext4_file_read_iter",
		.new_func = livepatch_ext4_file_read_iter,
	}, { }
};

static struct klp_object objs[] = {
	{
		/* name being NULL means vmlinux */
		.funcs = vmlinux_funcs,
	}, {
		.name = "ext4",
		.funcs = ext4_funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int livepatch_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_exit(void)
{
}

module_init(livepatch_init);
module_exit(livepatch_exit);
MODULE_DESCRIPTION("sfunwind fixture: a livepatch of four functions");
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
