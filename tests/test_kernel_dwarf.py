"""DWARF fallback for struct layouts: checked against BTF that gcc emits for the same code,
and (when the full debug vmlinux has been fetched) against the kernel's own BTF."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from kernel_fixtures import VMLINUX, drgn_reference, vmcore
from sfunwind.kernel.btf import BTF, KIND_STRUCT, KIND_UNION
from sfunwind.kernel.dwarf import DwarfTypes
from sfunwind.kernel.program import KernelLayout, KernelProgram
from sfunwind.kernel.symbols import Symbolizer
from sfunwind.memory.elfcore import open_core

SOURCE = r"""
typedef unsigned long u64; typedef unsigned char u8; typedef int pid_t;
typedef volatile const u64 cv_u64;
struct list_head { struct list_head *next, *prev; };
struct frame_record { u64 fp; u64 lr; };
struct frame_record_meta { struct frame_record record; u64 type; };
struct user_pt_regs { u64 regs[31]; u64 sp; u64 pc; u64 pstate; };
struct pt_regs {
    union {
        struct user_pt_regs user_regs;
        struct { u64 regs[31]; u64 sp; u64 pc; u64 pstate; };
    };
    u64 orig_x0; int syscallno; unsigned int pmr; u64 sdei_ttbr1;
    struct frame_record_meta stackframe;
};
enum kunwind_source { KUNWIND_SOURCE_UNKNOWN, KUNWIND_SOURCE_FRAME, KUNWIND_SOURCE_CALLER,
                      KUNWIND_SOURCE_TASK = 3, KUNWIND_SOURCE_REGS_PC };
enum signed_enum { NEG = -5, POS = 7 };
struct cpu_context { u64 x19, x20, x21, x22, x23, x24, x25, x26, x27, x28; u64 fp, sp, pc; };
struct thread_struct { struct cpu_context cpu_context; u64 fault_address; cv_u64 tp_value; };
struct thread_info { u64 flags; union { u64 preempt_count; struct { unsigned int count;
                     unsigned int need_resched; } preempt; }; int cpu; };
struct task_struct {
    struct thread_info thread_info;
    volatile unsigned int __state;
    const void *stack;
    u8 on_cpu;
    unsigned sched_reset_on_fork:1, sched_contributes_to_load:1, in_iowait:3;
    signed int negative_bits:5;
    pid_t pid, tgid;
    char comm[16];
    short matrix[3][5];
    struct list_head tasks;
    struct signal_struct *signal;
    struct list_head thread_node;
    int exit_state;
    struct { int a; union { long b; char c[7]; }; } anon_nest;
    struct thread_struct thread;
};
struct rq { int nr; struct task_struct *curr, *idle; int cpu; };
struct signal_struct { int nr_threads; struct list_head thread_head; };
struct pt_regs r; struct task_struct t; struct rq q; struct signal_struct sig; enum kunwind_source k; enum signed_enum s;
u64 overflow_stack[512];
"""


def _paths(btf: BTF, tid: int, prefix: str = "", depth: int = 0):
    """Every member path of a struct (nested members, first/last array elements)."""
    for name, mtype, _bits, _size in btf.members(tid):
        if not name:
            inner = btf.resolve(mtype)
            yield from _paths(btf, inner, prefix, depth + 1)
            continue
        path = f"{prefix}{name}"
        yield path
        target = btf.resolve(mtype)
        try:
            elem, n = btf.array_info(target)
            yield f"{path}[0]"
            yield f"{path}[{n - 1}]"
            target = btf.resolve(elem)
            try:
                _, n2 = btf.array_info(target)
                yield f"{path}[{n - 1}][{n2 - 1}]"
            except KeyError:
                pass
        except KeyError:
            pass
        if btf.kind(target) in (KIND_STRUCT, KIND_UNION) and depth < 4:
            yield from _paths(btf, target, path + ".", depth + 1)


def test_dwarf_equals_gcc_btf_for_every_member(sid):
    work = sid.scratch()
    try:
        (work / "t.c").write_text(SOURCE)
        sid.run("aarch64-linux-gnu-gcc -c -g -gbtf -O0 t.c -o t.o", cwd=work)
        obj = work / "t.o"
        btf = BTF.from_file(obj)
        dwarf = DwarfTypes(obj)
        checked = 0
        for struct in ("task_struct", "pt_regs", "rq", "thread_info", "thread_struct",
                       "frame_record_meta", "signal_struct"):
            cname = f"struct {struct}"
            assert dwarf.size_of(cname) == btf.size_of(cname)
            for path in _paths(btf, btf.find(cname)):
                assert dwarf.member(cname, path) == dataclasses.replace(
                    btf.member(cname, path), type_id=dwarf.member(cname, path).type_id), path
                checked += 1
        assert checked > 100
        assert dwarf.enum("enum kunwind_source") == btf.enum("enum kunwind_source")
        assert dwarf.enum("enum signed_enum") == btf.enum("enum signed_enum") == \
            {"NEG": -5, "POS": 7}
        assert dwarf.var_size("overflow_stack") == btf.var_size("overflow_stack") == 4096
        m = dwarf.member("struct task_struct", "negative_bits")
        assert m.bit_size == 5 and m.signed
        assert KernelLayout.from_types(dwarf, 16384) == KernelLayout.from_types(btf, 16384)
        dwarf.close()
    finally:
        sid.cleanup(work)


def _full_vmlinux() -> Path | None:
    env = os.environ.get("SFUNWIND_FULL_VMLINUX")
    path = Path(env) if env else Path("/work/cache/vmlinux-7.2.13/vmlinux")
    return path if path.is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_full_vmlinux() is None,
                    reason="full debug vmlinux not fetched "
                           "(tools/kernel-dumps/fetch-vmlinux-dbg.sh; SFUNWIND_FULL_VMLINUX)")
def test_dwarf_layout_of_the_real_kernel_equals_its_btf():
    dwarf = DwarfTypes(_full_vmlinux())
    dwarf.preload(list(KernelLayout.TYPES))
    btf = BTF.from_file(VMLINUX)
    assert KernelLayout.from_types(dwarf, 16384) == KernelLayout.from_types(btf, 16384)
    dwarf.close()


@pytest.mark.slow
@pytest.mark.skipif(_full_vmlinux() is None,
                    reason="full debug vmlinux not fetched "
                           "(tools/kernel-dumps/fetch-vmlinux-dbg.sh; SFUNWIND_FULL_VMLINUX)")
def test_task_list_from_dwarf_layouts_equals_drgn():
    core = open_core(vmcore("kaslr/el1-abort"))
    symbols = Symbolizer.from_vmlinux(_full_vmlinux(), kaslr_offset=core.vmcoreinfo.kernel_offset)
    types = DwarfTypes(_full_vmlinux())
    types.preload(list(KernelLayout.TYPES))
    prog = KernelProgram(core, symbols, types)
    assert prog.describe()["types"] == "DWARF"
    ref = drgn_reference("kaslr/el1-abort")
    assert sorted((t.pid, t.comm, t.state, t.cpu, t.on_cpu) for t in prog.threads()) == \
        sorted((t["pid"], t["comm"], t["state"], t["cpu"], t["on_cpu"]) for t in ref["tasks"])
